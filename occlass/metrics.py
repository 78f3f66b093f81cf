"""Evaluation metrics (torchmetrics) of a (inputs × categories) score matrix.

An input may have several valid codes: it counts as correct when the prediction is any of them.
For precision/recall/F1 its target is the predicted code when that is valid, else its first code.
"""

from __future__ import annotations

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


class OccupationMetrics(nn.Module):
    """accuracy, top-k accuracy, weighted and macro precision/recall/F1, accuracy per SOC level."""

    def __init__(self, num_classes: int, level_ids: dict[str, list[int]], top_k: int = 5):
        super().__init__()
        self.num_classes = num_classes
        self.ranked = MetricCollection({
            "accuracy": MultiCodeAccuracy(1),
            f"top{top_k}_accuracy": MultiCodeAccuracy(top_k),
            **{f"{level}_accuracy": MultiCodeAccuracy(1, ids) for level, ids in level_ids.items()},
        }, compute_groups=False)  # same class, different inputs: never share state
        classwise = {}
        for average in ("weighted", "macro"):
            for name, metric in (("precision", MulticlassPrecision), ("recall", MulticlassRecall),
                                 ("f1", MulticlassF1Score)):
                classwise[f"{name}_{average}"] = metric(num_classes, average=average)
        self.classwise = MetricCollection(classwise)

    def update(self, scores: torch.Tensor, codes: torch.Tensor) -> None:
        """scores (B, C); codes (B, M) valid category indices padded with -1."""
        valid = valid_mask(codes, self.num_classes)
        self.ranked.update(scores, valid)
        pred = scores.argmax(dim=1)
        hit = valid.gather(1, pred.unsqueeze(1)).squeeze(1)
        self.classwise.update(pred, torch.where(hit, pred, valid.int().argmax(dim=1)))

    def compute(self) -> dict[str, float]:
        values = {**self.ranked.compute(), **self.classwise.compute()}
        return {name: float(value) for name, value in values.items()}

    def reset(self) -> None:
        self.ranked.reset()
        self.classwise.reset()
