"""The review desk's API (FastAPI's test client) on the tiny run: every endpoint, bad requests,
predict.py's output for the same rows, micro-batching under concurrency, the review store and the
review → export → corrections= → data.extra_files loop."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from helpers.review import coded_at_levels
from helpers.tables import write_table
from helpers.tiny import OCCUPATIONS, ROOT
from hydra import compose, initialize_config_dir

from occlass.data.tabular_io import AtomicTableWriter
from occlass.errors import OcclassError
from occlass.model.memory import ExemplarMemory
from occlass.predict.job import predict_file
from occlass.predict.loader import load_configured, predictor_options
from occlass.predict.predictor import Predictor
from occlass.runs import MEMORY_FILE
from occlass.serve.app import create_app
from occlass.serve.store import ReviewStore
from occlass.train.job import train

TITLES = [t for _, title, _, alts, reps in OCCUPATIONS for t in (title, *alts, *reps)]
LOCAL = "http://127.0.0.1"
UPLOAD = {"X-Requested-With": "test"}  # what the page sends: no cross-site form can


def serve_cfg(run_dir, tiny_onet, tmp_path, *overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("serve", overrides=[f"run={run_dir}", f"data_dir={tiny_onet}",
                                           f"uploads={tmp_path / 'uploads'}",
                                           "zero_shot_cache=null", *overrides])


@pytest.fixture(scope="module")
def parts(run_dir, tiny_onet, tmp_path_factory):
    return load_configured(serve_cfg(run_dir, tiny_onet, tmp_path_factory.mktemp("x")))


@pytest.fixture
def make_client(run_dir, tiny_onet, tmp_path, parts):
    clients = []

    def make(*overrides, headers=None):
        cfg = serve_cfg(run_dir, tiny_onet, tmp_path, *overrides)
        client = TestClient(create_app(cfg, parts), headers=headers, base_url=LOCAL)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def uploaded(tmp_path) -> list[str]:
    """The files in the uploads folder, besides the review database."""
    return sorted(p.name for p in (tmp_path / "uploads").iterdir()
                  if not p.name.startswith("review.sqlite"))


def present(row: dict) -> dict:
    """A row's values that are not null."""
    return {k: v for k, v in row.items() if v is not None}


def test_predict_equals_predict_py_output(client, parts, run_dir, tiny_onet, tmp_path):
    rows = pd.DataFrame({"title": ["Wireman", "chief exec", "", "NA", "Nurse"],
                         "description": [None, "Plans the company.", None, None, "Night shifts"]})
    source = write_table(rows, tmp_path / "in.jsonl")
    cfg = serve_cfg(run_dir, tiny_onet, tmp_path)
    predict_file(Predictor(parts, **predictor_options(cfg)), source, tmp_path / "out.jsonl",
                 top_k=3, progress=False)
    expected = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    body = {"rows": json.loads(rows.to_json(orient="records")), "top_k": 3}
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    # JSONL leaves out a prediction column a row lacks; the API gives it as null
    assert [present(r) for r in response.json()["rows"]] == [present(r) for r in expected]
    assert response.json()["run"] == "/".join(run_dir.resolve().parts[-2:])
    assert response.json()["taxonomy"] == parts.taxonomy.version
    assert response.json()["run_id"] == parts.run_id == expected[0]["run_id"]
    one = client.post("/v1/predict", json={"title": "Wireman", "top_k": 3}).json()
    assert present(one["rows"][0]) == present(expected[0])
    row = client.post("/v1/predict", json={"title": "x"}).json()["rows"][0]
    codes = set(parts.taxonomy.codes)  # the default top_k=5: five codes of the taxonomy
    assert all(row[f"pred_code_{k}"] in codes for k in range(1, 6))
    assert len({row[f"pred_code_{k}"] for k in range(1, 6)}) == 5
    assert "pred_code_6" not in row and "pred_score_6" not in row


@pytest.mark.parametrize(("body", "status", "says"), [
    (None, 422, "body"),
    ({}, 422, 'give "title"'),
    ({"rows": []}, 422, "rows"),
    ({"title": "x" * 1_001}, 422, "title"),
    ({"title": 5}, 422, "title"),
    ({"title": "x", "top_k": 0}, 422, "top_k"),
    ({"title": "x", "top_k": "5"}, 422, "top_k"),
    ({"title": "x", "rows": [{"title": "y"}]}, 422, "not both"),
    ({"rows": [{"title": "x", "code": "1"}]}, 422, "code"),
    ({"rows": [{"title": "x"}] * 1_001}, 422, "rows"),
])
def test_bad_predict_requests_get_a_4xx_that_says_what_to_fix(client, body, status, says):
    response = client.post("/v1/predict", json=body, headers=UPLOAD)  # body None: no JSON
    assert response.status_code == status
    assert says in response.json()["error"]


def test_oversized_and_malformed_bodies_are_refused(client):
    big = client.post("/v1/predict", content=json.dumps({"title": "x" * 10 * 2**20}),
                      headers={"content-type": "application/json"})
    assert big.status_code == 413 and "over" in big.json()["error"]

    def chunked():
        yield b'{"title": "'
        for _ in range(3):
            yield b"x" * 2**19
        yield b'"}'

    streamed = client.post("/v1/predict", content=chunked(),
                           headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    broken = client.post("/v1/predict", content=b'{"title": ',
                         headers={"content-type": "application/json"})
    assert broken.status_code == 422 and "JSON" in broken.json()["error"]


def first_hits(client, query: str, n: int = 1) -> list[str]:
    return [o["code"] for o in client.get("/v1/occupations",
                                          params={"q": query}).json()["occupations"][:n]]


def test_occupation_search_and_lookup(client, monkeypatch):
    # the model's tie-break must arrive on a busy machine too (the server gives up after 0.5 s)
    monkeypatch.setattr("occlass.serve.app.SEARCH_RANK_WAIT", 120)
    found = client.get("/v1/occupations", params={"q": "wire"}).json()["occupations"]
    assert found[0] == {"code": "47-2111.00", "title": "Electricians", "level": "onet",
                        "match": "Wireman"}
    assert first_hits(client, "15-12", 9) == ["15-1200", "15-1210", "15-1211", "15-1211.00",
                                              "15-1250", "15-1252", "15-1252.00"]  # SOC groups too
    nurses = client.get("/v1/occupations", params={"q": "nurses"}).json()["occupations"]
    assert [o["code"] for o in nurses[:2]] == ["29-2061.00", "29-1141.00"]  # titles first
    # relevance, not the alphabet: whole words, then prefixes; typos and abbreviations
    assert first_hits(client, "nurse", 2) == ["29-1141.00", "29-2061.00"]  # "Nurse" itself
    for query, code in (("electrcian", "47-2111.00"), ("statistcian", "15-2041.00"),
                        ("RN", "29-1141.00"), ("sw engineer", "15-1252.00"),
                        ("Sr Wireman II", "47-2111.00"), ("plumbr", "47-2152.00")):
        assert first_hits(client, query) == [code], query
    management = client.get("/v1/occupations", params={"q": "management"}).json()
    assert {"code": "11-0000", "title": "Management Occupations", "level": "major",
            "match": ""} in management["occupations"]
    assert client.get("/v1/occupations", params={"q": " "}).json()["occupations"] == []
    assert client.get("/v1/occupations", params={"limit": 0}).status_code == 422
    one = client.get("/v1/occupations/47-2031.00").json()
    assert one["title"] == "Carpenters" and "Joiner" in one["alternate_titles"]
    missing = client.get("/v1/occupations/99-9999.00")
    assert missing.status_code == 404 and "99-9999.00" in missing.json()["error"]


def test_health_docs_and_page(client):
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/openapi.json").json()["paths"]["/v1/predict"]
    docs = client.get("/docs")  # offline: Swagger UI's assets are served here
    assert docs.status_code == 200 and "https://" not in docs.text
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', docs.text):
        assert client.get(asset).status_code == 200, asset
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers[
        "content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    unknown = client.get("/v2/nothing")
    assert unknown.status_code == 404 and unknown.json() == {"error": "Not Found"}
    assert client.get("/v1/predict").status_code == 405


def test_micro_batching_returns_each_caller_its_own_rows(make_client):
    client = make_client("max_wait_ms=200", "max_batch=64")
    app = client.app
    titles = [TITLES[i % len(TITLES)] + f" {i}" for i in range(48)]

    with ThreadPoolExecutor(len(titles)) as pool:  # the client's portal serves them at once
        before = len(app.state.batcher.batch_sizes)
        responses = list(pool.map(
            lambda it: client.post("/v1/predict", json={"title": it[1], "top_k": 1 + it[0] % 3}),
            enumerate(titles)))
    sizes = app.state.batcher.batch_sizes[before:]
    assert sum(sizes) == len(titles) and max(sizes) > 1  # gathered into shared passes
    alone = client.post("/v1/predict", json={"rows": [{"title": t} for t in titles],
                                             "top_k": 3}).json()["rows"]
    for i, (title, response) in enumerate(zip(titles, responses)):
        row = response.json()["rows"][0]
        assert row["title"] == title
        k = 1 + i % 3
        assert row[f"pred_code_{k}"] is not None and f"pred_code_{k + 1}" not in row
        assert row["pred_code_1"] == alone[i]["pred_code_1"]


def test_a_token_is_required_off_loopback(run_dir, tiny_onet, tmp_path, parts, make_client):
    with pytest.raises(OcclassError, match="token"):
        create_app(serve_cfg(run_dir, tiny_onet, tmp_path, "host=0.0.0.0"), parts)
    client = make_client("host=0.0.0.0", "auth_token=s3cret")
    for path in ("/health", "/", "/v1/files", "/static/app.js"):
        response = client.get(path)
        assert response.status_code == 401 and "token" in response.json()["error"]
    assert client.post("/v1/predict", json={"title": "x"}).status_code == 401
    assert client.get("/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    page = client.get("/", params={"token": "s3cret"})
    assert page.status_code == 200
    assert client.get("/v1/files").status_code == 200  # the page's cookie


def review_file() -> pd.DataFrame:
    return pd.DataFrame({"id": range(1, 7),
                         "title": ["Sr Wireman II", "sr wireman ii", "Plumber", "",
                                   "Senior Wireman 2", "Joiner"]})


def test_review_export_corrections_and_training_on_them(make_client, parts, tmp_path, run_dir,
                                                        tiny_onet, train_cfg):
    """Upload a raw file, decide a row (a near-equal title follows it), undo and redo, export;
    the corrections file then feeds corrections= and data.extra_files. The tiny random model
    finds every title alike, so only case variants (the same tokens) count as near-equal."""
    raw = write_table(review_file(), tmp_path / "batch.csv")
    # the tiny model is sure of the Wireman rows (confidence 1): review every row, so that the
    # decision on row 0 can decide the near-equal row 1
    client = make_client("learn_threshold=0.9999", "confidence=platt", "review_below=1")
    opened = client.post("/v1/files", params={"name": "batch.csv"}, content=raw.read_bytes(),
                         headers=UPLOAD)
    assert opened.status_code == 200, opened.text
    file = opened.json()["id"]
    rows = client.get(f"/v1/files/{file}/rows").json()["rows"]
    assert [r["review"] for r in rows] == sorted((r["review"] for r in rows), reverse=True)
    decided = client.put(f"/v1/files/{file}/rows/0/decision",
                         json={"code": "47-2111.00", "reviewer": "ann"}).json()
    assert decided["title"] == "Electricians" and decided["replaced"] is None
    learnt = {r["row"] for r in decided["resolved"]}
    assert 1 in learnt and 2 not in learnt  # "sr wireman ii" is near-equal; "Plumber" is not
    assert client.delete(f"/v1/files/{file}/rows/0/decision").json()["undone"] == sorted(
        {0} | learnt)
    client.put(f"/v1/files/{file}/rows/0/decision", json={"code": "47-2111.00",
                                                          "reviewer": "ann"})
    again = client.put(f"/v1/files/{file}/rows/5/decision",
                       json={"code": "47-2031.00", "reviewer": "bob"}).json()
    replaced = client.put(f"/v1/files/{file}/rows/5/decision",
                          json={"code": "47-2031.00", "reviewer": "cy"}).json()["replaced"]
    assert again["replaced"] is None and replaced["reviewer"] == "bob"
    bad = client.put(f"/v1/files/{file}/rows/0/decision", json={"code": "99-0000.00"})
    assert bad.status_code == 422 and "99-0000.00" in bad.json()["error"]
    assert client.put(f"/v1/files/{file}/rows/99/decision",
                      json={"code": "47-2031.00"}).status_code == 404
    assert client.get("/v1/files/99/rows").status_code == 404

    export = client.get(f"/v1/files/{file}/export")
    assert export.status_code == 200
    exported = pd.read_csv(pd.io.common.BytesIO(export.content), dtype=str, keep_default_na=False)
    coded = pd.read_csv(next((tmp_path / "uploads").glob("*-batch.coded.csv")), dtype=str,
                        keep_default_na=False)
    assert list(exported.columns) == [*coded.columns, "final_code", "final_title",
                                      "final_level", "decided_by", "reviewer", "review_comment"]
    pd.testing.assert_frame_equal(exported[coded.columns], coded)
    review = coded["needs_review"].eq("True")
    assert review.sum() == coded["status"].eq("ok").sum()
    expected = pd.DataFrame({
        "final_code": coded["pred_code_1"].where(~review, ""),
        "decided_by": pd.Series("model", index=coded.index).where(~review & coded["status"]
                                                                  .eq("ok"), ""),
        "reviewer": ""})
    expected.loc[expected["final_code"].eq("") | ~coded["status"].eq("ok"),
                 ["final_code", "decided_by"]] = ""
    expected.loc[0] = ["47-2111.00", "reviewer", "ann"]
    expected.loc[5] = ["47-2031.00", "reviewer", "cy"]
    for row in learnt:
        expected.loc[row] = ["47-2111.00", "correction", "ann"]
    pd.testing.assert_frame_equal(exported[["final_code", "decided_by", "reviewer"]], expected)
    assert (exported["final_level"] == exported["final_code"].ne("").map({True: "onet",
                                                                         False: ""})).all()
    titles = {c: t for c, t, *_ in OCCUPATIONS}
    assert (exported["final_title"] == exported["final_code"].map(titles).fillna("")).all()

    corrections = tmp_path / "reviewed.csv"
    corrections.write_bytes(client.get(f"/v1/files/{file}/corrections").content)
    assert corrections.read_text() == "title,code\nSr Wireman II,47-2111.00\nJoiner,47-2031.00\n"
    out = tmp_path / "more.csv"
    write_table(pd.DataFrame({"title": ["SR WIREMAN II"]}), tmp_path / "more_in.csv")
    predicted = subprocess.run(
        [sys.executable, "predict.py", f"run={run_dir}", f"data_dir={tiny_onet}",
         f"input={tmp_path / 'more_in.csv'}", f"output={out}", f"corrections={corrections}",
         "progress=false"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert predicted.returncode == 0, predicted.stderr
    assert pd.read_csv(out)["pred_code_1"].tolist() == ["47-2111.00"]
    trained = train_cfg("trainer.fast_dev_run=true", f"data.extra_files=[{corrections}]")
    train(trained)
    memory = ExemplarMemory.load(Path(trained.paths.output_dir) / MEMORY_FILE)
    codes = [c for c, *_ in OCCUPATIONS]
    assert ("Sr Wireman II", codes.index("47-2111.00")) in set(zip(memory.titles,
                                                                  memory.labels.tolist()))


def test_export_codes_each_row_at_its_level_and_outcomes_teach_nothing(make_client, parts,
                                                                       tmp_path):
    """confidence=levels (the default): a row the model coded at a SOC group exports that group
    (final_level), never the finer top-1 occupation nobody vouched for. Reviewers confirm a
    group, decide at any level or give a residual outcome with a comment; those export as
    their own final_level and never become corrections."""
    path = tmp_path / "mixed.csv"
    coded = coded_at_levels(parts, ["Owner", "Wireman", "Temp", "Retired", "Manager", "Plumber"],
                            {0: "major", 1: "onet", 2: "broad"}, path)
    assert coded.loc[0, "coded_code"] != coded.loc[0, "pred_code_1"]

    client = make_client()
    file = client.post("/v1/files", params={"name": "mixed.csv"},
                       content=path.read_bytes(), headers=UPLOAD).json()["id"]
    url = f"/v1/files/{file}/rows"
    for body in ({"code": "11-0000", "outcome": "uncodable"}, {"outcome": "retired"},
                 {"code": "11-9999"}, {}, {"code": "47-2152.00", "comment": "x" * 1_001}):
        assert client.put(f"{url}/3/decision", json=body).status_code == 422, body
    outcome = client.put(f"{url}/3/decision", json={"outcome": "not_in_labour_force",
                                                    "comment": "retired", "reviewer": "ann"})
    assert outcome.status_code == 200, outcome.text
    assert outcome.json()["level"] == "not_in_labour_force" and outcome.json()["code"] is None
    coarse = client.put(f"{url}/4/decision", json={"code": "11-0000", "reviewer": "ann"}).json()
    assert (coarse["level"], coarse["title"]) == ("major", "Management Occupations")
    confirmed = client.put(f"{url}/2/decision", json={"code": coded.loc[2, "coded_code"],
                                                      "reviewer": "bob"}).json()
    assert confirmed["level"] == "broad"
    client.put(f"{url}/5/decision", json={"code": "47-2152.00", "reviewer": "bob"})
    rows = {r["row"]: r for r in client.get(url).json()["rows"]}
    assert {k: rows[3]["decision"][k] for k in ("code", "level", "comment")} == {
        "code": None, "level": "not_in_labour_force", "comment": "retired"}

    exported = pd.read_csv(pd.io.common.BytesIO(client.get(f"/v1/files/{file}/export").content),
                           dtype=str, keep_default_na=False)
    final = exported[["final_code", "final_level", "decided_by", "reviewer", "review_comment"]]
    assert final.values.tolist() == [
        [coded.loc[0, "coded_code"], "major", "model", "", ""],
        [coded.loc[1, "pred_code_1"], "onet", "model", "", ""],
        [coded.loc[2, "coded_code"], "broad", "reviewer", "bob", ""],
        ["", "not_in_labour_force", "reviewer", "ann", "retired"],
        ["11-0000", "major", "reviewer", "ann", ""],
        ["47-2152.00", "onet", "reviewer", "bob", ""]]
    assert exported["final_title"].tolist()[:3] == coded["coded_title"].tolist()[:3]
    assert client.get(f"/v1/files/{file}/corrections").text == "title,code\nPlumber,47-2152.00\n"


def test_a_team_of_reviewers_on_one_file(make_client, tmp_path):
    """Rows of one title decided together (one correction, undone together); each reviewer's
    skips and undo history; undo of another reviewer's decision refused."""
    raw = write_table(review_file(), tmp_path / "batch.csv")
    client = make_client("confidence=platt", "review_below=1", "learn_threshold=1.01")
    file = client.post("/v1/files", params={"name": "batch.csv"},
                       content=raw.read_bytes(), headers=UPLOAD).json()["id"]
    url = f"/v1/files/{file}/rows"
    saved = client.put(f"{url}/0/decision", json={"code": "47-2111.00", "reviewer": "ann",
                                                  "also": [1]}).json()
    assert saved["also"] == [1]
    assert client.put(f"{url}/0/decision", json={"code": "47-2111.00",
                                                 "also": [99]}).status_code == 404
    assert client.get(f"/v1/files/{file}/corrections").text == (
        "title,code\nSr Wireman II,47-2111.00\n")
    for row in (5, 2, 5):  # skipped again: last again
        assert client.put(f"{url}/{row}/skip", params={"reviewer": "ann"}).status_code == 200
    client.put(f"{url}/3/decision", json={"outcome": "uncodable", "reviewer": "bob"})
    session = f"/v1/files/{file}/session"
    assert client.get(session, params={"reviewer": "ann"}).json() == {"skipped": [2, 5],
                                                                      "history": [0]}
    assert client.get(session, params={"reviewer": "bob"}).json() == {"skipped": [],
                                                                      "history": [3]}
    refused = client.delete(f"{url}/3/decision", params={"reviewer": "ann"})
    assert refused.status_code == 409 and "bob" in refused.json()["error"]
    undone = client.delete(f"{url}/0/decision", params={"reviewer": "ann"}).json()["undone"]
    assert undone == [0, 1]
    decisions = client.get(f"/v1/files/{file}/decisions").json()["decisions"]
    assert {int(r): (d["level"], d["reviewer"]) for r, d in decisions.items()} == {
        3: ("uncodable", "bob")}


def test_a_review_database_from_before_levels_gains_them(tmp_path):
    import sqlite3

    from occlass.serve.store import ReviewStore

    with sqlite3.connect(tmp_path / "old.sqlite") as db:
        db.execute("CREATE TABLE decisions (file INTEGER NOT NULL, row INTEGER NOT NULL, code "
                   "TEXT NOT NULL, decided_by TEXT NOT NULL, reviewer TEXT NOT NULL, via "
                   "INTEGER, at TEXT NOT NULL, PRIMARY KEY (file, row))")
        db.execute("INSERT INTO decisions VALUES (1, 0, '47-2111.00', 'reviewer', 'ann', NULL, "
                   "'2025-01-01')")
    ReviewStore(tmp_path / "old.sqlite")
    with sqlite3.connect(tmp_path / "old.sqlite") as db:
        assert db.execute("SELECT level, comment FROM decisions").fetchall() == [("onet", None)]


def test_bad_uploads_get_a_clear_error(client, tmp_path):
    assert "give a" in client.post("/v1/files", params={"name": "x.xls"}, content=b"x",
                                   headers=UPLOAD).json()["error"]
    empty = client.post("/v1/files", params={"name": "x.csv"}, content=b"", headers=UPLOAD)
    assert empty.status_code == 400 and empty.json()["error"].startswith("x.csv")
    headless = client.post("/v1/files", params={"name": "../../y.csv"}, content=b"name\nx\n",
                           headers=UPLOAD)
    assert headless.status_code == 400 and "title" in headless.json()["error"]
    assert not (tmp_path / "y.csv").exists()
    assert uploaded(tmp_path) == []  # a refused upload leaves nothing behind


def test_a_killed_server_keeps_every_saved_decision(run_dir, tiny_onet, tmp_path):
    from helpers.serving import serving

    raw = write_table(review_file(), tmp_path / "batch.csv")
    options = (f"run={run_dir}", f"data_dir={tiny_onet}", f"uploads={tmp_path / 'uploads'}",
               "confidence=platt", "review_below=1")  # every row to review
    http = httpx.Client(timeout=None)
    with serving(tmp_path, *options) as (server, url):
        file = http.post(f"{url}/v1/files", params={"name": "batch.csv"},
                         content=raw.read_bytes(), headers=UPLOAD).json()["id"]
        for row, code in ((0, "47-2111.00"), (2, "47-2152.00"), (5, "47-2031.00")):
            saved = http.put(f"{url}/v1/files/{file}/rows/{row}/decision",
                             json={"code": code, "reviewer": "ann"})
            assert saved.status_code == 200
        before = http.get(f"{url}/v1/files/{file}/rows").json()["rows"]
        server.send_signal(signal.SIGKILL)
        server.wait()
    with serving(tmp_path, *options) as (_, url):
        after = http.get(f"{url}/v1/files/{file}/rows").json()["rows"]
    assert after == before
    decided = {r["row"]: r["decision"]["code"] for r in after if r["decision"]}
    assert {0: "47-2111.00", 2: "47-2152.00", 5: "47-2031.00"}.items() <= decided.items()


# --- the desk as a network service: rows joined by identity, bounded ids, concurrency, faults,
# who may call it, and what one client may take


def coded_file(parts, run_dir, tiny_onet, tmp_path, titles, path) -> Path:
    """predict.py's output for `titles` at `path`, every row to review."""
    cfg = serve_cfg(run_dir, tiny_onet, tmp_path, "confidence=platt", "review_below=1")
    source = write_table(pd.DataFrame({"title": titles}), tmp_path / "source.csv")
    predict_file(Predictor(parts, **predictor_options(cfg)), source, path, top_k=3,
                 progress=False)
    return path


def test_a_coded_file_replaced_under_review_is_not_exported_with_its_decisions(
        make_client, parts, run_dir, tiny_onet, tmp_path):
    """Decisions belong to the rows reviewed: a coded file replaced by another (predict.py run
    again on other input) is refused at export, also where the database predates checksums,
    and opened anew at start; the same file is not opened twice."""
    coded = coded_file(parts, run_dir, tiny_onet, tmp_path, list(review_file()["title"]),
                       tmp_path / "coded.csv")
    reviewed = coded.read_bytes()
    client = make_client(f"input={coded}")
    (file,) = [f["id"] for f in client.get("/v1/files").json()["files"]]
    assert client.put(f"/v1/files/{file}/rows/0/decision",
                      json={"code": "47-2111.00"}).status_code == 200
    coded_file(parts, run_dir, tiny_onet, tmp_path, ["Farrowing Manager", "Broker", "Nurse",
                                                     "Cook", "Baker", "Joiner"], coded)
    refused = client.get(f"/v1/files/{file}/export")
    assert refused.status_code == 409 and "changed" in refused.json()["error"]
    assert str(tmp_path) not in refused.json()["error"]
    with sqlite3.connect(f"{coded}.review.sqlite") as db:  # a database of an older version
        db.execute("UPDATE files SET coded_sha256 = NULL")
    assert client.get(f"/v1/files/{file}/export").status_code == 409  # the titles differ

    again = make_client(f"input={coded}")  # a restart with the other file
    files = again.get("/v1/files").json()["files"]
    assert [f["name"] for f in files] == ["coded.csv", "coded.csv"]
    assert again.get(f"/v1/files/{files[1]['id']}/rows").json()["rows"][0]["title"] == \
        "Farrowing Manager"
    assert len(make_client(f"input={coded}").get("/v1/files").json()["files"]) == 2

    coded.write_bytes(reviewed)  # the reviewed file back: its decisions export
    export = pd.read_csv(io.BytesIO(client.get(f"/v1/files/{file}/export").content))
    assert export.loc[0, ["title", "final_code"]].tolist() == ["Sr Wireman II", "47-2111.00"]


def test_ids_out_of_range_or_unknown_are_a_4xx(client, tmp_path):
    raw = write_table(review_file(), tmp_path / "batch.csv")
    file = client.post("/v1/files", params={"name": "batch.csv"}, content=raw.read_bytes(),
                       headers=UPLOAD).json()["id"]
    huge = 10**23
    for method, path, body in [
            ("GET", f"/v1/files/{huge}/rows", None), ("GET", f"/v1/files/{huge}/export", None),
            ("GET", f"/v1/files/-{huge}/corrections", None),
            ("PUT", f"/v1/files/{file}/rows/{10**20}/decision", {"code": "47-2031.00"}),
            ("PUT", f"/v1/files/{huge}/rows/0/decision", {"code": "47-2031.00"}),
            ("DELETE", f"/v1/files/{file}/rows/{10**20}/decision", None)]:
        response = client.request(method, path, json=body)
        assert response.status_code in (404, 422), (method, path, response.text)
        assert response.json()["error"]
    missing = client.delete(f"/v1/files/{file}/rows/99/decision")
    assert missing.status_code == 404 and "no row 99" in missing.json()["error"]


def test_concurrent_decisions_and_exports_all_succeed(make_client, tmp_path):
    raw = write_table(pd.DataFrame({"title": [f"{TITLES[i % len(TITLES)]} {i}"
                                              for i in range(48)]}), tmp_path / "many.csv")
    client = make_client("confidence=platt", "review_below=1")
    file = client.post("/v1/files", params={"name": "many.csv"}, content=raw.read_bytes(),
                       headers=UPLOAD).json()["id"]
    with ThreadPoolExecutor(8) as pool:  # 8 reviewers, 6 decisions each
        decided = list(pool.map(lambda row: client.put(
            f"/v1/files/{file}/rows/{row}/decision",
            json={"code": "47-2031.00", "reviewer": f"r{row % 8}"}).status_code, range(48)))
    assert decided == [200] * 48
    corrections = client.get(f"/v1/files/{file}/corrections").text
    assert corrections.count("47-2031.00") == 48
    with ThreadPoolExecutor(6) as pool:
        exports = list(pool.map(lambda _: client.get(f"/v1/files/{file}/export"), range(6)))
    assert [e.status_code for e in exports] == [200] * 6
    assert len({e.content for e in exports}) == 1
    assert not [p for p in (tmp_path / "uploads").iterdir() if ".tmp-" in p.name]


def test_a_full_disk_is_a_507_that_keeps_what_was_saved(client, tmp_path, monkeypatch):
    raw = write_table(review_file(), tmp_path / "batch.csv")
    file = client.post("/v1/files", params={"name": "batch.csv"}, content=raw.read_bytes(),
                       headers=UPLOAD).json()["id"]
    export = client.get(f"/v1/files/{file}/export").content
    before = uploaded(tmp_path)
    full = OSError(errno.ENOSPC, "No space left on device")

    class FullFile:  # the upload's file: created, then the disk fills
        def __init__(self, path):
            Path(path).write_bytes(b"title\n")

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return False

        async def write(self, block):
            raise full

    async def open_full(path, mode):
        return FullFile(path)

    with monkeypatch.context() as patch:
        patch.setattr(anyio, "open_file", open_full)
        response = client.post("/v1/files", params={"name": "more.csv"},
                               content=raw.read_bytes(), headers=UPLOAD)
    assert response.status_code == 507 and "disk is full" in response.json()["error"]
    assert uploaded(tmp_path) == before  # no partial upload

    def no_space(*args):
        raise full

    with monkeypatch.context() as patch:
        patch.setattr(AtomicTableWriter, "write", no_space)
        assert client.get(f"/v1/files/{file}/export").status_code == 507
    exported = next((tmp_path / "uploads").glob("*-batch.coded.reviewed.csv"))
    assert exported.read_bytes() == export  # the earlier export is kept

    def db_full(*args):
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(ReviewStore, "decide", db_full)
        response = client.put(f"/v1/files/{file}/rows/0/decision", json={"code": "47-2031.00"})
    assert response.status_code == 507 and "disk is full" in response.json()["error"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_at_start_is_one_line(run_dir, tiny_onet, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    raw = write_table(review_file(), folder / "batch.csv")
    folder.chmod(0o500)
    try:
        for options in ([f"review_db={folder / 'review.sqlite'}"],  # the database's folder
                        [f"input={raw}", f"review_db={tmp_path / 'r.sqlite'}"]):  # coded beside
            result = subprocess.run(
                [sys.executable, str(ROOT / "serve.py"), f"run={run_dir}",
                 f"data_dir={tiny_onet}", "zero_shot_cache=null",
                 f"uploads={tmp_path / 'uploads'}", *options],
                cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
            assert result.returncode == 2, result.stderr
            assert result.stderr.strip().count("\n") == 0 and str(folder) in result.stderr
    finally:
        folder.chmod(0o700)


def test_only_the_desks_own_host_names_are_answered(make_client):
    client = make_client()
    for host in ("evil.example", "rebind.attacker.test:8000"):
        assert client.get("/health", headers={"Host": host}).status_code == 400
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
        assert client.get("/health", headers={"Host": host}).status_code == 200
    proxied = make_client("allowed_hosts=[desk.example.org]")
    assert proxied.get("/health", headers={"Host": "desk.example.org"}).status_code == 200
    assert proxied.get("/health", headers={"Host": "other.example.org"}).status_code == 400


def test_a_cross_site_form_cannot_change_anything_and_the_page_cannot_be_framed(client):
    form = {"Content-Type": "text/plain"}  # what a form on any web page can send unasked
    refused = client.post("/v1/files", params={"name": "x.csv"}, content=b"title\nx\n",
                          headers=form)
    assert refused.status_code == 403 and "X-Requested-With" in refused.json()["error"]
    assert client.post("/v1/predict", content=b'{"title": "x"}', headers=form).status_code == 403
    assert client.get("/v1/files").json()["files"] == []
    same_origin = client.post("/v1/files", params={"name": "x.csv"}, content=b"title\nx\n",
                              headers={**form, "Origin": LOCAL})
    assert same_origin.status_code == 200, same_origin.text
    other_origin = client.post("/v1/files", params={"name": "x.csv"}, content=b"title\nx\n",
                               headers={**form, "Origin": "http://evil.example"})
    assert other_origin.status_code == 403
    assert client.post("/v1/predict", json={"title": "x"}).status_code == 200
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_the_bearer_scheme_is_case_insensitive(make_client):
    client = make_client("auth_token=s3cret")
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert client.get("/health",
                          headers={"Authorization": f"{scheme} s3cret"}).status_code == 200
    assert client.get("/health", headers={"Authorization": "Basic s3cret"}).status_code == 401


def test_a_title_is_ranked_once_whatever_top_k_and_the_memo_is_capped_in_bytes(client, parts):
    predictor = client.app.state.batcher.predictor
    encoded = []
    encode = predictor._encode
    predictor._encode = lambda ids: encoded.append(len(ids)) or encode(ids)
    rows = [{"title": f"{t} {i}"} for i, t in enumerate(TITLES)]
    depths = range(2, len(predictor.codes) + 1)  # the tiny taxonomy's codes
    answers = [client.post("/v1/predict", json={"rows": rows, "top_k": k}).json()["rows"]
               for k in depths]
    assert sum(encoded) == len(rows)  # the first request only
    for k, answer in zip(depths, answers):
        assert answer[0][f"pred_code_{k}"] and f"pred_code_{k + 1}" not in answer[0]
        assert [r["pred_code_2"] for r in answer] == [r["pred_code_2"] for r in answers[0]]
    small = Predictor(parts, memo_bytes=20_000)
    titles = [r["title"] for r in rows] * 3
    assert (small.predict(titles).codes == Predictor(parts).predict(titles).codes).all()
    assert 0 < small._memo_held <= 20_000


def test_a_slow_search_or_a_big_upload_does_not_hold_up_other_requests(make_client, tmp_path):
    client = make_client("max_batch=64")
    occupations = client.app.state.occupations
    search = occupations.search
    occupations.search = lambda *args: time.sleep(4) or search(*args)
    with ThreadPoolExecutor(1) as pool:
        searching = pool.submit(client.get, "/v1/occupations", params={"q": "wire"})
        time.sleep(0.3)
        start = time.monotonic()
        assert client.get("/health").status_code == 200
        assert time.monotonic() - start < 2.5  # not behind the search
        assert searching.result().json()["occupations"]

    predictor = client.app.state.batcher.predictor
    calls = []
    predict_frame = predictor.predict_frame

    def slow(frame, *args):
        calls.append(len(frame))
        time.sleep(0.05)
        return predict_frame(frame, *args)

    predictor.predict_frame = slow
    raw = write_table(pd.DataFrame({"title": [f"{TITLES[i % len(TITLES)]} {i}"
                                              for i in range(640)]}), tmp_path / "big.csv")
    with ThreadPoolExecutor(1) as pool:
        opening = pool.submit(client.post, "/v1/files", params={"name": "big.csv"},
                              content=raw.read_bytes(), headers=UPLOAD)
        while not calls:  # the upload is being coded
            time.sleep(0.01)
        assert client.post("/v1/predict", json={"title": "Wireman"}).status_code == 200
        assert opening.result().status_code == 200
    assert max(calls) <= 64 and calls[-1] > 1  # the API's row came between the file's chunks


def test_an_upload_is_bounded_in_rows(make_client, tmp_path):
    client = make_client("max_upload_rows=5")
    raw = write_table(review_file(), tmp_path / "batch.parquet")
    response = client.post("/v1/files", params={"name": "batch.parquet"},
                           content=raw.read_bytes(), headers=UPLOAD)
    assert response.status_code == 413 and "6 rows" in response.json()["error"]
    assert uploaded(tmp_path) == []


def test_a_half_open_connection_is_closed_after_the_header_timeout(run_dir, tiny_onet, tmp_path):
    from helpers.serving import serving

    with serving(tmp_path, f"run={run_dir}", f"data_dir={tiny_onet}",
                 f"uploads={tmp_path / 'uploads'}", "header_timeout_s=1") as (_, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as half_open:
            half_open.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
            start = time.monotonic()
            assert half_open.recv(1024) == b""  # closed by the server
            assert time.monotonic() - start < 5
        assert httpx.get(f"{url}/health").status_code == 200
