"""Loading is not predicting: one place turns a training run directory (or the zero-shot model)
into its checked parts, which `Predictor`, `predict.py` and the review server are built from.

A run is checked once here: its record, its encoder, the taxonomy it was trained on; a category
cache or exemplar memory that no longer matches the encoder's weights or the category texts is
rebuilt. Corrections (reviewed `title,code` files) become an exemplar set beside the memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from occlass.data.categories import Categories
from occlass.data.examples import Exemplars, load_labelled_file, load_pairs
from occlass.data.soc import Level, load_levels
from occlass.data.taxonomy import RECIPES, Taxonomy
from occlass.data.text import normalize_title
from occlass.data.tokenizer import PACKAGED, load_tokenizer, resolve_model
from occlass.errors import DataError, OcclassError
from occlass.model.calibration import Calibrator
from occlass.model.category_cache import CategoryCache, build_category_cache, weights_fingerprint
from occlass.model.confidence import ConfidenceModel
from occlass.model.encoder import Encoder
from occlass.model.memory import ExemplarMemory, build_memory
from occlass.runs import CACHE_FILE, ENCODER_DIR, MEMORY_FILE, RUN_FILE, RunInfo, save_or_keep

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

    def with_corrections(self, path: str | Path, max_length: int | None = None,
                         cache_dir: str | Path | None = None) -> RunParts:
        """These parts with the reviewed titles of `path` as corrections (their embeddings
        kept in `cache_dir`, if given)."""
        return dataclasses.replace(self, corrections=load_corrections(self, path, max_length,
                                                                      cache_dir))

    @property
    def run_id(self) -> str:
        """A short hash of what decides the answers: the encoder's weights, the taxonomy, the
        fusion and description weights and the confidence model (or older calibrator). Every
        output row carries it, and the server reports it: a table says which model coded it."""
        confidence = (self.confidence_model or self.calibrator)
        content = [self.cache.identity["weights"], self.taxonomy.fingerprint,
                   self.fusion_weight, self.description_weight,
                   confidence.to_dict() if confidence is not None else None]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def load_taxonomy(data_dir: str | Path, recipe: str, option: str = "data_dir=...") -> Taxonomy:
    """The O*NET release in `data_dir`, with task statements if the recipe uses them; a missing
    folder's error tells to set `option`."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: O*NET data folder not found; set {option} "
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
    try:
        memory = ExemplarMemory.load(path) if path is not None and Path(path).is_file() else None
    except OcclassError as err:
        if exemplars is None:  # nothing to rebuild it from
            raise
        log.warning("%s; rebuilding it", err)
        memory = None
    if memory is not None and exemplars is not None and memory.titles != exemplars.titles:
        memory = None
    if (memory is not None and memory.identity == identity and memory.n_codes == n_codes
            and memory.embeddings.shape[1] == encoder.dim):
        return memory
    if exemplars is None:
        if memory is None:
            raise OcclassError(f"{path}: exemplar memory not found; the run is incomplete")
        if memory.n_codes != n_codes:
            raise OcclassError(f"{path}: an exemplar memory of {memory.n_codes} occupations, "
                               f"not the taxonomy's {n_codes}")
        ids = tokenizer(memory.titles, truncation=True, max_length=max_length)["input_ids"]
        exemplars = Exemplars(memory.titles, memory.labels.tolist(), ids)
    log.info("encoding the exemplar memory (%d titles)", len(exemplars))
    memory = build_memory(encoder, exemplars, n_codes, tokenizer.pad_token_id, identity)
    if path is not None:
        save_or_keep(lambda: memory.save(path), "the exemplar memory")
    return memory


# The files of a run's encoder that loading needs: each entry, one of its names.
ENCODER_FILES = (("config.json",), ("model.safetensors", "pytorch_model.bin"),
                 ("tokenizer_config.json",), ("tokenizer.json", "vocab.txt"))


def check_run_files(run_dir: Path, info: RunInfo) -> None:
    """Every file that loading `run_dir` needs is there (a copied run may lack some, and
    transformers would quietly build a 5-token tokenizer without its files)."""
    encoder_dir = run_dir / ENCODER_DIR
    missing = [f"{ENCODER_DIR}/{names[0]}" for names in ENCODER_FILES
               if not any((encoder_dir / name).is_file() for name in names)]
    if info.fusion_weight is not None and not (run_dir / MEMORY_FILE).is_file():
        missing.append(MEMORY_FILE)
    if missing:
        raise OcclassError(f"{run_dir}: not a complete training run (no {', '.join(missing)}); "
                           "copy the whole folder that train.py wrote")
    if info.recipe not in RECIPES:
        raise OcclassError(f"{run_dir / 'run.json'}: unknown category-text recipe "
                           f"{info.recipe!r}; one of {', '.join(RECIPES)}")


def check_vocabulary(encoder: Encoder, tokenizer, where: str | Path) -> None:
    """The tokenizer gives ids that the model has, one for each of its tokens."""
    size = encoder.model.config.vocab_size
    if len(tokenizer) != size:
        raise OcclassError(f"{where}: the tokenizer has {len(tokenizer)} tokens but the model "
                           f"{size}; the encoder folder is incomplete or mixed from two models")


def max_positions(run_dir: str | Path | None) -> int | None:
    """The most tokens the encoder of `run_dir` (None: the zero-shot model) takes, read from its
    config.json without loading it; None if unknown."""
    folder = Path(run_dir) / ENCODER_DIR if run_dir is not None else Path(resolve_model(PACKAGED))
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        positions = int(config["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # loading the run reports what is wrong with it
    # RoBERTa-style models (MPNet) number positions from the padding id + 1
    return positions - 2 if config.get("model_type") in ("mpnet", "roberta") else positions


def load_run(run_dir: str | Path, data_dir: str | Path, max_category_length: int | None = None,
             device: str = "cpu") -> RunParts:
    """A training run's parts, for the taxonomy in `data_dir`, which must be the one the run
    was trained on. A category cache for another `max_category_length` is built in memory."""
    run_dir = Path(run_dir)
    info = RunInfo.load(run_dir)
    check_run_files(run_dir, info)
    try:  # every number checked before anything is loaded
        calibrator = None if info.calibration is None else Calibrator.from_dict(info.calibration)
        confidence_model = (None if info.confidence is None
                            else ConfidenceModel.from_dict(info.confidence))
    except OcclassError as err:
        raise OcclassError(f"{run_dir / RUN_FILE}: {err}") from None
    limit = max_positions(run_dir)
    for key in ("max_input_length", "max_category_length"):
        if limit is not None and getattr(info, key) > limit:
            raise OcclassError(f"{run_dir / 'run.json'}: {key} {getattr(info, key)} is more than "
                               f"the model's {limit} tokens")
    taxonomy = load_taxonomy(data_dir, info.recipe)
    if (info.taxonomy_fingerprint, info.n_codes) != (taxonomy.fingerprint, len(taxonomy)):
        raise OcclassError(
            f"{run_dir} was trained on another taxonomy (O*NET {info.taxonomy_version}, "
            f"{info.n_codes} codes) than the one in {data_dir} (O*NET {taxonomy.version}, "
            f"{len(taxonomy)} codes); set data_dir= to the release the run was trained on")
    encoder_dir = run_dir / ENCODER_DIR
    encoder, tokenizer = Encoder(encoder_dir).to(device).eval(), load_tokenizer(encoder_dir)
    check_vocabulary(encoder, tokenizer, encoder_dir)
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
    else:
        log.warning("%s chose no description weight (no validation split, or no pseudo-ads to "
                    "choose it on): a description's category similarity weighs %s, the default",
                    run_dir, DESCRIPTION_WEIGHT)
    if info.calibration is None and info.confidence is None:
        log.warning("%s has no calibrator and no confidence model (no validation split: "
                    "data.holdout=none): predictions carry no calibrated confidence and no "
                    "needs_review", run_dir)
    parts.calibrator, parts.confidence_model = calibrator, confidence_model
    return parts


def load_zero_shot(data_dir: str | Path, model: str = PACKAGED,
                   cache_path: str | Path | None = None,
                   max_category_length: int | None = None, device: str = "cpu") -> RunParts:
    """An untrained model (the packaged all-MiniLM-L6-v2 by default) with "title_description"
    category texts and O*NET's titles as the memory; both are kept beside `cache_path` if
    given (a cache for another `max_category_length` beside it, named with the length)."""
    taxonomy = load_taxonomy(data_dir, RECIPE)
    encoder, tokenizer = Encoder(model).to(device).eval(), load_tokenizer(model)
    check_vocabulary(encoder, tokenizer, model)
    length = max_category_length or MAX_CATEGORY_LENGTH
    categories = Categories.from_taxonomy(taxonomy, tokenizer, RECIPE, N_TASKS, length)
    path = cache_path
    if cache_path is not None and length != MAX_CATEGORY_LENGTH:
        path = Path(cache_path).with_stem(f"{Path(cache_path).stem}-{length}")
    cache = build_category_cache(encoder, categories, path)
    exemplars = onet_exemplars(data_dir, taxonomy, tokenizer, MAX_INPUT_LENGTH)
    memory = load_memory(Path(cache_path).with_name(MEMORY_FILE) if cache_path else None,
                         encoder, tokenizer, len(taxonomy), MAX_INPUT_LENGTH, exemplars)
    return RunParts(encoder, tokenizer, taxonomy, cache, MAX_INPUT_LENGTH, memory=memory,
                    fusion_weight=ZERO_SHOT_FUSION, levels=load_levels(taxonomy, data_dir))


def load_corrections(parts: RunParts, path: str | Path, max_length: int | None = None,
                     cache_dir: str | Path | None = None) -> ExemplarMemory:
    """Reviewed titles (a CSV/JSONL/Parquet of title, code) encoded as an exemplar set: they
    decide the answer for the titles nearly equal to them (no retraining); the same file serves
    as `data.extra_files` for the next training run. An unknown or malformed code is a DataError
    naming its line: nothing is used from a half-read file. A title given two codes (case,
    accents and punctuation aside) keeps its later line's, with a warning naming both lines.
    With `cache_dir`, the encoded corrections are kept there (`corrections-CHECKSUM.pt`, by
    the titles, codes, length and weights) and reused while all of those stay the same."""
    index = parts.taxonomy.index
    frame = load_labelled_file(path, set(index), lines=True)
    if frame.empty:
        raise DataError(f"{path}: no corrections (no row with a title and a code)")
    frame = frame.assign(key=frame["title"].map(normalize_title))
    for _, same in frame[frame.duplicated("key", keep=False)].groupby("key", sort=False):
        last = same.iloc[-1]
        for _, row in same[same["code"] != last["code"]].iterrows():
            log.warning("%s: line %d gives %r the code %s, line %d %s; the later line wins",
                        path, row["line"], row["title"], row["code"], last["line"], last["code"])
    frame = frame.drop_duplicates("key", keep="last")
    length = max_length or parts.max_input_length
    titles, labels = list(frame["title"]), [index[c] for c in frame["code"]]
    content = hashlib.sha256(json.dumps([titles, labels, length]).encode()).hexdigest()[:16]
    identity = {"weights": weights_fingerprint(parts.encoder), "corrections": content}
    cache = Path(cache_dir) / f"corrections-{content}.pt" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        try:
            memory = ExemplarMemory.load(cache)
        except OcclassError as err:
            log.warning("%s; encoding the corrections again", err)
        else:
            if memory.identity == identity and memory.n_codes == len(parts.taxonomy):
                return memory
    log.info("encoding %d corrections", len(titles))
    ids = parts.tokenizer(titles, truncation=True, max_length=length)["input_ids"]
    with torch.inference_mode():
        memory = build_memory(parts.encoder, Exemplars(titles, labels, ids), len(parts.taxonomy),
                              parts.tokenizer.pad_token_id, identity)
    if cache is not None:
        save_or_keep(lambda: memory.save(cache), "the encoded corrections")
    return memory


def load_configured(cfg: Mapping, device: str | None = None) -> RunParts:
    """The parts that `predict.py`'s options (conf/predict.yaml) describe: the run `cfg["run"]`,
    or the zero-shot model when it is null, with `cfg["corrections"]`; on `device` (default
    cfg's)."""
    device = device or cfg["device"]
    if cfg["run"] is None:
        parts = load_zero_shot(cfg["data_dir"], cache_path=cfg["zero_shot_cache"],
                               max_category_length=cfg["max_category_length"], device=device)
        cache_dir = Path(cfg["zero_shot_cache"]).parent if cfg["zero_shot_cache"] else None
    else:
        parts = load_run(cfg["run"], cfg["data_dir"], cfg["max_category_length"], device)
        cache_dir = Path(cfg["run"])
    if cfg.get("corrections"):
        parts = parts.with_corrections(cfg["corrections"], cfg["max_input_length"], cache_dir)
    return parts


def predictor_options(cfg: Mapping) -> dict:
    """The `Predictor` options of `predict.py`'s config."""
    return {"max_input_length": cfg["max_input_length"], "batch_size": cfg["batch_size"],
            "batch_tokens": cfg["batch_tokens"], "precision": str(cfg["precision"]),
            "evidence": cfg.get("evidence", True), "review_below": cfg.get("review_below"),
            "confidence": cfg.get("confidence", "levels"),
            "target_precision": cfg.get("target_precision"),
            "min_level": cfg.get("min_level", "major")}
