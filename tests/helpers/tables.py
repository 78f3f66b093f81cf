"""Writing a test table in the format its extension names."""

from pathlib import Path

import pandas as pd


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """`frame` as CSV, JSONL or Parquet (by `path`'s extension), without the index."""
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    return path
