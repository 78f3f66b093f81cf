"""Load on the review desk's API, written to BENCHMARKS.md.

    .venv/bin/python bench/serve_load.py [--run RUN_DIR] [--seconds 10] [--quick]

Starts `serve.py` on a free 127.0.0.1 port (the zero-shot packaged model on data/onet-29.3, or
RUN_DIR), then Debian's `wrk` (its own process, one thread: `apt-get install -y wrk`) keeps 1,
8, 32 and 128 connections busy for `--seconds` each, every request one title never sent before
(O*NET alternate titles): requests/s, p50 and p99 latency. Then the fast path, requests of
`--rows` titles from one client, and the batch path the API is measured against: the same kind
of titles through `Predictor.predict` in one call in this process, after the server stopped.
Last, the cost of a decision on the review page with 80 and with 8,000 rows to review (a coded
file uploaded, `--decisions` decisions, each answered before the next). Loopback only; the server
is stopped at the end; then, in this process, the model alone on passes as large as each level
holds (one title per client): that level's ceiling. `--quick`: a check that the bench runs (1 s
per level, 1 and 8 clients, 20 and 200 rows), not the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from common import ROOT, load, preamble, write_section
from omegaconf import OmegaConf

from occlass.data.taxonomy import CODE_COLUMN, Taxonomy, read_onet_table
from occlass.data.text import normalize_title
from occlass.predict.loader import load_run, load_zero_shot
from occlass.predict.predictor import Predictor
from occlass.serve.launch import serving

DATA = ROOT / "data" / "onet-29.3"
CACHE = ROOT / "outputs" / "zero-shot" / "category_cache.pt"
TOP_K = 5
MAX_BATCH = OmegaConf.load(ROOT / "conf" / "serve.yaml").max_batch  # titles per pass, at most
# Each request the next body of the file BODIES names, one JSON body a line (one thread: no
# two connections send the same title); `done` prints the figures on one line.
SCRIPT = """
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


ERROR_KINDS = ("connect", "read", "write", "status (not 2xx)", "timeout")  # as wrk counts them


def titles(data_dir: Path, n: int) -> list[str]:
    """`n` distinct titles: O*NET alternate titles, shuffled (numbered copies when too few)."""
    alternate = read_onet_table(data_dir / "Alternate Titles.txt",
                                [CODE_COLUMN, "Alternate Title"])
    alternate = alternate.assign(key=alternate["Alternate Title"].map(normalize_title))
    distinct = alternate[alternate["key"] != ""].drop_duplicates("key")
    pool = distinct.sample(frac=1, random_state=0)["Alternate Title"].tolist()
    return [pool[i % len(pool)] + (f" {i // len(pool)}" if i >= len(pool) else "")
            for i in range(n)]


def server(args, folder: Path):
    """serve.py on a free loopback port until the block ends: (process, URL)."""
    return serving(f"run={args.run}" if args.run else "run=null", f"data_dir={args.data_dir}",
                   f"uploads={folder}", f"zero_shot_cache={CACHE if args.run is None else 'null'}",
                   cwd=ROOT, log=folder / "serve.log")


def wrk(url: str, clients: int, seconds: float, sent: list[str], folder: Path) -> dict:
    """`clients` connections sending the titles `sent` one a request for `seconds`."""
    bodies = folder / "bodies.jsonl"
    bodies.write_text("".join(json.dumps({"title": t, "top_k": TOP_K}) + "\n" for t in sent))
    script = folder / "post.lua"
    script.write_text(SCRIPT)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "60s", "-s", str(script),
         f"{url}/v1/predict"], capture_output=True, text=True, check=True,
        env={"BODIES": str(bodies), "PATH": "/usr/bin:/bin"})
    found = re.search(r"^RESULT" + r" (\d+)" * 9 + "$", done.stdout, re.MULTILINE)
    requests, duration, p50, p99, *errors = map(int, found.groups())
    kinds = ", ".join(f"{n} {kind}" for kind, n in zip(ERROR_KINDS, errors) if n)
    return {"clients": clients, "requests": requests, "requests/s": requests / duration * 1e6,
            "p50 ms": p50 / 1000, "p99 ms": p99 / 1000, "errors": sum(errors),
            "error kinds": kinds, "unique": requests <= len(sent)}


def fast_path(url: str, sent: list[str], rows: int) -> float:
    """Titles/s of requests of `rows` titles each, one client."""
    with httpx.Client(base_url=url, timeout=None) as http:
        begin = time.perf_counter()
        for at in range(0, len(sent), rows):
            http.post("/v1/predict", json={"rows": [{"title": t} for t in sent[at:at + rows]],
                                           "top_k": TOP_K}).raise_for_status()
        return len(sent) / (time.perf_counter() - begin)


def model_alone(predictor: Predictor, sent: list[str], size: int, seconds: float) -> float:
    """Titles/s of the model alone on passes of `size` titles, as the server's model thread runs
    them (`predict_frame`, then JSON), back to back: what `size` clients could get at best."""
    begin, at = time.perf_counter(), 0
    while at + size <= len(sent) and (at == 0 or time.perf_counter() - begin < seconds):
        frame = pd.DataFrame({"title": sent[at:at + size]})
        predictor.predict_frame(frame, TOP_K).to_json(orient="records", lines=True)
        at += size
    return at / (time.perf_counter() - begin)


def decision_cost(url: str, pending: int, decisions: int, codes: list[str], sent: list[str],
                  folder: Path) -> dict:
    """A coded file of `pending` rows to review uploaded, then `decisions` decisions one after
    another: each one's time (ms), the first (which checks every row once) apart."""
    coded = folder / f"pending-{pending}.csv"
    pd.DataFrame({"title": sent[:pending], "pred_code_1": codes[0], "status": "ok",
                  "needs_review": True}).to_csv(coded, index=False)
    rng = random.Random(pending)
    times = []
    with httpx.Client(base_url=url, timeout=None) as http:
        opened = http.post("/v1/files", params={"name": coded.name}, content=coded.read_bytes(),
                           headers={"X-Requested-With": "bench"})
        opened.raise_for_status()
        file = opened.json()["id"]
        for row in rng.sample(range(pending), decisions + 1):
            begin = time.perf_counter()
            http.put(f"/v1/files/{file}/rows/{row}/decision",
                     json={"code": rng.choice(codes), "reviewer": "bench"}).raise_for_status()
            times.append(1000 * (time.perf_counter() - begin))
    return {"pending": pending, "first ms": times[0], "median ms": float(np.median(times[1:])),
            "p90 ms": float(np.percentile(times[1:], 90))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a training run (default: zero-shot)")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--seconds", type=float, default=10, help="per client level")
    parser.add_argument("--rows", type=int, default=256, help="titles per fast-path request")
    parser.add_argument("--decisions", type=int, default=20, help="per file of rows to review")
    parser.add_argument("--quick", action="store_true", help="a check that it runs")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    clients, sizes = ((1, 8), (20, 200)) if args.quick else ((1, 8, 32, 128), (80, 8000))
    seconds = 1 if args.quick else args.seconds
    decisions = 3 if args.quick else args.decisions
    at_start = load()
    per_level = 3000 if args.quick else 60_000 // (len(clients) + 2)  # more than sent
    pool = titles(args.data_dir, per_level * (len(clients) + 2) + max(sizes))
    levels = [pool[i * per_level:(i + 1) * per_level] for i in range(len(clients) + 2)]
    codes = Taxonomy.load(args.data_dir).codes
    rows, costs = [], []
    with tempfile.TemporaryDirectory() as folder, server(args, Path(folder)) as (_, url):
        wrk(url, 8, 1, levels[-1], Path(folder))  # warm up
        for n, sent in zip(clients, levels):
            rows.append(wrk(url, n, seconds, sent, Path(folder)))
            print(rows[-1], flush=True)
        fast = fast_path(url, levels[-2][:max(args.rows, int(rows[-1]["requests/s"] * seconds))],
                         args.rows)
        for pending in sizes:
            costs.append(decision_cost(url, pending, decisions, list(codes), pool[-pending:],
                                       Path(folder)))
            print(costs[-1], flush=True)
    parts = (load_zero_shot(args.data_dir, cache_path=CACHE) if args.run is None
             else load_run(args.run, args.data_dir))
    batch_titles = levels[-2][-max(args.rows, 2000 if not args.quick else 200):]
    begin = time.perf_counter()
    Predictor(parts).predict(batch_titles, top_k=TOP_K)
    batch = len(batch_titles) / (time.perf_counter() - begin)
    for r, sent in zip(rows, levels):  # a pass holds one title per client (at most max_batch)
        r["alone"] = model_alone(Predictor(parts), sent, min(r["clients"], MAX_BATCH), seconds / 4)
    model = "zero-shot packaged all-MiniLM-L6-v2" if args.run is None else f"run {args.run}"
    body = (
        "## Review desk API under load (`bench/serve_load.py`)\n\n"
        + preamble(f"{model}, {args.data_dir.name}, top_k={TOP_K}, serve.py defaults; load "
                   f"from `wrk` (one thread, its own process, same machine), {seconds:g} s per "
                   "level" + ("; **--quick: a check, not the figures**" if args.quick else ""),
                   at_start, None if args.run is None else {f"`{args.run}`": parts.info})
        + f"\nEach connection sends one title per request (never sent before) and waits for the "
          f"answer. The batch path: `Predictor.predict` on {len(batch_titles):,} such titles in "
          f"one call, {batch:.0f} titles/s; the fast path, requests of {args.rows} titles from "
          f"one client: {fast:.0f} titles/s ({fast / batch:.2f}× the batch path).\n\n"
          "The last column is the model alone, in this process without HTTP, on passes of as "
          "many titles as there are clients (one title each), back to back: the most the API "
          "could get at that load.\n\n"
          "| clients | requests | requests/s | p50 ms | p99 ms | errors | API / batch "
          "| model alone / batch |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        + "".join(f"| {r['clients']} | {r['requests']:,} | {r['requests/s']:.0f} | "
                  f"{r['p50 ms']:.0f} | {r['p99 ms']:.0f} | {r['errors']} | "
                  f"{r['requests/s'] / batch:.2f} | {r['alone'] / batch:.2f} |\n" for r in rows)
        + "\nA decision on the review page (`PUT .../decision`, saved and learnt from) with "
          f"{sizes[0]:,} and {sizes[1]:,} rows to review; the first decision on a file checks "
          "every row once, the others only the rows they can change:\n\n"
          "| rows to review | first decision ms | median ms | p90 ms |\n|---:|---:|---:|---:|\n"
        + "".join(f"| {c['pending']:,} | {c['first ms']:.0f} | {c['median ms']:.1f} | "
                  f"{c['p90 ms']:.1f} |\n" for c in costs)
        + f"\nA decision at {sizes[1]:,} rows costs "
          f"{costs[1]['median ms'] / costs[0]['median ms']:.2f}× one at {sizes[0]:,} (median).\n")
    for r in rows:
        if r["errors"]:
            body += f"\nErrors at {r['clients']} clients, by kind (wrk's): {r['error kinds']}.\n"
    if not all(r["unique"] for r in rows):
        body += "\nSome level sent more requests than it had titles: titles were repeated.\n"
    write_section("serve_load", body)
    print(body)


if __name__ == "__main__":
    main()
