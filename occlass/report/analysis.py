"""What a run is measured by after training, with the memory of its training titles only: the
description weight and the calibrator (both chosen on validation) and the test split's error
analysis. Training runs it at export; `python -m occlass.report RUN_DIR --refit` on a run."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from occlass import runs
from occlass.data.examples import exemplars_of
from occlass.data.postings import pseudo_postings
from occlass.data.taxonomy import Taxonomy
from occlass.model.calibration import Calibrator, fit_calibrator
from occlass.model.memory import ExemplarMemory, build_memory, fuse
from occlass.predict.loader import RunParts
from occlass.predict.predictor import Predictor
from occlass.report.error_report import load_related, write_error_report
from occlass.runs import write_atomic

log = logging.getLogger(__name__)
DESCRIPTION_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def fused_scores(predictor: Predictor, split) -> torch.Tensor:
    """(N, n_codes) fused title scores of a split's titles."""
    category, exemplar = predictor.similarities(list(split["title"]), predictor.max_input_length)
    return category if exemplar is None else fuse(category, exemplar, predictor.fusion_weight)


def valid_codes(codes: list[list[int]], n_codes: int) -> torch.Tensor:
    valid = torch.zeros(len(codes), n_codes, dtype=torch.bool)
    for row, cs in enumerate(codes):
        valid[row, cs] = True
    return valid


def training_memory(parts: RunParts, examples: pd.DataFrame) -> ExemplarMemory:
    """The run's encoder over the training titles only: the memory evaluation uses."""
    exemplars = exemplars_of(examples, ("train",), parts.tokenizer, parts.max_input_length)
    return build_memory(parts.encoder, exemplars, len(parts.taxonomy),
                        parts.tokenizer.pad_token_id, {})


def choose_description_weight(predictor: Predictor, val, taxonomy: Taxonomy, n_tasks: int,
                              limit: int = 2000) -> float | None:
    """The weight of a description's category similarity (late fusion) that gives the best
    top-1 on pseudo job ads of validation titles (task statements that training never uses, in
    ad boilerplate: `occlass.data.postings`)."""
    val = val.head(limit)
    ads = pseudo_postings(list(val["title"]), [taxonomy.codes[c[0]] for c in val["codes"]],
                          taxonomy.tasks, seed=0, category_n_tasks=n_tasks)
    keep = [i for i, ad in enumerate(ads) if ad]
    if not keep:
        return None
    title, description = predictor.score_parts([val["title"].iloc[i] for i in keep],
                                               [ads[i] for i in keep])
    codes = [val["codes"].iloc[i] for i in keep]
    hits = [sum(int((title[i] + w * description[i]).argmax()) in c for i, c in enumerate(codes))
            for w in DESCRIPTION_GRID]
    weight = DESCRIPTION_GRID[int(np.argmax(hits))]
    log.info("description weight %s (top-1 on %d validation pseudo-ads: %s)", weight, len(keep),
             ", ".join(f"{w}: {h / len(keep):.3f}" for w, h in zip(DESCRIPTION_GRID, hits)))
    return weight


def test_predictions(predictor: Predictor, test, scores: torch.Tensor, taxonomy: Taxonomy,
                     calibrator: Calibrator | None, k: int = 5):
    """One row per test title: title, its codes, the top-k codes and scores, the confidence."""
    top, index = scores.topk(k, dim=1)
    frame = pd.DataFrame({"title": list(test["title"]),
                          "codes": [[taxonomy.codes[c] for c in cs] for cs in test["codes"]]})
    for j in range(k):
        frame[f"pred_code_{j + 1}"] = [taxonomy.codes[i] for i in index[:, j].tolist()]
        frame[f"pred_score_{j + 1}"] = top[:, j].numpy()
    frame["confidence"] = (calibrator.confidence(scores).numpy() if calibrator is not None
                           else np.nan)
    return frame


def analyse(out: Path, predictor: Predictor, examples: pd.DataFrame, data_dir: str | Path,
            n_tasks: int) -> tuple[float | None, Calibrator | None]:
    """With a predictor whose memory holds the training titles only (as users' titles meet
    it): choose the description weight and fit the calibrator on validation, and write the error
    analysis of the test split (`test_predictions.parquet`, error_analysis.md and its plots)."""
    val, test = (examples[examples["split"] == s] for s in ("val", "test"))
    if val.empty or predictor.memory is None:
        return None, None
    taxonomy = Taxonomy.load(data_dir, with_tasks=True)
    description_weight = choose_description_weight(predictor, val, taxonomy, n_tasks)
    calibrator = fit_calibrator(fused_scores(predictor, val),
                                valid_codes(list(val["codes"]), len(taxonomy)))
    log.info("calibration: temperature %.4f, review below confidence %.4f",
             calibrator.temperature, calibrator.review_below)
    if not test.empty:
        frame = test_predictions(predictor, test, fused_scores(predictor, test), taxonomy,
                                 calibrator)
        write_atomic(out / runs.PREDICTIONS_FILE, lambda f: frame.to_parquet(f, index=False))
        write_error_report(out, frame, taxonomy, load_related(data_dir))
    return description_weight, calibrator
