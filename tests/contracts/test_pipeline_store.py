"""The PipelineStore contract, for every implementation (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from corral.errors import ConflictError, NotFoundError
from corral.pipelines.entities import FAILED, QUEUED, REJECTED, RUNNING, SUCCEEDED, Pipeline, Run
from corral.pipelines.ports import PipelineStore
from corral.registry.ports import RegistryStore
from corral.storage.memory import MemoryPipelineStore, MemoryRegistryStore
from corral.storage.sql.engine import create_engine
from corral.storage.sql.pipeline_store import SqlPipelineStore
from corral.storage.sql.registry_store import SqlRegistryStore

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def store(registry_store: RegistryStore) -> PipelineStore:
    if isinstance(registry_store, MemoryRegistryStore):
        return MemoryPipelineStore()
    assert isinstance(registry_store, SqlRegistryStore)
    return SqlPipelineStore(registry_store.engine)


@pytest.fixture
def other_stores(store: PipelineStore) -> Iterator[Callable[[], PipelineStore]]:
    """Makes another handle on the same data, as a second process would have (its own engine for SQL)."""
    made: list[SqlPipelineStore] = []

    def make() -> PipelineStore:
        if not isinstance(store, SqlPipelineStore):
            return store
        other = SqlPipelineStore(create_engine(store.engine.url.render_as_string(hide_password=False)))
        made.append(other)
        return other

    yield make
    for other in made:
        other.engine.dispose()


def pipeline(name: str = "fraud-retrain", **fields: Any) -> Pipeline:
    base = Pipeline(
        name=name,
        train="models.fraud:train",
        data=({"kind": "file", "path": "data/*.parquet"}, {"kind": "production", "window_seconds": 86400}),
        target="is_fraud",
        deployment="fraud-api",
        schedule="0 3 * * *",
        on_alerts=("drift", "performance"),
        params={"depth": 6, "features": ["a", "b"]},
        metric="roc_auc",
        margin=0.01,
        created_by="alice",
        created_at=T0,
    )
    return replace(base, **fields)


def run(run_id: str, pipeline: str = "fraud-retrain", *, trigger: str = "manual", at: datetime = T0) -> Run:
    return Run(id=run_id, pipeline=pipeline, trigger=trigger, state=QUEUED, created_at=at, reason=f"{trigger} run")


def test_pipelines_are_put_replaced_listed_and_deleted(store: PipelineStore) -> None:
    first = pipeline()
    assert store.put_pipeline(first) == first
    assert store.get_pipeline("fraud-retrain") == first
    store.put_pipeline(pipeline("churn-retrain", schedule=None, every_seconds=3600.0, on_alerts=()))
    assert [p.name for p in store.list_pipelines()] == ["churn-retrain", "fraud-retrain"]

    changed = replace(first, params={"depth": 8}, enabled=False, margin=0.0)
    store.put_pipeline(changed)
    assert store.get_pipeline("fraud-retrain") == changed
    assert len(store.list_pipelines()) == 2

    store.delete_pipeline("fraud-retrain")
    assert [p.name for p in store.list_pipelines()] == ["churn-retrain"]
    with pytest.raises(NotFoundError):
        store.get_pipeline("fraud-retrain")
    with pytest.raises(NotFoundError):
        store.delete_pipeline("fraud-retrain")


def test_a_pipeline_with_an_active_run_cannot_be_deleted(store: PipelineStore) -> None:
    store.put_pipeline(pipeline())
    store.enqueue(run("r-1"))
    with pytest.raises(ConflictError):
        store.delete_pipeline("fraud-retrain")
    claimed = store.claim("w-1", T0, 60)
    assert claimed is not None
    with pytest.raises(ConflictError):
        store.delete_pipeline("fraud-retrain")
    assert store.get_pipeline("fraud-retrain") == pipeline()

    assert store.finish("r-1", "w-1", state=SUCCEEDED, at=T0, reason="trained", result={}, log="")
    store.delete_pipeline("fraud-retrain")
    with pytest.raises(NotFoundError):
        store.get_pipeline("fraud-retrain")


def test_enqueue_keeps_one_active_run_per_pipeline(store: PipelineStore) -> None:
    store.put_pipeline(pipeline())
    store.put_pipeline(pipeline("churn-retrain"))
    first = run("r-1")
    assert store.enqueue(first) == first
    assert store.get_run("r-1") == first
    assert store.enqueue(run("r-2", trigger="alert", at=T0 + timedelta(seconds=1))) is None
    with pytest.raises(NotFoundError):
        store.get_run("r-2")
    assert store.enqueue(run("r-3", "churn-retrain")) is not None  # another pipeline is unaffected

    store.claim("w-1", T0, 60)
    assert store.enqueue(run("r-4", at=T0 + timedelta(seconds=2))) is None  # running counts as active too
    assert [r.id for r in store.list_runs(limit=10)] == ["r-3", "r-1"]
    with pytest.raises(NotFoundError):
        store.enqueue(run("r-5", "no-such-pipeline"))


def test_concurrent_enqueues_store_one_run(store: PipelineStore, other_stores: Callable[[], PipelineStore]) -> None:
    store.put_pipeline(pipeline())
    enqueuers = [other_stores() for _ in range(4)]
    results: list[Run | None] = [None] * 4
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def enqueue(i: int) -> None:
        try:
            barrier.wait()
            results[i] = enqueuers[i].enqueue(run(f"r-{i}", at=T0 + timedelta(seconds=i)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = [r for r in results if r is not None]
    assert len(stored) == 1
    assert [r.id for r in store.list_runs()] == [stored[0].id]


def test_claim_takes_the_oldest_queued_run_and_leases_it(store: PipelineStore) -> None:
    for name in ("a", "b", "c"):
        store.put_pipeline(pipeline(name))
    store.enqueue(run("r-b", "b", at=T0 + timedelta(seconds=2)))
    store.enqueue(run("r-a", "a", at=T0 + timedelta(seconds=1)))
    store.enqueue(run("r-c", "c", at=T0 + timedelta(seconds=1)))  # same time as r-a: by id
    now = T0 + timedelta(minutes=1)

    first = store.claim("w-1", now, 30)
    assert first is not None
    assert (first.id, first.state, first.worker, first.attempt) == ("r-a", RUNNING, "w-1", 1)
    assert first.started_at == now and first.lease_until == now + timedelta(seconds=30)
    assert first.created_at == T0 + timedelta(seconds=1) and first.reason == "manual run"
    assert store.get_run("r-a") == first
    second, third = store.claim("w-2", now, 30), store.claim("w-1", now, 30)
    assert second is not None and third is not None
    assert (second.id, second.worker, third.id) == ("r-c", "w-2", "r-b")
    assert store.claim("w-1", now, 30) is None


def test_claim_returns_utc_times_whatever_zone_it_was_given(store: PipelineStore) -> None:
    store.put_pipeline(pipeline())
    store.enqueue(run("r-1"))
    local = timezone(timedelta(hours=2))
    claimed = store.claim("w-1", T0.astimezone(local), 60)
    assert claimed is not None
    stored = store.get_run("r-1")
    assert stored.started_at == T0 and stored.started_at.utcoffset() == timedelta(0)
    assert stored.lease_until is not None and stored.lease_until.utcoffset() == timedelta(0)
    assert stored.created_at.tzinfo is not None and stored.created_at.utcoffset() == timedelta(0)


def test_concurrent_workers_never_claim_the_same_run(
    store: PipelineStore, other_stores: Callable[[], PipelineStore]
) -> None:
    for i in range(10):
        store.put_pipeline(pipeline(f"p-{i}"))
        store.enqueue(run(f"r-{i}", f"p-{i}", at=T0 + timedelta(seconds=i)))
    workers = [other_stores() for _ in range(4)]
    claimed: list[list[str]] = [[] for _ in workers]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(workers))
    now = T0 + timedelta(minutes=1)

    def work(w: int) -> None:
        try:
            barrier.wait()
            while (got := workers[w].claim(f"w-{w}", now, 600)) is not None:
                assert got.worker == f"w-{w}" and got.attempt == 1
                claimed[w].append(got.id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    every = [run_id for ids in claimed for run_id in ids]
    assert sorted(every) == [f"r-{i}" for i in range(10)]  # each run exactly once
    for w, ids in enumerate(claimed):
        assert all(store.get_run(run_id).worker == f"w-{w}" for run_id in ids)


def test_only_the_holding_worker_renews_and_finishes(store: PipelineStore) -> None:
    store.put_pipeline(pipeline())
    store.enqueue(run("r-1"))
    assert not store.renew("r-1", "w-1", T0 + timedelta(minutes=5))  # queued: nobody holds it
    store.claim("w-1", T0, 60)
    later = T0 + timedelta(minutes=5)

    assert not store.renew("r-1", "w-2", later, log="intruder")
    assert not store.renew("no-such-run", "w-1", later)
    assert store.renew("r-1", "w-1", later, log="epoch 1\n")
    assert store.get_run("r-1").lease_until == later and store.get_run("r-1").log == "epoch 1\n"
    assert store.renew("r-1", "w-1", later + timedelta(minutes=1))  # the log is kept when not given
    assert store.get_run("r-1").log == "epoch 1\n"

    assert not store.finish("r-1", "w-2", state=SUCCEEDED, at=later, reason="", result={}, log="")
    assert store.get_run("r-1").state == RUNNING
    result = {"candidate": {"model": "fraud", "version": 3}, "metric": 0.91, "champion": None}
    assert store.finish("r-1", "w-1", state=REJECTED, at=later, reason="below the champion", result=result, log="done")
    done = store.get_run("r-1")
    assert (done.state, done.reason, done.log, done.worker, done.attempt) == (
        REJECTED,
        "below the champion",
        "done",
        "w-1",
        1,
    )
    assert done.finished_at == later and dict(done.result) == result
    # once finished, nobody holds it any more
    assert not store.finish("r-1", "w-1", state=SUCCEEDED, at=later, reason="", result={}, log="")
    assert not store.renew("r-1", "w-1", later)


def test_runs_whose_lease_lapsed_expire_as_failed(store: PipelineStore) -> None:
    for name in ("a", "b", "c"):
        store.put_pipeline(pipeline(name))
        store.enqueue(run(f"r-{name}", name))
    store.claim("w-1", T0, 60)  # r-a, lease until T0 + 60 s
    store.claim("w-2", T0, 600)  # r-b, lease until T0 + 10 min
    # r-c stays queued: queued runs never expire

    assert store.expire(T0 + timedelta(seconds=60)) == []  # the lease ends at that instant, not before it
    [expired] = store.expire(T0 + timedelta(seconds=61))
    lapsed = T0 + timedelta(seconds=60)
    assert (expired.id, expired.state, expired.worker) == ("r-a", FAILED, "w-1")
    assert expired.reason == f"the worker stopped reporting (lease lapsed at {lapsed.isoformat()})"
    assert expired.finished_at == T0 + timedelta(seconds=61)
    assert store.get_run("r-a") == expired
    assert store.expire(T0 + timedelta(seconds=61)) == []
    assert store.get_run("r-b").state == RUNNING and store.get_run("r-c").state == QUEUED

    # the dead worker cannot report any more, and the pipeline can run again
    assert not store.renew("r-a", "w-1", T0 + timedelta(minutes=5))
    assert not store.finish("r-a", "w-1", state=SUCCEEDED, at=T0, reason="", result={}, log="")
    assert store.enqueue(run("r-a2", "a", at=T0 + timedelta(minutes=2))) is not None

    # renewing keeps a run alive past its first lease
    assert store.renew("r-b", "w-2", T0 + timedelta(hours=1))
    assert [r.id for r in store.expire(T0 + timedelta(minutes=30))] == []


def test_a_finished_pipeline_can_be_enqueued_again(store: PipelineStore) -> None:
    store.put_pipeline(pipeline())
    store.enqueue(run("r-1"))
    store.claim("w-1", T0, 60)
    assert store.finish("r-1", "w-1", state=FAILED, at=T0 + timedelta(seconds=5), reason="boom", result={}, log="tb")
    second = run("r-2", trigger="schedule", at=T0 + timedelta(minutes=1))
    assert store.enqueue(second) == second
    claimed = store.claim("w-2", T0 + timedelta(minutes=1), 60)
    assert claimed is not None and (claimed.id, claimed.worker, claimed.attempt) == ("r-2", "w-2", 1)
    assert store.enqueue(run("r-3", at=T0 + timedelta(minutes=2))) is None


def test_runs_are_listed_newest_first(store: PipelineStore) -> None:
    store.put_pipeline(pipeline("a"))
    store.put_pipeline(pipeline("b"))
    for i in range(6):
        name = "ab"[i % 2]
        store.enqueue(run(f"r-{i}", name, trigger=("manual", "schedule", "alert")[i % 3], at=T0 + timedelta(hours=i)))
        store.claim("w", T0 + timedelta(hours=i), 60)
        store.finish(
            f"r-{i}", "w", state=SUCCEEDED, at=T0 + timedelta(hours=i, minutes=1), reason="", result={}, log=""
        )

    assert [r.id for r in store.list_runs()] == ["r-5", "r-4", "r-3", "r-2", "r-1", "r-0"]
    assert [r.id for r in store.list_runs(limit=2)] == ["r-5", "r-4"]
    assert [r.id for r in store.list_runs(pipeline="a")] == ["r-4", "r-2", "r-0"]
    assert [r.id for r in store.list_runs(pipeline="b", limit=1)] == ["r-5"]
    assert store.list_runs(pipeline="nobody") == []


def test_last_run_by_trigger(store: PipelineStore) -> None:
    store.put_pipeline(pipeline("a"))
    store.put_pipeline(pipeline("b"))
    assert store.last_run("a") is None
    triggers = ["schedule", "manual", "schedule", "alert"]
    for i, trigger in enumerate(triggers):
        store.enqueue(run(f"r-{i}", "a", trigger=trigger, at=T0 + timedelta(hours=i)))
        store.claim("w", T0 + timedelta(hours=i), 60)
        store.finish(f"r-{i}", "w", state=SUCCEEDED, at=T0 + timedelta(hours=i), reason="", result={}, log="")
    store.enqueue(run("r-b", "b", trigger="schedule", at=T0 + timedelta(days=1)))

    last = store.last_run("a")
    assert last is not None and last.id == "r-3"
    by_schedule = store.last_run("a", trigger="schedule")
    assert by_schedule is not None and by_schedule.id == "r-2" and by_schedule.state == SUCCEEDED
    manual = store.last_run("a", trigger="manual")
    assert manual is not None and manual.id == "r-1"
    assert store.last_run("b", trigger="alert") is None
    assert store.last_run("nobody") is None


def test_unknown_runs_are_not_found(store: PipelineStore) -> None:
    with pytest.raises(NotFoundError):
        store.get_run("no-such-run")
    assert store.claim("w-1", T0, 60) is None
    assert store.expire(T0) == []
