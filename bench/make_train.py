"""`make train`: wall clock and accuracy, written to BENCHMARKS.md (section `make_train`).

    .venv/bin/python bench/make_train.py [--target-minutes 45] [hydra overrides]

Runs `make train` as a user does (venv and data steps included; overrides go to `ARGS`) in a
child process, timing its wall clock and CPU time, then reads the run directory it wrote: the
before/after table of its `report.md`, the validation top-1 after each epoch from its CSV log.
Run it on an otherwise idle machine: the CPU share it reports shows whether it was.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, load, preamble, write_section

from occlass.runs import RUN_FILE, RunInfo

OUTPUTS = ROOT / "outputs"


def run_dirs() -> set[Path]:
    return {path.parent for path in OUTPUTS.glob(f"*/*/{RUN_FILE}")}


def val_accuracy_by_epoch(run: Path) -> list[tuple[str, float]]:
    """(when, validation top-1): before training (step 0) and after each epoch, from the run's
    CSV log (the last version)."""
    logs = sorted((run / "logs").glob("version_*/metrics.csv"))
    if not logs:
        return []
    with logs[-1].open() as f:
        rows = [row for row in csv.DictReader(f) if row.get("val/accuracy")]
    before = [("before training", float(r["val/accuracy"])) for r in rows if r["step"] == "0"]
    after = [r for r in rows if r["step"] != "0"]
    return before + [(f"after epoch {i + 1}", float(r["val/accuracy"]))
                     for i, r in enumerate(after)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target-minutes", type=float, default=45, help="the wall-clock target")
    parser.add_argument("overrides", nargs="*", help="hydra overrides, passed as make ARGS=...")
    args = parser.parse_args()
    at_start, before = load(), run_dirs()
    command = ["make", "train"] + ([f"ARGS={shlex.join(args.overrides)}"] if args.overrides else [])
    began = time.perf_counter()
    child = subprocess.run(command, cwd=ROOT, check=False)
    wall = time.perf_counter() - began
    if child.returncode:
        sys.exit(f"`{shlex.join(command)}` failed with exit status {child.returncode}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    new = sorted(run_dirs() - before)
    if len(new) != 1:
        sys.exit(f"expected one new run under {OUTPUTS}, found {len(new)}")
    run = new[0]
    metrics = json.loads((run / "metrics.json").read_text())
    table = "\n".join(line for line in (run / "report.md").read_text().splitlines()
                      if line.startswith("|"))
    info = RunInfo.load(run)
    config = info.config
    trainer, data, optim = config["trainer"], config["data"], config["optim"]
    epochs = ", ".join(f"{acc:.4f} {when}" for when, acc in val_accuracy_by_epoch(run))
    gain = 100 * (metrics["after"]["accuracy"] - metrics["before"]["accuracy"])
    minutes, seconds = divmod(round(wall), 60)
    verdict = "within" if wall <= 60 * args.target_minutes else "**over**"
    setup = (f"`{shlex.join(command)}`: model `{config['model']['encoder']['name']}`, "
             f"{trainer['max_epochs']} epochs, batch {data['batch_size']}, lr {optim['lr']}, "
             f"precision `{trainer['precision']}`, run `{run.relative_to(ROOT)}`")
    body = (
        f"## `make train`: accuracy and wall clock\n\n"
        f"{preamble(setup, at_start, {f'`{run.relative_to(ROOT)}`': info})}\n"
        f"Test split ({data['test_fraction']:.0%} of titles, never seen in training), scored as "
        "prediction scores (category similarity fused with the training titles' exemplar "
        "memory, weight chosen on validation); before = the untouched model, after = the best "
        f"checkpoint by validation top-1 (validation top-1 {epochs or 'not logged'}):\n\n"
        f"{table}\n\nTop-1 moved **{gain:+.1f} points** over the untouched model with the same "
        "memory fusion.\n\n"
        f"Wall clock: **{minutes} min {seconds:02d} s**, {verdict} the {args.target_minutes:.0f}-"
        f"minute target, venv/data checks, before and after evaluation included. CPU time "
        f"{cpu:,.0f} s, {100 * cpu / wall:.0f}% CPU on average (this machine has 2 cores: "
        f"well under 200% means something else was running or the job was waiting).\n")
    print(body)
    write_section("make_train", body)


if __name__ == "__main__":
    main()
