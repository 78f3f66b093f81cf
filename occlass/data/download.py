"""Fill the O*NET data folder: copy a local mirror if there is one, else download the release.

    python -m occlass.data.download --dest data/onet-29.3 [--mirror ../shared/data/onet-29.3]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from occlass.data.taxonomy import OCCUPATIONS_FILE

RELEASE_URL = "https://www.onetcenter.org/dl_files/database/db_29_3_text.zip"
NEEDED = (OCCUPATIONS_FILE, "Alternate Titles.txt", "Sample of Reported Titles.txt",
          "Task Statements.txt")
MARKER = ".complete"


def fetch(dest: Path, mirror: Path | None, url: str = RELEASE_URL) -> str:
    """Make `dest` hold the release; returns what was done. Safe to run again (no-op)."""
    if (dest / MARKER).is_file():
        return f"{dest}: already present"
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    staging.chmod(0o755)
    try:
        if mirror is not None and (mirror / OCCUPATIONS_FILE).is_file():
            for item in mirror.iterdir():
                if item.is_file():
                    shutil.copyfile(item, staging / item.name)
            done = f"{dest}: copied from the local mirror {mirror}"
        else:
            with urllib.request.urlopen(url, timeout=120) as response:
                archive = zipfile.ZipFile(io.BytesIO(response.read()))
            for member in archive.infolist():
                name = Path(member.filename).name
                if not member.is_dir() and name:
                    (staging / name).write_bytes(archive.read(member))
            done = f"{dest}: downloaded {url}"
        missing = [name for name in NEEDED if not (staging / name).is_file()]
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
    parser.add_argument("--dest", type=Path, default=Path("data/onet-29.3"))
    parser.add_argument("--mirror", type=Path, default=None)
    parser.add_argument("--url", default=RELEASE_URL)
    args = parser.parse_args(argv)
    try:
        print(fetch(args.dest, args.mirror, args.url))
    except (OSError, ValueError, RuntimeError, zipfile.BadZipFile) as err:  # ValueError: a bad URL
        print(f"error: cannot get the O*NET release into {args.dest}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
