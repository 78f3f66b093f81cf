"""Provenance: run.json records the version of the code that trained the run and of each refit."""

import logging
import shutil
import subprocess

from helpers.tiny import ROOT

from occlass import runs
from occlass.report.rebuild import rebuild


def git(folder, *args) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], capture_output=True, text=True, check=True).stdout.strip()


def test_code_version_is_the_commit_and_whether_the_checkout_has_changes(tmp_path, caplog):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    git(repo, "commit", "-qm", "first")
    version = runs.code_version(repo)
    assert version["commit"] == git(repo, "rev-parse", "HEAD") and version["dirty"] is False
    assert version["time"].endswith("+00:00")
    (repo / runs.RESULTS_FILE).write_text("| a bench's section |\n")  # results, not code
    assert runs.code_version(repo)["dirty"] is False
    (repo / "a.py").write_text("x = 2\n")
    assert runs.code_version(repo)["dirty"] is True
    assert "(with uncommitted changes)" in runs.describe_version(runs.code_version(repo))
    (repo / "sub").mkdir()
    with caplog.at_level(logging.WARNING, logger="occlass"):
        # not a checkout of its own (a package installed inside another repository), nor one
        for folder in (repo / "sub", tmp_path / "elsewhere"):
            folder.mkdir(exist_ok=True)
            assert runs.code_version(folder)["commit"] is None
    assert caplog.text.count("the code's version is unknown") == 2


def test_a_run_records_the_code_that_trained_it_and_each_refit(run_dir, tiny_onet, tmp_path):
    info = runs.RunInfo.load(run_dir)
    assert info.code["commit"] == git(ROOT, "rev-parse", "HEAD")
    assert set(info.code) == {"commit", "dirty", "time"} and info.refits == []
    assert info.provenance().startswith(f"trained by commit {info.code['commit'][:12]}")
    copy = shutil.copytree(run_dir, tmp_path / "run")
    rebuild(copy, tiny_onet, again=True)
    refit = runs.RunInfo.load(copy)
    assert refit.code == info.code and len(refit.refits) == 1
    assert refit.refits[0]["commit"] == info.code["commit"]
    assert refit.refits[0]["time"] >= info.code["time"]
    assert "; refit by commit" in refit.provenance()
