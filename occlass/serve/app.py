"""The review desk's FastAPI app: `POST /v1/predict` (micro-batched), occupation search, the
review page (`/`) and its store of decisions. `serve(cfg)` is what `serve.py` runs."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import sqlite3
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Literal

import anyio
import numpy as np
import pandas as pd
import swagger_ui_bundle
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as InPath
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from omegaconf import DictConfig
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from occlass.data.examples import load_pairs
from occlass.data.tabular_io import SUPPORTED, count_rows, neutralise_formulas, read_chunks
from occlass.data.taxonomy import CODE_COLUMN, read_onet_table
from occlass.errors import OcclassError
from occlass.predict.job import check_options, is_number, named, predict_file
from occlass.predict.loader import RunParts, load_configured, predictor_options
from occlass.predict.predictor import Predictor
from occlass.serve.batcher import MicroBatcher, Stopped
from occlass.serve.learning import Learner
from occlass.serve.search import CODE, TitleIndex
from occlass.serve.store import OUTCOMES, ChangedFile, ReviewStore, checksum, is_coded, safe_name

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
TOKEN_ENV = "OCCLASS_TOKEN"
TOKEN_COOKIE = "occlass_token"
MAX_TITLE = 1_000
MAX_DESCRIPTION = 20_000
MAX_ROWS = 1_000
MAX_TOP_K = 50
MAX_COMMENT = 1_000
MAX_AUDIT = 100_000
RELATED_FILE, RELATED_COLUMN = "Related Occupations.txt", "Related O*NET-SOC Code"
SEARCH_RANK_WAIT = 0.5  # seconds a search waits for the model's ranking of its query
Id = Annotated[int, InPath(ge=0, le=2**63 - 1)]  # a file's or row's id: SQLite's INTEGER
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                           "frame-ancestors 'none'",
                "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer"}


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=MAX_TITLE)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)


class PredictRequest(BaseModel):
    """One row (`title`, `description`) or many (`rows`), and how many codes per row."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=MAX_TITLE)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)
    rows: list[Row] | None = Field(None, min_length=1, max_length=MAX_ROWS)
    top_k: StrictInt | None = Field(None, ge=1, le=MAX_TOP_K)

    @model_validator(mode="after")
    def one_or_many(self):
        if (self.rows is None) == (self.title is None and self.description is None):
            raise ValueError('give "title" (and "description") for one row, or "rows": '
                             '[{"title": ...}, ...] for many, not both')
        return self

    def columns(self) -> tuple[list, list]:
        """The titles and the descriptions of the rows."""
        rows = self.rows or [self]
        return [r.title for r in rows], [r.description for r in rows]


class Decision(BaseModel):
    """A code (an O*NET-SOC occupation or a SOC 2018 group: the level is the code's) or a
    residual outcome, with an optional comment; `also`: other rows (of the same title) that
    get the same decision, and are undone with it."""

    model_config = ConfigDict(extra="forbid")
    code: str | None = Field(None, max_length=20)
    outcome: Literal[OUTCOMES] | None = None
    comment: str | None = Field(None, max_length=MAX_COMMENT)
    reviewer: str = Field("reviewer", min_length=1, max_length=100)
    also: list[Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]] = Field([], max_length=MAX_ROWS * 100)

    @model_validator(mode="after")
    def code_or_outcome(self):
        if (self.code is None) == (self.outcome is None):
            raise ValueError(f'give a "code" or an "outcome" ({", ".join(OUTCOMES)}), '
                             'not both')
        return self


class AuditSample(BaseModel):
    """How many model-accepted rows to draw for checking, and the random seed."""

    model_config = ConfigDict(extra="forbid")
    size: StrictInt = Field(ge=1, le=MAX_AUDIT)
    seed: StrictInt = Field(0, ge=0, le=2**63 - 1)


class TooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body over {limit:,} bytes; send less per request")


class BodyLimit:
    """Refuse request bodies over `limit` bytes (`upload_limit` for file uploads) with a 413,
    whether they announce their length or not."""

    def __init__(self, app, limit: int, upload_limit: int):
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.upload_limit if scope["path"] == "/v1/files" else self.limit
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > limit:
            error = (TooLarge(limit) if length.isdigit()
                     else HTTPException(400, "malformed Content-Length"))
            return await _error(error.status_code, error.detail)(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise TooLarge(limit)
            return message

        await self.app(scope, limited, send)


class Guard:
    """Every request presents the token (when there is one: a `?token=` also sets the page's
    cookie) and no POST comes from another site's page; the page gets its security headers.
    Plain ASGI: Starlette's `@app.middleware` runs each request in a task of its own, which
    outlives the answer under load (uvicorn's `limit_concurrency` counted a client twice)."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        if self.token is not None and not secrets.compare_digest(
                presented_token(request).encode(), self.token.encode()):
            return await _error(401, "missing or wrong token: send 'Authorization: Bearer "
                                     "TOKEN' or open /?token=TOKEN",
                                {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        if cross_site(request):
            return await _error(403, "a POST needs 'Content-Type: application/json' or an "
                                     "'X-Requested-With' header (which a form on another site "
                                     "cannot send)")(scope, receive, send)
        extra = Response()
        if self.token is not None and request.query_params.get("token"):
            extra.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
        if scope["path"] == "/" or scope["path"].startswith("/static/"):
            extra.headers.update(PAGE_HEADERS)
        extra_headers = [h for h in extra.raw_headers if h[0] != b"content-length"]
        replaced = {name for name, _ in extra_headers if name != b"set-cookie"}

        async def with_headers(message):
            if message["type"] == "http.response.start" and extra_headers:
                message["headers"] = [*(h for h in message.get("headers", [])
                                        if h[0].lower() not in replaced), *extra_headers]
            await send(message)

        await self.app(scope, receive, with_headers)


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=headers)


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_token(cfg: DictConfig) -> str | None:
    """The token requests must present: `auth_token`, else $OCCLASS_TOKEN; one is required to
    serve on an address other than loopback."""
    token = cfg.get("auth_token") or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(str(cfg.host)):
        raise OcclassError(f"host={cfg.host} is reachable from other machines: set "
                           f"auth_token=... or ${TOKEN_ENV} (every request must then present it)")
    return token


def presented_token(request: Request) -> str:
    """The token a request presents: `Authorization: Bearer TOKEN` (the scheme in any case),
    else the page's cookie, else `?token=`."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" else ""
    return (bearer or request.cookies.get(TOKEN_COOKIE) or request.query_params.get("token")
            or "")


def allowed_hosts(cfg: DictConfig) -> list[str]:
    """The `Host` header names answered (any other: 400, against DNS rebinding): loopback's,
    `host`'s and `allowed_hosts`."""
    host = str(cfg.host)
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return [*LOOPBACK_NAMES, host, *cfg.allowed_hosts]


def cross_site(request: Request) -> bool:
    """Whether a POST could come from another site's page: a web page can send a "simple"
    POST (a form's) anywhere without asking, but neither a JSON body nor an `X-Requested-With`
    header without the server's consent (none is given), and browsers name the page's origin.
    PUT and DELETE always ask first."""
    if request.method != "POST":
        return False
    if request.headers.get("origin") == f"{request.url.scheme}://{request.headers.get('host')}":
        return False
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return kind != "application/json" and "x-requested-with" not in request.headers


def disk_full(err: Exception) -> bool:
    return ((isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT))
            or (isinstance(err, sqlite3.OperationalError) and "full" in str(err)))


class TakingTurns:
    """`predictor.predict_frame` run on the model thread one call (one chunk of a file) at a
    time, so that a file coded from another thread takes turns with the API's batches."""

    def __init__(self, predictor: Predictor, executor: Executor):
        self.predictor, self.executor = predictor, executor

    def predict_frame(self, *args):
        return self.executor.submit(self.predictor.predict_frame, *args).result()


def check_serve_options(cfg: DictConfig) -> None:
    """predict.py's shared option check, then serve.py's own options: one line each, before
    a model is loaded."""
    check_options(cfg)
    if not (isinstance(cfg.max_batch, int) and not isinstance(cfg.max_batch, bool)
            and cfg.max_batch >= 1):
        raise OcclassError(f"{named('max_batch', cfg.max_batch)}: give a whole number of at "
                           "least 1")
    if not (isinstance(cfg.port, int) and not isinstance(cfg.port, bool)
            and 0 <= cfg.port <= 65535):
        raise OcclassError(f"{named('port', cfg.port)}: give a port number from 0 to 65535")
    for key, low, what in (("max_wait_ms", 0, "milliseconds, 0 or more"),
                           ("max_request_mb", 1 / 1024, "megabytes, at least 1/1024"),
                           ("max_upload_mb", 1 / 1024, "megabytes, at least 1/1024"),
                           ("learn_threshold", 0, "a similarity, 0 or more (above 1: none)"),
                           ("memo_mb", 0, "megabytes, 0 or more"),
                           ("header_timeout_s", 1e-3, "seconds, above 0"),
                           ("keep_alive_s", 0, "seconds, 0 or more")):
        if not (is_number(cfg[key]) and low <= cfg[key] < math.inf):
            raise OcclassError(f"{named(key, cfg[key])}: give {what}")
    for key in ("max_connections", "max_upload_rows"):
        if not (isinstance(cfg[key], int) and not isinstance(cfg[key], bool) and cfg[key] >= 1):
            raise OcclassError(f"{named(key, cfg[key])}: give a whole number of at least 1")
    if cfg.input:
        next(read_chunks(cfg.input, 1, required=["title"]))  # readable, with titles


class ChooseColumn(OcclassError):
    """An uploaded table without a `title` column: the user picks one of its `columns`."""

    def __init__(self, message: str, columns: list[str]):
        super().__init__(message)
        self.columns = columns


def pick_columns(name: str, columns: list[str], title: str | None,
                 description: str | None) -> tuple[str, str]:
    """The title and description columns of the table `name`: those asked for, else `title`
    and `description` (a table without a `title` column: `ChooseColumn`)."""
    listed = ", ".join(map(repr, columns)) or "none"
    for asked in (title, description):
        if asked is not None and asked not in columns:
            raise OcclassError(f"{name}: no column {asked!r}; its columns: {listed}")
    if title is None and "title" not in columns:
        message = (f"{name}: no 'title' column; choose the column of job titles "
                   f"(title_column=) among {listed}")
        raise ChooseColumn(message, columns) if columns else OcclassError(message)
    return title or "title", description or "description"


def xlsx_as_csv(path: Path, table: Path, name: str) -> None:
    """The first sheet of the Excel workbook `path` (`name` on the client's side) as the CSV
    `table`, every cell as text; a file that is not a workbook is one line."""
    try:
        frame = pd.read_excel(path, sheet_name=0, dtype=str, engine="openpyxl")
    except Exception as err:  # noqa: BLE001 (openpyxl, zipfile: many kinds for a bad file)
        reason = (str(err).splitlines() or [""])[0][:200]
        raise OcclassError(f"{name}: not a readable .xlsx workbook ({type(err).__name__}: "
                           f"{reason}); save it again as .xlsx, or as CSV") from None
    if frame.columns.empty:
        raise OcclassError(f"{name}: its first sheet is empty; put the titles, with a header "
                           "row, on the first sheet")
    frame.to_csv(table, index=False)


def run_identity(cfg: DictConfig, parts: RunParts) -> dict:
    run = "zero-shot" if cfg.run is None else "/".join(Path(cfg.run).resolve().parts[-2:])
    return {"run": run, "run_id": parts.run_id, "taxonomy": parts.taxonomy.version}


class Occupations:
    """Search over the occupations' codes, titles and alternate titles and the SOC 2018 groups
    above them (the page's picker); `levels` maps every code a decision may give to its level
    (`occlass.data.soc.LEVELS`)."""

    def __init__(self, parts: RunParts, data_dir: str | Path):
        taxonomy = parts.taxonomy
        groups = [(c, level.name, t) for level in (parts.levels or [])[1:]
                  for c, t in zip(level.codes, level.titles)]
        self.titles = {c: t for c, _, t in groups} | dict(zip(taxonomy.codes, taxonomy.titles))
        self.levels = {c: level for c, level, _ in groups} | dict.fromkeys(taxonomy.codes, "onet")
        self.descriptions = dict(zip(taxonomy.codes, taxonomy.descriptions))
        pairs = load_pairs(data_dir, taxonomy)
        pairs = pairs[pairs["source"] != "title"].drop_duplicates(["code", "title"])
        self.alternates = pairs.groupby("code")["title"].agg(list).to_dict()
        single = {c for level in (parts.levels or [])[1:2]  # a SOC occupation of one O*NET one
                  for c, n in zip(level.codes, np.bincount(level.of_code)) if n == 1}
        entries = ([(c, t, 0) for c, t in zip(taxonomy.codes, taxonomy.titles)]
                   + [(c, t, 1) for c, _, t in groups if c not in single]
                   + [(c, t, 2) for c, t in zip(pairs["code"], pairs["title"])])
        self.texts = [t for _, t, _ in entries]
        self.index = TitleIndex([c for c, _, _ in entries], self.texts,
                                [k for *_, k in entries])
        self.above = {}  # code → the groups it is in, major first
        for i, code in enumerate(taxonomy.codes):
            chain = [str(level.codes[level.of_code[i]]) for level in (parts.levels or [])[:0:-1]]
            self.above[code] = chain
            for j, group in enumerate(chain):
                self.above.setdefault(group, chain[:j])
        related = Path(data_dir) / RELATED_FILE  # absent in releases before 28.1
        related = (read_onet_table(related, [CODE_COLUMN, RELATED_COLUMN]) if related.is_file()
                   else pd.DataFrame({CODE_COLUMN: [], RELATED_COLUMN: []}))
        related = related[related[RELATED_COLUMN].isin(self.descriptions)]
        self.related = related.groupby(CODE_COLUMN, sort=False)[RELATED_COLUMN].agg(list)

    def search(self, query: str, limit: int = 20, tie_break: dict[str, int] | None = None
               ) -> list[dict]:
        """The codes under a code prefix (`15-12`), or the best matches of the words of
        `query` (`occlass.serve.search`); `match` is the alternate title that matched."""
        query = query.strip()
        if CODE.fullmatch(query):
            found = sorted(c for c in self.titles if c.startswith(query))[:limit]
            return [{"code": c, "title": self.titles[c], "level": self.levels[c], "match": ""}
                    for c in found]
        return [{"code": c, "title": self.titles[c], "level": self.levels[c],
                 "match": "" if self.texts[i] == self.titles[c] else self.texts[i]}
                for c, i in self.index.search(query, limit, tie_break or {})]

    def agrees(self, model: str, decided: str | None) -> bool:
        """Whether a reviewer's code bears out the model's: the same code, or one inside the
        model's SOC group (an outcome never does)."""
        return decided == model or model in self.above.get(decided, [])

    def get(self, code: str) -> dict | None:
        """A code's reference: its title, level, description, alternate titles, related
        occupations (O*NET's, best first) and the SOC groups it is in (`hierarchy`, major
        first); a SOC group has only its title, level and groups."""
        if code not in self.titles:
            return None
        return {"code": code, "title": self.titles[code], "level": self.levels[code],
                "description": self.descriptions.get(code),
                "alternate_titles": self.alternates.get(code, []),
                "related": [{"code": c, "title": self.titles[c]}
                            for c in self.related.get(code, [])],
                "hierarchy": [{"code": c, "title": self.titles[c], "level": self.levels[c]}
                              for c in self.above.get(code, [])]}


def prediction_columns(predictor: Predictor):
    """A test of whether a column is one the predictor writes (pred_code_3, confidence, ...),
    from the columns it gives a probe row."""
    probe = predictor.predict_frame(pd.DataFrame({"title": ["probe"]}), top_k=2)
    stems = {re.sub(r"_\d+$", "", c) for c in probe.columns if c != "title"}
    return lambda column: re.sub(r"_\d+$", "", column) in stems


def create_app(cfg: DictConfig, parts: RunParts | None = None) -> FastAPI:
    """The app for serve.py's options `cfg` (conf/serve.yaml); `parts` default to the ones
    `cfg` names."""
    check_serve_options(cfg)
    uploads = Path(cfg.uploads)
    store = ReviewStore(cfg.review_db or (Path(cfg.input).with_name(Path(cfg.input).name
                                                                    + ".review.sqlite")
                                          if cfg.input else uploads / "review.sqlite"))
    parts = parts or load_configured(cfg)
    options = predictor_options(cfg)
    predictor = Predictor(parts, **options, memo_bytes=int(cfg.memo_mb * 2**20),
                          memo_depth=MAX_TOP_K)  # a title's ranking serves every top_k
    executor = ThreadPoolExecutor(1, thread_name_prefix="model")  # one model call at a time
    learner = Learner(predictor, executor, cfg.learn_threshold, store.titles, cfg.max_batch)
    batcher = MicroBatcher(predictor, executor, cfg.max_batch, cfg.max_wait_ms / 1000,
                           on_failure=lambda error: app.state.stop())
    identity = run_identity(cfg, parts)
    occupations = Occupations(parts, cfg.data_dir)
    ranked_codes = min(MAX_TOP_K, len(parts.taxonomy))  # the model's tie-break of a search
    shown = prediction_columns(predictor)
    token = auth_token(cfg)

    def open_file(path: Path, name: str, title_column: str | None = None,
                  description_column: str | None = None) -> dict:
        """Register a table for review (its titles and descriptions in the columns named, by
        default `title` and `description`), predicting it first unless it is predict.py's
        output: into the server's own folder (never over a file it did not write), on the
        model thread, `max_batch` rows at a time, taking turns with the API."""
        header = next(read_chunks(path, 1))
        title, description = pick_columns(name, list(header.columns), title_column,
                                          description_column)
        coded = path
        if not is_coded(header.columns):
            uploads.mkdir(parents=True, exist_ok=True)
            own = path if path.parent == uploads else uploads / f"{secrets.token_hex(4)}-{name}"
            coded = own.with_name(f"{own.stem}.coded{own.suffix}")
            predict_file(TakingTurns(predictor, executor), path, coded, cfg.top_k, title,
                         description, chunk_rows=cfg.max_batch, progress=False)
        file = store.add_file(name, coded, shown, checksum(path), title, description)
        learner.warm(file)  # its titles: a decision then encodes none, or only its own
        return {"id": file, "name": name}

    if cfg.input:  # opened unless a table of the same content is (a bad input: one line)
        source = Path(cfg.input)
        if not source.is_file() or store.find(checksum(source)) is None:
            open_file(source, source.name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()
        executor.shutdown()

    app = FastAPI(title="occlass review desk", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Code job titles into O*NET-SOC occupations and review them.")
    app.state.batcher, app.state.store = batcher, store
    app.state.occupations = occupations
    app.state.stop = lambda: None  # serve() sets the server's
    app.add_middleware(BodyLimit, limit=int(cfg.max_request_mb * 2**20),
                       upload_limit=int(cfg.max_upload_mb * 2**20))

    app.add_middleware(Guard, token=token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(cfg))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        return _error(422, _validation_message(err))

    @app.exception_handler(OcclassError)
    async def user_error(request: Request, err: OcclassError):
        return _error(400, str(err))

    @app.exception_handler(ChangedFile)
    async def changed(request: Request, err: ChangedFile):
        return _error(409, str(err))

    @app.exception_handler(OSError)
    @app.exception_handler(sqlite3.OperationalError)
    async def full(request: Request, err: Exception):
        if not disk_full(err):
            raise err
        log.warning("%s %s: the disk is full (%s)", request.method, request.url.path, err)
        return _error(507, "the server's disk is full (the decisions acknowledged and the last "
                           "export are kept): free some space and try again")

    @app.exception_handler(Stopped)
    async def stopped(request: Request, err: Stopped):
        return _error(503, f"{err}; the server is stopping")

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception):
        log.exception("internal error on %s", request.url.path)
        return _error(500, "internal error; the server log has the details")

    @app.get("/health")
    async def health():
        return {"status": "ok", **identity}

    @app.post("/v1/predict")
    async def predict(body: PredictRequest):
        """predict.py's columns for each row (title, description, pred_code_1..k, ...). Many
        rows in one request are the fast path; concurrent requests share forward passes."""
        rows = await batcher.predict(*body.columns(), body.top_k or cfg.top_k)
        return Response(f'{json.dumps(identity)[:-1]}, "rows": [{", ".join(rows)}]}}',
                        media_type="application/json")

    @app.get("/v1/occupations")
    async def search(q: str = Query("", max_length=200), limit: int = Query(20, ge=1, le=100)):
        """Occupations and SOC groups for a code prefix or words (typos and abbreviations
        allowed), best first; the model's ranking of the query breaks ties. The search runs off
        the event loop."""
        tie_break = {}
        if q.strip() and not CODE.fullmatch(q.strip()):
            with contextlib.suppress(TimeoutError):  # a busy model thread: no tie-break
                ranked = await asyncio.wait_for(batcher.predict([q], [None], ranked_codes),
                                                SEARCH_RANK_WAIT)
                codes = [code for column, code in json.loads(ranked[0]).items()
                         if re.fullmatch(r"pred_code_\d+", column) and code is not None]
                tie_break = {code: i for i, code in enumerate(codes)}
        return {"occupations": await run_in_threadpool(occupations.search, q, limit, tie_break)}

    @app.get("/v1/occupations/{code}")
    async def occupation(code: str):
        """An occupation's or SOC group's reference text (the page's `i`)."""
        found = occupations.get(code)
        if found is None:
            raise HTTPException(404, f"no occupation or SOC group {code!r} in O*NET "
                                     f"{parts.taxonomy.version}")
        return found

    @app.get("/v1/files")
    async def files():
        return {"files": await run_in_threadpool(store.files)}

    @app.post("/v1/files")
    async def upload(request: Request, name: str = "upload.csv",
                     title_column: str | None = Query(None, min_length=1, max_length=200),
                     description_column: str | None = Query(None, min_length=1,
                                                            max_length=200)):
        """Open a table for review: the request body is the file (CSV, JSONL, Parquet, or an
        Excel workbook's first sheet), raw (predicted now) or predict.py's output; its job
        titles in `title_column` (default `title`; a table without one is a 400 listing its
        `columns` to choose from), its descriptions in `description_column` (default
        `description`, if any)."""
        name = safe_name(name)
        if Path(name).suffix.lower() not in (*SUPPORTED, ".xlsx"):
            raise HTTPException(400, f"{name}: give a {', '.join(SUPPORTED)} or .xlsx file")
        uploads.mkdir(parents=True, exist_ok=True)
        path = table = uploads / f"{secrets.token_hex(4)}-{name}"
        try:  # a refused or failed upload leaves nothing behind
            async with await anyio.open_file(path, "wb") as f:
                async for block in request.stream():
                    await f.write(block)
            if path.suffix.lower() == ".xlsx":  # reviewed as CSV
                table = path.with_suffix(".csv")
                await run_in_threadpool(xlsx_as_csv, path, table, name)
                path.unlink()
            rows = await run_in_threadpool(count_rows, table)
            if rows is not None and rows > cfg.max_upload_rows:
                raise HTTPException(413, f"{name}: {rows:,} rows, over max_upload_rows="
                                         f"{cfg.max_upload_rows:,}; split it")
            return await run_in_threadpool(open_file, table, name, title_column,
                                           description_column)
        except OcclassError as err:
            path.unlink(missing_ok=True)
            table.unlink(missing_ok=True)
            message = str(err).replace(str(table), name).replace(str(path), name)
            return JSONResponse({"error": message, **({"columns": err.columns}
                                                      if isinstance(err, ChooseColumn) else {})},
                                400)
        except BaseException:
            path.unlink(missing_ok=True)
            table.unlink(missing_ok=True)
            raise

    def known_file(file: int) -> dict:
        found = store.file(file)
        if found is None:
            raise HTTPException(404, f"no file {file}")
        return found

    @app.get("/v1/files/{file}/rows")
    async def rows(file: Id):
        known_file(file)
        return {"rows": await run_in_threadpool(store.rows, file), **identity}

    @app.put("/v1/files/{file}/rows/{row}/decision")
    async def decide(file: Id, row: Id, decision: Decision):
        """Save a reviewer's decision (a code at its level, or an outcome) and apply the
        reviewers' O*NET-SOC decisions to the near-equal undecided rows: one transaction (saved
        and answered 200, or not saved and an error). Off the model thread, which encodes
        only titles not seen before (`occlass.serve.learning`)."""
        known_file(file)
        titles = []
        for r in (row, *decision.also):
            found = store.row(file, r)
            if found is None:
                raise HTTPException(404, f"file {file} has no row {r}")
            titles.append(found["title"])
        level = decision.outcome or occupations.levels.get(decision.code)
        if level is None:
            raise HTTPException(422, f"code: {decision.code!r} is not an O*NET "
                                     f"{parts.taxonomy.version} code or a SOC 2018 group of one")
        await run_in_threadpool(learner.warm, file, titles)
        before, resolved = await run_in_threadpool(
            store.decide, file, row, decision.code, level, decision.reviewer, decision.comment,
            decision.also, functools.partial(learner.learn, file))
        try:
            await run_in_threadpool(store.write_corrections, file)
        except (OSError, OcclassError) as err:  # saved: the file beside is rewritten next time
            log.warning("the corrections file of file %s was not rewritten: %s", file, err)
        return {"row": row, "code": decision.code, "level": level,
                "title": occupations.titles.get(decision.code), "replaced": before,
                "also": decision.also,
                "resolved": [{"row": r, "code": c} for r, c in resolved]}

    @app.delete("/v1/files/{file}/rows/{row}/decision")
    async def undo(file: Id, row: Id, reviewer: str | None = Query(None, max_length=100)):
        """Undo the decision on `row` (and those made or learnt with it); with `reviewer`, only
        theirs (another reviewer's decision is a 409), and the row is no longer skipped."""
        known_file(file)
        if store.row(file, row) is None:
            raise HTTPException(404, f"file {file} has no row {row}")
        if reviewer is not None:
            owner = await run_in_threadpool(store.decider, file, row)
            if owner not in (None, reviewer):
                raise HTTPException(409, f"row {row} was decided by {owner}: only they can undo "
                                         "it (decide it again to replace it)")
            await run_in_threadpool(store.skip, file, row, reviewer, False)
        undone = await run_in_threadpool(store.undo, file, row,
                                         functools.partial(learner.undone, file))
        await run_in_threadpool(store.write_corrections, file)
        return {"undone": undone}

    @app.put("/v1/files/{file}/rows/{row}/skip")
    async def skip(file: Id, row: Id, reviewer: str = Query(min_length=1, max_length=100)):
        """Put the row last in the reviewer's queue (kept across reloads)."""
        known_file(file)
        if store.row(file, row) is None:
            raise HTTPException(404, f"file {file} has no row {row}")
        await run_in_threadpool(store.skip, file, row, reviewer)
        return {"skipped": row}

    @app.get("/v1/files/{file}/decisions")
    async def decisions(file: Id):
        """Every decided row's decision (the page's refresh: other reviewers' decisions)."""
        known_file(file)
        return {"decisions": await run_in_threadpool(store.decisions, file)}

    @app.get("/v1/files/{file}/session")
    async def session(file: Id, reviewer: str = Query(min_length=1, max_length=100)):
        """The reviewer's skipped rows and undo history (their own decisions, oldest first)."""
        known_file(file)
        return await run_in_threadpool(store.session, file, reviewer)

    def audit_report(file: int) -> dict:
        """The audit sample with each row's verdict (`agreed`: the reviewer's decision bears
        out the model's code; `disagreed`; `unchecked`) and the agreement on the rows checked."""
        seed, rows = store.audit(file)
        for r in rows:
            r["verdict"] = ("unchecked" if r["decision"] is None else "agreed"
                            if occupations.agrees(r["model_code"], r["decision"]["code"])
                            else "disagreed")
        checked = sum(r["verdict"] != "unchecked" for r in rows)
        agreed = sum(r["verdict"] == "agreed" for r in rows)
        return {"seed": seed, "size": len(rows), "checked": checked, "agreed": agreed,
                "agreement": agreed / checked if checked else None, "rows": rows}

    @app.put("/v1/files/{file}/audit")
    async def draw_audit(file: Id, sample: AuditSample):
        """Draw the audit sample: `size` rows the model coded without flagging them, at
        random with `seed` (replacing any earlier sample; the same seed and a larger size keep
        the rows drawn before). The page puts them in the review queue, marked."""
        known_file(file)
        await run_in_threadpool(store.draw_audit, file, sample.size, sample.seed)
        return await run_in_threadpool(audit_report, file)

    @app.get("/v1/files/{file}/audit")
    async def audit(file: Id):
        """The audit sample's rows, their verdicts and the reviewer–model agreement."""
        known_file(file)
        return await run_in_threadpool(audit_report, file)

    @app.get("/v1/files/{file}/export")
    async def export(file: Id):
        """The coded file with final_code, final_title, final_level, decided_by, reviewer and
        review_comment, in its format; with an audit sample, its verdicts in `audit`."""
        found = known_file(file)
        report = await run_in_threadpool(audit_report, file)
        verdicts = ({r["row"]: r["verdict"] for r in report["rows"]}
                    if report["seed"] is not None else None)
        path = await run_in_threadpool(store.export, file, occupations.titles, verdicts)
        stem, suffix = Path(found["name"]).stem, Path(found["coded"]).suffix
        return FileResponse(path, filename=f"{stem}.reviewed{suffix}")

    @app.get("/v1/files/{file}/corrections")
    async def corrections(file: Id):
        """The reviewers' decisions as `title,code`: for corrections= and data.extra_files
        (a title a spreadsheet would take for a formula gets a leading quote)."""
        found = known_file(file)
        table = neutralise_formulas(await run_in_threadpool(store.corrections, file))
        name = safe_name(f"{Path(found['name']).stem}.corrections.csv")
        return Response(table.to_csv(index=False), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        """Swagger UI from the swagger-ui-bundle package: works offline."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} API",
                                   swagger_js_url="/docs-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-ui/swagger-ui.css",
                                   swagger_favicon_url="/docs-ui/favicon-32x32.png")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-ui", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-ui")
    return app


def header_timeout(seconds: float) -> type:
    """uvicorn's httptools protocol (a C parser: h11's pure-Python one halves the requests a
    core answers), closing a connection whose request line and headers have not all come
    `seconds` after it opened or its last response (slow or half-open clients); uvicorn times
    out only idle keep-alive connections."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeout(HttpToolsProtocol):
        timer = None

        def waiting(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def connection_made(self, transport):
            super().connection_made(transport)
            self.timer = self.loop.call_later(seconds, self.expire)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self.waiting() and self.timer is not None:
                self.timer.cancel()
                self.timer = None
            elif self.waiting() and self.timer is None:
                self.timer = self.loop.call_later(seconds, self.expire)

        def expire(self) -> None:
            self.timer = None
            if self.waiting() and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc):
            if self.timer is not None:
                self.timer.cancel()
            super().connection_lost(exc)

    return HeaderTimeout


def serve(cfg: DictConfig) -> None:
    """What `serve.py` runs: load the run, serve the app until Ctrl-C."""
    import torch
    import transformers
    import uvicorn

    check_serve_options(cfg)
    auth_token(cfg)  # refuse an open non-loopback bind before loading anything
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    transformers.logging.disable_progress_bar()  # stderr is for one-line errors
    app = create_app(cfg)
    gc.freeze()  # the loaded run is never garbage: full collections skip it (they took 0.2 s)
    server = uvicorn.Server(uvicorn.Config(
        app, host=cfg.host, port=cfg.port, log_level="warning",
        http=header_timeout(cfg.header_timeout_s), timeout_keep_alive=cfg.keep_alive_s,
        limit_concurrency=cfg.max_connections))
    app.state.stop = lambda: setattr(server, "should_exit", True)
    log.info("review desk on http://%s:%s/ (API docs at /docs)", cfg.host, cfg.port)
    server.run()
    if app.state.batcher.error is not None:
        raise OcclassError(f"the server stopped: {app.state.batcher.error}")
