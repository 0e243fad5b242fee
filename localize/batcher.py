"""Micro-batching: prediction requests of different users that arrive within a small window share one engine pass.

Each request thread resolves its own adapters, then hands its ``(adapter, text)`` rows to :class:`MicroBatcher`
and waits. A dispatcher thread (``passes`` of them, each with a pass in flight) takes the first waiting request, keeps collecting for ``window`` seconds (or
until ``max_rows`` rows), runs the merged rows through :meth:`Engine.predict` once, and hands each request its
own slice. A burst of single-text requests then costs one batched forward instead of one forward each; the price
is up to ``window`` of extra latency when the server is idle.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from time import monotonic

from localize import metrics, tracing
from localize.engine import AdapterWeights, Engine, Prediction

logger = logging.getLogger(__name__)


def passes_for_cores(threads: int | None = None) -> int:
    """Merged passes in flight by default: as many as the process's cores hold passes of ``threads`` intra-op
    threads each (torch's count where unset). More would make the passes' threads take turns on the cores, and an
    intra-op thread that waits for its turn holds up the whole operation (reports/speed.md, "HTTP latency under
    open load")."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, threads or torch.get_num_threads()))


class MicroBatcher:
    def __init__(self, engine: Engine, *, window: float, max_rows: int, passes: int = 2) -> None:
        if window < 0:
            raise ValueError(f"batch window={window} s must be >= 0")
        if max_rows < 1:
            raise ValueError(f"batch max_rows={max_rows} must be >= 1")
        if passes < 1:
            raise ValueError(f"batch passes={passes} must be >= 1")
        self.engine = engine
        self.window = window
        self.max_rows = max_rows
        self._queue: deque[tuple[Sequence[tuple[AdapterWeights, str]], Future | _LoopWaiter]] = deque()
        # While tracing, the context of each pass's first request: its engine pass span joins that request's trace.
        self._contexts: dict[int, contextvars.Context] = {}
        self._ready = threading.Condition()
        self._closed = False
        # Dispatchers: merged passes in flight at once. With one intra-op thread a pass runs on one core, so a
        # second dispatcher keeps another core busy while the first collects or computes.
        self._passes_in_flight = passes
        self._threads: list[threading.Thread] = []
        self.passes = 0  # engine passes run, and requests served, for tests and metrics
        self.requests = 0

    def predict(self, rows: Sequence[tuple[AdapterWeights, str]]) -> list[Prediction]:
        """The engine's predictions for ``rows``, computed in a pass shared with concurrent requests."""
        if not rows:
            return []
        if len(rows) >= self.max_rows:  # already a full batch: merging would only delay it
            return self.engine.predict(rows)
        future: Future = Future()
        self._submit(rows, future)
        return future.result()

    async def predict_async(self, rows: Sequence[tuple[AdapterWeights, str]]) -> list[Prediction]:
        """:meth:`predict` for a coroutine: it waits on the event loop instead of blocking a thread."""
        if not rows:
            return []
        if len(rows) >= self.max_rows:
            import anyio

            return await anyio.to_thread.run_sync(self.engine.predict, rows)
        waiter = _LoopWaiter()
        self._submit(rows, waiter)
        return await waiter.future

    def _submit(self, rows: Sequence[tuple[AdapterWeights, str]], future: Future | _LoopWaiter) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("the micro-batcher is closed")
            self._queue.append((rows, future))
            if tracing.enabled():
                self._contexts[id(future)] = contextvars.copy_context()
            self._ensure_thread()
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def _ensure_thread(self) -> None:
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        while len(self._threads) < self._passes_in_flight:
            thread = threading.Thread(target=self._run, name="localize-microbatcher", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if self._closed and not self._queue:
                    return
                batch = [self._queue.popleft()]
                size = len(batch[0][0])
                deadline = monotonic() + self.window
                while size < self.max_rows:
                    if not self._queue:
                        left = deadline - monotonic()
                        if left <= 0 or self._closed:
                            break
                        self._ready.wait(left)
                        continue
                    if size + len(self._queue[0][0]) > self.max_rows:
                        break
                    batch.append(self._queue.popleft())
                    size += len(batch[-1][0])
            self._serve(batch)

    def _serve(self, batch: list[tuple[Sequence[tuple[AdapterWeights, str]], Future | _LoopWaiter]]) -> None:
        merged = [row for rows, _ in batch for row in rows]
        contexts = [self._contexts.pop(id(future), None) for _, future in batch] if self._contexts else [None]
        try:
            if contexts[0] is not None:
                predictions = contexts[0].run(self.engine.predict, merged)
            else:
                predictions = self.engine.predict(merged)
        except BaseException as error:  # every waiting request learns why
            _settle_all([(future, None, error) for _, future in batch])
            return
        with self._ready:
            self.passes += 1
            self.requests += len(batch)
        metrics.BATCHED_REQUESTS.observe(len(batch))
        settled, start = [], 0
        for rows, future in batch:
            settled.append((future, predictions[start : start + len(rows)], None))
            start += len(rows)
        _settle_all(settled)


class _LoopWaiter:
    """A request waiting on an event loop: an asyncio future, settled through one ``call_soon_threadsafe`` per loop
    and pass (a thread-safe ``concurrent.futures.Future`` per request costs a lock and a wake-up each)."""

    __slots__ = ("future", "loop")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.future = self.loop.create_future()


def _settle_all(settled: list[tuple[Future | _LoopWaiter, list[Prediction] | None, BaseException | None]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for waiter, result, error in settled:
        if isinstance(waiter, _LoopWaiter):
            by_loop.setdefault(waiter.loop, []).append((waiter.future, result, error))
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_on_loop, futures)
        except RuntimeError:  # the loop was closed meanwhile: nobody is waiting any more
            pass


def _settle_on_loop(futures: list[tuple[asyncio.Future, list[Prediction] | None, BaseException | None]]) -> None:
    for future, result, error in futures:
        if future.cancelled():  # the client went away
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
