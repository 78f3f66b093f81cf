"""Accuracy after each epoch of one run (val, test, reported), written to BENCHMARKS.md.

    .venv/bin/python bench/epoch_curve.py --run RUN_DIR [--data-dir data/onet-29.3] [--note TEXT]

The run must keep a checkpoint per epoch: train it with
`callbacks.model_checkpoint.save_top_k=-1` (e.g. `python train.py experiment=cpu-long
callbacks.model_checkpoint.save_top_k=-1`). Each checkpoint's encoder scores the sets as
`bench/accuracy.py` does (category similarity fused with a memory of the training titles), at
the fusion weight that epoch's validation chose (stored in the checkpoint): validation chooses,
test and reported only report.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from pathlib import Path

import torch
from accuracy import Method, accuracy, load_sets, major_groups
from common import load, preamble, write_section

from occlass import runs
from occlass.data.examples import Exemplars
from occlass.data.taxonomy import Taxonomy
from occlass.model.encoder import Encoder
from occlass.model.memory import fuse

SETS = ("val", "test", "reported")


def epoch_checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the run's per-epoch checkpoints (`best-epoch=E-step=S.ckpt`), in order."""
    found = {}
    for path in (run / "checkpoints").glob("*.ckpt"):
        match = re.search(r"epoch=(\d+)", path.name)
        if match:
            found[int(match[1])] = path
    return sorted(found.items())


def epoch_encoder(run: Path, checkpoint: Path, dest: Path) -> float:
    """The run's encoder folder with a checkpoint's encoder weights, written to `dest`; the
    fusion weight that epoch's validation chose."""
    shutil.copytree(run / runs.ENCODER_DIR, dest, dirs_exist_ok=True)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    encoder = Encoder(dest)
    encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in state.items()
                             if k.startswith("encoder.")})
    encoder.save_pretrained(dest)
    return float(state["fusion_weight"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("data/onet-29.3"))
    parser.add_argument("--section", default="epoch_curve")
    parser.add_argument("--note", default="", help="a line on how the run was trained")
    args = parser.parse_args()
    at_start, started = load(), time.time()
    info = runs.RunInfo.load(args.run)
    checkpoints = epoch_checkpoints(args.run)
    if len(checkpoints) < 2:
        raise SystemExit(f"{args.run}: fewer than two per-epoch checkpoints; train with "
                         "callbacks.model_checkpoint.save_top_k=-1")
    taxonomy = Taxonomy.load(args.data_dir, with_tasks=True)
    major = major_groups(taxonomy, args.data_dir)
    train, sets = load_sets(info, args.data_dir, taxonomy)
    train = train.explode("codes")
    memory = Exemplars(list(train["title"]), [int(c) for c in train["codes"]], [])
    lines = ["| after epoch | fusion weight | " + " | ".join(f"{s} top-1" for s in SETS)
             + " | " + " | ".join(f"{s} top-5" for s in SETS) + " |",
             "|---:|---:|" + "---:|" * 2 * len(SETS)]
    for epoch, path in checkpoints:
        with tempfile.TemporaryDirectory() as folder:  # the epoch's own category matrix and memory
            weight = epoch_encoder(args.run, path, Path(folder))
            method = Method(folder, taxonomy, info, memory, weight, "cpu")
        scores = {}
        for s in SETS:
            category, exemplar, _ = method.parts(sets[s][0])
            scores[s] = accuracy(fuse(category, exemplar, weight), sets[s][2], major)
        print(epoch + 1, {s: round(v["top-1"], 4) for s, v in scores.items()}, flush=True)
        lines.append(f"| {epoch + 1} | {weight:g} | "
                     + " | ".join(f"{scores[s]['top-1']:.4f}" for s in SETS) + " | "
                     + " | ".join(f"{scores[s]['top-5']:.4f}" for s in SETS) + " |")
    config = info.config
    sizes = ", ".join(f"{s} {len(sets[s][0]):,}" for s in SETS)
    body = (f"## Accuracy by epoch ({args.section})\n\n"
            + preamble(f"run `{args.run}` (model `{info.base_model}`, "
                       f"{config['trainer']['max_epochs']} epochs, batch "
                       f"{config['data']['batch_size']}, lr {config['optim']['lr']}, precision "
                       f"`{config['trainer']['precision']}`). {args.note}", at_start)
            + f"\nSets: {sizes} titles; the memory holds the training titles only; each epoch "
            "at the fusion weight its validation chose:\n\n" + "\n".join(lines)
            + f"\n\nWall time {time.time() - started:.0f} s.\n")
    write_section(args.section, body)


if __name__ == "__main__":
    main()
