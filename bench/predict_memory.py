"""Peak memory of `predict.py` streaming a generated 1,000,000-row CSV, written to BENCHMARKS.md.

    .venv/bin/python bench/predict_memory.py [--rows 1000000] [--distinct 5000] [predict.py overrides]

The file repeats a few thousand distinct O*NET alternate titles (Zipf-like frequency, 1% empty),
so that the run takes minutes, not hours, on a small CPU: each distinct title is encoded once.
Without overrides it predicts zero-shot with the packaged model (`run=RUN_DIR` for a run).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import ROOT, load, preamble, write_section

from occlass.predictor import count_rows
from occlass.taxonomy import CODE_COLUMN, read_onet_table

LIMIT_MIB = 2048


def generate(path: Path, data_dir: Path, rows: int, distinct: int) -> None:
    titles = read_onet_table(data_dir / "Alternate Titles.txt", [CODE_COLUMN, "Alternate Title"])
    titles = titles["Alternate Title"].drop_duplicates().sample(distinct, random_state=0).to_numpy()
    rng = np.random.default_rng(0)
    weights = 1 / np.arange(1, distinct + 1) ** 1.1
    column = titles[rng.choice(distinct, size=rows, p=weights / weights.sum())]
    column[rng.random(rows) < 0.01] = ""
    pd.DataFrame({"id": np.arange(rows), "title": column}).to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, default=5_000, help="distinct titles in the file")
    parser.add_argument("--data-dir", type=Path, default=Path("data/onet-29.3"))
    parser.add_argument("overrides", nargs="*", help="predict.py overrides, e.g. run=RUN_DIR")
    args = parser.parse_args()
    at_start = load()

    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "titles.csv", Path(tmp) / "predictions.csv"
        generate(source, args.data_dir, args.rows, args.distinct)
        command = [sys.executable, str(ROOT / "predict.py"), f"input={source}",
                   f"output={output}", f"data_dir={args.data_dir.resolve()}", *args.overrides]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        written = count_rows(output)
        sizes = source.stat().st_size / 2**20, output.stat().st_size / 2**20
    if written != args.rows:
        raise SystemExit(f"predict.py wrote {written:,} rows, not {args.rows:,}")

    verdict = "**within**" if peak < LIMIT_MIB else "**over**"
    config = (f"`predict.py` ({' '.join(args.overrides) or 'zero-shot, packaged all-MiniLM-L6-v2'}"
              f", default chunk_rows, top_k, batch size) on a generated CSV of {args.rows:,} rows: "
              f"an id and a title drawn from {args.distinct:,} distinct O*NET alternate titles "
              "with Zipf-like frequency (weight 1/rank^1.1), 1% empty. **Heavy repetition** keeps "
              "the run short: each distinct title is encoded once")
    body = (f"## Prediction memory (streaming)\n\n{preamble(config, at_start)}\n"
            "| rows | input | output | wall time | rows/s | peak RSS (child) | limit |\n"
            "|---:|---:|---:|---:|---:|---:|---|\n"
            f"| {args.rows:,} | {sizes[0]:,.0f} MiB | {sizes[1]:,.0f} MiB | {seconds:,.0f} s | "
            f"{args.rows / seconds:,.0f} | {peak:,.0f} MiB | {verdict} {LIMIT_MIB / 1024:.0f} GiB |"
            "\n\nPeak RSS of the `predict.py` process from `getrusage(RUSAGE_CHILDREN)`; the wall "
            "time includes starting Python and loading the model and category cache.\n")
    print(body)
    write_section("predict_memory", body)


if __name__ == "__main__":
    main()
