"""Train one run per training change, then score them all with `bench/accuracy.py` in one process.

    .venv/bin/python bench/ablation.py [--out DIR] [train.py overrides for every run ...]

Each variant is `make train`'s config (`conf/train.yaml`) with one change more than the one
before it, so each row credits one change at equal settings. Meant for a GPU
(`trainer=gpu`): on 2 CPU cores each run takes `make train`'s time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOISE = "data.noise={_target_:occlass.augment.TitleNoise,probability:0.5}"
VARIANTS = {  # name → overrides, each adding one change
    "in-batch category pairs only": ["data.title_pairs=false", "model.hard_negatives_every=null"],
    "+ title-to-title pairs": ["data.title_pairs=true", "model.hard_negatives_every=null"],
    "+ hard negatives (full category matrix)": ["data.title_pairs=true"],
    "+ title noise": ["data.title_pairs=true", NOISE],
    "+ category texts ≤ 128 tokens": ["data.title_pairs=true", NOISE,
                                      "data.max_category_length=128"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "ablation")
    parser.add_argument("--only", nargs="*", help="train only these variants (by position)")
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="seconds: train no further variant after this, score those done")
    args, overrides = parser.parse_known_args()
    done, started = {}, time.time()
    for i, (name, changes) in enumerate(VARIANTS.items()):
        out = args.out / f"v{i}"
        if (args.only and str(i) not in args.only) or time.time() - started > args.budget:
            continue
        if not (out / "run.json").is_file():
            print(f"training {name}: {changes}", flush=True)
            subprocess.run([sys.executable, "train.py", f"hydra.run.dir={out}", "logger=csv",
                            "eval_before=false", *changes, *overrides], cwd=ROOT, check=True)
        done[name] = out
    names = list(done)
    subprocess.run([sys.executable, "bench/accuracy.py", "--run", str(done[names[-1]]),
                    "--section", "accuracy_ablation", "--note",
                    f"Ablation: runs trained by `bench/ablation.py {' '.join(overrides)}`; "
                    f"'this run' is `{names[-1]}`.",
                    "--ablation", *(f"{n}={done[n]}" for n in names)], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
