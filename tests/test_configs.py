"""Every option of every config group composes and instantiates (with the tiny model and data)."""

import pytest
import torch
from helpers.tiny import ROOT, compose_tiny_train
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning import Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from occlass import runs
from occlass.data.datamodule import TitlePairDataModule
from occlass.model.memory import FUSION_GRID
from occlass.model.module import OccupationClassifier
from occlass.train.job import train

CONF = ROOT / "conf"
OPTIONS = sorted((path.parent.relative_to(CONF).as_posix(), path.stem)
                 for path in CONF.glob("*/**/*.yaml")
                 if path.parent.name != "engine")  # predict.py's group (tests/test_spark.py)


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


def test_gpu_large_is_mpnet_with_the_default_recipe_on_one_gpu(tiny_bert, tiny_onet, tmp_path):
    """experiment=gpu-large: all-mpnet-base-v2, the default recipe, one GPU in bf16; it trains
    (fast_dev_run) and exports a calibrated, memory-fused run on CPU with the tiny model
    standing in for mpnet."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=gpu-large"])
        default = compose("train")
    assert cfg.model.encoder.name.endswith("models/all-mpnet-base-v2")
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.precision) == \
        ("gpu", 1, "bf16-mixed")
    assert cfg.data.batch_size > default.data.batch_size
    assert cfg.exemplar_memory and cfg.data.title_pairs
    assert cfg.data.noise == default.data.noise is not None
    assert cfg.model.hard_negatives_every is None
    out = tmp_path / "run"
    train(compose_tiny_train(tiny_onet, tiny_bert, out, "experiment=gpu-large",
                             "trainer.accelerator=cpu", "trainer.fast_dev_run=true"))
    info = runs.RunInfo.load(out)
    assert info.config["data"]["max_category_length"] == 96
    assert info.fusion_weight in FUSION_GRID and info.calibration is not None


def test_cpu_long_is_the_default_recipe_for_four_epochs():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        long = compose("train", overrides=["experiment=cpu-long"])
        default = compose("train", overrides=["trainer.max_epochs=4"])
    assert long.trainer.max_epochs == 4 and long == default


def test_cpu_trainer_precision_follows_the_processor(monkeypatch):
    """bf16-mixed only where the CPU has bf16 instructions; emulated bf16 is several times
    slower than fp32, so other CPUs train in 32-true."""
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        with initialize_config_dir(str(CONF), version_base="1.3"):
            assert compose("train").trainer.precision == expected
