"""The bench scripts' own choices: the baseline's fusion weight chosen as ours, the defaults they
say they fall back to, and the corrections bench's halves and harm (on tiny data)."""

import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.tiny import ROOT

from occlass import runs
from occlass.data.categories import Categories
from occlass.data.taxonomy import Taxonomy
from occlass.data.tokenizer import load_tokenizer
from occlass.model.encoder import Encoder
from occlass.model.module import OccupationClassifier
from occlass.predict.loader import DESCRIPTION_WEIGHT

sys.path.insert(0, str(ROOT / "bench"))  # bench/ is a folder of scripts that import each other
import accuracy
import common
import review


def test_the_baseline_fusion_weight_is_chosen_on_validation_as_training_chooses_ours(
        tiny_bert, tiny_onet):
    """Every other validation title chooses (rows 0, 2, ...): those rows are right at w = 0.6
    only (fused gold - rival = w - t or t - w, as in test_selection); the others, right at
    w = 0 only, have no say. The module's validation picks the same weight from the same rows."""
    categories = Categories.from_taxonomy(Taxonomy.load(tiny_onet), load_tokenizer(tiny_bert),
                                          "title_description", 3, 64)
    category = torch.full((10, len(categories)), -1.0)
    exemplar = category.clone()
    for r, t in enumerate((0.15, 0.35, 0.55, 0.65, 0.85)):
        gold = slice(2 * r, 2 * r + 2)  # gold code 2r, rival 2r + 1
        if t < 0.6:
            category[2 * r, gold], exemplar[2 * r, gold] = torch.tensor([0.0, t]), \
                torch.tensor([1 - t, 0.0])
        else:
            category[2 * r, gold], exemplar[2 * r, gold] = torch.tensor([t, 0.0]), \
                torch.tensor([0.0, 1 - t])
        category[2 * r + 1, gold] = torch.tensor([0.05, 0.0])  # right at w = 0 only
        exemplar[2 * r + 1, gold] = torch.tensor([0.0, 0.95])
    codes = [[2 * (r // 2)] for r in range(10)]
    assert accuracy.tuned_fusion_weight(category, exemplar, codes) == 0.6
    assert accuracy.tuned_fusion_weight(category[1::2], exemplar[1::2], codes[1::2]) == 0.0

    model = OccupationClassifier(Encoder(tiny_bert), categories, fusion_weight=0.5)
    model.similarities = lambda rows: (category[rows], exemplar[rows])
    model.log = model.log_dict = lambda *args, **kwargs: None
    model.validation_step({"title": slice(0, 10), "codes": torch.tensor(codes),
                           "choose": torch.arange(10) % 2 == 0}, 0)
    model.on_validation_epoch_end()
    assert float(model.fusion_weight) == pytest.approx(0.6)


def test_a_run_without_a_description_weight_gets_the_default_and_says_so(run_dir, capsys):
    info = runs.RunInfo.load(run_dir)
    chosen = dataclasses.replace(info, description_weight=0.0)  # a choice, not a missing one
    assert accuracy.description_weight(chosen) == (0.0, "chosen on validation")
    assert "warning" not in capsys.readouterr().out
    none = dataclasses.replace(info, description_weight=None)
    assert accuracy.description_weight(none) == (DESCRIPTION_WEIGHT,
                                                 "the default: the run chose none")
    assert "warning: the run chose no description weight" in capsys.readouterr().out


def test_corrections_split_by_leak_free_group():
    part = pd.DataFrame({"title": [f"t{i}" for i in range(40)],
                         "group": [f"g{i // 4}" for i in range(40)]})  # 10 groups of 4 twins
    corrected, other = review.correction_halves(part, seed=0, limit=None)
    assert not set(corrected["group"]) & set(other["group"])
    assert corrected["group"].nunique() == other["group"].nunique() == 5
    assert len(corrected) + len(other) == 40
    limited = review.correction_halves(part, seed=0, limit=12)
    assert sum(map(len, limited)) == 12 and not set(limited[0]["group"]) & set(limited[1]["group"])
    assert not review.correction_halves(part, seed=1, limit=None)[0].equals(corrected)


def test_harm_is_the_share_turned_from_right_to_wrong_not_net_of_gains():
    before = np.array([True, True, False, False])
    after = np.array([False, True, True, False])
    assert review.flips(before, after) == (0.25, 0.25)  # net change 0, harm 25%


def test_no_threshold_is_chosen_when_every_one_harms():
    effects = {0.85: {"all_after": 0.9, "harm": 0.01}, 0.9: {"all_after": 0.8, "harm": 0.002}}
    assert review.choose_threshold(effects) is None
    effects[0.95] = {"all_after": 0.7, "harm": 0.0}
    assert review.choose_threshold(effects) == 0.95


def test_review_bench_runs_on_tiny_data(run_dir, tiny_onet, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "BENCHMARKS", tmp_path / "BENCHMARKS.md")
    monkeypatch.setattr(sys, "argv", ["bench/review.py", "--run", str(run_dir),
                                      "--data-dir", str(tiny_onet)])
    review.main()
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "other titles: right → wrong" in text
    assert "went from right to wrong" in text


def test_a_bench_preamble_names_the_code_of_the_bench_and_of_its_runs(run_dir):
    info = runs.RunInfo.load(run_dir)
    text = common.preamble("a config", (0.0, []), {"`x`": info})
    assert f"Code: commit {info.code['commit'][:12]}" in text
    assert f"Run `x`: trained by commit {info.code['commit'][:12]}" in text
