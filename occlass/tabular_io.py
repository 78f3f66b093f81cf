"""Streaming, chunked reading and atomic writing of CSV, JSONL and Parquet tables.

Memory stays flat however long the file is: readers yield one chunk at a time and
:class:`AtomicTableWriter` appends chunk by chunk to a temporary file that replaces the
target only when the whole table was written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from occlass.errors import DataError

SUPPORTED = (".csv", ".jsonl", ".parquet")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise DataError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(SUPPORTED)}"
        )
    return suffix


def _as_str(df: pd.DataFrame) -> pd.DataFrame:
    """Cast every non-missing value to str; missing values stay missing."""
    return df.astype(str).where(df.notna())


def _check_columns(path: Path, columns: Sequence, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        found = ", ".join(map(str, columns)) or "none"
        raise DataError(
            f"{path}: missing required column(s) {', '.join(missing)}; columns found: {found}"
        )


def _not_utf8(path: Path) -> DataError:
    """The error for a file that is not valid UTF-8, naming the first bad line."""
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                break
    return DataError(f"{path}: line {line_no} is not valid UTF-8 text; re-save the file as UTF-8")


def _bad_json(path: Path, cause: Exception) -> DataError:
    """The error for a malformed JSONL file, naming the first line that is not a JSON object."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ok = isinstance(json.loads(line), dict)
            except ValueError:
                ok = False
            if not ok:
                return DataError(f"{path}: line {line_no} is not a valid JSON object")
    return DataError(f"{path}: malformed JSONL ({cause})")


def _csv_chunks(path: Path, chunk_rows: int, dtype_str: bool) -> Iterator[pd.DataFrame]:
    try:
        with pd.read_csv(
            path,
            chunksize=chunk_rows,
            dtype=str if dtype_str else None,
            encoding="utf-8",
            keep_default_na=False,
            na_values=[""],
        ) as reader:
            yield from reader
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file has no header row") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: malformed CSV: {' '.join(str(e).split())}") from None


def _jsonl_chunks(path: Path, chunk_rows: int, dtype_str: bool) -> Iterator[pd.DataFrame]:
    try:
        with pd.read_json(
            path,
            lines=True,
            chunksize=chunk_rows,
            dtype=False,
            dtype_backend="numpy_nullable",  # so 1234 next to a null stays 1234, not 1234.0
            encoding="utf-8",
        ) as reader:
            for chunk in reader:
                yield _as_str(chunk) if dtype_str else chunk
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except (ValueError, TypeError) as e:
        raise _bad_json(path, e) from None


def _parquet_chunks(path: Path, chunk_rows: int, dtype_str: bool) -> Iterator[pd.DataFrame]:
    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowException as e:
        raise DataError(f"{path}: not a valid Parquet file ({e})") from None
    with pf:
        # An empty frame first, so the columns are checked even when there are no rows.
        yield pf.schema_arrow.empty_table().to_pandas()
        for batch in pf.iter_batches(batch_size=chunk_rows):
            df = batch.to_pandas()
            yield _as_str(df) if dtype_str else df


_READERS = {".csv": _csv_chunks, ".jsonl": _jsonl_chunks, ".parquet": _parquet_chunks}


def read_chunks(
    path: str | os.PathLike,
    chunk_rows: int = 10_000,
    required: Sequence[str] = (),
    dtype_str: bool = True,
) -> Iterator[pd.DataFrame]:
    """Yield the table at ``path`` as DataFrames of at most ``chunk_rows`` rows.

    The format follows the extension (see ``SUPPORTED``). With ``dtype_str`` every value is
    read as text (missing values stay NaN), so codes such as "01234" keep their zeros.
    Missing ``required`` columns, unreadable files and bad rows raise :class:`DataError`.
    The file's existence and type are checked at once, its contents while iterating.
    """
    path = Path(path)
    reader = _READERS[_suffix(path)]
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    return _checked(path, reader(path, chunk_rows, dtype_str), required)


def _checked(
    path: Path, chunks: Iterator[pd.DataFrame], required: Sequence[str]
) -> Iterator[pd.DataFrame]:
    """Check the first chunk's columns, then pass on the non-empty chunks."""
    first = True
    for chunk in chunks:
        if first:
            _check_columns(path, list(chunk.columns), required)
            first = False
        if len(chunk):
            yield chunk


class AtomicTableWriter:
    """Write a table chunk by chunk; ``path`` appears only if the ``with`` block succeeds.

    Chunks go to a temporary file next to ``path`` that replaces it on a clean exit and is
    deleted on an exception, leaving any earlier file at ``path`` untouched. ``columns``
    gives the header (CSV) or string schema (Parquet) used when no chunk is written.
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] | None = None):
        self.path = Path(path)
        self.suffix = _suffix(self.path)
        self.columns = list(columns) if columns is not None else None
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._file = None
        self._parquet: pq.ParquetWriter | None = None
        self._written = False

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.suffix != ".parquet":
            self._file = open(self._tmp, "w", encoding="utf-8", newline="")
        return self

    def write(self, df: pd.DataFrame) -> None:
        """Append one chunk; every chunk must have the same columns."""
        if self.columns is None:
            self.columns = list(df.columns)
        elif list(df.columns) != self.columns:
            raise DataError(
                f"{self.path}: chunk columns {list(df.columns)} differ from {self.columns}"
            )
        if self.suffix == ".csv":
            df.to_csv(self._file, index=False, header=not self._written)
        elif self.suffix == ".jsonl":
            if len(df):
                df.to_json(
                    self._file,
                    orient="records",
                    lines=True,
                    force_ascii=False,
                    double_precision=15,
                )
        else:
            self._write_parquet(pa.Table.from_pandas(df, preserve_index=False))
        self._written = True

    def _write_parquet(self, table: pa.Table) -> None:
        if self._parquet is None:
            # A column with no values in the first chunk has no type yet: make it a string.
            schema = pa.schema(
                [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            )
            self._parquet = pq.ParquetWriter(self._tmp, schema)
        self._parquet.write_table(table.cast(self._parquet.schema))

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and not self._written:
                if self.suffix == ".csv" and self.columns:
                    self.write(pd.DataFrame(columns=self.columns))
                elif self.suffix == ".parquet":
                    schema = pa.schema([(c, pa.string()) for c in self.columns or []])
                    self._write_parquet(schema.empty_table())
            for handle in (self._file, self._parquet):
                if handle is not None:
                    handle.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
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
