"""The confidence model: the probability that a row's answer is right at each coded level (the
O*NET-SOC occupation, then its SOC 2018 detailed occupation, broad, minor and major group; see
`occlass.data.soc`), and the thresholds that pick the finest level a row can be coded at.

A row's signals (`signals`) are what the Predictor already has: the top-1 probability (softmax
of the fused scores at a temperature), the margin to the runner-up, the category and exemplar
similarity of the top-1 and whether each alone ranks it first, the best exemplar similarity
overall (a known title?), whether the runner-up shares the top-1's SOC occupation or broad
group, the entropy of the top 10, the description's agreement with the answer, the title's
length and unknown-token share. Each level adds the probability mass of its most likely group
(the level's answer) and its margin to the next group, and has its own logistic regression.

Fitting (`fit_confidence`) is cross-fitted: validation rows of several kinds (clean titles,
noisy titles, pseudo ads) are split into folds by title; each fold is scored by models fitted
on the other folds, and the thresholds are chosen on those held-out scores only; the served
models are then fitted on every row. Everything is stored as plain numbers (`to_dict`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from occlass.data.soc import LEVELS, Level
from occlass.errors import OcclassError
from occlass.model.calibration import ABOVE_ONE, checked, review_threshold

SIGNALS = ("top-1 probability (logit)", "margin", "top-1 score", "category similarity",
           "exemplar similarity", "category ranks it first", "exemplar ranks it first",
           "best exemplar similarity", "runner-up in the same SOC occupation",
           "runner-up in the same broad group", "top-10 entropy", "has a description",
           "description ranks it first", "description gap to its best", "log title length",
           "unknown-token share")
LEVEL_SIGNALS = ("group mass (logit)", "group mass margin")
TARGETS = (0.8, 0.85, 0.9, 0.95, 0.98)  # precisions the thresholds are chosen for
DEFAULT_TARGET = 0.9
TOP = 10     # the entropy is over the top-10 probabilities
L2 = 1e-2    # ridge penalty of the logistic regressions (standardised signals)
FOLDS = 5


@dataclass
class Signals:
    """Per row: the signals shared by every level (N, len(SIGNALS)), each level's own
    (N, levels, len(LEVEL_SIGNALS)), and each level's answer, a group index (N, levels)."""

    base: torch.Tensor
    level: torch.Tensor
    answer: torch.Tensor

    def take(self, rows) -> Signals:
        return Signals(self.base[rows], self.level[rows], self.answer[rows])

    @staticmethod
    def concat(parts: list[Signals]) -> Signals:
        return Signals(*(torch.cat([getattr(p, f) for p in parts])
                         for f in ("base", "level", "answer")))


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.logit(p.clamp(1e-6, 1 - 1e-6))


def level_groups(levels: list[Level], device=None) -> list[torch.Tensor]:
    """Each level's (n_codes,) group index of every occupation, as tensors."""
    return [torch.as_tensor(level.of_code, dtype=torch.long, device=device) for level in levels]


@torch.no_grad()
def signals(scores: torch.Tensor, category: torch.Tensor, exemplar: torch.Tensor | None,
            described: torch.Tensor | None, token_ids: list[list[int]], unknown_id: int | None,
            temperature: float, groups: list[torch.Tensor]) -> Signals:
    """The signals of rows with (N, C) fused `scores` (description included), title category
    similarities, best exemplar similarities per code (-inf or None: no exemplar) and
    description category similarities (None: no description); `groups` from `level_groups`."""
    scores, category = scores.float(), category.float()
    exemplar = category if exemplar is None else torch.where(
        torch.isinf(exemplar), category, exemplar.float())
    n = len(scores)
    probability = torch.softmax(scores / temperature, dim=1)
    top, index = scores.topk(2, dim=1)
    first, second = index[:, 0], index[:, 1]
    pick = first.unsqueeze(1)
    top_p = probability.topk(min(TOP, scores.shape[1]), dim=1).values
    top_p = top_p / top_p.sum(dim=1, keepdim=True)
    entropy = -(top_p * top_p.clamp_min(1e-12).log()).sum(dim=1) / math.log(top_p.shape[1])
    same = [(g[first] == g[second]).float() for g in groups[1:3]]  # SOC occupation, broad
    if described is None:
        described_first = described_gap = torch.zeros(n, device=scores.device)
        has_description = torch.zeros(n, device=scores.device)
    else:
        described = described.float()
        described_first = (described.argmax(dim=1) == first).float()
        described_gap = described.gather(1, pick).squeeze(1) - described.max(dim=1).values
        has_description = torch.ones(n, device=scores.device)
    length = torch.tensor([len(ids) for ids in token_ids], dtype=torch.float,
                          device=scores.device)
    unknown = torch.tensor([sum(i == unknown_id for i in ids) / max(len(ids), 1)
                            for ids in token_ids], dtype=torch.float, device=scores.device)
    base = torch.stack([
        _logit(probability.gather(1, pick).squeeze(1)), top[:, 0] - top[:, 1], top[:, 0],
        category.gather(1, pick).squeeze(1), exemplar.gather(1, pick).squeeze(1),
        (category.argmax(dim=1) == first).float(), (exemplar.argmax(dim=1) == first).float(),
        exemplar.max(dim=1).values, *same, entropy, has_description, described_first,
        described_gap, torch.log1p(length), unknown], dim=1)
    level, answer = [], []
    for g in groups:
        mass = torch.zeros(n, int(g.max()) + 1, device=scores.device).scatter_add_(
            1, g.expand(n, -1), probability)
        best = mass.topk(min(2, mass.shape[1]), dim=1)
        runner_up = (best.values[:, 1] if mass.shape[1] > 1
                     else torch.zeros(n, device=scores.device))
        level.append(torch.stack([_logit(best.values[:, 0]), best.values[:, 0] - runner_up], 1))
        answer.append(best.indices[:, 0])
    return Signals(base.cpu(), torch.stack(level, dim=1).cpu(), torch.stack(answer, 1).cpu())


def level_correct(valid: torch.Tensor, answer: torch.Tensor,
                  groups: list[torch.Tensor]) -> torch.Tensor:
    """(N, levels) whether each level's answer holds one of the row's valid codes ((N, C))."""
    n = len(valid)
    columns = []
    for column, g in enumerate(groups):
        hit = torch.zeros(n, int(g.max()) + 1, dtype=torch.float).scatter_reduce_(
            1, g.cpu().expand(n, -1), valid.float(), "amax")
        columns.append(hit.gather(1, answer[:, column:column + 1]).squeeze(1).bool())
    return torch.stack(columns, dim=1)


def _inputs(sig: Signals, level: int) -> torch.Tensor:
    return torch.cat([sig.base, sig.level[:, level]], dim=1).double()


def fit_logistic(x: torch.Tensor, y: torch.Tensor) -> tuple[list, list, list]:
    """Mean, scale and weights (bias first) of a ridge logistic regression of y on standardised
    x (LBFGS)."""
    mean, scale = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    z, target = (x - mean) / scale, y.double()
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w[1:] + w[0], target)
        loss = loss + L2 * (w[1:] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return mean.tolist(), scale.tolist(), w.detach().tolist()


def choose_level(probability: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """(N,) the finest level (index into LEVELS) whose probability reaches its threshold; -1
    where none does."""
    qualifies = np.asarray(probability) >= np.asarray(thresholds)
    return np.where(qualifies.any(axis=1), qualifies.argmax(axis=1), -1)


def level_thresholds(probability: np.ndarray, correct: np.ndarray, target: float) -> list[float]:
    """Per level, finest first, the lowest threshold at which the rows it accepts (those no
    finer level took) are at least `target` right: so the accepted rows as a whole are too."""
    remaining = np.ones(len(probability), dtype=bool)
    thresholds = []
    for level in range(probability.shape[1]):
        p = probability[remaining, level]
        t = (review_threshold(p, correct[remaining, level], target) if remaining.any()
             else 1.0)
        thresholds.append(t)
        remaining &= probability[:, level] < t
    return thresholds


@dataclass
class ConfidenceModel:
    """The fitted temperature, each level's standardisation and logistic weights (bias first),
    the thresholds of each target precision (per level, finest first), and the run's default
    target."""

    temperature: float
    mean: list[list[float]]
    scale: list[list[float]]
    weights: list[list[float]]
    thresholds: dict[str, list[float]]
    target: float = DEFAULT_TARGET

    def probabilities(self, sig: Signals) -> torch.Tensor:
        """(N, levels) probability that each level's answer is right."""
        out = []
        for level in range(len(LEVELS)):
            z = (_inputs(sig, level) - torch.tensor(self.mean[level], dtype=torch.float64)) \
                / torch.tensor(self.scale[level], dtype=torch.float64)
            w = torch.tensor(self.weights[level], dtype=torch.float64)
            out.append(torch.sigmoid(z @ w[1:] + w[0]))
        return torch.stack(out, dim=1).float()

    def thresholds_for(self, target: float | None = None) -> list[float]:
        """The thresholds of `target` (None: the run's), one of the targets it was fitted for."""
        wanted = self.target if target is None else target
        key = next((k for k in self.thresholds if float(k) == wanted), None)
        if key is None:  # 0.9000001 is not 0.9
            raise OcclassError(f"target_precision={target}: this run's confidence model has "
                               f"thresholds for {', '.join(sorted(self.thresholds))}")
        return self.thresholds[key]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ConfidenceModel:
        """The model of a run record, each number checked (finite, in range, not a boolean);
        an OcclassError naming the first bad field."""
        if not isinstance(d, dict):
            raise OcclassError("confidence is not an object")
        width = len(SIGNALS) + len(LEVEL_SIGNALS)

        def table(key: str, columns: int, positive: bool = False) -> list[list[float]]:
            rows = d.get(key)
            if (not isinstance(rows, list) or len(rows) != len(LEVELS)
                    or any(not isinstance(r, list) or len(r) != columns for r in rows)):
                raise OcclassError(f"malformed confidence model: confidence.{key} is not "
                                   f"{len(LEVELS)} levels of {columns} numbers")
            return [[checked(v, f"confidence.{key}[{i}][{j}]", positive=positive)
                     for j, v in enumerate(row)] for i, row in enumerate(rows)]

        thresholds = d.get("thresholds")
        if not isinstance(thresholds, dict) or not thresholds:
            raise OcclassError("malformed confidence model: confidence.thresholds is not an "
                               "object of target precisions")
        for key, values in thresholds.items():
            try:
                target = float(key)
            except ValueError:
                target = math.nan
            if not 0 < target < 1 or key != f"{target:g}":
                raise OcclassError(f"confidence.thresholds has the key {key!r}: expected a "
                                   "precision between 0 and 1, such as '0.9'")
            if not isinstance(values, list) or len(values) != len(LEVELS):
                raise OcclassError(f"malformed confidence model: confidence.thresholds[{key!r}]"
                                   f" is not {len(LEVELS)} thresholds")
            for level, value in enumerate(values):
                checked(value, f"confidence.thresholds[{key!r}][{level}]", 0.0, ABOVE_ONE)
        target = checked(d.get("target", DEFAULT_TARGET), "confidence.target", 0.0, 1.0,
                         positive=True)
        if f"{target:g}" not in thresholds:
            raise OcclassError(f"confidence.target is {target:g}, which has no thresholds "
                               f"(confidence.thresholds has {', '.join(thresholds)})")
        return cls(checked(d.get("temperature"), "confidence.temperature", positive=True),
                   table("mean", width), table("scale", width, positive=True),
                   table("weights", width + 1),
                   {key: [float(v) for v in values] for key, values in thresholds.items()},
                   target)


def fit_levels(sig: Signals, correct: torch.Tensor) -> tuple[list, list, list]:
    """Each level's logistic regression of `correct` (N, levels) on the signals."""
    fitted = [fit_logistic(_inputs(sig, level), correct[:, level])
              for level in range(len(LEVELS))]
    return tuple([f[i] for f in fitted] for i in range(3))


def fold_of(groups: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """A fold per row; rows of one group (the variants of one title) share their fold."""
    unique, inverse = np.unique(groups, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    return (order % folds)[inverse]


def fit_confidence(sig: Signals, correct: torch.Tensor, groups: np.ndarray, temperature: float,
                   target: float = DEFAULT_TARGET, folds: int = FOLDS,
                   seed: int = 0) -> tuple[ConfidenceModel, np.ndarray]:
    """The confidence model of rows with signals `sig` and per-level correctness `correct`
    (N, levels), cross-fitted over folds of `groups`: returns it and the held-out (N, levels)
    probabilities its thresholds were chosen on."""
    fold = fold_of(groups, folds, seed)
    held_out = torch.zeros(len(correct), len(LEVELS))
    for k in range(folds):
        test = fold == k
        if not test.any() or test.all():
            continue
        part = ConfidenceModel(temperature, *fit_levels(sig.take(~test), correct[~test]), {})
        held_out[test] = part.probabilities(sig.take(test))
    held_out, hits = held_out.numpy(), correct.numpy()
    model = ConfidenceModel(temperature, *fit_levels(sig, correct), {
        f"{t:g}": level_thresholds(held_out, hits, t) for t in sorted({*TARGETS, target})},
        target)
    return model, held_out
