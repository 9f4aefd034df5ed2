"""Adaptive batching: concurrent requests to one deployment share model calls.

One worker task per deployment takes requests off a queue. A lone request
runs at once (an idle model never waits; a small request to an idle, fast
model even runs right on the event loop, sparing a thread hop); while a
model call runs, new
requests queue up and the next call takes all of them, up to
``max_batch_size`` rows. Under load (the last call served several requests)
the worker may also wait up to ``max_wait`` for a batch to fill. Each caller
gets back exactly its own rows, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from corral.runtimes.base import Prediction

INLINE_ROWS = 16  # requests this small may run on the event loop when the deployment is idle...
INLINE_SECONDS = 0.002  # ...and the model answered this few rows faster than this last time


@dataclass
class _Pending:
    frame: pd.DataFrame
    future: asyncio.Future[tuple[Prediction, int]]
    queued_at: float


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one model call did, for metrics."""

    rows: int
    requests: int
    queue_seconds: float
    run_seconds: float


def slice_prediction(prediction: Prediction, start: int, stop: int) -> Prediction:
    probabilities = prediction.probabilities[start:stop] if prediction.probabilities is not None else None
    return Prediction(prediction.values[start:stop], probabilities, prediction.classes)


class AdaptiveBatcher:
    """Coalesces frames submitted concurrently into single ``predict`` calls.

    Args:
        predict: the model call; runs in ``executor``.
        executor: where model calls run (one thread keeps calls in order).
        max_batch_size: most rows per call; a single request larger than this
            runs alone.
        max_wait: seconds a batch may wait to fill while the deployment is busy.
        on_batch: called after each model call with its statistics.
    """

    def __init__(
        self,
        predict: Callable[[pd.DataFrame], Prediction],
        executor: Executor,
        *,
        max_batch_size: int = 64,
        max_wait: float = 0.001,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self._predict = predict
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._busy = False
        self._closed = False
        self._running = 0  # batches taken off the queue and not yet answered
        self._small_call: float | None = None  # seconds of the last model call of a few rows
        self._probing = False  # a request is checking whether it is alone

    async def submit(self, frame: pd.DataFrame) -> tuple[Prediction, int]:
        """Predict ``frame`` as part of a batch; returns its rows and the batch's size."""
        if self._closed:
            raise RuntimeError("batcher is closed")
        if not self._probing and self._idle() and len(frame) <= INLINE_ROWS and self._fast():
            self._probing = True
            try:
                await asyncio.sleep(0)  # requests that arrived with this one reach the batcher now...
            finally:
                self._probing = False
            if self._idle() and not self._closed:  # ...and if none did, the model is ours alone
                return self._inline(frame)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="corral-batcher")
        future: asyncio.Future[tuple[Prediction, int]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(frame, future, time.perf_counter()))
        return await future

    def _idle(self) -> bool:
        return self._running == 0 and self._queue.empty()

    def _fast(self) -> bool:
        return self._small_call is not None and self._small_call < INLINE_SECONDS

    def _inline(self, frame: pd.DataFrame) -> tuple[Prediction, int]:
        """An idle deployment with a fast model answers a small request on the spot: no thread hop.

        The request first yields once to the event loop, so requests that
        arrived together with it (already read, not yet at the batcher) queue
        up and make a batch instead; only a request that is really alone runs
        here. The call is known to take a millisecond or two at most, about
        what the thread hop would have cost.
        """
        self._running += 1
        started = time.perf_counter()
        try:
            prediction = self._predict(frame)
        finally:
            self._running -= 1
        seconds = time.perf_counter() - started
        self._small_call = seconds
        if self._on_batch is not None:
            self._on_batch(BatchStats(len(frame), 1, 0.0, seconds))
        return prediction, len(frame)

    async def close(self) -> None:
        """Finish queued requests, then stop the worker."""
        self._closed = True
        while not self._queue.empty() or self._running:
            await asyncio.sleep(0.001)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _collect(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        self._running += 1  # from here until answered, close() waits for this batch
        rows = len(batch[0].frame)
        deadline = time.perf_counter() + (self.max_wait if self._busy else 0.0)
        while rows < self.max_batch_size:
            if self._queue.empty():
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            if rows + len(item.frame) > self.max_batch_size:
                self._queue.put_nowait(item)  # back of the queue: it leads the next batch
                break
            batch.append(item)
            rows += len(item.frame)
        return batch

    async def _one_by_one(self, live: list[_Pending], error: Exception) -> None:
        """A failed batch is retried request by request, so only the culprit fails."""
        loop = asyncio.get_running_loop()
        if len(live) == 1:
            if not live[0].future.done():
                live[0].future.set_exception(error)
            return
        for pending in live:
            try:
                alone = await loop.run_in_executor(self._executor, self._predict, pending.frame)
            except Exception as exc:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            else:
                if not pending.future.done():
                    pending.future.set_result((alone, len(pending.frame)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            try:
                await self._answer(loop, batch)
            finally:
                self._running -= 1

    async def _answer(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.cancelled()]
        if not live:
            return
        started = time.perf_counter()
        frame = live[0].frame if len(live) == 1 else pd.concat([p.frame for p in live], ignore_index=True)
        try:
            prediction = await loop.run_in_executor(self._executor, self._predict, frame)
        except Exception as exc:
            await self._one_by_one(live, exc)
            return
        self._busy = len(live) > 1
        if len(frame) <= INLINE_ROWS:
            self._small_call = time.perf_counter() - started
        offsets = np.cumsum([0, *(len(p.frame) for p in live)])
        for pending, start, stop in zip(live, offsets[:-1], offsets[1:], strict=True):
            if not pending.future.done():
                pending.future.set_result((slice_prediction(prediction, int(start), int(stop)), len(frame)))
        if self._on_batch is not None:
            self._on_batch(
                BatchStats(
                    len(frame), len(live), started - min(p.queued_at for p in live), time.perf_counter() - started
                )
            )
