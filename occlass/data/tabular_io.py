"""Streaming, chunked reading and atomic writing of CSV, JSONL and Parquet tables.

Memory stays flat however long the file is: readers yield one chunk at a time and
:class:`AtomicTableWriter` appends chunk by chunk to a temporary file that replaces the
target only when the whole table was written. Chunks read by :func:`read_chunks` and written
back by :class:`AtomicTableWriter` in the same format keep their values, types and nulls.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import itertools
import json
import math
import os
import secrets
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from occlass.errors import DataError

SUPPORTED = (".csv", ".jsonl", ".parquet")

# pandas' default missing-value markers (read_csv's `na_values`), which pandas keeps private.
MISSING_MARKERS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})


def is_missing_marker(values: pd.Series) -> pd.Series:
    """A bool Series: True where a value's text, stripped, is one of ``MISSING_MARKERS``
    ("NA", " null ", "" ...). Missing values themselves (NaN, None, NA) are False."""
    return values.astype("string").str.strip().isin(MISSING_MARKERS)


# OWASP's CSV injection rule: a cell starting with one of these is a formula to a spreadsheet.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with a `'` before every text cell that starts with a formula prefix (OWASP), so
    that a spreadsheet shows it as text; numbers and other cells stay as they are. For files
    meant for people: data files keep every value exact."""
    def safe(value):
        return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) \
            else value

    out = df.copy()
    for i, column in enumerate(df.columns):
        values = df.iloc[:, i]
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            out.isetitem(i, values.map(safe))
    return out


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise DataError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(SUPPORTED)}"
        )
    return suffix


def has_bom(path: str | os.PathLike) -> bool:
    """Whether a CSV file starts with the UTF-8 byte-order mark (Excel's sign that it is UTF-8)."""
    if Path(path).suffix.lower() != ".csv":
        return False
    with open(path, "rb") as f:
        return f.read(3) == codecs.BOM_UTF8


def check_writable(path: str | os.PathLike) -> None:
    """Raise :class:`DataError` unless a table can be written at ``path``: a supported type,
    not a folder, in a folder that exists (or can be created) and is writable."""
    path = Path(path)
    _suffix(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    folder = path.parent
    while not folder.exists():  # it will be created: its nearest existing parent must allow it
        folder = folder.parent
    if not folder.is_dir():
        raise DataError(f"{path}: cannot be written, as {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"{path}: cannot be written, as the folder {folder} is not writable")


def _as_str(df: pd.DataFrame) -> pd.DataFrame:
    """Every non-missing value as the text of its Python value (1234, not 1234.0, whatever the
    dtype backend); missing values stay missing."""
    return df.astype(object).astype(str).where(df.notna())


def _check_columns(path: Path, columns: Sequence, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        found = ", ".join(map(str, columns)) or "none"
        raise DataError(
            f"{path}: missing required column(s) {', '.join(missing)}; columns found: {found}"
        )


def _check_unique(path: Path, columns: Sequence[str]) -> None:
    """pandas would silently rename a second `title` to `title.1`: refuse instead. (Empty
    names, as trailing commas give, become distinct `Unnamed: N` columns.)"""
    duplicated = sorted({c for c in columns if c != "" and columns.count(c) > 1})
    if duplicated:
        raise DataError(f"{path}: duplicate column name(s) {', '.join(duplicated)}; rename them")


def _not_utf8(path: Path) -> DataError:
    """The error for a file that is not valid UTF-8, naming the first bad line."""
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                break
    return DataError(f"{path}: line {line_no} is not valid UTF-8 text; re-save the file as UTF-8")


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(physical line where it starts, fields) of each CSV record, header first; blank lines
    are skipped, as pandas does."""
    raw = []  # the physical lines of the record being read

    def physical_lines(f):
        for line in f:
            raw.append(line)
            yield line

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(physical_lines(f))
        start = 1
        try:
            for fields in reader:
                if len(raw) > 1 or raw[0].strip():
                    yield start, fields
                start = reader.line_num + 1
                raw.clear()
        except csv.Error as e:
            raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({e})") from None


def _too_long(path: Path, line: int, fields: list[str], header: list[str]) -> DataError:
    hint = ("a trailing comma?" if fields[len(header):] == [""] * (len(fields) - len(header))
            else "quote a field that holds a comma")
    return DataError(f"{path}, line {line}: {len(fields)} fields but the header has "
                     f"{len(header)} ({hint})")


def _long_record(path: Path) -> DataError | None:
    """The error for the first record with more fields than the header, if there is one."""
    records = _csv_records(path)
    _, header = next(records, (1, []))
    for line, fields in records:
        if len(fields) > len(header):
            records.close()
            return _too_long(path, line, fields, header)
    return None


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Text columns, one per header field. A row with more fields than the header is an error
    naming its line (pandas would make a long first row's extra field an index and shift the
    columns: ids gone, titles under `id`)."""
    records = _csv_records(path)
    header = next(records, (1, []))[1]
    first = next(records, None)
    records.close()
    _check_unique(path, header)
    if first is not None and len(first[1]) > len(header):
        raise _too_long(path, *first, header)
    try:
        with pd.read_csv(
            path,
            chunksize=chunk_rows,
            dtype=str,
            encoding="utf-8",
            keep_default_na=False,  # only an empty field is missing: a title "NA" stays "NA"
            na_values=[""],
            index_col=False,  # never an index column inferred from a long first row
        ) as reader:
            yield from reader
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file has no header row") from None
    except pd.errors.ParserError as e:
        raise _long_record(path) or DataError(
            f"{path}: malformed CSV: {' '.join(str(e).split())}") from None


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Records parsed by the json module into object columns: every value keeps its JSON type
    (an integer next to a null stays an integer, 1.0 stays a float); blank lines are skipped.
    NaN and Infinity are not JSON: refused, so that the output is JSON and keeps every value."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line, parse_constant=_not_json)
                except NotJSON as err:
                    raise DataError(f"{path}: line {line_no}: {err}") from None
                except ValueError:
                    row = None
                if not isinstance(row, dict):
                    bom = line_no == 1 and line.startswith("\ufeff")
                    raise DataError(f"{path}: line {line_no} is not a valid JSON object"
                                    + ("; it starts with a byte-order mark (BOM): re-save the "
                                       "file as UTF-8 without BOM" if bom else ""))
                rows.append(row)
                if len(rows) == chunk_rows:
                    yield pd.DataFrame(rows, dtype=object)
                    rows = []
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    if rows:
        yield pd.DataFrame(rows, dtype=object)


class NotJSON(ValueError):
    """NaN or Infinity, which Python's json module reads but JSON does not have."""


def _not_json(constant: str):
    raise NotJSON(f"{constant} is not valid JSON; write null or a string")


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowException as e:
        raise DataError(f"{path}: not a valid Parquet file ({e})") from None
    with pf:
        _check_unique(path, pf.schema_arrow.names)
        # Arrow-backed columns of the file's own types; pandas' index metadata is ignored, so an
        # index saved as a column stays a column.
        options = {"types_mapper": pd.ArrowDtype, "ignore_metadata": True}
        yield pf.schema_arrow.empty_table().to_pandas(**options)
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas(**options)


_READERS = {".csv": _csv_chunks, ".jsonl": _jsonl_chunks, ".parquet": _parquet_chunks}


def _record_lines(path: Path, suffix: str) -> Iterator[int]:
    """The physical line (Parquet: the row number) where each record starts, 1-based."""
    if suffix == ".csv":
        return itertools.islice((line for line, _ in _csv_records(path)), 1, None)
    if suffix == ".jsonl":
        return _jsonl_lines(path)
    return itertools.count(1)


def _jsonl_lines(path: Path) -> Iterator[int]:
    with open(path, encoding="utf-8", errors="replace") as f:
        yield from (line for line, text in enumerate(f, 1) if text.strip())


def read_chunks(
    path: str | os.PathLike,
    chunk_rows: int = 10_000,
    required: Sequence[str] = (),
    dtype_str: bool = False,
    line_column: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield the table at ``path``: first a zero-row DataFrame with its columns and dtypes (also
    when the table has no rows), then its rows as DataFrames of 1 to ``chunk_rows`` rows.

    The format follows the extension (see ``SUPPORTED``). Values come as stored, so writing
    them back with :class:`AtomicTableWriter` reproduces them: CSV as text (only an empty
    field is missing, "NA" stays the text "NA", "01234" keeps its zero), JSONL as object
    columns of the values the json module parsed (1234 next to a null stays the int 1234),
    Parquet with Arrow-backed dtypes of the file's own types. With ``dtype_str`` every value
    is text instead (1234 → "1234"; missing values stay missing). A JSONL file without records
    has no columns: its first frame has just the ``required`` ones.

    With ``line_column``, a column of that name is added last (replacing any such column): the
    1-based physical line where each record starts (Parquet: the row number), so errors can
    name lines even when quoted CSV fields span lines or a JSONL file has blank lines.

    Missing or duplicate columns, unreadable files and bad rows raise :class:`DataError`.
    The file's existence and type are checked at once, its contents while iterating.
    """
    path = Path(path)
    suffix = _suffix(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    if path.stat().st_size == 0 and suffix != ".jsonl":
        raise DataError(f"{path}: file is empty")
    chunks = _READERS[suffix](path, chunk_rows)
    lines = _record_lines(path, suffix) if line_column else None
    return _checked(path, chunks, required, dtype_str, line_column, lines)


def _checked(path: Path, chunks: Iterator[pd.DataFrame], required: Sequence[str],
             dtype_str: bool, line_column: str | None,
             lines: Iterator[int] | None) -> Iterator[pd.DataFrame]:
    """The zero-row header frame, checked, then the non-empty chunks; converted and numbered."""
    first = next(chunks, None)
    if first is None:  # a JSONL file without records
        first = pd.DataFrame(columns=list(required), dtype=object)
    _check_columns(path, list(first.columns), required)
    header = first.iloc[:0]
    for chunk in itertools.chain([header, first], chunks):
        if not len(chunk) and chunk is not header:
            continue
        if dtype_str:
            chunk = _as_str(chunk)
        if line_column:
            numbers = np.fromiter(itertools.islice(lines, len(chunk)), np.int64, len(chunk))
            chunk = chunk.drop(columns=line_column, errors="ignore")
            chunk[line_column] = numbers
        yield chunk


def _json_default(value):
    """Arrays (Arrow lists) as lists, numpy scalars as numbers, anything else (dates) as text."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else str(value)


_JSON = json.JSONEncoder(ensure_ascii=False, default=_json_default)


def _absent(value) -> bool:
    """NaN in an object column: a key its JSONL record lacked (JSON has no NaN; null is None),
    or an empty CSV field."""
    return isinstance(value, float) and math.isnan(value)


def _json_lines(df: pd.DataFrame) -> str:
    """One JSON object per row; missing values are null and numbers keep every digit, but a
    32-bit float (a rounded score) gets its own shortest digits, as in CSV: 0.432725. A key a
    record lacked stays absent."""
    float32 = {c: str for c in df.select_dtypes(np.float32).columns}
    absent = df.select_dtypes(object).map(_absent)
    df = df.astype(float32).astype({c: float for c in float32})
    records = df.astype(object).where(df.notna(), None).to_dict("records")
    for i in np.flatnonzero(absent.to_numpy().any(axis=1)) if absent.size else ():
        for key in absent.columns[absent.iloc[i].to_numpy()]:
            del records[i][key]
    return "".join(_JSON.encode(record) + "\n" for record in records)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


class AtomicTableWriter:
    """Write a table chunk by chunk; ``path`` appears only if the ``with`` block succeeds.

    Chunks go to a temporary file ``.NAME.tmp-HOST-PID-RANDOM`` (one per writer, so threads
    of a process may write the same path at once) next to ``path`` that replaces it on
    a clean exit and is deleted on any exception (KeyboardInterrupt, or SystemExit raised by a
    SIGTERM handler, too), leaving any earlier file at ``path`` untouched. Entering checks
    ``path`` (:func:`check_writable`) and deletes the temporary files that dead processes of
    this host left for it (``kill -9``).

    Every chunk must have the same columns, except in JSONL, where each record has its own
    keys: a key that a chunk's records lack is left out of them. The Parquet schema takes the types of the first
    chunk with rows (an object column without values is a string). A table without rows gets
    its CSV header and Parquet schema from a zero-row chunk with all the columns (e.g. the
    first frame of :func:`read_chunks` plus your own), else from ``columns`` (names only:
    Parquet strings). JSONL has no header: a table without rows is an empty file. A CSV file
    with ``bom`` starts with the UTF-8 byte-order mark (as its input did: Excel then reads it as
    UTF-8).
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] | None = None,
                 bom: bool = False):
        self.path = Path(path)
        self.suffix = _suffix(self.path)
        self.columns = list(columns) if columns is not None else None
        self.encoding = "utf-8-sig" if bom and self.suffix == ".csv" else "utf-8"
        self._prefix = f".{self.path.name}.tmp-{socket.gethostname()}-"
        self._tmp = self.path.with_name(f"{self._prefix}{os.getpid()}-{secrets.token_hex(4)}")
        self._file = None
        self._parquet: pq.ParquetWriter | None = None
        self._header: pd.DataFrame | None = None  # the first chunk, if it had no rows

    def __enter__(self) -> AtomicTableWriter:  # noqa: PYI034 (typing.Self needs 3.11)
        check_writable(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(self.path.parent):
            pid = name[len(self._prefix):].split("-")[0]
            if name.startswith(self._prefix) and pid.isdigit() and not _running(int(pid)):
                (self.path.parent / name).unlink(missing_ok=True)
        if self.suffix != ".parquet":
            self._file = open(self._tmp, "w", encoding=self.encoding, newline="")
        return self

    def write(self, df: pd.DataFrame) -> None:
        """Append one chunk; every chunk must have the same columns (JSONL: any)."""
        if self.columns is None:
            self.columns = list(df.columns)
        elif list(df.columns) != self.columns and self.suffix != ".jsonl":
            raise DataError(
                f"{self.path}: chunk columns {list(df.columns)} differ from {self.columns}"
            )
        if self.suffix == ".csv":
            df.to_csv(self._file, index=False, header=self._file.tell() == 0)
        elif self.suffix == ".jsonl":
            self._file.write(_json_lines(df))
        elif len(df) or self._parquet is not None:
            self._write_parquet(df)
        elif self._header is None:
            self._header = df

    def _write_parquet(self, df: pd.DataFrame) -> None:
        try:
            table = pa.Table.from_pandas(df, preserve_index=False)
        except (pa.ArrowException, OverflowError):
            raise self._not_parquet(df) from None
        if self._parquet is None:
            schema = pa.schema([
                f.with_type(pa.string()) if pa.types.is_null(f.type) and dtype == object else f
                for f, dtype in zip(table.schema, df.dtypes)
            ])
            self._parquet = pq.ParquetWriter(self._tmp, schema)
        try:
            table = table.cast(self._parquet.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise DataError(f"{self.path}: a chunk's column types differ from the first "
                            f"chunk's: {' '.join(str(e).split())}") from None
        self._parquet.write_table(table)

    def _not_parquet(self, df: pd.DataFrame) -> DataError:
        """The error naming the first column that Arrow cannot hold (mixed types, huge ints)."""
        for column in df.columns:
            try:
                pa.array(df[column], from_pandas=True)
            except (pa.ArrowException, OverflowError) as err:
                detail = " ".join(str(err).split())
                return DataError(f"{self.path}: column {column!r} cannot be written as Parquet "
                                 f"({detail}); write .jsonl or .csv instead")
        return DataError(f"{self.path}: cannot be written as Parquet; write .jsonl or .csv")

    def _close(self) -> None:
        for handle in (self._file, self._parquet):
            if handle is not None:
                handle.close()
        self._file = self._parquet = None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self.suffix == ".csv" and self._file.tell() == 0 and self.columns:
                    self.write(pd.DataFrame(columns=self.columns))
                elif self.suffix == ".parquet" and self._parquet is None:
                    header = self._header
                    self._write_parquet(pd.DataFrame(columns=self.columns or []) if header is None
                                        else header)
                self._close()
                os.replace(self._tmp, self.path)
        finally:
            with contextlib.suppress(Exception):  # the file goes anyway; keep the first error
                self._close()
            self._tmp.unlink(missing_ok=True)


def count_rows(path: str | os.PathLike) -> int | None:
    """Rows of a table, cheaply, for a progress bar: Parquet metadata, else a newline count."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            return pq.ParquetFile(path).metadata.num_rows
        with open(path, "rb") as f:
            lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    except (OSError, pa.ArrowException):
        return None
    return lines - (path.suffix.lower() == ".csv")
