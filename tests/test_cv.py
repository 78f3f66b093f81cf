"""Grouped k-fold cross-validation: the folds of `assign_splits`, `python train.py cv.folds=K`
and its summary (mean ± std of every metric over the folds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.tiny import ONET_DATA, ROOT, compose_tiny_train
from hydra.utils import instantiate

from occlass import runs
from occlass.data.examples import assign_splits, group_examples, load_pairs
from occlass.data.taxonomy import Taxonomy
from occlass.errors import OcclassError
from occlass.train.job import cross_validate
from occlass.train.sweeps import CV_SUMMARY, summarize, summarize_folds


def load_examples(data_dir: Path):
    taxonomy = Taxonomy.load(data_dir)
    return group_examples(load_pairs(data_dir, taxonomy), taxonomy)


def held_out_candidates(examples) -> set[str]:
    """The titles a fold may test: not in a group (of surface forms) with an occupation's own
    title or a title only workers reported."""
    anchored = examples["sources"].map(lambda s: "title" in s)
    kept_out = set(examples.loc[anchored | examples["reported_only"], "group"])
    return set(examples.loc[~examples["group"].isin(kept_out), "key"])


def fold_test_sets(examples, folds: int, **kwargs) -> list[set[str]]:
    splits = [assign_splits(examples, 0.2, 0.1, seed=0, fold=k, folds=folds, **kwargs)
              for k in range(folds)]
    candidates = held_out_candidates(examples)
    for split in splits:  # no title in two splits of a fold; anchored and reported as ever
        assert (examples.assign(split=split).groupby("key")["split"].nunique() == 1).all()
        assert set(split[examples["key"].isin(candidates)]) <= {"train", "val", "test"}
        assert set(split[~examples["key"].isin(candidates)]) <= {"train", "reported"}
    return [set(examples.loc[split == "test", "key"]) for split in splits]


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_folds_test_each_testable_title_exactly_once(tiny_onet, folds):
    examples = load_examples(tiny_onet)
    tested = fold_test_sets(examples, folds)
    assert sum(map(len, tested)) == len(set().union(*tested))  # disjoint
    assert set().union(*tested) == held_out_candidates(examples)  # together: every testable title
    assert tested == fold_test_sets(examples, folds)  # deterministic


def test_fold_arguments_are_checked(tiny_onet):
    examples = load_examples(tiny_onet)
    for fold, folds in [(2, 2), (0, 1), (None, 3), (1, None), (-1, 3)]:
        with pytest.raises(ValueError, match="fold"):
            assign_splits(examples, 0.2, 0.1, seed=0, fold=fold, folds=folds)
    with pytest.raises(ValueError, match="no test split to fold"):
        assign_splits(examples, 0.2, 0.1, seed=0, holdout="none", fold=0, folds=2)


@pytest.mark.skipif(not ONET_DATA.is_dir(), reason="run `make data` first")
def test_onet_folds_are_balanced():
    examples = load_examples(ONET_DATA)
    tested = fold_test_sets(examples, 5)
    sizes = np.array([len(t) for t in tested])
    assert sum(sizes) == len(held_out_candidates(examples))
    assert (abs(sizes / sizes.mean() - 1) < 0.05).all(), sizes
    split = assign_splits(examples, 0.05, 0.1, seed=0, fold=0, folds=5)
    rest = examples["key"].isin(held_out_candidates(examples) - tested[0])
    assert 0.04 < (split[rest] == "val").mean() < 0.06  # val_fraction of the other titles


@pytest.mark.parametrize("overrides, message", [
    (["cv.folds=1"], "2 or more"),
    (["cv.folds=2", "data.holdout=none"], "needs test splits"),
    (["cv.folds=2", "data.fold=0", "data.folds=2"], "leave them unset"),
])
def test_bad_cross_validation_settings_are_clear_errors(tiny_onet, tiny_bert, tmp_path,
                                                        overrides, message):
    cfg = compose_tiny_train(tiny_onet, tiny_bert, tmp_path, *overrides)
    with pytest.raises(OcclassError, match=message):
        cross_validate(cfg)
    assert not list(tmp_path.iterdir())  # nothing trained


def test_cv_with_2_folds_runs_and_aggregates(tmp_path, tiny_bert, tiny_onet):
    out = tmp_path / "cv"
    command = [sys.executable, "train.py", "cv.folds=2", f"hydra.run.dir={out}",
               f"paths.data_dir={tiny_onet}", f"model.encoder.name={tiny_bert}",
               "trainer.precision=32-true", "trainer.enable_progress_bar=false",
               "trainer.max_epochs=1", "trainer.limit_train_batches=2", "eval_before=false",
               "data.batch_size=8", "data.val_fraction=0.2", "threads=1", "~logger"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    folds = [out / "fold_0", out / "fold_1"]
    metrics = [json.loads((fold / runs.METRICS_FILE).read_text()) for fold in folds]
    tested = []
    for k, fold in enumerate(folds):  # each fold is a complete run, checkpoints included
        assert list((fold / "checkpoints").glob("best-*.ckpt"))
        assert f"Test split, fold {k} of 2" in (fold / runs.REPORT_FILE).read_text()
        data = runs.RunInfo.load(fold).config["data"]
        assert (data["fold"], data["folds"]) == (k, 2)
        examples = instantiate(data).load_examples()  # the split the fold's run used
        tested.append(set(examples.loc[examples["split"] == "test", "key"]))
    assert not (out / "checkpoints").exists()
    assert tested[0] and tested[1] and not tested[0] & tested[1]
    assert tested[0] | tested[1] == held_out_candidates(examples)

    summary = json.loads((out / f"{CV_SUMMARY}.json").read_text())
    values = {"objective": [m["objective"]["value"] for m in metrics]}
    values |= {f"test_{name}": [m["after"][name] for m in metrics] for name in metrics[0]["after"]}
    assert len(values) == 13  # the objective and the 12 test metrics
    assert set(summary["mean"]) == set(summary["std"]) == set(values)
    assert summary["metric"] == "val/accuracy" and summary["folds"] == ["fold_0", "fold_1"]
    text = (out / f"{CV_SUMMARY}.md").read_text()
    assert "2 folds (0 failed)" in text
    for column, per_fold in values.items():
        assert summary["mean"][column] == pytest.approx(np.mean(per_fold))
        assert summary["std"][column] == pytest.approx(np.std(per_fold))
        assert [summary["runs"][f][column] for f in ("fold_0", "fold_1")] == per_fold
        label = "best val/accuracy" if column == "objective" else column.replace("_", " ", 1)
        row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        assert row.endswith(f"| {np.mean(per_fold):.4f} ± {np.std(per_fold):.4f} |"), row


def test_sweep_summary_shows_a_cross_validated_jobs_means(tmp_path):
    """`python train.py -m cv.folds=3 optim.lr=...`: each job's row holds its folds' means (a
    fold that failed is left out of them)."""
    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["cv.folds=3",
                                                                   "optim.lr=1e-4"]))
    for k, best in enumerate([0.5, 0.7]):
        (job / f"fold_{k}").mkdir()
        (job / f"fold_{k}" / "metrics.json").write_text(json.dumps({
            "before": None, "after": {"accuracy": best - 0.1, "minor_accuracy": best},
            "objective": {"metric": "val/accuracy", "value": best}}))
    (job / "fold_2").mkdir()  # failed: no metrics.json
    text = summarize_folds(job, ["fold_0", "fold_1", "fold_2"])
    assert "3 folds (1 failed)" in text
    assert "| test minor_accuracy | 0.5000 | 0.7000 | – | 0.6000 ± 0.1000 |" in text
    summary = json.loads((job / f"{CV_SUMMARY}.json").read_text())
    assert summary["failed"] == ["fold_2"] and summary["runs"]["fold_2"]["objective"] is None
    table = summarize(tmp_path)
    assert "| 0 | ok | 0.6000 | 0.5000 |" in table  # best val/accuracy, test accuracy (means)
