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


PAD_SHARE = 0.25  # a pass is cut before its padding would pass this share of its real tokens,
MIN_ROWS = 8      # once it holds this many rows: padding costs as much as text
PACK_TOKENS = 64  # short texts share a row, end to end, up to this many tokens: a pass of a few
# titles is one pass of full rows (MiniLM on O*NET titles, passes of 8-256: 64 was the fastest of
# 32-256 tokens, 1.1-1.3x faster than padded batches)
PACKABLE = ("bert",)  # model types whose positions count from 0 in each text (MPNet's do not)


def length_batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Indices of `lengths`, shortest first, in batches of at most `batch_size` that need little
    padding (a few rows of very different lengths are split)."""
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


def packed_rows(lengths: list[int], limit: int) -> list[list[int]]:
    """Indices of `lengths`, shortest first, in rows of at most `limit` tokens (a longer text
    alone)."""
    rows: list[list[int]] = []
    tokens = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if not rows or tokens + lengths[i] > limit:
            rows.append([])
            tokens = 0
        rows[-1].append(i)
        tokens += lengths[i]
    return rows


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
        """Embed pre-tokenised texts, rows in input order. Short texts (BERT models) are packed
        end to end into rows of `PACK_TOKENS`, each attending only to itself, so no pass wastes
        work on padding; rows of similar length go together, at most `batch_size` rows a pass.
        Runs in eval mode (no dropout) and gives the encoder back in the mode it came in."""
        lengths = [len(i) for i in ids]
        packs = self.model.config.model_type in PACKABLE
        rows = packed_rows(lengths, PACK_TOKENS if packs else 0)
        out = None
        was_training = self.training
        if was_training:  # (toggling walks every module: 5 ms a call at prediction)
            self.eval()
        try:
            for batch in length_batches([sum(lengths[i] for i in r) for r in rows], batch_size):
                texts = [i for b in batch for i in rows[b]]
                emb = self._encode_rows([rows[b] for b in batch], ids, pad_id, packs)
                if out is None:
                    out = torch.empty(len(ids), emb.shape[1], device=emb.device)
                out[texts] = emb
        finally:
            if was_training:
                self.train()
        return out

    def _encode_rows(self, rows: list[list[int]], ids: list[list[int]], pad_id: int,
                     packed: bool) -> torch.Tensor:
        """Embeddings of the texts of `rows` (each row its texts end to end), in row order; with
        `packed` False, a row holds one text."""
        device = next(self.parameters()).device
        tokens, segment, position, n = [], [], [], 0  # n: texts before this row
        for row in rows:
            tokens.append(torch.tensor([t for i in row for t in ids[i]]))
            segment.append(torch.cat([torch.full((len(ids[i]),), n + j)
                                      for j, i in enumerate(row)]))
            position.append(torch.cat([torch.arange(len(ids[i])) for i in row]))
            n += len(row)
        input_ids, segment, position = (
            pad_sequence(t, batch_first=True, padding_value=v).to(device)
            for t, v in ((tokens, pad_id), (segment, -1), (position, 0)))
        real = segment >= 0
        if not packed:
            return self(input_ids, real.long()).float()
        # a token sees its own text only; positions restart with each text
        mask = torch.where(segment[:, :, None] == segment[:, None, :], 0.0,
                           torch.finfo(torch.float32).min)[:, None]
        hidden = self.model(input_ids=input_ids, attention_mask=mask,
                            position_ids=position).last_hidden_state
        summed = torch.zeros(n, hidden.shape[-1], device=device).index_add_(
            0, segment[real], hidden[real].float())
        counts = torch.bincount(segment[real], minlength=n).clamp(min=1)
        return F.normalize(summed / counts[:, None], dim=-1)
