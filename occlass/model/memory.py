"""The exemplar memory: embeddings of labelled titles (O*NET's own lists, the user's files and
corrections) with their codes, and its fusion with category similarity.

A code's score is `(1 - w) * category similarity + w * best exemplar similarity`; `w` = 0 is
category similarity alone, `w` = 1 nearest-neighbour lookup. A code without exemplars keeps its
category similarity. The exemplars are kept grouped by code, so a code's best exemplar is the
maximum over one contiguous run of the similarities (a segment maximum, not a scatter),
computed block by block so that no (queries × every exemplar) matrix is ever held.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from occlass.data.examples import Exemplars
from occlass.errors import OcclassError
from occlass.runs import write_atomic

FUSION_GRID = tuple(i / 10 for i in range(11))  # the weights validation chooses among
BLOCK_SIMILARITIES = {torch.float32: 2**17, torch.bfloat16: 2**20}  # query-exemplar similarities
# per block of the lookup (512 KiB in fp32; bf16 blocks also pass through float32): measured fastest
# on bench/predict_speed.py's titles at 256 queries a batch
FEW_QUERIES = 128  # below this many queries, the exemplars are the product's rows, not its
# columns: 1.5x faster at 32 queries, 3x at 8 (a server's passes; 61k O*NET exemplars); no
# faster at 128, slower at 256


@dataclass
class ExemplarMemory:
    """(N, dim) L2-normalised exemplar embeddings, the category index of each, and their titles,
    grouped by category (each category's exemplars in the order given); optionally each
    exemplar's group of surface forms (`occlass.data.examples`; not saved), which a lookup can
    leave out."""

    embeddings: torch.Tensor
    labels: torch.Tensor
    titles: list[str]
    n_codes: int
    identity: dict[str, str]
    groups: list[str] | None = None

    def __post_init__(self):
        order = torch.argsort(self.labels, stable=True)
        if not torch.equal(order, torch.arange(len(order), device=order.device)):
            self.embeddings, self.labels = self.embeddings[order], self.labels[order]
            self.titles = [self.titles[i] for i in order.tolist()]
            if self.groups is not None:
                self.groups = [self.groups[i] for i in order.tolist()]
        counts = torch.bincount(self.labels.cpu(), minlength=self.n_codes)
        self.counts = counts.to(self.labels.device)  # exemplars per code
        self.starts = self.counts.cumsum(0) - self.counts  # where each code's run begins
        self._runs: dict[int, list] = {}  # blocks of whole codes, by block size (`_blocks`)
        self._rows_of: dict[str, list[int]] | None = None  # each group's exemplars

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ExemplarMemory:
        """This memory on `device`, its embeddings in `dtype` (bf16 halves the lookup's work)."""
        return ExemplarMemory(self.embeddings.to(device, dtype), self.labels.to(device),
                              self.titles, self.n_codes, self.identity, self.groups)

    def subset(self, keep: np.ndarray) -> ExemplarMemory:
        """The exemplars where (N,) `keep` is true."""
        rows = np.flatnonzero(keep)
        at = torch.from_numpy(rows).to(self.labels.device)
        return ExemplarMemory(self.embeddings[at], self.labels[at],
                              [self.titles[i] for i in rows], self.n_codes, self.identity,
                              None if self.groups is None else [self.groups[i] for i in rows])

    def similarities(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, N) cosine similarity of each query to every exemplar, in the embeddings' dtype."""
        return queries.to(self.embeddings.dtype) @ self.embeddings.T

    def best(self, queries: torch.Tensor, leave_out: list[str] | None = None) -> torch.Tensor:
        """(B, n_codes) float32 best exemplar similarity of each query per code; -inf where a
        code has none. On CPU block by block, each block a run of whole codes small enough that
        its (B, block) similarities stay in cache while each code's maximum is taken (a segment
        maximum, numpy's reduceat); elsewhere one product and a scatter. `leave_out`: per
        query, a group whose exemplars its lookup ignores (as if the memory lacked them)."""
        queries = queries.detach().to(self.embeddings.dtype)
        if queries.device.type != "cpu":
            best = torch.full((len(queries), self.n_codes), float("-inf"),
                              device=queries.device)
            index = self.labels.expand(len(queries), -1)
            best = best.scatter_reduce(1, index, self.similarities(queries).float(), "amax")
        else:
            best = np.full((len(queries), self.n_codes), -np.inf, dtype=np.float32)
            per_block = BLOCK_SIMILARITIES.get(self.embeddings.dtype, 2**18)
            size = max(1, per_block // max(len(queries), 1))
            few = len(queries) < FEW_QUERIES
            for codes, first, last, starts in self._blocks(size):
                exemplars = self.embeddings[first:last]
                if few:
                    block = (exemplars @ queries.T).float().numpy()
                    best[:, codes] = np.maximum.reduceat(block, starts, axis=0).T
                else:
                    block = (queries @ exemplars.T).float().numpy()
                    best[:, codes] = np.maximum.reduceat(block, starts, axis=1)
            best = torch.from_numpy(best)
        if leave_out is not None:
            self._leave_out(best, queries, leave_out)
        return best

    def _leave_out(self, best: torch.Tensor, queries: torch.Tensor,
                   leave_out: list[str]) -> None:
        """Each query's best similarity, again without its group's exemplars, for the codes
        that group holds (in place)."""
        if self.groups is None:
            raise ValueError("this memory has no exemplar groups to leave out")
        if len(leave_out) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(leave_out)} groups to leave out")
        if self._rows_of is None:
            self._rows_of = {}
            for i, group in enumerate(self.groups):
                self._rows_of.setdefault(group, []).append(i)
        labels = self.labels.cpu().numpy()
        for row, group in enumerate(leave_out):
            own = self._rows_of.get(group, [])
            for code in sorted(set(labels[own].tolist())):
                start, count = int(self.starts[code]), int(self.counts[code])
                rest = np.setdiff1d(np.arange(start, start + count), own)
                at = torch.from_numpy(rest).to(self.embeddings.device)
                best[row, code] = ((queries[row] @ self.embeddings[at].T).float().max()
                                   if len(rest) else float("-inf"))

    def _blocks(self, size: int) -> list[tuple[np.ndarray, int, int, np.ndarray]]:
        """Runs of consecutive codes with at most `size` exemplars in all (a code with more is a
        run of its own): each run's codes that have exemplars, its first and past-last exemplar,
        and where each of those codes begins within the run."""
        if size not in self._runs:
            counts, starts = self.counts.cpu().numpy(), self.starts.cpu().numpy()
            runs, first = [], 0
            while first < self.n_codes:
                last = first + 1
                while last < self.n_codes and starts[last] + counts[last] - starts[first] <= size:
                    last += 1
                codes = first + np.flatnonzero(counts[first:last])
                if len(codes):
                    end = int(starts[last - 1] + counts[last - 1])
                    runs.append((codes, int(starts[first]), end, starts[codes] - starts[first]))
                first = last
            self._runs[size] = runs
        return self._runs[size]

    def evidence(self, queries: torch.Tensor, codes: torch.Tensor) -> tuple[list[str],
                                                                             torch.Tensor]:
        """For each row, the exemplar of category `codes[row]` most similar to the row's query
        (the first of equals): its title ("" where the code has none) and similarity (NaN
        there). Computes only the asked codes' similarities."""
        queries = queries.detach().to(self.embeddings.dtype)
        codes = codes.cpu().numpy()
        order = np.argsort(codes, kind="stable")  # rows of one code together
        bounds = np.flatnonzero(np.diff(codes[order], prepend=-1, append=-1))
        ordered = queries[torch.from_numpy(order).to(queries.device)]
        found = np.full(len(codes), -1)  # each row's exemplar; -1: its code has none
        values = np.full(len(codes), np.nan, dtype=np.float32)
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            code = codes[order[lo]]
            start, count = int(self.starts[code]), int(self.counts[code])
            if count:
                value, at = (ordered[lo:hi] @ self.embeddings[start:start + count].T).max(1)
                found[order[lo:hi]] = start + at.cpu().numpy()
                values[order[lo:hi]] = value.float().cpu().numpy()
        return ([self.titles[i] if i >= 0 else "" for i in found.tolist()],
                torch.from_numpy(values).to(queries.device))

    def save(self, path: str | Path) -> None:
        state = {"embeddings": self.embeddings.cpu(), "labels": self.labels.cpu(),
                 "titles": self.titles, "n_codes": self.n_codes, "identity": self.identity}
        write_atomic(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | Path) -> ExemplarMemory:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            memory = cls(state["embeddings"], state["labels"], state["titles"], state["n_codes"],
                         state["identity"])
        except (OSError, KeyError, TypeError, RuntimeError, EOFError,
                pickle.UnpicklingError) as err:
            raise OcclassError(f"{path}: not a readable exemplar memory ({err})") from None
        if not memory.well_formed():
            raise OcclassError(f"{path}: not an exemplar memory (wrong types, shapes or labels)")
        return memory

    def well_formed(self) -> bool:
        """Types, shapes and label range agree (a damaged or foreign file's may not)."""
        embeddings, labels, n = self.embeddings, self.labels, self.n_codes
        return (isinstance(embeddings, torch.Tensor) and embeddings.is_floating_point()
                and embeddings.ndim == 2 and isinstance(labels, torch.Tensor)
                and labels.dtype == torch.long and labels.shape == (len(embeddings),)
                and isinstance(n, int) and not isinstance(n, bool)
                and (not len(labels) or 0 <= labels.min() <= labels.max() < n)
                and isinstance(self.titles, list) and len(self.titles) == len(labels)
                and all(isinstance(t, str) for t in self.titles)
                and isinstance(self.identity, dict))


def fuse(category: torch.Tensor, exemplar: torch.Tensor, weight: float) -> torch.Tensor:
    """(1 - weight) * category + weight * exemplar similarity; codes without exemplars (-inf)
    keep their category similarity."""
    exemplar = torch.where(torch.isinf(exemplar), category, exemplar)
    return (1 - weight) * category + weight * exemplar


def best_fusion_weight(grid_accuracy: torch.Tensor) -> float:
    """The weight of FUSION_GRID with the best accuracy (`GridAccuracy` over the grid; the
    smallest weight of a tie): how validation chooses the fusion weight."""
    return FUSION_GRID[int(grid_accuracy.argmax())]


def build_memory(encoder, exemplars: Exemplars, n_codes: int, pad_id: int,
                 identity: dict[str, str], batch_size: int = 256) -> ExemplarMemory:
    """Encode the exemplars (eval mode) into a memory."""
    embeddings = encoder.encode_ids(exemplars.token_ids, pad_id, batch_size)
    labels = torch.tensor(exemplars.labels, dtype=torch.long, device=embeddings.device)
    return ExemplarMemory(embeddings, labels, list(exemplars.titles), n_codes, identity)
