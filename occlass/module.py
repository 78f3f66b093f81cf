"""LightningModule: contrastive fine-tuning, and scoring against the cached category matrix."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from occlass.category_cache import CategoryCache, encode_ids, weights_fingerprint
from occlass.encoder import Encoder
from occlass.losses import ContrastiveLoss
from occlass.metrics import OccupationMetrics
from occlass.taxonomy import SOC_LEVELS


class OccupationClassifier(L.LightningModule):
    """Bi-encoder over inputs and occupations; reads the taxonomy and category tokens from the
    trainer's `TitlePairDataModule`."""

    def __init__(self, encoder: Encoder, loss: nn.Module | None = None,
                 optimizer: Callable | None = None, warmup_ratio: float = 0.1,
                 top_k: int = 5, category_batch_size: int = 256, epoch_seed: int = 0):
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "loss", "optimizer"])
        self.encoder = encoder
        # Mean pooling leaves the HF pooler (BERT, MPNet) without gradients: frozen, DDP does
        # not wait for them.
        if getattr(encoder.model, "pooler", None) is not None:
            encoder.model.pooler.requires_grad_(False)
        self.loss = loss or ContrastiveLoss()
        self.optimizer = optimizer or torch.optim.AdamW
        self.category_cache: CategoryCache | None = None

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        datamodule.setup(stage)
        self.taxonomy = datamodule.taxonomy
        self.category_ids = datamodule.category_ids
        self.pad_id = datamodule.tokenizer.pad_token_id
        self.cache_identity = {
            "taxonomy": self.taxonomy.fingerprint,
            "taxonomy_version": self.taxonomy.version,
            "recipe": datamodule.hparams.recipe,
            "max_category_length": str(datamodule.hparams.max_category_length),
        }
        if not hasattr(self, "metrics"):
            levels = {level: self.taxonomy.level_ids(level) for level in SOC_LEVELS
                      if level != "onet"}
            self.metrics = nn.ModuleDict({
                stage: OccupationMetrics(len(self.taxonomy), levels, self.hparams.top_k)
                for stage in ("val", "test")
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
        identity = {**self.cache_identity, "weights": weights_fingerprint(self.encoder)}
        if self.category_cache is not None and self.category_cache.identity == identity:
            return self.category_cache
        n, world, rank = len(self.category_ids), self.trainer.world_size, self.global_rank
        per_rank = -(-n // world)
        mine = self.category_ids[rank * per_rank:(rank + 1) * per_rank]
        with self.trainer.precision_plugin.forward_context():
            embeddings = encode_ids(self.encoder, mine, self.pad_id,
                                    self.hparams.category_batch_size)
        if world > 1:
            padded = torch.zeros(per_rank, embeddings.shape[1], device=embeddings.device)
            padded[:len(mine)] = embeddings
            embeddings = self.all_gather(padded).reshape(world * per_rank, -1)[:n]
        self.category_cache = CategoryCache(embeddings, list(self.taxonomy.codes), identity)
        return self.category_cache

    def score(self, title: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cosine similarity of each input to every category: (B, n_codes)."""
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
