"""How input text is normalised and assembled (light: no torch or Lightning imports)."""

from __future__ import annotations

import re
import unicodedata


def normalize_title(text: str) -> str:
    """Case-, accent- and punctuation-insensitive key: "Sr. S/W Engineer" → "sr s w engineer"."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def input_text(title: str, description: str | None = None) -> str:
    """The text the encoder sees for one input: the title, then the description if any."""
    return f"{title}. {description}" if description else title
