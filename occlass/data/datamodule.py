"""The pair DataModule: training batches (input, category, partner title) and evaluation
batches (input, valid codes) from the labelled titles of `occlass.data.examples`."""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets
import lightning as L
import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from occlass.data.categories import Categories
from occlass.data.examples import (
    SOURCES,
    SPLITS,
    Exemplars,
    assign_splits,
    exemplars_of,
    group_examples,
    load_pairs,
    summarize,
)
from occlass.data.soc import Level, load_levels
from occlass.data.taxonomy import Taxonomy
from occlass.data.tokenizer import load_tokenizer
from occlass.errors import DataError

log = logging.getLogger(__name__)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

class EpochSampler(RandomSampler):
    """Shuffles like Lightning's DDP `DistributedSampler` (permutation seeded by seed + epoch).

    One process thus sees the same global batches as DDP does (rank r takes perm[r::world]) and a
    resumed run repeats the order of an uninterrupted one. Under DDP, the training loader takes
    `DistributedSampler(shuffle=True, seed, drop_last=True)` instead.
    """

    def __init__(self, data_source, seed: int = 0):
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0
        self.skip = 0  # positions to pass over once: the part of an epoch a resumed run trained on

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        skip, self.skip = self.skip, 0
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()[skip:]


class ResumableLoader(DataLoader):
    """The training loader over an `EpochSampler`, resumable mid-epoch: its state (epoch, batches
    served) goes into each checkpoint, and a run resumed from a checkpoint taken mid-epoch is
    served the rest of that epoch, in the order of an uninterrupted run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = 0
        self.resume: dict | None = None

    def __iter__(self):
        resume, self.resume = self.resume, None
        self.served = 0
        if resume and resume["epoch"] == self.sampler.epoch and resume["batches"] < len(self):
            self.served = resume["batches"]
            self.sampler.skip = self.served * self.batch_size
        for batch in super().__iter__():
            self.served += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches": self.served}

    def load_state_dict(self, state: dict) -> None:
        self.resume = state


class PairCollator:
    """Evaluation: pads the tokenised inputs (and passes on validation's `choose` flags).
    Training (given `category_ids`): tokenises the
    inputs, each possibly made noisy by `noise`, and, with `partners` (the training titles of
    each code), draws for each input another title of its code; pads the texts of the batch's
    distinct categories (once each)."""

    def __init__(self, tokenizer, category_ids: list[list[int]] | None = None,
                 max_length: int = 32, partners: list[list[str]] | None = None,
                 noise: Callable[[str, random.Random], str] | None = None):
        self.tokenizer = tokenizer
        self.category_ids = category_ids
        self.max_length = max_length
        self.partners = partners
        self.noise = noise

    def pad(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer.pad({"input_ids": ids}, return_tensors="pt"))

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        codes = pad_sequence([torch.tensor(r["codes"]) for r in rows], batch_first=True,
                             padding_value=-1)
        if self.category_ids is None:
            batch = {"title": self.pad([r["input_ids"] for r in rows]), "codes": codes}
            if "choose" in rows[0]:
                batch["choose"] = torch.tensor([r["choose"] for r in rows])
            return batch
        # Seeded by the batch itself (which the epoch's shuffle decides), so that a resumed run
        # draws what an uninterrupted one does. (Under DDP, by each rank's share of it.)
        rng = random.Random("\0".join(r["text"] for r in rows))
        noisy = self.noise or (lambda text, _: text)
        batch = {"title": self.tokenize([noisy(r["text"], rng) for r in rows]), "codes": codes,
                 "label": torch.tensor([r["label"] for r in rows])}
        if self.partners is not None:
            batch["partner"] = self.tokenize([noisy(self.partner(r, rng), rng) for r in rows])
        batch["category_index"] = torch.unique(batch["label"])
        batch["category"] = self.pad([self.category_ids[i] for i in batch["category_index"]])
        return batch

    def partner(self, row: dict, rng: random.Random) -> str:
        """Another training title of the row's code (the row's own if it is the only one)."""
        pool = self.partners[row["label"]]
        others = len(pool) - (row["text"] in pool)
        if others <= 0:
            return row["text"]
        choice = pool[rng.randrange(len(pool))]
        while choice == row["text"]:
            choice = pool[rng.randrange(len(pool))]
        return choice


class TitlePairDataModule(L.LightningDataModule):
    """Feeds (input text, category) pairs for training and (input, valid codes) for evaluation.

    Categories are tokenised once; a batch carries each distinct category text once, and the
    loss masks every category that is valid for a title but is not its target.
    """

    def __init__(self, data_dir: str, tokenizer: str, sources: Sequence[str] = SOURCES,
                 extra_files: str | Sequence[str] = (), recipe: str = "title_description",
                 n_tasks: int = 3, val_fraction: float = 0.05, test_fraction: float = 0.1,
                 split_seed: int = 0, holdout: str = "splits", batch_size: int = 128,
                 eval_batch_size: int = 512, max_input_length: int = 32,
                 max_category_length: int = 64, title_pairs: bool = True,
                 noise: Callable[[str, random.Random], str] | None = None,
                 num_workers: int = 0, limit_eval_examples: int | None = None,
                 shuffle_seed: int = 0, fold: int | None = None, folds: int | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["noise"])
        self.noise = noise
        self.train_loader: ResumableLoader | None = None
        self.resume: dict | None = None  # the training loader's state in the checkpoint resumed
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

    @property
    def levels(self) -> list[Level]:
        """The SOC 2018 groups of the occupations (`occlass.data.soc`), for SOC-level metrics."""
        return load_levels(self.taxonomy, self.hparams.data_dir)

    def load_examples(self) -> pd.DataFrame:
        """Pairs and split assignment, without tokenising (cheap, for summaries)."""
        hp = self.hparams
        if self.examples is None:
            self.pairs = load_pairs(hp.data_dir, self.taxonomy, hp.sources, hp.extra_files)
            examples = group_examples(self.pairs, self.taxonomy)
            examples["split"] = assign_splits(examples, hp.val_fraction, hp.test_fraction,
                                              hp.split_seed, holdout=hp.holdout,
                                              fold=hp.fold, folds=hp.folds)
            self.examples = examples
        return self.examples

    def exemplars(self, splits: Sequence[str] = ("train",)) -> Exemplars:
        """The titles of `splits` with their codes, tokenised: the exemplar memory. Evaluation
        uses the training titles only; the exported run every title."""
        return exemplars_of(self.load_examples(), splits, self.tokenizer,
                            self.hparams.max_input_length)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        examples = self.load_examples()
        for split in SPLITS:
            part = examples[examples["split"] == split][["text", "codes"]]
            if split == "train":  # tokenised per batch, after the noise
                part = part.assign(label=part["codes"]).explode("label")
                part["label"] = part["label"].astype(int)
                self.datasets[split] = datasets.Dataset.from_pandas(part.reset_index(drop=True))
                continue
            if hp.limit_eval_examples:
                part = part.sample(min(len(part), hp.limit_eval_examples), random_state=0)
            part = part.reset_index(drop=True)
            if split == "val":  # every other title chooses the fusion weight, the rest measure
                part["choose"] = part.index % 2 == 0
            dataset = datasets.Dataset.from_pandas(part)
            self.datasets[split] = dataset.map(
                lambda b: self.tokenizer(b["text"], truncation=True,
                                         max_length=hp.max_input_length),
                batched=True, batch_size=2048, desc=f"tokenising {split}")
        log.info("splits:\n%s", summarize(self.pairs, examples))

    def partners(self) -> list[list[str]]:
        """The training titles of each code (the title-to-title pairs are drawn from them)."""
        train = self.datasets["train"]
        pools: list[list[str]] = [[] for _ in range(len(self.taxonomy))]
        for text, label in zip(train["text"], train["label"]):
            pools[label].append(text)
        return pools

    def train_dataloader(self) -> DataLoader:
        train = self.datasets["train"]
        seed = self.hparams.shuffle_seed
        collate = PairCollator(self.tokenizer, self.categories.token_ids,
                               self.hparams.max_input_length,
                               self.partners() if self.hparams.title_pairs else None, self.noise)
        options = {"batch_size": self.hparams.batch_size, "drop_last": True,
                   "num_workers": self.hparams.num_workers, "collate_fn": collate}
        # Under DDP without Lightning's padding (a repeated title, to a multiple of the ranks):
        # that gave one step more than one process takes where the titles left a last batch of
        # world × batch_size - 1, which one process drops.
        if dist.is_available() and dist.is_initialized():
            return DataLoader(train, sampler=DistributedSampler(
                train, shuffle=True, seed=seed, drop_last=True), **options)
        self.train_loader = ResumableLoader(train, sampler=EpochSampler(train, seed), **options)
        self.train_loader.resume = self.resume
        return self.train_loader

    # The training loader's state, kept by the DataModule: Lightning restores a loader's own state
    # only into a loader built after the restore, and ours is built before (to count the steps).
    def state_dict(self) -> dict:
        return {"train_loader": self.train_loader.state_dict()} if self.train_loader else {}

    def load_state_dict(self, state: dict) -> None:
        self.resume = state.get("train_loader")
        if self.train_loader:
            self.train_loader.resume = self.resume

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

