import pytest
import torch

from occlass.model.metrics import OccupationMetrics, valid_mask

# 4 categories: 0 and 1 share a broad group; 2 is in the same major group; 3 is elsewhere.
LEVELS = {"major": [0, 0, 0, 1], "broad": [0, 0, 1, 2]}
SCORES = torch.tensor([
    [0.9, 0.5, 0.1, 0.0],  # top-1: 0
    [0.2, 0.8, 0.6, 0.1],  # top-1: 1
    [0.1, 0.3, 0.2, 0.7],  # top-1: 3
    [0.4, 0.6, 0.9, 0.0],  # top-1: 2
])
CODES = torch.tensor([
    [0, -1],  # correct
    [2, 1],   # several valid codes; the prediction (1) is one of them: correct
    [2, -1],  # wrong everywhere; 2 is second-to-last in its ranking
    [0, -1],  # wrong; same major group, other broad group; 0 is rank 3
])


def test_valid_mask():
    assert valid_mask(CODES, 4).tolist() == [
        [True, False, False, False], [False, True, True, False],
        [False, False, True, False], [True, False, False, False]]


def test_exact_values_on_a_hand_built_score_matrix():
    metrics = OccupationMetrics(4, LEVELS, top_k=2)
    metrics.update(SCORES[:2], CODES[:2])  # two batches, as in an epoch
    metrics.update(SCORES[2:], CODES[2:])
    values = metrics.compute()
    assert values["accuracy"] == pytest.approx(2 / 4)
    assert values["top2_accuracy"] == pytest.approx(2 / 4)  # row 3 ranks 0 third
    assert values["major_accuracy"] == pytest.approx(3 / 4)
    assert values["broad_accuracy"] == pytest.approx(2 / 4)
    # effective targets: [0, 1, 2, 0]; predictions [0, 1, 3, 2]
    # class 0: tp 1 fp 0 fn 1 → P 1, R 1/2, F1 2/3 (support 2)
    # class 1: tp 1 → P R F1 1 (support 1); class 2: fp 1 fn 1 → 0; class 3: fp 1 → 0
    assert values["precision_weighted"] == pytest.approx((2 * 1 + 1 * 1 + 1 * 0) / 4)
    assert values["recall_weighted"] == pytest.approx((2 * 0.5 + 1 + 0) / 4)
    assert values["f1_weighted"] == pytest.approx((2 * 2 / 3 + 1 + 0) / 4)
    assert values["f1_macro"] == pytest.approx((2 / 3 + 1 + 0 + 0) / 4)
    metrics.reset()
    metrics.update(SCORES[:1], CODES[:1])
    assert metrics.compute()["accuracy"] == 1.0
