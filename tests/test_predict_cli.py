"""predict.py: streaming tables through a run, bad input, the text table, the exit code."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.tables import write_table
from helpers.tiny import OCCUPATIONS, ROOT, SOC_ROWS
from hydra import compose, initialize_config_dir

from occlass.data.soc import LEVELS
from occlass.data.tabular_io import count_rows, read_chunks
from occlass.errors import DataError, OcclassError
from occlass.model.confidence import choose_level
from occlass.predict.job import predict_job
from occlass.predict.loader import load_run
from occlass.predict.predictor import Predictor
from occlass.report.analysis import score_kind

INPUT = pd.DataFrame({
    "title": ["Registered Nurse", "Plumber", "", None, "senior python developer"],
    "description": ["Cares for patients.", None, "has a description", "x", ""],
    "id": ["007", "008", "009", "010", "011"],
})
PRED_COLUMNS = [f"pred_{name}_{j}" for name in ("code", "title", "score") for j in (1, 2, 3)]
SOC_COLUMNS = [f"soc_{name}_{j}" for name in ("code", "title") for j in (1, 2, 3)]
REVIEW_COLUMNS = ["confidence", "coded_level", "coded_code", "coded_title", "coded_confidence",
                  "needs_review", "pred_evidence_1"]


@pytest.fixture
def predict(run_dir, tiny_onet):
    """Run predict.py's job in-process with these overrides."""
    def run(*overrides: str) -> None:
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("predict", overrides=[f"run={run_dir}", f"data_dir={tiny_onet}",
                                                "progress=false", *overrides])
        predict_job(cfg)

    return run


def read(path: Path) -> pd.DataFrame:
    return pd.concat(list(read_chunks(path)), ignore_index=True)


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_every_format_round_trips(predict, run_dir, tiny_onet, tmp_path, ext):
    source = write_table(INPUT, tmp_path / f"in.{ext}")
    assert count_rows(source) == len(INPUT)
    predict(f"input={source}", f"output={tmp_path / f'out.{ext}'}", "top_k=3", "chunk_rows=2")
    out = read(tmp_path / f"out.{ext}")
    assert list(out.columns) == [*INPUT.columns, *PRED_COLUMNS, *SOC_COLUMNS, *REVIEW_COLUMNS,
                                 "status", "run_id"]
    assert out["id"].tolist() == INPUT["id"].tolist()  # text stays text: leading zeros kept
    assert out["status"].tolist() == ["ok", "ok", "empty title", "empty title", "ok"]
    assert out.loc[2:3, PRED_COLUMNS].isna().all().all()
    expected = Predictor(load_run(run_dir, tiny_onet)).predict(
        INPUT["title"], INPUT["description"], top_k=3).to_frame()
    ok = out["status"] == "ok"
    for column in PRED_COLUMNS + SOC_COLUMNS + REVIEW_COLUMNS[:-2]:
        if "score" in column or "confidence" in column:  # confidence: 4 decimals
            np.testing.assert_allclose(out.loc[ok, column].astype(float), expected[column][ok],
                                       atol=1e-5 if "score" in column else 1.5e-4)
        else:
            assert (out.loc[ok, column].fillna("").astype(str).tolist()
                    == expected.loc[ok, column].fillna("").astype(str).tolist())


def test_run_id_names_the_model_that_coded_each_row(predict, run_dir, tiny_onet, tmp_path):
    source = write_table(INPUT, tmp_path / "in.csv")
    predict(f"input={source}", f"output={tmp_path / 'out.csv'}")
    run_id = load_run(run_dir, tiny_onet).run_id
    assert re.fullmatch(r"[0-9a-f]{12}", run_id)
    assert read(tmp_path / "out.csv")["run_id"].tolist() == [run_id] * len(INPUT)
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    assert load_run(copy, tiny_onet).run_id == run_id  # where the run lies does not matter
    record = json.loads((copy / "run.json").read_text())
    record["confidence"]["thresholds"]["0.9"][0] *= 0.99  # a refitted confidence model
    (copy / "run.json").write_text(json.dumps(record))
    assert load_run(copy, tiny_onet).run_id != run_id


def test_column_names_are_configurable(predict, run_dir, tiny_onet, tmp_path):
    frame = INPUT.rename(columns={"title": "job_title", "description": "job_text"})
    predict(f"input={write_table(frame, tmp_path / 'in.csv')}", f"output={tmp_path / 'out.csv'}",
            "columns.title=job_title", "columns.description=job_text")
    out = read(tmp_path / "out.csv")
    assert list(out.columns[:3]) == ["job_title", "job_text", "id"]
    predictor = Predictor(load_run(run_dir, tiny_onet))
    with_text = predictor.predict(INPUT["title"], INPUT["description"]).scores[0]
    np.testing.assert_allclose(out.loc[0, [f"pred_score_{j}" for j in range(1, 6)]]
                               .astype(float), with_text, atol=1e-6)
    assert not np.allclose(with_text, predictor.predict(INPUT["title"]).scores[0])


def test_input_with_prediction_columns_is_refused(predict, tmp_path):
    source = write_table(INPUT.assign(status="x"), tmp_path / "in.csv")
    with pytest.raises(DataError, match="has column.* status"):
        predict(f"input={source}", f"output={tmp_path / 'out.csv'}")


@pytest.mark.parametrize("case, message", [
    ("missing file", "does not exist"),
    ("no title column", "missing required column.*title"),
    ("unknown input type", "unsupported file type '.txt'"),
    ("unknown output type", "unsupported file type '.xlsx'"),
    ("not UTF-8", "line 3 is not valid UTF-8"),
    ("no output", "give input=FILE and output=FILE"),
])
def test_bad_input_is_a_clear_error(predict, tmp_path, case, message):
    source, output = tmp_path / "in.csv", tmp_path / "out.csv"
    if case == "no title column":
        write_table(INPUT.rename(columns={"title": "job"}), source)
    elif case == "unknown input type":
        source = write_table(INPUT, tmp_path / "in.parquet").rename(tmp_path / "in.txt")
    elif case == "unknown output type":
        write_table(INPUT, source)
        output = tmp_path / "out.xlsx"
    elif case == "not UTF-8":
        source.write_bytes(b"title\nNurse\nCaf\xe9 owner\n")
    elif case == "no output":
        write_table(INPUT, source)
    overrides = [f"input={source}"] + ([] if case == "no output" else [f"output={output}"])
    with pytest.raises(OcclassError, match=message):
        predict(*overrides)
    assert not output.exists()


def test_an_interrupted_run_leaves_no_output(predict, tmp_path, monkeypatch):
    source = write_table(INPUT, tmp_path / "in.parquet")
    calls = []
    original = Predictor.predict

    def fail_on_second_chunk(self, titles, *args, **kwargs):
        calls.append(len(titles))
        if len(calls) == 3:  # the zero-row header frame, the first chunk, the second
            raise KeyboardInterrupt
        return original(self, titles, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", fail_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        predict(f"input={source}", f"output={tmp_path / 'out.parquet'}", "chunk_rows=2")
    assert calls == [0, 2, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["in.parquet"]  # no output, no temp file


def test_text_prints_a_ranked_table(predict, tiny_onet, capsys):
    predict('text="registered nurse"', "top_k=3")
    header, *rows, coded, confidence, evidence = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["rank", "code", "title", "score"]
    assert re.fullmatch(r"coded [-.\d]+ \((O\*NET-SOC occupation|SOC occupation|broad group|"
                        r"minor group|major group): .+\), confidence [01]\.\d\d( \(needs review\))?"
                        r"|not coded at any level \(needs review\)", coded)
    assert re.fullmatch(r"confidence [01]\.\d\d that \d\d-\d{4}\.\d\d is right", confidence)
    assert re.fullmatch(r"evidence: .+ \(-?\d\.\d\d\)", evidence)
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    codes = set(pd.read_csv(tiny_onet / "Occupation Data.txt", sep="\t")["O*NET-SOC Code"])
    assert {row.split()[1] for row in rows} <= codes
    scores = [float(row.split()[-1]) for row in rows]
    assert scores == sorted(scores, reverse=True)


def cli(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "predict.py"), *overrides], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    done = cli(tmp_path, "input=missing.csv", "output=out.csv")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: missing.csv: file does not exist"]
    assert list(tmp_path.iterdir()) == []  # no Hydra outputs/, .hydra/ or log file


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"recipe": "title"}',
                                     ('{"taxonomy_version": "29.3", "taxonomy_fingerprint": 1, '
                                     '"n_codes": "many", "recipe": "title", "max_input_length": 32, '
                                     '"max_category_length": 64, "base_model": "x"}')])
def test_cli_malformed_run_record_exits_2_with_one_line(tmp_path, run_dir, tiny_onet, content):
    run = shutil.copytree(run_dir, tmp_path / "run")
    (run / "run.json").write_text(content)
    done = cli(tmp_path, f"run={run}", f"data_dir={tiny_onet}", "text=Plumber")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {run / 'run.json'}: ") and "run record" in line


def test_cli_text_mode(tmp_path, run_dir, tiny_onet):
    done = cli(tmp_path, f"run={run_dir}", f"data_dir={tiny_onet}", "text=Plumber")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:4] == ["rank", "code", "title", "score"]
    assert len(done.stdout.strip().splitlines()) == 9  # 5 ranks, coded, confidence, evidence
    assert list(tmp_path.iterdir()) == []


def test_the_coded_level_and_soc_columns(run_dir, tiny_onet, tmp_path):
    """With thresholds that take a share of rows at each level: every row is coded at the
    finest level that qualifies, with that level's code, title and confidence; soc_code_k is
    pred_code_k's SOC 2018 occupation; needs_review follows min_level."""
    run = shutil.copytree(run_dir, tmp_path / "run")
    record = json.loads((run / "run.json").read_text())
    parts = load_run(run, tiny_onet)
    predictor = Predictor(parts)
    titles = [t for _, title, _, alts, _ in OCCUPATIONS for t in (title, *alts)]
    kind = score_kind(predictor, titles, [[0]] * len(titles), parts.confidence_model.temperature,
                      parts.levels)
    probability = parts.confidence_model.probabilities(kind.signals).numpy()
    thresholds = [float(np.quantile(probability[:, j], 0.8 - 0.2 * j)) for j in range(5)]
    record["confidence"]["thresholds"]["0.9"] = thresholds
    (run / "run.json").write_text(json.dumps(record))
    source = write_table(pd.DataFrame({"title": titles}), tmp_path / "in.csv")
    soc = {code: title for code, level, title in SOC_ROWS if level == "detailed"}
    for min_level in LEVELS:
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("predict", overrides=[
                f"run={run}", f"data_dir={tiny_onet}", "progress=false", "top_k=2", "chunk_rows=7",
                f"input={source}", f"output={tmp_path / 'out.parquet'}",
                f"min_level={min_level}"])
        predict_job(cfg)
        out = pd.read_parquet(tmp_path / "out.parquet")
        level = choose_level(probability, thresholds)
        assert set(level) >= {0, 1, 4}  # rows at several levels, finest first
        assert list(out["coded_level"].fillna("")) == [LEVELS[j] if j >= 0 else ""
                                                       for j in level]
        for row, j in enumerate(level):
            if j < 0:
                continue
            group = kind.signals.answer[row, j]
            assert out["coded_code"][row] == parts.levels[j].codes[group]
            assert out["coded_title"][row] == parts.levels[j].titles[group]
            assert out["coded_confidence"][row] == pytest.approx(probability[row, j], abs=1e-4)
            assert out["coded_confidence"][row] >= thresholds[j] - 1e-4
        onet = level == 0
        assert (out["coded_code"][onet] == out["pred_code_1"][onet]).all()
        for k in (1, 2):
            assert list(out[f"soc_code_{k}"]) == [c[:7] for c in out[f"pred_code_{k}"]]
            assert list(out[f"soc_title_{k}"]) == [soc[c[:7]] for c in out[f"pred_code_{k}"]]
        assert list(out["needs_review"]) == list((level < 0) | (level > LEVELS.index(min_level)))
