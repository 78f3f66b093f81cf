"""predict.py with trainer=ddp: 2 CPU processes (gloo) write the one-process output row for row;
the ranks' row ranges cover the input once, in order, whatever the row-count estimate."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers.tiny import ROOT

from occlass.predict.distributed import RowRange, rank_rows

INPUT = pd.DataFrame({  # 11 rows: not a multiple of 2 ranks or of chunk_rows=2
    "title": ["Registered Nurse", "Plumber", "", "Chief Executive", None, "python developer",
              "Electrician", "  ", "Statistician", "Carpenter", "Staff Nurse"],
    "description": ["Cares for patients.", None, "x", "", "y", "Writes code.", None, "z", "",
                    "Builds frames.", None],
    "id": [f"{i:03d}" for i in range(11)],
})


DDP = ("trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu")


def predict(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "predict.py"), *overrides], cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300, check=False)


def test_two_processes_write_the_one_process_output(run_dir, tiny_onet, tmp_path):
    INPUT.to_csv(tmp_path / "in.csv", index=False)
    common = [f"run={run_dir}", f"data_dir={tiny_onet}", "input=in.csv", "top_k=3",
              "chunk_rows=2", "threads=1", "progress=false"]
    single = predict(tmp_path, *common, "output=single.csv")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = predict(tmp_path, *common, "output=ddp.csv", *DDP)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "rank 0: 6 rows" in ddp.stdout and "rank 1: 5 rows" in ddp.stdout
    assert (tmp_path / "ddp.csv").read_text() == (tmp_path / "single.csv").read_text()
    out = pd.read_csv(tmp_path / "ddp.csv", dtype=str)
    assert out["id"].tolist() == INPUT["id"].tolist()
    assert (out["status"] == "empty title").sum() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.csv", "in.csv", "single.csv"]


def test_a_failing_rank_fails_the_run_and_leaves_nothing(run_dir, tiny_onet, tmp_path):
    """Rank 1 cannot write its rows (a JSONL column of mixed types into Parquet); rank 0, with no
    rows (one chunk, which the last rank takes), finds out and fails too."""
    INPUT.assign(zip=[90210, "SW1A 1AA"] * 5 + [None]).to_json(tmp_path / "in.jsonl",
                                                               orient="records", lines=True)
    done = predict(tmp_path, f"run={run_dir}", f"data_dir={tiny_onet}", "input=in.jsonl",
                   "output=out.parquet", "progress=false", *DDP)
    assert done.returncode != 0  # 2, or Lightning's kill of rank 0 once rank 1 has exited
    assert "column 'zip' cannot be written as Parquet" in done.stderr
    assert "Traceback" not in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["in.jsonl"]


def test_jsonl_records_keep_their_own_keys_under_ddp(run_dir, tiny_onet, tmp_path):
    lines = ['{"title": "Nurse", "id": 1}', '{"id": 2, "title": "Plumber", "site": "A"}',
             '{"title": "Driver", "pay": null}', '{"title": "Cook", "id": [4]}']
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    done = predict(tmp_path, f"run={run_dir}", f"data_dir={tiny_onet}", "input=in.jsonl",
                   "output=out.jsonl", "chunk_rows=2", "top_k=1", "progress=false", *DDP)
    assert done.returncode == 0, done.stderr[-3000:]
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [{k: r[k] for k in json.loads(line)} for r, line in zip(out, lines)] == [
        json.loads(line) for line in lines]
    assert [set(r) - set(json.loads(line)) for r, line in zip(out, lines)] == [
        {"pred_code_1", "pred_title_1", "pred_score_1", "soc_code_1", "soc_title_1",
         "confidence", "coded_level", "coded_code", "coded_title", "coded_confidence",
         "needs_review", "pred_evidence_1", "status", "run_id"}] * 4


@pytest.mark.parametrize("estimate", [0, 4, 11, 30])
def test_rank_ranges_cover_the_input_once_in_order(tmp_path, estimate):
    """A wrong row-count estimate (count_rows counts lines) only unbalances the ranks."""
    INPUT.to_csv(tmp_path / "in.csv", index=False)
    ranges = [rank_rows(rank, 3, estimate, 2) for rank in range(3)]
    assert all(start % 2 == 0 for start, _ in ranges)  # whole chunks, as one process reads
    parts = [chunk for start, stop in ranges
             for chunk in RowRange(tmp_path / "in.csv", start, stop, 2, "title")]
    assert pd.concat(parts)["id"].tolist() == INPUT["id"].tolist()
