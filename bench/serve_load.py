"""Load on the review desk's API, written to BENCHMARKS.md.

    .venv/bin/python bench/serve_load.py [RUN_DIR] [--seconds 10] [--requests 2000]

Starts `serve.py` on a free 127.0.0.1 port (the zero-shot packaged model on data/onet-29.3, or
RUN_DIR), then 1, 8, 32 and 128 concurrent clients each send single titles one after another,
for at most `--seconds` or `--requests` per level: requests/s, p50 and p99 latency. Two mixes:
distinct O*NET alternate titles never sent before, and titles repeated from a pool of 100. The
same titles then go through `Predictor.predict` in one batch in this process (fresh memo), the
batch path the API is measured against. Loopback only; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from common import ROOT, load, preamble, write_section

from occlass.data.taxonomy import CODE_COLUMN, read_onet_table
from occlass.data.text import normalize_title
from occlass.predict.loader import load_run, load_zero_shot
from occlass.predict.predictor import Predictor

DATA = ROOT / "data" / "onet-29.3"
CACHE = ROOT / "outputs" / "zero-shot" / "category_cache.pt"
CLIENTS = (1, 8, 32, 128)
TOP_K = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def titles(data_dir: Path) -> list[str]:
    """Distinct O*NET alternate titles, shuffled."""
    alternate = read_onet_table(data_dir / "Alternate Titles.txt", [CODE_COLUMN, "Alternate Title"])
    alternate = alternate.assign(key=alternate["Alternate Title"].map(normalize_title))
    distinct = alternate[alternate["key"] != ""].drop_duplicates("key")
    return distinct.sample(frac=1, random_state=0)["Alternate Title"].tolist()


async def load_level(url: str, clients: int, pick, seconds: float, requests: int
                     ) -> tuple[list[str], np.ndarray, float]:
    """`clients` workers sending one title per request until the time or request budget is
    spent: the titles sent, each request's latency (s) and the elapsed time."""
    sent: list[str] = []
    latencies: list[float] = []
    start = time.perf_counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits) as http:
        async def worker():
            while time.perf_counter() - start < seconds and len(sent) < requests:
                title = pick(len(sent))
                sent.append(title)
                begin = time.perf_counter()
                response = await http.post("/v1/predict", json={"title": title, "top_k": TOP_K})
                latencies.append(time.perf_counter() - begin)
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(clients)))
    return sent, np.array(latencies), time.perf_counter() - start


def batch_speed(predictor: Predictor, sent: list[str]) -> float:
    """Titles/s of the same titles through `Predictor.predict` in one batch, memo cleared."""
    predictor.set_corrections(None)  # forgets remembered answers
    begin = time.perf_counter()
    predictor.predict(sent, top_k=TOP_K)
    return len(sent) / (time.perf_counter() - begin)


@contextlib.contextmanager
def server(run: str | None, port: int, log: Path):
    """serve.py on 127.0.0.1:`port` until the block ends."""
    options = [f"run={run}" if run else "run=null", f"port={port}", "host=127.0.0.1",
               f"data_dir={DATA}", f"zero_shot_cache={CACHE}",
               f"uploads={ROOT / 'outputs' / 'review'}"]
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), *options],
                                   stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        while process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=None).status_code == 200:
                    yield url
                    return
            time.sleep(0.5)
        raise SystemExit(f"serve.py exited: {log.read_text()[-2000:]}")
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", help="a training run (default: zero-shot)")
    parser.add_argument("--seconds", type=float, default=10, help="at most, per level")
    parser.add_argument("--requests", type=int, default=2000, help="at most, per level")
    args = parser.parse_args()
    at_start = load()
    pool = titles(DATA)
    repeated = pool[-100:]
    fresh = iter(pool[:-100])
    rows = []
    with server(args.run, free_port(), ROOT / "outputs" / "serve_load.log") as url:
        for mix in ("distinct", "repeated"):
            for clients in CLIENTS:
                pick = ((lambda i: next(fresh)) if mix == "distinct"
                        else (lambda i: repeated[i % len(repeated)]))
                sent, latencies, elapsed = asyncio.run(load_level(url, clients, pick,
                                                                  args.seconds, args.requests))
                rows.append({"mix": mix, "clients": clients, "requests": len(latencies),
                             "sent": sent, "requests/s": len(latencies) / elapsed,
                             "p50 ms": 1000 * np.percentile(latencies, 50),
                             "p99 ms": 1000 * np.percentile(latencies, 99)})
                print(f"{mix} × {clients}: {rows[-1]['requests/s']:.0f} requests/s", flush=True)
    parts = (load_zero_shot(DATA, cache_path=CACHE) if args.run is None
             else load_run(args.run, DATA))
    predictor = Predictor(parts)
    for row in rows:
        row["batch titles/s"] = batch_speed(predictor, row.pop("sent"))
        row["API / batch"] = row["requests/s"] / row["batch titles/s"]
    model = "zero-shot packaged all-MiniLM-L6-v2" if args.run is None else f"run {args.run}"
    body = ("## Review desk API under load (`bench/serve_load.py`)\n\n"
            + preamble(f"{model}, O*NET 29.3 memory on, top_k={TOP_K}, serve.py defaults "
                       f"(max_batch 256, max_wait_ms 5); at most {args.seconds:g} s or "
                       f"{args.requests} requests per level; client and server share the "
                       "machine", at_start,
                       None if args.run is None else {f"`{args.run}`": parts.info})
            + "\nEach client sends one title per request and waits for the answer; the batch "
              "path is `Predictor.predict` on the same titles in one call.\n\n"
            + "| mix | clients | requests | requests/s | p50 ms | p99 ms | batch titles/s | "
              "API / batch |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
            + "\n".join(f"| {r['mix']} | {r['clients']} | {r['requests']} | "
                        f"{r['requests/s']:.0f} | {r['p50 ms']:.0f} | {r['p99 ms']:.0f} | "
                        f"{r['batch titles/s']:.0f} | {r['API / batch']:.2f} |" for r in rows)
            + "\n")
    write_section("serve_load", body)
    print(body)


if __name__ == "__main__":
    main()
