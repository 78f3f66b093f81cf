"""O*NET-SOC 2019 occupations: codes, titles, descriptions, SOC hierarchy and category texts."""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from occlass.errors import DataError

CODE_PATTERN = re.compile(r"^\d{2}-\d{4}\.\d{2}$")
# Prefix length of an O*NET-SOC code at each level of the SOC hierarchy.
SOC_LEVELS = {"major": 2, "minor": 5, "broad": 6, "detailed": 7, "onet": 10}
RECIPES = ("title", "title_description", "title_description_tasks")

OCCUPATIONS_FILE = "Occupation Data.txt"
TASKS_FILE = "Task Statements.txt"
CODE_COLUMN = "O*NET-SOC Code"


def soc_hierarchy(code: str) -> dict[str, str]:
    """The SOC groups of a code: major `15`, minor `15-12`, broad `15-125`, detailed `15-1252`."""
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        raise DataError(f"malformed O*NET-SOC code {code!r}: expected NN-NNNN.NN, e.g. 15-1252.00")
    return {level: code[:length] for level, length in SOC_LEVELS.items()}


def read_onet_table(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """Read a tab-delimited O*NET text file as strings, checking that `columns` are present.

    Adds a `line` column (1-based line number in the file, header = line 1) for error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (run `make data`, or set data.data_dir)")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        frame = pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE,
            encoding="utf-8",
        )
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: cannot parse as {'comma' if sep == ',' else 'tab'}-delimited "
                        f"text: {err}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    frame = frame[columns].copy()
    for column in columns:
        frame[column] = frame[column].str.strip()
    frame["line"] = range(2, len(frame) + 2)
    return frame


def check_codes(frame: pd.DataFrame, path: str | Path, known: set[str] | None = None,
                column: str = CODE_COLUMN) -> None:
    """Raise a DataError naming the first row whose code is malformed or not in `known`."""
    bad = ~frame[column].str.match(CODE_PATTERN.pattern)
    if bad.any():
        row = frame[bad].iloc[0]
        raise DataError(f"{path}, line {row['line']}: malformed O*NET-SOC code {row[column]!r} "
                        f"(expected NN-NNNN.NN); {int(bad.sum())} such row(s)")
    if known is not None:
        unknown = ~frame[column].isin(known)
        if unknown.any():
            row = frame[unknown].iloc[0]
            raise DataError(f"{path}, line {row['line']}: code {row[column]!r} is not an "
                            f"occupation of this taxonomy; {int(unknown.sum())} such row(s)")


@dataclass(frozen=True)
class Taxonomy:
    """The occupations of one O*NET release, in file order."""

    codes: list[str]
    titles: list[str]
    descriptions: list[str]
    version: str
    tasks: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: str | Path, with_tasks: bool = False) -> Taxonomy:
        data_dir = Path(data_dir)
        path = data_dir / OCCUPATIONS_FILE
        frame = read_onet_table(path, [CODE_COLUMN, "Title", "Description"])
        check_codes(frame, path)
        duplicated = frame[CODE_COLUMN].duplicated()
        if duplicated.any():
            row = frame[duplicated].iloc[0]
            raise DataError(f"{path}, line {row['line']}: duplicate code {row[CODE_COLUMN]!r}")
        empty = frame["Title"] == ""
        if empty.any():
            raise DataError(f"{path}, line {frame[empty].iloc[0]['line']}: empty occupation title")
        tasks = load_tasks(data_dir / TASKS_FILE, set(frame[CODE_COLUMN])) if with_tasks else {}
        return cls(
            codes=frame[CODE_COLUMN].tolist(),
            titles=frame["Title"].tolist(),
            descriptions=frame["Description"].tolist(),
            version=read_version(data_dir),
            tasks=tasks,
        )

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def index(self) -> dict[str, int]:
        """Code → row of the category matrix."""
        return {code: i for i, code in enumerate(self.codes)}

    @property
    def fingerprint(self) -> str:
        """Identity of the label space: a checksum of the ordered codes."""
        return hashlib.sha256("\n".join(self.codes).encode()).hexdigest()[:16]

    def category_texts(self, recipe: str = "title_description", n_tasks: int = 3) -> list[str]:
        """The text that represents each occupation, by recipe.

        - `title`: "Software Developers"
        - `title_description`: "Software Developers. Research, design, and develop ..."
        - `title_description_tasks`: the above followed by the first `n_tasks` core task statements
        """
        if recipe not in RECIPES:
            raise ValueError(f"unknown category-text recipe {recipe!r}; choose one of {RECIPES}")
        if recipe == "title_description_tasks" and not self.tasks:
            raise ValueError("recipe 'title_description_tasks' needs a taxonomy loaded with tasks")
        texts = []
        for code, title, description in zip(self.codes, self.titles, self.descriptions):
            parts = [title]
            if recipe != "title" and description:
                parts.append(description)
            if recipe == "title_description_tasks":
                parts.extend(self.tasks.get(code, [])[:n_tasks])
            texts.append(". ".join(p.rstrip(".") for p in parts) + ("." if len(parts) > 1 else ""))
        return texts


def load_tasks(path: Path, known: set[str]) -> dict[str, list[str]]:
    """Task statements per code, core tasks first, in file order within each type."""
    frame = read_onet_table(path, [CODE_COLUMN, "Task", "Task Type"])
    check_codes(frame, path, known)
    frame = frame[frame["Task"] != ""]
    frame = frame.assign(rank=(frame["Task Type"] != "Core").astype(int))
    frame = frame.sort_values(["rank", "line"], kind="stable")
    return frame.groupby(CODE_COLUMN, sort=False)["Task"].agg(list).to_dict()


def read_version(data_dir: Path) -> str:
    """The release number from `Read Me.txt` ("O*NET 29.3 Database"), else the folder name."""
    readme = data_dir / "Read Me.txt"
    if readme.is_file():
        match = re.search(r"O\*NET\s+(\d+\.\d+)", readme.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match.group(1)
    return data_dir.name
