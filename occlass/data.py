"""Title→code examples from O*NET (and user files), grouped splits, and the pair DataModule."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import datasets
import lightning as L
import pandas as pd
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, RandomSampler

from occlass.category_cache import Categories
from occlass.encoder import load_tokenizer
from occlass.errors import DataError
from occlass.tabular_io import read_chunks
from occlass.taxonomy import CODE_COLUMN, Taxonomy, check_codes, read_onet_table
from occlass.text import input_text, normalize_title

log = logging.getLogger(__name__)
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# source name → (file, title column); the occupation titles come from the taxonomy itself.
ONET_SOURCES = {
    "alternate": ("Alternate Titles.txt", "Alternate Title"),
    "short": ("Alternate Titles.txt", "Short Title"),
    "reported": ("Sample of Reported Titles.txt", "Reported Job Title"),
}
SOURCES = ("title", *ONET_SOURCES)
SPLITS = ("train", "val", "test")


def load_pairs(data_dir: str | Path, taxonomy: Taxonomy, sources: Sequence[str] = SOURCES,
               extra_files: str | os.PathLike | Sequence[str | os.PathLike] = ()) -> pd.DataFrame:
    """All (title, description, code, source) rows of the chosen sources; empty titles dropped.
    `extra_files` is a list of labelled files, or one file."""
    if isinstance(extra_files, (str, os.PathLike)):  # data.extra_files=mine.csv, not [mine.csv]
        extra_files = [extra_files]
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown title source(s) {sorted(unknown)}; choose from {SOURCES}")
    frames = []
    if "title" in sources:
        frames.append(pd.DataFrame({"title": taxonomy.titles, "code": taxonomy.codes,
                                    "source": "title"}))
    known = set(taxonomy.codes)
    for source in [s for s in sources if s in ONET_SOURCES]:
        file, column = ONET_SOURCES[source]
        path = Path(data_dir) / file
        frame = read_onet_table(path, [CODE_COLUMN, column])
        check_codes(frame, path, known)
        frame = frame[frame[column] != ""]  # most alternate titles have no short title
        frames.append(pd.DataFrame({"title": frame[column], "code": frame[CODE_COLUMN],
                                    "source": source}))
    frames.extend(load_labelled_file(path, known) for path in extra_files)
    pairs = pd.concat(frames, ignore_index=True)
    if "description" not in pairs:
        pairs["description"] = ""
    pairs["description"] = pairs["description"].fillna("")
    return pairs[["title", "description", "code", "source"]]


def load_labelled_file(path: str | Path, known: set[str]) -> pd.DataFrame:
    """A user CSV/JSONL/Parquet of labelled examples: `title`, optional `description`, `code`."""
    chunks = read_chunks(path, required=("title", "code"), dtype_str=True, line_column="line")
    frame = pd.concat(list(chunks), ignore_index=True)
    frame["code"] = frame["code"].fillna("").str.strip()
    check_codes(frame, path, known, column="code")
    title = frame["title"].fillna("").str.strip()
    if (title == "").any():
        log.warning("%s: dropped %d row(s) with an empty title", path, int((title == "").sum()))
    description = frame.get("description", pd.Series("", index=frame.index)).fillna("")
    keep = title != ""
    return pd.DataFrame({"title": title[keep], "description": description[keep].str.strip(),
                         "code": frame["code"][keep], "source": Path(path).stem})


def group_examples(pairs: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """One row per distinct input (normalised title + description) with every code it is given.

    Columns: key (normalised title), text, codes (category indices), sources.
    """
    index = taxonomy.index
    pairs = pairs.assign(key=pairs["title"].map(normalize_title),
                         label=pairs["code"].map(index),
                         text=[input_text(t, d) for t, d in zip(pairs["title"], pairs["description"])])
    pairs = pairs[pairs["key"] != ""]
    grouped = pairs.groupby(["key", "description"], sort=True).agg(
        text=("text", "first"),
        codes=("label", lambda s: sorted(set(s))),
        sources=("source", lambda s: sorted(set(s))),
    )
    return grouped.reset_index()[["key", "text", "codes", "sources"]]


def assign_splits(examples: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
                  anchor_sources: Sequence[str] = ("title",)) -> pd.Series:
    """Split by normalised title, so no title is in two splits (a hash, so stable as data grows).

    A title that is also an occupation's own title (an `anchor_sources` title) stays in train:
    it is part of the category text, so testing on it measures nothing.
    """
    def bucket(key: str) -> float:
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    share = examples["key"].map(bucket)
    split = pd.Series("train", index=examples.index)
    split[share < val_fraction + test_fraction] = "val"
    split[share < test_fraction] = "test"
    anchored = examples["sources"].map(lambda s: bool(set(s) & set(anchor_sources)))
    split[examples["key"].isin(examples.loc[anchored, "key"])] = "train"
    return split


def summarize(pairs: pd.DataFrame, examples: pd.DataFrame) -> str:
    """Markdown tables: pairs per source, and examples/pairs/codes per split."""
    lines = ["| source | pairs |", "|---|---:|"]
    lines += [f"| {s} | {n:,} |" for s, n in pairs["source"].value_counts(sort=False).items()]
    lines += [f"| **all** | {len(pairs):,} |", "", "| split | titles | pairs | codes covered |",
              "|---|---:|---:|---:|"]
    for split in SPLITS:
        part = examples[examples["split"] == split]
        codes = part["codes"].explode()
        lines.append(f"| {split} | {len(part):,} | {len(codes):,} | {codes.nunique():,} |")
    return "\n".join(lines)


class EpochSampler(RandomSampler):
    """Shuffles like Lightning's DDP `DistributedSampler` (permutation seeded by seed + epoch).

    One process thus sees the same global batches as DDP does (rank r takes perm[r::world]) and a
    resumed run repeats the order of an uninterrupted one. Under DDP, Lightning replaces it (it is
    a `RandomSampler`) by `DistributedSampler(shuffle=True, seed=PL_GLOBAL_SEED)`.
    """

    def __init__(self, data_source, seed: int = 0):
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class PairCollator:
    """Pads titles; in training, also pads the texts of the batch's distinct categories (once each)."""

    def __init__(self, tokenizer, category_ids: list[list[int]] | None = None):
        self.tokenizer = tokenizer
        self.category_ids = category_ids

    def pad(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer.pad({"input_ids": ids}, return_tensors="pt"))

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = {
            "title": self.pad([r["input_ids"] for r in rows]),
            "codes": pad_sequence([torch.tensor(r["codes"]) for r in rows], batch_first=True,
                                  padding_value=-1),
        }
        if self.category_ids is not None:
            batch["label"] = torch.tensor([r["label"] for r in rows])
            batch["category_index"] = torch.unique(batch["label"])
            batch["category"] = self.pad([self.category_ids[i] for i in batch["category_index"]])
        return batch


class TitlePairDataModule(L.LightningDataModule):
    """Feeds (input text, category) pairs for training and (input, valid codes) for evaluation.

    Categories are tokenised once; a batch carries each distinct category text once, and the
    loss masks every category that is valid for a title but is not its target.
    """

    def __init__(self, data_dir: str, tokenizer: str, sources: Sequence[str] = SOURCES,
                 extra_files: str | Sequence[str] = (), recipe: str = "title_description",
                 n_tasks: int = 3, val_fraction: float = 0.05, test_fraction: float = 0.1,
                 split_seed: int = 0, batch_size: int = 128, eval_batch_size: int = 512,
                 max_input_length: int = 32, max_category_length: int = 64,
                 num_workers: int = 0, limit_eval_examples: int | None = None,
                 shuffle_seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self._taxonomy: Taxonomy | None = None
        self._tokenizer = None
        self._categories: Categories | None = None
        self.examples: pd.DataFrame | None = None
        self.datasets: dict[str, datasets.Dataset] = {}

    @property
    def taxonomy(self) -> Taxonomy:
        """The O*NET release in `data_dir` (loaded once)."""
        if self._taxonomy is None:
            data_dir = Path(self.hparams.data_dir)
            if not data_dir.is_dir():
                raise DataError(f"{data_dir}: O*NET data folder not found (run `make data`)")
            self._taxonomy = Taxonomy.load(data_dir,
                                           with_tasks=self.hparams.recipe.endswith("tasks"))
        return self._taxonomy

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.hparams.tokenizer)
        return self._tokenizer

    @property
    def categories(self) -> Categories:
        """The occupations as category texts, tokenised: what the model scores against."""
        if self._categories is None:
            hp = self.hparams
            self._categories = Categories.from_taxonomy(self.taxonomy, self.tokenizer, hp.recipe,
                                                        hp.n_tasks, hp.max_category_length)
        return self._categories

    def load_examples(self) -> pd.DataFrame:
        """Pairs and split assignment, without tokenising (cheap, for summaries)."""
        hp = self.hparams
        if self.examples is None:
            self.pairs = load_pairs(hp.data_dir, self.taxonomy, hp.sources, hp.extra_files)
            examples = group_examples(self.pairs, self.taxonomy)
            examples["split"] = assign_splits(examples, hp.val_fraction, hp.test_fraction,
                                              hp.split_seed)
            self.examples = examples
        return self.examples

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        examples = self.load_examples()
        for split in SPLITS:
            part = examples[examples["split"] == split][["text", "codes"]]
            if split == "train":
                part = part.assign(label=part["codes"]).explode("label")
                part["label"] = part["label"].astype(int)
            elif hp.limit_eval_examples:
                part = part.sample(min(len(part), hp.limit_eval_examples), random_state=0)
            dataset = datasets.Dataset.from_pandas(part.reset_index(drop=True))
            self.datasets[split] = dataset.map(
                lambda b: self.tokenizer(b["text"], truncation=True,
                                         max_length=hp.max_input_length),
                batched=True, batch_size=2048, desc=f"tokenising {split}")
        log.info("splits:\n%s", summarize(self.pairs, examples))

    def train_dataloader(self) -> DataLoader:
        train = self.datasets["train"]
        return DataLoader(train, batch_size=self.hparams.batch_size, drop_last=True,
                          sampler=EpochSampler(train, self.hparams.shuffle_seed),
                          num_workers=self.hparams.num_workers,
                          collate_fn=PairCollator(self.tokenizer, self.categories.token_ids))

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=self.hparams.eval_batch_size,
                          num_workers=self.hparams.num_workers,
                          collate_fn=PairCollator(self.tokenizer))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


def main(argv: list[str] | None = None) -> None:
    """Print pairs per source and split sizes: `python -m occlass.data [hydra overrides]`."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=sys.argv[1:] if argv is None else argv)
    datamodule = instantiate(cfg.data)
    examples = datamodule.load_examples()
    print(summarize(datamodule.pairs, examples))


if __name__ == "__main__":
    from occlass.cli import run_cli

    run_cli(main)
