"""The category-embedding cache: an (n_codes × dim) matrix with the identity of what produced it.

The matrix is derived from (encoder weights, taxonomy, category-text recipe, max length); the
identity records all four, so a cache that no longer matches is detected and rebuilt.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from occlass.errors import OcclassError
from occlass.runs import write_atomic


def weights_fingerprint(module: nn.Module) -> str:
    """Checksum of every parameter and buffer (names and values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.inference_mode()
def encode_ids(encoder: nn.Module, ids: list[list[int]], pad_id: int,
               batch_size: int = 256) -> torch.Tensor:
    """Embed pre-tokenised texts, batched by length so padding is minimal; rows in input order.
    Runs in eval mode (no dropout) and gives the encoder back in the mode it came in."""
    device = next(encoder.parameters()).device
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = None
    was_training = encoder.training
    encoder.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            lengths = torch.tensor([len(ids[i]) for i in rows])
            input_ids = pad_sequence([torch.tensor(ids[i]) for i in rows], batch_first=True,
                                     padding_value=pad_id)
            mask = (torch.arange(input_ids.shape[1]) < lengths.unsqueeze(1)).long()
            emb = encoder(input_ids.to(device), mask.to(device)).float()
            if out is None:
                out = torch.empty(len(ids), emb.shape[1], device=device)
            out[rows] = emb
    finally:
        encoder.train(was_training)
    return out


@dataclass
class CategoryCache:
    embeddings: torch.Tensor  # (n_codes, dim), L2-normalised rows
    codes: list[str]
    identity: dict[str, str]

    def save(self, path: str | Path) -> None:
        write_atomic(path, lambda f: torch.save(
            {"embeddings": self.embeddings.cpu(), "codes": self.codes, "identity": self.identity},
            f))

    @classmethod
    def load(cls, path: str | Path) -> CategoryCache:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            return cls(state["embeddings"], state["codes"], state["identity"])
        except (OSError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise OcclassError(f"{path}: not a readable category cache ({err})") from None
