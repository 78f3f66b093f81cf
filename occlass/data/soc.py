"""The 2018 SOC structure (major, minor, broad groups and detailed occupations, with their titles)
and the groups an O*NET-SOC 2019 occupation belongs to at each level.

An O*NET-SOC code begins with its SOC 2018 detailed code (`15-1252.00` → `15-1252`); its groups
follow SOC's coding: broad group `15-1250` (the one broad group spanning two tens is `29-1210`,
which holds `29-1211` ... `29-1229`), minor group `15-1200` or else `15-1000` (`11-3111` is in
`11-3000`), major group `15-0000`. Each must be in the structure, read from
`soc-2018/soc_structure_2018.csv` beside the O*NET folder (`make data` puts it there): a
structure with a group deleted or a code twice is refused, never coded into a neighbour.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occlass.data.taxonomy import Taxonomy
from occlass.errors import DataError

SOC_FOLDER = "soc-2018"
SOC_FILE = "soc_structure_2018.csv"
SOC_GROUPS = ("major", "minor", "broad", "detailed")
# Coded levels, finest first: the O*NET-SOC occupation, then its SOC 2018 groups.
LEVELS = ("onet", "detailed", "broad", "minor", "major")
SPANNING_BROAD = {"29-122": "29-1210"}  # SOC 2018: physicians 29-1221 ... 29-1229
LEVEL_NAMES = {"onet": "O*NET-SOC occupation", "detailed": "SOC occupation",
               "broad": "broad group", "minor": "minor group", "major": "major group"}


def soc_path(data_dir: str | Path) -> Path:
    """Where the SOC structure of the O*NET release in `data_dir` is read from."""
    return Path(data_dir).absolute().parent / SOC_FOLDER / SOC_FILE


@dataclass(frozen=True)
class SocStructure:
    """Every SOC 2018 code with its level and title, in code order."""

    codes: list[str]
    levels: list[str]
    titles: list[str]
    path: str = SOC_FILE

    @classmethod
    def load(cls, path: str | Path) -> SocStructure:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: SOC 2018 structure not found (run `make data`; it is "
                            "read from soc-2018/ beside the O*NET folder)")
        try:
            with path.open(encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None
        if not rows or not {"code", "level", "title"} <= set(rows[0]):
            raise DataError(f"{path}: expected the columns code,level,title")
        for line, row in enumerate(rows, start=2):
            if row["level"] not in SOC_GROUPS or len(row["code"] or "") != 7:
                raise DataError(f"{path}, line {line}: expected a 7-character SOC code and a "
                                f"level of {', '.join(SOC_GROUPS)}, not {row['code']!r}, "
                                f"{row['level']!r}")
        seen: dict[str, int] = {}
        for line, row in enumerate(rows, start=2):
            if (first := seen.setdefault(row["code"], line)) != line:
                raise DataError(f"{path}, line {line}: SOC code {row['code']} again (line "
                                f"{first}); the structure gives each code once")
        rows.sort(key=lambda r: r["code"])
        return cls([r["code"] for r in rows], [r["level"] for r in rows],
                   [r["title"] for r in rows], str(path))

    def groups(self, codes: list[str], level: str) -> list[str]:
        """The group of `level` that each SOC detailed code belongs to; a DataError naming the
        first code whose group the structure lacks."""
        known = {c for c, lv in zip(self.codes, self.levels) if lv == level}
        found = []
        for code in codes:
            if level == "minor":
                group = code[:5] + "00" if code[:5] + "00" in known else code[:4] + "000"
            else:
                group = {"detailed": code, "major": code[:2] + "-0000",
                         "broad": SPANNING_BROAD.get(code[:6], code[:6] + "0")}[level]
            if group not in known:
                raise DataError(f"{self.path}: SOC 2018 code {code} has no {level} group "
                                f"({group}); use the official structure (`make data`)")
            found.append(group)
        return found


@dataclass(frozen=True)
class Level:
    """One coded level: the group of each occupation, and each group's code and title."""

    name: str
    of_code: np.ndarray  # (n_codes,) group index of each occupation of the taxonomy
    codes: np.ndarray    # (n_groups,) group codes
    titles: np.ndarray   # (n_groups,) group titles


def coded_levels(taxonomy: Taxonomy, soc: SocStructure) -> list[Level]:
    """The levels of `LEVELS` for the taxonomy's occupations: O*NET-SOC codes, then SOC groups."""
    title = dict(zip(soc.codes, soc.titles))
    levels = [Level("onet", np.arange(len(taxonomy)), np.array(taxonomy.codes, dtype=object),
                    np.array(taxonomy.titles, dtype=object))]
    for name in LEVELS[1:]:
        groups = soc.groups([code[:7] for code in taxonomy.codes], name)
        codes, of_code = np.unique(np.array(groups, dtype=object), return_inverse=True)
        levels.append(Level(name, of_code, codes, np.array([title[c] for c in codes],
                                                           dtype=object)))
    return levels


def load_levels(taxonomy: Taxonomy, data_dir: str | Path) -> list[Level]:
    """The coded levels of the taxonomy in `data_dir`, from the SOC structure beside it."""
    return coded_levels(taxonomy, SocStructure.load(soc_path(data_dir)))
