"""The occupations as the encoder sees them: codes, titles and tokenised category texts, with the
identity of those texts (taxonomy, recipe, a checksum of the texts, the max length)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from occlass.data.taxonomy import Taxonomy


def texts_fingerprint(texts: list[str]) -> str:
    """Checksum of the category texts, in order."""
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Categories:
    """The occupations as the encoder sees them: codes, titles, tokenised category texts, and
    the identity of those texts (without the encoder weights)."""

    codes: list[str]
    titles: list[str]
    token_ids: list[list[int]]
    pad_id: int
    identity: dict[str, str]

    @classmethod
    def from_taxonomy(cls, taxonomy: Taxonomy, tokenizer, recipe: str, n_tasks: int,
                      max_length: int) -> Categories:
        texts = taxonomy.category_texts(recipe, n_tasks)
        identity = {"taxonomy": taxonomy.fingerprint, "taxonomy_version": taxonomy.version,
                    "recipe": recipe, "texts": texts_fingerprint(texts),
                    "max_category_length": str(max_length)}
        ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        return cls(list(taxonomy.codes), list(taxonomy.titles), ids, tokenizer.pad_token_id,
                   identity)

    def __len__(self) -> int:
        return len(self.codes)
