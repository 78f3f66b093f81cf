"""Issue 18's round of bad input, tampered runs and odd options, run as a user runs them (see
test_bad_input.py): one line and exit code 2, or a right answer; never a traceback, lost data or
code run from someone else's file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers.tiny import ROOT
from test_bad_input import assert_one_line_error, predict, temp_files
from transformers import AutoTokenizer

from occlass import runs
from occlass.errors import OcclassError
from occlass.predict.loader import load_run, load_zero_shot
from occlass.predict.predictor import Predictor


@pytest.fixture
def common(run_dir, tiny_onet) -> list[str]:
    return [f"run={run_dir}", f"data_dir={tiny_onet}"]


def train_py(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# 1. Ragged CSV rows ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, line, hint", [
    ("id,title\n1,nurse,\n2,driver,\n", 2, "a trailing comma?"),       # every row, as exports do
    ("id,title\n1,Inspector, pole\n2,driver\n", 2, "quote a field"),    # the first row only
    ("id,title\n1,nurse\n2,\"night\nnurse\"\n3,Inspector, pole\n", 5, "quote a field"),
])
def test_a_row_longer_than_the_header_is_refused_naming_its_line(common, tmp_path, text, line,
                                                                 hint):
    (tmp_path / "in.csv").write_text(text)
    done = predict(tmp_path, *common, "input=in.csv", "output=out.csv")
    assert_one_line_error(done, f"in.csv, line {line}: 3 fields but the header has 2", hint)
    assert not (tmp_path / "out.csv").exists() and temp_files(tmp_path) == []


# 2. A stranger's checkpoint -------------------------------------------------------------------
class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_holding_code_is_refused_without_running_it(tiny_bert, tiny_onet, run_dir,
                                                                 tmp_path):
    marker = tmp_path / "ran"
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    torch.save({**state, "hyper_parameters": Payload(marker)}, tmp_path / "their.ckpt")
    args = [f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={tiny_onet}",
            f"model.encoder.name={tiny_bert}", "trainer.max_epochs=2", "~logger",
            f"ckpt_path={tmp_path / 'their.ckpt'}"]
    done = train_py(tmp_path, *args)
    assert_one_line_error(done, "their.ckpt: holds objects other than weights",
                          "posix.system", "trust_checkpoint=true")
    assert not marker.exists()  # (a checkpoint of weights and plain values resumes: test_train)


# 3. An incomplete run -------------------------------------------------------------------------
@pytest.mark.parametrize("case, needle", [
    ("no tokenizer files", ("not a complete training run (no encoder/tokenizer_config.json, "
                            "encoder/tokenizer.json)")),
    ("another tokenizer", "the tokenizer has 111 tokens but the model 109"),
])
def test_an_incomplete_run_is_refused_as_a_whole(run_dir, tiny_onet, tmp_path, case, needle):
    run = shutil.copytree(run_dir, tmp_path / "run")
    encoder = run / runs.ENCODER_DIR
    if case == "no tokenizer files":
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (encoder / name).unlink()
    else:
        tokenizer = AutoTokenizer.from_pretrained(encoder)
        tokenizer.add_tokens(["nurse", "driver"])
        tokenizer.save_pretrained(encoder)
    (tmp_path / "in.csv").write_text("title\nNurse\nDriver\n")
    done = predict(tmp_path, f"run={run}", f"data_dir={tiny_onet}", "input=in.csv",
                   "output=out.csv")
    assert_one_line_error(done, needle)
    assert not (tmp_path / "out.csv").exists()


# 4. Output onto a file the job reads ----------------------------------------------------------
def test_output_onto_the_corrections_file_is_refused(common, tmp_path):
    (tmp_path / "in.csv").write_text("title\nNurse\n")
    corrections = tmp_path / "reviewed.csv"
    corrections.write_text("title,code\nNight nurse,29-1141.00\n")
    done = predict(tmp_path, *common, "input=in.csv", "output=reviewed.csv",
                   "corrections=reviewed.csv")
    assert_one_line_error(done, "output=reviewed.csv is the corrections file")
    assert corrections.read_text() == "title,code\nNight nurse,29-1141.00\n"


# 5. JSONL records with keys of their own ------------------------------------------------------
@pytest.mark.parametrize("chunk_rows", [1, 10_000])
def test_jsonl_records_keep_their_own_keys(common, tmp_path, chunk_rows):
    lines = ['{"id": 1, "title": "Nurse", "site": null}',
             '{"title": "Plumber", "id": 2, "site": "A"}', '{"title": "Driver"}']
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    done = predict(tmp_path, *common, "input=in.jsonl", "output=out.jsonl",
                   f"chunk_rows={chunk_rows}", "top_k=1")
    assert done.returncode == 0, done.stderr[-2000:]
    out = records(tmp_path / "out.jsonl")
    inputs = [{k: v for k, v in r.items() if k in ("id", "title", "site")} for r in out]
    assert inputs == [json.loads(line) for line in lines]  # no key added, none lost, null kept
    assert [r["status"] for r in out] == ["ok", "ok", "ok"]


# 6. One line instead of a traceback -----------------------------------------------------------
@pytest.mark.parametrize("case, needle", [
    ("mixed types to parquet", "column 'zip' cannot be written as Parquet"),
    ("huge int to parquet", "column 'n' cannot be written as Parquet"),
    ("corrections with a header only", "reviewed.csv: no corrections"),
    ("device=banana", "device='banana': not a device"),
    ("device=cuda", "device='cuda': this machine has none"),
    ("max_input_length above the model's", "max_input_length=600: the model takes at most 256"),
    ("evidence=maybe", "evidence='maybe': give true or false"),
    ("text and input", 'give text="a job title" or input=FILE output=FILE, not both'),
    ("input with a status column", "has column(s) status, which prediction writes"),
])
def test_bad_options_and_files_are_one_line(common, tmp_path, case, needle):
    if case == "device=cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    source, extra = "in.csv", []
    (tmp_path / "in.csv").write_text("title\nNurse\n")
    if case == "mixed types to parquet":
        (tmp_path / "in.jsonl").write_text('{"title": "Nurse", "zip": 90210}\n'
                                           '{"title": "Plumber", "zip": "SW1A 1AA"}\n')
        source = "in.jsonl"
    elif case == "huge int to parquet":
        (tmp_path / "in.jsonl").write_text('{"title": "Nurse", "n": 123456789012345678901234}\n')
        source = "in.jsonl"
    elif case == "corrections with a header only":
        (tmp_path / "reviewed.csv").write_text("title,code\n")
        extra = ["corrections=reviewed.csv"]
    elif case == "input with a status column":
        (tmp_path / "in.csv").write_text("title,status\nNurse,new\n")
    else:
        extra = {"device=banana": ["device=banana"], "device=cuda": ["device=cuda"],
                 "max_input_length above the model's": ["max_input_length=600"],
                 "evidence=maybe": ["evidence=maybe"],
                 "text and input": ["text=Nurse"]}[case]
    done = predict(tmp_path, *common, f"input={source}", "output=out.parquet", *extra)
    assert_one_line_error(done, needle)
    assert not (tmp_path / "out.parquet").exists() and temp_files(tmp_path) == []


@pytest.mark.parametrize("text", ["???", "Dev ${salary}"])
def test_text_is_read_as_typed(common, tmp_path, text):
    done = predict(tmp_path, *common, f"text={text}", "top_k=2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0].split() == ["rank", "code", "title", "score"]


def test_train_options_are_one_line(tiny_bert, tiny_onet, tmp_path):
    (tmp_path / "file").write_text("x")
    base = [f"paths.data_dir={tiny_onet}", f"model.encoder.name={tiny_bert}",
            "trainer.fast_dev_run=true"]
    done = train_py(tmp_path, f"hydra.run.dir={tmp_path / 'run'}", "threads=abc", *base)
    assert_one_line_error(done, "threads='abc': give a whole number")
    done = train_py(tmp_path, f"hydra.run.dir={tmp_path / 'file' / 'run'}", *base)
    assert_one_line_error(done, f"cannot create the output folder {tmp_path / 'file' / 'run'}",
                          "is a file")


def damage(run: Path, case: str) -> None:
    """Tamper with one file of a copied run, as a careless or hostile colleague might."""
    def edit(name: str, **values):
        state = torch.load(run / name, weights_only=True)
        torch.save({**state, **values}, run / name)

    memory = torch.load(run / runs.MEMORY_FILE, weights_only=True)
    record = json.loads((run / runs.RUN_FILE).read_text())
    if case == "cache of the wrong type":
        torch.save([1, 2, 3], run / runs.CACHE_FILE)
    elif case == "cache of the wrong shape":
        edit(runs.CACHE_FILE, embeddings=torch.zeros(12, 7))
    elif case == "cache of the wrong length":
        edit(runs.CACHE_FILE, embeddings=torch.zeros(5, 32))
    elif case == "memory of the wrong type":
        torch.save({"embeddings": "x"}, run / runs.MEMORY_FILE)
    elif case == "memory of the wrong shape":
        edit(runs.MEMORY_FILE, embeddings=torch.zeros(len(memory["labels"]), 7))
    elif case == "memory labels out of range":
        edit(runs.MEMORY_FILE, labels=memory["labels"] + 100)
    elif case == "memory of the wrong length":
        edit(runs.MEMORY_FILE, titles=memory["titles"][:3])
    elif case == "unknown recipe":
        (run / runs.RUN_FILE).write_text(json.dumps({**record, "recipe": "title_and_salary"}))
    else:  # negative lengths
        (run / runs.RUN_FILE).write_text(json.dumps({**record, "max_input_length": -1}))


@pytest.mark.parametrize("case, error", [
    ("cache of the wrong type", None),  # the cache is derived: rebuilt
    ("cache of the wrong shape", None),
    ("cache of the wrong length", None),
    ("memory of the wrong type", "not a readable exemplar memory"),
    ("memory of the wrong shape", None),  # its titles and labels are right: re-encoded
    ("memory labels out of range", "not an exemplar memory (wrong types, shapes or labels)"),
    ("memory of the wrong length", "not an exemplar memory (wrong types, shapes or labels)"),
    ("unknown recipe", "unknown category-text recipe 'title_and_salary'"),
    ("negative lengths", "malformed run record (bad max_input_length)"),
])
def test_damaged_run_files_are_rebuilt_or_refused(run_dir, tiny_onet, tmp_path, case, error):
    run = shutil.copytree(run_dir, tmp_path / "run")
    damage(run, case)
    if error is not None:
        with pytest.raises(OcclassError, match=error.replace("(", r"\(").replace(")", r"\)")):
            load_run(run, tiny_onet)
        return
    titles = ["Nurse", "Plumber", "python developer"]
    expected = Predictor(load_run(run_dir, tiny_onet)).predict(titles).scores
    torch.testing.assert_close(Predictor(load_run(run, tiny_onet)).predict(titles).scores,
                               expected)


def test_a_damaged_run_is_one_line_from_the_command_line(run_dir, tiny_onet, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "run")
    damage(run, "memory labels out of range")
    (tmp_path / "in.csv").write_text("title\nNurse\n")
    done = predict(tmp_path, f"run={run}", f"data_dir={tiny_onet}", "input=in.csv",
                   "output=out.csv")
    assert_one_line_error(done, "exemplars.pt: not an exemplar memory")


# 7. Resources ---------------------------------------------------------------------------------
PEAK_MEMORY = ("import atexit, resource, runpy, sys; atexit.register(lambda: print("
               "'peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def peak_kib(cwd: Path, *overrides: str) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK_MEMORY, str(ROOT / "predict.py"),
                           "progress=false", "threads=1", *overrides], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stderr.split("peak ")[-1])


def test_a_huge_title_costs_no_more_memory_than_a_short_one(common, tmp_path):
    huge = "nurse " * 4_000_000  # 24 MB
    (tmp_path / "short.jsonl").write_text(json.dumps({"title": "nurse"}) + "\n")
    (tmp_path / "huge.jsonl").write_text(json.dumps({"title": huge}) + "\n")
    short = peak_kib(tmp_path, *common, "input=short.jsonl", "output=short_out.jsonl")
    long = peak_kib(tmp_path, *common, "input=huge.jsonl", "output=huge_out.jsonl")
    # the input itself is held a few times (read, parsed, written back): 24 MB each
    assert long - short < 400_000, (short, long)
    out = records(tmp_path / "huge_out.jsonl")[0]
    assert out["title"] == huge and out["status"] == "ok"


def test_run_files_follow_the_umask(run_dir):
    mode = 0o666 & ~runs.umask()
    files = [p for p in run_dir.rglob("*") if p.is_file() and "checkpoints" not in p.parts]
    assert {p.relative_to(run_dir).as_posix(): oct(p.stat().st_mode & 0o777) for p in files
            } == {p.relative_to(run_dir).as_posix(): oct(mode) for p in files}


# Minor items ----------------------------------------------------------------------------------
def test_a_nan_confidence_goes_to_review(run_dir, tiny_onet):
    predictor = Predictor(load_run(run_dir, tiny_onet))
    predictor.calibrator.temperature = float("nan")  # a confidence that cannot be computed
    result = predictor.predict(["Nurse", ""])
    assert pd.isna(result.confidence[0]) and result.needs_review.tolist() == [True, None]


def test_titles_that_are_not_text_get_a_status(common, tmp_path):
    table = pa.table({"id": [1, 2, 3], "title": pa.array([b"Nurse", b"\xff", None], pa.binary())})
    pq.write_table(table, tmp_path / "in.parquet")
    (tmp_path / "in.jsonl").write_text(
        '{"title": 12345}\n{"title": true}\n{"title": ["Nurse"]}\n{"title": {"a": 1}}\n'
        '{"title": "Nurse"}\n')
    done = predict(tmp_path, *common, "input=in.parquet", "output=out.parquet")
    assert done.returncode == 0, done.stderr[-2000:]
    assert pq.read_table(tmp_path / "out.parquet")["status"].to_pylist() == [
        "title is not text", "title is not text", "empty title"]
    done = predict(tmp_path, *common, "input=in.jsonl", "output=out.jsonl")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["status"] for r in records(tmp_path / "out.jsonl")] == [
        "ok", "title is not text", "title is not text", "title is not text", "ok"]
    assert "3 title is not text: no prediction" in done.stdout


def test_jsonl_nan_and_infinity_are_refused(common, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"title": "Nurse"}\n{"title": "Driver", "pay": NaN}\n')
    done = predict(tmp_path, *common, "input=in.jsonl", "output=out.jsonl")
    assert_one_line_error(done, "in.jsonl: line 2: NaN is not valid JSON")


@pytest.mark.parametrize("header, needle", [
    ("Title", "no column 'title', but 'Title': set columns.title='Title'"),
    ("title ", "no column 'title', but 'title ': set columns.title='title '"),
    ("id;title", "the header is one column holding semicolons"),
    ("id\ttitle", "the header is one column holding tabs"),
])
def test_a_near_title_column_gets_a_hint(common, tmp_path, header, needle):
    (tmp_path / "in.csv").write_text(f"{header}\n1\n")
    assert_one_line_error(predict(tmp_path, *common, "input=in.csv", "output=out.csv"), needle)


def test_a_jsonl_bom_gets_a_hint_and_a_csv_bom_is_kept(common, tmp_path):
    (tmp_path / "in.jsonl").write_text('\ufeff{"title": "Nurse"}\n', encoding="utf-8")
    done = predict(tmp_path, *common, "input=in.jsonl", "output=out.jsonl")
    assert_one_line_error(done, "line 1 is not a valid JSON object; it starts with a byte-order")
    (tmp_path / "in.csv").write_text("\ufefftitle\nInfirmière\n", encoding="utf-8")
    done = predict(tmp_path, *common, "input=in.csv", "output=out.csv", "top_k=1")
    assert done.returncode == 0, done.stderr[-2000:]
    out = (tmp_path / "out.csv").read_bytes()
    assert out.startswith(b"\xef\xbb\xbftitle,pred_code_1,") and "Infirmière".encode() in out


def test_review_below_without_a_run_is_refused(tiny_onet, tmp_path):
    done = predict(tmp_path, f"data_dir={tiny_onet}", "text=Nurse", "review_below=0.5")
    assert_one_line_error(done, "review_below= needs run=")


def test_zero_shot_caches_are_kept_per_category_length(tiny_bert, tiny_onet, tmp_path):
    path = tmp_path / "category_cache.pt"
    load_zero_shot(tiny_onet, model=str(tiny_bert), cache_path=path)
    before = path.read_bytes()
    load_zero_shot(tiny_onet, model=str(tiny_bert), cache_path=path, max_category_length=16)
    assert path.read_bytes() == before and (tmp_path / "category_cache-16.pt").is_file()


def test_log_lines_stay_out_of_the_text_table(common, tmp_path):
    done = predict(tmp_path, *common, "text=Nurse", "max_category_length=20",
                   "top_k=2")  # another length than the run's: encodes the categories, logs
    assert done.returncode == 0, done.stderr[-2000:]
    assert "encoding" in done.stderr
    assert done.stdout.splitlines()[0].split() == ["rank", "code", "title", "score"]
    assert "encoding" not in done.stdout


def test_the_missing_value_rule_is_the_same_from_python(run_dir, tiny_onet):
    predictor = Predictor(load_run(run_dir, tiny_onet))
    result = predictor.predict(["NA", "Nurse"])
    assert result.status.tolist() == ["title is a missing-value marker", "ok"]
    with pytest.raises(OcclassError, match="top_k='3': give a whole number"):
        predictor.predict(["Nurse"], top_k="3")


def test_an_untrained_run_says_so(train_cfg):
    from occlass.train.job import train

    cfg = train_cfg("trainer.max_epochs=0")
    train(cfg)
    assert "no training step ran" in (Path(cfg.paths.output_dir) / runs.REPORT_FILE).read_text()


def test_conflicting_corrections_warn_and_the_later_line_wins_and_are_cached(common, run_dir,
                                                                              tmp_path):
    (tmp_path / "reviewed.csv").write_text("title,code\nNight nurse,29-1141.00\n"
                                           "night  NURSE,29-2061.00\n")
    (tmp_path / "in.csv").write_text("title\nNight nurse\n")
    run = shutil.copytree(run_dir, tmp_path / "run")
    for attempt in ("first", "second"):
        done = predict(tmp_path, f"run={run}", common[1], "input=in.csv", "output=out.csv",
                       "corrections=reviewed.csv", "top_k=1")
        assert done.returncode == 0, done.stderr[-2000:]
        assert ("line 2 gives 'Night nurse' the code 29-1141.00, line 3 29-2061.00; the later "
                "line wins") in done.stdout
        assert pd.read_csv(tmp_path / "out.csv")["pred_code_1"].tolist() == ["29-2061.00"]
        # encoded once, then read from the run folder
        assert ("encoding 1 corrections" in done.stdout) == (attempt == "first"), done.stdout
    assert len(list(run.glob("corrections-*.pt"))) == 1


def test_a_run_resumed_into_a_new_folder_keeps_its_best_checkpoint(train_cfg, tmp_path):
    from occlass.train.job import train

    common = ("trainer.limit_train_batches=2", "eval_before=false", "callbacks=model_checkpoint",
              "optim.lr=0")  # no learning: every later epoch scores as the first
    train(train_cfg(*common, "trainer.max_epochs=1", f"paths.output_dir={tmp_path / 'first'}"))
    best = list((tmp_path / "first" / "checkpoints").glob("best-*.ckpt"))
    train(train_cfg(*common, "trainer.max_epochs=2", f"paths.output_dir={tmp_path / 'resumed'}",
                    f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"))
    assert len(best) == 1 and best[0].is_file()  # still the best, kept where it was
    assert not list((tmp_path / "resumed" / "checkpoints").glob("best-*.ckpt"))


def test_the_report_names_its_own_data_dir_flag(run_dir, tmp_path):
    from occlass.report.rebuild import rebuild

    with pytest.raises(OcclassError, match="O\\*NET data folder not found; set --data-dir DIR"):
        rebuild(run_dir, tmp_path / "no-such-release")
