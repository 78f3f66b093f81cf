"""Trust figures of a run, written to BENCHMARKS.md: what the confidence keeps of its promise
on kinds of input, old (temperature + top-label calibrator) against new (the confidence model,
with back-off to SOC groups), and what corrections do without retraining.

    .venv/bin/python bench/review.py --run RUN_DIR [--data-dir data/onet-29.3] [--section review]

Sets as `bench/accuracy.py` makes them (test, the reported titles' evaluation half, noisy: seen
and unseen noise, pseudo ads of the test titles with their text), scored as the Predictor scores
them (`occlass.report.analysis.score_kind`) with the memory the confidence model was fitted with
(the served memory less the evaluation titles, `lookup_memory`). Per set: the rows each
confidence accepts at the run's own thresholds and how many of them are right (at the level
given); the expected calibration error of the top-1 confidence; and the coverage at 0.90 and
0.95 precision with thresholds chosen on the set itself (how well each confidence ranks rows, not
a promise). Then leave-one-kind-out on the kinds the model is fitted on (validation titles, the
reported titles' fitting half, fitting noise, fitting ads): each kind scored by a model fitted on
the others, its thresholds chosen on the others by the old rule (the pooled point estimate) and
by the served rule (`worst_kind_target`); and how much higher the exemplar similarities run in
the served memory than in the fitting one. A run without a confidence model, or fitted before
these kinds: `python -m occlass.report RUN --refit`.

Corrections: the titles of half of a split's leak-free groups (seeded; a group holds a title
and its surface twins, `occlass.data.examples`, so no twin of a corrected title counts as
another title) become corrections (title, first code); then top-1 on near-variants of them
(inverted word order, abbreviations, as `bench/noisy_copy.py` writes them; not case: the
tokenizer lowercases, so an upper-case variant is the corrected title itself), and, on the other
groups' titles, the share whose top-1 the corrections turn from right to wrong (the harm, not
net of the ones they turn from wrong to right, shown beside it). The correction threshold is
chosen on the validation split (the best variant top-1 among thresholds that turn at most 0.1%
of the other titles from right to wrong; when none does, none is chosen and the section says
so), then reported on test.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from accuracy import SETS, load_sets
from common import load, preamble, write_section
from noisy_copy import _abbreviate, _can_abbreviate, _can_invert, _invert

from occlass import runs
from occlass.data.examples import split_examples
from occlass.data.soc import LEVELS
from occlass.data.taxonomy import Taxonomy
from occlass.errors import OcclassError
from occlass.model.calibration import Calibrator, expected_calibration_error, review_threshold
from occlass.model.confidence import (
    ConfidenceModel,
    choose_level,
    leave_one_kind_out,
    level_thresholds,
)
from occlass.predict.loader import load_corrections, load_run, load_taxonomy
from occlass.predict.predictor import CORRECTION_THRESHOLD, Predictor
from occlass.report.analysis import (
    concat,
    fitting_kinds,
    groups_of,
    lookup_memory,
    score_kind,
    training_memory,
)
from occlass.report.error_report import load_related

TARGETS = (0.9, 0.95)
CORRECTION_THRESHOLDS = (0.85, 0.88, 0.9, 0.92, 0.95)
MAX_HARM = 0.001  # the share of other titles a chosen threshold may turn from right to wrong


def variants(title: str, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, variant) pairs of a title: inverted order, abbreviated."""
    out = []
    if _can_invert(title):
        out.append(("order", _invert(title, rng)))
    if _can_abbreviate(title):
        out.append(("abbreviation", _abbreviate(title, rng)))
    return out


def hits(predictor: Predictor, titles: list[str], codes: list[set[str]]) -> np.ndarray:
    """Whether each title's top-1 is one of its codes."""
    predicted = predictor.predict(titles, top_k=1).codes[:, 0]
    return np.array([p in c for p, c in zip(predicted, codes)], dtype=bool)


def correction_halves(part: pd.DataFrame, seed: int, limit: int | None
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A split's titles in two halves by leak-free group (seeded): the titles of half of the
    groups, and those of the other groups (at most `limit` titles in all, whole groups first)."""
    groups = part["group"].drop_duplicates().sample(frac=1, random_state=seed)
    order = pd.Series(range(len(groups)), index=groups.to_numpy())
    part = part.iloc[np.argsort(order[part["group"]].to_numpy(), kind="stable")]
    part = part.head(limit) if limit else part
    kept = part["group"].drop_duplicates()
    chosen = part["group"].isin(set(kept.iloc[:len(kept) // 2]))
    return part[chosen], part[~chosen]


def flips(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """The shares of rows whose top-1 went from right to wrong (harm) and from wrong to right."""
    return float((before & ~after).mean()), float((~before & after).mean())


def corrections_effect(predictor: Predictor, parts, examples, taxonomy, split: str, seed: int,
                       limit: int | None) -> dict:
    """Half of `split`'s groups (seeded) as corrections: top-1 on near-variants of their
    titles, and the other groups' titles turned from right to wrong and from wrong to right by
    the corrections, at the predictor's threshold."""
    corrected, other = correction_halves(examples[examples["split"] == split], seed, limit)
    codes = [{taxonomy.codes[c] for c in cs} for cs in corrected["codes"]]
    other_codes = [{taxonomy.codes[c] for c in cs} for cs in other["codes"]]
    rng = random.Random(seed)
    near = [(kind, v, codes[i]) for i, t in enumerate(corrected["title"])
            for kind, v in variants(t, rng)]
    kinds = sorted({k for k, _, _ in near})

    def scores() -> tuple[dict[str, float], np.ndarray]:
        per_kind = {k: hits(predictor, [v for kk, v, _ in near if kk == k],
                            [c for kk, _, c in near if kk == k]).mean() for k in kinds}
        return per_kind, hits(predictor, list(other["title"]), other_codes)

    predictor.set_corrections(None)
    before, other_before = scores()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reviewed.csv"
        pd.DataFrame({"title": corrected["title"],
                      "code": [taxonomy.codes[cs[0]] for cs in corrected["codes"]]}).to_csv(
            path, index=False)
        predictor.set_corrections(load_corrections(parts, path))
    after, other_after = scores()
    predictor.set_corrections(None)
    counts = {k: sum(kk == k for kk, _, _ in near) for k in kinds}
    total = sum(counts.values())
    harm, gain = flips(other_before, other_after)
    return {"kinds": {k: (counts[k], before[k], after[k]) for k in kinds},
            "variants": total, "corrected": len(corrected), "other": len(other),
            "all_before": sum(before[k] * counts[k] for k in kinds) / total,
            "all_after": sum(after[k] * counts[k] for k in kinds) / total,
            "other_before": float(other_before.mean()), "other_after": float(other_after.mean()),
            "harm": harm, "gain": gain}


def choose_threshold(effects: dict[float, dict], max_harm: float = MAX_HARM) -> float | None:
    """The threshold with the best variant top-1 among those that turn at most `max_harm` of
    the other titles from right to wrong (the higher of a tie); None when none is harmless."""
    harmless = [t for t, e in effects.items() if e["harm"] <= max_harm]
    return max(harmless, key=lambda t: (effects[t]["all_after"], t)) if harmless else None


def accepted(mask: np.ndarray, right: np.ndarray) -> str:
    """"share (precision)" of the accepted rows."""
    return f"{mask.mean():.1%} ({right[mask].mean():.3f})" if mask.any() else "0% (–)"


def coverage(confidence: np.ndarray, right: np.ndarray, target: float) -> float:
    """The share of rows the confidence can accept with `target` precision, thresholded on
    these rows themselves."""
    return float((confidence >= review_threshold(confidence, right, target)).mean())


def measure(kind, calibrator: Calibrator, model: ConfidenceModel) -> dict[str, str]:
    """One set's cells: old and new at the run's thresholds, ECE, coverage at the targets."""
    correct = kind.correct.numpy()
    old = calibrator.confidence(kind.scores).numpy()
    new = model.probabilities(kind.signals).numpy()
    cells = {"rows": f"{len(old):,}",
             "old": accepted(old >= calibrator.review_below, correct[:, 0]),
             "ECE old": f"{expected_calibration_error(old, correct[:, 0]):.3f}",
             "ECE new": f"{expected_calibration_error(new[:, 0], correct[:, 0]):.3f}"}
    for target in TARGETS:
        thresholds = model.thresholds_for(target)
        level = choose_level(new, thresholds)
        right = correct[np.arange(len(level)), level.clip(0)] & (level >= 0)
        cells[f"new detailed {target}"] = accepted(new[:, 0] >= thresholds[0], correct[:, 0])
        cells[f"new back-off {target}"] = accepted(level >= 0, right)
        cells[f"levels {target}"] = " / ".join(f"{(level == j).mean():.0%}"
                                               for j in range(len(LEVELS)))
        own = choose_level(new, level_thresholds(new, correct, target))
        cells[f"coverage {target}"] = (
            f"{coverage(old, correct[:, 0], target):.1%} / "
            f"{coverage(new[:, 0], correct[:, 0], target):.1%} / {(own >= 0).mean():.1%}")
    return cells


def confidence_section(cells: dict[str, dict[str, str]]) -> str:
    """The two tables: at the run's thresholds, and coverage with thresholds on each set."""
    lines = [("| set | rows | target | old: accepted (right) | new, detailed only | "
             "new, with back-off | share per level (O*NET / SOC / broad / minor / major) | "
             "ECE old | ECE new |"), "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for name, c in cells.items():
        for target in TARGETS:
            old = c["old"] if target == TARGETS[0] else ""
            lines.append(f"| {name} | {c['rows']} | {target:g} | {old} | "
                         f"{c[f'new detailed {target}']} | {c[f'new back-off {target}']} | "
                         f"{c[f'levels {target}']} | {c['ECE old']} | {c['ECE new']} |")
    cover = ["| set | " + " | ".join(f"at {t:g}: old / new / new with back-off"
                                     for t in TARGETS) + " |", "|---|" + "---:|" * len(TARGETS)]
    cover += [f"| {name} | " + " | ".join(c[f"coverage {t}"] for t in TARGETS) + " |"
              for name, c in cells.items()]
    return "\n".join(lines) + "\n\nCoverage (share of rows accepted) with thresholds chosen on " \
        "each set itself, how well each confidence ranks its rows:\n\n" + "\n".join(cover)


def corrections_section(effects: dict[float, dict], best: float | None,
                        override: float | None, test: dict) -> str:
    """The choice of the correction threshold on validation, and its effect on test."""
    choice = "\n".join(f"| {t} | {e['all_after']:.4f} | {100 * e['harm']:.2f}% | "
                       f"{100 * e['gain']:.2f}% |" for t, e in effects.items())
    chosen = (f"Chosen: {best}" if best is not None else
              f"**No threshold turned at most {MAX_HARM:.1%} of the other titles from right "
              f"to wrong: none chosen**; test at the Predictor's default {CORRECTION_THRESHOLD}")
    rows = "\n".join(f"| {kind} | {n:,} | {b:.4f} | {a:.4f} |"
                     for kind, (n, b, a) in test["kinds"].items())
    return (
        "Correction threshold, chosen on validation (the titles of half of its leak-free groups "
        "as corrections): top-1 on the variants of the corrected titles, and the share of the "
        "other groups' titles whose top-1 the corrections turn from right to wrong (harm) and "
        f"from wrong to right (the best variant top-1 among thresholds harming at most "
        f"{MAX_HARM:.1%}):\n\n"
        "| threshold | variants top-1 with corrections | other titles: right → wrong | "
        f"wrong → right |\n|---:|---:|---:|---:|\n{choice}\n\n{chosen}"
        f"{f' (overridden: {override})' if override else ''}. On test: "
        f"{test['corrected']:,} titles given as `corrections=` (their first code); top-1 on "
        "near-variants of them, without and with the corrections:\n\n"
        "| variant | titles | without | with corrections |\n|---|---:|---:|---:|\n"
        f"{rows}\n| **all** | {test['variants']:,} | {test['all_before']:.4f} | "
        f"**{test['all_after']:.4f}** |\n\n"
        f"The other {test['other']:,} test titles (other groups): top-1 "
        f"{test['other_before']:.4f} without, {test['other_after']:.4f} with the corrections; "
        f"{100 * test['harm']:.2f}% of them went from right to wrong, {100 * test['gain']:.2f}% "
        "from wrong to right. ")


def kind_out_section(kinds) -> str:
    """The leave-one-kind-out table: per kind left out and target, the share coded and how many
    of them are right under each rule, with the precision per level."""
    sig, correct, groups, names = concat(kinds)
    header = ("| kind left out | rows | target | pooled rule: coded (right) | worst-kind rule: "
              "coded (right) | its stricter target | right per level, worst-kind rule "
              "(O*NET / SOC / broad / minor / major) |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---|"]
    for target in TARGETS:
        result = leave_one_kind_out(sig, correct, groups, names, target)
        for kind, r in result.items():
            rows = names == kind
            cells = []
            for rule in ("pooled", "worst kind"):
                level, right = r[rule]
                cells.append(accepted(level >= 0, right))
            level, right = r["worst kind"]
            per_level = " / ".join(f"{right[level == j].mean():.3f}" if (level == j).any()
                                   else "–" for j in range(len(LEVELS)))
            lines.append(f"| {kind} | {rows.sum():,} | {target:g} | {cells[0]} | {cells[1]} | "
                         f"{r['strict']:g} | {per_level} |")
            print("left out", kind, target, cells, r["strict"], flush=True)
    return "\n".join(lines)


def exemplar_shift(parts, examples, training, lookup, served) -> str:
    """Mean best exemplar similarity of the test titles in the training titles' memory, the
    fitting memory, and the served memory with each title's group left out (as at serving)."""
    test = examples[examples["split"] == "test"]
    group = dict(zip(examples["title"], groups_of(examples)))
    served.groups = [group.get(t, f"(not a title: {t})") for t in served.titles]
    means = []
    for memory, leave_out in ((training, None), (lookup, None), (served, groups_of(test))):
        scorer = Predictor(dataclasses.replace(parts, memory=memory))
        exemplar = scorer.similarities(list(test["title"]), scorer.max_input_length,
                                       leave_out=leave_out)[1]
        means.append(exemplar.max(dim=1).values.mean().item())
    return (f"Mean best exemplar similarity of the {len(test):,} test titles: {means[0]:.4f} "
            f"in the training titles' memory, {means[1]:.4f} in the fitting memory, "
            f"{means[2]:.4f} in the served memory with each title's group left out.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("data/onet-29.3"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, help="correction threshold (default: the "
                        "Predictor's)")
    parser.add_argument("--limit", type=int, help="at most this many rows of each set (seeded "
                        "sample; a quick check, not the figures)")
    parser.add_argument("--section", default="review", help="BENCHMARKS.md section to write "
                        "(another run beside the main one: another name)")
    args = parser.parse_args()
    at_start, started = load(), time.time()
    info = runs.RunInfo.load(args.run)
    if info.confidence is None or info.calibration is None:
        raise OcclassError(f"{args.run}: no confidence model; fit one with "
                           f"`python -m occlass.report {args.run} --refit`")
    taxonomy = load_taxonomy(args.data_dir, info.recipe)
    examples = split_examples(info.config["data"], args.data_dir, taxonomy)
    parts = load_run(args.run, args.data_dir)
    served = parts.memory
    lookup = lookup_memory(served, examples)
    scorer = Predictor(dataclasses.replace(parts, memory=lookup))  # as the model was fitted
    parts.memory = training_memory(parts, examples)
    predictor = Predictor(parts)
    calibrator, model = Calibrator.from_dict(info.calibration), parts.confidence_model
    with_tasks = Taxonomy.load(args.data_dir, with_tasks=True)
    _, sets = load_sets(info, args.data_dir, with_tasks)
    cells = {}
    for name in SETS[1:]:  # not val: the confidence was fitted there
        titles, descriptions, codes = sets[name]
        if not titles:
            continue
        if args.limit and len(titles) > args.limit:
            rows = sorted(random.Random(args.seed).sample(range(len(titles)), args.limit))
            titles, codes = [titles[i] for i in rows], [codes[i] for i in rows]
            descriptions = descriptions and [descriptions[i] for i in rows]
        kind = score_kind(scorer, titles, codes, model.temperature, parts.levels,
                          descriptions, scorer.description_weight)
        cells[name] = measure(kind, calibrator, model)
        print(name, cells[name], flush=True)
    kinds = fitting_kinds(scorer, examples, with_tasks, info.n_tasks, model.temperature,
                          parts.levels, info.description_weight, load_related(args.data_dir),
                          limit=args.limit or 2000)
    left_out = kind_out_section(kinds)
    shift = exemplar_shift(parts, examples, parts.memory, lookup, served)
    print(shift, flush=True)
    effects = {}
    for threshold in CORRECTION_THRESHOLDS:  # chosen on validation
        predictor.correction_threshold = threshold
        effects[threshold] = corrections_effect(predictor, parts, examples, taxonomy, "val",
                                                args.seed, args.limit)
        print("validation, correction threshold", threshold,
              {k: v for k, v in effects[threshold].items() if k != "kinds"}, flush=True)
    best = choose_threshold(effects)
    if best is None and args.threshold is None:
        print(f"warning: no correction threshold is harmless on validation; test at the "
              f"Predictor's default {CORRECTION_THRESHOLD}", flush=True)
    predictor.correction_threshold = args.threshold or best or CORRECTION_THRESHOLD
    test = corrections_effect(predictor, parts, examples, taxonomy, "test", args.seed, args.limit)
    body = (
        f"## Confidence, review and corrections ({args.section})\n\n"
        + preamble(f"run `{args.run}` (old: temperature {calibrator.temperature:.4f} and "
                   f"top-label scaling, review below {calibrator.review_below:.4f}; new: the "
                   f"confidence model, run target {model.target:g}; both fitted on validation); "
                   f"correction threshold {predictor.correction_threshold}; seed {args.seed}",
                   at_start, {f"`{args.run}`": info})
        + "\nEach set scored with the served memory less the evaluation titles (the memory "
        "the confidence model was fitted with). Accepted rows at the run's own "
        "thresholds, as `needs_review=false` gives them (share of rows, and how many of them "
        "are right at the level given): old, the top-label calibrator (top-1 only); new, "
        "`pred_code_1` alone (`confidence` at the O*NET level's threshold) and with back-off "
        "to the finest SOC level that qualifies (`coded_level`); ECE of the top-1 confidence "
        "(15 bins):\n\n" + confidence_section(cells) + "\n\n"
        "Leave-one-kind-out: each kind the confidence model is fitted on, scored by a model "
        "fitted on the other kinds, with thresholds chosen on the other kinds' held-out rows "
        "for the target as a pooled point estimate (the old rule) and at the stricter target "
        "at which every one of those kinds, itself left out, reaches the target (the served "
        "rule); coded share (how many of them right):\n\n" + left_out + "\n\n"
        + shift + "\n\n"
        + corrections_section(effects, best, args.threshold, test)
        + f"Wall time {time.time() - started:.0f} s.\n")
    print(body)
    write_section(args.section, body)


if __name__ == "__main__":
    main()
