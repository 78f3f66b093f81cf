"""The exemplar memory: embeddings of labelled titles (O*NET's own lists, the user's files and
corrections) with their codes, and its fusion with category similarity.

A code's score is `(1 - w) * category similarity + w * best exemplar similarity`; `w` = 0 is
category similarity alone, `w` = 1 nearest-neighbour lookup. A code without exemplars keeps its
category similarity. The exemplars are kept grouped by code, so a code's best exemplar is the
maximum over one contiguous run of the similarities (a segment maximum, not a scatter).
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


@dataclass
class ExemplarMemory:
    """(N, dim) L2-normalised exemplar embeddings, the category index of each, and their titles,
    grouped by category (each category's exemplars in the order given)."""

    embeddings: torch.Tensor
    labels: torch.Tensor
    titles: list[str]
    n_codes: int
    identity: dict[str, str]

    def __post_init__(self):
        order = torch.argsort(self.labels, stable=True)
        if not torch.equal(order, torch.arange(len(order), device=order.device)):
            self.embeddings, self.labels = self.embeddings[order], self.labels[order]
            self.titles = [self.titles[i] for i in order.tolist()]
        counts = torch.bincount(self.labels.cpu(), minlength=self.n_codes)
        self.counts = counts.to(self.labels.device)  # exemplars per code
        self.starts = self.counts.cumsum(0) - self.counts  # where each code's run begins

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ExemplarMemory:
        """This memory on `device`, its embeddings in `dtype` (bf16 halves the lookup's work)."""
        return ExemplarMemory(self.embeddings.to(device, dtype), self.labels.to(device),
                              self.titles, self.n_codes, self.identity)

    def similarities(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, N) cosine similarity of each query to every exemplar, in the embeddings' dtype."""
        return queries.to(self.embeddings.dtype) @ self.embeddings.T

    def best(self, similarities: torch.Tensor) -> torch.Tensor:
        """(B, n_codes) best exemplar similarity per code; -inf where a code has none. On CPU a
        segment maximum (numpy's reduceat), elsewhere a scatter."""
        best = torch.full((similarities.shape[0], self.n_codes), float("-inf"),
                          device=similarities.device, dtype=similarities.dtype)
        if similarities.device.type != "cpu":
            index = self.labels.expand(similarities.shape[0], -1)
            return best.scatter_reduce(1, index, similarities, "amax")
        filled = self.counts > 0
        best[:, filled] = torch.from_numpy(np.maximum.reduceat(
            similarities.detach().float().numpy(), self.starts[filled].numpy(),
            axis=1)).to(best.dtype)
        return best

    def evidence(self, similarities: torch.Tensor, codes: torch.Tensor) -> tuple[list[str],
                                                                                  torch.Tensor]:
        """For each row, the exemplar of category `codes[row]` most similar to the row's query
        (the first of equals): its title ("" where the code has none) and similarity (NaN
        there). Reads only the runs of the asked codes."""
        start, count = self.starts[codes], self.counts[codes]
        offset = torch.arange(max(int(count.max()), 1), device=similarities.device)
        index = (start.unsqueeze(1) + offset).clamp(max=similarities.shape[1] - 1)
        own = similarities.gather(1, index).masked_fill(offset >= count.unsqueeze(1),
                                                        float("-inf"))
        value, at = own.max(dim=1)
        titles = [self.titles[i] if n else "" for i, n in zip((start + at).tolist(),
                                                               count.tolist())]
        return titles, torch.where(count > 0, value, torch.nan)

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


def build_memory(encoder, exemplars: Exemplars, n_codes: int, pad_id: int,
                 identity: dict[str, str], batch_size: int = 256) -> ExemplarMemory:
    """Encode the exemplars (eval mode) into a memory."""
    embeddings = encoder.encode_ids(exemplars.token_ids, pad_id, batch_size)
    labels = torch.tensor(exemplars.labels, dtype=torch.long, device=embeddings.device)
    return ExemplarMemory(embeddings, labels, list(exemplars.titles), n_codes, identity)
