"""The review store: an embedded SQLite database of the files under review, their rows and every
decision, saved as it is made (a closed tab, a reload or a killed server loses nothing).

A decision is one row of `decisions`, keyed by (file, row): two reviewers on one file write
different rows, and on the same row the last write wins and records who made it. Rows learnt
from a decision follow it: re-deciding or undoing it re-learns or undoes them (a row a reviewer
decided directly stays). Exports read
the coded file again and merge the decisions: `final_code`, `final_title`, `decided_by`
("model", "reviewer" or "correction": learnt from a reviewer's decision on a near-equal title)
and `reviewer`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from occlass.data.tabular_io import AtomicTableWriter, neutralise_formulas, read_chunks
from occlass.errors import OcclassError

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, coded TEXT NOT NULL, added TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    file INTEGER NOT NULL REFERENCES files(id), row INTEGER NOT NULL, title TEXT,
    description TEXT, review INTEGER NOT NULL, prediction TEXT NOT NULL,
    PRIMARY KEY (file, row));
CREATE TABLE IF NOT EXISTS decisions (
    file INTEGER NOT NULL, row INTEGER NOT NULL, code TEXT NOT NULL, decided_by TEXT NOT NULL,
    reviewer TEXT NOT NULL, via INTEGER, at TEXT NOT NULL, PRIMARY KEY (file, row),
    FOREIGN KEY (file, row) REFERENCES rows(file, row));
"""
CHUNK_ROWS = 10_000


def is_coded(columns) -> bool:
    """Whether a table is predict.py's output (else it is predicted first)."""
    return {"pred_code_1", "status"} <= set(columns)


def _true(value) -> bool:
    return str(value).strip().lower() in ("true", "1")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class ReviewStore:
    """The review database at `path` (created with its tables if new). Every call opens its own
    connection, so the store can be used from any thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"damaged ({check})")
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as err:
            raise OcclassError(f"review_db={self.path}: cannot be used as the review database "
                               f"({err}); give a writable SQLite file, or a new name") from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    def add_file(self, name: str, coded: str | Path, prediction_column) -> int:
        """Register predict.py's output `coded` under `name`; `prediction_column(name)` says
        which of its columns the predictor wrote (shown on the page). Rows flagged
        `needs_review` (all rows with a prediction, when the file has no such column) form the
        review queue. Returns the file's id."""
        with self._connect() as db:
            file = db.execute("INSERT INTO files (name, coded, added) VALUES (?, ?, ?)",
                              (name, str(coded), _now())).lastrowid
            start = 0
            for chunk in read_chunks(coded, CHUNK_ROWS, required=["title", "status"],
                                     dtype_str=True):
                shown = [c for c in chunk.columns if prediction_column(c)]
                review = (chunk["needs_review"].map(_true) if "needs_review" in chunk
                          else chunk["status"].eq("ok"))
                records = chunk[shown].astype(object).where(chunk[shown].notna(), None)
                description = chunk.get("description", pd.Series(None, index=chunk.index))
                db.executemany(
                    "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?)",
                    [(file, start + i, title, text, int(flag), json.dumps(record))
                     for i, (title, text, flag, record) in enumerate(zip(
                         chunk["title"], description.astype(object).where(description.notna(),
                                                                          None),
                         review, records.to_dict("records")))])
                start += len(chunk)
        return file

    def files(self) -> list[dict]:
        with self._connect() as db:
            return [dict(r) for r in db.execute(
                "SELECT f.id, f.name, f.added, COUNT(r.row) AS rows, "
                "COALESCE(SUM(r.review), 0) AS to_review FROM files f "
                "LEFT JOIN rows r ON r.file = f.id GROUP BY f.id ORDER BY f.id")]

    def file(self, file: int) -> dict | None:
        with self._connect() as db:
            found = db.execute("SELECT * FROM files WHERE id = ?", (file,)).fetchone()
        return dict(found) if found else None

    def rows(self, file: int) -> list[dict]:
        """Every row with its prediction and decision, those to review first (in file order)."""
        with self._connect() as db:
            found = db.execute(
                "SELECT r.row, r.title, r.description, r.review, r.prediction, d.code, "
                "d.decided_by, d.reviewer, d.at FROM rows r LEFT JOIN decisions d "
                "ON d.file = r.file AND d.row = r.row WHERE r.file = ? "
                "ORDER BY r.review DESC, r.row", (file,)).fetchall()
        return [{"row": r["row"], "title": r["title"], "description": r["description"],
                 "review": bool(r["review"]), "prediction": json.loads(r["prediction"]),
                 "decision": None if r["code"] is None else
                 {"code": r["code"], "decided_by": r["decided_by"], "reviewer": r["reviewer"],
                  "at": r["at"]}} for r in found]

    def row(self, file: int, row: int) -> dict | None:
        with self._connect() as db:
            found = db.execute("SELECT row, title FROM rows WHERE file = ? AND row = ?",
                               (file, row)).fetchone()
        return dict(found) if found else None

    def decide(self, file: int, row: int, code: str, reviewer: str,
               learn: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame] | None = None
               ) -> tuple[dict | None, pd.DataFrame]:
        """Save a reviewer's decision, replacing any earlier one on the row and the rows learnt
        from it; then, given `learn(corrections, pending)` (the file's corrections and its
        still-undecided rows to review (row, title)), decide
        the rows it returns (row, code) as learnt from this one. One transaction, begun at
        once: all of it is saved or nothing, and two decisions on one row are one after the
        other. Returns the decision replaced and the rows learnt."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            before = db.execute("SELECT code, decided_by, reviewer, at FROM decisions "
                                "WHERE file = ? AND row = ?", (file, row)).fetchone()
            db.execute("DELETE FROM decisions WHERE file = ? AND via = ? AND "
                       "decided_by = 'correction'", (file, row))
            db.execute("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, 'reviewer', ?, NULL, ?)",
                       (file, row, code, reviewer, _now()))
            learnt = pd.DataFrame({"row": [], "code": []})
            if learn is not None:
                learnt = learn(self._corrections(db, file), self._pending(db, file))
                db.executemany(
                    "INSERT OR IGNORE INTO decisions VALUES (?, ?, ?, 'correction', ?, ?, ?)",
                    [(file, int(r), c, reviewer, row, _now())
                     for r, c in zip(learnt["row"], learnt["code"])])
        return (dict(before) if before else None), learnt

    @staticmethod
    def _pending(db: sqlite3.Connection, file: int) -> pd.DataFrame:
        """The rows still to review (row, title)."""
        return pd.read_sql_query(
            "SELECT r.row, r.title FROM rows r LEFT JOIN decisions d ON d.file = r.file "
            "AND d.row = r.row WHERE r.file = ? AND r.review = 1 AND d.code IS NULL "
            "ORDER BY r.row", db, params=(file,))


    def undo(self, file: int, row: int) -> list[int]:
        """Remove the decision on `row` and those learnt from it; returns the rows undone."""
        with self._connect() as db:
            undone = [r[0] for r in db.execute(
                "SELECT row FROM decisions WHERE file = ? AND (row = ? OR (via = ? AND "
                "decided_by = 'correction')) ORDER BY row", (file, row, row))]
            db.execute("DELETE FROM decisions WHERE file = ? AND (row = ? OR (via = ? AND "
                       "decided_by = 'correction'))", (file, row, row))
        return undone

    @staticmethod
    def _corrections(db: sqlite3.Connection, file: int) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT r.title, d.code FROM decisions d JOIN rows r ON r.file = d.file "
            "AND r.row = d.row WHERE d.file = ? AND d.decided_by = 'reviewer' "
            "ORDER BY d.row", db, params=(file,))

    def corrections(self, file: int) -> pd.DataFrame:
        """The reviewers' decisions as a corrections table (title, code), in file order."""
        with self._connect() as db:
            return self._corrections(db, file)

    def write_corrections(self, file: int) -> Path:
        """The corrections file (title,code CSV) beside the coded file, written atomically."""
        path = _beside(self.file(file)["coded"], "corrections", ".csv")
        with AtomicTableWriter(path) as writer:
            writer.write(self.corrections(file))
        return path

    def export(self, file: int, titles: dict[str, str]) -> Path:
        """The coded file with the final columns merged (`titles`: code → occupation title),
        in its format, beside it, for people: text a spreadsheet would take for a formula gets
        a leading quote. A row to review without a decision has empty final columns; any other
        row with a prediction keeps the model's top-1."""
        coded = Path(self.file(file)["coded"])
        with self._connect() as db:
            decided = pd.read_sql_query(
                "SELECT row, code, decided_by, reviewer FROM decisions WHERE file = ?",
                db, params=(file,), index_col="row")
            review = pd.read_sql_query("SELECT row, review FROM rows WHERE file = ?", db,
                                       params=(file,), index_col="row")["review"]
        path = _beside(coded, "reviewed", coded.suffix)
        start = 0
        with AtomicTableWriter(path) as writer:
            for chunk in read_chunks(coded, CHUNK_ROWS):
                rows = pd.RangeIndex(start, start + len(chunk))
                start += len(chunk)
                model = (~review.reindex(rows).astype(bool).to_numpy()
                         & chunk["status"].eq("ok").to_numpy())
                final = decided.reindex(rows).astype(object)
                by_model = model & final["code"].isna().to_numpy()
                final.loc[by_model, ["code", "decided_by"]] = np.column_stack(
                    [chunk["pred_code_1"].to_numpy(object)[by_model],
                     np.full(by_model.sum(), "model", dtype=object)])
                final = pd.DataFrame({"final_code": final["code"],
                                      "final_title": final["code"].map(titles),
                                      "decided_by": final["decided_by"],
                                      "reviewer": final["reviewer"]}).astype(object)
                final = final.where(final.notna(), None)
                writer.write(neutralise_formulas(pd.concat([chunk, final.set_index(chunk.index)],
                                                           axis=1)))
        return path


def _beside(coded: str | Path, what: str, suffix: str) -> Path:
    """`NAME.WHAT.SUFFIX` beside the coded file `NAME.EXT`."""
    coded = Path(coded)
    return coded.with_name(f"{coded.stem}.{what}{suffix}")


def safe_name(name: str) -> str:
    """A file name from a client, reduced to a harmless base name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.replace("\\", "/")).name).lstrip(".")
    return base[-100:] or "upload"
