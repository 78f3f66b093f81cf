"""A coded file (predict.py's output, confidence=levels) whose rows the model coded at chosen
SOC levels, for the review desk's tests: the tiny random model's own levels are arbitrary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers.tables import write_table
from occlass.predict.job import predict_file
from occlass.predict.loader import RunParts
from occlass.predict.predictor import Predictor


def coded_at_levels(parts: RunParts, titles: list[str], levels: dict[int, str],
                    path: Path) -> pd.DataFrame:
    """`titles` predicted into `path`; row i of `levels` coded at the group of that level of
    its top-1 occupation (not flagged), every other row coded at no level (flagged)."""
    raw = write_table(pd.DataFrame({"title": titles}), path.with_name(f"raw-{path.name}"))
    predict_file(Predictor(parts), raw, path, top_k=3, progress=False)
    coded = pd.read_csv(path, dtype=str, keep_default_na=False)
    by_name = {level.name: level for level in parts.levels}
    coded[["coded_level", "coded_code", "coded_title", "coded_confidence"]] = ""
    coded["needs_review"] = "True"
    for row, name in levels.items():
        level = by_name[name]
        group = level.of_code[list(parts.taxonomy.codes).index(coded.loc[row, "pred_code_1"])]
        coded.loc[row, ["coded_level", "coded_code", "coded_title", "coded_confidence",
                        "needs_review"]] = [name, level.codes[group], level.titles[group],
                                            "0.97", "False"]
    write_table(coded, path)
    return coded
