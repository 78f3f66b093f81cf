"""Confidence for kinds of input the model was not fitted on: the threshold rule, the reported
titles' halves, fit-time signals as served, and the fitting kinds' own noise and ads."""

import dataclasses
import random

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.tiny import OCCUPATIONS

import occlass.predict.predictor as predictor_module
from occlass.data import augment
from occlass.data.examples import (
    exemplars_of,
    group_examples,
    load_pairs,
    reported_for_fitting,
    split_examples,
)
from occlass.data.fit_noise import RULES, fit_noise
from occlass.data.postings import (
    EVALUATED,
    FITTING,
    GENERIC_DUTIES,
    posting_tasks,
    pseudo_postings,
    task_half,
)
from occlass.data.taxonomy import Taxonomy
from occlass.model.confidence import (
    LEVEL_SIGNALS,
    SIGNALS,
    ConfidenceModel,
    Signals,
    accepted,
    fit_confidence,
    kinds_left_out,
    leave_one_kind_out,
    level_thresholds,
    worst_kind_target,
)
from occlass.model.memory import build_memory
from occlass.predict.loader import load_zero_shot
from occlass.predict.predictor import Predictor
from occlass.report.analysis import lookup_memory, score_kind

LEVELS = 5


def shifted_kinds(n: int = 3000, seed: int = 0) -> tuple[Signals, torch.Tensor, np.ndarray]:
    """Three kinds whose first signal drives correctness; kind "new" is right less often at the
    same signal (its logit 2 lower), which nothing among the signals shows."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(3 * n, len(SIGNALS), generator=generator)
    level = torch.randn(3 * n, LEVELS, len(LEVEL_SIGNALS), generator=generator)
    kinds = np.repeat(np.array(["clean", "noisy", "new"]), n)
    logit = 2 * base[:, :1] + 1 + torch.arange(LEVELS) - 2 * torch.from_numpy(
        kinds == "new").float().unsqueeze(1)
    correct = torch.rand(3 * n, LEVELS, generator=generator) < torch.sigmoid(logit)
    return Signals(base, level, torch.zeros(3 * n, LEVELS, dtype=torch.long)), correct, kinds


def precision(probability, correct, thresholds) -> float:
    level, right = accepted(probability, correct, thresholds)
    return float(right[level >= 0].mean())


def test_thresholds_reach_the_target_on_the_worst_kind_where_the_pooled_estimate_does_not():
    sig, correct, kinds = shifted_kinds()
    groups = np.arange(len(kinds))
    hits = correct.numpy()
    pooled, held_out = fit_confidence(sig, correct, groups, temperature=1.0)
    thresholds = pooled.thresholds_for(0.9)
    new = kinds == "new"
    # the pooled point estimate passes, and the kind "new" fails at its thresholds
    assert precision(held_out, hits, thresholds) >= 0.9
    assert precision(held_out[new], hits[new], thresholds) < 0.87
    # left out of fitting, "new" fails too: the others' thresholds at the target itself
    left_out = kinds_left_out(sig, correct, groups, kinds)
    assert left_out["new"].precision(hits, 0.9) < 0.87
    strict = worst_kind_target(left_out, hits, 0.9)
    assert strict > 0.9
    assert all(out.precision(hits, strict) >= 0.9 for out in left_out.values())
    assert any(out.precision(hits, round(strict - 0.005, 3)) < 0.9 for out in left_out.values())
    model, again = fit_confidence(sig, correct, groups, temperature=1.0, kinds=kinds)
    np.testing.assert_allclose(again, held_out)
    assert model.chosen_at["0.9"] == strict
    assert model.thresholds_for(0.9) == level_thresholds(held_out, hits, strict)
    assert ConfidenceModel.from_dict(model.to_dict()) == model
    # on fresh rows of the kind "new", the served thresholds now keep the promise
    fresh, truth, fresh_kinds = shifted_kinds(seed=1)
    rows = fresh_kinds == "new"
    probability = model.probabilities(fresh.take(torch.from_numpy(rows))).numpy()
    assert precision(probability, truth.numpy()[rows], model.thresholds_for(0.9)) >= 0.88
    assert precision(pooled.probabilities(fresh.take(torch.from_numpy(rows))).numpy(),
                     truth.numpy()[rows], thresholds) < 0.87


def test_leave_one_kind_out_reports_both_rules_per_kind():
    sig, correct, kinds = shifted_kinds(n=1500)
    result = leave_one_kind_out(sig, correct, np.arange(len(kinds)), kinds, 0.9)
    assert set(result) == {"clean", "noisy", "new"}
    for r in result.values():
        for rule in ("pooled", "worst kind"):
            level, right = r[rule]
            assert level.shape == right.shape == (1500,)
    level, right = result["new"]["pooled"]
    assert right[level >= 0].mean() < 0.87
    # the served rule, chosen on the other two kinds alone, cannot see the shift of "new"
    assert result["new"]["strict"] >= 0.9


def test_old_records_read_the_first_signals():
    sig, correct, kinds = shifted_kinds(n=300)
    model, _ = fit_confidence(sig, correct, np.arange(len(kinds)), temperature=1.0)
    record = model.to_dict()
    old = {k: v for k, v in record.items() if k not in ("widths", "chosen_at")}
    old["mean"] = [row[:16] + row[len(SIGNALS):len(SIGNALS) + 2] for row in record["mean"]]
    old["scale"] = [row[:16] + row[len(SIGNALS):len(SIGNALS) + 2] for row in record["scale"]]
    old["weights"] = [row[:17] + row[1 + len(SIGNALS):3 + len(SIGNALS)]
                      for row in record["weights"]]
    loaded = ConfidenceModel.from_dict(old)
    assert loaded.widths == [16, 2]
    assert loaded.probabilities(sig).shape == (len(kinds), LEVELS)


def hand_examples() -> pd.DataFrame:
    """Reported groups of several surface forms each, and other splits."""
    rows = [(f"title {g} form {f}", f"group {g}", "reported") for g in range(40)
            for f in range(3)]
    rows += [(f"train {i}", f"train group {i}", "train") for i in range(5)]
    return pd.DataFrame(rows, columns=["title", "group", "split"])


def test_reported_halves_split_whole_groups_seeded():
    examples = hand_examples()
    fitting = reported_for_fitting(examples)
    reported = examples["split"] == "reported"
    assert not fitting[~reported].any()
    halves = examples[reported].groupby("group")["title"].agg(lambda t: fitting[t.index].sum())
    assert set(halves) == {0, 3}  # a group is wholly in one half
    assert 10 < (halves == 3).sum() < 30
    assert fitting.equals(reported_for_fitting(examples))
    assert not fitting.equals(reported_for_fitting(examples, seed=1))


def test_the_reported_halves_are_disjoint_by_group_from_training_and_each_other(tiny_onet):
    taxonomy = Taxonomy.load(tiny_onet)
    data = {"sources": ["title", "alternate", "short", "reported"], "val_fraction": 0.2,
            "test_fraction": 0.2, "split_seed": 0}
    examples = split_examples(data, tiny_onet, taxonomy)
    fitting = reported_for_fitting(examples)
    evaluation = (examples["split"] == "reported") & ~fitting
    assert fitting.any() and evaluation.any()
    groups = {name: set(examples["group"][rows]) for name, rows in (
        ("train", examples["split"] == "train"), ("fitting", fitting),
        ("evaluation", evaluation))}
    assert not groups["fitting"] & groups["train"]
    assert not groups["fitting"] & groups["evaluation"]
    assert not groups["evaluation"] & groups["train"]


@pytest.fixture(scope="module")
def served(tiny_onet, tiny_bert):
    """The zero-shot tiny BERT with every title of the tiny O*NET as its memory (the served
    memory), the grouped examples (split by hand: every title trains but the reported ones,
    half of which are evaluated) and a confidence model reading every signal."""
    parts = load_zero_shot(tiny_onet, str(tiny_bert))
    taxonomy = parts.taxonomy
    examples = group_examples(load_pairs(tiny_onet, taxonomy), taxonomy)
    examples["split"] = np.where(examples["reported_only"], "reported", "train")
    exemplars = exemplars_of(examples, ("train", "reported"), parts.tokenizer, 32)
    parts.memory = build_memory(parts.encoder, exemplars, len(taxonomy),
                                parts.tokenizer.pad_token_id, {})
    width = len(SIGNALS) + len(LEVEL_SIGNALS)
    rng = np.random.default_rng(0)
    parts.confidence_model = ConfidenceModel(
        0.05, [[0.0] * width] * LEVELS, [[1.0] * width] * LEVELS,
        rng.normal(size=(LEVELS, width + 1)).tolist(), {"0.9": [0.5] * LEVELS})
    parts.description_weight = 0.5
    return parts, examples


def test_the_lookup_memory_leaves_out_the_evaluation_titles(served):
    parts, examples = served
    memory = lookup_memory(parts.memory, examples)
    evaluation = examples[(examples["split"] == "reported") & ~reported_for_fitting(examples)]
    fitting = examples[reported_for_fitting(examples)]
    assert len(evaluation) and len(fitting)
    assert not set(memory.titles) & set(evaluation["title"])
    assert set(fitting["title"]) <= set(memory.titles)
    assert len(memory.titles) == len(parts.memory.titles) - len(
        evaluation.explode("codes"))


def test_signals_at_fit_time_equal_those_at_serving(served, monkeypatch):
    """A fitted row looks its title up with its own group left out; serving the same title
    with a memory that lacks that group gives the same signals, title-only and with a
    description."""
    parts, examples = served
    memory = lookup_memory(parts.memory, examples)
    rows = examples[reported_for_fitting(examples)].head(3)
    titles, codes, groups = list(rows["title"]), list(rows["codes"]), list(rows["group"])
    ads = ["Responsibilities: plan budgets and direct staff."] * len(titles)
    model = parts.confidence_model
    fitting = Predictor(dataclasses.replace(parts, memory=memory))
    fit = [score_kind(fitting, titles, codes, model.temperature, parts.levels, groups=groups),
           score_kind(fitting, titles, codes, model.temperature, parts.levels, ads,
                      parts.description_weight, groups)]
    seen = []
    original = predictor_module.signals
    monkeypatch.setattr(predictor_module, "signals",
                        lambda *a, **k: seen.append(original(*a, **k)) or seen[-1])
    for i, group in enumerate(groups):
        without = memory.subset(np.array([g != group for g in memory.groups]))
        serving = Predictor(dataclasses.replace(parts, memory=without))
        serving.predict([titles[i]])
        serving.predict([titles[i]], [ads[i]])
        for kind, at_serving in zip(fit, seen[-2:]):
            assert torch.allclose(kind.signals.base[i], at_serving.base[0], atol=1e-5)
            assert torch.allclose(kind.signals.level[i], at_serving.level[0], atol=1e-5)
            assert torch.equal(kind.signals.answer[i], at_serving.answer[0])
    # without leaving the group out, the row would find its own title: the exemplar signals
    # would not be the served ones
    inside = score_kind(fitting, titles, codes, model.temperature, parts.levels)
    best = SIGNALS.index("best exemplar similarity")
    assert (inside.signals.base[:, best] > fit[0].signals.base[:, best] + 1e-3).all()


def test_fitting_noise_uses_no_training_transform_and_changes_every_title():
    titles = [t for _, title, _, alts, reps in OCCUPATIONS for t in [title, *alts, *reps]]
    titles += ["Bookkeeper", "Operations Manager", "Licensed Practical Nurse", "Foreman"]
    rng = random.Random(0)
    noisy = [fit_noise(t, rng) for t in titles]
    assert all(n.lower() != t.lower() for n, t in zip(noisy, titles))
    used = {apply.__name__ for _, apply in RULES}
    assert not used & set(augment.TRANSFORMS)
    assert fit_noise("Bookkeeper", random.Random(3)) != fit_noise("Bookkeeper", random.Random(4))
    again = random.Random(0)
    assert noisy == [fit_noise(t, again) for t in titles]


TASKS = {code: [f"Task {i} of {code}." for i in range(16)]
         for code in ("15-1252.00", "15-1211.00", "29-1141.00")}


def test_fitting_and_evaluated_ads_share_no_task_nor_template():
    codes = list(TASKS) * 20
    titles = ["x"] * len(codes)
    evaluated = pseudo_postings(titles, codes, TASKS, seed=0)
    fitting = pseudo_postings(titles, codes, TASKS, seed=0, fitting=True,
                              related={"15-1252.00": ["15-1211.00"]})
    for all_tasks in TASKS.values():
        tasks = posting_tasks(all_tasks, 3)
        mine, theirs = task_half(tasks, fitting=True), task_half(tasks, fitting=False)
        assert mine and theirs and not set(mine) & set(theirs)
        assert not any(t in ad for ad in fitting for t in theirs)
        assert not any(t in ad for ad in evaluated for t in mine)
    for field in ("blurbs", "benefits", "closings", "requirements", "duties", "asks"):
        assert not set(getattr(FITTING, field)) & set(getattr(EVALUATED, field))
        assert not any(text.format(years="") in ad for text in getattr(FITTING, field)
                       for ad in evaluated)
    borrowed = [ad for ad, code in zip(fitting, codes) if code == "15-1252.00"]
    assert any("of 15-1211.00" in ad for ad in borrowed)  # a related occupation's tasks
    assert all("of 15-1252.00" in ad for ad in borrowed)  # never none of its own
    assert any(duty in ad for ad in fitting for duty in GENERIC_DUTIES)
    assert not any("of 15-1211.00" in ad for ad, c in zip(fitting, codes) if c == "29-1141.00")
