"""The confidence model: its signals and level answers, the level choice, thresholds chosen on
held-out folds only, and its record."""

import numpy as np
import pytest
import torch
from helpers.tiny import write_tiny_onet

from occlass.data.soc import LEVELS, load_levels
from occlass.data.taxonomy import Taxonomy
from occlass.errors import OcclassError
from occlass.model.confidence import (
    LEVEL_SIGNALS,
    SIGNALS,
    ConfidenceModel,
    Signals,
    choose_level,
    fit_confidence,
    fit_levels,
    fold_of,
    level_correct,
    level_groups,
    level_thresholds,
    signals,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = write_tiny_onet(tmp_path_factory.mktemp("onet") / "onet-29.3")
    taxonomy = Taxonomy.load(folder)
    return taxonomy, load_levels(taxonomy, folder)


def mass_model(thresholds: list[float]) -> ConfidenceModel:
    """A model whose probability at each level is the mass of the level's answer."""
    width = len(SIGNALS) + len(LEVEL_SIGNALS)
    weights = [[0.0] * (width + 1) for _ in LEVELS]
    for w in weights:
        w[1 + len(SIGNALS)] = 1.0  # the group mass logit, unscaled
    return ConfidenceModel(1.0, [[0.0] * width] * len(LEVELS), [[1.0] * width] * len(LEVELS),
                           weights, {"0.9": thresholds})


def test_a_row_is_coded_at_the_finest_level_its_evidence_supports(tiny):
    """Row 0 knows its occupation; row 1 hesitates between two occupations of one minor group
    (Software Developers, Computer Systems Analysts: 15-1200 Computer Occupations); row 2
    between two major groups."""
    taxonomy, levels = tiny
    scores = torch.full((3, len(taxonomy)), -10.0)
    index = taxonomy.index
    scores[0, index["47-2152.00"]] = 10
    scores[1, [index["15-1252.00"], index["15-1211.00"]]] = torch.tensor([2.1, 2.0])
    scores[2, [index["29-1141.00"], index["47-2111.00"]]] = torch.tensor([2.1, 2.0])
    sig = signals(scores, scores, None, None, [[5, 6]] * 3, 1, 1.0, level_groups(levels))
    model = mass_model([0.9] * len(LEVELS))
    probability = model.probabilities(sig).numpy()
    level = choose_level(probability, model.thresholds["0.9"])
    assert [LEVELS[j] if j >= 0 else None for j in level] == ["onet", "minor", None]
    minor = levels[LEVELS.index("minor")]
    assert minor.codes[sig.answer[1, LEVELS.index("minor")]] == "15-1200"
    assert minor.titles[sig.answer[1, LEVELS.index("minor")]] == "Computer Occupations"
    assert probability[1, LEVELS.index("minor")] == pytest.approx(1.0, abs=1e-4)
    assert probability[1, 0] == pytest.approx(torch.sigmoid(torch.tensor(0.1)).item(), abs=1e-4)
    # a finer threshold within reach takes the row at that level instead
    assert choose_level(probability, [0.5, 0.9, 0.9, 0.9, 0.9])[1] == 0


def test_choose_level_takes_the_first_level_that_qualifies():
    probability = np.array([[0.95, 0.99, 0.99, 0.99, 0.99], [0.5, 0.7, 0.85, 0.9, 0.99],
                            [0.1, 0.2, 0.3, 0.4, 0.5]])
    assert choose_level(probability, [0.9, 0.8, 0.8, 0.95, 0.6]).tolist() == [0, 2, -1]


def test_level_thresholds_hand_computed():
    """Each level accepts the rows no finer level took, at the lowest threshold whose accepted
    rows are at least the target right."""
    probability = np.array([[0.9, 0.9], [0.8, 0.95], [0.7, 0.9], [0.6, 0.6], [0.5, 0.99]])
    correct = np.array([[1, 1], [1, 1], [0, 1], [0, 0], [0, 1]])
    # level 0: t = .8 accepts rows 0, 1 (2/2), t = .7 gives 2/3 < .75; level 1 then sees rows
    # 2, 3, 4: t = .9 accepts rows 2, 4 (2/2), t = .6 gives 2/3
    assert level_thresholds(probability, correct, 0.75) == [0.8, 0.9]


def synthetic(n: int = 3000, seed: int = 0) -> tuple[Signals, torch.Tensor]:
    """Signals whose first column drives correctness at every level (a logistic link)."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(n, len(SIGNALS), generator=generator)
    level = torch.randn(n, len(LEVELS), len(LEVEL_SIGNALS), generator=generator)
    logit = 2 * base[:, :1] + torch.arange(len(LEVELS))  # coarser levels are easier
    correct = torch.rand(n, len(LEVELS), generator=generator) < torch.sigmoid(logit)
    return Signals(base, level, torch.zeros(n, len(LEVELS), dtype=torch.long)), correct


def test_thresholds_are_chosen_on_held_out_folds_only():
    sig, correct = synthetic()
    groups = np.arange(len(correct)) // 3  # three variants of each title
    model, held_out = fit_confidence(sig, correct, groups, temperature=1.0)
    fold = fold_of(groups)
    assert all(len(set(fold[groups == g])) == 1 for g in range(5))  # a title's variants together
    # a fold's rows are scored by the models fitted on the other folds
    others = fold != 0
    part = ConfidenceModel(1.0, *fit_levels(sig.take(others), correct[others]), {})
    np.testing.assert_allclose(held_out[fold == 0], part.probabilities(sig.take(fold == 0)),
                               atol=1e-5)
    assert model.thresholds["0.9"] == level_thresholds(held_out, correct.numpy(), 0.9)
    # poisoning a fold's outcomes leaves its held-out scores as they were; the others change
    poisoned = correct.clone()
    poisoned[torch.from_numpy(fold == 0)] = True
    _, again = fit_confidence(sig, poisoned, groups, temperature=1.0)
    np.testing.assert_allclose(again[fold == 0], held_out[fold == 0], atol=1e-5)
    assert not np.allclose(again[fold != 0], held_out[fold != 0], atol=1e-3)


def test_accepted_rows_on_fresh_rows_meet_the_target():
    sig, correct = synthetic(seed=1)
    model, _ = fit_confidence(sig, correct, np.arange(len(correct)), temperature=1.0)
    fresh, truth = synthetic(seed=2)
    probability = model.probabilities(fresh).numpy()
    level = choose_level(probability, model.thresholds_for(0.9))
    coded = level >= 0
    right = truth.numpy()[np.flatnonzero(coded), level[coded]]
    assert 0.3 < coded.mean() < 1 and (level == 0).any() and (level > 0).any()
    assert right.mean() >= 0.88


def test_level_correct_counts_any_valid_code_in_the_answer_group(tiny):
    taxonomy, levels = tiny
    index = taxonomy.index
    valid = torch.zeros(1, len(taxonomy), dtype=torch.bool)
    valid[0, index["15-1211.00"]] = True
    answer = torch.tensor([[index["15-1252.00"], *(
        int(lv.of_code[index["15-1252.00"]]) for lv in levels[1:])]])
    assert level_correct(valid, answer, level_groups(levels)).tolist() == [
        [False, False, False, True, True]]  # other occupation and broad group, same minor


def test_the_model_round_trips_as_plain_numbers_and_a_malformed_one_is_refused():
    sig, correct = synthetic(n=600)
    model, _ = fit_confidence(sig, correct, np.arange(600), temperature=0.05, target=0.92)
    record = model.to_dict()
    assert ConfidenceModel.from_dict(record) == model
    assert sorted(record["thresholds"]) == ["0.8", "0.85", "0.9", "0.92", "0.95", "0.98"]
    assert model.thresholds_for() == record["thresholds"]["0.92"]
    with pytest.raises(OcclassError, match="thresholds for 0.8, 0.85, 0.9, 0.92"):
        model.thresholds_for(0.5)
    for broken in ({**record, "weights": record["weights"][:3]}, {**record, "mean": "x"},
                   {k: v for k, v in record.items() if k != "scale"}):
        with pytest.raises(OcclassError, match="malformed confidence model"):
            ConfidenceModel.from_dict(broken)
