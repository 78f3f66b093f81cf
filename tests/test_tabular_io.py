import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from occlass.errors import DataError
from occlass.tabular_io import SUPPORTED, AtomicTableWriter, read_chunks

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


def write(path, df, rows_per_chunk=2):
    with AtomicTableWriter(path) as w:
        for start in range(0, len(df), rows_per_chunk):
            w.write(df.iloc[start : start + rows_per_chunk])


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_in_chunks(tmp_path, fmt):
    df = sample()
    path = tmp_path / "new_dir" / f"table.{fmt.upper()}"  # parent is created; suffix case ignored
    write(path, df)

    chunks = list(read_chunks(path, chunk_rows=2, required=["title", "code"]))

    assert [len(c) for c in chunks] == [2, 2, 1]
    result = pd.concat(chunks, ignore_index=True)
    pd.testing.assert_frame_equal(result, df)
    assert result.loc[1, "title"] == "NA" and pd.isna(result.loc[2, "title"])
    assert result.loc[0, "zip"] == "01234"
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temp file left behind


def test_parquet_keeps_strings_and_types_columns_empty_in_first_chunk(tmp_path):
    path = tmp_path / "out.parquet"
    with AtomicTableWriter(path) as w:
        w.write(pd.DataFrame({"title": ["a"], "error": [None]}, dtype=object))
        w.write(pd.DataFrame({"title": ["b"], "error": ["timeout"]}, dtype=object))

    schema = pq.read_schema(path)
    assert all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in schema.types)
    assert pq.read_table(path).column("error").to_pylist() == [None, "timeout"]


def test_jsonl_values_are_read_as_text(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"title": "Nurse", "zip": 1234, "code": null}\n\n{"title": "Cook"}\n')

    df = pd.concat(read_chunks(path))

    assert df["zip"].tolist()[0] == "1234"
    assert df["code"].isna().all()
    assert df["title"].tolist() == ["Nurse", "Cook"]


def test_parquet_values_are_read_as_text(tmp_path):
    path = tmp_path / "in.parquet"
    pd.DataFrame({"zip": [1234, 2139], "score": [0.5, None]}).to_parquet(path)

    df = next(read_chunks(path))

    assert df["zip"].tolist() == ["1234", "2139"]
    assert df["score"].tolist()[0] == "0.5" and pd.isna(df["score"].tolist()[1])


def test_dtype_str_false_lets_pandas_infer_types(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("title,zip\nCook,01234\n")

    df = next(read_chunks(path, dtype_str=False))

    assert df.loc[0, "zip"] == 1234


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_required_column_is_named(tmp_path, fmt):
    path = tmp_path / f"in.{fmt}"
    write(path, sample()[["code", "zip"]])

    with pytest.raises(DataError, match=r"missing required column\(s\) title.*code, zip") as err:
        list(read_chunks(path, required=["title", "code"]))
    assert str(path) in str(err.value)


def test_header_only_csv_yields_nothing_but_checks_header(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("title,code\n")

    assert list(read_chunks(path, required=["title"])) == []
    with pytest.raises(DataError, match="missing required column.*description"):
        list(read_chunks(path, required=["description"]))


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


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_non_utf8_file(tmp_path, fmt):
    path = tmp_path / f"in.{fmt}"
    rows = b"title\nok\nCaf\xe9\n" if fmt == "csv" else b'{"title": "ok"}\n{"title": "Caf\xe9"}\n'
    path.write_bytes(rows)

    with pytest.raises(DataError, match="not valid UTF-8.*re-save") as err:
        list(read_chunks(path))
    assert f"line {3 if fmt == 'csv' else 2}" in str(err.value)


# An array line is caught when it shares a chunk with objects (pandas then fails on it).
@pytest.mark.parametrize(
    ("bad_line", "chunk_rows"), [('{"title": oops}', 1), ('{"title": oops}', 10), ("[1, 2]", 10)]
)
def test_malformed_jsonl_line(tmp_path, bad_line, chunk_rows):
    path = tmp_path / "in.jsonl"
    path.write_text('{"title": "a"}\n{"title": "b"}\n' + bad_line + "\n")

    with pytest.raises(DataError, match="line 3 is not a valid JSON object"):
        list(read_chunks(path, chunk_rows=chunk_rows))


def test_malformed_csv_row(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("title,code\na,b\nc,d,e\n")

    with pytest.raises(DataError, match="malformed CSV.*line 3"):
        list(read_chunks(path))


def test_invalid_parquet(tmp_path):
    path = tmp_path / "in.parquet"
    path.write_text("not parquet")

    with pytest.raises(DataError, match="not a valid Parquet file"):
        list(read_chunks(path))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("existing", [None, b"old contents"])
def test_failure_mid_write_leaves_no_trace(tmp_path, fmt, existing):
    path = tmp_path / f"out.{fmt}"
    if existing is not None:
        path.write_bytes(existing)

    with pytest.raises(RuntimeError, match="boom"), AtomicTableWriter(path) as w:
        w.write(sample())
        raise RuntimeError("boom")

    if existing is None:
        assert os.listdir(tmp_path) == []
    else:
        assert os.listdir(tmp_path) == [path.name]
        assert path.read_bytes() == existing


def test_chunks_with_different_columns_are_rejected(tmp_path):
    path = tmp_path / "out.csv"

    with pytest.raises(DataError, match="differ"), AtomicTableWriter(path) as w:
        w.write(pd.DataFrame({"a": ["1"]}))
        w.write(pd.DataFrame({"b": ["1"]}))
    assert not path.exists()


def test_writing_no_chunks(tmp_path):
    with AtomicTableWriter(tmp_path / "out.csv", columns=["title", "code"]):
        pass
    with AtomicTableWriter(tmp_path / "out.parquet", columns=["title", "code"]):
        pass
    with AtomicTableWriter(tmp_path / "out.jsonl"):
        pass

    assert (tmp_path / "out.csv").read_text() == "title,code\n"
    assert list(read_chunks(tmp_path / "out.csv", required=["code"])) == []
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 0 and table.column_names == ["title", "code"]
    assert list(read_chunks(tmp_path / "out.parquet", required=["title"])) == []
    assert (tmp_path / "out.jsonl").read_bytes() == b""
