"""The confidence model: the probability that a row's answer is right at each coded level (the
O*NET-SOC occupation, then its SOC 2018 detailed occupation, broad, minor and major group; see
`occlass.data.soc`), and the thresholds that pick the finest level a row can be coded at.

A row's signals (`signals`) are what the Predictor already has: the top-1 probability (softmax
of the fused scores at a temperature), the margin to the runner-up, the category and exemplar
similarity of the top-1 and whether each alone ranks it first, the best exemplar similarity
overall (a known title?), whether the runner-up shares the top-1's SOC occupation or broad
group, the entropy of the top 10, the description's agreement with the answer, the title's
length and unknown-token share, and how many minor and major groups the top 10 spread over.
Each level adds the probability mass of its most likely group (the level's answer), its margin
to the next group, and whether the category similarity's and the best exemplar's top-1 fall in
that group (and in one group together), and has its own logistic regression.

Fitting (`fit_confidence`) is cross-fitted: rows of several kinds (clean titles, reported
titles, noisy titles, pseudo ads) are split into folds by group; each fold is scored by models
fitted on the other folds, and the thresholds are chosen on those held-out scores only; the
served models are then fitted on every row. With kinds, the thresholds are chosen for a kind of
input the model was not fitted on (`worst_kind_target`). Everything is stored as plain numbers
(`to_dict`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

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
           "unknown-token share", "minor groups in the top 10", "major groups in the top 10")
LEVEL_SIGNALS = ("group mass (logit)", "group mass margin", "category top-1 in the group",
                 "best exemplar's code in the group", "category and exemplar top-1 in one group")
FIRST_WIDTHS = (16, 2)  # the signals of runs fitted before the group signals: a prefix of each
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


def _distinct(values: torch.Tensor) -> torch.Tensor:
    """(N,) how many distinct values each row of (N, k) holds."""
    ordered = values.sort(dim=1).values
    return 1.0 + (ordered[:, 1:] != ordered[:, :-1]).sum(dim=1).float()


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
    top_p, top_index = probability.topk(min(TOP, scores.shape[1]), dim=1)
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
        described_gap, torch.log1p(length), unknown,
        *(_distinct(g[top_index]) for g in groups[-2:])], dim=1)  # minor, major
    level, answer = [], []
    by_category, by_exemplar = category.argmax(dim=1), exemplar.argmax(dim=1)
    for g in groups:
        mass = torch.zeros(n, int(g.max()) + 1, device=scores.device).scatter_add_(
            1, g.expand(n, -1), probability)
        best = mass.topk(min(2, mass.shape[1]), dim=1)
        runner_up = (best.values[:, 1] if mass.shape[1] > 1
                     else torch.zeros(n, device=scores.device))
        group = best.indices[:, 0]
        level.append(torch.stack([
            _logit(best.values[:, 0]), best.values[:, 0] - runner_up,
            (g[by_category] == group).float(), (g[by_exemplar] == group).float(),
            (g[by_category] == g[by_exemplar]).float()], 1))
        answer.append(group)
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


def _inputs(sig: Signals, level: int, widths: list[int] | None = None) -> torch.Tensor:
    """A level's inputs: the first `widths` (None: all) of the shared and the level's own
    signals."""
    base, own = widths or (len(SIGNALS), len(LEVEL_SIGNALS))
    return torch.cat([sig.base[:, :base], sig.level[:, level, :own]], dim=1).double()


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
    the thresholds of each target precision (per level, finest first), the run's default
    target, how many of the shared and level signals it reads (runs fitted before the group
    signals read fewer), and the stricter target each target's thresholds were chosen at
    (`worst_kind_target`; absent: the target itself)."""

    temperature: float
    mean: list[list[float]]
    scale: list[list[float]]
    weights: list[list[float]]
    thresholds: dict[str, list[float]]
    target: float = DEFAULT_TARGET
    widths: list[int] = field(default_factory=lambda: [len(SIGNALS), len(LEVEL_SIGNALS)])
    chosen_at: dict[str, float] = field(default_factory=dict)

    def probabilities(self, sig: Signals) -> torch.Tensor:
        """(N, levels) probability that each level's answer is right."""
        out = []
        for level in range(len(LEVELS)):
            z = (_inputs(sig, level, self.widths)
                 - torch.tensor(self.mean[level], dtype=torch.float64)) \
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
        widths = d.get("widths", list(FIRST_WIDTHS))
        if (not isinstance(widths, list) or len(widths) != 2
                or any(isinstance(w, bool) or not isinstance(w, int) for w in widths)
                or not 0 < widths[0] <= len(SIGNALS) or not 0 < widths[1] <= len(LEVEL_SIGNALS)):
            raise OcclassError(f"malformed confidence model: confidence.widths is {widths!r}")
        width = sum(widths)

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
        chosen_at = d.get("chosen_at", {})
        if not isinstance(chosen_at, dict):
            raise OcclassError("malformed confidence model: confidence.chosen_at is not an object")
        return cls(checked(d.get("temperature"), "confidence.temperature", positive=True),
                   table("mean", width), table("scale", width, positive=True),
                   table("weights", width + 1),
                   {key: [float(v) for v in values] for key, values in thresholds.items()},
                   target, widths,
                   {str(k): checked(v, f"confidence.chosen_at[{k!r}]", 0.0, 1.0, positive=True)
                    for k, v in chosen_at.items()})


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


def cross_fit(sig: Signals, correct: torch.Tensor, groups: np.ndarray, folds: int = FOLDS,
              seed: int = 0) -> np.ndarray:
    """(N, levels) each row's probabilities from the models fitted on the folds (of `groups`)
    other than its own."""
    fold = fold_of(groups, folds, seed)
    held_out = torch.zeros(len(correct), len(LEVELS))
    for k in range(folds):
        test = fold == k
        if not test.any() or test.all():
            continue
        part = ConfidenceModel(1.0, *fit_levels(sig.take(~test), correct[~test]), {})
        held_out[test] = part.probabilities(sig.take(test))
    return held_out.numpy()


def accepted(probability: np.ndarray, correct: np.ndarray,
             thresholds: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(N,) each row's coded level (-1: none) and whether the answer there is right."""
    level = choose_level(probability, thresholds)
    return level, correct[np.arange(len(level)), level.clip(0)] & (level >= 0)


@dataclass
class KindOut:
    """One kind left out of fitting: which rows are the other kinds', their held-out
    probabilities (cross-fitted among themselves) and the left-out rows' probabilities from
    the models fitted on every other row."""

    others: np.ndarray
    held_out: np.ndarray
    left_out: np.ndarray

    def coded(self, correct: np.ndarray, target: float) -> tuple[np.ndarray, np.ndarray]:
        """The left-out rows' coded levels and whether they are right (`accepted`), with
        thresholds chosen for `target` on the other kinds' held-out rows."""
        return accepted(self.left_out, correct[~self.others],
                        level_thresholds(self.held_out, correct[self.others], target))

    def precision(self, correct: np.ndarray, target: float) -> float:
        """The left-out rows' precision at `target` (`coded`); 1.0 if none is coded."""
        level, right = self.coded(correct, target)
        return float(right[level >= 0].mean()) if (level >= 0).any() else 1.0


def kinds_left_out(sig: Signals, correct: torch.Tensor, groups: np.ndarray, kinds: np.ndarray,
                   folds: int = FOLDS, seed: int = 0) -> dict[str, KindOut]:
    """Per kind (of `kinds`, each row's), fitting on the other kinds only (`KindOut`)."""
    out = {}
    for kind in dict.fromkeys(kinds.tolist()):
        others = kinds != kind
        rest, hits = sig.take(torch.from_numpy(others)), correct[torch.from_numpy(others)]
        model = ConfidenceModel(1.0, *fit_levels(rest, hits), {})
        out[kind] = KindOut(others, cross_fit(rest, hits, groups[others], folds, seed),
                            model.probabilities(sig.take(torch.from_numpy(~others))).numpy())
    return out


def worst_kind_target(left_out: dict[str, KindOut], correct: np.ndarray, target: float) -> float:
    """The least strict target (at least `target`, in steps of 0.005 up to 1) whose thresholds,
    chosen on the other kinds, reach `target` precision on every kind left out (1 if none does).

    The rule for a kind of input nobody fitted on. A one-sided lower bound on the pooled held-out
    rows' precision (Clopper–Pearson) was the alternative; it only covers sampling error among
    rows like the fitted ones, and with thousands of rows it barely moves while one kind (new
    titles) misses the target by several points: the miss is a shift between kinds, which
    leaving a kind out measures and a pooled bound cannot see."""
    for strict in np.round(np.arange(target, 1.0, 0.005), 3).tolist() + [1.0]:
        if all(out.precision(correct, strict) >= target for out in left_out.values()):
            return strict
    return 1.0


def leave_one_kind_out(sig: Signals, correct: torch.Tensor, groups: np.ndarray,
                       kinds: np.ndarray, target: float, folds: int = FOLDS,
                       seed: int = 0) -> dict[str, dict]:
    """Per kind, fitted on the other kinds only: its rows' coded levels and rightness
    (`accepted`) with thresholds for `target` chosen as a pooled point estimate ("pooled") and
    at the other kinds' own `worst_kind_target` ("worst kind", with that target as "strict"):
    how each rule fares on a kind of input it was not fitted on."""
    hits = correct.numpy()
    result = {}
    for kind, out in kinds_left_out(sig, correct, groups, kinds, folds, seed).items():
        rest = torch.from_numpy(out.others)
        inner = (kinds_left_out(sig.take(rest), correct[rest], groups[out.others],
                                kinds[out.others], folds, seed)
                 if len(set(kinds[out.others].tolist())) > 1 else {})
        strict = worst_kind_target(inner, hits[out.others], target) if inner else target
        result[kind] = {"pooled": out.coded(hits, target),
                        "worst kind": out.coded(hits, strict), "strict": strict}
    return result


def fit_confidence(sig: Signals, correct: torch.Tensor, groups: np.ndarray, temperature: float,
                   target: float = DEFAULT_TARGET, folds: int = FOLDS, seed: int = 0,
                   kinds: np.ndarray | None = None) -> tuple[ConfidenceModel, np.ndarray]:
    """The confidence model of rows with signals `sig` and per-level correctness `correct`
    (N, levels), cross-fitted over folds of `groups`: returns it and the held-out (N, levels)
    probabilities its thresholds were chosen on. With `kinds` (each row's kind of input, two
    or more), each target's thresholds are chosen at its `worst_kind_target`."""
    held_out, hits = cross_fit(sig, correct, groups, folds, seed), correct.numpy()
    chosen_at = {}
    if kinds is not None and len(set(kinds.tolist())) > 1:
        left_out = kinds_left_out(sig, correct, groups, kinds, folds, seed)
        chosen_at = {f"{t:g}": worst_kind_target(left_out, hits, t)
                     for t in sorted({*TARGETS, target})}
    thresholds = {f"{t:g}": level_thresholds(held_out, hits, chosen_at.get(f"{t:g}", t))
                  for t in sorted({*TARGETS, target})}
    model = ConfidenceModel(temperature, *fit_levels(sig, correct), thresholds, target,
                            chosen_at=chosen_at)
    return model, held_out
