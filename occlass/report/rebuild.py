"""Rebuild a run's error analysis (error_analysis.md and its plots) from the test predictions it
saved: `python -m occlass.report RUN_DIR [--data-dir DIR] [--refit]` (--refit, or a run without
saved predictions: measure the run again first, see `occlass.report.analysis`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd

from occlass import runs
from occlass.data.examples import split_examples
from occlass.errors import OcclassError
from occlass.model.confidence import DEFAULT_TARGET
from occlass.predict.loader import load_run, load_taxonomy
from occlass.predict.predictor import Predictor
from occlass.report.analysis import analyse
from occlass.report.error_report import load_related, write_error_report


def refit(run_dir: Path, data_dir: Path) -> runs.RunInfo:
    """Measure the run again from its encoder and memory (less the evaluation titles,
    `occlass.report.analysis.lookup_memory`): the description weight, calibrator and
    confidence model (written into run.json with the version of the code that refit it) and the
    test predictions."""
    code = runs.code_version()
    info = runs.RunInfo.load(run_dir)
    taxonomy = load_taxonomy(data_dir, info.recipe)
    examples = split_examples(info.config["data"], data_dir, taxonomy)
    predictor = Predictor(load_run(run_dir, data_dir))
    weight, calibrator, model = analyse(Path(run_dir), predictor, examples, data_dir,
                                        info.n_tasks,
                                        info.config.get("target_precision", DEFAULT_TARGET))
    info = dataclasses.replace(info, description_weight=weight,
                               calibration=None if calibrator is None else calibrator.to_dict(),
                               confidence=None if model is None else model.to_dict(),
                               refits=[*info.refits, code])
    info.save(run_dir)
    return info


def rebuild(run_dir: Path, data_dir: Path | None = None, again: bool = False) -> list[Path]:
    """Write the run's error analysis again from its test predictions (first measured again
    with `again`, or when it has none: runs written before there were any); the O*NET release
    defaults to the run's own."""
    info = runs.RunInfo.load(run_dir)
    data_dir = data_dir or Path(info.config.get("paths", {}).get("data_dir", "data/onet-29.3"))
    taxonomy = load_taxonomy(data_dir, info.recipe, option="--data-dir DIR")
    if taxonomy.fingerprint != info.taxonomy_fingerprint:
        raise OcclassError(f"{data_dir} holds another taxonomy than {run_dir} was trained on; "
                           "give --data-dir")
    path = Path(run_dir) / runs.PREDICTIONS_FILE
    if again or not path.is_file():
        if info.fusion_weight is None:
            raise OcclassError(f"{run_dir}: trained without the exemplar memory; nothing to "
                               "analyse")
        refit(Path(run_dir), data_dir)
    frame = pd.read_parquet(path)
    frame["codes"] = frame["codes"].map(list)
    return write_error_report(Path(run_dir), frame, taxonomy, load_related(data_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--refit", action="store_true",
                        help="measure again: description weight, calibrator, confidence model, "
                        "test predictions")
    args = parser.parse_args()
    for path in rebuild(args.run_dir, args.data_dir, args.refit):
        print(path)

