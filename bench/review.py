"""Trust figures of a run, written to BENCHMARKS.md: calibration of `confidence` on the test
split, coverage at the review threshold, and what corrections do without retraining.

    .venv/bin/python bench/review.py --run RUN_DIR [--data-dir data/onet-29.3]

Calibration: the run's `test_predictions.parquet` (scored with the training titles' memory;
`python -m occlass.report RUN --refit` writes it for an older run). Corrections: half of the
test titles (seeded) become corrections (title, first code); then top-1 on near-variants of
them (upper case, inverted word order, abbreviations, as `bench/noisy_copy.py` writes them), and
on the other half with and without the corrections.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import load, preamble, write_section
from noisy_copy import _abbreviate, _can_abbreviate, _can_invert, _invert

from occlass import runs
from occlass.data.examples import split_examples
from occlass.model.calibration import expected_calibration_error
from occlass.predict.loader import load_corrections, load_run, load_taxonomy
from occlass.predict.predictor import Predictor
from occlass.report.analysis import training_memory


def variants(title: str, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, variant) pairs of a title: upper case, inverted order, abbreviated."""
    out = [("case", title.upper())]
    if _can_invert(title):
        out.append(("order", _invert(title, rng)))
    if _can_abbreviate(title):
        out.append(("abbreviation", _abbreviate(title, rng)))
    return out


def top1(predictor: Predictor, titles: list[str], codes: list[set[str]]) -> float:
    predicted = predictor.predict(titles, top_k=1).codes[:, 0]
    return float(np.mean([p in c for p, c in zip(predicted, codes)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("data/onet-29.3"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, help="correction threshold (default: the "
                        "Predictor's)")
    args = parser.parse_args()
    at_start, started = load(), time.time()
    info = runs.RunInfo.load(args.run)
    frame = pd.read_parquet(args.run / runs.PREDICTIONS_FILE)
    correct = np.array([p in set(c) for p, c in zip(frame["pred_code_1"], frame["codes"])])
    confidence = frame["confidence"].to_numpy()
    ece = expected_calibration_error(confidence, correct)
    threshold = info.calibration["review_below"]
    accepted = confidence >= threshold

    taxonomy = load_taxonomy(args.data_dir, info.recipe)
    examples = split_examples(info.config["data"], args.data_dir, taxonomy)
    parts = load_run(args.run, args.data_dir)
    parts.memory = training_memory(parts, examples)
    predictor = Predictor(parts)
    if args.threshold is not None:
        predictor.correction_threshold = args.threshold
    test = examples[examples["split"] == "test"].sample(frac=1, random_state=args.seed)
    codes = [{taxonomy.codes[c] for c in cs} for cs in test["codes"]]
    half = len(test) // 2
    corrected, other = test.iloc[:half], test.iloc[half:]
    rng = random.Random(args.seed)
    near = [(kind, v, codes[i]) for i, t in enumerate(corrected["title"])
            for kind, v in variants(t, rng)]
    before = {kind: top1(predictor, [v for k, v, _ in near if k == kind],
                         [c for k, _, c in near if k == kind]) for kind in ("case", "order",
                                                                            "abbreviation")}
    other_before = top1(predictor, list(other["title"]), codes[half:])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reviewed.csv"
        pd.DataFrame({"title": corrected["title"],
                      "code": [taxonomy.codes[cs[0]] for cs in corrected["codes"]]}).to_csv(
            path, index=False)
        predictor.set_corrections(load_corrections(parts, path))
    after = {kind: top1(predictor, [v for k, v, _ in near if k == kind],
                        [c for k, _, c in near if k == kind]) for kind in before}
    other_after = top1(predictor, list(other["title"]), codes[half:])
    counts = {kind: sum(k == kind for k, _, _ in near) for kind in before}
    all_before = sum(before[k] * counts[k] for k in before) / sum(counts.values())
    all_after = sum(after[k] * counts[k] for k in after) / sum(counts.values())

    rows = "\n".join(f"| {kind} | {counts[kind]:,} | {before[kind]:.4f} | {after[kind]:.4f} |"
                     for kind in before)
    body = (
        "## Confidence, review and corrections\n\n"
        + preamble(f"run `{args.run}` (calibration fitted on validation: temperature "
                   f"{info.calibration['temperature']:.4f}, review below "
                   f"{threshold:.4f}); correction threshold "
                   f"{predictor.correction_threshold}; seed {args.seed}", at_start)
        + f"\nTest split, {len(frame):,} titles, scored with the training titles' memory:\n\n"
        f"- expected calibration error of `confidence` (15 bins): **{ece:.4f}**\n"
        f"- `needs_review=false` (confidence ≥ {threshold:.4f}): **{accepted.mean():.1%}** of "
        f"rows, top-1 {correct[accepted].mean():.4f} on them (target 0.90); "
        f"top-1 {correct[~accepted].mean():.4f} on the rows flagged for review\n\n"
        f"Corrections: {half:,} test titles given as `corrections=` (their first code); top-1 "
        "on near-variants of them, without and with the corrections:\n\n"
        "| variant | titles | without | with corrections |\n|---|---:|---:|---:|\n"
        f"{rows}\n| **all** | {sum(counts.values()):,} | {all_before:.4f} | **{all_after:.4f}** |\n\n"
        f"The other {len(other):,} test titles: top-1 {other_before:.4f} without, "
        f"{other_after:.4f} with the corrections ({100 * (other_after - other_before):+.2f} "
        f"points). Wall time {time.time() - started:.0f} s.\n")
    print(body)
    write_section("review", body)


if __name__ == "__main__":
    main()
