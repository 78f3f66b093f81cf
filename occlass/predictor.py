"""The prediction library: rank the occupations of a taxonomy for job titles with a trained run's
encoder (or the packaged zero-shot model) against its category cache. No Lightning, no files:
`occlass.prediction` streams tables through it for `predict.py`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from occlass.category_cache import Categories, CategoryCache, build_category_cache
from occlass.encoder import PACKAGED, Encoder, load_tokenizer
from occlass.errors import DataError, OcclassError
from occlass.runs import CACHE_FILE, ENCODER_DIR, RunInfo
from occlass.tabular_io import is_missing_marker
from occlass.taxonomy import Taxonomy
from occlass.text import input_text

# Zero-shot defaults, as in conf/data/onet.yaml.
RECIPE = "title_description"
N_TASKS = 3
MAX_INPUT_LENGTH = 32
MAX_CATEGORY_LENGTH = 64
PRECISIONS = ("32", "bf16")


@dataclass
class Predictions:
    """Top-k occupations per input row, best first; rows without a prediction hold None and NaN."""

    codes: np.ndarray   # (N, k) O*NET-SOC codes
    titles: np.ndarray  # (N, k) occupation titles
    scores: np.ndarray  # (N, k) cosine similarities
    status: np.ndarray  # (N,) "ok", or why the row has no prediction

    def to_frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        """Columns pred_code_1..k, pred_title_1..k, pred_score_1..k, status."""
        columns = {}
        for name, values in (("code", self.codes), ("title", self.titles),
                             ("score", self.scores.astype(np.float64).round(6))):
            columns.update({f"pred_{name}_{j + 1}": values[:, j] for j in range(values.shape[1])})
        return pd.DataFrame({**columns, "status": self.status}, index=index)


def load_taxonomy(data_dir: str | Path, recipe: str) -> Taxonomy:
    """The O*NET release in `data_dir`, with task statements if the recipe uses them."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: O*NET data folder not found; set data_dir=... "
                        "(or run `make data`)")
    return Taxonomy.load(data_dir, with_tasks=recipe.endswith("tasks"))


def _is_marker(values: pd.Series) -> np.ndarray:
    """Where a value is a missing-value marker such as "NA" or "null" (not "" or a real null)."""
    blank = values.astype("string").str.strip().eq("")
    return (is_missing_marker(values) & ~blank).fillna(False).to_numpy(bool)


def _text(values: Sequence) -> np.ndarray:
    """Strings, stripped; missing values (None, NaN) become ""."""
    return pd.Series(values, dtype=object).fillna("").astype(str).str.strip().to_numpy()


class Predictor:
    """Cosine similarity of encoded inputs to a cached category matrix, top-k per input.

    `titles` are the occupation titles of the cache's codes, in the same order. A forward pass
    takes at most `batch_size` inputs and `batch_tokens` tokens (padding included).
    """

    def __init__(self, encoder: Encoder, tokenizer, cache: CategoryCache, titles: Sequence[str],
                 max_input_length: int, batch_size: int = 256, batch_tokens: int = 2048,
                 precision: str = "32", device: str = "cpu", memo_size: int = 100_000):
        if str(precision) not in PRECISIONS:
            raise OcclassError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
        self.device = torch.device(device)
        self.encoder = encoder.eval().to(self.device)
        self.tokenizer = tokenizer
        self.embeddings = cache.embeddings.to(self.device)
        self.codes = np.array(cache.codes, dtype=object)
        self.titles = np.array(titles, dtype=object)
        self.max_input_length = max_input_length
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.bf16 = str(precision) == "bf16"
        self.memo_size = memo_size
        self._memo: dict[int, dict[bytes, tuple[np.ndarray, np.ndarray]]] = {}

    @classmethod
    def from_run(cls, run_dir: str | Path, data_dir: str | Path,
                 max_input_length: int | None = None, max_category_length: int | None = None,
                 device: str = "cpu", **options) -> Predictor:
        """Load a training run's encoder and category cache (rebuilt if stale) for the taxonomy
        in `data_dir`, which must be the one the run was trained on."""
        run_dir = Path(run_dir)
        info = RunInfo.load(run_dir)
        if not (run_dir / ENCODER_DIR / "config.json").is_file():
            raise OcclassError(f"{run_dir}: not a complete training run (no "
                               f"{ENCODER_DIR}/config.json); point run= at a folder written by "
                               "train.py")
        taxonomy = load_taxonomy(data_dir, info.recipe)
        if (info.taxonomy_fingerprint, info.n_codes) != (taxonomy.fingerprint, len(taxonomy)):
            raise OcclassError(
                f"{run_dir} was trained on another taxonomy (O*NET {info.taxonomy_version}, "
                f"{info.n_codes} codes) than the one in {data_dir} (O*NET {taxonomy.version}, "
                f"{len(taxonomy)} codes); set data_dir= to the release the run was trained on")
        encoder_dir = run_dir / ENCODER_DIR
        encoder, tokenizer = Encoder(encoder_dir).to(device), load_tokenizer(encoder_dir)
        length = max_category_length or info.max_category_length
        categories = Categories.from_taxonomy(taxonomy, tokenizer, info.recipe, info.n_tasks,
                                              length)
        # The run's own cache; one for an overridden length is built in memory only.
        path = run_dir / CACHE_FILE if length == info.max_category_length else None
        cache = build_category_cache(encoder, categories, path)
        return cls(encoder, tokenizer, cache, taxonomy.titles,
                   max_input_length or info.max_input_length, device=device, **options)

    @classmethod
    def from_config(cls, cfg: Mapping, device: str | None = None) -> Predictor:
        """The predictor that `predict.py`'s options (conf/predict.yaml) describe: the run
        `cfg["run"]`, or the zero-shot model when it is null; on `device` (default cfg's)."""
        options = {"max_input_length": cfg["max_input_length"],
                   "max_category_length": cfg["max_category_length"],
                   "device": device or cfg["device"], "batch_size": cfg["batch_size"],
                   "batch_tokens": cfg["batch_tokens"], "precision": str(cfg["precision"])}
        if cfg["run"] is None:
            return cls.zero_shot(cfg["data_dir"], cache_path=cfg["zero_shot_cache"], **options)
        return cls.from_run(cfg["run"], cfg["data_dir"], **options)

    @classmethod
    def zero_shot(cls, data_dir: str | Path, model: str = PACKAGED,
                  cache_path: str | Path | None = None, max_input_length: int | None = None,
                  max_category_length: int | None = None, device: str = "cpu",
                  **options) -> Predictor:
        """An untrained model (the packaged all-MiniLM-L6-v2 by default) with "title_description"
        category texts; the category cache is kept at `cache_path` if given."""
        taxonomy = load_taxonomy(data_dir, RECIPE)
        encoder, tokenizer = Encoder(model).to(device), load_tokenizer(model)
        categories = Categories.from_taxonomy(taxonomy, tokenizer, RECIPE, N_TASKS,
                                              max_category_length or MAX_CATEGORY_LENGTH)
        cache = build_category_cache(encoder, categories, cache_path)
        return cls(encoder, tokenizer, cache, taxonomy.titles,
                   max_input_length or MAX_INPUT_LENGTH, device=device, **options)

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
        descriptions = _text(descriptions) if descriptions is not None else [""] * len(titles)
        if len(descriptions) != len(titles):
            raise ValueError(f"{len(titles)} titles but {len(descriptions)} descriptions")
        ok = titles != ""
        codes = np.full((len(titles), k), None, dtype=object)
        names = codes.copy()
        scores = np.full((len(titles), k), np.nan, dtype=np.float32)
        if ok.any():
            texts = [input_text(t, d) for t, d, keep in zip(titles, descriptions, ok) if keep]
            rows, unique = pd.factorize(pd.Series(texts, dtype=object))
            ids = self.tokenizer(list(unique), truncation=True,
                                 max_length=self.max_input_length)["input_ids"]
            index, score = self._rank(ids, k)
            codes[ok], names[ok] = self.codes[index[rows]], self.titles[index[rows]]
            scores[ok] = score[rows]
        return Predictions(codes, names, scores,
                           np.where(ok, "ok", "empty title").astype(object))

    @torch.inference_mode()
    def _rank(self, ids: list[list[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k category indices and scores per tokenised input. Each distinct token sequence
        is encoded once, also across calls (up to `memo_size` remembered inputs)."""
        memo = self._memo.setdefault(k, {})
        if len(memo) > self.memo_size:
            memo.clear()
        keys = [np.asarray(i, dtype=np.int32).tobytes() for i in ids]
        new = sorted({key: i for i, key in enumerate(keys) if key not in memo}.values(),
                     key=lambda i: len(ids[i]))  # by length, so batches need little padding
        for batch in self._batches(new, ids):
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
                embeddings = self.encoder.encode_ids([ids[i] for i in batch], self.pad_id,
                                                     len(batch))
            scores, index = (embeddings @ self.embeddings.T).topk(k, dim=1)
            memo.update(zip([keys[i] for i in batch],
                            zip(index.cpu().numpy(), scores.cpu().numpy())))
        index, scores = zip(*(memo[key] for key in keys))
        return np.stack(index), np.stack(scores)

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
