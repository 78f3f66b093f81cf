"""The prediction library: rank the occupations of a taxonomy for job titles with a run's parts
(`occlass.predict.loader`). It encodes, scores, ranks and explains; it loads nothing and reads no
files: `occlass.predict.job` streams tables through it for `predict.py`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from occlass.data.tabular_io import is_missing_marker
from occlass.errors import DataError, OcclassError
from occlass.model.memory import ExemplarMemory, fuse
from occlass.predict.loader import RunParts

log = logging.getLogger(__name__)

PRECISIONS = ("32", "bf16")
MAX_DESCRIPTION_LENGTH = 256
CORRECTION_THRESHOLD = 0.92  # a correction decides a title at least this similar to it
# (bench/review.py: 0.85 took 4.5 points from unrelated titles, 0.92 none, 0.95 fewer variants)


@dataclass
class Ranked:
    """Top-k category indices and scores per input, the top-1's confidence and evidence."""

    index: np.ndarray
    scores: np.ndarray
    confidence: np.ndarray
    evidence: np.ndarray

    def take(self, rows) -> Ranked:
        return Ranked(self.index[rows], self.scores[rows], self.confidence[rows],
                      self.evidence[rows])

    @staticmethod
    def concat(parts: list[Ranked]) -> Ranked:
        return Ranked(*(np.concatenate([getattr(p, f) for p in parts])
                        for f in ("index", "scores", "confidence", "evidence")))


@dataclass
class Predictions:
    """Top-k occupations per input row, best first; rows without a prediction hold None and NaN."""

    codes: np.ndarray   # (N, k) O*NET-SOC codes
    titles: np.ndarray  # (N, k) occupation titles
    scores: np.ndarray  # (N, k) fused scores
    status: np.ndarray  # (N,) "ok", or why the row has no prediction
    confidence: np.ndarray | None = None    # (N,) calibrated probability that code 1 is right
    needs_review: np.ndarray | None = None  # (N,) confidence below the review threshold
    evidence: np.ndarray | None = None      # (N,) "exemplar title (similarity)" for code 1

    def to_frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        """Columns pred_code_1..k, pred_title_1..k, pred_score_1..k, then confidence and
        needs_review (with a calibrated run), pred_evidence_1 (with evidence on), status."""
        columns = {}
        for name, values in (("code", self.codes), ("title", self.titles),
                             ("score", self.scores.astype(np.float64).round(6))):
            columns.update({f"pred_{name}_{j + 1}": values[:, j] for j in range(values.shape[1])})
        if self.confidence is not None:
            columns["confidence"] = self.confidence.astype(np.float64).round(4)
            columns["needs_review"] = self.needs_review
        if self.evidence is not None:
            columns["pred_evidence_1"] = self.evidence
        return pd.DataFrame({**columns, "status": self.status}, index=index)


def _is_marker(values: pd.Series) -> np.ndarray:
    """Where a value is a missing-value marker such as "NA" or "null" (not "" or a real null)."""
    blank = values.astype("string").str.strip().eq("")
    return (is_missing_marker(values) & ~blank).fillna(False).to_numpy(bool)


def _text(values: Sequence) -> np.ndarray:
    """Strings, stripped; missing values (None, NaN) become ""."""
    return pd.Series(values, dtype=object).fillna("").astype(str).str.strip().to_numpy()


class Predictor:
    """Scores every occupation for each input, top-k per input.

    A title's score for a code is its cosine similarity to the code's category text, fused with
    its best similarity to the code's exemplars (`memory`, weight `fusion_weight`; see
    `occlass.model.memory`). A description is encoded on its own, and its category similarity,
    times `description_weight`, is added (late fusion): a title-only row scores as it would
    without. Built from a run's parts (`occlass.predict.loader`). A forward pass takes at most
    `batch_size` inputs and `batch_tokens` tokens (padding included).
    """

    def __init__(self, parts: RunParts, max_input_length: int | None = None,
                 batch_size: int = 256, batch_tokens: int = 2048, precision: str = "32",
                 memo_size: int = 100_000, evidence: bool = True,
                 review_below: float | None = None,
                 max_description_length: int = MAX_DESCRIPTION_LENGTH,
                 correction_threshold: float = CORRECTION_THRESHOLD):
        if str(precision) not in PRECISIONS:
            raise OcclassError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
        self.encoder = parts.encoder.eval()
        self.device = next(self.encoder.parameters()).device
        self.tokenizer = parts.tokenizer
        self.embeddings = parts.cache.embeddings.to(self.device)
        self.codes = np.array(parts.cache.codes, dtype=object)
        self.titles = np.array(parts.taxonomy.titles, dtype=object)
        self.max_input_length = max_input_length or parts.max_input_length
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.bf16 = str(precision) == "bf16"
        self.memo_size = memo_size
        self.memory = None if parts.memory is None else parts.memory.to(
            self.device, torch.bfloat16 if self.bf16 else torch.float32)
        self.fusion_weight = parts.fusion_weight
        self.description_weight = parts.description_weight
        self.max_description_length = max_description_length
        self.calibrator = parts.calibrator
        if self.calibrator is not None and review_below is not None:
            self.calibrator = dataclasses.replace(self.calibrator, review_below=review_below)
        self.evidence = evidence and self.memory is not None
        self.corrections = (None if parts.corrections is None
                            else parts.corrections.to(self.device))
        self.correction_threshold = correction_threshold
        self._memo: dict[int, dict[bytes, tuple[np.ndarray, np.ndarray]]] = {}

    def set_corrections(self, corrections: ExemplarMemory | None) -> None:
        """Reviewed titles (`occlass.predict.loader.load_corrections`) that decide the answer for
        the titles nearly equal to them, from now on (remembered answers are forgotten)."""
        self.corrections = None if corrections is None else corrections.to(self.device)
        self._memo.clear()

    def predict(self, titles: Sequence, descriptions: Sequence | None = None,
                top_k: int = 5) -> Predictions:
        """The top-k occupations of each title (followed by its description, if any).

        Empty or missing titles get no prediction; missing descriptions count as absent.
        Inputs are truncated to `max_input_length` tokens.
        """
        if top_k < 1:
            raise OcclassError(f"top_k must be at least 1, not {top_k}")
        k = min(top_k, len(self.codes))
        titles = _text(titles)
        descriptions = (_text(descriptions) if descriptions is not None
                        else np.full(len(titles), "", dtype=object))
        if len(descriptions) != len(titles):
            raise ValueError(f"{len(titles)} titles but {len(descriptions)} descriptions")
        ok = titles != ""
        codes = np.full((len(titles), k), None, dtype=object)
        names = codes.copy()
        scores = np.full((len(titles), k), np.nan, dtype=np.float32)
        confidence = np.full(len(titles), np.nan, dtype=np.float32)
        evidence = np.full(len(titles), None, dtype=object)
        described = ok & (descriptions != "")
        for rows, rank in ((ok & ~described, self._rank_titles),
                           (described, self._rank_described)):
            if rows.any():
                ranked = rank(titles[rows], descriptions[rows], k)
                codes[rows], names[rows] = self.codes[ranked.index], self.titles[ranked.index]
                scores[rows], confidence[rows], evidence[rows] = (ranked.scores,
                                                                  ranked.confidence,
                                                                  ranked.evidence)
        review = None
        if self.calibrator is not None:
            review = np.where(ok, confidence < self.calibrator.review_below, None)
        return Predictions(codes, names, scores, np.where(ok, "ok", "empty title").astype(object),
                           confidence if self.calibrator is not None else None, review,
                           evidence if self.evidence else None)

    def _ids(self, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, list[list[int]]]:
        """Each text's row among the distinct texts, and their token ids."""
        rows, unique = pd.factorize(pd.Series(texts, dtype=object))
        ids = self.tokenizer(list(unique), truncation=True, max_length=max_length)["input_ids"]
        return rows, ids

    def _encode(self, ids: list[list[int]]) -> torch.Tensor:
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            return self.encoder.encode_ids(ids, self.pad_id, len(ids))

    def title_scores(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, n_codes): category similarity fused with the best exemplar similarity (and
        raised above every cosine for a code whose correction the title nearly matches); and the
        (B, n_exemplars) exemplar similarities, for the evidence."""
        scores = embeddings @ self.embeddings.T
        similarities = None
        if self.memory is not None:
            similarities = self.memory.similarities(embeddings)
            scores = fuse(scores, self.memory.best(similarities), self.fusion_weight)
        if self.corrections is not None:
            best = self.corrections.best(self.corrections.similarities(embeddings))
            scores = torch.where(best >= self.correction_threshold, 1 + best, scores)
        return scores, similarities

    def _ranked(self, scores: torch.Tensor, similarities: torch.Tensor | None,
                embeddings: torch.Tensor, k: int) -> Ranked:
        """Top-k of (B, n_codes) scores, with the top-1's confidence and evidence."""
        top, index = scores.topk(k, dim=1)
        confidence = (self.calibrator.confidence(scores) if self.calibrator is not None
                      else torch.full((len(scores),), float("nan")))
        evidence = np.full(len(scores), None, dtype=object)
        if self.evidence:
            evidence[:] = self._evidence(similarities, embeddings, index[:, 0])
        return Ranked(index.cpu().numpy(), top.float().cpu().numpy(),
                      confidence.float().cpu().numpy(), evidence)

    def _evidence(self, similarities: torch.Tensor, embeddings: torch.Tensor,
                  codes: torch.Tensor) -> list[str]:
        """"Title (0.91)": the exemplar (a correction first) that most supports each code."""
        titles, values = self.memory.evidence(similarities, codes)
        if self.corrections is not None:
            fixed, fixed_values = self.corrections.evidence(
                self.corrections.similarities(embeddings), codes)
            use = (fixed_values >= self.correction_threshold).tolist()
            titles = [f if u else t for t, f, u in zip(titles, fixed, use)]
            values = torch.where(torch.tensor(use, device=values.device), fixed_values, values)
        return [f"{t} ({v:.2f})" if t else "" for t, v in zip(titles, values.tolist())]

    def _rank_titles(self, titles: np.ndarray, _, k: int) -> Ranked:
        rows, ids = self._ids(titles, self.max_input_length)
        return self._rank(ids, k).take(rows)

    @torch.inference_mode()
    def _rank(self, ids: list[list[int]], k: int) -> Ranked:
        """Top-k per tokenised title. Each distinct token sequence is encoded once, also across
        calls (up to `memo_size` remembered inputs)."""
        memo = self._memo.setdefault(k, {})
        if len(memo) > self.memo_size:
            memo.clear()
        keys = [np.asarray(i, dtype=np.int32).tobytes() for i in ids]
        new = sorted({key: i for i, key in enumerate(keys) if key not in memo}.values(),
                     key=lambda i: len(ids[i]))  # by length, so batches need little padding
        for batch in self._batches(new, ids):
            embeddings = self._encode([ids[i] for i in batch])
            ranked = self._ranked(*self.title_scores(embeddings), embeddings, k)
            memo.update((keys[i], ranked.take([j])) for j, i in enumerate(batch))
        return Ranked.concat([memo[key] for key in keys])

    @torch.inference_mode()
    def similarities(self, texts: Sequence[str], max_length: int, memory: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, n_codes) category similarities of the texts and, with a memory, their best
        exemplar similarity per code (on CPU)."""
        rows, ids = self._ids(texts, max_length)
        use_memory = memory and self.memory is not None
        category = torch.empty(len(ids), len(self.codes))
        exemplar = torch.empty(len(ids), len(self.codes)) if use_memory else None
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for batch in self._batches(order, ids):
            embeddings = self._encode([ids[i] for i in batch]).float()
            category[batch] = (embeddings @ self.embeddings.T).cpu()
            if use_memory:
                exemplar[batch] = self.memory.best(self.memory.similarities(embeddings)).cpu()
        rows = torch.as_tensor(rows)
        return category[rows], None if exemplar is None else exemplar[rows]

    def score_parts(self, titles: Sequence[str], descriptions: Sequence[str]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, n_codes) fused title scores and description category similarities (on CPU)."""
        category, exemplar = self.similarities(titles, self.max_input_length)
        title = category if exemplar is None else fuse(category, exemplar, self.fusion_weight)
        return title, self.similarities(descriptions, self.max_description_length, False)[0]

    @torch.inference_mode()
    def _rank_described(self, titles: np.ndarray, descriptions: np.ndarray, k: int) -> Ranked:
        """Late fusion: the title's scores + description_weight × the description's category
        similarity."""
        described = self.similarities(descriptions, self.max_description_length,
                                      memory=False)[0].to(self.device)
        parts, order = [], []
        title_ids = self.tokenizer(list(titles), truncation=True,
                                   max_length=self.max_input_length)["input_ids"]
        by_length = sorted(range(len(titles)), key=lambda i: len(title_ids[i]))
        for batch in self._batches(by_length, title_ids):
            embeddings = self._encode([title_ids[i] for i in batch])
            scores, similarities = self.title_scores(embeddings)
            scores = scores + self.description_weight * described[batch]
            parts.append(self._ranked(scores, similarities, embeddings, k))
            order += batch
        return Ranked.concat(parts).take(np.argsort(order))

    def _batches(self, order: list[int], ids: list[list[int]]) -> Iterator[list[int]]:
        """Consecutive runs of `order` (shortest input first) that fit one forward pass."""
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) == self.batch_size
                          or (len(batch) + 1) * len(ids[i]) > self.batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def predict_frame(self, frame: pd.DataFrame, top_k: int = 5, title_column: str = "title",
                      description_column: str | None = "description",
                      source: str | Path = "the input") -> pd.DataFrame:
        """`frame`'s columns, then the prediction columns (`Predictions.to_frame`). The
        description column is optional (absent = titles only); errors name `source`.

        The usual missing-value markers ("NA", "null", "NaN", ... as pandas reads them) count
        as missing: a description as absent, a title as no title (status "title is a
        missing-value marker"). `frame`'s own values are left as they are."""
        titles = frame[title_column]
        marker = _is_marker(titles)
        description = frame.get(description_column) if description_column else None
        if description is not None:
            description = description.where(~_is_marker(description))
        predictions = self.predict(titles.where(~marker), description, top_k)
        predictions.status[marker] = "title is a missing-value marker"
        result = predictions.to_frame(frame.index)
        if clash := [c for c in result if c in frame]:
            raise DataError(f"{source}: has column(s) {', '.join(clash)}, which prediction "
                            "writes; rename them")
        return pd.concat([frame, result], axis=1)
