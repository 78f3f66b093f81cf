"""Many single-title requests at once (occlass.serve.batcher), on the tiny run: they share
forward passes and each caller gets exactly what it would get alone; bench/serve_load.py runs
(quick, tiny data) and writes its section."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.tiny import ROOT
from test_serve import TITLES

from occlass.predict.predictor import Predictor
from occlass.serve.batcher import MicroBatcher


def same(answers: list[list[dict]], others: list[list[dict]]) -> bool:
    """Equal answers, numbers to 1.5e-4 (a title's scores move in the last float digits with the
    padding of the pass it shares; confidences are rounded to 4 decimals)."""
    return [[row.keys() for row in a] for a in answers] == [[row.keys() for row in a]
                                                             for a in others] and all(
        value == pytest.approx(other, abs=1.5e-4) if isinstance(value, float) else value == other
        for a, b in zip(answers, others) for row, twin in zip(a, b)
        for value, other in zip(row.values(), twin.values()))


def test_concurrent_requests_share_passes_and_get_what_each_would_alone(served_parts):
    """Single titles (some described, blank or a marker) and a request of several rows, with
    different top_k, sent at once: each answer equals the same request sent alone."""
    requests = [([f"{t} {i}"], [None]) for i, t in enumerate(TITLES)]
    requests += [(["Wireman", "", "NA"], ["Installs wiring.", None, None]),
                 (["Nurse"], ["Cares for patients."])]
    top_k = [1 + i % 4 for i in range(len(requests))]

    async def answers(together: bool) -> tuple[list[list[dict]], list[int]]:
        with ThreadPoolExecutor(1) as model:
            batcher = MicroBatcher(Predictor(served_parts), model, max_batch=32, max_wait=0.05)
            batcher.start()
            calls = [batcher.predict(*r, k) for r, k in zip(requests, top_k)]
            rows = (await asyncio.gather(*calls) if together
                    else [await call for call in calls])
            await batcher.stop()
        return [[json.loads(row) for row in answer] for answer in rows], batcher.batch_sizes

    alone, alone_sizes = asyncio.run(answers(False))
    shared, sizes = asyncio.run(answers(True))
    assert same(shared, alone)
    assert len(sizes) < len(requests) and max(sizes) <= 32 + 2  # shared passes, capped
    assert alone_sizes == [len(titles) for titles, _ in requests]
    for answer, request, k in zip(alone, requests, top_k):
        assert [row["title"] for row in answer] == request[0]
        assert f"pred_code_{k}" in answer[0] and f"pred_code_{k + 1}" not in answer[0]


class SlowModel:
    """Stands in for the predictor: every pass takes `seconds`, whatever its size."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def predict_frame(self, frame, top_k):
        time.sleep(self.seconds)
        return frame.assign(pred_code_1="11-1011.00")


def test_clients_that_send_again_on_each_answer_share_one_pass():
    """Six clients arrive one after another, each later than the gathering wait, and send their
    next title when answered (2 ms later): the pass after the first holds all six, and so does every
    later one (the batcher waits for the clients it just answered), not two groups taking turns
    at half the pass size each."""

    async def sizes() -> list[int]:
        with ThreadPoolExecutor(1) as model:
            batcher = MicroBatcher(SlowModel(0.06), model, max_batch=32, max_wait=0.01)
            batcher.start()

            async def client(i: int) -> None:
                await asyncio.sleep(0.015 * i)
                while len(batcher.batch_sizes) < 7:
                    await batcher.predict([f"title {i}"], [None], 1)

            await asyncio.gather(*(client(i) for i in range(6)))
            await batcher.stop()
        return batcher.batch_sizes

    passes = asyncio.run(sizes())
    assert passes[0] < 6 and passes[1:6] == [6] * 5


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (apt-get install -y wrk)")
def test_the_load_bench_runs_on_tiny_data(run_dir, tiny_onet, tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "bench"))
    import common
    import serve_load

    monkeypatch.setattr(common, "BENCHMARKS", tmp_path / "BENCHMARKS.md")
    monkeypatch.setattr(sys, "argv", ["bench/serve_load.py", "--run", str(run_dir),
                                      "--data-dir", str(tiny_onet), "--quick"])
    serve_load.main()
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "<!-- serve_load -->" in text and "--quick: a check" in text
    assert "| 8 |" in text and "| 200 |" in text and "× one at 20" in text
