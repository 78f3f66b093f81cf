"""make data: occlass.data.download copies a local mirror or downloads the release, all or nothing."""

import os
import shutil
import zipfile

import pytest

from occlass.data.download import MARKER, NEEDED, SOC_SHEET, fetch, main
from occlass.data.soc import SOC_FILE


@pytest.fixture
def mirror(tmp_path):
    """A tiny stand-in for the O*NET release: each needed file, a read-me and a subfolder."""
    folder = tmp_path / "mirror"
    (folder / "subfolder").mkdir(parents=True)
    for name in (*NEEDED, "Read Me.txt"):
        (folder / name).write_text(f"contents of {name}\n")
    return folder


def release_zip(path, names):
    """A zip like the O*NET one: the files inside a folder."""
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(f"db_29_3_text/{name}", f"contents of {name}\n")
    return path.as_uri()


def test_copies_the_mirror_once(mirror, tmp_path):
    dest = tmp_path / "data" / "onet-29.3"
    dest.mkdir(parents=True)
    (dest / "left over.txt").write_text("from an interrupted copy, no marker")

    assert fetch(dest, mirror) == f"{dest}: copied from the local mirror {mirror}"

    assert sorted(os.listdir(dest)) == sorted([*NEEDED, "Read Me.txt", MARKER])
    assert (dest / NEEDED[0]).read_text() == f"contents of {NEEDED[0]}\n"
    assert os.listdir(dest.parent) == ["onet-29.3"]  # no staging folder left
    shutil.rmtree(mirror)  # a re-run needs neither the mirror nor the network
    assert fetch(dest, mirror) == f"{dest}: already present"
    assert sorted(os.listdir(dest)) == sorted([*NEEDED, "Read Me.txt", MARKER])


def test_downloads_when_the_mirror_lacks_the_release(tmp_path):
    dest = tmp_path / "onet-29.3"
    url = release_zip(tmp_path / "release.zip", NEEDED)

    assert fetch(dest, tmp_path / "no-mirror", url) == f"{dest}: downloaded {url}"

    assert sorted(os.listdir(dest)) == sorted([*NEEDED, MARKER])
    assert main(["--dest", str(dest), "--url", url]) == 0


def bad_url(kind: str, folder) -> str:
    if kind == "not a zip":
        (folder / "page.html").write_text("<html>")
        return (folder / "page.html").as_uri()
    if kind == "incomplete zip":
        return release_zip(folder / "release.zip", NEEDED[:-1])
    if kind == "missing file":
        return (folder / "missing.zip").as_uri()
    return "not a url"


@pytest.mark.parametrize("kind, message", [
    ("not a zip", "File is not a zip file"),
    ("incomplete zip", f"the release lacks {[NEEDED[-1]]}"),
    ("missing file", "No such file"),
    ("no url", "unknown url type"),
])
def test_failed_download_leaves_nothing(tmp_path, capsys, kind, message):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    url = bad_url(kind, downloads)
    dest = tmp_path / "data" / "onet-29.3"

    assert main(["--dest", str(dest), "--url", url]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot get the O*NET release into {dest}: ")
    assert message in err and err.count("\n") == 1
    assert os.listdir(dest.parent) == []  # neither the folder nor a staging folder


SOC_SHEET_ROWS = [
    ["U.S. Bureau of Labor Statistics"], [], ["November 2017 (for reference year January 2018)"],
    [], ["Major Group", "Minor Group", "Broad Group", "Detailed Occupation"],
    ["15-0000", None, None, None, "Computer and Mathematical Occupations"],
    [None, "15-1200", None, None, "Computer Occupations"],
    [None, None, "15-1250", None, "Software and Web Developers, Programmers, and Testers"],
    [None, None, None, "15-1252", "Software Developers"],
]


def test_the_soc_structure_is_copied_from_a_mirror_or_converted_from_the_official_sheet(
        tmp_path, mirror):
    from openpyxl import Workbook

    (mirror / SOC_FILE).write_text("code,level,title\n15-0000,major,Computer\n")
    dest = tmp_path / "data" / "soc-2018"
    assert main(["--soc", "--dest", str(dest), "--mirror", str(mirror)]) == 0
    assert (dest / SOC_FILE).read_text() == "code,level,title\n15-0000,major,Computer\n"

    book = Workbook()
    for row in SOC_SHEET_ROWS:
        book.active.append(row)
    book.save(tmp_path / "structure.xlsx")
    url = (tmp_path / "structure.xlsx").as_uri()
    other = tmp_path / "elsewhere" / "soc-2018"
    assert fetch(other, tmp_path / "no-mirror", url, "soc") == f"{other}: downloaded {url}"
    assert sorted(os.listdir(other)) == sorted([SOC_FILE, SOC_SHEET, MARKER])
    assert (other / SOC_FILE).read_text().splitlines() == [
        "code,level,title", "15-0000,major,Computer and Mathematical Occupations",
        "15-1200,minor,Computer Occupations",
        '15-1250,broad,"Software and Web Developers, Programmers, and Testers"',
        "15-1252,detailed,Software Developers"]


def test_a_sheet_that_is_not_the_soc_structure_leaves_nothing(tmp_path, capsys):
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["some other table"])
    book.save(tmp_path / "other.xlsx")
    dest = tmp_path / "data" / "soc-2018"
    assert main(["--soc", "--dest", str(dest), "--url", (tmp_path / "other.xlsx").as_uri()]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot get the SOC 2018 structure into {dest}: not the SOC")
    assert os.listdir(dest.parent) == []
