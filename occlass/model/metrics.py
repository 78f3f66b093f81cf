"""Evaluation metrics (torchmetrics) of a (inputs × categories) score matrix.

An input may have several valid codes: it counts as correct when the prediction is any of them.
For precision/recall/F1 its target is the predicted code when that is valid, else its first code.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassF1Score, MulticlassPrecision, MulticlassRecall


def valid_mask(codes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, M) category indices padded with -1 → (B, C) bool mask of valid categories."""
    mask = torch.zeros(codes.shape[0], num_classes + 1, dtype=torch.bool, device=codes.device)
    mask.scatter_(1, codes % (num_classes + 1), True)
    return mask[:, :num_classes]


class MultiCodeAccuracy(Metric):
    """Share of inputs with a valid code among the top k (or, given `group_of`, with the top-1
    prediction in the same SOC group as a valid code)."""

    full_state_update = False

    def __init__(self, k: int = 1, group_of: list[int] | None = None):
        super().__init__()
        self.k = k
        self.group_of = None if group_of is None else torch.tensor(group_of)
        if group_of is not None and k != 1:
            raise ValueError("group accuracy is defined for the top-1 prediction only")
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, valid: torch.Tensor) -> None:
        top = scores.topk(min(self.k, scores.shape[1]), dim=1).indices
        if self.group_of is None:
            hit = valid.gather(1, top).any(dim=1)
        else:
            group_of = self.group_of.to(scores.device)
            hit = (valid & (group_of == group_of[top])).any(dim=1)
        self.correct += hit.sum()
        self.total += hit.numel()

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1)


class GridAccuracy(Metric):
    """Top-1 accuracy of each of several score matrices of the same inputs (one per candidate
    setting, e.g. fusion weight): a vector, synchronised across processes."""

    full_state_update = False

    def __init__(self, n: int):
        super().__init__()
        self.add_state("correct", torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, scores: list[torch.Tensor], valid: torch.Tensor) -> None:
        self.correct += torch.stack([valid.gather(1, s.argmax(dim=1, keepdim=True)).sum()
                                     for s in scores])
        self.total += valid.shape[0]

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1)


LEVEL_LABELS = {"major": "SOC major group", "minor": "SOC minor group",
                "broad": "SOC broad group", "detailed": "SOC detailed occupation"}


def metric_label(name: str) -> str:
    """A readable label of a metric name of `OccupationMetrics` ("top5_accuracy" → "Top-5
    accuracy"); an unknown name is returned as it is."""
    if name == "accuracy":
        return "Accuracy (top-1)"
    if match := re.fullmatch(r"top(\d+)_accuracy", name):
        return f"Top-{match.group(1)} accuracy"
    if match := re.fullmatch(r"(\w+)_accuracy", name):
        return f"Accuracy, {LEVEL_LABELS.get(match.group(1), match.group(1))}"
    if match := re.fullmatch(r"(precision|recall|f1)_(weighted|macro)", name):
        kind = "F1" if match.group(1) == "f1" else match.group(1).capitalize()
        return f"{kind} ({match.group(2)})"
    return name


def report_table(before: dict[str, float] | None, after: dict[str, float]) -> str:
    """Markdown table metric | before | after | improvement (percentage points), one row per
    metric of `after`, in its order."""
    lines = ["| Metric | Before | After | Improvement |", "|---|---:|---:|---:|"]
    for key, value in after.items():
        if before is None:
            lines.append(f"| {metric_label(key)} | – | {value:.4f} | – |")
        else:
            delta = 100 * (value - before[key])
            lines.append(f"| {metric_label(key)} | {before[key]:.4f} | {value:.4f} | "
                         f"{delta:+.1f} pts |")
    return "\n".join(lines)


class OccupationMetrics(nn.Module):
    """accuracy, top-k accuracy, weighted and macro precision/recall/F1, accuracy per SOC level."""

    def __init__(self, num_classes: int, level_ids: dict[str, list[int]], top_k: int = 5):
        super().__init__()
        self.num_classes = num_classes
        self.top_k_name = f"top{top_k}_accuracy"
        self.ranked = MetricCollection({
            "accuracy": MultiCodeAccuracy(1),
            self.top_k_name: MultiCodeAccuracy(top_k),
            **{f"{level}_accuracy": MultiCodeAccuracy(1, ids) for level, ids in level_ids.items()},
        }, compute_groups=False)  # same class, different inputs: never share state
        classwise = {}
        for average in ("weighted", "macro"):
            for name, metric in (("precision", MulticlassPrecision), ("recall", MulticlassRecall),
                                 ("f1", MulticlassF1Score)):
                classwise[f"{name}_{average}"] = metric(num_classes, average=average)
        self.classwise = MetricCollection(classwise)
        self.names = [*classwise, "accuracy", self.top_k_name,
                      *(f"{level}_accuracy" for level in level_ids)]  # compute's order

    def update(self, scores: torch.Tensor, codes: torch.Tensor) -> None:
        """scores (B, C); codes (B, M) valid category indices padded with -1; B may be 0."""
        if not len(scores):
            return
        valid = valid_mask(codes, self.num_classes)
        self.ranked.update(scores, valid)
        pred = scores.argmax(dim=1)
        hit = valid.gather(1, pred.unsqueeze(1)).squeeze(1)
        self.classwise.update(pred, torch.where(hit, pred, valid.int().argmax(dim=1)))

    def compute(self) -> dict[str, float]:
        values = {**self.classwise.compute(), **self.ranked.compute()}
        return {name: float(values[name]) for name in self.names}

    def reset(self) -> None:
        self.ranked.reset()
        self.classwise.reset()
