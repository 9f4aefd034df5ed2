"""``verify``: every kind of tampering done directly in the database is found, by record and prediction id."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corral.audit.checkpoints import Checkpointer
from corral.audit.keys import Signer
from corral.audit.records import PredictionRecord
from corral.audit.verify import VerifyReport, verify
from corral.errors import SchemaError
from corral.storage import Database, open_database
from corral.storage.memory import MemoryAuditStore

N = 20
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def record(i: int) -> PredictionRecord:
    return PredictionRecord(
        f"p{i}", T0 + timedelta(seconds=i), "d", "m", 1, {"x": float(i), "customer": f"C-{i}"}, i % 2
    )


@dataclasses.dataclass
class Log:
    database: Database
    path: Path
    url: str
    signer: Signer

    def check(self, **kwargs: int) -> VerifyReport:
        return verify(self.database.audit, verifier=self.signer.verifier(), external_url=self.url, **kwargs)

    def sql(self, *statements: tuple[str, tuple[object, ...]]) -> None:
        conn = sqlite3.connect(self.path)
        try:
            with conn:
                for statement, params in statements:
                    conn.execute(statement, params)
        finally:
            conn.close()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    """20 records p1..p20 at seq 1..20 in SQLite, checkpointed at 5, 10, 15 and 20 (database and folder)."""
    database = open_database(f"sqlite:///{tmp_path}/c.db")
    signer = Signer.generate()
    url = str(tmp_path / "checkpoints")
    checkpointer = Checkpointer(database.audit, signer, url, every=5)
    for i in range(1, N + 1):
        checkpointer.after_commit(database.audit.append([record(i)]))
    yield Log(database, tmp_path / "c.db", url, signer)
    database.close()


def test_an_untouched_log_verifies(log: Log) -> None:
    report = log.check()
    assert report.ok and report.problems == ()
    assert (report.checked, report.last_seq, report.head_seq) == (N, N, N)
    assert (report.checkpoints, report.external_checkpoints, report.checkpoints_matched) == (4, 4, 8)
    assert report.to_dict()["ok"] is True and report.to_dict()["first_problem"] is None


def test_an_edited_output_is_found_as_altered(log: Log) -> None:
    log.sql(("UPDATE predictions SET output = ? WHERE seq = 7", ("0",)))
    report = log.check()
    assert not report.ok and report.first is not None
    assert (report.first.kind, report.first.seq, report.first.prediction_id) == ("altered", 7, "p7")
    assert "record 7 (p7) was altered" in report.first.message and report.checked == 6


def test_an_edited_input_is_found(log: Log) -> None:
    log.sql(("UPDATE predictions SET inputs = ? WHERE seq = 12", ('{"x": 12.0, "customer": "C-99"}',)))
    first = log.check().first
    assert first is not None and (first.kind, first.seq, first.prediction_id) == ("altered", 12, "p12")


def test_a_deleted_record_is_found_as_missing(log: Log) -> None:
    log.sql(("DELETE FROM predictions WHERE seq = 7", ()))
    first = log.check().first
    assert first is not None and (first.kind, first.seq) == ("missing", 7)
    assert "record 7 is missing (deleted): record 8 (p8) comes right after record 6 (p6)" in first.message


def test_swapped_records_are_found_as_reordered(log: Log) -> None:
    conn = sqlite3.connect(log.path)
    conn.row_factory = sqlite3.Row
    rows = {r["seq"]: dict(r) for r in conn.execute("SELECT * FROM predictions WHERE seq IN (7, 8)")}
    conn.close()
    columns = [c for c in rows[7] if c != "seq"]
    assign = ", ".join(f'"{c}" = ?' for c in columns)
    log.sql(
        ("UPDATE predictions SET prediction_id = 'tmp' WHERE seq = 7", ()),
        (f"UPDATE predictions SET {assign} WHERE seq = 8", tuple(rows[7][c] for c in columns)),
        (f"UPDATE predictions SET {assign} WHERE seq = 7", tuple(rows[8][c] for c in columns)),
    )
    first = log.check().first
    assert first is not None and (first.kind, first.seq, first.prediction_id) == ("reordered", 7, "p8")
    assert "the record that belongs after record 6 (p6) is p7, now at 8" in first.message


def _forge(log: Log, seq: int, after: PredictionRecord) -> PredictionRecord:
    """A record an attacker made up, chained correctly after ``after``."""
    forged = dataclasses.replace(record(999), prediction_id="forged").chained(seq, after.hash)
    log.sql(
        (
            "INSERT INTO predictions (seq, prediction_id, timestamp, deployment, model, version, role, "
            "artifact_sha256, data_sha256, inputs, output, probabilities, latency_ms, request_id, caller, "
            "anomaly_score, anomaly_flagged, out_of_range, prev_hash, hash) "
            "VALUES (?, ?, ?, 'd', 'm', 1, 'primary', '', NULL, ?, ?, NULL, 0.0, NULL, NULL, NULL, 0, '[]', ?, ?)",
            (
                seq,
                "forged",
                forged.timestamp.isoformat(),
                '{"x": 999.0, "customer": "C-999"}',
                "1",
                forged.prev_hash,
                forged.hash,
            ),
        )
    )
    return forged


def test_a_record_inserted_into_the_chain_is_found(log: Log) -> None:
    before = log.database.audit.get("p9")
    log.sql(
        ("UPDATE predictions SET seq = -(seq + 1) WHERE seq >= 10", ()),
        ("UPDATE predictions SET seq = -seq WHERE seq < 0", ()),
    )
    _forge(log, 10, before)
    first = log.check().first
    assert first is not None and (first.kind, first.seq, first.prediction_id) == ("inserted", 10, "forged")
    assert "record 11 (p10) still links to record 9" in first.message


def test_a_record_inserted_past_the_head_is_found(log: Log) -> None:
    _forge(log, N + 1, log.database.audit.get(f"p{N}"))
    first = log.check().first
    assert first is not None and (first.kind, first.seq, first.prediction_id) == ("inserted", N + 1, "forged")


def test_records_deleted_from_the_end_are_found_by_the_checkpoints(log: Log) -> None:
    last = log.database.audit.get("p18")
    log.sql(
        ("DELETE FROM predictions WHERE seq > 18", ()),
        ("UPDATE audit_head SET seq = 18, hash = ?", (last.hash,)),
    )
    first = log.check().first
    assert first is not None and first.kind == "missing" and first.seq == 19
    assert "checkpoint 20 signs record 20, but the log ends at record 18" in first.message


def _rewrite(log: Log, seq: int) -> None:
    """Change record ``seq``'s output and recompute every hash after it, like an attacker with database access."""
    records = list(log.database.audit.scan())
    prev = records[seq - 2].hash if seq > 1 else records[0].prev_hash
    updates = []
    for old in records[seq - 1 :]:
        changed = dataclasses.replace(old, output=7) if old.seq == seq else old
        placed = changed.chained(old.seq, prev)
        prev = placed.hash
        updates.append(
            (
                "UPDATE predictions SET output = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (str(placed.output), placed.prev_hash, placed.hash, placed.seq),
            )
        )
    log.sql(*updates, ("UPDATE audit_head SET hash = ?", (prev,)))
    assert verify(log.database.audit, verifier=log.signer.verifier()).first is not None  # the checkpoints catch it


def test_a_consistently_rewritten_chain_is_caught_by_the_signed_checkpoints(log: Log) -> None:
    _rewrite(log, 12)
    report = log.check()
    first = report.first
    assert first is not None and (first.kind, first.seq, first.prediction_id) == ("rewritten", 15, "p15")
    assert "the chain was rewritten after checkpoint 10" in first.message
    assert report.checked == N  # the chain itself is consistent


def test_deleting_the_database_checkpoints_too_is_caught_outside(log: Log) -> None:
    _rewrite(log, 3)
    log.sql(("DELETE FROM audit_checkpoints", ()))
    report = log.check()
    assert report.first is not None and report.first.kind == "rewritten" and report.first.seq == 5
    assert "the external checkpoint of record 5" in report.first.message
    assert "after the genesis" in report.first.message
    deleted = [p for p in report.problems if p.kind == "checkpoint deleted"]
    assert [p.seq for p in deleted] == [5, 10, 15, 20]


def test_a_checkpoint_with_a_bad_signature_is_reported(log: Log) -> None:
    cp = log.database.audit.checkpoints()[1]
    flipped = ("0" if cp.signature[0] != "0" else "1") + cp.signature[1:]
    log.sql(("UPDATE audit_checkpoints SET signature = ? WHERE seq = ?", (flipped, cp.seq)))
    report = log.check()
    assert not report.ok
    [bad] = report.problems
    assert (bad.kind, bad.seq) == ("bad signature", 10) and "database checkpoint of record 10" in bad.message
    stranger = verify(log.database.audit, verifier=Signer.generate().verifier())
    assert {p.kind for p in stranger.problems} == {"bad signature"}
    assert f"signed by key {log.signer.key_id}" in stranger.problems[0].message


def test_a_checkpoint_missing_outside_the_database_is_reported(log: Log) -> None:
    (Path(log.url) / f"{15:016d}.json").unlink()
    [problem] = log.check().problems
    assert (problem.kind, problem.seq) == ("unpublished", 15)


def test_a_range_starts_from_the_checkpoint_before_it(log: Log) -> None:
    log.sql(("UPDATE predictions SET output = ? WHERE seq = 3", ("0",)))
    report = log.check(from_seq=12, to_seq=14)
    assert report.ok and (report.started_after, report.checked, report.last_seq) == (10, 4, 14)
    assert not log.check(to_seq=4).ok
    with pytest.raises(SchemaError, match="must not be before"):
        log.check(from_seq=5, to_seq=4)
    with pytest.raises(SchemaError, match="at least 1"):
        log.check(from_seq=0)


def test_memory_store_tampering_is_found_too() -> None:
    store = MemoryAuditStore()
    signer = Signer.generate()
    stored = store.append([record(i) for i in range(1, 11)])
    assert verify(store, verifier=signer.verifier()).ok
    store.replace_record(4, dataclasses.replace(stored[3], output=5))
    first = verify(store, verifier=signer.verifier()).first
    assert first is not None and (first.kind, first.seq, first.prediction_id) == ("altered", 4, "p4")
    store.replace_record(4, stored[3])
    store._records.pop(5)  # record 6 deleted
    first = verify(store, verifier=signer.verifier()).first
    assert first is not None and (first.kind, first.seq) == ("missing", 6)


def test_verification_starts_at_the_retention_anchor_after_pruning() -> None:
    store, signer = MemoryAuditStore(), Signer.generate()
    checkpointer = Checkpointer(store, signer, None, every=5)
    for i in range(1, 11):
        checkpointer.after_commit(store.append([record(i)]))
    fifth = store.get("p5")
    assert store.delete_through(5, hash=fifth.hash, export_url="memory://exports", after_seq=0) == 5
    report = verify(store, verifier=signer.verifier())
    assert report.ok, report.problems
    assert (report.pruned_through, report.started_after, report.checked) == (5, 5, 5)
    seventh = store.get("p7")
    store.replace_record(7, dataclasses.replace(seventh, output=9))
    first = verify(store, verifier=signer.verifier(), from_seq=2).first
    assert first is not None and (first.kind, first.seq) == ("altered", 7)
