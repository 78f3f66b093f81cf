"""Fill the data folders: copy a local mirror if there is one, else download the release.

    python -m occlass.data.download --dest data/onet-29.3 [--mirror ../shared/data/onet-29.3]
    python -m occlass.data.download --soc --dest data/soc-2018 [--mirror ../shared/data/soc-2018]

The O*NET release comes as a zip of text files; the SOC 2018 structure as BLS's spreadsheet,
kept beside its `code,level,title` CSV (`occlass.data.soc`).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from occlass.data.soc import SOC_FILE, SOC_GROUPS
from occlass.data.taxonomy import OCCUPATIONS_FILE

RELEASE_URL = "https://www.onetcenter.org/dl_files/database/db_29_3_text.zip"
NEEDED = (OCCUPATIONS_FILE, "Alternate Titles.txt", "Sample of Reported Titles.txt",
          "Task Statements.txt")
SOC_URL = "https://www.bls.gov/soc/2018/soc_structure_2018.xlsx"
SOC_SHEET = "soc_structure_2018.xlsx"
# BLS asks that scripted downloads name themselves and a contact.
USER_AGENT = "occlass data setup (https://github.com/occlass/occlass)"
MARKER = ".complete"


def download(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def unzip_release(url: str, staging: Path) -> None:
    """The O*NET release's files, out of their folder in the zip."""
    archive = zipfile.ZipFile(io.BytesIO(download(url)))
    for member in archive.infolist():
        name = Path(member.filename).name
        if not member.is_dir() and name:
            (staging / name).write_bytes(archive.read(member))


def soc_rows(sheet: str | Path | io.BytesIO) -> pd.DataFrame:
    """BLS's SOC 2018 structure spreadsheet as `code,level,title` rows: below the header row
    (Major Group, Minor Group, Broad Group, Detailed Occupation), each row has its code in the
    column of its level and the title in the next."""
    frame = pd.read_excel(sheet, header=None, dtype=str)
    header = frame.index[frame.iloc[:, 0].eq("Major Group")]
    if len(header) != 1:
        raise ValueError("not the SOC 2018 structure (no 'Major Group' header row)")
    body = frame.iloc[header[0] + 1:, :len(SOC_GROUPS) + 1]
    rows = []
    for values in body.itertuples(index=False):
        filled = [i for i, v in enumerate(values[:len(SOC_GROUPS)]) if isinstance(v, str)]
        if len(filled) == 1 and isinstance(values[-1], str):
            rows.append((values[filled[0]].strip(), SOC_GROUPS[filled[0]], values[-1].strip()))
    return pd.DataFrame(rows, columns=["code", "level", "title"])


def convert_soc_sheet(url: str, staging: Path) -> None:
    """The official spreadsheet, kept as it is, and its rows as the CSV occlass reads."""
    (staging / SOC_SHEET).write_bytes(download(url))
    soc_rows(staging / SOC_SHEET).to_csv(staging / SOC_FILE, index=False)


DATASETS: dict[str, tuple[str, tuple[str, ...], Callable[[str, Path], None]]] = {
    # name: (the file that marks a mirror, the files a copy needs, how to get a download)
    "onet": (OCCUPATIONS_FILE, NEEDED, unzip_release),
    "soc": (SOC_FILE, (SOC_FILE,), convert_soc_sheet),
}


def fetch(dest: Path, mirror: Path | None, url: str = RELEASE_URL, dataset: str = "onet") -> str:
    """Make `dest` hold the release; returns what was done. Safe to run again (no-op)."""
    if (dest / MARKER).is_file():
        return f"{dest}: already present"
    marks, needed, get = DATASETS[dataset]
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    staging.chmod(0o755)
    try:
        if mirror is not None and (mirror / marks).is_file():
            for item in mirror.iterdir():
                if item.is_file():
                    shutil.copyfile(item, staging / item.name)
            done = f"{dest}: copied from the local mirror {mirror}"
        else:
            get(url, staging)
            done = f"{dest}: downloaded {url}"
        missing = [name for name in needed if not (staging / name).is_file()]
        if missing:
            raise RuntimeError(f"the release lacks {missing}")
        (staging / MARKER).write_text(done + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
        return done
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soc", action="store_true", help="the SOC 2018 structure, not O*NET")
    parser.add_argument("--dest", type=Path)
    parser.add_argument("--mirror", type=Path, default=None)
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    dataset = "soc" if args.soc else "onet"
    dest = args.dest or Path("data/soc-2018" if args.soc else "data/onet-29.3")
    try:
        print(fetch(dest, args.mirror, args.url or (SOC_URL if args.soc else RELEASE_URL),
                    dataset))
    except (OSError, ValueError, RuntimeError, zipfile.BadZipFile) as err:  # ValueError: a bad URL
        what = "SOC 2018 structure" if args.soc else "O*NET release"
        print(f"error: cannot get the {what} into {dest}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
