"""predict.py and train.py under bad input, faults and interruption, run as a user runs them: one
line on stderr and exit code 2 (never a traceback), the input untouched, no temporary file left,
and, where prediction succeeds, every input value back exactly, in CSV, JSONL and Parquet."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers.tables import write_table
from helpers.tiny import ROOT

from occlass import runs
from occlass.data.tabular_io import read_chunks
from occlass.model.category_cache import CategoryCache
from occlass.predict.loader import load_run
from occlass.predict.predictor import Predictor

FORMATS = ["csv", "jsonl", "parquet"]


def predict(cwd: Path, *overrides: str, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "predict.py"), "progress=false",
                           "threads=1", *overrides], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False, **popen)


def assert_one_line_error(done: subprocess.CompletedProcess, *needles: str) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name or ".shard" in p.name)


@pytest.fixture
def common(run_dir, tiny_onet) -> list[str]:
    return [f"run={run_dir}", f"data_dir={tiny_onet}"]


# 1. Input values come back exactly; missing markers -------------------------------------------
def awkward_input(path: Path) -> Path:
    """Integer ids and zip codes with a null, an integer title, "NA" and "NaN" text."""
    if path.suffix == ".csv":
        path.write_text("id,zip,title,description\n1,90210,Registered Nurse,NaN\n"
                        "2,,12345,Cares for patients.\n3,02139,NA,\n4,00501,Plumber,null\n")
    elif path.suffix == ".jsonl":
        path.write_text('{"id": 1, "zip": 90210, "title": "Registered Nurse", "description": '
                        '"NaN"}\n{"id": 2, "zip": null, "title": 12345, "description": '
                        '"Cares for patients."}\n{"id": 3, "zip": 2139, "title": "NA", '
                        '"description": null}\n{"id": 4, "zip": 501, "title": "Plumber", '
                        '"description": "null"}\n')
    else:
        pq.write_table(pa.table({
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "zip": pa.array([90210, None, 2139, 501], pa.int32()),
            "title": ["Registered Nurse", "12345", "NA", "Plumber"],
            "description": ["NaN", "Cares for patients.", None, "null"]}), path)
    return path


@pytest.mark.parametrize("ext", FORMATS)
def test_input_values_come_back_exactly(common, run_dir, tiny_onet, tmp_path, ext):
    source = awkward_input(tmp_path / f"in.{ext}")
    before = source.read_bytes()
    done = predict(tmp_path, *common, f"input=in.{ext}", f"output=out.{ext}", "top_k=2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "4 rows → out" in done.stdout and "1 title is a missing-value marker" in done.stdout
    assert source.read_bytes() == before and temp_files(tmp_path) == []
    original = pd.concat(read_chunks(source), ignore_index=True)
    out = pd.concat(read_chunks(tmp_path / f"out.{ext}"), ignore_index=True)
    pd.testing.assert_frame_equal(out[original.columns], original)
    if ext == "parquet":  # the Arrow types too
        written = pq.read_table(tmp_path / "out.parquet").select(list(original.columns))
        assert written.equals(pq.read_table(source))
    assert out["status"].tolist() == ["ok", "ok", "title is a missing-value marker", "ok"]
    # "NaN" and "null" descriptions count as absent: the scores of the title alone
    predictor = Predictor(load_run(run_dir, tiny_onet))
    alone = predictor.predict(["Registered Nurse", "Plumber"], top_k=2).scores
    np.testing.assert_allclose(out.loc[[0, 3], ["pred_score_1", "pred_score_2"]]
                               .astype(float).to_numpy(), alone, atol=1e-6)
    assert out.loc[1, "pred_code_1"] is not None  # the integer title is a title


# 2. Zero-row input ----------------------------------------------------------------------------
@pytest.mark.parametrize("ext", FORMATS)
def test_zero_rows_give_the_header(common, tmp_path, ext):
    source = tmp_path / f"in.{ext}"
    if ext == "csv":
        source.write_text("id,title\n")
    elif ext == "jsonl":
        source.write_text("")
    else:
        pq.write_table(pa.table({"id": pa.array([], pa.int64()), "title": pa.array([], pa.string())}),
                       source)
    done = predict(tmp_path, *common, f"input=in.{ext}", f"output=out.{ext}", "top_k=2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0 rows → out" in done.stdout and temp_files(tmp_path) == []
    out = tmp_path / f"out.{ext}"
    predicted = [f"{n}_{j}" for n in ("pred_code", "pred_title", "pred_score", "soc_code",
                                      "soc_title") for j in (1, 2)] + [
        "confidence", "coded_level", "coded_code", "coded_title", "coded_confidence",
        "needs_review", "pred_evidence_1", "status", "run_id"]
    if ext == "csv":
        assert out.read_text().splitlines() == [",".join(["id", "title", *predicted])]
    elif ext == "jsonl":
        assert out.read_bytes() == b""  # JSONL has no header
    else:
        assert pq.read_schema(out).names == ["id", "title", *predicted]
        assert pq.read_metadata(out).num_rows == 0


# 3. Interruption ------------------------------------------------------------------------------
def many_titles(path: Path, rows: int = 20_000) -> Path:
    pd.DataFrame({"title": [f"nurse {i}" for i in range(rows)]}).to_csv(path, index=False)
    return path


def start(tmp_path: Path, common: list[str], *overrides: str) -> subprocess.Popen:
    """predict.py as from a terminal: SIGINT is Ctrl-C even when this test runs in the background
    (where the shell hands SIGINT down ignored)."""
    return subprocess.Popen([sys.executable, "-c", AS_FROM_A_TERMINAL, str(ROOT / "predict.py"),
                             *common, "progress=false", "threads=1", "input=in.csv",
                             "output=out.csv", "chunk_rows=50", *overrides], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


AS_FROM_A_TERMINAL = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def wait_for_temp_file(tmp_path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not temp_files(tmp_path):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize("stop, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_run_leaves_no_temp_file_and_keeps_the_old_output(common, tmp_path, stop,
                                                                     code):
    many_titles(tmp_path / "in.csv")
    (tmp_path / "out.csv").write_text("an earlier result\n")
    process = start(tmp_path, common)
    wait_for_temp_file(tmp_path, process)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code
    assert stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert temp_files(tmp_path) == [] and (tmp_path / "out.csv").read_text() == "an earlier result\n"


def test_after_sigkill_the_next_run_removes_the_stale_temp_file(common, tmp_path):
    many_titles(tmp_path / "in.csv")
    (tmp_path / "out.csv").write_text("an earlier result\n")
    process = start(tmp_path, common)
    wait_for_temp_file(tmp_path, process)
    process.kill()
    process.communicate(timeout=60)
    assert temp_files(tmp_path)  # kill -9 leaves it behind ...
    assert (tmp_path / "out.csv").read_text() == "an earlier result\n"  # ... and the output
    done = predict(tmp_path, *common, "input=in.csv", "output=out.csv", "chunk_rows=5000")
    assert done.returncode == 0, done.stderr[-2000:]
    assert temp_files(tmp_path) == []  # the next run removed the dead process's temp file
    assert count_lines(tmp_path / "out.csv") == 20_001


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


# 4. Output equal to input ---------------------------------------------------------------------
@pytest.mark.parametrize("how", ["same path", "symlink"])
def test_output_equal_to_input_is_refused(common, tmp_path, how):
    source = write_table(pd.DataFrame({"title": ["Nurse"]}), tmp_path / "in.csv")
    before = source.read_bytes()
    output = "in.csv"
    if how == "symlink":
        (tmp_path / "link.csv").symlink_to(source)
        output = "link.csv"
    done = predict(tmp_path, *common, "input=in.csv", f"output={output}")
    assert_one_line_error(done, "is the input file")
    assert source.read_bytes() == before and temp_files(tmp_path) == []


# 5. Output-side failures ----------------------------------------------------------------------
@pytest.mark.parametrize("case", ["output is a folder", "parent is a file", "unwritable folder",
                                  "disk full while writing"])
def test_output_side_failures(common, tmp_path, case):
    many_titles(tmp_path / "in.csv", rows=3000)
    before = (tmp_path / "in.csv").read_bytes()
    popen, output, needle = {}, "out.csv", "cannot be written"
    if case == "output is a folder":
        (tmp_path / "out.csv").mkdir()
        needle = "is a folder"
    elif case == "parent is a file":
        (tmp_path / "file").write_text("x")
        output = "file/out.csv"
    elif case == "unwritable folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / "ro").mkdir(mode=0o555)
        output = "ro/out.csv"
    else:  # writes past 20 kB fail with EFBIG, as on a full disk
        (tmp_path / "out.csv").write_text("an earlier result\n")

        def limit_file_size():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

        popen = {"preexec_fn": limit_file_size}
    done = predict(tmp_path, *common, "input=in.csv", f"output={output}", "chunk_rows=500",
                   **popen)
    assert_one_line_error(done, needle)
    assert (tmp_path / "in.csv").read_bytes() == before and temp_files(tmp_path) == []
    if case == "disk full while writing":
        assert (tmp_path / "out.csv").read_text() == "an earlier result\n"


# 6. Bad option values -------------------------------------------------------------------------
@pytest.mark.parametrize("case, override, needle", [
    ("top_k text", "top_k=abc", "top_k='abc'"),
    ("top_k fraction", "top_k=1.5", "top_k=1.5"),
    ("chunk_rows zero", "chunk_rows=0", "chunk_rows=0"),
    ("no title column", "columns.title=null", "columns.title=None"),
    ("misspelled description", "columns.description=descripton", "no column 'descripton'"),
    ("malformed run.json", None, "run.json: not a valid run record"),
    ("malformed confidence model", None, "run.json: malformed confidence model"),
    ("target not fitted", "target_precision=0.93", "thresholds for 0.8, 0.85, 0.9, 0.95, 0.98"),
    ("target out of range", "target_precision=90", "target_precision=90"),
    ("unknown level", "min_level=group", "min_level='group': choose one of onet, detailed"),
    ("review_below with levels", "review_below=0.5", "review_below applies to confidence=platt"),
    ("truncated weights", None, "cannot load model"),
])
def test_bad_option_values(run_dir, tiny_onet, tmp_path, case, override, needle):
    run = shutil.copytree(run_dir, tmp_path / "run")
    if case == "malformed run.json":
        (run / "run.json").write_text('{"taxonomy_version": ')
    elif case == "malformed confidence model":
        record = json.loads((run / "run.json").read_text())
        record["confidence"]["weights"] = record["confidence"]["weights"][:2]
        (run / "run.json").write_text(json.dumps(record))
    elif case == "truncated weights":
        weights = run / runs.ENCODER_DIR / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:5000])
    source = write_table(pd.DataFrame({"title": ["Nurse"], "description": ["x"]}), tmp_path / "in.csv")
    done = predict(tmp_path, f"run={run}", f"data_dir={tiny_onet}", "input=in.csv",
                   "output=out.csv", *([override] if override else []))
    assert_one_line_error(done, needle)
    assert not (tmp_path / "out.csv").exists() and temp_files(tmp_path) == []
    assert source.read_text() == "title,description\nNurse,x\n"


# 7. A single extra file -----------------------------------------------------------------------
def test_extra_files_may_be_one_path(tiny_bert, tiny_onet, tmp_path):
    mine = tmp_path / "mine.csv"
    mine.write_text("title,code\nNight nurse,29-1141.00\nPilot,53-2011.00\n")
    done = subprocess.run([sys.executable, "train.py", f"hydra.run.dir={tmp_path / 'run'}",
                           f"paths.data_dir={tiny_onet}", f"model.encoder.name={tiny_bert}",
                           f"data.extra_files={mine}", "trainer.fast_dev_run=true"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert_one_line_error(done, f"{mine}, line 3: code '53-2011.00' is not an occupation")


# 8. A rebuilt category cache equals the exported one ------------------------------------------
def test_a_rebuilt_cache_equals_the_exported_one(run_dir, tiny_onet, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "run")
    exported = CategoryCache.load(run / runs.CACHE_FILE)
    (run / runs.CACHE_FILE).unlink()
    rebuilt = Predictor(load_run(run, tiny_onet))
    assert torch.equal(rebuilt.embeddings, exported.embeddings)
    assert CategoryCache.load(run / runs.CACHE_FILE).identity == exported.identity


# 9. and 10. Duplicate columns, a folder as input ----------------------------------------------
@pytest.mark.parametrize("case, needle", [("duplicate columns", "duplicate column name(s) title"),
                                          ("input is a folder", "is a folder, not a file")])
def test_bad_input_tables(common, tmp_path, case, needle):
    if case == "duplicate columns":
        (tmp_path / "in.csv").write_text("title,title\nNurse,Plumber\n")
    else:
        (tmp_path / "in.csv").mkdir()
    done = predict(tmp_path, *common, "input=in.csv", "output=out.csv")
    assert_one_line_error(done, needle)
    assert not (tmp_path / "out.csv").exists() and temp_files(tmp_path) == []
