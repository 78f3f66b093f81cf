"""The training job behind `train.py`: evaluate, fine-tune, evaluate again, export the run."""

from __future__ import annotations

import copy
import logging
import pickle
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import transformers
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from occlass import runs
from occlass.data.examples import SPLITS, Exemplars
from occlass.errors import OcclassError
from occlass.model.category_cache import build_category_cache, weights_fingerprint
from occlass.model.memory import ExemplarMemory, build_memory
from occlass.model.metrics import report_table
from occlass.predict.loader import DESCRIPTION_WEIGHT, RunParts
from occlass.predict.predictor import Predictor
from occlass.report.analysis import analyse
from occlass.report.error_report import REPORT_FILE as ERROR_REPORT
from occlass.report.model_card import write_model_card, write_sentence_transformers_config
from occlass.train import sweeps

log = logging.getLogger(__name__)


class DropTips(logging.Filter):
    """Lightning advertises its cloud products ("💡 Tip: ... try installing litlogger") on every
    run; nothing a user of occlass can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


def new_experiment_notice(record: logging.LogRecord) -> bool:
    """False for MLFlowLogger's warning that a new store has no experiment yet (it makes one)."""
    return "not found. Creating it" not in record.getMessage()


def quiet_lightning() -> None:
    """One line per message, no advertisements, no warnings a user cannot act on.

    Lightning gives its loggers console handlers of their own; under Hydra the root logger
    prints too, so every message appeared twice. Where the root logger prints (Hydra's logging
    config), Lightning's records go to it alone.
    """
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]:
                logger.removeHandler(handler)
            logger.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(DropTips())
    # logger=mlflow: each run folder's new store announces its tables and its new experiment
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.loggers.mlflow").addFilter(new_experiment_notice)
    # Lightning 2.6 calls torch's deprecated `LeafSpec` API (fixed upstream, not ours to fix).
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)")
    # transformers' bars for loading and saving weights (instant here) would interleave with ours
    transformers.logging.disable_progress_bar()


def train(cfg: DictConfig) -> float:
    """Run one training job; returns the best value of `cfg.optimized_metric` (the sweep
    objective: a validation metric, never a test one)."""
    optimized = cfg.optimized_metric
    if not optimized.startswith("val/"):
        raise OcclassError(f"optimized_metric={optimized}: choose a validation metric (val/...)"
                           "; a sweep must never select on the test split")
    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise OcclassError(f"threads={threads!r}: give a whole number of at least 1, or null")
    trusted = cfg.get("trust_checkpoint", False)
    if not isinstance(trusted, bool):
        raise OcclassError(f"trust_checkpoint={trusted!r}: give true or false")
    if cfg.ckpt_path and not trusted:
        check_checkpoint(cfg.ckpt_path)
    quiet_lightning()
    code = runs.code_version()  # the code that trains this run, as it is when training starts
    L.seed_everything(cfg.seed, workers=True)
    if threads:
        torch.set_num_threads(threads)
    out = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    exemplars = datamodule.exemplars() if cfg.get("exemplar_memory", True) else None
    model = instantiate(cfg.model, _partial_=True)(categories=datamodule.categories,
                                                   exemplars=exemplars, levels=datamodule.levels)
    if optimized.removeprefix("val/") not in model.metrics["val"].names:
        raise OcclassError(f"optimized_metric={optimized} is not a metric of this model; choose "
                           "one of " + ", ".join(f"val/{n}" for n in model.metrics["val"].names))
    loggers = instantiate_loggers(cfg)
    callbacks = [c for c in instantiate(cfg.get("callbacks") or {}).values()
                 if loggers or not isinstance(c, LearningRateMonitor)]  # it needs a logger
    callbacks += log_file_progress_bar(cfg.trainer)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, default_root_dir=out, logger=loggers)
    mlflow = [logger for logger in trainer.loggers if isinstance(logger, MLFlowLogger)]
    for logger in mlflow:  # (fast_dev_run replaces the loggers: nothing is logged)
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    log.info("model %s: %.1fM parameters (%.1fM trainable)", model.encoder.name,
             sum(p.numel() for p in model.parameters()) / 1e6,
             sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6)

    datamodule.setup("fit")
    has_val, has_test = (len(datamodule.datasets[s]) > 0 for s in ("val", "test"))
    before = None
    if cfg.eval_before and not cfg.ckpt_path and has_test:
        if has_val:  # the untouched model's fusion weight, chosen on validation as after
            trainer.validate(model, datamodule=datamodule, verbose=False)
        before = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=not trusted)
    untrained = trainer.global_step == 0
    if untrained:
        log.warning("no training step ran (trainer.max_epochs=%s): the run holds the untrained "
                    "model", trainer.max_epochs)
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
    if not best_path:  # fast_dev_run or no checkpoint callback: keep the result
        trainer.save_checkpoint(out / "checkpoints" / "last.ckpt", weights_only=False)
    best = objective(trainer, optimized)
    if best_path:  # the best weights (and the fusion weight chosen with them)
        state = torch.load(best_path, map_location=model.device, weights_only=True)
        model.load_state_dict(state["state_dict"])
    after = (trainer.test(model, datamodule=datamodule, verbose=False)[0] if has_test
             else None)  # in fp32, as prediction serves (the module's test stage)
    if has_val:  # what export fits the calibrator and confidence with: fp32 caches (every rank)
        model.refresh(fp32=True)
    if trainer.is_global_zero:
        export(out, model, datamodule, cfg, before, after, best, untrained, code)
        for logger in mlflow:
            for name in (runs.REPORT_FILE, runs.METRICS_FILE):
                logger.experiment.log_artifact(logger.run_id, str(out / name))
    return best


def instantiate_loggers(cfg: DictConfig) -> list:
    """The configured loggers; one line if one needs a package that is not installed."""
    try:
        return list(instantiate(cfg.get("logger") or {}).values())
    except InstantiationException as err:
        if isinstance(err.__cause__, ModuleNotFoundError):
            raise OcclassError(f"logger: {err.__cause__} (for logger=mlflow: pip install "
                               "'occlass[mlflow]')") from None
        raise


def check_checkpoint(path: str | Path) -> None:
    """Refuse a checkpoint that holds more than weights and plain values: unpickling it could run
    any code (a stranger's file). `trust_checkpoint=true` loads it anyway."""
    if not Path(path).is_file():
        raise OcclassError(f"ckpt_path={path}: file not found")
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        found = lines[1] if len(lines) > 1 else lines[0]  # after torch's general paragraph
        raise OcclassError(f"ckpt_path={path}: holds objects other than weights ({found}), "
                           "whose loading could run code; if you trust whoever made it, add "
                           "trust_checkpoint=true") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise OcclassError(f"ckpt_path={path}: not a readable checkpoint "
                           f"({' '.join(str(err).split())[:200]})") from None


def cross_validate(cfg: DictConfig) -> float:
    """Grouped K-fold cross-validation (`cv.folds=K`): `train` once per fold, in RUN_DIR/fold_k
    with `data.fold=k, data.folds=K` (test = fold k of the titles, grouped by normalised title),
    then RUN_DIR/cv_summary.md and .json: every metric's mean ± std over the folds. Returns the
    mean of the folds' objectives (what a sweep over cross-validated settings maximises)."""
    folds = cfg.cv.folds
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise OcclassError(f"cv.folds={folds}: give the number of folds, 2 or more")
    if cfg.data.get("holdout", "splits") != "splits":
        raise OcclassError(f"cv.folds with data.holdout={cfg.data.holdout}: cross-validation "
                           "needs test splits (data.holdout=splits)")
    if cfg.ckpt_path:
        raise OcclassError("cv.folds with ckpt_path: each fold trains from the base model")
    if cfg.data.get("fold") is not None or cfg.data.get("folds") is not None:
        raise OcclassError("cv.folds sets data.fold and data.folds itself; leave them unset "
                           "(or set them without cv.folds to train one fold)")
    out = Path(cfg.paths.output_dir)
    names = [f"fold_{k}" for k in range(folds)]
    bests = []
    for k, name in enumerate(names):
        log.info("cross-validation: data.fold=%d of data.folds=%d in %s", k, folds, out / name)
        fold_cfg = copy.deepcopy(cfg)
        with open_dict(fold_cfg):
            fold_cfg.paths.output_dir = str(out / name)
            fold_cfg.data.fold, fold_cfg.data.folds = k, folds
            fold_cfg.cv.folds = None
        bests.append(train(fold_cfg))
    if rank_zero_only.rank == 0:  # under DDP, rank 0 wrote the folds' runs
        text = sweeps.summarize_folds(out, names)
        log.info("cross-validation summary written to %s\n%s",
                 out / f"{sweeps.CV_SUMMARY}.md", text)
    return float(np.mean(bests))


def objective(trainer: L.Trainer, metric: str) -> float:
    """The best value of `metric` that the checkpoint callback kept, else its last value."""
    checkpoint = trainer.checkpoint_callback
    if (isinstance(checkpoint, ModelCheckpoint) and checkpoint.monitor == metric
            and checkpoint.best_model_score is not None):
        return float(checkpoint.best_model_score)
    if metric not in trainer.callback_metrics:
        log.warning("%s was not measured (training stopped before validation)", metric)
        return float("nan")
    return float(trainer.callback_metrics[metric])


def log_file_progress_bar(trainer_cfg: DictConfig) -> list[TQDMProgressBar]:
    """Lightning's default (rich) bar draws nothing when stdout is not a terminal (nohup, SLURM
    and CI logs): there, tqdm's bar, updated every `log_every_n_steps` batches."""
    if sys.stdout.isatty() or not trainer_cfg.get("enable_progress_bar", True):
        return []
    return [TQDMProgressBar(refresh_rate=trainer_cfg.get("log_every_n_steps") or 50)]


def evaluation_predictor(model, datamodule, memory: ExemplarMemory) -> Predictor:
    """The trained model as prediction uses it (fp32: the caches `model.refresh(fp32=True)`
    built, titles encoded outside autocast), with `memory`."""
    return Predictor(RunParts(model.encoder, datamodule.tokenizer, datamodule.taxonomy,
                              model.category_cache, datamodule.hparams.max_input_length,
                              memory=memory, fusion_weight=float(model.fusion_weight)))


def memory_of(encoder, exemplars: Exemplars, n_codes: int, pad_id: int) -> ExemplarMemory:
    """The exported memory: fp32, eval mode, identified by the encoder's weights."""
    return build_memory(encoder.float(), exemplars, n_codes, pad_id,
                        {"weights": weights_fingerprint(encoder)})


def _strip(metrics: dict | None, names: list[str]) -> dict | None:
    """`trainer.test`'s "test/NAME" values as NAME: value, in the metrics' own order."""
    return None if metrics is None else {name: metrics[f"test/{name}"] for name in names}


def export(out: Path, model, datamodule, cfg: DictConfig, before: dict | None,
           after: dict | None, best: float, untrained: bool = False,
           code: dict | None = None) -> None:
    """Write the exported encoder, the category cache, the exemplar memory (every title, of
    every split), metrics.json, run.json (with `code`, the version of the code that trained it)
    and report.md."""
    names = model.metrics["test"].names
    before, after = _strip(before, names), _strip(after, names)
    model.encoder.save_pretrained(out / runs.ENCODER_DIR)
    datamodule.tokenizer.save_pretrained(out / runs.ENCODER_DIR)
    runs.follow_umask(out / runs.ENCODER_DIR)  # a teammate in the group can read a shared run
    # Built as prediction builds them (fp32, eval mode), so rebuilt ones give the same answers.
    build_category_cache(model.encoder, model.categories).save(out / runs.CACHE_FILE)
    fusion_weight = description_weight = calibrator = confidence = None
    if model.exemplars is not None:
        log.info("encoding the exemplar memory (every title)")
        served = memory_of(model.encoder, datamodule.exemplars(SPLITS), len(model.categories),
                           datamodule.tokenizer.pad_token_id)
        served.save(out / runs.MEMORY_FILE)
        if model.memory is not None:  # evaluated: there is a validation split
            description_weight, calibrator, confidence = analyse(
                out, evaluation_predictor(model, datamodule, served), datamodule.examples,
                datamodule.hparams.data_dir, datamodule.hparams.n_tasks, cfg.target_precision)
        fusion_weight = round(float(model.fusion_weight), 6)
    if calibrator is None:
        log.warning("no validation split (data.holdout=none): the run has no calibrator and no "
                    "confidence model (its predictions carry no needs_review) and no description "
                    "weight (prediction weighs descriptions %s, its default)%s", DESCRIPTION_WEIGHT,
                    "" if fusion_weight is None else
                    f"; the fusion weight is the configured one, {fusion_weight}")
    taxonomy, hp = datamodule.taxonomy, datamodule.hparams
    runs.RunInfo(
        taxonomy_version=taxonomy.version, taxonomy_fingerprint=taxonomy.fingerprint,
        n_codes=len(taxonomy), recipe=hp.recipe, n_tasks=hp.n_tasks,
        max_input_length=hp.max_input_length, max_category_length=hp.max_category_length,
        base_model=model.encoder.name, config=OmegaConf.to_container(cfg, resolve=True),
        fusion_weight=fusion_weight, description_weight=description_weight,
        calibration=None if calibrator is None else calibrator.to_dict(),
        confidence=None if confidence is None else confidence.to_dict(), code=code,
    ).save(out)
    write_sentence_transformers_config(out / runs.ENCODER_DIR, hp.max_input_length)
    write_model_card(out / runs.ENCODER_DIR, base_model=model.encoder.name,
                     taxonomy_version=taxonomy.version,
                     config=OmegaConf.to_container(cfg, resolve=True),
                     metrics={"before": before, "after": after}, n_codes=len(taxonomy),
                     fusion_weight=fusion_weight)
    runs.write_json(out / runs.METRICS_FILE, {
        "before": before, "after": after,
        "objective": {"metric": cfg.optimized_metric, "value": best}})
    title = f"# occlass run: {model.encoder.name} on O*NET {taxonomy.version}"
    if after is None:
        body = ("No test split: every title trained (`data.holdout=none`), so this run has no "
                "held-out measurement; see the run with splits that chose its settings.")
    else:
        folds = cfg.data.get("folds")
        share = (f"fold {cfg.data.fold} of {folds} (1/{folds} of titles)" if folds
                 else f"{cfg.data.test_fraction:.0%} of titles")
        body = (f"Test split, {share}; fusion weight {fusion_weight} (chosen on validation)."
                f"\n\n{report_table(before, after)}")
        if (out / ERROR_REPORT).is_file():
            body += (f"\n\nError analysis (per major group, most confused pairs, worst "
                     f"occupations, plots): [{ERROR_REPORT}]({ERROR_REPORT})")
    if untrained:
        body = ("**Warning: no training step ran (`trainer.max_epochs=0`?): this run holds the "
                f"untrained model.**\n\n{body}")
    runs.write_atomic(out / runs.REPORT_FILE, f"{title}\n\n{body}\n")
    log.info("run written to %s\n%s", out, body)
