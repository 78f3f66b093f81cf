"""Data-parallel prediction of a table with Lightning's `Trainer.predict` (`predict.py ...
trainer=ddp trainer.devices=N`): the same output as one process, row for row.

Each rank streams its own contiguous range of the input's rows, in whole chunks of `chunk_rows`
(so its forward passes are those of one process), and writes its predictions to a hidden shard
next to the output, `.OUT.shard-RANK.EXT`, in the output's format (what one process can write, a
rank can: JSONL records with keys of their own, values Parquet cannot hold). Once all ranks are done, rank 0 copies the shards
in rank order into the output, a batch at a time, and removes them. No rank holds more than a
chunk; the output's folder must be shared by all ranks (nodes).

The ranges come from an estimate of the row count (`count_rows`: a line count for CSV and JSONL);
the last rank also takes any rows past it, so a wrong estimate only unbalances the work. A rank
reads (but skips) the rows before its range. If a rank fails, the others finish their ranges,
then all remove their shards and exit with an error; a rank that dies outright (killed, out of
memory) may leave shards behind, which the next run replaces.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import lightning as L
import pandas as pd
from hydra.utils import instantiate
from lightning.pytorch.callbacks import BasePredictionWriter
from omegaconf import DictConfig
from torch.utils.data import DataLoader, IterableDataset

from occlass.data.tabular_io import (
    AtomicTableWriter,
    count_rows,
    neutralise_formulas,
    read_chunks,
)
from occlass.errors import OcclassError
from occlass.predict.loader import load_configured, predictor_options
from occlass.predict.predictor import Predictor

log = logging.getLogger(__name__)


def rank_rows(rank: int, world: int, rows: int, chunk_rows: int) -> tuple[int, int]:
    """The rows [start, stop) of `rank`: a contiguous share of the input's ~`rows` rows, in whole
    chunks; the last rank's share runs to the end of the input."""
    chunks = -(-rows // chunk_rows)
    start = rank * chunks // world * chunk_rows
    stop = (rank + 1) * chunks // world * chunk_rows if rank < world - 1 else sys.maxsize
    return start, stop


class RowRange(IterableDataset):
    """Rows [start, stop) of a table, as DataFrames of at most `chunk_rows` rows."""

    def __init__(self, path: str | Path, start: int, stop: int, chunk_rows: int,
                 title_column: str):
        self.path, self.start, self.stop = path, start, stop
        self.chunk_rows, self.title_column = chunk_rows, title_column

    def __iter__(self):
        first = 0  # the table row of the chunk's first row
        for chunk in read_chunks(self.path, self.chunk_rows, required=[self.title_column]):
            part = chunk.iloc[max(self.start - first, 0):self.stop - first]
            first += len(chunk)
            if len(part):
                yield part
            if first >= self.stop:
                return


class PredictModule(L.LightningModule):
    """Predicts this rank's rows of `cfg.input` with the predictor `cfg` describes."""

    def __init__(self, cfg: DictConfig):
        super().__init__()
        self.cfg = cfg
        self.predictor = None

    def setup(self, stage: str) -> None:
        parts = load_configured(self.cfg, device=str(self.trainer.strategy.root_device))
        self.predictor = Predictor(parts, **predictor_options(self.cfg))

    def predict_dataloader(self) -> DataLoader:
        cfg = self.cfg
        start, stop = rank_rows(self.global_rank, self.trainer.world_size,
                                count_rows(cfg.input) or 0, cfg.chunk_rows)
        return DataLoader(RowRange(cfg.input, start, stop, cfg.chunk_rows, cfg.columns.title),
                          batch_size=None)  # a batch is a chunk

    def predict_step(self, chunk: pd.DataFrame) -> pd.DataFrame:
        cfg = self.cfg
        result = self.predictor.predict_frame(chunk, cfg.top_k, cfg.columns.title,
                                              cfg.columns.description, cfg.input)
        return neutralise_formulas(result) if cfg.neutralise_formulas else result


class ShardWriter(BasePredictionWriter):
    """Writes each rank's predictions to its shard; once every rank has, rank 0 merges the shards
    into `output`. If any rank fails, all agree on it and remove their shards."""

    def __init__(self, output: str | Path):
        super().__init__("batch")
        self.output = Path(output)
        self.writer: AtomicTableWriter | None = None
        self.rows = 0
        self.agreed = False

    def shard(self, rank: int) -> Path:
        return self.output.with_name(f".{self.output.name}.shard-{rank}{self.output.suffix}")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.writer = AtomicTableWriter(self.shard(trainer.global_rank)).__enter__()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        self.writer.write(prediction)
        self.rows += len(prediction)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.writer.__exit__(None, None, None)
        self.writer = None
        log.info("rank %d: %d rows → %s", trainer.global_rank, self.rows,
                 self.shard(trainer.global_rank))
        if not self.agree(trainer, ok=True):
            raise OcclassError(f"{self.output}: not written, as another rank failed (see above)")
        if trainer.is_global_zero:
            self.merge([self.shard(rank) for rank in range(trainer.world_size)])

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if self.writer is not None:  # drop the unfinished shard
            self.writer.__exit__(type(exception), exception, exception.__traceback__)
            self.writer = None
        if not self.agreed:
            self.agree(trainer, ok=False)

    def agree(self, trainer: L.Trainer, ok: bool) -> bool:
        """Whether every rank wrote its shard (a collective: every rank calls it once, at its
        end); if not, this rank's shard is removed."""
        self.agreed = True
        if trainer.strategy.reduce_boolean_decision(ok, all=True):
            return True
        self.shard(trainer.global_rank).unlink(missing_ok=True)
        return False

    def merge(self, shards: list[Path]) -> None:
        """Copy the shards, in order, into the output; then remove them."""
        rows = 0
        try:
            with AtomicTableWriter(self.output) as writer:
                for chunk in (c for shard in shards for c in read_chunks(shard) if len(c)):
                    writer.write(chunk)  # types as the input had them (ints with nulls stay ints)
                    rows += len(chunk)
        finally:
            for shard in shards:
                shard.unlink(missing_ok=True)
        log.info("%d rows → %s", rows, self.output)


def predict_distributed(cfg: DictConfig) -> None:
    """Stream `cfg.input` into `cfg.output` with `Trainer.predict` under `cfg.trainer`."""
    if cfg.threads:  # else Lightning sets each rank's threads to cores / processes
        os.environ["OMP_NUM_THREADS"] = str(cfg.threads)
    warnings.filterwarnings("ignore", "Couldn't infer the batch indices")  # ShardWriter needs none
    trainer = instantiate(cfg.trainer, callbacks=[ShardWriter(cfg.output)], logger=False,
                          precision="32-true",  # the predictor's own `precision` applies
                          enable_checkpointing=False, enable_model_summary=False,
                          enable_progress_bar=cfg.progress)
    trainer.predict(PredictModule(cfg), return_predictions=False)
