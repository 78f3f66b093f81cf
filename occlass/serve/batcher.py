"""Micro-batching: the rows of concurrent requests are gathered into one forward pass.

One task on the event loop takes the requests waiting, then goes on taking them while they come
(each within `max_wait` seconds of the one before, for at most as long as the last pass took) up
to `max_batch` rows: the clients just answered are back in the next pass, so clients that send
again on each answer share one pass, not two half-size ones taking turns. It runs the batch on
the model thread, which also makes its table and writes each row's JSON: the loop never waits
on the model, and does no per-row work but joining each caller's rows. Should that task ever fail,
every waiting and later caller gets its error and `on_failure` is called (the server stops):
none waits forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import pandas as pd

from occlass.predict.predictor import Predictor


class Stopped(RuntimeError):
    """The batching task failed: no request can be answered any more."""


@dataclass
class _Request:
    titles: list
    descriptions: list  # one per title, None where absent
    top_k: int
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """`await batcher.predict(titles, descriptions, top_k)`: `Predictor.predict_frame`'s result
    for those rows (columns title and description), each row a JSON object (text), computed in
    one pass with the requests waiting (at most `max_batch` rows, more only when a single
    request is bigger)."""

    def __init__(self, predictor: Predictor, executor: Executor, max_batch: int = 256,
                 max_wait: float = 0.005,
                 on_failure: Callable[[BaseException], None] = lambda error: None):
        self.predictor = predictor
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.on_failure = on_failure
        self.error: Stopped | None = None  # set when the batching task fails
        self.batch_sizes: list[int] = []  # rows of each pass, for tests and the bench
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._waiting: set[asyncio.Future] = set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())
        self._task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self.error = Stopped(f"the batching task failed ({task.exception()!r})")
        for future in list(self._waiting):
            if not future.done():
                future.set_exception(self.error)
        self.on_failure(self.error)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def predict(self, titles: list, descriptions: list, top_k: int) -> list[str]:
        if self.error is not None:
            raise self.error
        future = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)
        await self._queue.put(_Request(titles, descriptions, top_k, future))
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        last_pass = 0.0  # seconds the previous pass took
        while True:
            batch = [await self._queue.get()]
            rows = len(batch[0].titles)
            until = loop.time() + max(self.max_wait, last_pass)
            while rows < self.max_batch:
                wait = min(self.max_wait, until - loop.time())
                try:
                    request = (self._queue.get_nowait() if self._queue.qsize()
                               else await asyncio.wait_for(self._queue.get(), wait))
                except asyncio.TimeoutError:
                    break
                batch.append(request)
                rows += len(request.titles)
            self.batch_sizes.append(rows)
            begin = loop.time()
            await self._run(batch)
            last_pass = loop.time() - begin

    async def _run(self, batch: list[_Request]) -> None:
        """One `predict_frame` per top_k among the batch's requests, on the model thread."""
        for top_k in sorted({r.top_k for r in batch}):
            group = [r for r in batch if r.top_k == top_k and not r.future.done()]
            if not group:
                continue
            titles = [t for r in group for t in r.titles]
            descriptions = [d for r in group for d in r.descriptions]
            try:
                result = await run_on(self.executor, self._json_rows, titles, descriptions,
                                      top_k)
            except Exception as err:  # noqa: BLE001 (each caller gets the error)
                for request in group:
                    if not request.future.done():
                        request.future.set_exception(err)
                continue
            start = 0
            for request in group:
                rows = result[start:start + len(request.titles)]
                start += len(request.titles)
                if not request.future.done():  # the caller may have gone
                    request.future.set_result(rows)

    def _json_rows(self, titles: list, descriptions: list, top_k: int) -> list[str]:
        """Each row of `predict_frame`'s result as a JSON object (missing values null); the
        table is made here, on the model thread, not on the event loop."""
        frame = pd.DataFrame({"title": titles, "description": descriptions}, dtype=object)
        result = self.predictor.predict_frame(frame, top_k)
        return [line for line in result.to_json(orient="records", lines=True).split("\n")
                if line]  # newlines within values are escaped


async def run_on(executor: Executor, function: Callable, *args):
    """`function(*args)` on `executor`, awaited without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

