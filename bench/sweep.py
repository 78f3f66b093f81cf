"""A small real sweep on CPU, summarised into BENCHMARKS.md (section `sweep`).

    .venv/bin/python bench/sweep.py [--train-batches 20] [--eval-examples 500] [hydra overrides]

`python train.py -m` over a 3 × 2 grid of learning rate and temperature on the O*NET data, each
run on a reduced budget (one epoch of `--train-batches` batches of 32 pairs, validation and test
capped at `--eval-examples` titles, no "before" evaluation), then `occlass.train.sweeps.summarize`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time

from common import ROOT, load, preamble, write_section

from occlass.train.sweeps import summarize

GRID = ("optim.lr=1e-5,3e-5,1e-4", "loss.temperature=0.03,0.05")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-batches", type=int, default=20, help="training batches per run")
    parser.add_argument("--eval-examples", type=int, default=500, help="val/test titles per run")
    parser.add_argument("overrides", nargs="*", help="more hydra overrides for every run")
    args = parser.parse_args()
    at_start = load()
    sweep_dir = ROOT / "multirun" / "bench-sweep" / f"{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"
    budget = ("trainer.max_epochs=1", f"trainer.limit_train_batches={args.train_batches}",
              "data.batch_size=32", f"data.limit_eval_examples={args.eval_examples}",
              "eval_before=false", "trainer.enable_progress_bar=false")
    command = [sys.executable, "train.py", "-m", f"hydra.sweep.dir={sweep_dir}",
               f"paths.root_dir={ROOT}", *GRID, *budget, *args.overrides]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    table = summarize(sweep_dir)
    config = (f"grid {' × '.join(f'`{g}`' for g in GRID)}; budget per run "
              f"{' '.join(f'`{b}`' for b in budget)}"
              + (f"; overrides {' '.join(f'`{o}`' for o in args.overrides)}"
                 if args.overrides else "") + "; otherwise the default config (`conf/train.yaml`)")
    write_section("sweep", f"## Sweep (grid, reduced budget)\n\n{preamble(config, at_start)}\n{table}\n\n"
                  f"Wall time {wall / 60:.1f} min for the whole sweep, runs one after another in "
                  f"one process (Hydra's basic launcher); CSV: "
                  f"`{os.path.relpath(sweep_dir / 'summary.csv', ROOT)}`. With this budget the "
                  "ranking says which settings learn fastest, not which end best.")


if __name__ == "__main__":
    main()
