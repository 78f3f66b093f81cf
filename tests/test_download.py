"""make data: occlass.data.download copies a local mirror or downloads the release, all or nothing."""

import os
import shutil
import zipfile

import pytest

from occlass.data.download import MARKER, NEEDED, fetch, main


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
