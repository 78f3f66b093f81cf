"""The run directory: what a training run leaves behind and what prediction loads.

    RUN_DIR/encoder/            exported encoder + tokenizer (save_pretrained)
    RUN_DIR/category_cache.pt   category-embedding matrix with its identity
    RUN_DIR/run.json            taxonomy, recipe and lengths the run was trained with
    RUN_DIR/metrics.json        before/after test metrics and the best validation score
    RUN_DIR/report.md           before/after table
    RUN_DIR/checkpoints/        Lightning checkpoints (best by val accuracy, last)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

ENCODER_DIR = "encoder"
CACHE_FILE = "category_cache.pt"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"

REPORT_METRICS = (
    ("precision_weighted", "Precision (weighted)"),
    ("recall_weighted", "Recall (weighted)"),
    ("f1_weighted", "F1 (weighted)"),
    ("f1_macro", "F1 (macro)"),
    ("accuracy", "Accuracy (top-1)"),
    ("top5_accuracy", "Top-5 accuracy"),
    ("major_accuracy", "Accuracy, SOC major group"),
    ("minor_accuracy", "Accuracy, SOC minor group"),
    ("broad_accuracy", "Accuracy, SOC broad group"),
    ("detailed_accuracy", "Accuracy, SOC detailed occupation"),
)


def write_atomic(path: str | Path, content: str | bytes | Callable[[IO[bytes]], None]) -> None:
    """Write a file via a temporary file in the same folder and a rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path: str | Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def report_table(before: dict[str, float] | None, after: dict[str, float]) -> str:
    """Markdown table metric | before | after | improvement (percentage points)."""
    lines = ["| Metric | Before | After | Improvement |", "|---|---:|---:|---:|"]
    for key, label in REPORT_METRICS:
        if key not in after:
            continue
        if before is None:
            lines.append(f"| {label} | – | {after[key]:.4f} | – |")
        else:
            delta = 100 * (after[key] - before[key])
            lines.append(f"| {label} | {before[key]:.4f} | {after[key]:.4f} | {delta:+.1f} pts |")
    return "\n".join(lines)
