"""predict.py engine=spark: a Spark local[2] session codes a Parquet folder exactly as one process
codes the same rows, loads the model once per worker process, and refuses bad input and runs
before any work."""

import ast
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.tiny import OCCUPATIONS, ROOT
from hydra import compose, initialize_config_dir

from occlass.data.soc import LEVELS
from occlass.errors import DataError, OcclassError
from occlass.predict.job import predict_job
from occlass.predict.loader import load_run
from occlass.predict.predictor import Predictor
from occlass.report.analysis import score_kind

ROWS = 2000
FILES = 4


@pytest.fixture(scope="module")
def spark():
    """One Spark local[2] session for the module: tiny Arrow batches and several shuffle
    partitions, so batch and partition boundaries fall inside the data."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java: no java on PATH and JAVA_HOME unset")
    from pyspark.sql import SparkSession

    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYSPARK_PYTHON", os.sys.executable)
        env.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        session = (SparkSession.builder.master("local[2]").appName("occlass-test")
                   .config("spark.ui.enabled", "false")
                   .config("spark.sql.shuffle.partitions", "5")
                   .config("spark.sql.execution.arrow.maxRecordsPerBatch", "37")
                   .getOrCreate())
        session.sparkContext.setLogLevel("ERROR")
        yield session
        session.stop()


@pytest.fixture(scope="module")
def levelled_run(run_dir, tiny_onet, tmp_path_factory) -> Path:
    """The tiny run with confidence thresholds that code a share of titles at each SOC level."""
    run = shutil.copytree(run_dir, tmp_path_factory.mktemp("spark-run") / "run")
    record = json.loads((run / "run.json").read_text())
    parts = load_run(run, tiny_onet)
    titles = [t for _, title, _, alts, _ in OCCUPATIONS for t in (title, *alts)]
    kind = score_kind(Predictor(parts), titles, [[0]] * len(titles),
                      parts.confidence_model.temperature, parts.levels)
    probability = parts.confidence_model.probabilities(kind.signals).numpy()
    record["confidence"]["thresholds"]["0.9"] = [
        float(np.quantile(probability[:, j], 0.85 - 0.2 * j)) for j in range(len(LEVELS))]
    (run / "run.json").write_text(json.dumps(record))
    return run


def input_rows(n: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """Zipf-repeated titles with empty, NA and missing ones, unicode, and descriptions."""
    rng = np.random.default_rng(seed)
    pool = [t for _, title, _, alts, reported in OCCUPATIONS for t in (title, *alts, *reported)]
    pool += ["Infirmière diplômée d'État", "Ingeniero de software", "软件工程师", "Plumber 🔧",
             "ELECTRICIAN", "senior python developer", "", "   ", "NA", None]
    rank = rng.zipf(1.3, n) % len(pool)
    descriptions = np.array([None, "", "Cares for patients in a hospital.",
                             "Writes code; reviews pull requests.", "Répare la plomberie."],
                            dtype=object)
    described = rng.random(n) < 0.3
    return pd.DataFrame({
        "id": [f"r{i:05d}" for i in range(n)],
        "title": [pool[r] for r in rank],
        "description": np.where(described, descriptions[rng.integers(0, 5, n)], None),
        "region": rng.integers(0, 50, n),
    })


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """The rows as one Parquet file (for engine=local) and as a folder of FILES files."""
    folder = tmp_path_factory.mktemp("spark-in")
    rows = input_rows()
    table = pa.Table.from_pandas(rows, preserve_index=False)
    pq.write_table(table, folder / "all.parquet")
    (folder / "parts").mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(rows)), FILES)):
        pq.write_table(table.take(part), folder / "parts" / f"part-{i}.parquet")
    return folder / "all.parquet", folder / "parts"


def predict(run, tiny_onet, *overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("predict", overrides=[f"run={run}", f"data_dir={tiny_onet}",
                                            "progress=false", "top_k=3", *overrides])
    return predict_job(cfg)


def test_spark_codes_every_row_as_one_process(spark, levelled_run, tiny_onet, inputs,
                                              tmp_path):
    single, folder = inputs
    predict(levelled_run, tiny_onet, f"input={single}", f"output={tmp_path / 'local.parquet'}",
            "chunk_rows=300")
    summary = predict(levelled_run, tiny_onet, "engine=spark", "engine.row_id=true",
                      f"input={folder}", f"output={tmp_path / 'spark'}")
    local = pd.read_parquet(tmp_path / "local.parquet")
    out = pd.read_parquet(tmp_path / "spark").sort_values("row_id", ignore_index=True)
    rows = input_rows()
    assert out["row_id"].is_unique and len(out) == ROWS
    for part in np.array_split(rows["id"], FILES):  # Spark orders the files, not their rows
        assert out["id"][out["id"].isin(part)].tolist() == part.tolist()
    out = out.sort_values("id", ignore_index=True)
    assert out["id"].tolist() == local["id"].tolist()
    # every input column and row_id, then exactly predict.py's columns
    assert list(out.columns) == [*rows.columns, "row_id", *local.columns[len(rows.columns):]]
    pd.testing.assert_frame_equal(out[rows.columns], local[rows.columns], check_dtype=False)
    assert set(local["coded_level"].dropna()) == set(LEVELS)  # rows at every level
    assert set(local["status"]) == {"ok", "empty title", "title is a missing-value marker"}
    for column in local.columns[len(rows.columns):]:
        if "score" in column or "confidence" in column:
            np.testing.assert_allclose(out[column].astype(float), local[column].astype(float),
                                       atol=1e-5 if "score" in column else 1.5e-4,
                                       err_msg=column)
        elif column == "pred_evidence_1":  # "title (0.91)": the similarity is a score
            assert (out[column].str.rsplit(" (", n=1).str[0].tolist()
                    == local[column].str.rsplit(" (", n=1).str[0].tolist())
        else:
            assert out[column].tolist() == local[column].tolist(), column
    assert out["run_id"].nunique() == 1 and out["run_id"][0] == summary["run_id"]
    distinct = rows[["title", "description"]].drop_duplicates()
    assert summary["rows"] == ROWS and summary["distinct"] == len(distinct) < ROWS / 5
    assert summary["status"]["ok"] == (local["status"] == "ok").sum()
    # each Python worker process loaded the model at most once, whatever its tasks and batches
    assert summary["loads"] and set(summary["loads"].values()) == {1}


@pytest.mark.parametrize("case, message", [
    ("no title column", "no column 'title' .*set columns.title='Title'"),
    ("damaged run", "not a complete training run"),
    ("output exists", "exists: Spark writes a new folder"),
    ("missing input", "Path does not exist"),
])
def test_bad_input_fails_before_any_task(spark, run_dir, tiny_onet, inputs, tmp_path, case,
                                         message):
    _, folder = inputs
    run, source, output = run_dir, folder, tmp_path / "out"
    if case == "no title column":
        source = tmp_path / "in.parquet"
        input_rows(50).rename(columns={"title": "Title"}).to_parquet(source)
    elif case == "damaged run":
        run = shutil.copytree(run_dir, tmp_path / "run")
        (run / "encoder" / "config.json").unlink()
    elif case == "output exists":
        output.mkdir()
    elif case == "missing input":
        source = tmp_path / "nowhere"
    with pytest.raises((OcclassError, DataError), match=message) as err:
        predict(run, tiny_onet, "engine=spark", f"input={source}", f"output={output}")
    assert "\n" not in str(err.value)
    assert not (output / "_SUCCESS").exists()


def test_without_pyspark_one_line_says_how_to_install_it(run_dir, tiny_onet, tmp_path,
                                                          monkeypatch):
    monkeypatch.delitem(sys.modules, "occlass.predict.spark", raising=False)
    for name in ["pyspark", *(m for m in sys.modules if m.startswith("pyspark."))]:
        monkeypatch.setitem(sys.modules, name, None)  # import pyspark... fails
    with pytest.raises(OcclassError, match=r"engine=spark needs pyspark: pip install"):
        predict(run_dir, tiny_onet, "engine=spark", f"input={tmp_path}",
                f"output={tmp_path / 'out'}")


def test_only_the_spark_engine_imports_pyspark():
    importers = sorted({
        str(path.relative_to(ROOT)) for path in (ROOT / "occlass").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        and any(name.split(".")[0] in ("pyspark", "py4j") for name in
                ([node.module or ""] if isinstance(node, ast.ImportFrom)
                 else [a.name for a in node.names]))})
    assert importers == ["occlass/predict/spark.py"]
