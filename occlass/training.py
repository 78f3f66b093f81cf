"""The training job behind `train.py`: evaluate, fine-tune, evaluate again, export the run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf

from occlass import runs

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float:
    """Run one training job; returns the best validation accuracy (the sweep objective)."""
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", monitor="val/accuracy", mode="max",
                                 save_last=True, filename="best-{epoch}-{step}")
    callbacks = [checkpoint, *instantiate(cfg.get("callbacks") or {}).values(),
                 *log_file_progress_bar(cfg.trainer)]
    loggers = [instantiate(logger) for logger in (cfg.get("loggers") or {}).values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, default_root_dir=out, logger=loggers)

    before = None
    if cfg.eval_before and not cfg.ckpt_path:
        before = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    if not checkpoint.best_model_path:  # fast_dev_run disables checkpointing: keep the result
        trainer.save_checkpoint(out / "checkpoints" / "last.ckpt")
    after = trainer.test(model, datamodule=datamodule, verbose=False,
                         ckpt_path="best" if checkpoint.best_model_path else None)[0]
    best = checkpoint.best_model_score
    best_val = float(best) if best is not None else after["test/accuracy"]
    if trainer.is_global_zero:
        export(out, model, datamodule, cfg, before, after, best_val)
    return best_val


def log_file_progress_bar(trainer_cfg: DictConfig) -> list[TQDMProgressBar]:
    """Lightning's default (rich) bar draws nothing when stdout is not a terminal (nohup, SLURM
    and CI logs): there, tqdm's bar, updated every `log_every_n_steps` batches."""
    if sys.stdout.isatty() or not trainer_cfg.get("enable_progress_bar", True):
        return []
    return [TQDMProgressBar(refresh_rate=trainer_cfg.get("log_every_n_steps") or 50)]


def _strip(metrics: dict | None) -> dict | None:
    return None if metrics is None else {k.split("/", 1)[1]: v for k, v in metrics.items()}


def export(out: Path, model, datamodule, cfg: DictConfig, before: dict | None, after: dict,
           best_val: float) -> None:
    """Write the exported encoder, the category cache, metrics.json, run.json and report.md."""
    before, after = _strip(before), _strip(after)
    model.encoder.save_pretrained(out / runs.ENCODER_DIR)
    datamodule.tokenizer.save_pretrained(out / runs.ENCODER_DIR)
    model.category_cache.save(out / runs.CACHE_FILE)
    taxonomy = datamodule.taxonomy
    runs.write_json(out / runs.RUN_FILE, {
        "taxonomy_version": taxonomy.version,
        "taxonomy_fingerprint": taxonomy.fingerprint,
        "n_codes": len(taxonomy),
        "recipe": datamodule.hparams.recipe,
        "max_input_length": datamodule.hparams.max_input_length,
        "max_category_length": datamodule.hparams.max_category_length,
        "base_model": model.encoder.name,
        "config": OmegaConf.to_container(cfg, resolve=True),
    })
    runs.write_json(out / runs.METRICS_FILE, {"before": before, "after": after,
                                              "best_val_accuracy": best_val})
    title = f"# occlass run: {model.encoder.name} on O*NET {taxonomy.version}"
    runs.write_atomic(out / runs.REPORT_FILE,
                      f"{title}\n\nTest split, {cfg.data.test_fraction:.0%} of titles.\n\n"
                      f"{runs.report_table(before, after)}\n")
    log.info("run written to %s\n%s", out, runs.report_table(before, after))
