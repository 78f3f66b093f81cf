"""The prediction library: rank the occupations of a taxonomy for job titles with a run's parts
(`occlass.predict.loader`). It encodes, scores, ranks and explains; it loads nothing and reads no
files: `occlass.predict.job` streams tables through it for `predict.py`."""

from __future__ import annotations

import copy
import dataclasses
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from occlass.data.soc import LEVELS
from occlass.data.tabular_io import is_missing_marker
from occlass.errors import DataError, OcclassError
from occlass.model.confidence import choose_level, level_groups, signals
from occlass.model.memory import ExemplarMemory, fuse
from occlass.precision import native_bf16
from occlass.predict.loader import RunParts

log = logging.getLogger(__name__)

PRECISIONS = ("32", "bf16")
CONFIDENCES = ("levels", "platt")  # the confidence model, or the older top-label calibrator
MAX_DESCRIPTION_LENGTH = 256
CORRECTION_THRESHOLD = 0.95  # a correction decides a title at least this similar to it
# (chosen on validation by bench/review.py: the best variant top-1 among thresholds that turn at
# most 0.1% of the other titles from right to wrong; 0.88 turned 2.1%)
CHARS_PER_TOKEN = 16  # a text is cut to this many characters per token of its limit before
# tokenising: a WordPiece token covers at least one character, so no token within the limit is
# lost unless the text runs long stretches of spaces or marks the tokenizer drops


class TitleScores(NamedTuple):
    """(B, n_codes) fused scores, category and best exemplar similarities (None without a
    memory), and where a correction decides the code (None without corrections)."""

    scores: torch.Tensor
    category: torch.Tensor
    exemplar: torch.Tensor | None
    corrected: torch.Tensor | None = None


@dataclass
class Ranked:
    """Top-k category indices and scores per input, the top-1's confidence and evidence, and
    with a confidence model, each level's answer (a group index) and its probability."""

    index: np.ndarray
    scores: np.ndarray
    confidence: np.ndarray
    evidence: np.ndarray
    level_group: np.ndarray
    level_confidence: np.ndarray

    FIELDS = ("index", "scores", "confidence", "evidence", "level_group", "level_confidence")

    def take(self, rows) -> Ranked:
        return Ranked(*(getattr(self, f)[rows] for f in self.FIELDS))

    @staticmethod
    def concat(parts: list[Ranked]) -> Ranked:
        return Ranked(*(np.concatenate([getattr(p, f) for p in parts]) for f in Ranked.FIELDS))

    def top(self, k: int) -> Ranked:
        """The first k of each ranking (the rest does not depend on k)."""
        return dataclasses.replace(self, index=self.index[:, :k], scores=self.scores[:, :k])

    def nbytes(self) -> int:
        """Memory held, arrays and evidence texts included."""
        return sys.getsizeof(self) + sum(sys.getsizeof(getattr(self, f)) for f in self.FIELDS) \
            + sum(sys.getsizeof(e) for e in self.evidence if e is not None)


@dataclass
class Predictions:
    """Top-k occupations per input row, best first; rows without a prediction hold None and NaN."""

    codes: np.ndarray   # (N, k) O*NET-SOC codes
    titles: np.ndarray  # (N, k) occupation titles
    scores: np.ndarray  # (N, k) fused scores
    status: np.ndarray  # (N,) "ok", or why the row has no prediction
    confidence: np.ndarray | None = None    # (N,) calibrated probability that code 1 is right
    needs_review: np.ndarray | None = None  # (N,) not coded at min_level or finer (or, with the
    # older calibrator, confidence below the review threshold)
    evidence: np.ndarray | None = None      # (N,) "exemplar title (similarity)" for code 1
    soc_codes: np.ndarray | None = None     # (N, k) SOC 2018 detailed code of each code
    soc_titles: np.ndarray | None = None    # (N, k) its SOC title
    coded: dict[str, np.ndarray] | None = None  # (N,) coded_level, coded_code, coded_title,
    # coded_confidence: the finest level whose confidence reaches the target precision
    run_id: str | None = None  # the run that predicted them (`RunParts.run_id`)

    def to_frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        """Columns pred_code_1..k, pred_title_1..k, pred_score_1..k, soc_code_1..k and
        soc_title_1..k (with the SOC structure), confidence, coded_level, coded_code,
        coded_title, coded_confidence (with a confidence model) and needs_review (with a
        calibrated run), pred_evidence_1 (with evidence on), status, run_id."""
        columns = {}
        ranked = [("pred_code", self.codes), ("pred_title", self.titles),
                  ("pred_score", self.scores.astype(np.float64).round(6)),
                  ("soc_code", self.soc_codes), ("soc_title", self.soc_titles)]
        for name, values in ranked:
            if values is not None:
                columns.update({f"{name}_{j + 1}": values[:, j] for j in range(values.shape[1])})
        if self.confidence is not None:
            columns["confidence"] = self.confidence.astype(np.float64).round(4)
            if self.coded is not None:
                columns.update(self.coded, coded_confidence=self.coded["coded_confidence"].round(4))
            columns["needs_review"] = self.needs_review
        if self.evidence is not None:
            columns["pred_evidence_1"] = self.evidence
        columns["status"] = self.status
        if self.run_id is not None:
            columns["run_id"] = np.full(len(self.status), self.run_id, dtype=object)
        # Each array's own dtype: pandas 3 infers `str` for text, whose missing value is NaN,
        # and a JSONL record would then lack the key (`tabular_io._absent`), not hold a null.
        return pd.DataFrame({name: pd.Series(values, index=index, dtype=values.dtype)
                             for name, values in columns.items()}, index=index)


def prediction_columns(top_k: int) -> list[str]:
    """Every column that prediction may add to a table (by `Predictions.to_frame`)."""
    none, empty = np.full((0, top_k), None), np.array([])
    coded = {f"coded_{name}": empty for name in ("level", "code", "title", "confidence")}
    return list(Predictions(none, none, none, empty, empty, empty, empty, none, none,
                            coded, run_id="").to_frame().columns)


def bf16_copy(encoder: torch.nn.Module) -> torch.nn.Module:
    """A copy of `encoder` (eval mode) for CPU bf16 autocast, with eager attention: in bf16 the
    SDPA kernel is slower than eager on short inputs (bench/predict_speed.py: ~18% of the
    encoder's time on titles); fp32 keeps the original."""
    encoder = copy.deepcopy(encoder).eval()
    if hasattr(encoder, "model"):
        encoder.model.set_attn_implementation("eager")
    return encoder


def _is_marker(values: pd.Series) -> np.ndarray:
    """Where a value is a missing-value marker such as "NA" or "null" (not "" or a real null)."""
    blank = values.astype("string").str.strip().eq("")
    return (is_missing_marker(values) & ~blank).fillna(False).to_numpy(bool)


def _not_text(values: pd.Series) -> np.ndarray:
    """Where a value is neither text, a number nor missing: booleans, lists, objects, bytes."""
    return np.array([isinstance(v, (bool, np.bool_)) or not (
        v is None or v is pd.NA or isinstance(v, (str, int, float, np.number)))
        for v in values.astype(object)], dtype=bool)


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
    `batch_size` inputs and `batch_tokens` tokens, counted as a padded batch (inputs × the
    longest; the encoder then packs short inputs into shared rows).

    Confidence: with `confidence="levels"` and a run that has a confidence model
    (`occlass.model.confidence`), each row is coded at the finest level whose confidence reaches
    `target_precision` (None: the run's), and needs review unless that level is `min_level` or
    finer; `confidence="platt"` or an older run: the top-label calibrator and `review_below`.
    """

    def __init__(self, parts: RunParts, max_input_length: int | None = None,
                 batch_size: int = 256, batch_tokens: int = 2048, precision: str = "32",
                 memo_bytes: int = 256 * 2**20, memo_depth: int = 0, evidence: bool = True,
                 review_below: float | None = None,
                 max_description_length: int = MAX_DESCRIPTION_LENGTH,
                 correction_threshold: float = CORRECTION_THRESHOLD,
                 confidence: str = "levels", target_precision: float | None = None,
                 min_level: str = "major"):
        if str(precision) not in PRECISIONS:
            raise OcclassError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
        if confidence not in CONFIDENCES:
            raise OcclassError(f"unknown confidence {confidence!r}; choose one of {CONFIDENCES}")
        if min_level not in LEVELS:
            raise OcclassError(f"unknown min_level {min_level!r}; choose one of {LEVELS}")
        self.bf16 = str(precision) == "bf16"
        self.encoder = bf16_copy(parts.encoder) if self.bf16 else parts.encoder.eval()
        self.device = next(self.encoder.parameters()).device
        if self.bf16 and self.device.type == "cpu" and not native_bf16():
            log.warning("precision=bf16 on a CPU without bf16 instructions is emulated: slower "
                        "than the default fp32 (precision=32)")
        self.tokenizer = parts.tokenizer
        self.embeddings = parts.cache.embeddings.to(self.device)
        self.codes = np.array(parts.cache.codes, dtype=object)
        self.titles = np.array(parts.taxonomy.titles, dtype=object)
        self.max_input_length = max_input_length or parts.max_input_length
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.memo_bytes = memo_bytes
        self.memo_depth = memo_depth
        self.memory = None if parts.memory is None else parts.memory.to(
            self.device, torch.bfloat16 if self.bf16 else torch.float32)
        self.fusion_weight = parts.fusion_weight
        self.description_weight = parts.description_weight
        self.max_description_length = max_description_length
        self.levels = parts.levels
        self.model = (parts.confidence_model if confidence == "levels" and self.levels
                      else None)
        self.calibrator = None if self.model is not None else parts.calibrator
        if confidence == "levels" and self.model is None and self.calibrator is not None:
            log.info("the run has no confidence model (older run.json): confidence from its "
                     "top-label calibrator, no coded level")
        if self.model is not None:
            if review_below is not None:
                raise OcclassError("review_below applies to confidence=platt; the confidence "
                                   "model codes with target_precision= and min_level=")
            self.thresholds = self.model.thresholds_for(target_precision)
            self.groups = level_groups(self.levels, self.device)
        elif target_precision is not None or min_level != "major":
            raise OcclassError("target_precision= and min_level= apply to a run's confidence "
                               "model, which " + ("confidence=platt does not use"
                                                  if confidence == "platt" else "this run lacks"))
        elif self.calibrator is not None and review_below is not None:
            self.calibrator = dataclasses.replace(self.calibrator, review_below=review_below)
        self.min_level = LEVELS.index(min_level)
        self.evidence = evidence and self.memory is not None
        self.corrections = (None if parts.corrections is None
                            else parts.corrections.to(self.device))
        self.correction_threshold = correction_threshold
        self._memo: dict[bytes, Ranked] = {}  # a title's tokens → its ranking, oldest first
        self._memo_held = 0  # bytes
        self.run_id = parts.run_id

    def set_corrections(self, corrections: ExemplarMemory | None) -> None:
        """Reviewed titles (`occlass.predict.loader.load_corrections`) that decide the answer for
        the titles nearly equal to them, from now on (remembered answers are forgotten)."""
        self.corrections = None if corrections is None else corrections.to(self.device)
        self._memo.clear()
        self._memo_held = 0

    def predict(self, titles: Sequence, descriptions: Sequence | None = None,
                top_k: int = 5) -> Predictions:
        """The top-k occupations of each title (followed by its description, if any).

        Empty or missing titles get no prediction, nor do the usual missing-value markers
        ("NA", "null", "NaN", ... as pandas reads them; status "title is a missing-value
        marker") and values that are not text or numbers (booleans, lists, bytes; status
        "title is not text"). Missing descriptions, or markers, count as absent. Inputs are
        truncated to `max_input_length` tokens.
        """
        if isinstance(top_k, (bool, np.bool_)) or not isinstance(top_k, (int, np.integer)) \
                or top_k < 1:
            raise OcclassError(f"top_k={top_k!r}: give a whole number of at least 1")
        k = min(top_k, len(self.codes))
        titles = pd.Series(list(titles), dtype=object)
        not_text = _not_text(titles)
        marker = _is_marker(titles.where(~not_text))
        titles = _text(titles.where(~(marker | not_text)))
        if descriptions is not None:
            descriptions = pd.Series(list(descriptions), dtype=object)
            descriptions = descriptions.where(~_not_text(descriptions))
            descriptions = _text(descriptions.where(~_is_marker(descriptions)))
        else:
            descriptions = np.full(len(titles), "", dtype=object)
        if len(descriptions) != len(titles):
            raise ValueError(f"{len(titles)} titles but {len(descriptions)} descriptions")
        ok = titles != ""
        n = len(titles)
        index = np.zeros((n, k), dtype=np.int64)
        scores = np.full((n, k), np.nan, dtype=np.float32)
        confidence = np.full(n, np.nan, dtype=np.float32)
        evidence = np.full(n, None, dtype=object)
        level_group = np.zeros((n, len(LEVELS)), dtype=np.int64)
        level_confidence = np.full((n, len(LEVELS)), np.nan, dtype=np.float32)
        described = ok & (descriptions != "")
        for rows, rank in ((ok & ~described, self._rank_titles),
                           (described, self._rank_described)):
            if rows.any():
                ranked = rank(titles[rows], descriptions[rows], k)
                (index[rows], scores[rows], confidence[rows], evidence[rows], level_group[rows],
                 level_confidence[rows]) = (getattr(ranked, f) for f in Ranked.FIELDS)
        codes = np.where(ok[:, None], self.codes[index], None)
        names = np.where(ok[:, None], self.titles[index], None)
        soc_codes = soc_titles = coded = review = None
        if self.levels:
            soc = self.levels[LEVELS.index("detailed")]
            soc_codes = np.where(ok[:, None], soc.codes[soc.of_code[index]], None)
            soc_titles = np.where(ok[:, None], soc.titles[soc.of_code[index]], None)
        if self.model is not None:
            coded, review = self._coded(ok, level_group, level_confidence)
        elif self.calibrator is not None:
            # a NaN confidence is no confidence: review it
            below = self.calibrator.review_below
            review = np.where(ok, ~(confidence >= below) | (below >= 1), None)  # 1: every row
        status = np.select([ok, marker, not_text], ["ok", "title is a missing-value marker",
                                                     "title is not text"], "empty title")
        return Predictions(codes, names, scores, status.astype(object),
                           None if review is None else confidence, review,
                           evidence if self.evidence else None, soc_codes, soc_titles, coded,
                           self.run_id)

    def _coded(self, ok: np.ndarray, group: np.ndarray,
               probability: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The coded_* columns (the finest level whose probability reaches its threshold) and
        needs_review (no level at min_level or finer); None where a row has no prediction."""
        level = np.where(ok, choose_level(np.nan_to_num(probability), self.thresholds), -1)
        coded = level >= 0
        rows, at = np.flatnonzero(coded), level[coded]
        columns = {name: np.full(len(ok), None, dtype=object)
                   for name in ("coded_level", "coded_code", "coded_title")}
        columns["coded_confidence"] = np.full(len(ok), np.nan)
        for i, j in zip(rows, at):
            g = group[i, j]
            columns["coded_level"][i] = LEVELS[j]
            columns["coded_code"][i] = self.levels[j].codes[g]
            columns["coded_title"][i] = self.levels[j].titles[g]
        columns["coded_confidence"][rows] = probability[rows, at]
        review = np.where(ok, ~coded | (level > self.min_level), None)
        return columns, review

    def _ids(self, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, list[list[int]]]:
        """Each text's row among the distinct token sequences, and those sequences."""
        rows, unique = pd.factorize(pd.Series(texts, dtype=object))
        distinct: dict[tuple[int, ...], int] = {}
        same = [distinct.setdefault(tuple(i), len(distinct))
                for i in self._tokenize(list(unique), max_length)]
        return np.asarray(same, dtype=np.int64)[rows], [list(i) for i in distinct]

    def _tokenize(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Token ids, at most `max_length`; a text is cut to a bound of characters first, so a
        megabyte title costs no more than a long one."""
        cut = [t[:max_length * CHARS_PER_TOKEN] for t in texts]
        return self.tokenizer(cut, truncation=True, max_length=max_length)["input_ids"]

    def _encode(self, ids: list[list[int]]) -> torch.Tensor:
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            return self.encoder.encode_ids(ids, self.pad_id, len(ids))

    def title_scores(self, embeddings: torch.Tensor) -> TitleScores:
        """Category similarity fused with the best exemplar similarity (and raised above every
        cosine for a code whose correction the title nearly matches), with its parts."""
        category = scores = embeddings @ self.embeddings.T
        exemplar = corrected = None
        if self.memory is not None:
            exemplar = self.memory.best(embeddings)
            scores = fuse(scores, exemplar, self.fusion_weight)
        if self.corrections is not None:
            best = self.corrections.best(embeddings)
            corrected = best >= self.correction_threshold
            scores = torch.where(corrected, 1 + best, scores)
        return TitleScores(scores, category, exemplar, corrected)

    def _ranked(self, scored: TitleScores, embeddings: torch.Tensor, ids: list[list[int]],
                k: int, described: torch.Tensor | None = None) -> Ranked:
        """Top-k of the (B, n_codes) scores, with the top-1's confidence and evidence and each
        level's answer and confidence; `ids` are the titles' tokens, `described` the
        descriptions' category similarities (already in the scores)."""
        scores = scored.scores
        top, index = scores.topk(k, dim=1)
        n = len(scores)
        level_group = np.zeros((n, len(LEVELS)), dtype=np.int64)
        level_confidence = np.full((n, len(LEVELS)), np.nan, dtype=np.float32)
        confidence = np.full(n, np.nan, dtype=np.float32)
        if self.model is not None:
            sig = signals(scores, scored.category, scored.exemplar, described, ids,
                          self.tokenizer.unk_token_id, self.model.temperature, self.groups)
            probability = self.model.probabilities(sig)
            if scored.corrected is not None:  # decided by a reviewed title
                probability[scored.corrected.gather(1, index[:, :1]).squeeze(1).cpu()] = 1.0
            level_group, level_confidence = sig.answer.numpy(), probability.numpy()
            confidence = level_confidence[:, 0]
        elif self.calibrator is not None:
            confidence = self.calibrator.confidence(scores).float().cpu().numpy()
        evidence = np.full(n, None, dtype=object)
        if self.evidence:
            evidence[:] = self._evidence(embeddings, index[:, 0])
        return Ranked(index.cpu().numpy(), top.float().cpu().numpy(), confidence, evidence,
                      level_group, level_confidence)

    def _evidence(self, embeddings: torch.Tensor, codes: torch.Tensor) -> list[str]:
        """"Title (0.91)": the exemplar (a correction first) that most supports each code."""
        titles, values = self.memory.evidence(embeddings, codes)
        if self.corrections is not None:
            fixed, fixed_values = self.corrections.evidence(embeddings, codes)
            use = (fixed_values >= self.correction_threshold).tolist()
            titles = [f if u else t for t, f, u in zip(titles, fixed, use)]
            values = torch.where(torch.tensor(use, device=values.device), fixed_values, values)
        return [f"{t} ({v:.2f})" if t else "" for t, v in zip(titles, values.tolist())]

    @torch.inference_mode()
    def embed(self, titles: Sequence[str]) -> torch.Tensor:
        """(N, dim) float32 embeddings of titles (stripped) as prediction encodes them, each
        distinct title once."""
        rows, ids = self._ids(list(_text(titles)), self.max_input_length)
        encoded = [None] * len(ids)
        for batch in self._batches(sorted(range(len(ids)), key=lambda i: len(ids[i])), ids):
            for i, embedding in zip(batch, self._encode([ids[i] for i in batch]).float()):
                encoded[i] = embedding
        return torch.stack(encoded)[torch.as_tensor(rows)] if ids else self.embeddings[:0].float()

    def _rank_titles(self, titles: np.ndarray, _, k: int) -> Ranked:
        rows, ids = self._ids(titles, self.max_input_length)
        return self._rank(ids, k).take(rows)

    @torch.inference_mode()
    def _rank(self, ids: list[list[int]], k: int) -> Ranked:
        """Top-k per tokenised title. Each distinct token sequence is encoded once, also across
        calls: its ranking is remembered whatever k asks (at least `memo_depth` deep, cut to k
        on the way out), up to `memo_bytes` in all (the oldest are forgotten first)."""
        memo = self._memo
        keys = [np.asarray(i, dtype=np.int32).tobytes() for i in ids]
        new = sorted({key: i for i, key in enumerate(keys)
                      if key not in memo or memo[key].index.shape[1] < k}.values(),
                     key=lambda i: len(ids[i]))  # by length, so batches need little padding
        depth = min(max(k, self.memo_depth), len(self.codes))
        fresh: dict[bytes, Ranked] = {}
        for batch in self._batches(new, ids):
            embeddings = self._encode([ids[i] for i in batch])
            ranked = self._ranked(self.title_scores(embeddings), embeddings,
                                  [ids[i] for i in batch], depth)
            fresh.update((keys[i], ranked.take([j])) for j, i in enumerate(batch))
        result = Ranked.concat([fresh[key] if key in fresh else memo[key] for key in keys]).top(k)
        for key, ranked in fresh.items():
            if key in memo:
                self._memo_held -= len(key) + memo.pop(key).nbytes()
            memo[key] = ranked
            self._memo_held += len(key) + ranked.nbytes()
        while self._memo_held > self.memo_bytes:
            key = next(iter(memo))
            self._memo_held -= len(key) + memo.pop(key).nbytes()
        return result

    @torch.inference_mode()
    def similarities(self, texts: Sequence[str], max_length: int, memory: bool = True,
                     leave_out: Sequence[str] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, n_codes) category similarities of the texts and, with a memory, their best
        exemplar similarity per code (on CPU); `leave_out`: per text, a group of the memory's
        exemplars its lookup ignores (`ExemplarMemory.best`)."""
        rows, ids = self._ids(texts, max_length)
        use_memory = memory and self.memory is not None
        category = torch.empty(len(ids), len(self.codes))
        exemplar = torch.empty(len(ids), len(self.codes)) if use_memory else None
        encoded = [None] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for batch in self._batches(order, ids):
            embeddings = self._encode([ids[i] for i in batch]).float()
            category[batch] = (embeddings @ self.embeddings.T).cpu()
            if use_memory and leave_out is None:
                exemplar[batch] = self.memory.best(embeddings).cpu()
            elif use_memory:  # looked up per row: equal texts may leave out other groups
                for j, i in enumerate(batch):
                    encoded[i] = embeddings[j]
        rows = torch.as_tensor(rows)
        if use_memory and leave_out is not None:
            leave_out = list(leave_out)
            exemplar = torch.empty(len(rows), len(self.codes))
            for at in range(0, len(rows), self.batch_size):
                some = rows[at:at + self.batch_size].tolist()
                exemplar[at:at + len(some)] = self.memory.best(
                    torch.stack([encoded[i] for i in some]),
                    leave_out[at:at + len(some)]).cpu()
            return category[rows], exemplar
        return category[rows], None if exemplar is None else exemplar[rows]

    def score_parts(self, titles: Sequence[str], descriptions: Sequence[str],
                    leave_out: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, n_codes) fused title scores (see `similarities` for `leave_out`) and description
        category similarities (on CPU)."""
        category, exemplar = self.similarities(titles, self.max_input_length,
                                               leave_out=leave_out)
        title = category if exemplar is None else fuse(category, exemplar, self.fusion_weight)
        return title, self.similarities(descriptions, self.max_description_length, False)[0]

    @torch.inference_mode()
    def _rank_described(self, titles: np.ndarray, descriptions: np.ndarray, k: int) -> Ranked:
        """Late fusion: the title's scores + description_weight × the description's category
        similarity. Each distinct title (and description) is encoded and looked up once."""
        described = self.similarities(descriptions, self.max_description_length,
                                      memory=False)[0].to(self.device)
        title_of, ids = self._ids(titles, self.max_input_length)  # each row's distinct title
        parts, order = [], []
        by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for batch in self._batches(by_length, ids):
            embeddings = self._encode([ids[i] for i in batch])
            scored = self.title_scores(embeddings)
            position = np.full(len(ids), -1)
            position[batch] = np.arange(len(batch))
            rows = np.flatnonzero(position[title_of] >= 0)  # the rows of these titles
            for some in np.array_split(rows, -(-len(rows) // self.batch_size)):
                at = torch.from_numpy(position[title_of[some]]).to(self.device)
                row_scores = TitleScores(*(None if t is None else t[at] for t in scored))
                row_scores = row_scores._replace(
                    scores=row_scores.scores + self.description_weight * described[some])
                parts.append(self._ranked(row_scores, embeddings[at],
                                          [ids[i] for i in title_of[some]], k, described[some]))
                order.append(some)
        return Ranked.concat(parts).take(np.argsort(np.concatenate(order)))

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

        Titles and descriptions count as `predict` counts them; `frame`'s own values are left
        as they are."""
        description = frame.get(description_column) if description_column else None
        predictions = self.predict(frame[title_column], description, top_k)
        result = predictions.to_frame(frame.index)
        if clash := [c for c in result if c in frame]:
            raise DataError(f"{source}: has column(s) {', '.join(clash)}, which prediction "
                            "writes; rename them")
        return pd.concat([frame, result], axis=1)
