"""Sweep summaries: `python -m occlass.train.sweeps summarize DIR` tabulates a Hydra multirun folder.

Each job folder of DIR (DIR/0, DIR/1, ...) holds `.hydra/overrides.yaml` and, once its run has
finished, `metrics.json` (a cross-validated job, `cv.folds=K`: `cv_summary.json`, whose means it
shows). Writes DIR/summary.csv and DIR/summary.md, best value of the optimised metric first (runs
without either file are listed as failed, last), and prints the markdown.

`summarize_folds` writes the cross-validation summary of `python train.py cv.folds=K`: each
fold's metrics and their mean ± std, from the same table.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from occlass.errors import OcclassError
from occlass.runs import METRICS_FILE, write_atomic, write_json

OBJECTIVE = "objective"
# Test metrics shown beside the objective: top-1, every top-k the runs computed, F1.
TEST_METRICS = re.compile(r"accuracy|top\d+_accuracy|f1_weighted|f1_macro")
EVERY_METRIC = re.compile(r".+")
CV_SUMMARY = "cv_summary"  # RUN_DIR/cv_summary.md and .json of a cross-validated run


def _natural(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def hydra_jobs(sweep_dir: Path) -> dict[Path, dict[str, str]]:
    """The job folders of a Hydra multirun (relative to it), in order, with their overrides."""
    jobs = sorted((p.parent.parent.relative_to(sweep_dir)
                   for p in sweep_dir.glob("**/.hydra/overrides.yaml")), key=_natural)
    if not jobs:
        raise OcclassError(f"{sweep_dir}: no runs found (no */.hydra/overrides.yaml); pass the "
                           "folder of a `python train.py -m ...` sweep, e.g. multirun/DATE/TIME")
    return {job: dict(item.partition("=")[::2] for item in
                      OmegaConf.load(sweep_dir / job / ".hydra" / "overrides.yaml"))
            for job in jobs}


def _results(job_dir: Path) -> dict | None:
    """metrics.json's objective and test metrics after fine-tuning; for a cross-validated job,
    their means over its folds (cv_summary.json); None when the job has not finished."""
    if (job_dir / METRICS_FILE).is_file():
        metrics = json.loads((job_dir / METRICS_FILE).read_text())
        return {"objective": metrics[OBJECTIVE], "after": metrics["after"]}
    if (job_dir / f"{CV_SUMMARY}.json").is_file():
        summary = json.loads((job_dir / f"{CV_SUMMARY}.json").read_text())
        mean = summary["mean"]
        return {"objective": {"metric": summary["metric"], "value": mean[OBJECTIVE]},
                "after": {c.removeprefix("test_"): v for c, v in mean.items()
                          if c.startswith("test_")}}
    return None


def collect(sweep_dir: str | Path, jobs: Mapping[Path, dict[str, str]] | None = None,
            metrics: re.Pattern = TEST_METRICS) -> pd.DataFrame:
    """One row per job: run (its folder), status, one column per override, objective, test
    metrics after fine-tuning (those named by `metrics`); sorted by the objective, best first
    (the frame's index keeps the jobs' order). `jobs`: folder → overrides, by default the
    Hydra jobs of `sweep_dir`."""
    sweep_dir = Path(sweep_dir)
    jobs = hydra_jobs(sweep_dir) if jobs is None else jobs
    rows, keys, metrics_seen, objectives = [], {}, {}, set()
    for job, overrides in jobs.items():
        keys.update(dict.fromkeys(overrides))
        row = {"run": Path(job).as_posix(), "status": "failed", **overrides}
        results = _results(sweep_dir / job)
        if results is not None:
            objectives.add(results[OBJECTIVE]["metric"])
            tests = {f"test_{m}": v for m, v in (results["after"] or {}).items()
                     if metrics.fullmatch(m)}
            metrics_seen.update(dict.fromkeys(tests))
            row.update({"status": "ok", OBJECTIVE: results[OBJECTIVE]["value"], **tests})
        rows.append(row)
    if len(objectives) > 1:
        raise OcclassError(f"{sweep_dir}: runs optimised different metrics "
                           f"({', '.join(sorted(objectives))}); summarise them separately")
    frame = pd.DataFrame(rows, columns=["run", "status", *keys, OBJECTIVE, *metrics_seen])
    frame.attrs["objective"] = next(iter(objectives), "val/accuracy")
    return frame.sort_values(OBJECTIVE, ascending=False, na_position="last", kind="stable")


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (numpy's: over the runs, ddof=0) of each metric column over
    the finished runs; one row per metric column, in `labels` order."""
    values = frame.loc[frame["status"] == "ok", list(labels(frame))].astype(float)
    return pd.DataFrame({"mean": values.mean(), "std": values.std(ddof=0),
                         "runs": values.count()})


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


def summarize_folds(run_dir: str | Path, folds: Sequence[str]) -> str:
    """Write RUN_DIR/cv_summary.md and cv_summary.json for the cross-validation runs `folds`
    (subfolders of RUN_DIR): every metric of each fold and its mean ± std over the folds.
    Returns the markdown."""
    run_dir = Path(run_dir)
    frame = collect(run_dir, {Path(f): {} for f in folds}, EVERY_METRIC).sort_index()
    stats, header = aggregate(frame), labels(frame)
    failed = int((frame["status"] == "failed").sum())
    lines = [(f"Cross-validation `{run_dir}`: {len(frame)} folds ({failed} failed), grouped "
              f"by title; mean ± std (numpy's, ddof=0) over the folds of the best "
              f"{frame.attrs['objective']} and of every test metric after fine-tuning."), "",
             "| metric | " + " | ".join(frame["run"]) + " | mean ± std |",
             "|---|" + "---:|" * (len(frame) + 1)]
    for column, label in header.items():
        mean, std = stats.loc[column, "mean"], stats.loc[column, "std"]
        spread = "–" if pd.isna(mean) else f"{mean:.4f} ± {std:.4f}"
        lines.append(f"| {label} | " + " | ".join(_cell(v, True) for v in frame[column])
                     + f" | {spread} |")
    text = "\n".join(lines)

    def plain(value) -> float | None:  # JSON has no NaN
        return None if pd.isna(value) else float(value)

    write_json(run_dir / f"{CV_SUMMARY}.json", {
        "metric": frame.attrs["objective"], "folds": list(frame["run"]),
        "failed": [r for r, s in zip(frame["run"], frame["status"]) if s == "failed"],
        "mean": {c: plain(stats.loc[c, "mean"]) for c in header},
        "std": {c: plain(stats.loc[c, "std"]) for c in header},
        "runs": {row["run"]: {c: plain(row[c]) for c in header} for _, row in frame.iterrows()},
    })
    write_atomic(run_dir / f"{CV_SUMMARY}.md", text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m occlass.train.sweeps", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("summarize", help="tabulate a multirun folder")
    command.add_argument("dir", type=Path, help="the sweep folder, e.g. multirun/DATE/TIME")
    args = parser.parse_args(argv)
    print(summarize(args.dir))


if __name__ == "__main__":
    from occlass.cli import run_cli

    run_cli(main)
