"""LightningModule: contrastive fine-tuning, and scoring against the cached category matrix."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import lightning as L
import torch
import torch.distributed as dist
from torch import nn
from transformers import get_linear_schedule_with_warmup

from occlass.category_cache import Categories, CategoryCache
from occlass.encoder import Encoder
from occlass.losses import ContrastiveLoss
from occlass.metrics import OccupationMetrics
from occlass.taxonomy import SOC_LEVELS, level_ids


class OccupationClassifier(L.LightningModule):
    """Bi-encoder over inputs and occupations. `categories` (from the DataModule's
    `categories`, or `Categories.from_taxonomy`) are the occupations it scores against."""

    def __init__(self, encoder: Encoder, categories: Categories, loss: nn.Module | None = None,
                 optimizer: Callable | None = None, warmup_ratio: float = 0.1,
                 top_k: int = 5, category_batch_size: int = 256, epoch_seed: int = 0):
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "categories", "loss", "optimizer"])
        self.encoder = encoder
        # Mean pooling leaves the HF pooler (BERT, MPNet) without gradients: frozen, DDP does
        # not wait for them.
        if getattr(encoder.model, "pooler", None) is not None:
            encoder.model.pooler.requires_grad_(False)
        self.categories = categories
        self.loss = loss or ContrastiveLoss()
        self.optimizer = optimizer or torch.optim.AdamW
        self.category_cache: CategoryCache | None = None
        levels = {level: level_ids(categories.codes, level) for level in SOC_LEVELS
                  if level != "onet"}
        self.metrics = nn.ModuleDict({
            stage: OccupationMetrics(len(categories), levels, top_k) for stage in ("val", "test")
        })

    # -- training ---------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # Seed each epoch from (seed, epoch) so that a resumed run repeats an uninterrupted one.
        torch.manual_seed(self.hparams.epoch_seed + self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        queries = self.encoder(**batch["title"])
        categories = self.encoder(**batch["category"])
        loss = self.loss(queries, batch["label"], batch["codes"], categories,
                         batch["category_index"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def configure_optimizers(self):
        optimizer = self.optimizer(params=self.parameters())
        total = self.trainer.estimated_stepping_batches
        schedule = get_linear_schedule_with_warmup(optimizer,
                                                   int(self.hparams.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -- category cache ---------------------------------------------------------------------
    def refresh_category_cache(self) -> CategoryCache:
        """Rebuild the cache unless it was built from these very weights, taxonomy and recipe.

        Under DDP each rank encodes a slice of the categories and the slices are gathered, so the
        work is not repeated and every rank holds the same matrix.
        """
        identity = self.categories.identity_with(self.encoder)
        if self.category_cache is not None and self.category_cache.identity == identity:
            return self.category_cache
        ids = self.categories.token_ids
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        per_rank = -(-len(ids) // world)
        mine = ids[self.global_rank * per_rank:(self.global_rank + 1) * per_rank]
        with self._precision():
            embeddings = self.encoder.encode_ids(mine, self.categories.pad_id,
                                                 self.hparams.category_batch_size)
        if world > 1:
            padded = torch.zeros(per_rank, embeddings.shape[1], device=embeddings.device)
            padded[:len(mine)] = embeddings
            embeddings = self.all_gather(padded).reshape(world * per_rank, -1)[:len(ids)]
        self.category_cache = CategoryCache(embeddings, list(self.categories.codes), identity)
        return self.category_cache

    def _precision(self):
        """The trainer's precision context (autocast), or none outside a Trainer."""
        try:
            return self.trainer.precision_plugin.forward_context()
        except RuntimeError:  # not attached to a Trainer
            return nullcontext()

    def score(self, title: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cosine similarity of each input to every category: (B, n_codes). The category cache
        is built first if there is none (it is refreshed at each evaluation)."""
        if self.category_cache is None:
            self.refresh_category_cache()
        return self.encoder(**title) @ self.category_cache.embeddings.T

    # -- evaluation -------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.refresh_category_cache()

    def on_test_epoch_start(self) -> None:
        self.refresh_category_cache()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.metrics["val"].update(self.score(batch["title"]), batch["codes"])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.metrics["test"].update(self.score(batch["title"]), batch["codes"])

    def _log_metrics(self, stage: str) -> None:
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()})

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
