"""The category-embedding cache: an (n_codes × dim) matrix with the identity of what produced it.

The matrix is derived from the encoder weights and the category texts (taxonomy, recipe, task
statements, descriptions) at a max length. `occlass.data.categories.Categories` holds those texts
as token ids with their identity; `CategoryCache` the matrix with the identity plus the weights' checksum; and
`build_category_cache` reuses a saved cache only when every part of that identity matches.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from occlass.data.categories import Categories
from occlass.errors import OcclassError
from occlass.model.encoder import Encoder
from occlass.runs import save_or_keep, write_atomic

log = logging.getLogger(__name__)


def weights_fingerprint(module: nn.Module) -> str:
    """Checksum of every parameter and buffer (names and values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_identity(categories: Categories, encoder: nn.Module) -> dict[str, str]:
    """The identity of `categories`' matrix under `encoder`'s weights."""
    return {**categories.identity, "weights": weights_fingerprint(encoder)}


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
            cache = cls(state["embeddings"], state["codes"], state["identity"])
        except (OSError, KeyError, TypeError, RuntimeError, EOFError,
                pickle.UnpicklingError) as err:
            raise OcclassError(f"{path}: not a readable category cache ({err})") from None
        embeddings, codes = cache.embeddings, cache.codes
        if not (isinstance(embeddings, torch.Tensor) and embeddings.is_floating_point()
                and embeddings.ndim == 2 and isinstance(codes, list)
                and all(isinstance(c, str) for c in codes) and len(codes) == len(embeddings)
                and isinstance(cache.identity, dict)):
            raise OcclassError(f"{path}: not a category cache (wrong types or shapes)")
        return cache


def build_category_cache(encoder: Encoder, categories: Categories,
                         path: str | Path | None = None, batch_size: int = 256) -> CategoryCache:
    """The category matrix of `encoder` in fp32: the cache at `path` if its identity matches,
    else encoded (and saved to `path`, when given and writable). Training exports its cache
    with this function, so a rebuilt cache equals the exported one."""
    identity = cache_identity(categories, encoder)
    if path is not None and Path(path).is_file():
        try:
            cache = CategoryCache.load(path)
        except OcclassError as err:
            log.warning("%s; rebuilding it", err)
        else:
            if (cache.identity == identity and cache.codes == categories.codes
                    and cache.embeddings.shape[1] == encoder.dim):
                return cache
            changed = [k for k in identity if cache.identity.get(k) != identity[k]] or ["codes"]
            log.warning("category cache %s is stale (%s changed); rebuilding it", path,
                        ", ".join(changed))
    log.info("encoding %d category texts", len(categories))
    embeddings = encoder.encode_ids(categories.token_ids, categories.pad_id, batch_size).cpu()
    cache = CategoryCache(embeddings, list(categories.codes), identity)
    if path is not None:
        save_or_keep(lambda: cache.save(path), "the category cache")
    return cache
