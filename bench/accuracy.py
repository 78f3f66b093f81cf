"""Accuracy on five kinds of input, against the baselines and an ablation, written to BENCHMARKS.md.

    .venv/bin/python bench/accuracy.py --run RUN_DIR [--ablation NAME=RUN_DIR ...] [--section S]

Sets (from the run's own data config and split):
- val: the validation titles, beside test because validation chooses: half of them chose the
  fusion weight, and all of them the description weight and the calibrator (so val is optimistic);
- test: the test-split titles (never trained on, never used to choose anything);
- reported: O*NET's reported titles that only workers reported (the "reported" split, kept out
  of training and out of the evaluation memory), its evaluation half (the other half fits the
  confidence model): the closest stand-in for real inputs;
- noisy (seen): the test titles made noisy by `bench/noisy_copy.py`'s "seen" rules (other code,
  same kinds as the training augmentation): inverted, abbreviated, levels, suffixes, casing, typos;
- noisy (unseen): the test titles made noisy by its "unseen" rules, kinds the training never
  makes: British and gender-neutral forms, run-together words, tags, numbers, banners;
- postings: pseudo job ads of the test titles (`occlass.data.postings`: task statements that training
  never uses, in company, benefits and equal-opportunity boilerplate), with their titles. The
  tasks are the gold occupation's own: an upper bound on what real ads give.
Baselines: TF-IDF and zero-shot (packaged MiniLM) nearest-neighbour over the training titles,
zero-shot category similarity, the zero-shot model fused with the memory (the strongest
untrained baseline: the untouched model as prediction uses it, its fusion weight chosen on
validation exactly as training chooses ours: `tuned_fusion_weight`), and the fine-tuned
encoder's nearest-neighbour. A run that chose no description weight (no validation split) gets
the Predictor's default, and the label says so. The memory of
every method holds the training titles only. Each --ablation run is scored the same way
(category only, and fused with its own validation-chosen weight).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import load, preamble, write_section
from noisy_copy import noisy_copy
from sklearn.feature_extraction.text import TfidfVectorizer

from occlass import runs
from occlass.data.categories import Categories
from occlass.data.examples import Exemplars, reported_for_fitting, split_examples
from occlass.data.postings import pseudo_postings
from occlass.data.soc import LEVELS, load_levels
from occlass.data.taxonomy import Taxonomy
from occlass.data.tokenizer import PACKAGED, load_tokenizer
from occlass.model.category_cache import build_category_cache, weights_fingerprint
from occlass.model.encoder import Encoder
from occlass.model.memory import FUSION_GRID, best_fusion_weight, build_memory, fuse
from occlass.model.metrics import GridAccuracy
from occlass.predict.loader import DESCRIPTION_WEIGHT, ZERO_SHOT_FUSION, RunParts
from occlass.predict.predictor import Predictor

SETS = ("val", "test", "reported", "noisy (seen)", "noisy (unseen)", "postings")


def load_sets(info: runs.RunInfo, data_dir: Path, taxonomy: Taxonomy, seed: int = 1):
    """The training titles (with codes) and each evaluation set: (titles, descriptions, codes)."""
    examples = split_examples(info.config["data"], data_dir, taxonomy)
    part = {s: examples[examples["split"] == s] for s in ("train", "val", "test")}
    part["reported"] = examples[(examples["split"] == "reported")
                                & ~reported_for_fitting(examples)]
    test = part["test"]
    codes = [taxonomy.codes[c[0]] for c in test["codes"]]
    ads = pseudo_postings(list(test["title"]), codes, taxonomy.tasks, seed=seed,
                          category_n_tasks=info.n_tasks)
    has_ad = np.array([a != "" for a in ads])
    sets = {
        "val": (list(part["val"]["title"]), None, list(part["val"]["codes"])),
        "test": (list(test["title"]), None, list(test["codes"])),
        "reported": (list(part["reported"]["title"]), None, list(part["reported"]["codes"])),
        **{f"noisy ({rules})": (noisy_copy(list(test["title"]), seed, rules), None,
                                list(test["codes"])) for rules in ("seen", "unseen")},
        "postings": (list(test["title"][has_ad]), [a for a in ads if a],
                     list(test["codes"][has_ad])),
    }
    return part["train"], sets


def major_groups(taxonomy: Taxonomy, data_dir: Path) -> torch.Tensor:
    """The SOC major group of each code (index), as `accuracy` takes it."""
    return torch.from_numpy(load_levels(taxonomy, data_dir)[LEVELS.index("major")].of_code)


def accuracy(scores: torch.Tensor, codes: list[list[int]], major: torch.Tensor) -> dict:
    """top-1, top-5 and SOC-major accuracy (a title is right when any of its codes is)."""
    valid = torch.zeros(len(codes), scores.shape[1], dtype=torch.bool)
    for i, c in enumerate(codes):
        valid[i, c] = True
    top = scores.topk(5, dim=1).indices
    same_major = (major[top[:, :1]] == major.unsqueeze(0)) & valid
    return {"top-1": valid.gather(1, top[:, :1]).any(1).float().mean().item(),
            "top-5": valid.gather(1, top).any(1).float().mean().item(),
            "major": same_major.any(1).float().mean().item()}


class Method:
    """One encoder with its category matrix and a memory of the training titles."""

    def __init__(self, encoder_dir: str, taxonomy: Taxonomy, info: runs.RunInfo,
                 train: Exemplars, fusion_weight: float, device: str):
        encoder, tokenizer = Encoder(encoder_dir).to(device), load_tokenizer(encoder_dir)
        categories = Categories.from_taxonomy(taxonomy, tokenizer, info.recipe, info.n_tasks,
                                              info.max_category_length)
        ids = tokenizer(train.titles, truncation=True,
                        max_length=info.max_input_length)["input_ids"]
        memory = build_memory(encoder.eval(), Exemplars(train.titles, train.labels, ids),
                              len(taxonomy), tokenizer.pad_token_id,
                              {"weights": weights_fingerprint(encoder)})
        self.predictor = Predictor(RunParts(
            encoder, tokenizer, taxonomy, build_category_cache(encoder, categories),
            info.max_input_length, memory=memory, fusion_weight=fusion_weight))

    def parts(self, titles, descriptions=None):
        """Category and best-exemplar similarities of the titles (N, C), and of the
        descriptions' category similarity, if any."""
        p = self.predictor
        category, exemplar = p.similarities(titles, p.max_input_length)
        described = None
        if descriptions is not None:
            described, _ = p.similarities(descriptions, p.max_description_length, memory=False)
        return category, exemplar, described


def tuned_fusion_weight(category: torch.Tensor, exemplar: torch.Tensor,
                        codes: list[list[int]]) -> float:
    """The fusion weight as training chooses ours (`OccupationClassifier`'s validation): the
    weight of FUSION_GRID with the best top-1 on the validation titles that choose (every other
    one, in split order, as the datamodule marks them)."""
    grid = GridAccuracy(len(FUSION_GRID))
    valid = torch.zeros(len(codes[::2]), category.shape[1], dtype=torch.bool)
    for i, c in enumerate(codes[::2]):
        valid[i, c] = True
    grid.update([fuse(category[::2], exemplar[::2], w) for w in FUSION_GRID], valid)
    return best_fusion_weight(grid.compute())


def description_weight(info: runs.RunInfo) -> tuple[float, str]:
    """The run's description weight and how it was set: chosen on validation, or (a run that
    chose none) the Predictor's default, with a warning."""
    if info.description_weight is not None:
        return info.description_weight, "chosen on validation"
    print(f"warning: the run chose no description weight; late fusion uses the default "
          f"{DESCRIPTION_WEIGHT}", flush=True)
    return DESCRIPTION_WEIGHT, "the default: the run chose none"


def tfidf_scores(train_titles, train_labels, titles, n_codes) -> torch.Tensor:
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    memory = vectorizer.fit_transform(train_titles)
    labels = torch.tensor(train_labels)
    out = []
    for start in range(0, len(titles), 512):
        sims = torch.from_numpy((vectorizer.transform(titles[start:start + 512])
                                 @ memory.T).toarray()).float()
        best = torch.full((len(sims), n_codes), -1.0)
        out.append(best.scatter_reduce(1, labels.expand(len(sims), -1), sims, "amax"))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--ablation", nargs="*", default=[], help="NAME=RUN_DIR")
    parser.add_argument("--data-dir", type=Path, default=Path("data/onet-29.3"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--section", default="accuracy")
    parser.add_argument("--note", default="", help="a line on where the runs come from")
    args = parser.parse_args()
    at_start, started = load(), time.time()
    info = runs.RunInfo.load(args.run)
    taxonomy = Taxonomy.load(args.data_dir, with_tasks=True)
    major = major_groups(taxonomy, args.data_dir)
    train, sets = load_sets(info, args.data_dir, taxonomy)
    train = train.explode("codes")
    memory = Exemplars(list(train["title"]), [int(c) for c in train["codes"]], [])
    rows: dict[str, dict[str, dict]] = {}

    def score(name, per_set):
        rows[name] = {s: accuracy(per_set[s], sets[s][2], major) for s in per_set}
        print(name, {s: round(v["top-1"], 4) for s, v in rows[name].items()}, flush=True)

    titles = {s: sets[s][0] for s in SETS}
    score("TF-IDF nearest neighbour (char 2–4-grams)",
          {s: tfidf_scores(memory.titles, memory.labels, titles[s], len(taxonomy)) for s in SETS})
    base = Method(PACKAGED, taxonomy, info, memory, ZERO_SHOT_FUSION, args.device)
    parts = {s: base.parts(titles[s]) for s in SETS}
    score("zero-shot category similarity", {s: parts[s][0] for s in SETS})
    score("zero-shot nearest neighbour", {s: parts[s][1] for s in SETS})
    tuned = tuned_fusion_weight(parts["val"][0], parts["val"][1], sets["val"][2])
    score(f"zero-shot fused with exemplars (w={tuned}, chosen on validation as ours)",
          {s: fuse(parts[s][0], parts[s][1], tuned) for s in SETS})
    del parts
    runs_ = [("this run", args.run)] + [tuple(a.split("=", 1)) for a in args.ablation]
    provenance = {name: runs.RunInfo.load(run) for name, run in runs_}
    for name, run in runs_:
        run_info = provenance[name]
        weight = run_info.fusion_weight or 0.0
        method = Method(str(Path(run) / runs.ENCODER_DIR), taxonomy, run_info, memory, weight,
                        args.device)
        parts = {s: method.parts(titles[s], sets[s][1]) for s in SETS}
        label = "" if name == "this run" else f"{name}: "
        if name == "this run":
            score("fine-tuned nearest neighbour", {s: parts[s][1] for s in SETS})
        score(f"{label}category similarity only", {s: parts[s][0] for s in SETS})
        fused = {s: fuse(parts[s][0], parts[s][1], weight) for s in SETS}
        score(f"{label}fused with exemplars (w={weight})", fused)
        if name == "this run":
            dw, how = description_weight(run_info)
            concat = method.predictor.similarities(
                [f"{t}. {d}" for t, d in zip(*sets["postings"][:2])],
                method.predictor.max_description_length)
            score("postings: title and ad text as one input",
                  {"postings": fuse(concat[0], concat[1], weight)})
            score(f"postings: title, + ad text's category similarity × {dw} ({how}; late "
                  "fusion)", {"postings": fused["postings"] + dw * parts["postings"][2]})
        del parts, fused
    write(args, info, sets, rows, at_start, time.time() - started, provenance)


def write(args, info, sets, rows, at_start, seconds, provenance) -> None:
    header = ["method", *(f"{s} {m}" for s in SETS for m in ("top-1", "top-5"))]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name, per_set in rows.items():
        cells = [f"{per_set[s][m]:.4f}" if s in per_set else "" for s in SETS
                 for m in ("top-1", "top-5")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    majors = ["| method | " + " | ".join(SETS) + " |", "|---|" + "---:|" * len(SETS)]
    for name, per_set in rows.items():
        majors.append(f"| {name} | " + " | ".join(
            f"{per_set[s]['major']:.4f}" if s in per_set else "" for s in SETS) + " |")
    sizes = ", ".join(f"{s} {len(sets[s][0]):,}" for s in SETS)
    body = (f"## Accuracy ({args.section})\n\n"
            + preamble(f"run `{args.run}` (model `{info.base_model}`, recipe `{info.recipe}`, "
                       f"inputs ≤ {info.max_input_length} tokens, descriptions ≤ 256, category "
                       f"texts ≤ {info.max_category_length}); device {args.device}. "
                       f"{args.note}", at_start, provenance)
            + f"\nSets: {sizes} titles. The memory holds the training titles only. Top-1 and "
            "top-5 (a title is right when any of its codes is):\n\n" + "\n".join(lines)
            + "\n\nAccuracy, SOC major group (top-1):\n\n" + "\n".join(majors)
            + f"\n\nWall time {seconds:.0f} s.\n")
    write_section(args.section, body)


if __name__ == "__main__":
    main()
