"""Train one run per training change, then score them all with `bench/accuracy.py` in one process.

    .venv/bin/python bench/ablation.py [--out DIR] [train.py overrides for every run ...]

Each variant is `make train`'s config (`conf/train.yaml`) with the training switches set as its
name says (one change against the row before it), so each row credits one change at equal
settings. Meant for a GPU
(`trainer=gpu`): on 2 CPU cores each run takes `make train`'s time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOISE = "data.noise={_target_:occlass.data.augment.TitleNoise,probability:0.5}"
OFF = ["data.title_pairs=false", "data.noise=null", "model.hard_negatives_every=null",
       "data.max_category_length=64"]
VARIANTS = {  # name → overrides (each spells out every switch, whatever the defaults)
    "in-batch category pairs only": OFF,
    "+ title-to-title pairs": [*OFF, "data.title_pairs=true"],
    "+ hard negatives (full category matrix)": [*OFF, "data.title_pairs=true",
                                                "model.hard_negatives_every=50"],
    "title pairs + title noise (no hard negatives)": [*OFF, "data.title_pairs=true", NOISE],
    "+ category texts ≤ 48 tokens (make train's config)": [*OFF, "data.title_pairs=true", NOISE,
                                                           "data.max_category_length=48"],
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
                    (f"Ablation: runs trained by `bench/ablation.py {' '.join(overrides)}`; "
                     f"'this run' is `{names[-1]}`."),
                    "--ablation", *(f"{n}={done[n]}" for n in names)], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
