"""The prediction job behind `predict.py`: a ranked table for `text`, or a table file streamed
through the `Predictor` (one process here; several through `occlass.predict.distributed`)."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import torch
import transformers
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from occlass.data.soc import LEVEL_NAMES, LEVELS
from occlass.data.tabular_io import (
    AtomicTableWriter,
    check_writable,
    count_rows,
    has_bom,
    neutralise_formulas,
    read_chunks,
)
from occlass.errors import DataError, OcclassError
from occlass.predict.loader import load_configured, max_positions, predictor_options
from occlass.predict.predictor import CONFIDENCES, PRECISIONS, Predictor, prediction_columns

log = logging.getLogger(__name__)


def predict_file(predictor: Predictor, input: str | Path, output: str | Path, top_k: int = 5,
                 title_column: str = "title", description_column: str | None = "description",
                 chunk_rows: int = 10_000, progress: bool = True,
                 neutralise: bool = False) -> Counter:
    """Stream a CSV/JSONL/Parquet table through `predictor` into `output` (same choice of types):
    every input column exactly as read, then the prediction columns (a table without rows gets
    them as its header); `neutralise` puts a quote before text that a spreadsheet would take for a
    formula (`neutralise_formulas`). `output` appears only once complete; a failure keeps the
    old one. Returns the count of rows per status ("ok", "empty title", ...)."""
    chunks = read_chunks(input, chunk_rows, required=[title_column])
    status: Counter = Counter()
    try:
        with (AtomicTableWriter(output, bom=has_bom(input)) as writer,
              tqdm(total=count_rows(input), unit="rows", unit_scale=True,
                   disable=not progress) as bar):
            for chunk in chunks:
                result = predictor.predict_frame(chunk, top_k, title_column, description_column,
                                                 input)
                writer.write(neutralise_formulas(result) if neutralise else result)
                status.update(result["status"])
                bar.update(len(chunk))
    except OSError as err:  # disk full, folder removed or made read-only while writing
        raise OcclassError(f"{output}: cannot be written ({err.strerror or err}); "
                           "any earlier file there is kept") from None
    return status


def _whole(value) -> bool:
    """A whole number of at least 1 (Hydra hands over "abc" as text and 1.5 as a float)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def is_number(value) -> bool:
    """A finite int or float; a boolean is not a number here."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def named(key: str, value) -> str:
    """`key=value` for a message, a long value cut short."""
    text = repr(value)
    return f"{key}={text if len(text) <= 60 else text[:57] + '...'}"


def raw_text(cfg: DictConfig):
    """`text` as typed: a job title may look like OmegaConf's "???" or "${...}"."""
    return OmegaConf.to_container(cfg, resolve=False)["text"]


def check_device(device) -> None:
    """A device torch knows, and that this machine has."""
    try:
        kind = torch.device(str(device)).type
    except (RuntimeError, ValueError):
        raise OcclassError(f"device={device!r}: not a device; e.g. cpu, cuda, cuda:1") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    if not available.get(kind, False):
        raise OcclassError(f"device={device!r}: this machine has none; use device=cpu")


def check_title_column(path, title: str) -> None:
    """A missing title column, with a hint where the header suggests the fix."""
    header = list(next(read_chunks(path, 1)).columns)
    if title in header:
        return
    near = [c for c in header if isinstance(c, str) and c.strip().lower() == title.lower()]
    if near:
        raise DataError(f"{path}: no column {title!r}, but {near[0]!r}: "
                        f"set columns.title={near[0]!r}")
    separators = {"\t": "tab", ";": "semicolon", "|": "bar"}
    if len(header) == 1 and (found := [n for s, n in separators.items() if s in str(header[0])]):
        raise DataError(f"{path}: no column {title!r}; the header is one column holding "
                        f"{found[0]}s: separate the file with commas, or save it as .jsonl or "
                        ".parquet")


def check_options(cfg: DictConfig) -> None:
    """The options that predict.py and serve.py share, each bad one refused in one line before
    a model is loaded."""
    for key in ("top_k", "batch_size", "batch_tokens"):
        if not _whole(cfg[key]):
            raise OcclassError(f"{named(key, cfg[key])}: give a whole number of at least 1")
    for key in ("max_input_length", "max_category_length", "threads"):
        if cfg[key] is not None and not _whole(cfg[key]):
            raise OcclassError(f"{named(key, cfg[key])}: give a whole number of at least 1, "
                               "or null")
    if not isinstance(cfg.get("evidence", True), bool):
        raise OcclassError(f"{named('evidence', cfg.evidence)}: give true or false")
    if str(cfg.precision) not in PRECISIONS:
        raise OcclassError(f"{named('precision', cfg.precision)}: choose one of "
                           f"{', '.join(PRECISIONS)}")
    if not cfg.get("trainer"):
        check_device(cfg.device)
    review = cfg.get("review_below")
    if review is not None and not (is_number(review) and 0 <= review <= 1):
        raise OcclassError(f"{named('review_below', review)}: give a confidence between 0 and "
                           "1 (1: review every row), or null")
    target = cfg.get("target_precision")
    if target is not None and not (is_number(target) and 0 < target < 1):
        raise OcclassError(f"{named('target_precision', target)}: give a precision between 0 "
                           "and 1, or null (the run's)")
    for key, choices in (("min_level", LEVELS), ("confidence", CONFIDENCES)):
        if cfg.get(key, choices[-1]) not in choices:
            raise OcclassError(f"{named(key, cfg[key])}: choose one of {', '.join(choices)}")
    if cfg.get("confidence") == "platt" and (target is not None
                                             or cfg.get("min_level", "major") != "major"):
        raise OcclassError("target_precision= and min_level= apply to confidence=levels; "
                           "confidence=platt flags rows by review_below=")
    if review is not None and cfg.run is None:
        raise OcclassError("review_below= needs run=: the zero-shot model has no calibrated "
                           "confidence to review by")
    limit = max_positions(cfg.run)
    for key in ("max_input_length", "max_category_length"):
        if cfg[key] is not None and limit is not None and cfg[key] > limit:
            raise OcclassError(f"{key}={cfg[key]}: the model takes at most {limit} tokens")
    if cfg.get("corrections"):
        next(read_chunks(cfg.corrections, 1, required=["title", "code"]))  # readable, headed


def check_job(cfg: DictConfig) -> None:
    """Refuse bad options and inputs with one line each, before a model is loaded."""
    check_options(cfg)
    if not _whole(cfg.chunk_rows):
        raise OcclassError(f"{named('chunk_rows', cfg.chunk_rows)}: give a whole number of at "
                           "least 1")
    for key in ("progress", "neutralise_formulas"):
        if not isinstance(cfg.get(key, True), bool):
            raise OcclassError(f"{named(key, cfg[key])}: give true or false")
    title, description = cfg.columns.title, cfg.columns.description
    if not isinstance(title, str) or not title:
        raise OcclassError(f"columns.title={title!r}: name the input's title column")
    if description is not None and not isinstance(description, str):
        raise OcclassError(f"columns.description={description!r}: name a column, or null")
    if raw_text(cfg) is not None:
        if cfg.input or cfg.output:
            raise OcclassError('give text="a job title" or input=FILE output=FILE, not both')
        return
    if engine(cfg) == "spark":
        if cfg.get("trainer"):
            raise OcclassError("engine=spark runs its own workers: drop trainer=")
        return  # a folder or glob: occlass.predict.spark checks it with Spark
    if not (cfg.input and cfg.output):
        raise OcclassError('give input=FILE and output=FILE, or text="a job title"')
    check_writable(cfg.output)
    check_title_column(cfg.input, title)
    header = next(read_chunks(cfg.input, 1, required=[title]))
    for option in ("input", "corrections"):  # any file the job reads
        if cfg.get(option) and Path(cfg.output).exists() and os.path.samefile(cfg[option],
                                                                               cfg.output):
            raise OcclassError(f"output={cfg.output} is the {option} file: prediction would "
                               "replace it; choose another output")
    # the default description column may be absent; one named on the command line may not
    if description not in (None, "description") and description not in header:
        raise OcclassError(f"{cfg.input}: has no column {description!r} "
                           f"(columns.description); columns found: {', '.join(header.columns)}")
    if clash := [c for c in prediction_columns(cfg.top_k) if c in header]:
        raise DataError(f"{cfg.input}: has column(s) {', '.join(clash)}, which prediction "
                        "writes; rename them")


def engine(cfg: DictConfig) -> str:
    """`local` (this process, or DDP ranks with a trainer) or `spark` (conf/engine/)."""
    return OmegaConf.select(cfg, "engine.name", default="local")


def predict_job(cfg: DictConfig) -> dict | None:
    """What `predict.py` runs: a ranked table for `text`, else `input` streamed into `output`
    (by Spark with engine=spark: then its summary, `occlass.predict.spark.predict_spark`)."""
    check_job(cfg)
    text = raw_text(cfg)
    transformers.logging.disable_progress_bar()  # ours (or Spark's) is the one that matters
    if text is None and engine(cfg) == "spark":
        try:
            from occlass.predict.spark import predict_spark  # imports pyspark
        except ModuleNotFoundError as err:
            if not (err.name or "").startswith(("pyspark", "py4j")):
                raise
            raise OcclassError("engine=spark needs pyspark: pip install 'occlass[spark]' "
                               "(or pip install pyspark)") from None
        return predict_spark(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if text is not None:  # stdout is the ranked table: log lines go to stderr
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)
    if text is None and cfg.get("trainer"):
        from occlass.predict.distributed import predict_distributed  # imports Lightning

        predict_distributed(cfg)
        return None
    predictor = Predictor(load_configured(cfg), **predictor_options(cfg))
    if text is None:
        status = predict_file(predictor, cfg.input, cfg.output, cfg.top_k, cfg.columns.title,
                              cfg.columns.description, cfg.chunk_rows, cfg.progress,
                              neutralise=cfg.neutralise_formulas)
        flagged = {s: n for s, n in status.items() if s != "ok"}
        log.info("%d rows → %s%s", status.total(), cfg.output,
                 f" ({', '.join(f'{n} {s}' for s, n in flagged.items())}: no prediction)"
                 if flagged else "")
        return None
    result = predictor.predict([text], top_k=cfg.top_k)
    if result.status[0] != "ok":
        raise OcclassError(f"no prediction: {result.status[0]}")
    print(pd.DataFrame({"rank": range(1, result.codes.shape[1] + 1), "code": result.codes[0],
                        "title": result.titles[0], "score": result.scores[0].round(4)})
          .to_string(index=False))
    review = " (needs review)" if result.needs_review is not None and result.needs_review[0] \
        else ""
    if result.coded is not None:
        level, code, title, confidence = (result.coded[f"coded_{name}"][0] for name in
                                          ("level", "code", "title", "confidence"))
        print(f"coded {code} ({LEVEL_NAMES[level]}: {title}), confidence {confidence:.2f}{review}"
              if level else f"not coded at any level{review}")
    if result.confidence is not None:
        print(f"confidence {result.confidence[0]:.2f} that {result.codes[0][0]} is right"
              f"{review if result.coded is None else ''}")
    if result.evidence is not None and result.evidence[0]:
        print(f"evidence: {result.evidence[0]}")
