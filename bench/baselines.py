"""Zero-shot and lexical baselines on the test split, written to BENCHMARKS.md.

    .venv/bin/python bench/baselines.py [--run RUN_DIR] [hydra overrides]

Rows: category similarity with the packaged MiniLM; nearest neighbour over the training titles
with the same model and with TF-IDF character n-grams; with --run, the same two for a run's
fine-tuned encoder (its exported `encoder/` and `category_cache.pt`). A code's nearest-neighbour
score is the best cosine of the training titles that carry it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import default_config, load, preamble, write_section
from hydra.utils import instantiate
from sklearn.feature_extraction.text import TfidfVectorizer
from torch.nn.utils.rnn import pad_sequence

from occlass import runs
from occlass.category_cache import CategoryCache
from occlass.encoder import PACKAGED, Encoder, load_tokenizer
from occlass.errors import OcclassError
from occlass.metrics import OccupationMetrics, metric_label
from occlass.taxonomy import SOC_LEVELS

SPLIT_KEYS = ("sources", "extra_files", "val_fraction", "test_fraction", "split_seed", "fold",
              "folds")


class Scorer:
    """Scores (inputs × codes) in chunks and feeds them to `OccupationMetrics`."""

    def __init__(self, taxonomy, test_codes: list[list[int]], train_codes: list[list[int]],
                 chunk: int = 256):
        self.taxonomy = taxonomy
        self.codes = pad_sequence([torch.tensor(c) for c in test_codes], batch_first=True,
                                  padding_value=-1)
        # one (title, code) entry per code of each training title: a title votes for all its codes
        self.pair_title = torch.tensor([t for t, cs in enumerate(train_codes) for _ in cs])
        self.pair_code = torch.tensor([c for cs in train_codes for c in cs])
        self.chunk = chunk

    def metrics(self) -> OccupationMetrics:
        levels = {level: self.taxonomy.level_ids(level) for level in SOC_LEVELS if level != "onet"}
        return OccupationMetrics(len(self.taxonomy), levels)

    def evaluate(self, similarity) -> dict[str, float]:
        """similarity(start, stop) → (rows, n_codes) scores of those test inputs."""
        metrics = self.metrics()
        for start in range(0, len(self.codes), self.chunk):
            stop = min(start + self.chunk, len(self.codes))
            metrics.update(similarity(start, stop), self.codes[start:stop])
        return metrics.compute()

    def per_code(self, title_scores: torch.Tensor) -> torch.Tensor:
        """(rows, n_train_titles) similarities → (rows, n_codes): each code's best title."""
        values = title_scores[:, self.pair_title]
        index = self.pair_code.expand(len(values), -1)
        out = torch.full((len(values), len(self.taxonomy)), float("-inf"))
        return out.scatter_reduce_(1, index, values, reduce="amax")


def encode(encoder: Encoder, tokenizer, texts: list[str], max_length: int,
           batch_size: int) -> torch.Tensor:
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return encoder.encode_ids(ids, tokenizer.pad_token_id, batch_size)


def encoder_rows(name: str, encoder: Encoder, tokenizer, categories: torch.Tensor, scorer: Scorer,
                 test_texts: list[str], train_texts: list[str], max_length: int,
                 batch_size: int, timings: list[str]) -> dict[str, dict[str, float]]:
    """Category-similarity and nearest-neighbour rows of one encoder (fp32)."""
    start = time.perf_counter()
    queries = encode(encoder, tokenizer, test_texts, max_length, batch_size)
    keys = encode(encoder, tokenizer, train_texts, max_length, batch_size)
    timings.append(f"{name}: encoding {len(test_texts):,} test + {len(train_texts):,} train "
                   f"titles {time.perf_counter() - start:.0f} s")
    return {
        f"{name} category similarity": scorer.evaluate(
            lambda a, b: queries[a:b] @ categories.T),
        f"{name} nearest-neighbour over training titles": scorer.evaluate(
            lambda a, b: scorer.per_code(queries[a:b] @ keys.T)),
    }


def load_run(run_dir: Path, taxonomy, data_cfg) -> tuple[Encoder, object, torch.Tensor, int, str]:
    """A run's exported encoder, tokenizer, category matrix and input length, plus a split note."""
    info = runs.RunInfo.load(run_dir)
    cache = CategoryCache.load(run_dir / runs.CACHE_FILE)
    if cache.codes != list(taxonomy.codes):
        raise OcclassError(f"{run_dir}: its category cache is for other codes than this taxonomy")
    trained = info.config["data"]
    differs = [k for k in SPLIT_KEYS if str(trained.get(k)) != str(data_cfg.get(k))]
    if Path(trained["data_dir"]).resolve() != Path(data_cfg.data_dir).resolve():
        differs.append("data_dir")
    note = (f"**the run's split settings differ ({', '.join(differs)}): its test split is not "
            f"this one**" if differs else "the run used this split")
    encoder = Encoder(run_dir / runs.ENCODER_DIR)
    tokenizer = load_tokenizer(run_dir / runs.ENCODER_DIR)
    return encoder, tokenizer, cache.embeddings.float(), info.max_input_length, note


def table(rows: dict[str, dict[str, float]], names: list[str]) -> str:
    """One row per method; one column per metric of `names` but precision and recall,
    accuracies first."""
    columns = sorted((n for n in names if not n.startswith(("precision", "recall"))),
                     key=lambda n: not n.endswith("accuracy"))
    lines = ["| method | " + " | ".join(metric_label(c) for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    lines += [f"| {method} | " + " | ".join(f"{values[c]:.4f}" for c in columns) + " |"
              for method, values in rows.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a training run folder: adds fine-tuned rows")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=256, help="encoding batch size")
    parser.add_argument("overrides", nargs="*", help="hydra overrides of conf/train.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began, at_start = time.perf_counter(), load()

    cfg = default_config(*args.overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    hp, taxonomy, examples = datamodule.hparams, datamodule.taxonomy, datamodule.examples
    test, train = datamodule.datasets["test"], examples[examples["split"] == "train"]
    scorer = Scorer(taxonomy, list(test["codes"]), train["codes"].tolist())
    test_texts, train_texts = list(test["text"]), train["text"].tolist()
    timings: list[str] = []

    encoder = Encoder(hp.tokenizer)
    start = time.perf_counter()
    categories = encoder.encode_ids(datamodule.categories.token_ids,
                                    datamodule.categories.pad_id, args.batch_size)
    timings.append(f"zero-shot: encoding {len(categories):,} categories "
                   f"{time.perf_counter() - start:.0f} s")
    rows = encoder_rows("zero-shot", encoder, datamodule.tokenizer, categories, scorer,
                        test_texts, train_texts, hp.max_input_length, args.batch_size, timings)

    start = time.perf_counter()
    tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True,
                            dtype=np.float32)
    train_vectors = tfidf.fit_transform(train_texts)
    test_vectors = tfidf.transform(test_texts)
    rows["TF-IDF char 2–4-gram nearest-neighbour over training titles"] = scorer.evaluate(
        lambda a, b: scorer.per_code(
            torch.from_numpy((test_vectors[a:b] @ train_vectors.T).toarray())))
    timings.append(f"TF-IDF: fit, transform and score {time.perf_counter() - start:.0f} s")

    run_note = ""
    if args.run:
        encoder, tokenizer, categories, max_length, split_note = load_run(args.run, taxonomy,
                                                                          cfg.data)
        rows.update(encoder_rows("fine-tuned", encoder, tokenizer, categories, scorer,
                                 test_texts, train_texts, max_length, args.batch_size, timings))
        run_note = (f" Fine-tuned rows: run `{args.run}` (exported encoder in fp32, its "
                    f"`{runs.CACHE_FILE}` as the category matrix; {split_note}).")

    n_pairs = sum(len(c) for c in test["codes"])
    config = (f"default data config (`conf/data/onet.yaml`"
              f"{', overrides ' + ' '.join(args.overrides) if args.overrides else ''}): "
              f"sources {list(hp.sources)}, split_seed {hp.split_seed}, test_fraction "
              f"{hp.test_fraction}; test split {len(test):,} titles ({n_pairs:,} title–code "
              f"pairs), {len(train):,} training titles, {len(taxonomy):,} codes. Zero-shot model "
              f"`{PACKAGED}` in fp32 (no autocast), inputs ≤ {hp.max_input_length} tokens, "
              f"category texts by recipe `{hp.recipe}` ≤ {hp.max_category_length} tokens. "
              f"TF-IDF: `TfidfVectorizer(analyzer=\"char_wb\", ngram_range=(2, 4), "
              f"sublinear_tf=True)` fit on the training titles.{run_note}")
    body = (f"## Baselines (test split)\n\n{preamble(config, at_start)}\n{table(rows, scorer.metrics().names)}\n\n"
            f"A title with several valid codes counts as correct when the prediction is any of "
            f"them. Timings: {'; '.join(timings)}; total {time.perf_counter() - began:.0f} s.\n")
    print(body)
    write_section("baselines", body)


if __name__ == "__main__":
    main()
