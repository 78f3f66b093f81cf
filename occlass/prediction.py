"""The prediction job behind `predict.py`: a ranked table for `text`, or a table file streamed
through the `Predictor` (one process here; several through `occlass.distributed_predict`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
import transformers
from omegaconf import DictConfig
from tqdm import tqdm

from occlass.errors import OcclassError
from occlass.predictor import Predictor
from occlass.tabular_io import AtomicTableWriter, count_rows, read_chunks

log = logging.getLogger(__name__)


def predict_file(predictor: Predictor, input: str | Path, output: str | Path, top_k: int = 5,
                 title_column: str = "title", description_column: str | None = "description",
                 chunk_rows: int = 10_000, progress: bool = True) -> int:
    """Stream a CSV/JSONL/Parquet table through `predictor` into `output` (same choice of types):
    every input column, then the prediction columns. `output` appears only once complete.
    Returns the number of rows."""
    chunks = read_chunks(input, chunk_rows, required=[title_column])
    rows = 0
    with (AtomicTableWriter(output) as writer,
          tqdm(total=count_rows(input), unit="rows", unit_scale=True, disable=not progress) as bar):
        for chunk in chunks:
            writer.write(predictor.predict_frame(chunk, top_k, title_column,
                                                 description_column, input))
            bar.update(len(chunk))
            rows += len(chunk)
    return rows


def predict_job(cfg: DictConfig) -> None:
    """What `predict.py` runs: a ranked table for `text`, else `input` streamed into `output`."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    transformers.logging.disable_progress_bar()  # ours is the one that matters
    if cfg.text is None:
        if not (cfg.input and cfg.output):
            raise OcclassError('give input=FILE and output=FILE, or text="a job title"')
        AtomicTableWriter(cfg.output)  # fail fast on bad paths, types or columns, before loading
        next(read_chunks(cfg.input, 1, required=[cfg.columns.title]), None)
        if cfg.get("trainer"):
            from occlass.distributed_predict import predict_distributed  # imports Lightning

            predict_distributed(cfg)
            return
    predictor = Predictor.from_config(cfg)
    if cfg.text is None:
        rows = predict_file(predictor, cfg.input, cfg.output, cfg.top_k, cfg.columns.title,
                            cfg.columns.description, cfg.chunk_rows, cfg.progress)
        log.info("%d rows → %s", rows, cfg.output)
        return
    result = predictor.predict([cfg.text], top_k=cfg.top_k)
    if result.status[0] != "ok":
        raise OcclassError(f"no prediction: {result.status[0]}")
    print(pd.DataFrame({"rank": range(1, result.codes.shape[1] + 1), "code": result.codes[0],
                        "title": result.titles[0], "score": result.scores[0].round(4)})
          .to_string(index=False))
