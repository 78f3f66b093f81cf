"""In-batch contrastive loss over (input, category) pairs, with negatives across DDP ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def gather_with_grad(x: torch.Tensor, pad_value: float = 0) -> torch.Tensor:
    """Concatenate `x` along dim 0 from every rank; gradients flow back to each rank.

    Shapes may differ between ranks: every dim is padded to the largest (with `pad_value`) for
    the exchange, the rows are cut back to each rank's count, and the other dims stay padded.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    shape = torch.tensor(x.shape, device=x.device)
    shapes = [torch.zeros_like(shape) for _ in range(dist.get_world_size())]
    dist.all_gather(shapes, shape)
    largest = torch.stack(shapes).max(dim=0).values
    padding = [p for dim in reversed(range(x.dim())) for p in (0, int(largest[dim] - x.shape[dim]))]
    parts = torch.distributed.nn.functional.all_gather(F.pad(x, padding, value=pad_value))
    return torch.cat([part[: int(s[0])] for part, s in zip(parts, shapes)])


def first_copies(ids: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each distinct value of `ids`, in order."""
    unique, inverse = torch.unique(ids, return_inverse=True)
    positions = torch.arange(len(ids), device=ids.device)
    first = torch.full_like(unique, len(ids)).scatter_reduce(0, inverse, positions, "amin")
    return first.sort().values


def contrastive_loss(queries: torch.Tensor, categories: torch.Tensor, target: torch.Tensor,
                     valid: torch.Tensor, temperature: float = 0.05, symmetric: bool = True,
                     extra: torch.Tensor | None = None,
                     extra_valid: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE between B inputs and U category embeddings (both L2-normalised).

    target: (B,) column of each input's own category. valid: (B, U) bool, every category that is
    correct for the input (its target, a second code of the same title, or the same category
    appearing twice); those other than the target are masked instead of counted as negatives.
    `extra` (E, D) are further negatives without gradient (the rest of the category matrix),
    masked where `extra_valid` (B, E). With `symmetric`, each input's category also has to pick
    its input among the batch's inputs, masking the other inputs for which that category is
    correct.
    """
    scores = queries @ categories.T / temperature
    own = F.one_hot(target, scores.shape[1]).bool()
    forward_scores = scores.masked_fill(valid & ~own, float("-inf"))
    if extra is not None:
        more = (queries @ extra.T.to(queries.dtype) / temperature).masked_fill(extra_valid,
                                                                               float("-inf"))
        forward_scores = torch.cat([forward_scores, more], dim=1)
    loss = F.cross_entropy(forward_scores, target)
    if not symmetric:
        return loss
    reverse = scores.T[target]  # (B, B): row i = category of input i against every input
    others = valid[:, target].T & ~torch.eye(len(target), dtype=torch.bool, device=target.device)
    reverse_loss = F.cross_entropy(reverse.masked_fill(others, float("-inf")),
                                   torch.arange(len(target), device=target.device))
    return (loss + reverse_loss) / 2


class ContrastiveLoss(nn.Module):
    """Gathers inputs and categories from every rank, then applies `contrastive_loss` to
    (input, category) pairs and, given partner titles, to (input, another title of its code)
    pairs, weighted by `title_weight` (synonym training: what makes exemplar lookup generalise).

    Every rank computes the same global loss; DDP's gradient averaging then yields the gradient
    of that loss, so the negatives span the global batch.
    """

    def __init__(self, temperature: float = 0.05, symmetric: bool = True,
                 title_weight: float = 1.0):
        super().__init__()
        self.temperature = temperature
        self.symmetric = symmetric
        self.title_weight = title_weight

    def forward(self, queries: torch.Tensor, labels: torch.Tensor, codes: torch.Tensor,
                categories: torch.Tensor, category_index: torch.Tensor,
                partners: torch.Tensor | None = None,
                bank: torch.Tensor | None = None) -> torch.Tensor:
        """queries (B, D) with labels (B,) and all valid codes (B, M; -1 = padding);
        categories (U, D) with their category ids category_index (U,); partners (B, D): another
        title of each input's label; bank (C, D): every category's embedding, without gradient
        (the categories outside the batch become negatives too)."""
        queries, labels = gather_with_grad(queries), gather_with_grad(labels)
        codes = gather_with_grad(codes, pad_value=-1)
        categories = gather_with_grad(categories)
        category_index = gather_with_grad(category_index)
        # A category in several ranks' batches arrives once per rank: keep one copy, or it would
        # count several times as a negative.
        keep = first_copies(category_index)
        categories, category_index = categories[keep], category_index[keep]
        valid = (codes.unsqueeze(-1) == category_index).any(dim=1)
        target = (labels.unsqueeze(1) == category_index).int().argmax(dim=1)
        extra = extra_valid = None
        if bank is not None:
            outside = torch.ones(len(bank), dtype=torch.bool, device=bank.device)
            outside[category_index] = False
            extra = bank[outside]
            extra_index = outside.nonzero().squeeze(1)
            extra_valid = (codes.unsqueeze(-1) == extra_index).any(dim=1)
        loss = contrastive_loss(queries, categories, target, valid, self.temperature,
                                self.symmetric, extra, extra_valid)
        if partners is None or not self.title_weight:
            return loss
        partners = gather_with_grad(partners)
        same = (codes.unsqueeze(-1) == labels.view(1, 1, -1)).any(dim=1)  # (B, B)
        title_loss = contrastive_loss(queries, partners,
                                      torch.arange(len(labels), device=labels.device), same,
                                      self.temperature, self.symmetric)
        return loss + self.title_weight * title_loss
