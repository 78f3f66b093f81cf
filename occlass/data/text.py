"""How input text is normalised and assembled (light: no torch or Lightning imports)."""

from __future__ import annotations

import re
import unicodedata


def normalize_title(text: str) -> str:
    """Case-, accent- and punctuation-insensitive key: "Sr. S/W Engineer" → "sr s w engineer"."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


# Words that do not tell occupations apart in a title ("&" is dropped by normalize_title).
STOP_WORDS = frozenset({"a", "an", "and", "the", "of", "for", "in", "on", "at", "to", "with", "or",
                        "by"})


def singular(word: str) -> str:
    """A plural English noun's singular, by suffix ("nurses" → "nurse", "secretaries" →
    "secretary"); other words as they are."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def surface_key(text: str) -> str:
    """A stronger key than `normalize_title`: singular words without stop words, in sorted
    order, so "Inspector, pole", "Pole Inspectors" and "inspector of poles" share one."""
    words = normalize_title(text).split()
    kept = sorted({singular(w) for w in words if w not in STOP_WORDS})
    return " ".join(kept) or " ".join(words)


def input_text(title: str, description: str | None = None) -> str:
    """The text the encoder sees for one input: the title, then the description if any."""
    return f"{title}. {description}" if description else title
