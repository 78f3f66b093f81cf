"""Learning from reviewers' decisions, one decision at a time: a file's undecided rows to review
take the code of the reviewers' O*NET-SOC decision (a correction) they nearly equal, as
`Predictor` with corrections= answers them: the code of the most similar correction whose
similarity reaches `threshold`, among the corrections as `load_corrections` reads them.

Exact and incremental. Each title is encoded once (on the model thread, a chunk at a time, so a
file's titles take turns with the API's batches); a decision then encodes only a title not seen
before. After a decision every undecided row is below the threshold against every correction:
it stays so unless a correction added since nearly equals it (removing a correction never
decides a row). So a decision looks up, against all the corrections, only the undecided rows
whose titles nearly equal a correction it adds, and the rows it puts back to review (those
learnt from the decision it replaces); the others cannot change. An undo puts rows back to
review unlooked-at: the next decision looks at every row, as does the first on a file.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
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
    """A file's encoded titles, its rows to review by title, and what its last decision
    established."""

    rows_of: dict[str, list[int]]  # title → its rows to review
    titles: list[str] = field(default_factory=list)  # each row of `embeddings`
    at: dict[str, int] = field(default_factory=dict)  # title → its row of `embeddings`
    embeddings: torch.Tensor | None = None
    settled: bool = False  # every undecided row is below every correction of
    corrections: set[str] = field(default_factory=set)  # these titles


class Learner:
    """The rows each decision decides (`learn`); `review_rows(file)`: a file's rows to review
    (row, title). Keeps the encoded titles of the `files` files used last."""

    def __init__(self, predictor: Predictor, executor: Executor, threshold: float,
                 review_rows: Callable[[int], list[tuple[int, str | None]]],
                 chunk_rows: int = 256, files: int = 8):
        self.predictor, self.executor, self.threshold = predictor, executor, threshold
        self.review_rows, self.chunk_rows, self.files = review_rows, chunk_rows, files
        self.index = {code: i for i, code in enumerate(predictor.codes)}
        self._files: OrderedDict[int, _File] = OrderedDict()
        self._lock = threading.Lock()

    def _file(self, file: int) -> _File:
        """The file's state; a file not used lately has its titles encoded first."""
        with self._lock:
            known = self._files.get(file)
        if known is None:
            rows = self.review_rows(file)
            known = _File({})
            for row, title in rows:
                known.rows_of.setdefault(_strip(title), []).append(row)
            self._warm(known, known.rows_of)
        with self._lock:
            known = self._files.setdefault(file, known)
            self._files.move_to_end(file)
            while len(self._files) > self.files:
                self._files.popitem(last=False)
        return known

    def warm(self, file: int, titles: Iterable[str | None] = ()) -> None:
        """Encode the titles of `file`'s rows to review and `titles`, those not encoded yet,
        on the model thread a chunk at a time (never call it from the model thread)."""
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
            known.at.update((new[i], len(known.titles) + j) for j, i in enumerate(keep))
            known.titles += [new[i] for i in keep]
            known.embeddings = (embeddings[keep] if known.embeddings is None
                                else torch.cat([known.embeddings, embeddings[keep]]))

    def undone(self, file: int) -> None:
        """Rows of `file` are back to review: the next decision looks at every row."""
        with self._lock:
            if file in self._files:
                self._files[file].settled = False

    def learn(self, file: int, corrections: list[tuple[str | None, str]],
              pending: Callable[[list[int] | None], list[tuple[int, str | None]]],
              returned: Iterable[int] = ()) -> list[tuple[int, str]]:
        """The rows still to review that the file's `corrections` (title, code: the reviewers'
        decisions in file order) decide, with their code; `pending(rows)`: those of `rows` (all:
        None) still to review (row, title); `returned`: the rows this decision puts back to
        review. Calls for one file must come one at a time (the store's transaction)."""
        latest = {}  # as load_corrections: one per normalised title, the later one
        for title, code in corrections:
            if title := _strip(title):
                latest[_key(title)] = title, code
        known = self._file(file)
        self._warm(known, [t for t, _ in latest.values()])
        with self._lock:
            settled, at, embeddings = known.settled, known.at, known.embeddings
        if not latest:
            rows = []
        elif settled:
            new = sorted({at[t] for t, _ in latest.values() if t not in known.corrections})
            near = []
            if new:
                similar = (embeddings @ embeddings[new].T).amax(1) >= self.threshold - MARGIN
                near = [r for i in np.flatnonzero(similar.numpy()).tolist()
                        for r in known.rows_of.get(known.titles[i], ())]
            rows = pending([*near, *returned]) if near or returned else []
        else:
            rows = pending(None)
        check = [(row, title) for row, title in ((r, _strip(t)) for r, t in rows)
                 if title and title not in MISSING_MARKERS]  # else no prediction, as Predictor
        self._warm(known, [t for _, t in check])  # normally encoded already
        with self._lock:
            embeddings = known.embeddings  # `at` only grows
        learnt = {}
        if check:
            memory = ExemplarMemory(embeddings[[at[t] for t, _ in latest.values()]],
                                    torch.tensor([self.index[c] for _, c in latest.values()]),
                                    [t for t, _ in latest.values()], len(self.index), {})
            best = memory.best(embeddings[[at[t] for _, t in check]])
            value, code = torch.where(best >= self.threshold, best, -torch.inf).max(1)
            for (row, _), found, c in zip(check, (value >= self.threshold).tolist(),
                                          code.tolist()):
                if found:
                    learnt[row] = self.predictor.codes[c]
        with self._lock:
            known.settled, known.corrections = True, {t for t, _ in latest.values()}
        return list(learnt.items())


_key = functools.lru_cache(2**16)(normalize_title)


def _strip(title: str | None) -> str:
    return "" if title is None else str(title).strip()
