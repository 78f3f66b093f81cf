"""Learning from reviewers' decisions, one decision at a time: a file's undecided rows to review
take the code of the reviewers' O*NET-SOC decision (a correction) they nearly equal, as
`Predictor` with corrections= answers them: the code of the most similar correction whose
similarity reaches `threshold`, among the corrections as `load_corrections` reads them.

Exact and incremental. Each title is encoded once (on the model thread, a chunk at a time, so a
file's titles take turns with the API's batches); a decision then encodes only a title not seen
before. A row that was undecided at the file's last decision was checked then against every
correction of that time: it stays below the threshold unless a correction added since reaches
it (removing a correction never decides a row). So a decision looks up, against all the
corrections, only the rows that were not undecided then (undone, evicted, new) and those that a
new correction's title nearly equals; the others cannot change.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import torch

from occlass.data.tabular_io import MISSING_MARKERS
from occlass.data.text import normalize_title
from occlass.model.memory import ExemplarMemory
from occlass.predict.predictor import Predictor

MARGIN = 1e-4  # similarities this far below the threshold are looked up again, exactly


@dataclass
class _File:
    """A file's encoded titles, and what its last decision established."""

    at: dict[str, int] = field(default_factory=dict)  # title → its row of `embeddings`
    embeddings: torch.Tensor | None = None
    clear: set[int] = field(default_factory=set)  # undecided rows below every correction of
    corrections: set[str] = field(default_factory=set)  # these titles, at the last decision


class Learner:
    """The rows each decision decides (`learn`), keeping the encoded titles of the `files`
    files used last."""

    def __init__(self, predictor: Predictor, executor: Executor, threshold: float,
                 chunk_rows: int = 256, files: int = 8):
        self.predictor, self.executor, self.threshold = predictor, executor, threshold
        self.chunk_rows, self.files = chunk_rows, files
        self.index = {code: i for i, code in enumerate(predictor.codes)}
        self._files: OrderedDict[int, _File] = OrderedDict()
        self._lock = threading.Lock()

    def _file(self, file: int) -> _File:
        with self._lock:
            known = self._files.setdefault(file, _File())
            self._files.move_to_end(file)
            while len(self._files) > self.files:
                self._files.popitem(last=False)
            return known

    def knows(self, file: int) -> bool:
        return file in self._files

    def warm(self, file: int, titles: Iterable[str | None]) -> None:
        """Encode the titles of `file` not encoded yet, on the model thread a chunk at a time
        (never call it from the model thread)."""
        self._warm(self._file(file), titles)

    def _warm(self, known: _File, titles: Iterable[str | None]) -> None:
        new = [t for t in dict.fromkeys(map(_strip, titles)) if t and t not in known.at]
        if not new:
            return
        embeddings = torch.cat([
            self.executor.submit(self.predictor.embed, new[i:i + self.chunk_rows]).result()
            for i in range(0, len(new), self.chunk_rows)])
        with self._lock:
            keep = [i for i, t in enumerate(new) if t not in known.at]  # not added meanwhile
            base = len(known.at)
            known.at.update((new[i], base + j) for j, i in enumerate(keep))
            known.embeddings = (embeddings[keep] if known.embeddings is None
                                else torch.cat([known.embeddings, embeddings[keep]]))

    def learn(self, file: int, corrections: list[tuple[str | None, str]],
              pending: list[tuple[int, str | None]]) -> list[tuple[int, str]]:
        """The rows of `pending` (row, title: the file's undecided rows to review) that the
        file's `corrections` (title, code: the reviewers' decisions in file order) decide, with
        their code. Calls for one file must come one at a time (the store's transaction)."""
        latest = {}  # as load_corrections: one per normalised title, the later one
        for title, code in corrections:
            if title := _strip(title):
                latest[_key(title)] = title, code
        known = self._file(file)
        self._warm(known, [t for t, _ in latest.values()])  # normally known already
        with self._lock:
            at, embeddings = known.at, known.embeddings
        new = [at[t] for t, _ in latest.values() if t not in known.corrections]
        near = set()
        if new:
            similar = (embeddings @ embeddings[new].T).amax(1) >= self.threshold - MARGIN
            near = set(np.flatnonzero(similar.numpy()).tolist())
        clear = known.clear
        check = []  # (row, title) to look up; a title not known is a row not seen before
        for row, title in pending if latest else ():
            if row in clear and not near:
                continue
            title = _strip(title)
            if title and title not in MISSING_MARKERS and (  # else no prediction, as Predictor
                    row not in clear or at.get(title) in near):
                check.append((row, title))
        self._warm(known, [t for _, t in check])
        with self._lock:
            at, embeddings = dict(known.at), known.embeddings
        learnt = {}
        if check:
            memory = ExemplarMemory(embeddings[[at[t] for t, _ in latest.values()]],
                                    torch.tensor([self.index[c] for _, c in latest.values()]),
                                    [t for t, _ in latest.values()], len(self.index), {})
            best = memory.best(embeddings[[at[t] for _, t in check]])
            value, code = torch.where(best >= self.threshold, best, -torch.inf).max(1)
            for (row, _), decided, c in zip(check, (value >= self.threshold).tolist(),
                                            code.tolist()):
                if decided:
                    learnt[row] = self.predictor.codes[c]
        known.clear = {row for row, _ in pending if row not in learnt}
        known.corrections = {t for t, _ in latest.values()}
        return list(learnt.items())


_key = functools.lru_cache(2**16)(normalize_title)


def _strip(title: str | None) -> str:
    return "" if title is None else str(title).strip()
