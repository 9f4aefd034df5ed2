from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest

from corral.runtimes.base import Prediction
from corral.serving import batching
from corral.serving.batching import AdaptiveBatcher, BatchStats


class Model:
    """Doubles ``x``; fails on ``x == -1``; remembers the rows of every call; can be held."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, frame: pd.DataFrame) -> Prediction:
        assert self.gate.wait(10)
        self.calls.append(len(frame))
        if (frame["x"] == -1).any():
            raise ValueError("poison row")
        x = frame["x"].to_numpy()
        return Prediction(x * 2, np.column_stack([x, -x]).astype(float), ("a", "b"))


def rows(*values: float) -> pd.DataFrame:
    return pd.DataFrame({"x": list(values)})


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))  # bounded: a broken batcher fails instead of hanging


def test_concurrent_requests_share_calls_and_get_their_own_rows() -> None:
    model, stats = Model(), []

    async def scenario() -> list[tuple[Prediction, int]]:
        with ThreadPoolExecutor(1) as pool:
            batcher = AdaptiveBatcher(model, pool, max_batch_size=64, max_wait=0.002, on_batch=stats.append)
            model.gate.clear()  # hold the first call so the rest queue up behind it
            first = asyncio.create_task(batcher.submit(rows(0)))
            await asyncio.sleep(0.05)
            others = [asyncio.create_task(batcher.submit(rows(i, i + 0.5))) for i in range(1, 40)]
            await asyncio.sleep(0.05)
            model.gate.set()
            results = await asyncio.gather(first, *others)
            await batcher.close()
            return results

    results = run(scenario())
    assert model.calls[0] == 1 and len(model.calls) < 40
    assert sum(model.calls) == 1 + 2 * 39 and max(model.calls) <= 64
    assert results[0][0].values.tolist() == [0]
    for i, (prediction, batch_size) in enumerate(results[1:], start=1):
        assert prediction.values.tolist() == [2 * i, 2 * i + 1]
        assert prediction.probabilities.tolist() == [[i, -i], [i + 0.5, -i - 0.5]]
        assert batch_size >= 2
    assert all(isinstance(s, BatchStats) for s in stats) and sum(s.requests for s in stats) == 40


def test_a_lone_request_runs_at_once_even_with_a_long_max_wait() -> None:
    model = Model()

    async def scenario() -> Prediction:
        with ThreadPoolExecutor(1) as pool:
            batcher = AdaptiveBatcher(model, pool, max_batch_size=64, max_wait=30.0)
            prediction, size = await asyncio.wait_for(batcher.submit(rows(3)), 5)
            await batcher.close()
            assert size == 1
            return prediction

    assert run(scenario()).values.tolist() == [6]


def test_batches_never_exceed_the_size_limit_and_big_requests_run_alone() -> None:
    model = Model()

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = AdaptiveBatcher(model, pool, max_batch_size=8, max_wait=0.001)
            model.gate.clear()
            tasks = [asyncio.create_task(batcher.submit(rows(*range(3)))) for _ in range(10)]
            big = asyncio.create_task(batcher.submit(rows(*range(20))))
            await asyncio.sleep(0.05)
            model.gate.set()
            await asyncio.gather(*tasks, big)
            await batcher.close()

    run(scenario())
    assert 20 in model.calls
    assert all(size <= 8 for size in model.calls if size != 20)
    assert sum(model.calls) == 50


def test_a_failing_row_fails_only_its_own_request() -> None:
    model = Model()

    async def scenario() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            batcher = AdaptiveBatcher(model, pool, max_batch_size=64, max_wait=0.001)
            model.gate.clear()
            tasks = [asyncio.create_task(batcher.submit(rows(v))) for v in (1, 2, -1, 4)]
            await asyncio.sleep(0.05)
            model.gate.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await batcher.close()
            return results

    results = run(scenario())
    assert [r[0].values.tolist() for i, r in enumerate(results) if i != 2] == [[2], [4], [8]]
    assert isinstance(results[2], ValueError) and "poison row" in str(results[2])


def test_close_finishes_queued_requests_then_refuses_new_ones() -> None:
    model = Model()

    async def scenario() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            batcher = AdaptiveBatcher(model, pool, max_batch_size=4, max_wait=0.0)
            tasks = [asyncio.create_task(batcher.submit(rows(i))) for i in range(10)]
            await asyncio.sleep(0)
            await batcher.close()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await batcher.submit(rows(1))
            except RuntimeError as exc:
                done.append(exc)
            return done

    results = run(scenario())
    assert [r[0].values.tolist()[0] for r in results[:10]] == [2 * i for i in range(10)]
    assert isinstance(results[10], RuntimeError)


def test_small_requests_to_an_idle_fast_model_run_on_the_event_loop_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batching, "INLINE_SECONDS", 10.0)  # "fast" by any clock: a loaded machine cannot flip it
    threads: list[str] = []

    def predict(frame: pd.DataFrame) -> Prediction:
        threads.append(threading.current_thread().name)
        if frame["x"].iloc[0] < 0:
            raise ValueError("negative")
        return Prediction(frame["x"].to_numpy() * 2)

    async def scenario() -> list[Any]:
        with ThreadPoolExecutor(1, thread_name_prefix="model") as pool:
            batcher = AdaptiveBatcher(predict, pool, max_batch_size=64, max_wait=0.0)
            first = await batcher.submit(rows(1))  # no timing known yet: the worker thread
            second = await batcher.submit(rows(2))  # idle and fast: on the loop's own thread
            big = await batcher.submit(rows(*range(100)))  # too many rows for the loop
            try:
                await batcher.submit(rows(-1))
            except ValueError as exc:
                failed: Any = exc
            await batcher.close()
            return [first, second, big, failed]

    first, second, big, failed = run(scenario())
    assert first[0].values.tolist() == [2]
    assert threads[0].startswith("model") and threads[1] == "MainThread" and threads[2].startswith("model")
    assert second[0].values.tolist() == [4] and len(big[0]) == 100
    assert isinstance(failed, ValueError) and threads[3] == "MainThread"
