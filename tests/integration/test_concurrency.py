"""Several OS processes at once on one database: version numbers and migrations stay serial."""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import concurrency_workers
import pytest
import sqlalchemy as sa

from corral.registry.entities import VersionStatus
from corral.registry.service import Registry
from corral.storage import open_artifact_store, open_registry_store
from corral.storage.sql.engine import head_revision
from corral.storage.sql.registry_store import SqlRegistryStore
from corral.storage.sql.tables import metadata
from corral.testing.postgres import fresh_database

pytestmark = pytest.mark.slow

REGISTERING = 2
PER_WORKER = 5  # 10 registrations per backend
OPENING = 3
NAME = "contended"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, not yet migrated, that every worker process can reach."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        with fresh_database(request.getfixturevalue("postgres_url"), prefix="corral_concurrency_") as url:
            yield url


def _run_workers(count: int, target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]]) -> dict[int, Any]:
    """Start ``count`` spawned processes on ``target``; return each worker's result, failing on any error."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=target, args=(i, *args_for(i), barrier, results), daemon=True) for i in range(count)
    ]
    for process in processes:
        process.start()
    reports: dict[int, Any] = {}
    errors: list[str] = []
    try:
        for _ in processes:
            try:
                worker, result, error = results.get(timeout=240)
            except queue.Empty:
                pytest.fail(f"workers did not report in time; got {sorted(reports)}")
            if error is not None:
                errors.append(f"worker {worker}:\n{error}")
            reports[worker] = result
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
        results.join_thread()
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p in processes] == [0] * count
    return reports


def test_processes_registering_the_same_model_get_distinct_gap_free_versions(database_url: str, tmp_path: Path) -> None:
    artifacts_url = str(tmp_path / "artifacts")

    reports = _run_workers(
        REGISTERING, concurrency_workers.register_versions, lambda _: (database_url, artifacts_url, NAME, PER_WORKER)
    )

    total = REGISTERING * PER_WORKER
    handed_out = sorted(n for numbers in reports.values() for n in numbers)
    assert handed_out == list(range(1, total + 1))  # no duplicates, no gaps
    for numbers in reports.values():
        assert numbers == sorted(numbers)  # each worker saw its own versions in order

    store = open_registry_store(database_url)
    artifacts = open_artifact_store(artifacts_url)
    try:
        registry = Registry(store, artifacts, actor="checker")
        versions = registry.list_versions(NAME)
        assert [v.version for v in versions] == list(range(1, total + 1))
        assert registry.get_model(NAME).latest_version == total
        owner = {n: worker for worker, numbers in reports.items() for n in numbers}
        for version in versions:
            worker = owner[version.version]
            assert version.name == NAME
            assert version.status is VersionStatus.READY
            assert version.created_by == f"worker-{worker}"
            assert version.tags["worker"] == str(worker)
            assert version.flavor == "sklearn"
            assert version.signature.columns == ["a", "b", "c"]
            assert version.lineage.data is not None
            assert version.lineage.data.rows == 50
            assert version.lineage.params["C"] == 1.0 + int(version.tags["k"]) + 10 * worker
            assert version.created_at.tzinfo is not None
            profile = registry.get_profile(NAME, version.version)
            assert profile is not None
            assert profile.rows == 50
            assert artifacts.exists(version.artifact_sha256)
            assert len(artifacts.get(version.artifact_sha256)) == version.artifact_size
    finally:
        _dispose(store)


def test_processes_opening_a_fresh_database_at_once_all_succeed(database_url: str) -> None:
    reports = _run_workers(OPENING, concurrency_workers.open_store, lambda _: (database_url,))

    assert list(reports.values()) == [head_revision()] * OPENING
    store = open_registry_store(database_url, migrate=False)
    try:
        assert isinstance(store, SqlRegistryStore)
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
        assert {t.name for t in metadata.sorted_tables} <= set(sa.inspect(store.engine).get_table_names())
        assert store.list_models() == []
    finally:
        _dispose(store)


def _dispose(store: object) -> None:
    engine = getattr(store, "engine", None)
    if engine is not None:
        engine.dispose()
