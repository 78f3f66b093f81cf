"""LightningModule: contrastive fine-tuning, and scoring against the cached category matrix."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import lightning as L
import torch
import torch.distributed as dist
from torch import nn
from transformers import get_linear_schedule_with_warmup

from occlass.data.categories import Categories
from occlass.data.examples import Exemplars
from occlass.data.soc import Level
from occlass.model.category_cache import CategoryCache, cache_identity, weights_fingerprint
from occlass.model.encoder import Encoder
from occlass.model.losses import ContrastiveLoss
from occlass.model.memory import FUSION_GRID, ExemplarMemory, best_fusion_weight, fuse
from occlass.model.metrics import GridAccuracy, OccupationMetrics, valid_mask


class OccupationClassifier(L.LightningModule):
    """Bi-encoder over inputs and occupations. `categories` (from the DataModule's
    `categories`, or `Categories.from_taxonomy`) are the occupations it scores against;
    `exemplars` (the DataModule's training titles) the memory fused with them in evaluation,
    with the weight that validation chooses (`fusion_weight` until it has). `levels` (the
    DataModule's `levels`: the SOC 2018 structure, `occlass.data.soc`) give the accuracy at each
    SOC level (major, minor, broad group, detailed occupation); None, no SOC-level accuracy.

    `hard_negatives_every`: every that many steps, the whole category matrix is re-encoded, and
    each input is also contrasted with every category of it that is not in the batch (all 1,016
    occupations, the confusable ones included); None = in-batch negatives only.
    """

    def __init__(self, encoder: Encoder, categories: Categories, loss: nn.Module | None = None,
                 optimizer: Callable | None = None, warmup_ratio: float = 0.1,
                 top_k: int = 5, category_batch_size: int = 256, epoch_seed: int = 0,
                 exemplars: Exemplars | None = None, fusion_weight: float = 0.5,
                 hard_negatives_every: int | None = 50, levels: list[Level] | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["encoder", "categories", "loss", "optimizer",
                                          "exemplars", "levels"])
        self.encoder = encoder
        # Mean pooling leaves the HF pooler (BERT, MPNet) without gradients: frozen, DDP does
        # not wait for them.
        if getattr(encoder.model, "pooler", None) is not None:
            encoder.model.pooler.requires_grad_(False)
        self.categories = categories
        self.loss = loss or ContrastiveLoss()
        self.optimizer = optimizer or torch.optim.AdamW
        self.category_cache: CategoryCache | None = None
        self.exemplars = exemplars
        self.memory: ExemplarMemory | None = None
        self.bank: torch.Tensor | None = None  # the category matrix the hard negatives come from
        # The fusion weight chosen on validation: a buffer, so checkpoints keep it.
        self.register_buffer("fusion_weight", torch.tensor(float(fusion_weight)))
        self.grid_accuracy = GridAccuracy(len(FUSION_GRID))
        self._val_scores: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        groups = {level.name: level.of_code.tolist() for level in reversed(levels or [])
                  if level.name != "onet"}  # major, minor, broad, detailed
        self.metrics = nn.ModuleDict({
            stage: OccupationMetrics(len(categories), groups, top_k) for stage in ("val", "test")
        })

    # -- training ---------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # Seed each epoch from (seed, epoch) so that a resumed run repeats an uninterrupted one.
        torch.manual_seed(self.hparams.epoch_seed + self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        queries = self.encoder(**batch["title"])
        categories = self.encoder(**batch["category"])
        partners = self.encoder(**batch["partner"]) if "partner" in batch else None
        every = self.hparams.hard_negatives_every
        if every and (self.bank is None or batch_idx % every == 0):
            self.bank = self._encode_sharded(self.categories.token_ids, self.categories.pad_id)
        loss = self.loss(queries, batch["label"], batch["codes"], categories,
                         batch["category_index"], partners=partners,
                         bank=self.bank if every else None)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def configure_optimizers(self):
        optimizer = self.optimizer(params=self.parameters())
        total = self.trainer.estimated_stepping_batches
        schedule = get_linear_schedule_with_warmup(optimizer,
                                                   int(self.hparams.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -- category cache ---------------------------------------------------------------------
    def refresh_category_cache(self, fp32: bool = False) -> CategoryCache:
        """Rebuild the cache unless it was built from these very weights, taxonomy and recipe,
        in this precision (the trainer's; with `fp32`, fp32 as prediction serves)."""
        identity = {**cache_identity(self.categories, self.encoder),
                    "precision": self._precision_name(fp32)}
        if self.category_cache is None or self.category_cache.identity != identity:
            embeddings = self._encode_sharded(self.categories.token_ids, self.categories.pad_id,
                                              fp32)
            self.category_cache = CategoryCache(embeddings, list(self.categories.codes), identity)
        return self.category_cache

    def refresh_memory(self, fp32: bool = False) -> ExemplarMemory | None:
        """Re-encode the exemplars unless they were encoded with these very weights, in this
        precision (the trainer's; with `fp32`, fp32)."""
        if self.exemplars is None:
            return None
        identity = {"weights": weights_fingerprint(self.encoder),
                    "precision": self._precision_name(fp32)}
        if self.memory is None or self.memory.identity != identity:
            embeddings = self._encode_sharded(self.exemplars.token_ids, self.categories.pad_id,
                                              fp32)
            labels = torch.tensor(self.exemplars.labels, device=embeddings.device)
            self.memory = ExemplarMemory(embeddings, labels, self.exemplars.titles,
                                         len(self.categories), identity)
        return self.memory

    @torch.no_grad()
    def _encode_sharded(self, ids: list[list[int]], pad_id: int,
                        fp32: bool = False) -> torch.Tensor:
        """Embeddings of `ids` (eval mode, the trainer's precision, or fp32). Under DDP each
        rank encodes a slice and the slices are gathered, so the work is not repeated and every
        rank holds the same matrix."""
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        per_rank = -(-len(ids) // world)
        mine = ids[self.global_rank * per_rank:(self.global_rank + 1) * per_rank]
        with self._precision(fp32):
            embeddings = self.encoder.encode_ids(mine, pad_id, self.hparams.category_batch_size)
        if world > 1:
            padded = torch.zeros(per_rank, embeddings.shape[1], device=embeddings.device)
            padded[:len(mine)] = embeddings
            embeddings = self.all_gather(padded).reshape(world * per_rank, -1)[:len(ids)]
        return embeddings

    def _precision(self, fp32: bool = False):
        """The trainer's precision context (autocast), or none outside a Trainer; with `fp32`,
        autocast off (inside the trainer's own context too): the precision prediction serves."""
        if fp32:
            return torch.autocast(self.device.type, enabled=False)
        try:
            return self.trainer.precision_plugin.forward_context()
        except RuntimeError:  # not attached to a Trainer
            return nullcontext()

    def _precision_name(self, fp32: bool = False) -> str:
        """The precision the caches are encoded in: the trainer's (`bf16-mixed`, ...), or fp32
        (`32-true`, as outside a Trainer)."""
        try:
            return "32-true" if fp32 else str(self.trainer.precision)
        except RuntimeError:  # not attached to a Trainer
            return "32-true"

    def similarities(self, title: dict[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                     torch.Tensor | None]:
        """Cosine similarity of each input to every category, and its best exemplar similarity
        per category (None without exemplars): both (B, n_codes). The caches are built first if
        there are none (they are refreshed at each evaluation)."""
        if self.category_cache is None:
            self.refresh_category_cache()
        if self.exemplars is not None and self.memory is None:
            self.refresh_memory()
        queries = self.encoder(**title).float()
        category = queries @ self.category_cache.embeddings.T.float()
        if self.memory is None:
            return category, None
        return category, self.memory.best(queries)

    def score(self, title: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fused scores of each input against every category: (B, n_codes)."""
        category, exemplar = self.similarities(title)
        return category if exemplar is None else fuse(category, exemplar,
                                                      float(self.fusion_weight))

    # -- evaluation -------------------------------------------------------------------------
    # Validation (which chooses: checkpoints, the fusion weight) runs in the trainer's precision;
    # the test split is measured in fp32, as prediction serves (the caches too), so report.md's
    # figures are the served model's.
    def refresh(self, fp32: bool = False) -> None:
        """The category cache and the memory for these weights, in the trainer's precision or
        in fp32."""
        self.refresh_category_cache(fp32)
        self.refresh_memory(fp32)

    def on_validation_epoch_start(self) -> None:
        self.refresh()
        self._val_scores = []

    def on_test_epoch_start(self) -> None:
        self.refresh(fp32=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        category, exemplar = self.similarities(batch["title"])
        if exemplar is None:
            self.metrics["val"].update(category, batch["codes"])
            return
        # Half the titles choose the fusion weight; the other half measure with it, so that
        # val metrics are not the maximum over the grid (all of them without the flag).
        choose = batch.get("choose", torch.ones(len(category), dtype=torch.bool))
        measure = ~choose if "choose" in batch else choose
        valid = valid_mask(batch["codes"][choose], len(self.categories))
        self.grid_accuracy.update([fuse(category[choose], exemplar[choose], w)
                                   for w in FUSION_GRID], valid)
        self._val_scores.append((category[measure], exemplar[measure], batch["codes"][measure]))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        with self._precision(fp32=True):
            self.metrics["test"].update(self.score(batch["title"]), batch["codes"])

    def _log_metrics(self, stage: str) -> None:
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()})

    def on_validation_epoch_end(self) -> None:
        if self._val_scores:  # choose the fusion weight, then measure with it
            accuracy = self.grid_accuracy.compute()
            self.grid_accuracy.reset()
            self.fusion_weight.fill_(best_fusion_weight(accuracy))
            for category, exemplar, codes in self._val_scores:
                self.metrics["val"].update(fuse(category, exemplar, float(self.fusion_weight)),
                                           codes)
            self._val_scores = []
            self.log("val/fusion_weight", self.fusion_weight)
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
