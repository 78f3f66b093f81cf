"""What a run is measured by after training, with the memory of its training titles only: the
description weight, the calibrator and the confidence model (all chosen on validation) and the
test split's error analysis. Training runs it at export; `python -m occlass.report RUN_DIR
--refit` on a run."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from occlass import runs
from occlass.data.augment import TitleNoise
from occlass.data.examples import exemplars_of
from occlass.data.postings import pseudo_postings
from occlass.data.soc import LEVELS, Level, load_levels
from occlass.data.taxonomy import Taxonomy
from occlass.model.calibration import Calibrator, expected_calibration_error, fit_calibrator
from occlass.model.confidence import (
    DEFAULT_TARGET,
    ConfidenceModel,
    Signals,
    choose_level,
    fit_confidence,
    level_correct,
    level_groups,
    signals,
)
from occlass.model.memory import ExemplarMemory, build_memory, fuse
from occlass.predict.loader import DESCRIPTION_WEIGHT, RunParts
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
        log.warning("no validation title has task statements for a pseudo-ad: no description "
                    "weight chosen (prediction weighs descriptions %s, its default)",
                    DESCRIPTION_WEIGHT)
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


@dataclass
class Kind:
    """Rows of one kind of input scored as the Predictor scores them: their signals, fused
    scores, per-level correctness and each row's source title (rows of one title share it)."""

    signals: Signals
    scores: torch.Tensor
    correct: torch.Tensor
    title: np.ndarray


def score_kind(predictor: Predictor, titles: list[str], codes: list[list[int]],
               temperature: float, levels: list[Level], descriptions: list[str] | None = None,
               description_weight: float = 0.0) -> Kind:
    """Titles (with descriptions, late-fused at `description_weight`) scored by the predictor's
    encoder and memory: what the confidence model is fitted and measured on."""
    category, exemplar = predictor.similarities(titles, predictor.max_input_length)
    scores = category if exemplar is None else fuse(category, exemplar, predictor.fusion_weight)
    described = None
    if descriptions is not None:
        described = predictor.similarities(descriptions, predictor.max_description_length,
                                           memory=False)[0]
        scores = scores + description_weight * described
    ids = predictor.tokenizer(titles, truncation=True,
                              max_length=predictor.max_input_length)["input_ids"]
    groups = level_groups(levels)
    sig = signals(scores, category, exemplar, described, ids, predictor.tokenizer.unk_token_id,
                  temperature, groups)
    correct = level_correct(valid_codes(codes, scores.shape[1]), sig.answer, groups)
    return Kind(sig, scores, correct, np.arange(len(titles)))


def validation_kinds(predictor: Predictor, val, taxonomy: Taxonomy, n_tasks: int,
                     temperature: float, levels: list[Level], description_weight: float | None,
                     limit: int = 2000) -> dict[str, Kind]:
    """The kinds of input the confidence model is fitted on, from validation titles: as they
    are, with training-style noise (seeded), and as pseudo job ads (with a description weight)."""
    titles, codes = list(val["title"]), list(val["codes"])
    rng = random.Random(0)
    noise = TitleNoise(probability=1.0)
    kinds = {"clean": score_kind(predictor, titles, codes, temperature, levels),
             "noisy": score_kind(predictor, [noise(t, rng) for t in titles], codes,
                                 temperature, levels)}
    if description_weight is not None:
        head = val.head(limit)
        ads = pseudo_postings(list(head["title"]), [taxonomy.codes[c[0]] for c in head["codes"]],
                              taxonomy.tasks, seed=0, category_n_tasks=n_tasks)
        keep = [i for i, ad in enumerate(ads) if ad]
        if keep:
            kind = score_kind(predictor, [titles[i] for i in keep], [codes[i] for i in keep],
                              temperature, levels, [ads[i] for i in keep], description_weight)
            kind.title = np.array(keep)
            kinds["ads"] = kind
    return kinds


def fit_confidence_model(kinds: dict[str, Kind], temperature: float,
                         target: float = DEFAULT_TARGET) -> ConfidenceModel:
    """The confidence model of the kinds together, cross-fitted by title (a title's variants
    share a fold); logs, per kind, on held-out folds: the share coded, how many of them are
    right, and the calibration error of the top-1 confidence."""
    correct = torch.cat([k.correct for k in kinds.values()]).numpy()
    model, held_out = fit_confidence(
        Signals.concat([k.signals for k in kinds.values()]), torch.from_numpy(correct),
        np.concatenate([k.title for k in kinds.values()]), temperature, target)
    level = choose_level(held_out, model.thresholds_for())
    right = correct[np.arange(len(level)), level.clip(0)] & (level >= 0)
    start = 0
    for name, kind in kinds.items():
        rows = slice(start, start + len(kind.title))
        start = rows.stop
        coded = level[rows] >= 0
        log.info("confidence model, held-out %s validation rows (%d): %.1f%% coded at precision "
                 "%s (%s), %.3f right; ECE of the top-1 confidence %.3f", name, len(kind.title),
                 100 * coded.mean(), target, ", ".join(
                     f"{lv} {100 * (level[rows] == j).mean():.1f}%" for j, lv in enumerate(LEVELS)),
                 right[rows][coded].mean() if coded.any() else float("nan"),
                 expected_calibration_error(held_out[rows, 0], correct[rows, 0]))
    return model


def test_predictions(test, scores: torch.Tensor, taxonomy: Taxonomy, confidence: np.ndarray,
                     k: int = 5):
    """One row per test title: title, its codes, the top-k codes and scores, the confidence."""
    top, index = scores.topk(k, dim=1)
    frame = pd.DataFrame({"title": list(test["title"]),
                          "codes": [[taxonomy.codes[c] for c in cs] for cs in test["codes"]]})
    for j in range(k):
        frame[f"pred_code_{j + 1}"] = [taxonomy.codes[i] for i in index[:, j].tolist()]
        frame[f"pred_score_{j + 1}"] = top[:, j].numpy()
    frame["confidence"] = confidence
    return frame


def analyse(out: Path, predictor: Predictor, examples: pd.DataFrame, data_dir: str | Path,
            n_tasks: int, target: float = DEFAULT_TARGET
            ) -> tuple[float | None, Calibrator | None, ConfidenceModel | None]:
    """With a predictor whose memory holds the training titles only (as users' titles meet
    it): choose the description weight and fit the calibrator and the confidence model (for
    `target` precision by default) on validation, and write the error analysis of the test split
    (`test_predictions.parquet`, error_analysis.md and its plots)."""
    val, test = (examples[examples["split"] == s] for s in ("val", "test"))
    if val.empty or predictor.memory is None:
        return None, None, None
    taxonomy = Taxonomy.load(data_dir, with_tasks=True)
    description_weight = choose_description_weight(predictor, val, taxonomy, n_tasks)
    calibrator = fit_calibrator(fused_scores(predictor, val),
                                valid_codes(list(val["codes"]), len(taxonomy)))
    log.info("calibration: temperature %.4f, review below confidence %.4f",
             calibrator.temperature, calibrator.review_below)
    levels = load_levels(taxonomy, data_dir)
    model = fit_confidence_model(
        validation_kinds(predictor, val, taxonomy, n_tasks, calibrator.temperature, levels,
                         description_weight), calibrator.temperature, target)
    if not test.empty:
        kind = score_kind(predictor, list(test["title"]), list(test["codes"]),
                          calibrator.temperature, levels)
        frame = test_predictions(test, kind.scores, taxonomy,
                                 model.probabilities(kind.signals)[:, 0].numpy())
        write_atomic(out / runs.PREDICTIONS_FILE, lambda f: frame.to_parquet(f, index=False))
        write_error_report(out, frame, taxonomy, load_related(data_dir))
    return description_weight, calibrator, model
