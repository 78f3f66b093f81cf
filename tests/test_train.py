import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback

from occlass import runs
from occlass.category_cache import CategoryCache, encode_ids
from occlass.encoder import Encoder
from occlass.training import train


def test_fast_dev_run_writes_every_artifact(train_cfg):
    cfg = train_cfg("trainer.fast_dev_run=true")
    assert train(cfg) >= 0
    out = Path(cfg.paths.output_dir)
    for name in (runs.CACHE_FILE, runs.RUN_FILE, runs.METRICS_FILE, runs.REPORT_FILE):
        assert (out / name).is_file(), name
    assert (out / runs.ENCODER_DIR / "config.json").is_file()
    assert (out / runs.ENCODER_DIR / "tokenizer_config.json").is_file()
    assert list((out / "checkpoints").glob("*.ckpt"))
    metrics = json.loads((out / runs.METRICS_FILE).read_text())
    assert metrics["before"]["accuracy"] >= 0 and "major_accuracy" in metrics["after"]
    report = (out / runs.REPORT_FILE).read_text()
    assert "| Accuracy (top-1) |" in report and "Improvement" in report
    run = json.loads((out / runs.RUN_FILE).read_text())
    cache = CategoryCache.load(out / runs.CACHE_FILE)
    assert cache.embeddings.shape == (run["n_codes"], 32)
    assert cache.identity["taxonomy"] == run["taxonomy_fingerprint"]


def test_progress_reaches_a_log_file(train_cfg, capfd):
    """stdout is not a terminal here (as under nohup or SLURM): the bar still reports its steps."""
    train(train_cfg("trainer.fast_dev_run=true", "trainer.enable_progress_bar=true",
                    "trainer.log_every_n_steps=1"))
    progress = capfd.readouterr().out
    assert "Epoch 0: 100%" in progress and "Testing" in progress


def evaluated_module(cfg):
    """A module and datamodule after one test pass (so the module has a trainer and a cache)."""
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.test(model, datamodule=datamodule, verbose=False)
    return model, datamodule


def test_category_cache_reused_for_same_weights_and_rebuilt_when_they_change(train_cfg):
    model, datamodule = evaluated_module(train_cfg())
    cache = model.category_cache
    assert model.refresh_category_cache() is cache  # same weights: reused
    with torch.no_grad():
        for parameter in model.encoder.parameters():
            parameter.add_(torch.randn_like(parameter))
    rebuilt = model.refresh_category_cache()
    assert rebuilt is not cache
    assert rebuilt.identity["weights"] != cache.identity["weights"]
    model.encoder.eval()
    expected = encode_ids(model.encoder, datamodule.category_ids, datamodule.tokenizer.pad_token_id)
    assert torch.allclose(rebuilt.embeddings, expected, atol=1e-6)
    assert not torch.allclose(rebuilt.embeddings, cache.embeddings, atol=1e-3)


class StopAfterFirstEpoch(Callback):
    """Simulates an interrupted run: stops once the first epoch is validated and checkpointed."""

    def on_validation_end(self, trainer, pl_module):
        trainer.should_stop = True


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def test_resumed_run_ends_where_an_uninterrupted_run_does(train_cfg, tmp_path):
    common = ("trainer.max_epochs=2", "trainer.limit_train_batches=3", "eval_before=false",
              "model.encoder.name=" + str(Path(train_cfg().model.encoder.name)),
              "data.batch_size=4", "optim.lr=1e-3")
    straight = train_cfg(*common, f"paths.output_dir={tmp_path / 'straight'}")
    train(straight)
    first = train_cfg(*common, "+callbacks.stop._target_=test_train.StopAfterFirstEpoch",
                      f"paths.output_dir={tmp_path / 'part'}")
    train(first)
    resumed = train_cfg(*common, f"paths.output_dir={tmp_path / 'resumed'}",
                        f"ckpt_path={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}")
    train(resumed)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    part = final_weights(tmp_path / "part")
    name = "encoder.model.encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(part[name], a[name])  # the second epoch did change the weights
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


@pytest.mark.integration
def test_packaged_minilm_trains_and_exported_encoder_reloads(train_cfg, packaged_minilm):
    cfg = train_cfg(f"model.encoder.name={packaged_minilm}", "trainer.limit_train_batches=3",
                    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                    "eval_before=false", "data.max_category_length=32")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    exported = Encoder(out / runs.ENCODER_DIR).eval()
    trained = instantiate(cfg.model.encoder)
    trained.model.load_state_dict(
        {k.removeprefix("encoder.model."): v for k, v in torch.load(
            next((out / "checkpoints").glob("best-*.ckpt")), weights_only=False)[
            "state_dict"].items() if k.startswith("encoder.model.")})
    trained.eval()
    ids = [[101, 7500, 102], [101, 4007, 9722, 102]]
    a, b = encode_ids(exported, ids, 0), encode_ids(trained, ids, 0)
    assert torch.allclose(a, b, atol=1e-6)
    base = encode_ids(instantiate(cfg.model.encoder).eval(), ids, 0)
    assert not torch.allclose(a, base, atol=1e-4)  # training moved the weights
