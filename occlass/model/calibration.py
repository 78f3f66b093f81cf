"""Confidence of the top-1 prediction: temperature scaling of the fused scores, calibration error,
and the confidence below which a prediction goes to human review."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from occlass.errors import OcclassError

# Bounds of the fitted temperature: a separable set would otherwise drive T towards 0.
LOG_T_BOUNDS = (-5.0, 5.0)
# A threshold above every confidence (`review_threshold` when no set reaches the target).
ABOVE_ONE = math.nextafter(1.0, 2.0)


def checked(value, field: str, low: float = -math.inf, high: float = math.inf,
            positive: bool = False) -> float:
    """`value` as a float if it is a finite number (a boolean is not) from `low` to `high`
    (above 0 if `positive`); else an OcclassError naming `field`."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and low <= value <= high
            and (value > 0 or not positive)):
        bounds = (f"above 0 and at most {high:g}" if positive and math.isfinite(high)
                  else "above 0" if positive
                  else f"from {low:g} to {high:g}" if math.isfinite(low) else "")
        raise OcclassError(f"{field} is {value!r}: expected a finite number {bounds}".rstrip())
    return float(value)


@dataclass
class Calibrator:
    """A fitted temperature, top-label (Platt) slope and intercept, and review threshold.

    The temperature makes a distribution over every code; its top probability p then goes
    through sigmoid(slope · logit(p) + intercept), fitted to whether the top-1 was right: with
    several valid or near-identical codes the top probability alone understates it.
    """

    temperature: float
    review_below: float  # confidence threshold; rows below it need review
    slope: float = 1.0
    intercept: float = 0.0

    def top_probability(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.softmax(scores.float() / self.temperature, dim=1).max(dim=1).values

    def confidence(self, scores: torch.Tensor) -> torch.Tensor:
        """(N, C) fused scores → (N,) probability that the top-1 prediction is right."""
        return platt(self.top_probability(scores), self.slope, self.intercept)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibrator:
        """The calibrator of a run record, each number checked; an OcclassError naming the
        first bad field."""
        if not isinstance(d, dict):
            raise OcclassError("calibration is not an object")
        return cls(temperature=checked(d.get("temperature"), "calibration.temperature",
                                       positive=True),
                   review_below=checked(d.get("review_below"), "calibration.review_below",
                                        0.0, ABOVE_ONE),
                   slope=checked(d.get("slope", 1.0), "calibration.slope"),
                   intercept=checked(d.get("intercept", 0.0), "calibration.intercept"))


def platt(probability: torch.Tensor, slope, intercept) -> torch.Tensor:
    """sigmoid(slope · logit(p) + intercept); slope 1 and intercept 0 give p back."""
    logit = torch.logit(probability.double().clamp(1e-6, 1 - 1e-6))
    return torch.sigmoid(slope * logit + intercept).to(probability.dtype)


def fit_platt(probability: torch.Tensor, correct: torch.Tensor) -> tuple[float, float]:
    """Slope and intercept minimising the binary cross-entropy of `correct` (LBFGS)."""
    logit = torch.logit(probability.detach().double().clamp(1e-6, 1 - 1e-6))
    target = correct.double()
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            params[0] * logit + params[1], target)
        loss.backward()
        return loss

    optimizer.step(closure)
    slope, intercept = params.detach().tolist()
    return slope, intercept


def nll(scores: torch.Tensor, valid: torch.Tensor,
        temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Mean over rows of -log Σ_valid softmax(scores / T): several codes of a row may be valid.
    `valid`: (N, C) bool; every row needs a valid code."""
    logits = scores.double() / temperature
    valid_mass = logits.masked_fill(~valid, -torch.inf).logsumexp(dim=1)
    return (logits.logsumexp(dim=1) - valid_mass).mean()


def fit_temperature(scores: torch.Tensor, valid: torch.Tensor) -> float:
    """The temperature T > 0 that minimises `nll` (LBFGS on log T, kept within LOG_T_BOUNDS)."""
    rows = valid.any(dim=1)
    if not rows.any():
        raise ValueError("fit_temperature needs rows with at least one valid code")
    scores, valid = scores[rows].detach().double(), valid[rows]
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nll(scores, valid, log_t.clamp(*LOG_T_BOUNDS).exp())
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().clamp(*LOG_T_BOUNDS).exp())


def reliability_bins(confidence: np.ndarray, correct: np.ndarray,
                     bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin [i/bins, (i+1)/bins) of [0, 1] (1.0 in the last): mean confidence,
    accuracy (NaN where the bin is empty) and row count."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    index = np.clip((confidence * bins).astype(int), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=bins) / count
        accuracy = np.bincount(index, correct, minlength=bins) / count
    return mean_confidence, accuracy, count


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               bins: int = 15) -> float:
    """Σ over bins of (share of rows) × |accuracy − mean confidence|."""
    mean_confidence, accuracy, count = reliability_bins(confidence, correct, bins)
    filled = count > 0
    gap = np.abs(accuracy[filled] - mean_confidence[filled])
    return float((count[filled] * gap).sum() / count.sum())


def review_threshold(confidence: np.ndarray, correct: np.ndarray, target: float = 0.9) -> float:
    """The lowest observed confidence t such that the rows with confidence ≥ t have top-1
    accuracy ≥ target; if there is none, a value above every confidence (all rows need review)."""
    confidence = np.asarray(confidence, dtype=float)
    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    hits = np.asarray(correct, dtype=float)[order]
    accepted_accuracy = np.cumsum(hits) / np.arange(1, len(ranked) + 1)
    last_of_tie = np.append(ranked[1:] != ranked[:-1], True)  # the set confidence ≥ ranked[i]
    ok = last_of_tie & (accepted_accuracy >= target)
    if not ok.any():
        return float(np.nextafter(ranked[0], np.inf))
    return float(ranked[np.flatnonzero(ok)[-1]])


def fit_calibrator(scores: torch.Tensor, valid: torch.Tensor, target: float = 0.9) -> Calibrator:
    """Fit the temperature, the top-label slope and intercept, then the review threshold for
    `target` accuracy, on one (validation) set of fused scores and valid-code masks."""
    temperature = fit_temperature(scores, valid)
    correct = valid.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)
    slope, intercept = fit_platt(Calibrator(temperature, 0.0).top_probability(scores), correct)
    calibrator = Calibrator(temperature, 0.0, slope, intercept)
    confidence = calibrator.confidence(scores)
    calibrator.review_below = review_threshold(confidence.cpu().numpy(), correct.cpu().numpy(),
                                               target)
    return calibrator
