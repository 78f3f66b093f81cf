"""Loading is not predicting: one place turns a training run directory (or the zero-shot model)
into its checked parts, which `Predictor`, `predict.py` and the review server are built from.

A run is checked once here: its record, its encoder, the taxonomy it was trained on; a category
cache or exemplar memory that no longer matches the encoder's weights or the category texts is
rebuilt. Corrections (reviewed `title,code` files) become an exemplar set beside the memory.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from occlass.data.categories import Categories
from occlass.data.examples import Exemplars, load_labelled_file, load_pairs
from occlass.data.soc import Level, load_levels
from occlass.data.taxonomy import Taxonomy
from occlass.data.tokenizer import PACKAGED, load_tokenizer
from occlass.errors import DataError, OcclassError
from occlass.model.calibration import Calibrator
from occlass.model.category_cache import CategoryCache, build_category_cache, weights_fingerprint
from occlass.model.confidence import ConfidenceModel
from occlass.model.encoder import Encoder
from occlass.model.memory import ExemplarMemory, build_memory
from occlass.runs import CACHE_FILE, ENCODER_DIR, MEMORY_FILE, RUN_FILE, RunInfo

log = logging.getLogger(__name__)

# Zero-shot defaults, as in conf/data/onet.yaml.
RECIPE = "title_description"
N_TASKS = 3
MAX_INPUT_LENGTH = 32
MAX_CATEGORY_LENGTH = 64
DESCRIPTION_WEIGHT = 0.5   # until a run records the one chosen on validation
ZERO_SHOT_FUSION = 0.5


@dataclass
class RunParts:
    """What a `Predictor` is built from: the encoder and tokenizer, the taxonomy, the category
    cache, the exemplar memory, the weights, calibrator and confidence model chosen on
    validation, the SOC levels of the taxonomy (`occlass.data.soc`), and the corrections added
    for this use. `info` is the run's record (None for the zero-shot model)."""

    encoder: Encoder
    tokenizer: object
    taxonomy: Taxonomy
    cache: CategoryCache
    max_input_length: int
    memory: ExemplarMemory | None = None
    fusion_weight: float = 0.0
    description_weight: float = DESCRIPTION_WEIGHT
    calibrator: Calibrator | None = None
    confidence_model: ConfidenceModel | None = None
    levels: list[Level] | None = None
    corrections: ExemplarMemory | None = None
    info: RunInfo | None = None

    def with_corrections(self, path: str | Path, max_length: int | None = None) -> RunParts:
        """These parts with the reviewed titles of `path` as corrections."""
        return dataclasses.replace(self, corrections=load_corrections(self, path, max_length))


def load_taxonomy(data_dir: str | Path, recipe: str) -> Taxonomy:
    """The O*NET release in `data_dir`, with task statements if the recipe uses them."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: O*NET data folder not found; set data_dir=... "
                        "(or run `make data`)")
    return Taxonomy.load(data_dir, with_tasks=recipe.endswith("tasks"))


def onet_exemplars(data_dir: str | Path, taxonomy: Taxonomy, tokenizer,
                   max_length: int) -> Exemplars:
    """O*NET's own titles (occupation, alternate, short, reported) with their codes, grouped by
    code as the memory keeps them."""
    pairs = load_pairs(data_dir, taxonomy).drop_duplicates(["title", "code"])
    pairs = pairs.assign(label=pairs["code"].map(taxonomy.index)).sort_values("label",
                                                                             kind="stable")
    ids = tokenizer(list(pairs["title"]), truncation=True, max_length=max_length)["input_ids"]
    return Exemplars(list(pairs["title"]), pairs["label"].tolist(), ids)


def load_memory(path: Path | None, encoder: Encoder, tokenizer, n_codes: int, max_length: int,
                exemplars: Exemplars | None = None) -> ExemplarMemory:
    """The exemplar memory at `path` if it was built with `encoder`'s weights (and, given
    `exemplars`, from them); else encoded again from `exemplars` or the stale memory's titles
    (and saved to `path`, when given and writable)."""
    identity = {"weights": weights_fingerprint(encoder)}
    memory = ExemplarMemory.load(path) if path is not None and Path(path).is_file() else None
    if memory is not None and exemplars is not None and memory.titles != exemplars.titles:
        memory = None
    if memory is not None and memory.identity == identity and memory.n_codes == n_codes:
        return memory
    if exemplars is None:
        if memory is None:
            raise OcclassError(f"{path}: exemplar memory not found; the run is incomplete")
        ids = tokenizer(memory.titles, truncation=True, max_length=max_length)["input_ids"]
        exemplars = Exemplars(memory.titles, memory.labels.tolist(), ids)
    log.info("encoding the exemplar memory (%d titles)", len(exemplars))
    memory = build_memory(encoder, exemplars, n_codes, tokenizer.pad_token_id, identity)
    if path is not None:
        try:
            memory.save(path)
        except OSError as err:
            log.warning("cannot save the exemplar memory (%s); keeping it in memory", err)
    return memory


def load_run(run_dir: str | Path, data_dir: str | Path, max_category_length: int | None = None,
             device: str = "cpu") -> RunParts:
    """A training run's parts, for the taxonomy in `data_dir`, which must be the one the run
    was trained on. A category cache for another `max_category_length` is built in memory."""
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
    encoder, tokenizer = Encoder(encoder_dir).to(device).eval(), load_tokenizer(encoder_dir)
    length = max_category_length or info.max_category_length
    categories = Categories.from_taxonomy(taxonomy, tokenizer, info.recipe, info.n_tasks, length)
    path = run_dir / CACHE_FILE if length == info.max_category_length else None
    parts = RunParts(encoder, tokenizer, taxonomy, build_category_cache(encoder, categories, path),
                     info.max_input_length, fusion_weight=info.fusion_weight or 0.0,
                     levels=load_levels(taxonomy, data_dir), info=info)
    if info.fusion_weight is not None:
        parts.memory = load_memory(run_dir / MEMORY_FILE, encoder, tokenizer, len(taxonomy),
                                   info.max_input_length)
    if info.description_weight is not None:
        parts.description_weight = info.description_weight
    if info.calibration is not None:
        parts.calibrator = Calibrator.from_dict(info.calibration)
    if info.confidence is not None:
        try:
            parts.confidence_model = ConfidenceModel.from_dict(info.confidence)
        except OcclassError as err:
            raise OcclassError(f"{run_dir / RUN_FILE}: {err}") from None
    return parts


def load_zero_shot(data_dir: str | Path, model: str = PACKAGED,
                   cache_path: str | Path | None = None,
                   max_category_length: int | None = None, device: str = "cpu") -> RunParts:
    """An untrained model (the packaged all-MiniLM-L6-v2 by default) with "title_description"
    category texts and O*NET's titles as the memory; both are kept beside `cache_path` if
    given."""
    taxonomy = load_taxonomy(data_dir, RECIPE)
    encoder, tokenizer = Encoder(model).to(device).eval(), load_tokenizer(model)
    categories = Categories.from_taxonomy(taxonomy, tokenizer, RECIPE, N_TASKS,
                                          max_category_length or MAX_CATEGORY_LENGTH)
    cache = build_category_cache(encoder, categories, cache_path)
    exemplars = onet_exemplars(data_dir, taxonomy, tokenizer, MAX_INPUT_LENGTH)
    memory = load_memory(Path(cache_path).with_name(MEMORY_FILE) if cache_path else None,
                         encoder, tokenizer, len(taxonomy), MAX_INPUT_LENGTH, exemplars)
    return RunParts(encoder, tokenizer, taxonomy, cache, MAX_INPUT_LENGTH, memory=memory,
                    fusion_weight=ZERO_SHOT_FUSION, levels=load_levels(taxonomy, data_dir))


def load_corrections(parts: RunParts, path: str | Path,
                     max_length: int | None = None) -> ExemplarMemory:
    """Reviewed titles (a CSV/JSONL/Parquet of title, code) encoded as an exemplar set: they
    decide the answer for the titles nearly equal to them (no retraining); the same file serves
    as `data.extra_files` for the next training run. An unknown or malformed code is a DataError
    naming its line: nothing is used from a half-read file."""
    index = parts.taxonomy.index
    frame = load_labelled_file(path, set(index))
    ids = parts.tokenizer(list(frame["title"]), truncation=True,
                          max_length=max_length or parts.max_input_length)["input_ids"]
    exemplars = Exemplars(list(frame["title"]), [index[c] for c in frame["code"]], ids)
    with torch.inference_mode():
        return build_memory(parts.encoder, exemplars, len(parts.taxonomy),
                            parts.tokenizer.pad_token_id, {})


def load_configured(cfg: Mapping, device: str | None = None) -> RunParts:
    """The parts that `predict.py`'s options (conf/predict.yaml) describe: the run `cfg["run"]`,
    or the zero-shot model when it is null, with `cfg["corrections"]`; on `device` (default
    cfg's)."""
    device = device or cfg["device"]
    if cfg["run"] is None:
        parts = load_zero_shot(cfg["data_dir"], cache_path=cfg["zero_shot_cache"],
                               max_category_length=cfg["max_category_length"], device=device)
    else:
        parts = load_run(cfg["run"], cfg["data_dir"], cfg["max_category_length"], device)
    if cfg.get("corrections"):
        parts = parts.with_corrections(cfg["corrections"], cfg["max_input_length"])
    return parts


def predictor_options(cfg: Mapping) -> dict:
    """The `Predictor` options of `predict.py`'s config."""
    return {"max_input_length": cfg["max_input_length"], "batch_size": cfg["batch_size"],
            "batch_tokens": cfg["batch_tokens"], "precision": str(cfg["precision"]),
            "evidence": cfg.get("evidence", True), "review_below": cfg.get("review_below"),
            "confidence": cfg.get("confidence", "levels"),
            "target_precision": cfg.get("target_precision"),
            "min_level": cfg.get("min_level", "major")}
