"""Sweep summaries: `python -m occlass.sweeps summarize DIR` tabulates a Hydra multirun folder.

Each job folder of DIR (DIR/0, DIR/1, ...) holds `.hydra/overrides.yaml` and, once its run has
finished, `metrics.json`. Writes DIR/summary.csv and DIR/summary.md, best value of the optimised
metric first (runs without metrics.json are listed as failed, last), and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from occlass.errors import OcclassError
from occlass.runs import METRICS_FILE, write_atomic

OBJECTIVE = "objective"
# Test metrics shown beside the objective: top-1, every top-k the runs computed, F1.
TEST_METRICS = re.compile(r"accuracy|top\d+_accuracy|f1_weighted|f1_macro")


def _natural(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def collect(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job: run (its folder), status, one column per override, objective, test
    metrics after fine-tuning; sorted by the objective, best first."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted((p.parent.parent.relative_to(sweep_dir)
                   for p in sweep_dir.glob("**/.hydra/overrides.yaml")), key=_natural)
    if not jobs:
        raise OcclassError(f"{sweep_dir}: no runs found (no */.hydra/overrides.yaml); pass the "
                           "folder of a `python train.py -m ...` sweep, e.g. multirun/DATE/TIME")
    rows, keys, metrics_seen, objectives = [], {}, {}, set()
    for job in jobs:
        overrides = dict(item.partition("=")[::2] for item in
                         OmegaConf.load(sweep_dir / job / ".hydra" / "overrides.yaml"))
        keys.update(dict.fromkeys(overrides))
        row = {"run": job.as_posix(), "status": "failed", **overrides}
        metrics_file = sweep_dir / job / METRICS_FILE
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            objectives.add(metrics[OBJECTIVE]["metric"])
            tests = {f"test_{m}": v for m, v in metrics["after"].items()
                     if TEST_METRICS.fullmatch(m)}
            metrics_seen.update(dict.fromkeys(tests))
            row.update({"status": "ok", OBJECTIVE: metrics[OBJECTIVE]["value"], **tests})
        rows.append(row)
    if len(objectives) > 1:
        raise OcclassError(f"{sweep_dir}: runs optimised different metrics "
                           f"({', '.join(sorted(objectives))}); summarise them separately")
    frame = pd.DataFrame(rows, columns=["run", "status", *keys, OBJECTIVE, *metrics_seen])
    frame.attrs["objective"] = next(iter(objectives), "val/accuracy")
    return frame.sort_values(OBJECTIVE, ascending=False, na_position="last", kind="stable")


def labels(frame: pd.DataFrame) -> dict[str, str]:
    """Column → header of the metric columns: the objective, then the test metrics."""
    return {OBJECTIVE: f"best {frame.attrs['objective']}",
            **{c: c.replace("_", " ", 1) for c in frame.columns if c.startswith("test_")}}


def _cell(value, metric: bool) -> str:
    if pd.isna(value):
        return "–"
    if metric:
        return f"{value:.4f}"
    try:  # a swept float such as optim.lr=3.574712922600245e-05: 4 significant digits
        return value if float(value).is_integer() else f"{float(value):.4g}"
    except ValueError:
        return str(value)


def markdown(frame: pd.DataFrame, title: str) -> str:
    """The table with the overrides that vary between runs; those shared by all in one line."""
    header = labels(frame)
    overrides = [c for c in frame.columns if c not in ("run", "status", *header)]
    shared = [c for c in overrides if frame[c].notna().all() and frame[c].nunique() == 1]
    varying = [c for c in overrides if c not in shared]
    failed = int((frame["status"] == "failed").sum())
    lines = [(f"{title}: {len(frame)} runs ({failed} failed), best "
             f"{frame.attrs['objective']} first."), ""]
    if shared:
        lines += ["Overrides of every run: " + " ".join(f"`{c}={frame[c].iloc[0]}`"
                                                       for c in shared), ""]
    columns = ["run", "status", *varying, *header]
    lines += ["| " + " | ".join(header.get(c, c) for c in columns) + " |",
              "|" + "|".join("---:" if c in header else "---" for c in columns) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_cell(row[c], c in header) for c in columns) + " |")
    return "\n".join(lines)


def summarize(sweep_dir: str | Path) -> str:
    """Write DIR/summary.csv and DIR/summary.md; returns the markdown."""
    sweep_dir = Path(sweep_dir)
    frame = collect(sweep_dir)
    text = markdown(frame, f"Sweep `{sweep_dir}`")
    write_atomic(sweep_dir / "summary.csv", frame.to_csv(index=False))
    write_atomic(sweep_dir / "summary.md", text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m occlass.sweeps", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("summarize", help="tabulate a multirun folder")
    command.add_argument("dir", type=Path, help="the sweep folder, e.g. multirun/DATE/TIME")
    args = parser.parse_args(argv)
    print(summarize(args.dir))


if __name__ == "__main__":
    from occlass.cli import run_cli

    run_cli(main)
