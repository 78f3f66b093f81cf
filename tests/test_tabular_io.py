import csv
import datetime
import decimal
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from occlass.data.tabular_io import (
    MISSING_MARKERS,
    SUPPORTED,
    AtomicTableWriter,
    check_writable,
    is_missing_marker,
    read_chunks,
)
from occlass.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
FORMATS = [ext.lstrip(".") for ext in SUPPORTED]


def sample() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "title": ["Software Developer", "NA", None, 'Café owner, "chef"', "null"],
            "code": ["15-1252.00", "11-1021.00", "35-1011.00", "35-1011.00", "15-1252.00"],
            "zip": ["01234", "00501", "10001", None, "02139"],
        },
        dtype=str,
    )


def values(df: pd.DataFrame) -> dict[str, list]:
    """The Python values of each column, every kind of missing value as None."""
    return df.astype(object).where(df.notna(), None).to_dict("list")


def write(path, df, rows_per_chunk=2):
    with AtomicTableWriter(path) as w:
        for start in range(0, len(df), rows_per_chunk):
            w.write(df.iloc[start : start + rows_per_chunk])


def copy(source, target, chunk_rows=2):
    """Read `source` in chunks and write every chunk, the zero-row one first, to `target`."""
    with AtomicTableWriter(target) as w:
        for chunk in read_chunks(source, chunk_rows=chunk_rows):
            w.write(chunk)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_in_chunks(tmp_path, fmt):
    df = sample()
    path = tmp_path / "new_dir" / f"table.{fmt.upper()}"  # parent is created; suffix case ignored
    write(path, df)

    header, *chunks = read_chunks(path, chunk_rows=2, required=["title", "code"])

    assert len(header) == 0 and list(header.columns) == list(df.columns)
    assert header.dtypes.equals(chunks[0].dtypes)
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert values(pd.concat(chunks, ignore_index=True)) == values(df)
    text = pd.concat(read_chunks(path, dtype_str=True), ignore_index=True)
    assert values(text) == values(df)
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temp file left behind


def test_parquet_round_trip_keeps_types_and_nulls(tmp_path):
    tz = datetime.timezone(datetime.timedelta(hours=2))
    table = pa.table({
        "zip": pa.array([90210, None, 2139], pa.int64()),
        "count": pa.array([1, 2, None], pa.int32()),
        "share": [0.1, 1 / 3, None],
        "flag": [True, None, False],
        "title": ["NA", None, ""],
        "seen": pa.array([datetime.datetime(2024, 1, 1, tzinfo=tz), None, None]),
        "day": pa.array([datetime.date(2024, 1, 2), None, None]),
        "price": pa.array([decimal.Decimal("1.20"), None, None], pa.decimal128(5, 2)),
        "tags": pa.array([[1, 2], None, []]),
        "nothing": pa.nulls(3),
        "kind": pa.array(["a", "b", "a"]).dictionary_encode(),
    })
    pq.write_table(table, tmp_path / "in.parquet")

    copy(tmp_path / "in.parquet", tmp_path / "out.parquet")

    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema == table.schema and out.equals(table)
    text = pd.concat(read_chunks(tmp_path / "in.parquet", dtype_str=True), ignore_index=True)
    assert values(text[["zip", "count", "title"]]) == {
        "zip": ["90210", None, "2139"], "count": ["1", "2", None], "title": ["NA", None, ""]}


def test_parquet_index_saved_by_pandas_stays_a_column(tmp_path):
    pd.DataFrame({"id": ["007", "003"], "title": ["a", "b"]}).set_index("id").to_parquet(
        tmp_path / "in.parquet")

    df = pd.concat(read_chunks(tmp_path / "in.parquet"), ignore_index=True)

    assert values(df) == {"title": ["a", "b"], "id": ["007", "003"]}


def test_jsonl_round_trip_keeps_json_types(tmp_path):
    rows = [
        {"zip": 90210, "share": 0.30000000000000004, "one": 1.0, "mixed": 5, "flag": True,
         "tags": [1, {"a": None}], "title": "NA", "text": "Café ☕", "big": 9007199254740993},
        {"zip": None, "share": None, "one": None, "mixed": "abc", "flag": None,
         "tags": None, "title": "null", "text": None, "big": -1},
        {"zip": 7, "share": 1e-20, "one": 3.0, "mixed": None, "flag": False,
         "tags": {"x": 1}, "title": "", "text": "x", "big": 0},
    ]
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    (tmp_path / "in.jsonl").write_text("\n" + text.replace("\n", "\n\n", 1), encoding="utf-8")

    copy(tmp_path / "in.jsonl", tmp_path / "out.jsonl")

    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == text  # blank lines dropped


def test_csv_round_trip_keeps_text(tmp_path):
    rows = [["title", "description", "zip"], ["NA", "", "01234"], ["null", "two\nlines", "12345.0"],
            ['Café, "chef"', "None", ""]]
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)

    copy(tmp_path / "in.csv", tmp_path / "out.csv")

    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        assert list(csv.reader(f)) == rows
    df = pd.concat(read_chunks(tmp_path / "in.csv"), ignore_index=True)
    assert values(df)["description"] == [None, "two\nlines", "None"]  # only "" is missing


def test_jsonl_scores_are_written_like_csv(tmp_path):
    scores = np.array([0.432725, 0.41383499], dtype=np.float32).round(6)
    df = pd.DataFrame({"pred_score_1": scores, "exact": [1 / 3, 0.1]})
    write(tmp_path / "out.jsonl", df)
    write(tmp_path / "out.csv", df)

    lines = (tmp_path / "out.jsonl").read_text().splitlines()

    assert lines == ['{"pred_score_1": 0.432725, "exact": 0.3333333333333333}',
                     '{"pred_score_1": 0.413835, "exact": 0.1}']
    assert (tmp_path / "out.csv").read_text().splitlines()[1:] == [
        "0.432725,0.3333333333333333", "0.413835,0.1"]


def test_parquet_values_are_read_as_text(tmp_path):
    path = tmp_path / "in.parquet"
    pd.DataFrame({"zip": pd.array([1234, None], "Int64"), "score": [0.5, None]}).to_parquet(path)

    df = pd.concat(read_chunks(path, dtype_str=True))

    assert values(df) == {"zip": ["1234", None], "score": ["0.5", None]}


def test_jsonl_values_are_read_as_text(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"title": "Nurse", "zip": 1234, "code": null}\n\n{"title": "Cook"}\n')

    df = pd.concat(read_chunks(path, dtype_str=True))

    assert values(df) == {"title": ["Nurse", "Cook"], "zip": ["1234", None], "code": [None, None]}


def test_csv_is_always_text(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("title,zip\nCook,01234\n")

    df = pd.concat(read_chunks(path))

    assert df.loc[0, "zip"] == "01234"


def test_missing_markers_are_pandas_defaults():
    markers = sorted(MISSING_MARKERS)
    parsed = pd.read_csv(io.StringIO("\n".join(["x", *markers[1:]]) + "\n"),
                         skip_blank_lines=False)
    assert parsed["x"].isna().all() and {"", "NA", "N/A", "null", "None", "nan"} <= MISSING_MARKERS

    series = pd.Series(["NA", " n/a ", "", "null", "Nancy", "n.a.", "none", None, np.nan, 5])
    assert is_missing_marker(series).tolist() == [True] * 4 + [False] * 6
    arrow = pd.Series(["NULL", None, "x"], dtype=pd.ArrowDtype(pa.string()))
    assert is_missing_marker(arrow).tolist() == [True, False, False]


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_required_column_is_named(tmp_path, fmt):
    path = tmp_path / f"in.{fmt}"
    write(path, sample()[["code", "zip"]])

    with pytest.raises(DataError, match=r"missing required column\(s\) title.*code, zip") as err:
        list(read_chunks(path, required=["title", "code"]))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_duplicate_columns_are_refused(tmp_path, fmt):
    path = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        path.write_text("id,title,code,title,id\n1,a,b,c,2\n")
    else:
        names = ["id", "title", "code", "title", "id"]
        pq.write_table(pa.Table.from_arrays([pa.array(["x"])] * 5, names=names), path)

    with pytest.raises(DataError, match=r"duplicate column name\(s\) id, title; rename") as err:
        list(read_chunks(path))
    assert str(err.value).startswith(f"{path}: ")


def test_empty_column_names_are_not_duplicates(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("title,code,,\nNurse,29-1141.00,,\n")

    columns = list(pd.concat(read_chunks(path)).columns)

    assert columns == ["title", "code", "Unnamed: 2", "Unnamed: 3"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_row_table_gives_header_and_types(tmp_path, fmt):
    source, target = tmp_path / f"in.{fmt}", tmp_path / f"out.{fmt}"
    if fmt == "csv":
        source.write_text("title,zip\n")
    elif fmt == "jsonl":
        source.write_text("\n")
    else:
        pq.write_table(pa.table({"title": pa.array([], pa.string()),
                                 "zip": pa.array([], pa.int64())}), source)

    chunks = list(read_chunks(source, required=["title"]))
    with AtomicTableWriter(target) as w:
        for chunk in chunks:
            w.write(chunk.assign(pred_code_1=None, pred_score_1=np.float32("nan")))

    assert len(chunks) == 1 and len(chunks[0]) == 0
    if fmt == "csv":
        assert target.read_text() == "title,zip,pred_code_1,pred_score_1\n"
    elif fmt == "jsonl":
        assert list(chunks[0].columns) == ["title"] and target.read_bytes() == b""
    else:
        assert pq.read_schema(target).remove_metadata() == pa.schema(
            {"title": pa.string(), "zip": pa.int64(), "pred_code_1": pa.string(),
             "pred_score_1": pa.float32()})


def test_empty_jsonl_is_a_table_without_rows(tmp_path):
    path = tmp_path / "in.jsonl"
    path.touch()

    assert [list(c.columns) for c in read_chunks(path, required=["title"])] == [["title"]]


def test_header_only_csv_checks_header(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("title,code\n")

    assert [len(c) for c in read_chunks(path, required=["title"])] == [0]
    with pytest.raises(DataError, match="missing required column.*description"):
        list(read_chunks(path, required=["description"]))


@pytest.mark.parametrize("dtype_str", [False, True])
def test_line_column_counts_physical_lines(tmp_path, dtype_str):
    csv_path, jsonl_path, parquet_path = (tmp_path / f"in.{ext}" for ext in FORMATS)
    csv_path.write_text('title,description\n\na,"two\nlines"\n   \nb,\n"c\n\nd",x\ne,y\n')
    jsonl_path.write_text('\n{"title": "a"}\n\n\n{"title": "b"}\n  \n{"title": "c"}\n')
    pq.write_table(pa.table({"title": ["a", "b", "c"]}), parquet_path)

    def lines(path):
        chunks = list(read_chunks(path, chunk_rows=2, dtype_str=dtype_str, line_column="line"))
        assert all(list(c.columns)[-1] == "line" for c in chunks)
        return pd.concat(chunks)[["title", "line"]].values.tolist()

    assert lines(csv_path) == [["a", 3], ["b", 6], ["c\n\nd", 7], ["e", 10]]
    assert lines(jsonl_path) == [["a", 2], ["b", 5], ["c", 7]]
    assert lines(parquet_path) == [["a", 1], ["b", 2], ["c", 3]]


def test_zero_byte_file_is_an_error(tmp_path):
    path = tmp_path / "in.csv"
    path.touch()

    with pytest.raises(DataError, match="is empty"):
        read_chunks(path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "in.xlsx"
    path.write_text("x")

    with pytest.raises(DataError, match=r"unsupported.*\.csv, \.jsonl, \.parquet"):
        read_chunks(path)
    with pytest.raises(DataError, match="unsupported"):
        AtomicTableWriter(tmp_path / "out.txt")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"

    with pytest.raises(DataError, match="does not exist") as err:
        read_chunks(path)
    assert str(path) in str(err.value)


def test_folder_as_input(tmp_path):
    (tmp_path / "in.csv").mkdir()

    with pytest.raises(DataError, match="in.csv: is a folder, not a file"):
        read_chunks(tmp_path / "in.csv")


def test_check_writable(tmp_path):
    (tmp_path / "out.csv").mkdir()
    (tmp_path / "file").write_text("x")

    check_writable(tmp_path / "new" / "dir" / "out.csv")  # created when written
    assert sorted(os.listdir(tmp_path)) == ["file", "out.csv"]
    with pytest.raises(DataError, match=r"out\.csv: is a folder, not a file"):
        check_writable(tmp_path / "out.csv")
    for path in (tmp_path / "file" / "out.csv", tmp_path / "file" / "sub" / "out.csv"):
        message = rf"{re.escape(str(path))}: cannot be written, as .*file is a file, not a folder"
        with pytest.raises(DataError, match=message):
            check_writable(path)
    with pytest.raises(DataError, match="unsupported"):
        check_writable(tmp_path / "out.xlsx")
    with pytest.raises(DataError, match="is a folder"):
        AtomicTableWriter(tmp_path / "out.csv").__enter__()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
def test_check_writable_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(DataError, match="folder .*ro is not writable"):
            check_writable(folder / "out.csv")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_non_utf8_file(tmp_path, fmt):
    path = tmp_path / f"in.{fmt}"
    rows = b"title\nok\nCaf\xe9\n" if fmt == "csv" else b'{"title": "ok"}\n{"title": "Caf\xe9"}\n'
    path.write_bytes(rows)

    with pytest.raises(DataError, match="not valid UTF-8.*re-save") as err:
        list(read_chunks(path))
    assert f"line {3 if fmt == 'csv' else 2}" in str(err.value)


@pytest.mark.parametrize(
    ("bad_line", "chunk_rows"), [('{"title": oops}', 1), ('{"title": oops}', 10), ("[1, 2]", 10)]
)
def test_malformed_jsonl_line(tmp_path, bad_line, chunk_rows):
    path = tmp_path / "in.jsonl"
    path.write_text('{"title": "a"}\n\n{"title": "b"}\n' + bad_line + "\n")

    with pytest.raises(DataError, match="line 4 is not a valid JSON object"):
        list(read_chunks(path, chunk_rows=chunk_rows))


def test_malformed_csv_row(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("title,code\na,b\nc,d,e\n")

    with pytest.raises(DataError, match="line 3: 3 fields but the header has 2"):
        list(read_chunks(path))


def test_invalid_parquet(tmp_path):
    path = tmp_path / "in.parquet"
    path.write_text("not parquet")

    with pytest.raises(DataError, match="not a valid Parquet file"):
        list(read_chunks(path))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("existing", [None, b"old contents"])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, SystemExit])
def test_failure_mid_write_leaves_no_trace(tmp_path, fmt, existing, error):
    path = tmp_path / f"out.{fmt}"
    if existing is not None:
        path.write_bytes(existing)

    with pytest.raises(error, match="boom"), AtomicTableWriter(path) as w:
        w.write(sample())
        raise error("boom")

    if existing is None:
        assert os.listdir(tmp_path) == []
    else:
        assert os.listdir(tmp_path) == [path.name]
        assert path.read_bytes() == existing


def test_sigterm_turned_into_an_exception_leaves_no_trace(tmp_path):
    path = tmp_path / "out.parquet"
    script = (
        "import signal, sys, time\n"
        "import pandas as pd\n"
        "from occlass.data.tabular_io import AtomicTableWriter\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
        f"with AtomicTableWriter({str(path)!r}) as w:\n"
        "    w.write(pd.DataFrame({'title': ['a']}))\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline() == "writing\n"
    assert len(os.listdir(tmp_path)) == 1  # the temporary file

    child.send_signal(signal.SIGTERM)

    assert child.wait(timeout=30) == 143
    assert os.listdir(tmp_path) == []


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    stale = [tmp_path / f".out.csv.tmp-{host}-{dead.pid}",
             tmp_path / f".out.csv.tmp-{host}-{dead.pid}-0a1b2c3d"]
    kept = [tmp_path / f".out.csv.tmp-{host}-{os.getppid()}",  # a live process's
            tmp_path / f".out.csv.tmp-otherhost-{dead.pid}",  # another host's
            tmp_path / f".other.csv.tmp-{host}-{dead.pid}"]  # another output's
    for path in (*stale, *kept):
        path.write_text("half a table")

    with AtomicTableWriter(tmp_path / "out.csv") as w:
        w.write(sample())

    assert sorted(os.listdir(tmp_path)) == sorted(["out.csv", *(p.name for p in kept)])


def test_two_writers_of_one_process_write_the_same_path_at_once(tmp_path):
    """Each writer has its own temporary file (the review desk exports from many threads)."""
    path = tmp_path / "out.csv"
    with AtomicTableWriter(path) as first, AtomicTableWriter(path) as second:
        first.write(sample().head(1))
        second.write(sample())
    # the second one's file is replaced by the first one's, which closes last
    assert path.read_text().splitlines() == ["title,code,zip",
                                             "Software Developer,15-1252.00,01234"]
    assert os.listdir(tmp_path) == ["out.csv"]


def test_chunks_with_different_columns_are_rejected(tmp_path):
    path = tmp_path / "out.csv"

    with pytest.raises(DataError, match="differ"), AtomicTableWriter(path) as w:
        w.write(pd.DataFrame({"a": ["1"]}))
        w.write(pd.DataFrame({"b": ["1"]}))
    assert not path.exists()


def test_parquet_chunks_with_clashing_types_are_rejected(tmp_path):
    path = tmp_path / "out.parquet"

    with pytest.raises(DataError, match="column types differ"), AtomicTableWriter(path) as w:
        w.write(pd.DataFrame({"a": [1]}))
        w.write(pd.DataFrame({"a": ["x"]}))
    assert os.listdir(tmp_path) == []


def test_parquet_types_come_from_the_first_chunk_with_rows(tmp_path):
    path = tmp_path / "out.parquet"
    with AtomicTableWriter(path) as w:
        w.write(pd.DataFrame({"title": [], "n": [], "error": []}, dtype=object))
        w.write(pd.DataFrame({"title": ["a"], "n": [1], "error": [None]}, dtype=object))
        w.write(pd.DataFrame({"title": ["b"], "n": [None], "error": ["timeout"]}, dtype=object))

    assert pq.read_schema(path).remove_metadata() == pa.schema(
        {"title": pa.string(), "n": pa.int64(), "error": pa.string()})
    assert pq.read_table(path).column("error").to_pylist() == [None, "timeout"]


def test_writing_no_chunks(tmp_path):
    with AtomicTableWriter(tmp_path / "out.csv", columns=["title", "code"]):
        pass
    with AtomicTableWriter(tmp_path / "out.parquet", columns=["title", "code"]):
        pass
    with AtomicTableWriter(tmp_path / "out.jsonl"):
        pass

    assert (tmp_path / "out.csv").read_text() == "title,code\n"
    assert [len(c) for c in read_chunks(tmp_path / "out.csv", required=["code"])] == [0]
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 0 and table.column_names == ["title", "code"]
    assert [len(c) for c in read_chunks(tmp_path / "out.parquet", required=["title"])] == [0]
    assert (tmp_path / "out.jsonl").read_bytes() == b""
