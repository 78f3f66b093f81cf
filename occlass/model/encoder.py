"""Sentence encoder: a HuggingFace model with attention-mask mean pooling and L2 normalisation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from transformers import AutoModel

from occlass.data.tokenizer import PACKAGED, load_pretrained


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that the attention mask keeps, L2-normalised."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(pooled.float(), dim=-1)


PAD_SHARE = 0.25  # a batch is cut before its padding would pass this share of its real tokens,
MIN_ROWS = 8      # once it holds this many rows: padding costs as much as text


def length_batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Indices of `lengths`, shortest first, in batches of at most `batch_size` that need little
    padding (a few titles of very different lengths, as a server gathers them, are split)."""
    batch: list[int] = []
    tokens = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        padded = (len(batch) + 1) * lengths[i]
        if batch and (len(batch) == batch_size or len(batch) >= MIN_ROWS
                      and padded > (1 + PAD_SHARE) * (tokens + lengths[i])):
            yield batch
            batch, tokens = [], 0
        batch.append(i)
        tokens += lengths[i]
    if batch:
        yield batch


class Encoder(nn.Module):
    """One encoder for both towers: job titles and occupation texts."""

    def __init__(self, name: str | Path = PACKAGED):
        super().__init__()
        self.name = str(name)
        self.model = load_pretrained(AutoModel.from_pretrained, name)
        self.model.train()  # from_pretrained returns eval mode; Lightning toggles it from here on

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)

    @torch.inference_mode()
    def encode_ids(self, ids: list[list[int]], pad_id: int, batch_size: int = 256) -> torch.Tensor:
        """Embed pre-tokenised texts, batched by length so padding is minimal; rows in input order.
        Runs in eval mode (no dropout) and gives the encoder back in the mode it came in."""
        device = next(self.parameters()).device
        out = None
        was_training = self.training
        self.eval()
        try:
            for rows in length_batches([len(i) for i in ids], batch_size):
                lengths = torch.tensor([len(ids[i]) for i in rows])
                input_ids = pad_sequence([torch.tensor(ids[i]) for i in rows], batch_first=True,
                                         padding_value=pad_id)
                mask = (torch.arange(input_ids.shape[1]) < lengths.unsqueeze(1)).long()
                emb = self(input_ids.to(device), mask.to(device)).float()
                if out is None:
                    out = torch.empty(len(ids), emb.shape[1], device=device)
                out[rows] = emb
        finally:
            self.train(was_training)
        return out
