"""Checkpoints: when they are made, that they are signed, kept in the store and written outside it."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from corral.audit.checkpoints import Checkpointer, external_checkpoints, read_external, write_external
from corral.audit.keys import Signer
from corral.audit.records import PredictionRecord
from corral.audit.sink import AuditSink
from corral.core.events import PredictionEvent
from corral.storage.memory import MemoryAuditStore


def record(i: int) -> PredictionRecord:
    return PredictionRecord(f"p{i}", datetime(2024, 5, 1, tzinfo=UTC), "d", "m", 1, {"x": float(i)}, i % 2)


def append(store: MemoryAuditStore, start: int, n: int) -> list[PredictionRecord]:
    return store.append([record(i) for i in range(start, start + n)])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_checkpoints_every_n_records_and_after_some_seconds(tmp_path: Path) -> None:
    store, signer, clock = MemoryAuditStore(), Signer.generate(), Clock()
    url = str(tmp_path / "cps")
    cp = Checkpointer(store, signer, url, every=5, seconds=60, clock=clock)
    cp.after_commit(append(store, 0, 3))
    assert store.checkpoints() == []
    cp.after_commit(append(store, 3, 2))  # 5 records since the start
    [first] = store.checkpoints()
    assert (first.seq, first.hash) == store.head() and first.key_id == signer.key_id
    assert signer.verifier().verify(first)
    cp.after_commit(append(store, 5, 1))
    assert len(store.checkpoints()) == 1
    clock.now = 61
    cp.after_commit(append(store, 6, 1))  # one record, but a minute passed
    assert [c.seq for c in store.checkpoints()] == [5, 7]
    cp.after_commit([])
    assert [c.seq for c in external_checkpoints(url)] == [5, 7]
    assert cp.flush() is None  # nothing committed since the last one
    cp.after_commit(append(store, 7, 1))
    assert cp.flush() is not None and [c.seq for c in store.checkpoints()] == [5, 7, 8]


def test_external_files_are_json_named_by_seq_and_read_back(tmp_path: Path) -> None:
    store, signer = MemoryAuditStore(), Signer.generate()
    url = str(tmp_path / "outside")
    append(store, 0, 4)
    made = Checkpointer(store, signer, url).checkpoint_now()
    assert made is not None
    path = tmp_path / "outside" / f"{4:016d}.json"
    assert json.loads(path.read_text()) == made.to_dict()
    assert external_checkpoints(url) == [made] == store.checkpoints()
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == [path.name]  # no temporary files
    (tmp_path / "outside" / "junk.json").write_text("{not json")
    (tmp_path / "outside" / f"{9:016d}.json").write_text(path.read_text())
    found, problems = read_external(url)
    assert found == [made]
    assert any("junk.json is not a checkpoint" in p for p in problems)
    assert any("was renamed" in p for p in problems)
    assert read_external(str(tmp_path / "nowhere")) == ([], [])
    assert Checkpointer(MemoryAuditStore(), signer, url).checkpoint_now() is None  # empty log


def test_memory_urls_work_too() -> None:
    url = f"memory://corral-cp-{uuid.uuid4().hex}/cps"
    signer = Signer.generate()
    store = MemoryAuditStore()
    append(store, 0, 2)
    made = Checkpointer(store, signer, url).checkpoint_now()
    assert made is not None
    assert external_checkpoints(url) == [made]
    write_external(url, made)  # writing the same one again is harmless
    assert external_checkpoints(url) == [made]


def test_a_failing_external_write_is_logged_and_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, signer = MemoryAuditStore(), Signer.generate()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the folder should be")
    url = str(blocker / "cps")
    cp = Checkpointer(store, signer, url, every=1)
    with caplog.at_level(logging.ERROR, logger="corral.audit"):
        cp.after_commit(append(store, 0, 2))  # does not raise
    assert "could not write checkpoint 2" in caplog.text
    assert [c.seq for c in store.checkpoints()] == [2] and cp.unwritten == 1 and cp.external_failures == 1
    blocker.unlink()
    cp.after_commit(append(store, 2, 1))
    assert [c.seq for c in external_checkpoints(url)] == [2, 3] and cp.unwritten == 0


def test_a_failing_store_never_fails_the_commit(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MemoryAuditStore):
        def add_checkpoint(self, checkpoint: object) -> None:
            raise OSError("disk full")

    store = Broken()
    cp = Checkpointer(store, Signer.generate(), None, every=1)
    with caplog.at_level(logging.ERROR, logger="corral.audit"):
        cp.after_commit(append(store, 0, 1))
    assert "checkpoint of record 1 failed: disk full" in caplog.text


def test_the_audit_sink_calls_the_hook_after_each_commit() -> None:
    import asyncio

    store, signer = MemoryAuditStore(), Signer.generate()
    cp = Checkpointer(store, signer, None, every=3)
    sink = AuditSink(store, lambda m, v: ("a" * 64, None), on_commit=cp.after_commit)

    def event(i: int) -> PredictionEvent:
        return PredictionEvent(f"e{i}", datetime.now(UTC), "d", "m", 1, {"x": 1.0}, 0)

    async def scenario() -> None:
        await sink.start()
        for i in range(4):
            waiting = sink.submit([event(i)])
            assert waiting is not None
            await waiting
        await sink.stop()

    asyncio.run(scenario())
    assert [c.seq for c in store.checkpoints()] == [3]


def test_a_failing_hook_does_not_fail_requests(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    def hook(records: list[PredictionRecord]) -> None:
        raise RuntimeError("boom")

    store = MemoryAuditStore()
    sink = AuditSink(store, lambda m, v: ("a" * 64, None), on_commit=hook)

    async def scenario() -> None:
        waiting = sink.submit([PredictionEvent("x", datetime.now(UTC), "d", "m", 1, {"x": 1.0}, 0)])
        assert waiting is not None
        await waiting
        await sink.stop()

    with caplog.at_level(logging.ERROR, logger="corral.audit"):
        asyncio.run(scenario())
    assert store.count() == 1 and "commit hook failed" in caplog.text


def test_a_checkpoint_stored_by_a_process_killed_before_writing_it_out_is_published_by_the_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, signer = MemoryAuditStore(), Signer.generate()
    url = str(tmp_path / "cps")
    killed = Checkpointer(store, signer, url, every=1)
    killed.after_commit(append(store, 0, 2))
    (tmp_path / "cps" / "0000000000000002.json").unlink()  # as if SIGKILL came between the store and the file
    append(store, 2, 1)
    forged = Checkpointer(store, Signer.generate(), None, every=1).checkpoint_now()  # another key's, in the store
    assert forged is not None

    with caplog.at_level(logging.WARNING, logger="corral.audit"):
        assert Checkpointer(store, signer, url).publish_missing() == 1  # at the next server's start
    assert [c.seq for c in external_checkpoints(url)] == [2]  # only what this key signed is vouched for
    assert "earlier process stored but did not write out" in caplog.text


def test_the_first_checkpoint_of_a_process_publishes_what_an_earlier_one_left_behind(tmp_path: Path) -> None:
    store, signer = MemoryAuditStore(), Signer.generate()
    url = str(tmp_path / "cps")
    Checkpointer(store, signer, None, every=1).after_commit(append(store, 0, 1))  # stored, never written out
    Checkpointer(store, signer, url, every=1).after_commit(append(store, 1, 1))
    assert [c.seq for c in external_checkpoints(url)] == [1, 2]
