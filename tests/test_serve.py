"""The review desk's API (FastAPI's test client) on the tiny run: every endpoint, bad requests,
predict.py's output for the same rows, micro-batching under concurrency, the review store and the
review → export → corrections= → data.extra_files loop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from helpers.tables import write_table
from helpers.tiny import OCCUPATIONS, ROOT
from hydra import compose, initialize_config_dir

from occlass.errors import OcclassError
from occlass.model.memory import ExemplarMemory
from occlass.predict.job import predict_file
from occlass.predict.loader import load_configured, predictor_options
from occlass.predict.predictor import Predictor
from occlass.runs import MEMORY_FILE
from occlass.serve.app import create_app
from occlass.train.job import train

TITLES = [t for _, title, _, alts, reps in OCCUPATIONS for t in (title, *alts, *reps)]


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
        client = TestClient(create_app(cfg, parts), headers=headers)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


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
    one = client.post("/v1/predict", json={"title": "Wireman", "top_k": 3}).json()
    assert present(one["rows"][0]) == present(expected[0])
    assert len(client.post("/v1/predict", json={"title": "x"}).json()["rows"][0]
               ["pred_code_5"]) == 10  # the default top_k=5


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
    response = client.post("/v1/predict", json=body)
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


def test_occupation_search_and_lookup(client):
    found = client.get("/v1/occupations", params={"q": "wire"}).json()["occupations"]
    assert found[0] == {"code": "47-2111.00", "title": "Electricians", "match": "Wireman"}
    assert client.get("/v1/occupations", params={"q": "15-1"}).json()["occupations"] == [
        {"code": "15-1211.00", "title": "Computer Systems Analysts", "match": ""},
        {"code": "15-1252.00", "title": "Software Developers", "match": ""}]
    nurses = client.get("/v1/occupations", params={"q": "nurses"}).json()["occupations"]
    assert [o["code"] for o in nurses[:2]] == ["29-2061.00", "29-1141.00"]  # titles first
    assert client.get("/v1/occupations", params={"q": " "}).json()["occupations"] == []
    assert client.get("/v1/occupations", params={"limit": 0}).status_code == 422
    one = client.get("/v1/occupations/47-2031.00").json()
    assert one["title"] == "Carpenters" and "Joiner" in one["alternate_titles"]
    missing = client.get("/v1/occupations/99-9999.00")
    assert missing.status_code == 404 and "99-9999.00" in missing.json()["error"]


def test_health_docs_and_page(client):
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/openapi.json").json()["paths"]["/v1/predict"]
    assert client.get("/docs").status_code == 200
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
    opened = client.post("/v1/files", params={"name": "batch.csv"}, content=raw.read_bytes())
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
                                      "decided_by", "reviewer"]
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


def test_bad_uploads_get_a_clear_error(client, tmp_path):
    assert "give a" in client.post("/v1/files", params={"name": "x.xlsx"},
                                   content=b"x").json()["error"]
    empty = client.post("/v1/files", params={"name": "x.csv"}, content=b"")
    assert empty.status_code == 400 and empty.json()["error"].startswith("x.csv")
    headless = client.post("/v1/files", params={"name": "../../y.csv"}, content=b"name\nx\n")
    assert headless.status_code == 400 and "title" in headless.json()["error"]
    assert not (tmp_path / "y.csv").exists()


def test_a_killed_server_keeps_every_saved_decision(run_dir, tiny_onet, tmp_path):
    from helpers.serving import serving

    raw = write_table(review_file(), tmp_path / "batch.csv")
    options = (f"run={run_dir}", f"data_dir={tiny_onet}", f"uploads={tmp_path / 'uploads'}",
               "confidence=platt", "review_below=1")  # every row to review
    http = httpx.Client(timeout=None)
    with serving(tmp_path, *options) as (server, url):
        file = http.post(f"{url}/v1/files", params={"name": "batch.csv"},
                         content=raw.read_bytes()).json()["id"]
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
