"""What a run is measured by after training: the description weight, the calibrator and the
confidence model (all fitted on validation and the reported titles' fitting half) and the test
split's error analysis. Training runs it at export; `python -m occlass.report RUN_DIR --refit`
on a run.

Every title is looked up in the served memory (every split's titles) less the evaluation titles
(the test split and the reported titles' evaluation half), and a fitted row leaves its own group
of surface forms out (`lookup_memory`): so a fitted row meets a memory as a new title meets the
served one, and no evaluated title is ever in it."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from occlass import runs
from occlass.data.examples import exemplars_of, reported_for_fitting
from occlass.data.fit_noise import fit_noise
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


def groups_of(frame: pd.DataFrame) -> list[str]:
    """Each example's group of surface forms (its title where examples carry no groups)."""
    return list(frame["group"] if "group" in frame else frame["title"])


def fused_scores(predictor: Predictor, split) -> torch.Tensor:
    """(N, n_codes) fused title scores of a split's titles, each leaving its group out."""
    category, exemplar = predictor.similarities(list(split["title"]), predictor.max_input_length,
                                                leave_out=groups_of(split))
    return category if exemplar is None else fuse(category, exemplar, predictor.fusion_weight)


def valid_codes(codes: list[list[int]], n_codes: int) -> torch.Tensor:
    valid = torch.zeros(len(codes), n_codes, dtype=torch.bool)
    for row, cs in enumerate(codes):
        valid[row, cs] = True
    return valid


def training_memory(parts: RunParts, examples: pd.DataFrame) -> ExemplarMemory:
    """The run's encoder over the training titles only (as the accuracy bench measures)."""
    exemplars = exemplars_of(examples, ("train",), parts.tokenizer, parts.max_input_length)
    return build_memory(parts.encoder, exemplars, len(parts.taxonomy),
                        parts.tokenizer.pad_token_id, {})


def evaluated(examples: pd.DataFrame) -> pd.Series:
    """The evaluation titles: the test split and the reported titles' evaluation half."""
    return (examples["split"] == "test") | (
        (examples["split"] == "reported") & ~reported_for_fitting(examples))


def lookup_memory(served: ExemplarMemory, examples: pd.DataFrame) -> ExemplarMemory:
    """The served memory's exemplars that are titles of `examples` outside the evaluation
    titles, each with its group: what fitting and evaluation look titles up in."""
    group = dict(zip(examples["title"], groups_of(examples)))
    held = set(np.asarray(groups_of(examples), dtype=object)[evaluated(examples).to_numpy()])
    groups = [group.get(t) for t in served.titles]
    keep = np.array([g is not None and g not in held for g in groups], dtype=bool)
    memory = served.subset(keep)
    memory.groups = [g for g, k in zip(groups, keep) if k]
    return memory


def choose_description_weight(predictor: Predictor, val, taxonomy: Taxonomy, n_tasks: int,
                              limit: int = 2000) -> float | None:
    """The weight of a description's category similarity (late fusion) that gives the best
    top-1 on pseudo job ads of validation titles (the fitting ads' tasks and templates, which
    training never uses: `occlass.data.postings`)."""
    val = val.head(limit)
    ads = pseudo_postings(list(val["title"]), [taxonomy.codes[c[0]] for c in val["codes"]],
                          taxonomy.tasks, seed=0, category_n_tasks=n_tasks, fitting=True)
    keep = [i for i, ad in enumerate(ads) if ad]
    if not keep:
        log.warning("no validation title has task statements for a pseudo-ad: no description "
                    "weight chosen (prediction weighs descriptions %s, its default)",
                    DESCRIPTION_WEIGHT)
        return None
    groups = groups_of(val)
    title, description = predictor.score_parts([val["title"].iloc[i] for i in keep],
                                               [ads[i] for i in keep],
                                               [groups[i] for i in keep])
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
    scores, per-level correctness and each row's group (rows of one title share it)."""

    signals: Signals
    scores: torch.Tensor
    correct: torch.Tensor
    group: np.ndarray


def score_kind(predictor: Predictor, titles: list[str], codes: list[list[int]],
               temperature: float, levels: list[Level], descriptions: list[str] | None = None,
               description_weight: float = 0.0, groups: list[str] | None = None) -> Kind:
    """Titles (with descriptions, late-fused at `description_weight`) scored by the predictor's
    encoder and memory, each leaving its group (of `groups`, if given) out of the lookup: what
    the confidence model is fitted and measured on."""
    category, exemplar = predictor.similarities(titles, predictor.max_input_length,
                                                leave_out=groups)
    scores = category if exemplar is None else fuse(category, exemplar, predictor.fusion_weight)
    described = None
    if descriptions is not None:
        described = predictor.similarities(descriptions, predictor.max_description_length,
                                           memory=False)[0]
        scores = scores + description_weight * described
    ids = predictor.tokenizer(titles, truncation=True,
                              max_length=predictor.max_input_length)["input_ids"]
    level_of = level_groups(levels)
    sig = signals(scores, category, exemplar, described, ids, predictor.tokenizer.unk_token_id,
                  temperature, level_of)
    correct = level_correct(valid_codes(codes, scores.shape[1]), sig.answer, level_of)
    return Kind(sig, scores, correct, np.asarray(titles if groups is None else groups,
                                                 dtype=object))


def fitting_kinds(predictor: Predictor, examples: pd.DataFrame, taxonomy: Taxonomy,
                  n_tasks: int, temperature: float, levels: list[Level],
                  description_weight: float | None, related: set[tuple[str, str]] | None = None,
                  limit: int = 2000) -> dict[str, Kind]:
    """The kinds of input the confidence model is fitted on: validation titles as they are,
    the reported titles' fitting half, validation titles with noise the encoder never trained
    on (`occlass.data.fit_noise`, seeded) and as pseudo job ads of the fitting style (with a
    description weight; tasks partly from a related occupation, of `related` pairs)."""
    val = examples[examples["split"] == "val"]
    reported = examples[reported_for_fitting(examples)]
    titles, codes, groups = list(val["title"]), list(val["codes"]), groups_of(val)
    rng = random.Random(0)
    kinds = {"clean": score_kind(predictor, titles, codes, temperature, levels, groups=groups)}
    if not reported.empty:
        kinds["reported"] = score_kind(predictor, list(reported["title"]),
                                       list(reported["codes"]), temperature, levels,
                                       groups=groups_of(reported))
    kinds["noisy"] = score_kind(predictor, [fit_noise(t, rng) for t in titles], codes,
                                temperature, levels, groups=groups)
    if description_weight is not None:
        head = val.head(limit)
        others: dict[str, list[str]] = {}
        for code, other in sorted(related or ()):
            others.setdefault(code, []).append(other)
        ads = pseudo_postings(list(head["title"]), [taxonomy.codes[c[0]] for c in head["codes"]],
                              taxonomy.tasks, seed=0, category_n_tasks=n_tasks, fitting=True,
                              related=others)
        keep = [i for i, ad in enumerate(ads) if ad]
        if keep:
            kinds["ads"] = score_kind(predictor, [titles[i] for i in keep],
                                      [codes[i] for i in keep], temperature, levels,
                                      [ads[i] for i in keep], description_weight,
                                      [groups[i] for i in keep])
    return kinds


def concat(kinds: dict[str, Kind]) -> tuple[Signals, torch.Tensor, np.ndarray, np.ndarray]:
    """The kinds' rows together: signals, correctness, groups and each row's kind."""
    return (Signals.concat([k.signals for k in kinds.values()]),
            torch.cat([k.correct for k in kinds.values()]),
            np.concatenate([k.group for k in kinds.values()]),
            np.concatenate([[name] * len(k.group) for name, k in kinds.items()]))


def fit_confidence_model(kinds: dict[str, Kind], temperature: float,
                         target: float = DEFAULT_TARGET) -> ConfidenceModel:
    """The confidence model of the kinds together, cross-fitted by group (a title's variants
    share a fold), its thresholds for a kind left out of fitting (`worst_kind_target`); logs,
    per kind, on held-out folds: the share coded, how many of them are right, and the
    calibration error of the top-1 confidence."""
    sig, correct, groups, names = concat(kinds)
    model, held_out = fit_confidence(sig, correct, groups, temperature, target, kinds=names)
    correct = correct.numpy()
    log.info("confidence thresholds chosen at the stricter targets %s, so that each kind left "
             "out of fitting reaches the target", model.chosen_at)
    level = choose_level(held_out, model.thresholds_for())
    right = correct[np.arange(len(level)), level.clip(0)] & (level >= 0)
    for name in kinds:
        rows = names == name
        coded = level[rows] >= 0
        log.info("confidence model, held-out %s rows (%d): %.1f%% coded at precision %s (%s), "
                 "%.3f right; ECE of the top-1 confidence %.3f", name, rows.sum(),
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
    """With a predictor whose memory is the served one (every split's titles; replaced by its
    `lookup_memory`): choose the description weight and fit the calibrator on validation and
    the confidence model on the fitting kinds (for `target` precision by default), and write the
    error analysis of the test split (`test_predictions.parquet`, error_analysis.md and its
    plots)."""
    val, test = (examples[examples["split"] == s] for s in ("val", "test"))
    if val.empty or predictor.memory is None:
        return None, None, None
    predictor.memory = lookup_memory(predictor.memory, examples)
    taxonomy = Taxonomy.load(data_dir, with_tasks=True)
    description_weight = choose_description_weight(predictor, val, taxonomy, n_tasks)
    calibrator = fit_calibrator(fused_scores(predictor, val),
                                valid_codes(list(val["codes"]), len(taxonomy)))
    log.info("calibration: temperature %.4f, review below confidence %.4f",
             calibrator.temperature, calibrator.review_below)
    levels = load_levels(taxonomy, data_dir)
    related = load_related(data_dir)
    model = fit_confidence_model(
        fitting_kinds(predictor, examples, taxonomy, n_tasks, calibrator.temperature, levels,
                      description_weight, related), calibrator.temperature, target)
    if not test.empty:
        kind = score_kind(predictor, list(test["title"]), list(test["codes"]),
                          calibrator.temperature, levels)
        frame = test_predictions(test, kind.scores, taxonomy,
                                 model.probabilities(kind.signals)[:, 0].numpy())
        write_atomic(out / runs.PREDICTIONS_FILE, lambda f: frame.to_parquet(f, index=False))
        write_error_report(out, frame, taxonomy, related)
    return description_weight, calibrator, model
