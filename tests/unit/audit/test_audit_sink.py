"""The audit sink: group commit, failures reach the requests, async mode, and a clean stop."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from corral.audit.records import PredictionRecord, verify_chain
from corral.audit.sink import AuditSink
from corral.core.events import PredictionEvent
from corral.errors import StoreError
from corral.storage.memory import MemoryAuditStore


def event(i: int, **extra: object) -> PredictionEvent:
    return PredictionEvent(
        prediction_id=f"p{i}",
        timestamp=datetime.now(UTC),
        deployment="d",
        model="m",
        version=2,
        inputs={"x": float(i)},
        output=i % 2,
        probabilities=(0.5, 0.5),
        **extra,  # type: ignore[arg-type]
    )


class SlowStore(MemoryAuditStore):
    """Each append takes a while (like an fsync), so requests pile up behind it."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def append(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        self.gate.wait(5)
        self.batches.append(len(records))
        if self.fail:
            raise StoreError("disk I/O error")
        return super().append(records)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """A plain test that runs the coroutine ``test`` on a fresh event loop, bounded in time."""

    @functools.wraps(test)
    def wrapper() -> None:
        asyncio.run(asyncio.wait_for(test(), 30))

    return wrapper


def describe(model: str, version: int) -> tuple[str, str | None]:
    return ("a" * 64, "d" * 64)


@run
async def test_concurrent_requests_share_commits_and_all_are_durable_when_answered() -> None:
    store = SlowStore()
    store.gate.clear()  # hold the first commit so the rest queue behind it
    sink = AuditSink(store, describe)

    async def request(i: int) -> None:
        outcome = sink.submit([event(i)])
        assert outcome is not None
        await outcome
        assert store.get(f"p{i}").artifact_sha256 == "a" * 64  # answered implies recorded

    tasks = [asyncio.create_task(request(i)) for i in range(50)]
    await asyncio.sleep(0.05)
    store.gate.set()
    await asyncio.gather(*tasks)
    await sink.stop()

    assert sum(store.batches) == 50
    assert len(store.batches) < 10  # group commit: one commit serves many requests
    assert sink.commits == len(store.batches) and sink.committed == 50
    assert verify_chain(store.scan()).ok


@run
async def test_a_failed_commit_fails_every_request_in_it() -> None:
    store = SlowStore(fail=True)
    sink = AuditSink(store, describe)
    outcomes = [sink.submit([event(i)]) for i in range(3)]
    for outcome in outcomes:
        assert outcome is not None
        with pytest.raises(StoreError, match="disk I/O"):
            await outcome
    assert store.head()[0] == 0
    store.fail = False
    second = sink.submit([event(9)])  # the writer goes on; the next commit may succeed
    assert second is not None
    await second
    assert store.get("p9")
    await sink.stop()


@run
async def test_async_mode_returns_at_once_and_stop_commits_the_rest() -> None:
    store = SlowStore()
    store.gate.clear()
    sink = AuditSink(store, describe, mode="async", max_pending=1000)
    assert sink.submit([event(i) for i in range(5)]) is None
    store.gate.set()
    await sink.stop()
    assert store.head()[0] == 5


@run
async def test_async_mode_waits_past_its_bound_instead_of_dropping() -> None:
    store = SlowStore()
    sink = AuditSink(store, describe, mode="async", max_pending=3)
    assert sink.submit([event(1), event(2)]) is None
    waited = sink.submit([event(3), event(4)])
    assert waited is not None
    await waited
    await sink.stop()
    assert store.head()[0] == 4


@run
async def test_records_carry_the_version_hashes_and_event_fields() -> None:
    store = MemoryAuditStore()
    sink = AuditSink(store, describe)
    outcome = sink.submit([event(1, request_id="r1", caller="alice", anomaly_score=7.5, anomaly_flagged=True)])
    assert outcome is not None
    await outcome
    await sink.stop()
    got = store.get("p1")
    assert (got.request_id, got.caller, got.anomaly_score, got.anomaly_flagged) == ("r1", "alice", 7.5, True)
    assert (got.artifact_sha256, got.data_sha256, got.seq) == ("a" * 64, "d" * 64, 1)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="'sync' or 'async'"):
        AuditSink(MemoryAuditStore(), describe, mode="eventually")  # type: ignore[arg-type]


@run
async def test_stopping_waits_for_the_commit_in_flight_and_answers_its_requests() -> None:
    store = SlowStore()
    store.gate.clear()  # the first commit is in flight (blocked in its thread) when stop() is called
    sink = AuditSink(store, describe)
    first = sink.submit([event(1)])
    await asyncio.sleep(0.05)
    later = sink.submit([event(2)])
    assert first is not None and later is not None
    stopping = asyncio.create_task(sink.stop())
    await asyncio.sleep(0.05)
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(first, later, stopping), 5)  # nobody is left waiting
    assert store.head()[0] == 2 and sink.committed == 2


@run
async def test_an_io_error_during_a_commit_stops_the_log_instead_of_retrying() -> None:
    class DiskFails(SlowStore):
        def append(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
            if not self.batches:
                self.batches.append(len(records))
                raise StoreError("audit log write failed: disk I/O error", fatal=True)
            return super().append(records)

    store = DiskFails()
    sink = AuditSink(store, describe)
    first = sink.submit([event(1)])
    assert first is not None
    with pytest.raises(StoreError, match="disk I/O error"):
        await first
    with pytest.raises(StoreError, match="stopped after an I/O error"):
        sink.submit([event(2)])  # the disk may have lost what it acknowledged: nothing more is answered
    assert store.head()[0] == 0
    await sink.stop()


class Outage(MemoryAuditStore):
    """Refuses every append while ``down`` (the database is unreachable); ``lose_answer`` makes the next append
    commit and then fail all the same (the connection died before the commit's answer came back)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.lose_answer = False
        self.tries = 0

    def append(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        self.tries += 1
        if self.down:
            raise StoreError("audit log write failed: connection refused")
        stored = super().append(records)
        if self.lose_answer:
            self.lose_answer = False
            raise StoreError("audit log write failed: server closed the connection unexpectedly")
        return stored


@run
async def test_async_mode_keeps_answered_rows_while_the_store_is_down_and_refuses_past_its_bound() -> None:
    store = Outage()
    store.down = True
    sink = AuditSink(store, describe, mode="async", max_pending=6, retry_max=0.05)
    for i in range(3):
        assert sink.submit([event(2 * i), event(2 * i + 1)]) is None  # answered: 6 rows held
    await asyncio.sleep(0.2)
    assert store.tries >= 2 and sink.lost == 0  # tried again, not dropped
    over = sink.submit([event(100)])  # past max_pending: waits like sync mode, so it is refused while down
    assert over is not None
    with pytest.raises(StoreError, match="connection refused"):
        await asyncio.wait_for(over, 2)
    store.down = False
    await asyncio.sleep(0.3)
    assert {r.prediction_id for r in store.scan()} == {f"p{i}" for i in range(6)}  # the answered ones, once each
    await sink.stop()
    assert verify_chain(store.scan()).ok


@run
async def test_async_mode_writes_rows_once_when_a_failed_commit_had_in_fact_committed() -> None:
    store = Outage()
    store.lose_answer = True
    sink = AuditSink(store, describe, mode="async", retry_max=0.05)
    assert sink.submit([event(1), event(2)]) is None
    await asyncio.sleep(0.1)
    assert sink.submit([event(3)]) is None
    await sink.stop()
    assert [r.prediction_id for r in store.scan()] == ["p1", "p2", "p3"]  # p1 and p2 not written twice
    assert verify_chain(store.scan()).ok and sink.lost == 0


@run
async def test_async_rows_the_store_never_took_are_counted_as_lost_when_the_server_stops() -> None:
    store = Outage()
    store.down = True
    told: list[int] = []
    sink = AuditSink(store, describe, mode="async", retry_max=0.05, on_lost=told.append)
    assert sink.submit([event(1), event(2)]) is None
    await asyncio.sleep(0.1)
    await asyncio.wait_for(sink.stop(), 5)  # stops: it does not wait for the store forever
    assert sink.lost == 2 and store.head()[0] == 0
    assert told == [2]  # the server's corral_audit_unrecorded_rows_total counter hears it
