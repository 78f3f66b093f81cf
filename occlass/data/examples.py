"""Labelled titles: O*NET's own lists and the user's files, grouped by normalised title, and
their leak-free splits (no Lightning: prediction loads them too).

Every surface form of one entry goes to one split: an alternate title and its short title (one
row of `Alternate Titles.txt`), and twin titles (`twin_keys`: equal after `surface_key` — plural,
word order, stop words —, or but for spaces, hyphens and apostrophes, or but for a known
abbreviation, or a parenthesised part of a title of the same code) form one group, and a group
is split as a whole."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from occlass.data.augment import ABBREVIATIONS
from occlass.data.tabular_io import read_chunks
from occlass.data.taxonomy import CODE_COLUMN, Taxonomy, check_codes, read_onet_table
from occlass.data.text import STOP_WORDS, input_text, normalize_title, singular, surface_key

log = logging.getLogger(__name__)

# source name → (file, title column); the occupation titles come from the taxonomy itself.
ALTERNATES = "Alternate Titles.txt"
ONET_SOURCES = {
    "alternate": (ALTERNATES, "Alternate Title"),
    "short": (ALTERNATES, "Short Title"),
    "reported": ("Sample of Reported Titles.txt", "Reported Job Title"),
}
SOURCES = ("title", *ONET_SOURCES)
SPLITS = ("train", "val", "test", "reported")
REPORTED_ONLY = "02"  # Alternate Titles' Source(s) code of titles reported by workers
HOLDOUTS = ("splits", "none")


def load_pairs(data_dir: str | Path, taxonomy: Taxonomy, sources: Sequence[str] = SOURCES,
               extra_files: str | os.PathLike | Sequence[str | os.PathLike] = ()) -> pd.DataFrame:
    """All (title, description, code, source, reported_only, entry) rows of the chosen sources;
    empty titles dropped. `extra_files` is a list of labelled files, or one file. `reported_only`
    marks the rows that only workers reported: reported titles, and alternate titles whose only
    source is the reported titles. `entry` names the row of `Alternate Titles.txt` that an
    alternate or short title comes from ("" for the other sources)."""
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
        origin = ["Source(s)"] if source == "alternate" else []
        frame = read_onet_table(path, [CODE_COLUMN, column, *origin])
        check_codes(frame, path, known)
        entry = (f"{file}:" + frame.index.astype(str)) if file == ALTERNATES else ""
        keep = frame[column] != ""  # most alternate titles have no short title
        reported = (frame["Source(s)"] == REPORTED_ONLY) if origin else source == "reported"
        frames.append(pd.DataFrame({"title": frame[column], "code": frame[CODE_COLUMN],
                                    "source": source, "reported_only": reported,
                                    "entry": entry})[keep])
    frames.extend(load_labelled_file(path, known) for path in extra_files)
    pairs = pd.concat(frames, ignore_index=True)
    if "description" not in pairs:
        pairs["description"] = ""
    pairs["description"] = pairs["description"].fillna("")
    pairs["reported_only"] = pairs.get("reported_only", False)
    pairs["reported_only"] = pairs["reported_only"].fillna(False).astype(bool)
    pairs["entry"] = pairs.get("entry", "")
    pairs["entry"] = pairs["entry"].fillna("")
    return pairs[["title", "description", "code", "source", "reported_only", "entry"]]


def load_labelled_file(path: str | Path, known: set[str], lines: bool = False) -> pd.DataFrame:
    """A user CSV/JSONL/Parquet of labelled examples: `title`, optional `description`, `code`
    (and, with `lines`, the `line` each row starts on)."""
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
                         "code": frame["code"][keep], "source": Path(path).stem,
                         **({"line": frame["line"][keep]} if lines else {})})


def group_examples(pairs: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """One row per distinct input (normalised title + description) with every code it is given.

    Columns: key (normalised title), title (as first written), text, codes (category
    indices), sources, reported_only (every row of it only reported by workers), group (the
    inputs that are surface forms of one another, which a split keeps together).
    """
    index = taxonomy.index
    pairs = pairs.assign(key=pairs["title"].map(normalize_title),
                         label=pairs["code"].map(index),
                         text=[input_text(t, d) for t, d in zip(pairs["title"], pairs["description"])])
    pairs = pairs[pairs["key"] != ""]
    grouped = pairs.groupby(["key", "description"], sort=True).agg(
        title=("title", "first"),
        text=("text", "first"),
        codes=("label", lambda s: sorted(set(s))),
        sources=("source", lambda s: sorted(set(s))),
        reported_only=("reported_only", "all"),
        entries=("entry", lambda s: sorted(set(s) - {""})),
    )
    grouped = grouped.reset_index()
    grouped["reported_only"] &= grouped["sources"].map(lambda s: "reported" in s)
    grouped["group"] = surface_groups(grouped)
    return grouped[["key", "title", "text", "codes", "sources", "reported_only", "group"]]


# Each full form and abbreviation the training noise knows → one short form ("senior", "sr" → "sr").
_SHORT_FORMS = {normalize_title(form): normalize_title(short[0])
                for full, short in ABBREVIATIONS.items() for form in (full, *short)}
_SHORT_FORM_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _SHORT_FORMS), key=len,
                                                       reverse=True)) + r")\b")
_PARENTHESISED = re.compile(r"\(([^()]*)\)")


def twin_keys(title: str, codes: Sequence[int]) -> list[str]:
    """The keys that make titles twins (one group, one split): the `surface_key`; the title
    squashed (no spaces, hyphens or apostrophes: "Co-Pilot", "Copilot"); the surface key with the
    abbreviations the training noise knows written one way ("Sr. Acct", "Senior Accountant");
    and, per code, the title without its parenthesised part and that part alone ("Registered
    Nurse (RN)" is a twin of "Registered Nurse" and of "RN" when they share a code)."""
    words = [singular(w) for w in normalize_title(re.sub(r"['’]", "", title)).split()]
    squashed = "".join(w for w in words if w not in STOP_WORDS) or "".join(words)
    short = surface_key(_SHORT_FORM_RE.sub(lambda m: _SHORT_FORMS[m[1]], " ".join(words)))
    parts = {_PARENTHESISED.sub(" ", title), *_PARENTHESISED.findall(title)}
    parts = {surface_key(p) for p in parts if normalize_title(p)}
    return [f"surface:{surface_key(title)}", f"squashed:{squashed}", f"short:{short}",
            *(f"part:{code}:{p}" for code in codes for p in sorted(parts))]


def surface_groups(examples: pd.DataFrame) -> list[str]:
    """Each example's group: connected through a shared twin key (`twin_keys` of its title) or
    a shared entry (an alternate title and its short title), named by the group's smallest
    surface key."""
    parent = list(range(len(examples)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, (title, codes, entries) in enumerate(zip(examples["title"], examples["codes"],
                                                    examples["entries"])):
        for link in (*twin_keys(title, codes), *entries):
            j = first.setdefault(link, i)
            parent[root(i)] = root(j)
    name: dict[int, str] = {}
    for i, key in enumerate(surface_key(t) for t in examples["key"]):
        r = root(i)
        name[r] = min(name.get(r, key), key)
    return [name[root(i)] for i in range(len(examples))]


def assign_splits(examples: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
                  anchor_sources: Sequence[str] = ("title",), holdout: str = "splits",
                  fold: int | None = None, folds: int | None = None) -> pd.Series:
    """Split by group of surface forms (`group_examples`), so no title, nor a plural, reordering
    or short form of it, is in two splits (a hash of the group, so stable as data grows).

    A group holding an occupation's own title (an `anchor_sources` title) stays in train: it is
    part of the category text, so testing on it measures nothing. A group holding a title only
    reported by workers forms, whole, the "reported" split, the closest stand-in for real
    inputs. With `holdout` "none", every title trains (the final model, once settings are
    chosen).

    Grouped k-fold cross-validation: with `folds` K and `fold` k (0 ≤ k < K), the test split is
    the titles whose hash falls in the k-th of K equal intervals (`test_fraction` is unused), so
    each title that may be tested is tested in exactly one fold; validation is `val_fraction` of
    the other titles (those just after fold k, by the same hash).
    """
    if holdout not in HOLDOUTS:
        raise ValueError(f"unknown holdout {holdout!r}; choose one of {HOLDOUTS}")
    if (fold is None) != (folds is None):
        raise ValueError(f"fold={fold}, folds={folds}: give both (fold k of K folds) or neither")
    if folds is not None and not (folds >= 2 and 0 <= fold < folds):
        raise ValueError(f"fold={fold}, folds={folds}: need 2 or more folds and 0 <= fold < folds")
    if holdout == "none":
        if folds is not None:
            raise ValueError("holdout 'none' trains on every title: no test split to fold")
        return pd.Series("train", index=examples.index)
    def digest(key: str) -> int:
        return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")

    groups = examples["group"] if "group" in examples else examples["key"]
    hashes = [digest(group) for group in groups]  # Python ints: exact arithmetic
    share = pd.Series([h / 2**64 for h in hashes], index=examples.index, dtype=float)
    if folds is None:
        test = share < test_fraction
        val = share < val_fraction + test_fraction
    else:
        test = pd.Series([h * folds >> 64 == fold for h in hashes], index=examples.index,
                         dtype=bool)
        rest = (share - (fold + 1) / folds) % 1.0  # outside fold k: in [0, 1 - 1/K)
        val = rest < val_fraction * (1 - 1 / folds)
    split = pd.Series("train", index=examples.index)
    split[val] = "val"
    split[test] = "test"
    split[groups.isin(groups[examples["reported_only"]])] = "reported"
    anchored = examples["sources"].map(lambda s: bool(set(s) & set(anchor_sources)))
    split[groups.isin(groups[anchored])] = "train"
    return split


def reported_for_fitting(examples: pd.DataFrame, seed: int = 0) -> pd.Series:
    """Where a row is in the fitting half of the "reported" split (the rest of it is the
    evaluation half): half of its groups, by a seeded hash, so a group is in one half. The
    fitting half is one of the kinds the confidence model is fitted on (never trained on); the
    evaluation half is what reported figures use."""
    groups = examples["group"] if "group" in examples else examples["title"]
    half = [hashlib.sha256(f"reported half:{seed}:{g}".encode()).digest()[0] < 128
            for g in groups]
    return (examples["split"] == "reported") & pd.Series(half, index=examples.index)


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


def split_examples(data: dict, data_dir: str | Path, taxonomy: Taxonomy) -> pd.DataFrame:
    """The grouped examples with their split, as a run's data config (`RunInfo.config["data"]`)
    made them."""
    pairs = load_pairs(data_dir, taxonomy, data["sources"], data.get("extra_files") or [])
    examples = group_examples(pairs, taxonomy)
    examples["split"] = assign_splits(examples, data["val_fraction"], data["test_fraction"],
                                      data["split_seed"], holdout=data.get("holdout", "splits"),
                                      fold=data.get("fold"), folds=data.get("folds"))
    return examples


@dataclass(frozen=True)
class Exemplars:
    """Labelled titles as the encoder sees them: texts, category indices and token ids."""

    titles: list[str]
    labels: list[int]
    token_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.titles)


def exemplars_of(examples, splits, tokenizer, max_length: int) -> Exemplars:
    """The titles of `splits` among grouped examples (`group_examples`), once per code,
    tokenised."""
    part = examples[examples["split"].isin(splits)].explode("codes")
    ids = tokenizer(list(part["title"]), truncation=True, max_length=max_length)["input_ids"]
    return Exemplars(list(part["title"]), [int(c) for c in part["codes"]], ids)
