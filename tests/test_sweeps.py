"""Grid and Optuna sweeps through train.py, and `python -m occlass.train.sweeps summarize`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.tiny import ROOT

from occlass.cli import run_cli
from occlass.train.sweeps import main, summarize


def fake_job(folder: Path, overrides: list[str], best: float | None, top_k: int = 5) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if best is not None:
        after = {"accuracy": best - 0.1, f"top{top_k}_accuracy": 0.9, "f1_weighted": 0.5,
                 "f1_macro": 0.4, "major_accuracy": 0.8}
        (folder / "metrics.json").write_text(json.dumps(
            {"before": None, "after": after,
             "objective": {"metric": "val/accuracy", "value": best}}))


def test_summary_sorts_by_objective_and_lists_failed_runs(tmp_path):
    for n, (lr, best) in enumerate([("1e-5", 0.5), ("3e-5", None), ("1e-4", 0.7), ("3e-4", 0.6)]):
        fake_job(tmp_path / str(n), [f"optim.lr={lr}", "trainer.max_epochs=1"], best)
    text = summarize(tmp_path)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["run"] for r in rows] == ["2", "3", "0", "1"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed"]
    assert rows[0]["optim.lr"] == "1e-4" and float(rows[0]["test_accuracy"]) == pytest.approx(0.6)
    assert rows[3]["objective"] == ""
    assert (tmp_path / "summary.md").read_text() == text + "\n"
    assert "4 runs (1 failed)" in text and "`trainer.max_epochs=1`" in text
    assert "| 2 | ok | 0.0001 | 0.7000 | 0.6000 |" in text  # 4 significant digits
    assert "| 1 | failed | 3e-05 | – |" in text


def test_summary_columns_follow_the_metrics_the_runs_computed(tmp_path):
    fake_job(tmp_path / "0", ["top_k=3"], 0.5, top_k=3)
    fake_job(tmp_path / "1", ["top_k=10"], 0.6, top_k=10)
    text = summarize(tmp_path)
    header = text.splitlines()[2]
    assert header == ("| run | status | top_k | best val/accuracy | test accuracy | "
                      "test top3_accuracy | test f1_weighted | test f1_macro | "
                      "test top10_accuracy |")
    assert "| 1 | ok | 10 | 0.6000 | 0.5000 | – | 0.5000 | 0.4000 | 0.9000 |" in text


def test_folder_without_runs_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["summarize", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no runs found" in capsys.readouterr().err


def sweep(tmp_path: Path, tiny_bert: Path, tiny_onet: Path, *overrides: str) -> Path:
    """`python train.py -m` on the tiny model and data; returns the sweep folder."""
    out = tmp_path / "sweep"
    command = [sys.executable, "train.py", "-m", f"hydra.sweep.dir={out}",
               f"paths.data_dir={tiny_onet}", f"model.encoder.name={tiny_bert}",
               "trainer.precision=32-true", "trainer.enable_progress_bar=false",
               "trainer.max_epochs=1", "trainer.limit_train_batches=2", "eval_before=false",
               "data.batch_size=8", "data.val_fraction=0.2", "data.test_fraction=0.2",
               "threads=1", *overrides]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_grid_sweep_runs_each_job_in_its_own_folder(tmp_path, tiny_bert, tiny_onet):
    out = sweep(tmp_path, tiny_bert, tiny_onet, "optim.lr=1e-4,1e-3",
                "loss.temperature=0.05,0.1")
    for job in range(4):
        assert (out / str(job) / "metrics.json").is_file()
        assert (out / str(job) / "checkpoints" / "last.ckpt").is_file()
    summarize(out)
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {(float(r["optim.lr"]), float(r["loss.temperature"])) for r in rows} == {
        (lr, t) for lr in (1e-4, 1e-3) for t in (0.05, 0.1)}
    assert all(r["status"] == "ok" for r in rows)
    scores = [float(r["objective"]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_optuna_search_maximises_the_returned_accuracy(tmp_path, tiny_bert, tiny_onet):
    out = sweep(tmp_path, tiny_bert, tiny_onet, "hparams_search=optuna",
                "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.n_startup_trials=2")
    results = yaml.safe_load((out / "optimization_results.yaml").read_text())
    summarize(out)
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    assert results["best_value"] == pytest.approx(float(rows[0]["objective"]))
    for row in rows:
        assert 1e-5 <= float(row["optim.lr"]) <= 3e-4
        assert 0.02 <= float(row["loss.temperature"]) <= 0.1
        assert row["data.batch_size"] == "8"  # fixed on the command line: not searched
