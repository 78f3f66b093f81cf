"""The review desk's FastAPI app: `POST /v1/predict` (micro-batched), occupation search, the
review page (`/`) and its store of decisions. `serve(cfg)` is what `serve.py` runs."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pandas as pd
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from omegaconf import DictConfig
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from occlass.data.examples import load_pairs
from occlass.data.tabular_io import SUPPORTED, neutralise_formulas, read_chunks
from occlass.errors import OcclassError
from occlass.predict.job import check_options, is_number, named, predict_file
from occlass.predict.loader import RunParts, load_configured, load_corrections, predictor_options
from occlass.predict.predictor import Predictor
from occlass.serve.batcher import MicroBatcher, Stopped, run_on
from occlass.serve.store import ReviewStore, is_coded, safe_name

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
TOKEN_ENV = "OCCLASS_TOKEN"
TOKEN_COOKIE = "occlass_token"
MAX_TITLE = 1_000
MAX_DESCRIPTION = 20_000
MAX_ROWS = 1_000
MAX_TOP_K = 50
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


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

    def frame(self) -> pd.DataFrame:
        rows = self.rows or [Row(title=self.title, description=self.description)]
        return pd.DataFrame({"title": [r.title for r in rows],
                             "description": [r.description for r in rows]}, dtype=object)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(max_length=20)
    reviewer: str = Field("reviewer", min_length=1, max_length=100)


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
                           ("learn_threshold", 0, "a similarity from 0 to 1")):
        if not (is_number(cfg[key]) and low <= cfg[key] <= (1 if key == "learn_threshold"
                                                              else math.inf)):
            raise OcclassError(f"{named(key, cfg[key])}: give {what}")
    if cfg.input:
        next(read_chunks(cfg.input, 1, required=["title"]))  # readable, with titles


def run_identity(cfg: DictConfig, parts: RunParts) -> dict:
    run = "zero-shot" if cfg.run is None else "/".join(Path(cfg.run).resolve().parts[-2:])
    return {"run": run, "taxonomy": parts.taxonomy.version}


class Occupations:
    """Search over the occupations' codes, titles and alternate titles (the page's picker)."""

    def __init__(self, parts: RunParts, data_dir: str | Path):
        taxonomy = parts.taxonomy
        self.titles = dict(zip(taxonomy.codes, taxonomy.titles))
        self.descriptions = dict(zip(taxonomy.codes, taxonomy.descriptions))
        pairs = load_pairs(data_dir, taxonomy)
        pairs = pairs[pairs["source"] != "title"].drop_duplicates(["code", "title"])
        self.alternates = pairs.groupby("code")["title"].agg(list).to_dict()
        self.table = pd.concat([
            pd.DataFrame({"code": taxonomy.codes, "text": taxonomy.titles, "rank": 1}),
            pd.DataFrame({"code": pairs["code"], "text": pairs["title"], "rank": 3})])
        self.table["lower"] = self.table["text"].str.lower()

    def search(self, query: str, limit: int = 20) -> list[dict]:
        """Occupations whose code starts with `query`, or whose title or an alternate title
        holds every word of it; title matches first, then alternates."""
        words = query.lower().split()
        if not words:
            return []
        table = self.table
        hit = pd.Series(True, index=range(len(table)))
        for word in words:
            hit &= table["lower"].str.contains(word, regex=False).to_numpy()
        rank = table["rank"] - table["lower"].str.startswith(words[0]).to_numpy()
        by_code = table["code"].str.startswith(query.strip()).to_numpy()
        found = table.assign(rank=rank.where(~by_code, 0),
                             order=table["lower"].where(~by_code, table["code"]))
        found = found[hit.to_numpy() | by_code].sort_values(["rank", "order"])
        found = found.drop_duplicates("code").head(limit)
        return [{"code": c, "title": self.titles[c], "match": "" if r < 2 else t}
                for c, t, r in zip(found["code"], found["text"], found["rank"])]

    def get(self, code: str) -> dict | None:
        if code not in self.titles:
            return None
        return {"code": code, "title": self.titles[code],
                "description": self.descriptions[code],
                "alternate_titles": self.alternates.get(code, [])}


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
    predictor = Predictor(parts, **options)
    learner = Predictor(parts, **options, correction_threshold=cfg.learn_threshold)
    executor = ThreadPoolExecutor(1, thread_name_prefix="model")  # one model call at a time
    batcher = MicroBatcher(predictor, executor, cfg.max_batch, cfg.max_wait_ms / 1000,
                           on_failure=lambda error: app.state.stop())
    identity = run_identity(cfg, parts)
    occupations = Occupations(parts, cfg.data_dir)
    shown = prediction_columns(predictor)
    token = auth_token(cfg)

    def register(path: Path, name: str) -> dict:
        """Register a table for review, predicting it first (into the server's own folder:
        never over a file it did not write) unless it is predict.py's output."""
        header = next(read_chunks(path, 1, required=["title"]))
        coded = path
        if not is_coded(header.columns):
            uploads.mkdir(parents=True, exist_ok=True)
            own = path if path.parent == uploads else uploads / f"{secrets.token_hex(4)}-{name}"
            coded = own.with_name(f"{own.stem}.coded{own.suffix}")
            predict_file(predictor, path, coded, cfg.top_k, progress=False)
        return {"id": store.add_file(name, coded, shown), "name": name}

    async def open_file(path: Path, name: str) -> dict:
        try:
            return await run_on(executor, register, path, name)
        except OcclassError as err:
            raise HTTPException(400, str(err).replace(str(path), name)) from None

    if cfg.input and not any(f["name"] == Path(cfg.input).name for f in store.files()):
        register(Path(cfg.input), Path(cfg.input).name)  # a bad input: one line, no server

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()
        executor.shutdown()

    app = FastAPI(title="occlass review desk", lifespan=lifespan,
                  description="Code job titles into O*NET-SOC occupations and review them.")
    app.state.batcher, app.state.store = batcher, store
    app.state.stop = lambda: None  # serve() sets the server's
    app.add_middleware(BodyLimit, limit=int(cfg.max_request_mb * 2**20),
                       upload_limit=int(cfg.max_upload_mb * 2**20))

    @app.middleware("http")
    async def guard(request: Request, call_next):
        given = request.query_params.get("token")
        if token is not None:
            presented = (request.headers.get("authorization", "").removeprefix("Bearer ")
                         or request.cookies.get(TOKEN_COOKIE) or given or "")
            if not secrets.compare_digest(presented.encode(), token.encode()):
                return _error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                                   "or open /?token=TOKEN", {"WWW-Authenticate": "Bearer"})
        response = await call_next(request)
        if token is not None and given:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            response.headers.update(PAGE_HEADERS)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        return _error(422, _validation_message(err))

    @app.exception_handler(OcclassError)
    async def user_error(request: Request, err: OcclassError):
        return _error(400, str(err))

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
        """predict.py's columns for each row (title, description, pred_code_1..k, ...)."""
        result = await batcher.predict(body.frame(), body.top_k or cfg.top_k)
        rows = json.loads(result.to_json(orient="records"))
        return {**identity, "rows": rows}

    @app.get("/v1/occupations")
    async def search(q: str = Query("", max_length=200), limit: int = Query(20, ge=1, le=100)):
        return {"occupations": occupations.search(q, limit)}

    @app.get("/v1/occupations/{code}")
    async def occupation(code: str):
        found = occupations.get(code)
        if found is None:
            raise HTTPException(404, f"no occupation {code!r} in O*NET {parts.taxonomy.version}")
        return found

    @app.get("/v1/files")
    async def files():
        return {"files": await run_in_threadpool(store.files)}

    @app.post("/v1/files")
    async def upload(request: Request, name: str = "upload.csv"):
        """Open a table for review: the request body is the file (CSV, JSONL or Parquet), raw
        (predicted now) or predict.py's output."""
        name = safe_name(name)
        if Path(name).suffix.lower() not in SUPPORTED:
            raise HTTPException(400, f"{name}: give a {', '.join(SUPPORTED)} file")
        uploads.mkdir(parents=True, exist_ok=True)
        path = uploads / f"{secrets.token_hex(4)}-{name}"
        async with await anyio.open_file(path, "wb") as f:
            async for block in request.stream():
                await f.write(block)
        return await open_file(path, name)

    def known_file(file: int) -> dict:
        found = store.file(file)
        if found is None:
            raise HTTPException(404, f"no file {file}")
        return found

    @app.get("/v1/files/{file}/rows")
    async def rows(file: int):
        known_file(file)
        return {"rows": await run_in_threadpool(store.rows, file), **identity}

    def learn(corrections: pd.DataFrame, pending: pd.DataFrame) -> pd.DataFrame:
        """The rows of `pending` that the `corrections` (title, code) now decide."""
        corrections = corrections[corrections["title"].fillna("").str.strip() != ""]
        if pending.empty or corrections.empty:  # e.g. a decision on an empty title
            return pending.iloc[:0].assign(code=[])
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "corrections.csv"
            corrections.to_csv(path, index=False)
            try:
                learner.set_corrections(load_corrections(parts, path))
            except OcclassError as err:
                raise OcclassError(str(err).replace(str(path), "the corrections")) from None
        result = learner.predict(pending["title"], top_k=1)
        decided = result.scores[:, 0] > 1  # a correction scores 1 + its similarity
        return pending[decided].assign(code=result.codes[decided, 0])

    @app.put("/v1/files/{file}/rows/{row}/decision")
    async def decide(file: int, row: int, decision: Decision):
        """Save a reviewer's decision and apply it to the near-equal undecided rows: one
        transaction (saved and answered 200, or not saved and an error)."""
        known_file(file)
        if store.row(file, row) is None:
            raise HTTPException(404, f"file {file} has no row {row}")
        if decision.code not in occupations.titles:
            raise HTTPException(422, f"code: {decision.code!r} is not an O*NET "
                                     f"{parts.taxonomy.version} code")
        before, resolved = await run_on(executor, store.decide, file, row, decision.code,
                                        decision.reviewer, learn)
        try:
            await run_in_threadpool(store.write_corrections, file)
        except (OSError, OcclassError) as err:  # saved: the file beside is rewritten next time
            log.warning("the corrections file of file %s was not rewritten: %s", file, err)
        return {"row": row, "code": decision.code, "title": occupations.titles[decision.code],
                "replaced": before,
                "resolved": [{"row": int(r), "code": c} for r, c in zip(resolved["row"],
                                                                        resolved["code"])]}

    @app.delete("/v1/files/{file}/rows/{row}/decision")
    async def undo(file: int, row: int):
        known_file(file)
        undone = await run_in_threadpool(store.undo, file, row)
        await run_in_threadpool(store.write_corrections, file)
        return {"undone": undone}

    @app.get("/v1/files/{file}/export")
    async def export(file: int):
        """The coded file with final_code, final_title, decided_by and reviewer, in its
        format."""
        found = known_file(file)
        path = await run_in_threadpool(store.export, file, occupations.titles)
        stem, suffix = Path(found["name"]).stem, Path(found["coded"]).suffix
        return FileResponse(path, filename=f"{stem}.reviewed{suffix}")

    @app.get("/v1/files/{file}/corrections")
    async def corrections(file: int):
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

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


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
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port,
                                           log_level="warning"))
    app.state.stop = lambda: setattr(server, "should_exit", True)
    log.info("review desk on http://%s:%s/ (API docs at /docs)", cfg.host, cfg.port)
    server.run()
    if app.state.batcher.error is not None:
        raise OcclassError(f"the server stopped: {app.state.batcher.error}")
