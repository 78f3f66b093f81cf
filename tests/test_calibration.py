import math

import numpy as np
import pytest
import torch

from occlass.model.calibration import (
    Calibrator,
    expected_calibration_error,
    fit_calibrator,
    fit_temperature,
    nll,
    review_threshold,
)


def synthetic(n: int = 20000, classes: int = 10, sharpen: float = 3.0, seed: int = 0):
    """True classes drawn from softmax(z); scores = sharpen·z (sharpen > 1: overconfident)."""
    generator = torch.Generator().manual_seed(seed)
    z = 1.5 * torch.randn(n, classes, generator=generator)
    y = torch.multinomial(torch.softmax(z, dim=1), 1, generator=generator).squeeze(1)
    valid = torch.nn.functional.one_hot(y, classes).bool()
    return sharpen * z, valid


def confidence_and_correct(scores, valid, temperature=1.0):
    confidence = Calibrator(temperature, 0.0).confidence(scores).numpy()
    correct = valid.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1).numpy()
    return confidence, correct


def test_multi_valid_nll_matches_a_hand_computation():
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, math.log(2)]])
    valid = torch.tensor([[True, False, True], [False, True, False]])
    e = math.exp
    row0 = -math.log((e(1) + e(3)) / (e(1) + e(2) + e(3)))
    row1 = -math.log(1 / 4)
    assert float(nll(scores, valid)) == pytest.approx((row0 + row1) / 2)
    row0_t2 = -math.log((e(0.5) + e(1.5)) / (e(0.5) + e(1) + e(1.5)))
    row1_t2 = -math.log(1 / (2 + math.sqrt(2)))
    assert float(nll(scores, valid, 2.0)) == pytest.approx((row0_t2 + row1_t2) / 2)


def test_fitting_recovers_the_overconfidence_and_lowers_the_nll():
    scores, valid = synthetic()
    temperature = fit_temperature(scores, valid)
    assert temperature == pytest.approx(3.0, rel=0.15)
    assert float(nll(scores, valid, temperature)) < float(nll(scores, valid, 1.0))


def test_ece_small_when_calibrated_large_when_overconfident_and_drops_after_fitting():
    calibrated = confidence_and_correct(*synthetic(sharpen=1.0))
    assert expected_calibration_error(*calibrated) < 0.02
    scores, valid = synthetic()
    before = expected_calibration_error(*confidence_and_correct(scores, valid))
    fitted = confidence_and_correct(scores, valid, fit_temperature(scores, valid))
    after = expected_calibration_error(*fitted)
    assert before > 0.1
    assert after < 0.02


def test_ece_hand_computed():
    confidence = np.array([0.1, 0.15, 0.8, 0.9, 1.0])
    correct = np.array([0, 1, 1, 0, 1])
    # bins [0, .5): conf .125, acc .5, 2 rows; [.5, 1]: conf .9, acc 2/3, 3 rows
    expected = 2 / 5 * abs(0.5 - 0.125) + 3 / 5 * abs(2 / 3 - 0.9)
    assert expected_calibration_error(confidence, correct, bins=2) == pytest.approx(expected)


def test_review_threshold_hand_computed():
    confidence = np.array([0.5, 0.9, 0.7, 0.8, 0.6])
    correct = np.array([0, 1, 0, 1, 1])
    # accepted accuracy at t = .9: 1, .8: 1, .7: 2/3, .6: 3/4, .5: 3/5
    assert review_threshold(confidence, correct, 0.75) == 0.6
    assert review_threshold(confidence, correct, 1.0) == 0.8
    assert review_threshold(confidence, correct, 0.6) == 0.5
    never = review_threshold(confidence, np.zeros(5), 0.5)
    assert never > 0.9 and not (confidence >= never).any()


def test_review_threshold_treats_tied_confidences_as_one_set():
    confidence = np.array([0.9, 0.9, 0.5])
    correct = np.array([1, 0, 1])
    assert review_threshold(confidence, correct, 1.0) > 0.9  # .9 accepts both tied rows: 1/2


def test_accepted_rows_reach_the_target():
    scores, valid = synthetic()
    calibrator = fit_calibrator(scores, valid, target=0.9)
    confidence, correct = confidence_and_correct(scores, valid, calibrator.temperature)
    accepted = confidence >= calibrator.review_below
    assert 0 < accepted.sum() < len(accepted)
    assert correct[accepted].mean() >= 0.9
    assert correct.mean() < 0.9


def test_calibrator_round_trips_and_scores_confidence():
    calibrator = Calibrator(temperature=2.0, review_below=0.7)
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator
    confidence = calibrator.confidence(torch.tensor([[0.0, 2 * math.log(3)]]))
    assert confidence.tolist() == pytest.approx([0.75])


def test_top_label_scaling_fixes_what_one_temperature_cannot():
    """Each title has two near-identical valid codes that split the probability: the top
    probability understates correctness whatever the temperature; the fitted slope and
    intercept bring the confidence to the observed accuracy."""
    generator = torch.Generator().manual_seed(3)
    n, classes = 20000, 20
    z = 1.5 * torch.randn(n, classes // 2, generator=generator)
    y = torch.multinomial(torch.softmax(z, dim=1), 1, generator=generator).squeeze(1)
    scores = torch.repeat_interleave(z, 2, dim=1) + 0.01 * torch.randn(n, classes,
                                                                       generator=generator)
    valid = torch.zeros(n, classes, dtype=torch.bool)
    valid[torch.arange(n), 2 * y] = valid[torch.arange(n), 2 * y + 1] = True
    correct = valid.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1).numpy()
    temperature_only = Calibrator(fit_temperature(scores, valid), 0.0).confidence(scores)
    fitted = fit_calibrator(scores, valid).confidence(scores)
    assert expected_calibration_error(temperature_only.numpy(), correct) > 0.1
    assert expected_calibration_error(fitted.numpy(), correct) < 0.02
