"""The review store: an embedded SQLite database of the files under review, their rows and every
decision, saved as it is made (a closed tab, a reload or a killed server loses nothing).

A file is known by its content: the SHA-256 of the table opened and of its coded file. A
decision is one row of `decisions`, keyed by (file, row): two reviewers on one file write
different rows, and on the same row the last write wins and records who made it; each
reviewer's skips and undo history (their own decisions, in order) are kept too. A decision is a
code at its level (an O*NET-SOC occupation or a SOC 2018 group, `LEVELS`) or a residual outcome
(`OUTCOMES`: no code). Rows learnt from a decision follow it: re-deciding or undoing it
re-learns or undoes them (a row a reviewer decided directly stays). Exports read the coded file
again, refused unless it is the one reviewed (same checksum, every row's title the stored one),
and merge the decisions: `final_code`, `final_title`, `final_level` (the code's level, or the
outcome), `decided_by` ("model", "reviewer" or "correction": learnt from a reviewer's decision
on a near-equal title), `reviewer` and `review_comment`. A file's audit sample (rows the
model accepted, drawn at random to be checked) is kept too; its verdicts go in `audit`.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from occlass.data.tabular_io import AtomicTableWriter, neutralise_formulas, read_chunks
from occlass.errors import OcclassError

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, coded TEXT NOT NULL, added TEXT NOT NULL,
    sha256 TEXT, coded_sha256 TEXT, title_column TEXT, description_column TEXT);
CREATE TABLE IF NOT EXISTS rows (
    file INTEGER NOT NULL REFERENCES files(id), row INTEGER NOT NULL, title TEXT,
    description TEXT, review INTEGER NOT NULL, prediction TEXT NOT NULL,
    PRIMARY KEY (file, row));
CREATE TABLE IF NOT EXISTS decisions (
    file INTEGER NOT NULL, row INTEGER NOT NULL, code TEXT NOT NULL, decided_by TEXT NOT NULL,
    reviewer TEXT NOT NULL, via INTEGER, at TEXT NOT NULL, level TEXT NOT NULL DEFAULT 'onet',
    comment TEXT, PRIMARY KEY (file, row), FOREIGN KEY (file, row) REFERENCES rows(file, row));
CREATE TABLE IF NOT EXISTS skips (
    file INTEGER NOT NULL, reviewer TEXT NOT NULL, row INTEGER NOT NULL,
    PRIMARY KEY (file, reviewer, row));
CREATE TABLE IF NOT EXISTS audit (
    file INTEGER NOT NULL, row INTEGER NOT NULL, seed INTEGER NOT NULL,
    PRIMARY KEY (file, row), FOREIGN KEY (file, row) REFERENCES rows(file, row));
"""
ADDED = {"decisions": {"level": "TEXT NOT NULL DEFAULT 'onet'", "comment": "TEXT"},
         "files": {"sha256": "TEXT", "coded_sha256": "TEXT", "title_column": "TEXT",
                   "description_column": "TEXT"}}
# Residual outcomes: a decision that the row has no code (`final_level` holds it, no final_code).
OUTCOMES = ("uncodable", "insufficient_information", "not_in_labour_force")
CHUNK_ROWS = 10_000
# A file's corrections (title, code), in file order; its rows still to review (row, title).
CORRECTIONS = ("SELECT r.title, d.code FROM decisions d JOIN rows r ON r.file = d.file "
               "AND r.row = d.row WHERE d.file = ? AND d.decided_by = 'reviewer' "
               "AND d.level = 'onet' AND d.via IS NULL ORDER BY d.row")
PENDING = ("SELECT r.row, r.title FROM rows r LEFT JOIN decisions d ON d.file = r.file "
           "AND d.row = r.row WHERE r.file = ? AND r.review = 1 AND d.code IS NULL {} "
           "ORDER BY r.row")


class ChangedFile(OcclassError):
    """The coded file on disk is no longer the one under review."""


def checksum(path: str | Path) -> str:
    """The SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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
        self._writing = threading.Lock()  # one corrections file write at a time
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"damaged ({check})")
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
                for table, columns in ADDED.items():  # a database written before these columns
                    have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
                    for name, kind in columns.items():
                        if name not in have:
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        except (OSError, sqlite3.Error) as err:
            raise OcclassError(f"review_db={self.path}: cannot be used as the review database "
                               f"({err}); give a writable SQLite file in a writable folder, or "
                               "a new name") from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    def add_file(self, name: str, coded: str | Path, prediction_column, sha256: str,
                 title_column: str = "title", description_column: str = "description") -> int:
        """Register predict.py's output `coded` under `name`, opened from a table whose checksum
        is `sha256`, its titles and descriptions in the columns named; `prediction_column(name)`
        says which of its columns the predictor wrote (shown on the page). Rows flagged
        `needs_review` (all rows with a prediction, when the file has no such column) form the
        review queue. Returns the file's id."""
        with self._connect() as db:
            file = db.execute(
                "INSERT INTO files (name, coded, added, sha256, coded_sha256, title_column, "
                "description_column) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, str(coded), _now(), sha256, checksum(coded), title_column,
                 description_column)).lastrowid
            start = 0
            for chunk in read_chunks(coded, CHUNK_ROWS, required=[title_column, "status"],
                                     dtype_str=True):
                shown = [c for c in chunk.columns if prediction_column(c)]
                review = (chunk["needs_review"].map(_true) if "needs_review" in chunk
                          else chunk["status"].eq("ok"))
                records = chunk[shown].astype(object).where(chunk[shown].notna(), None)
                description = chunk.get(description_column,
                                        pd.Series(None, index=chunk.index))
                db.executemany(
                    "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?)",
                    [(file, start + i, title, text, int(flag), json.dumps(record))
                     for i, (title, text, flag, record) in enumerate(zip(
                         chunk[title_column], description.astype(object).where(description.notna(),
                                                                          None),
                         review, records.to_dict("records")))])
                start += len(chunk)
        return file

    def find(self, sha256: str) -> int | None:
        """The latest file opened from a table with checksum `sha256` whose coded file is
        still the one reviewed, if any."""
        with self._connect() as db:
            found = db.execute("SELECT id, coded, coded_sha256 FROM files WHERE sha256 = ? "
                               "ORDER BY id DESC", (sha256,)).fetchall()
        return next((f["id"] for f in found if Path(f["coded"]).is_file()
                     and checksum(f["coded"]) == f["coded_sha256"]), None)

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
                "d.level, d.comment, d.decided_by, d.reviewer, d.at, a.seed FROM rows r "
                "LEFT JOIN decisions d "
                "ON d.file = r.file AND d.row = r.row LEFT JOIN audit a ON a.file = r.file "
                "AND a.row = r.row WHERE r.file = ? "
                "ORDER BY r.review DESC, r.row", (file,)).fetchall()
        return [{"row": r["row"], "title": r["title"], "description": r["description"],
                 "review": bool(r["review"]), "prediction": json.loads(r["prediction"]),
                 "decision": None if r["code"] is None else _decision(r),
                 "audit": r["seed"] is not None} for r in found]

    def decisions(self, file: int) -> dict[int, dict]:
        """Every row's decision (row → decision, as `rows` gives it)."""
        with self._connect() as db:
            found = db.execute("SELECT * FROM decisions WHERE file = ?", (file,)).fetchall()
        return {r["row"]: _decision(r) for r in found}

    def row(self, file: int, row: int) -> dict | None:
        with self._connect() as db:
            found = db.execute("SELECT row, title FROM rows WHERE file = ? AND row = ?",
                               (file, row)).fetchone()
        return dict(found) if found else None

    def titles(self, file: int) -> list[tuple[int, str | None]]:
        """The file's rows to review (row, title)."""
        with self._connect() as db:
            return db.execute("SELECT row, title FROM rows WHERE file = ? AND review = 1",
                              (file,)).fetchall()

    def decide(self, file: int, row: int, code: str | None, level: str, reviewer: str,
               comment: str | None = None, also: Sequence[int] = (),
               learn: Callable[[list[tuple], Callable, list[int]], list[tuple[int, str]]]
               | None = None
               ) -> tuple[dict | None, list[tuple[int, str]]]:
        """Save a reviewer's decision, `code` at `level` (no code for an outcome of
        `OUTCOMES`), on `row` and on the rows `also` (of the same title, undone with it),
        replacing any earlier one and the rows learnt from it; then, given
        `learn(corrections, pending, returned)` (the file's corrections (title, code);
        `pending(rows)`: those of `rows` (None: all) still undecided and to review (row, title);
        the rows back to review, learnt from the decision replaced), decide the rows it
        returns (row, code) as learnt from this one. One transaction, begun at once: all of it is saved or nothing, and two decisions on one row
        are one after the other. Returns the decision replaced and the rows learnt."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            before = db.execute("SELECT code, level, decided_by, reviewer, at FROM decisions "
                                "WHERE file = ? AND row = ?", (file, row)).fetchone()
            returned = [r[0] for r in db.execute(
                "DELETE FROM decisions WHERE file = ? AND via = ? AND decided_by = 'correction' "
                "RETURNING row", (file, row))]
            now = _now()
            db.executemany(
                "INSERT OR REPLACE INTO decisions (file, row, code, decided_by, reviewer, via, at, "
                "level, comment) VALUES (?, ?, ?, 'reviewer', ?, ?, ?, ?, ?)",
                [(file, r, code or "", reviewer, None if r == row else row, now, level, comment)
                 for r in dict.fromkeys((row, *also))])
            learnt = []
            if learn is not None:
                def pending(rows: list[int] | None) -> list[tuple[int, str | None]]:
                    if rows is None:
                        return db.execute(PENDING.format(""), (file,)).fetchall()
                    return db.execute(PENDING.format("AND r.row IN (SELECT value FROM "
                                                     "json_each(?))"),
                                      (file, json.dumps(rows))).fetchall()

                learnt = learn(db.execute(CORRECTIONS, (file,)).fetchall(), pending, returned)
                db.executemany(
                    "INSERT OR IGNORE INTO decisions (file, row, code, decided_by, reviewer, via, "
                    "at) VALUES (?, ?, ?, 'correction', ?, ?, ?)",
                    [(file, r, c, reviewer, row, now) for r, c in learnt])
        return (dict(before, code=before["code"] or None) if before else None), learnt

    def undo(self, file: int, row: int, undone: Callable[[], None] | None = None) -> list[int]:
        """Remove the decision on `row` and those made or learnt with it (then, before the
        transaction ends, call `undone`); returns the rows undone."""
        with self._connect() as db:
            rows = [r[0] for r in db.execute(
                "SELECT row FROM decisions WHERE file = ? AND (row = ? OR via = ?) ORDER BY row",
                (file, row, row))]
            db.execute("DELETE FROM decisions WHERE file = ? AND (row = ? OR via = ?)",
                       (file, row, row))
            if undone is not None:
                undone()
        return rows

    def decider(self, file: int, row: int) -> str | None:
        """Who made the reviewer's decision on `row` (None: no such decision)."""
        with self._connect() as db:
            found = db.execute("SELECT reviewer FROM decisions WHERE file = ? AND row = ? AND "
                               "decided_by = 'reviewer' AND via IS NULL", (file, row)).fetchone()
        return found[0] if found else None

    def skip(self, file: int, row: int, reviewer: str, skipped: bool = True) -> None:
        """Put `row` last in the reviewer's queue (again), or back in its place."""
        with self._connect() as db:
            db.execute("DELETE FROM skips WHERE file = ? AND reviewer = ? AND row = ?",
                       (file, reviewer, row))
            if skipped:
                db.execute("INSERT INTO skips VALUES (?, ?, ?)", (file, reviewer, row))

    def session(self, file: int, reviewer: str) -> dict:
        """The reviewer's skipped rows (in skip order) and undo history (the rows of their own
        decisions, oldest first)."""
        with self._connect() as db:
            skipped = [r[0] for r in db.execute(
                "SELECT row FROM skips WHERE file = ? AND reviewer = ? ORDER BY rowid",
                (file, reviewer))]
            history = [r[0] for r in db.execute(
                "SELECT row FROM decisions WHERE file = ? AND reviewer = ? AND decided_by = "
                "'reviewer' AND via IS NULL ORDER BY rowid", (file, reviewer))]
        return {"skipped": skipped, "history": history}

    def draw_audit(self, file: int, size: int, seed: int) -> list[int]:
        """Draw the file's audit sample, replacing any earlier one: `size` rows picked at
        random (seeded: the same seed and a larger size keep the rows drawn before) among
        those the model coded and did not flag for review. Returns the rows, in order."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            accepted = np.array([r["row"] for r in db.execute(
                "SELECT row, prediction FROM rows WHERE file = ? AND review = 0 ORDER BY row",
                (file,)) if model_code(json.loads(r["prediction"]))], dtype=np.int64)
            drawn = sorted(accepted[np.random.default_rng(seed).permutation(len(accepted))
                                    [:size]].tolist())
            db.execute("DELETE FROM audit WHERE file = ?", (file,))
            db.executemany("INSERT INTO audit VALUES (?, ?, ?)",
                           [(file, r, seed) for r in drawn])
        return drawn

    def audit(self, file: int) -> tuple[int | None, list[dict]]:
        """The audit sample's seed (None: no sample) and its rows: row, the model's code
        (`model_code`) and the reviewer's decision, if any (code, level; None for a decision
        learnt, not made)."""
        with self._connect() as db:
            found = db.execute(
                "SELECT a.row, a.seed, r.prediction, d.code, d.level, d.decided_by FROM audit a "
                "JOIN rows r ON r.file = a.file AND r.row = a.row LEFT JOIN decisions d ON "
                "d.file = a.file AND d.row = a.row WHERE a.file = ? ORDER BY a.row",
                (file,)).fetchall()
        return (found[0]["seed"] if found else None), [
            {"row": r["row"], "model_code": model_code(json.loads(r["prediction"])),
             "decision": ({"code": r["code"] or None, "level": r["level"]}
                          if r["decided_by"] == "reviewer" else None)} for r in found]

    def corrections(self, file: int) -> pd.DataFrame:
        """The reviewers' decisions of an O*NET-SOC occupation as a corrections table (title,
        code), in file order: group codes and outcomes teach nothing."""
        with self._connect() as db:
            return pd.read_sql_query(CORRECTIONS, db, params=(file,))

    def write_corrections(self, file: int) -> Path:
        """The corrections file (title,code CSV) beside the coded file, written atomically; one
        write at a time, so the file last written holds every decision made before it."""
        path = _beside(self.file(file)["coded"], "corrections", ".csv")
        with self._writing, AtomicTableWriter(path) as writer:
            writer.write(self.corrections(file))
        return path

    def export(self, file: int, titles: dict[str, str], audit: dict[int, str] | None = None
               ) -> Path:
        """The coded file with the final columns merged (`titles`: code → title, SOC groups
        included) and, given `audit` (row → verdict), an `audit` column of the audit sample's
        verdicts, in its format, beside it, for people: text a spreadsheet would take for a
        formula gets a leading quote. A row to review without a decision has empty final
        columns; any other row with a prediction keeps the model's code at the level it was
        coded at (`coded_code`, `coded_level`; the top-1 occupation when the file has none). A
        coded file that is no longer the one reviewed (`ChangedFile`) writes nothing."""
        found = self.file(file)
        coded = Path(found["coded"])
        changed = ChangedFile(f"{found['name']}: its coded file was changed or removed since it "
                              "was opened for review; the decisions are kept: put the reviewed "
                              "file back, or open the new one for review")
        if not coded.is_file() or (found["coded_sha256"] is not None
                                   and checksum(coded) != found["coded_sha256"]):
            raise changed
        with self._connect() as db:
            decided = pd.read_sql_query(
                "SELECT row, NULLIF(code, '') AS code, level, decided_by, reviewer, comment "
                "FROM decisions WHERE file = ?", db, params=(file,), index_col="row")
            stored = pd.read_sql_query("SELECT row, title, review FROM rows WHERE file = ?", db,
                                       params=(file,), index_col="row")
        review = stored["review"]
        path = _beside(coded, "reviewed", coded.suffix)
        start = 0
        with AtomicTableWriter(path) as writer:
            for chunk in read_chunks(coded, CHUNK_ROWS):
                rows = pd.RangeIndex(start, start + len(chunk))
                start += len(chunk)
                title = chunk[found["title_column"] or "title"].astype(object)
                title = title.where(title.isna(), title.astype(str)).fillna("")
                if title.tolist() != stored["title"].reindex(rows).fillna("").tolist():
                    raise changed  # not the same rows in the same order
                final = decided.reindex(rows).astype(object).set_index(chunk.index)
                if "coded_code" in chunk:
                    code, level = chunk["coded_code"], chunk["coded_level"]
                else:
                    code, level = chunk["pred_code_1"], pd.Series("onet", index=chunk.index)
                by_model = (~review.reindex(rows).astype(bool).to_numpy()
                            & chunk["status"].eq("ok").to_numpy() & code.notna().to_numpy()
                            & final["decided_by"].isna().to_numpy())
                final.loc[by_model, "code"] = code[by_model]
                final.loc[by_model, "level"] = level[by_model]
                final.loc[by_model, "decided_by"] = "model"
                final = pd.DataFrame({"final_code": final["code"],
                                      "final_title": final["code"].map(titles),
                                      "final_level": final["level"],
                                      "decided_by": final["decided_by"],
                                      "reviewer": final["reviewer"],
                                      "review_comment": final["comment"]}).astype(object)
                if audit is not None:
                    final["audit"] = rows.map(audit).to_numpy()
                final = final.where(final.notna(), None)
                writer.write(neutralise_formulas(pd.concat([chunk, final], axis=1)))
        return path


def model_code(prediction: dict) -> str | None:
    """The code the model gave a row: its coded code (`confidence=levels`), else its top-1
    occupation; None for a row it could not code."""
    if prediction.get("status", "ok") != "ok":
        return None
    return prediction["coded_code"] if "coded_code" in prediction else prediction.get(
        "pred_code_1")


def _decision(r: sqlite3.Row) -> dict:
    return {"code": r["code"] or None, "level": r["level"], "comment": r["comment"],
            "decided_by": r["decided_by"], "reviewer": r["reviewer"], "at": r["at"]}


def _beside(coded: str | Path, what: str, suffix: str) -> Path:
    """`NAME.WHAT.SUFFIX` beside the coded file `NAME.EXT`."""
    coded = Path(coded)
    return coded.with_name(f"{coded.stem}.{what}{suffix}")


def safe_name(name: str) -> str:
    """A file name from a client, reduced to a harmless base name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.replace("\\", "/")).name).lstrip(".")
    return base[-100:] or "upload"
