import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning_utilities.core.imports import RequirementCache

from occlass import runs
from occlass.errors import OcclassError
from occlass.model.category_cache import CategoryCache, build_category_cache
from occlass.model.encoder import Encoder
from occlass.model.memory import FUSION_GRID, ExemplarMemory
from occlass.model.metrics import OccupationMetrics, metric_label
from occlass.report.analysis import fused_scores, groups_of
from occlass.train.job import evaluation_predictor, memory_of, train


@pytest.mark.parametrize("top_k", [5, 3])
def test_fast_dev_run_writes_every_artifact(train_cfg, top_k):
    cfg = train_cfg("trainer.fast_dev_run=true", f"top_k={top_k}")
    best = train(cfg)
    out = Path(cfg.paths.output_dir)
    for name in (runs.CACHE_FILE, runs.RUN_FILE, runs.METRICS_FILE, runs.REPORT_FILE):
        assert (out / name).is_file(), name
    assert (out / runs.ENCODER_DIR / "config.json").is_file()
    assert (out / runs.ENCODER_DIR / "tokenizer_config.json").is_file()
    assert list((out / "checkpoints").glob("*.ckpt"))
    metrics = json.loads((out / runs.METRICS_FILE).read_text())
    assert metrics["objective"] == {"metric": "val/accuracy", "value": best}
    names = ["precision_weighted", "recall_weighted", "f1_weighted", "precision_macro",
             "recall_macro", "f1_macro", "accuracy", f"top{top_k}_accuracy", "major_accuracy",
             "minor_accuracy", "broad_accuracy", "detailed_accuracy"]
    assert set(metrics["before"]) == set(metrics["after"]) == set(names)
    # every metric has its row in the report, top-k included whatever k is
    report = (out / runs.REPORT_FILE).read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and "Metric" not in line]
    assert [row.split(" | ")[0][2:] for row in rows] == [metric_label(n) for n in names]
    assert f"| Top-{top_k} accuracy |" in report
    info = runs.RunInfo.load(out)
    assert (info.n_codes, info.recipe, info.max_input_length) == (12, "title_description", 32)
    cache = CategoryCache.load(out / runs.CACHE_FILE)
    assert cache.embeddings.shape == (info.n_codes, 32)
    assert cache.identity["taxonomy"] == info.taxonomy_fingerprint


def test_evaluation_memory_holds_training_titles_only_and_the_exported_one_every_title(train_cfg):
    cfg = train_cfg("trainer.fast_dev_run=true")
    train(cfg)
    datamodule = instantiate(cfg.data)
    examples = datamodule.load_examples()
    assert set(examples["split"]) == {"train", "val", "test", "reported"}
    held_out = set(examples.loc[examples["split"] != "train", "title"])
    evaluation = datamodule.exemplars()
    assert not held_out & set(evaluation.titles)
    assert set(evaluation.titles) == set(examples.loc[examples["split"] == "train", "title"])
    exported = ExemplarMemory.load(Path(cfg.paths.output_dir) / runs.MEMORY_FILE)
    assert set(exported.titles) == set(examples["title"])  # held-out titles included
    pairs = {(t, int(c)) for t, cs in zip(examples["title"], examples["codes"]) for c in cs}
    assert set(zip(exported.titles, exported.labels.tolist())) == pairs
    info = runs.RunInfo.load(cfg.paths.output_dir)
    assert info.fusion_weight in FUSION_GRID


def test_holdout_none_trains_on_every_title_and_says_there_is_no_test_split(train_cfg, caplog):
    cfg = train_cfg("trainer.fast_dev_run=true", "data.holdout=none")
    with caplog.at_level(logging.WARNING, logger="occlass"):
        train(cfg)
    # what it lacks for want of validation, and what prediction does instead
    assert "no validation split (data.holdout=none)" in caplog.text
    assert "prediction weighs descriptions 0.5" in caplog.text
    assert "the fusion weight is the configured one, 0.5" in caplog.text
    out = Path(cfg.paths.output_dir)
    assert "No test split" in (out / runs.REPORT_FILE).read_text()
    assert json.loads((out / runs.METRICS_FILE).read_text())["after"] is None
    assert runs.RunInfo.load(out).fusion_weight == 0.5  # the configured one: no validation


@pytest.mark.parametrize("metric, message", [("test/accuracy", "choose a validation metric"),
                                             ("val/acc", ("not a metric of this model; choose "
                                                         "one of val/precision_weighted"))])
def test_the_optimised_metric_must_be_a_validation_metric(train_cfg, metric, message):
    with pytest.raises(OcclassError, match=message):
        train(train_cfg("trainer.fast_dev_run=true", f"optimized_metric={metric}"))


def test_progress_reaches_a_log_file(train_cfg, capfd):
    """stdout is not a terminal here (as under nohup or SLURM): the bar still reports its steps."""
    train(train_cfg("trainer.fast_dev_run=true", "trainer.enable_progress_bar=true",
                    "trainer.log_every_n_steps=1"))
    progress = capfd.readouterr().out
    assert "Epoch 0: 100%" in progress and "Testing" in progress



def test_mlflow_logger_records_config_epochs_and_report(train_cfg):
    """logger=mlflow: an offline store in the run folder holding the composed config as params,
    each epoch's validation metrics and the run's report (fast_dev_run would mute the loggers:
    two one-batch epochs instead)."""
    mlflow = pytest.importorskip("mlflow")
    cfg = train_cfg("logger=mlflow", "trainer.max_epochs=2", "trainer.limit_train_batches=1",
                    "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "optim.lr=3e-5")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    client = mlflow.MlflowClient(f"sqlite:///{out}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("occlass").experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["optim/lr"], params["trainer/max_epochs"]) == ("3e-05", "2")
    assert params["paths/output_dir"] == str(out)
    history = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert len(history) == 1 + 2  # the untouched model (eval_before), then each epoch
    assert "test/accuracy" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {runs.REPORT_FILE, runs.METRICS_FILE} <= artifacts
    report = Path(client.download_artifacts(run.info.run_id, runs.REPORT_FILE, str(out / "dl")))
    assert report.read_text() == (out / runs.REPORT_FILE).read_text()
    assert (out / "mlartifacts" / run.info.run_id / "artifacts" / runs.METRICS_FILE).is_file()


def test_mlflow_logger_without_mlflow_is_one_line(train_cfg, monkeypatch):
    monkeypatch.setattr("lightning.pytorch.loggers.mlflow._MLFLOW_AVAILABLE",
                        RequirementCache("mlflow>=1.0.0", "no_such_module"))  # as uninstalled
    with pytest.raises(OcclassError, match=r"logger: .*pip install 'occlass\[mlflow\]'"):
        train(train_cfg("logger=mlflow", "trainer.fast_dev_run=true"))

def evaluated_module(cfg):
    """A module and datamodule after one test pass (so the module has a trainer and a cache)."""
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, _partial_=True)(categories=datamodule.categories)
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
    expected = build_category_cache(model.encoder, datamodule.categories)
    assert {**expected.identity, "precision": "32-true"} == rebuilt.identity
    assert torch.allclose(rebuilt.embeddings, expected.embeddings, atol=1e-6)
    assert not torch.allclose(rebuilt.embeddings, cache.embeddings, atol=1e-3)


def test_under_bf16_mixed_the_test_split_and_the_export_fits_are_measured_in_fp32(train_cfg):
    """Validation chooses in the trainer's precision; the test metrics (report.md) and the
    caches export fits the calibrator and confidence model with are fp32, as prediction serves."""
    cfg = train_cfg("trainer.precision=bf16-mixed")
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, _partial_=True)(categories=datamodule.categories,
                                                   exemplars=datamodule.exemplars())
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    fp32 = build_category_cache(model.encoder, datamodule.categories).embeddings
    assert (model.category_cache.embeddings - fp32).abs().max() > 1e-5  # bf16 autocast
    after = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    torch.testing.assert_close(model.category_cache.embeddings, fp32, atol=1e-6, rtol=0)
    memory = memory_of(model.encoder, datamodule.exemplars(), len(datamodule.categories),
                       datamodule.tokenizer.pad_token_id)
    torch.testing.assert_close(model.memory.embeddings, memory.embeddings, atol=1e-6, rtol=0)
    cache = model.category_cache
    model.refresh(fp32=True)
    assert model.category_cache is cache  # what export uses: these very caches
    test = datamodule.examples[datamodule.examples["split"] == "test"]
    # fused_scores leaves each test title's group out: a no-op in the training titles' memory
    # (a group is in one split), which needs its groups for it.
    group = dict(zip(datamodule.examples["title"], groups_of(datamodule.examples)))
    grouped = dataclasses.replace(model.memory, groups=[group[t] for t in model.memory.titles])
    scores = fused_scores(evaluation_predictor(model, datamodule, grouped), test)
    metrics = OccupationMetrics(len(datamodule.categories), {})
    metrics.update(scores, torch.tensor([cs[:1] for cs in test["codes"]]))
    top1 = [bool(set(cs) & {int(i)}) for cs, i in zip(test["codes"], scores.argmax(1))]
    assert after["test/accuracy"] == pytest.approx(sum(top1) / len(top1))


class StopAfterFirstEpoch(Callback):
    """Simulates an interrupted run: stops once the first epoch is validated and checkpointed."""

    def on_validation_end(self, trainer, pl_module):
        trainer.should_stop = not trainer.sanity_checking


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def resume_overrides(train_cfg) -> tuple[str, ...]:
    """Two epochs of three small steps, checkpoints only: runs to interrupt and resume."""
    return ("trainer.max_epochs=2", "trainer.limit_train_batches=3", "eval_before=false",
            "callbacks=model_checkpoint",
            "model.encoder.name=" + str(Path(train_cfg().model.encoder.name)),
            "data.batch_size=4", "optim.lr=1e-3")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    for key, value in a.items():
        assert torch.allclose(value, b[key], atol=1e-6), key


def test_resumed_run_ends_where_an_uninterrupted_run_does(train_cfg, tmp_path):
    common = resume_overrides(train_cfg)
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
    assert_same_weights(a, b)


class Killed(Exception):
    """The process dying mid-epoch."""


class KillAtThirdStep(Callback):
    """Simulates a run killed mid-epoch, after its second step was checkpointed."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:
            raise Killed


def test_run_killed_mid_epoch_resumes_from_last_ckpt_where_it_stopped(train_cfg, tmp_path):
    """last.ckpt is also written within an epoch (every 10 minutes by default; every step here):
    the resumed run is served the rest of that epoch, not its first batches again."""
    common = (*resume_overrides(train_cfg), "callbacks.last_in_epoch.train_time_interval=null",
              "+callbacks.last_in_epoch.every_n_train_steps=1")
    train(train_cfg(*common, f"paths.output_dir={tmp_path / 'straight'}"))
    with pytest.raises(Killed):
        train(train_cfg(*common, "+callbacks.kill._target_=test_train.KillAtThirdStep",
                        f"paths.output_dir={tmp_path / 'part'}"))
    last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 2
    train(train_cfg(*common, f"paths.output_dir={tmp_path / 'resumed'}", f"ckpt_path={last}"))
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed"))


@pytest.mark.integration
def test_packaged_minilm_trains_and_exported_encoder_reloads(train_cfg, packaged_minilm):
    cfg = train_cfg(f"model.encoder.name={packaged_minilm}", "trainer.limit_train_batches=3",
                    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                    "eval_before=false", "data.max_category_length=32",
                    "callbacks=model_checkpoint")
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
    a, b = exported.encode_ids(ids, 0), trained.encode_ids(ids, 0)
    assert torch.allclose(a, b, atol=1e-6)
    base = instantiate(cfg.model.encoder).encode_ids(ids, 0)
    assert not torch.allclose(a, base, atol=1e-4)  # training moved the weights


def test_train_py_prints_each_message_once_and_no_warning(tiny_bert, tiny_onet, tmp_path):
    """What a user sees from `python train.py` (the default precision and progress bar): every
    log message once (not also through Lightning's own handler), no advertisement, no warning."""
    import re
    import subprocess
    import sys

    from helpers.tiny import ROOT

    command = [sys.executable, "train.py", "trainer.fast_dev_run=true", f"hydra.run.dir={tmp_path}",
               f"paths.data_dir={tiny_onet}", f"model.encoder.name={tiny_bert}",
               "data.val_fraction=0.2", "data.test_fraction=0.2", "data.batch_size=8", "threads=1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.strip() for line in re.split(r"[\r\n]", done.stdout + done.stderr)]
    progress = re.compile(r"\d+%\||it/s|examples/s|\d+/\?")  # tqdm and datasets bars
    messages = [re.sub(r"^(\[[^]]*\]){3} - |^INFO: ", "", line) for line in lines
                if line and not progress.search(line) and not line.startswith("|")]
    assert "Seed set to 42" in messages and any("parameters" in m for m in messages)
    assert len(messages) == len(set(messages)), [m for m in messages if messages.count(m) > 1]
    noisy = [m for m in messages if re.search(r"warn|deprecat|tip:|FLOPs", m, re.IGNORECASE)]
    assert noisy == []
