"""Peak memory of `predict.py` streaming generated CSVs, written to BENCHMARKS.md.

    .venv/bin/python bench/predict_memory.py [--rows 1000000] [--distinct 5000]
        [--distinct-rows 200000] [predict.py overrides]

Two files: `--rows` rows repeating `--distinct` O*NET alternate titles (Zipf-like frequency, 1%
empty), where each distinct title is encoded once; and `--distinct-rows` rows of which almost
every one is distinct (an alternate title with a row number), where every row is encoded and the
memo of encoded inputs fills up. Without overrides it predicts zero-shot with the packaged model
(`run=RUN_DIR` for a run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import ROOT, load, preamble, write_section

from occlass.data.tabular_io import count_rows
from occlass.data.taxonomy import CODE_COLUMN, read_onet_table

LIMIT_MIB = 2048


def generate(path: Path, data_dir: Path, rows: int, distinct: int | None) -> None:
    """`rows` titles drawn from `distinct` alternate titles (Zipf-like), 1% empty; with
    `distinct` None, every title made distinct by its row number."""
    titles = read_onet_table(data_dir / "Alternate Titles.txt", [CODE_COLUMN, "Alternate Title"])
    titles = titles["Alternate Title"].drop_duplicates()
    rng = np.random.default_rng(0)
    if distinct is None:
        column = titles.sample(rows, replace=True, random_state=0).to_numpy().astype(object)
        column = np.array([f"{title} {i}" for i, title in enumerate(column)], dtype=object)
    else:
        titles = titles.sample(distinct, random_state=0).to_numpy()
        weights = 1 / np.arange(1, distinct + 1) ** 1.1
        column = titles[rng.choice(distinct, size=rows, p=weights / weights.sum())]
    column[rng.random(rows) < 0.01] = ""
    pd.DataFrame({"id": np.arange(rows), "title": column}).to_csv(path, index=False)


def measure(args, rows: int, distinct: int | None) -> dict:
    """Generate a file, stream it through predict.py in a child process; its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "titles.csv", Path(tmp) / "predictions.csv"
        generate(source, args.data_dir, rows, distinct)
        command = [sys.executable, str(ROOT / "predict.py"), f"input={source}",
                   f"output={output}", f"data_dir={args.data_dir.resolve()}", *args.overrides]
        start = time.perf_counter()
        child = subprocess.Popen(command)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if status:
            raise SystemExit(f"predict.py failed: {status}")
        written = count_rows(output)
        if written != rows:
            raise SystemExit(f"predict.py wrote {written:,} rows, not {rows:,}")
        return {"rows": rows, "distinct": distinct, "seconds": seconds,
                "peak": usage.ru_maxrss / 1024,  # KiB on Linux
                "input": source.stat().st_size / 2**20, "output": output.stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, default=5_000, help="distinct titles in the file")
    parser.add_argument("--distinct-rows", type=int, default=200_000,
                        help="rows of the file where almost every title is distinct")
    parser.add_argument("--data-dir", type=Path, default=Path("data/onet-29.3"))
    parser.add_argument("overrides", nargs="*", help="predict.py overrides, e.g. run=RUN_DIR")
    args = parser.parse_args()
    at_start = load()
    results = [measure(args, args.rows, args.distinct), measure(args, args.distinct_rows, None)]

    lines = ["| file | rows | input | output | wall time | rows/s | peak RSS (child) | limit |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        kind = (f"{r['distinct']:,} distinct titles, repeated" if r["distinct"]
                else "almost every title distinct")
        verdict = "**within**" if r["peak"] < LIMIT_MIB else "**over**"
        lines.append(f"| {kind} | {r['rows']:,} | {r['input']:,.0f} MiB | "
                     f"{r['output']:,.0f} MiB | {r['seconds']:,.0f} s | "
                     f"{r['rows'] / r['seconds']:,.0f} | {r['peak']:,.0f} MiB | "
                     f"{verdict} {LIMIT_MIB / 1024:.0f} GiB |")
    config = (f"`predict.py` ({' '.join(args.overrides) or 'zero-shot, packaged all-MiniLM-L6-v2'}"
              ", default chunk_rows, top_k, batch size and memo size) on two generated CSVs of an "
              "id and a title, 1% empty: titles drawn from O*NET alternate titles with Zipf-like "
              "frequency (weight 1/rank^1.1), where each distinct title is encoded once; and "
              "alternate titles each made distinct by its row number (\"Nurse 17\"), where every "
              "row is encoded")
    body = (f"## Prediction memory (streaming)\n\n{preamble(config, at_start)}\n"
            + "\n".join(lines) +
            "\n\nPeak RSS of each `predict.py` child process (`wait4`); the wall time includes "
            "starting Python and loading the model and category cache.\n")
    print(body)
    write_section("predict_memory", body)


if __name__ == "__main__":
    main()
