"""Every option of every config group composes and instantiates (with the tiny model and data)."""

import pytest
import torch
from helpers.tiny import ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning import Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from occlass.data.datamodule import TitlePairDataModule
from occlass.model.module import OccupationClassifier

CONF = ROOT / "conf"
OPTIONS = sorted((path.parent.relative_to(CONF).as_posix(), path.stem)
                 for path in CONF.glob("*/**/*.yaml"))


def test_every_group_is_found():
    groups = {group for group, _ in OPTIONS}
    assert groups == {"callbacks", "data", "experiment", "hparams_search", "hydra/launcher",
                      "logger", "loss", "model", "optim", "paths", "trainer"}


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(group, option, tiny_bert, tiny_onet, tmp_path):
    overrides = [f"{group}={option}", f"paths.output_dir={tmp_path}"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        named = compose("train", overrides=overrides).model.encoder.name
        cfg = compose("train", return_hydra_config=True, overrides=[
            *overrides, f"paths.data_dir={tiny_onet}", f"model.encoder.name={tiny_bert}",
            *([] if torch.cuda.is_available() else ["trainer.accelerator=cpu"])])
    assert named  # each model option names its weights; the tiny model stands in for them
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, TitlePairDataModule)
    model = instantiate(cfg.model, _partial_=True)(categories=datamodule.categories)
    assert isinstance(model, OccupationClassifier)
    assert isinstance(instantiate(cfg.optim.optimizer)(params=model.parameters()),
                      torch.optim.Optimizer)
    callbacks = list(instantiate(cfg.get("callbacks") or {}).values())
    loggers = list(instantiate(cfg.get("logger") or {}).values())
    assert all(isinstance(c, Callback) for c in callbacks)
    assert all(isinstance(logger, Logger) for logger in loggers)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert isinstance(trainer, Trainer)
    if group == "callbacks" and option in ("default", "model_checkpoint"):
        assert trainer.checkpoint_callback.monitor == cfg.optimized_metric
    if group == "hydra/launcher":
        assert type(instantiate(cfg.hydra.launcher)).__name__ == "SlurmLauncher"
    if group == "hparams_search":
        assert cfg.hydra.sweeper.direction == "maximize"
        assert type(instantiate(cfg.hydra.sweeper)).__name__ == "OptunaSweeper"


def test_predict_config_composes_with_each_trainer():
    for trainer in (None, "cpu", "ddp"):
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("predict", overrides=[] if trainer is None else [f"trainer={trainer}"])
        assert (cfg.get("trainer") is None) == (trainer is None)
