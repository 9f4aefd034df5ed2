"""Retention: only a prefix past retention is pruned, exported first, and the chain verifies from the anchor."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from corral.audit.privacy import ERASED, AuditPolicy, StoreSubjectKeys, forget, protect, reveal
from corral.audit.records import GENESIS, Checkpoint, PredictionRecord, verify_chain
from corral.audit.retention import (
    load_policies,
    manifest_url,
    prune,
    read_export,
    verify_export,
    verify_history,
    verify_log,
)
from corral.errors import StoreError
from corral.storage.memory import MemoryAuditStore

NOW = datetime(2027, 1, 1, tzinfo=UTC)
SHORT = {"short": AuditPolicy(retention_days=30), "forever": AuditPolicy(retention_days=None)}


def record(i: int, age_days: float, deployment: str = "short", **inputs: Any) -> PredictionRecord:
    return PredictionRecord(
        f"p{i}", NOW - timedelta(days=age_days), deployment, "m", 1, {"x": float(i), **inputs}, i % 2, (0.5, 0.5)
    )


def filled(*records: PredictionRecord) -> MemoryAuditStore:
    store = MemoryAuditStore()
    store.append(list(records))
    return store


def test_only_the_prefix_past_every_records_own_retention_is_pruned(tmp_path: Path) -> None:
    store = filled(
        record(1, 60),
        record(2, 40),
        record(3, 200, deployment="default"),  # no policy: 183 days, expired
        record(4, 100, deployment="default"),  # not yet: holds back everything after it
        record(5, 90),
        record(6, 1),
    )
    head = store.head()

    result = prune(store, str(tmp_path), SHORT, NOW)

    assert result.pruned == 3 and [e.last_seq for e in result.exports] == [3]
    assert result.kept_from == 4 and "record 4 (default) is kept until" in (result.kept_because or "")
    assert result.anchor is not None and (result.anchor.seq, result.anchor.hash) == (3, store.anchors()[0].hash)
    assert [r.seq for r in store.scan()] == [4, 5, 6]
    assert store.head() == head
    check = verify_log(store)
    assert check.ok and check.checked == 3 and check.head_hash == head[1]
    assert not verify_chain(store.scan()).ok  # from genesis it cannot verify any more: the anchor is needed
    assert verify_history(store).ok and verify_history(store).checked == 6


def test_a_deployment_kept_for_ever_stops_pruning_and_nothing_expired_prunes_nothing(tmp_path: Path) -> None:
    store = filled(record(1, 900, deployment="forever"), record(2, 900))
    result = prune(store, str(tmp_path), SHORT, NOW)
    assert result.pruned == 0 and result.exports == () and result.anchor is None
    assert result.kept_from == 1 and "kept for ever" in (result.kept_because or "")
    assert list(tmp_path.iterdir()) == []

    fresh = filled(record(1, 1))
    assert prune(fresh, str(tmp_path), SHORT, NOW).pruned == 0


def test_the_export_and_manifest_hold_the_records_and_verify_on_their_own(tmp_path: Path) -> None:
    originals = filled(*(record(i, 100 - i) for i in range(1, 5)))
    stored = list(originals.scan())
    result = prune(originals, str(tmp_path / "exports"), SHORT, NOW)

    manifest = result.exports[0]
    assert manifest.url == f"{tmp_path / 'exports'}/audit-1-4.jsonl"
    meta = json.loads(Path(manifest_url(manifest.url)).read_text())
    assert meta["first_seq"] == 1 and meta["last_seq"] == 4 and meta["count"] == 4
    assert meta["after_hash"] == GENESIS and meta["last_hash"] == stored[-1].hash
    assert meta["deployments"] == {"short": 4}
    _, exported = read_export(manifest.url)
    assert [r.to_dict() for r in exported] == [r.to_dict() for r in stored]
    assert verify_export(manifest.url).ok
    assert originals.head() == (4, stored[-1].hash)  # everything pruned: the head is the anchor
    appended = originals.append([record(9, 0)])
    assert appended[0].seq == 5 and appended[0].prev_hash == stored[-1].hash
    assert verify_log(originals).ok and verify_history(originals).checked == 5


def test_the_export_is_written_before_anything_is_deleted(tmp_path: Path) -> None:
    seen: list[bool] = []

    class Watching(MemoryAuditStore):
        def delete_through(self, seq: int, *, hash: str, export_url: str, after_seq: int) -> int:
            seen.append(verify_export(export_url).ok)
            return super().delete_through(seq, hash=hash, export_url=export_url, after_seq=after_seq)

    store = Watching()
    store.append([record(i, 100) for i in range(1, 4)])
    prune(store, str(tmp_path), SHORT, NOW)
    assert seen == [True]


def test_an_export_failure_deletes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = filled(*(record(i, 100) for i in range(1, 4)))
    before = [r.to_dict() for r in store.scan()]

    with pytest.raises(StoreError, match="nothing was deleted"):
        prune(store, str(blocker / "exports"), SHORT, NOW)

    assert [r.to_dict() for r in store.scan()] == before and store.anchors() == []


def test_batches_make_one_export_per_anchor_and_the_history_verifies_through_them(tmp_path: Path) -> None:
    store = filled(*(record(i, 100) for i in range(1, 8)), record(8, 1))
    result = prune(store, "memory://retention-batches", SHORT, NOW, batch=3)

    assert [(e.first_seq, e.last_seq) for e in result.exports] == [(1, 3), (4, 6), (7, 7)]
    assert [a.seq for a in store.anchors()] == [3, 6, 7] and result.pruned == 7
    assert [e.after_hash for e in result.exports[1:]] == [a.hash for a in store.anchors()[:2]]
    history = verify_history(store)
    assert history.ok and history.checked == 8
    assert prune(store, "memory://retention-batches", SHORT, NOW).pruned == 0  # nothing left that expired


def test_history_verification_catches_an_altered_or_missing_export(tmp_path: Path) -> None:
    store = filled(*(record(i, 100) for i in range(1, 5)), record(5, 1))
    prune(store, str(tmp_path), SHORT, NOW, batch=2)
    first = Path(store.anchors()[0].export_url)

    first.write_bytes(first.read_bytes().replace(b'"x":1.0', b'"x":7.0'))
    broken = verify_history(store)
    assert not broken.ok and "SHA-256" in (broken.reason or "")

    first.unlink()
    assert "cannot read" in (verify_history(store).reason or "")
    assert verify_log(store).ok  # the live log still verifies from its anchor


def test_a_broken_chain_or_a_disagreeing_checkpoint_is_never_pruned(tmp_path: Path) -> None:
    store = filled(*(record(i, 100) for i in range(1, 4)))
    tampered = replace(store.get("p2"), output=5)
    store.replace_record(2, tampered)
    with pytest.raises(StoreError, match="chain breaks at record 2"):
        prune(store, str(tmp_path), SHORT, NOW)
    assert store.anchors() == [] and len(list(store.scan())) == 3

    signed = filled(*(record(i, 100) for i in range(1, 4)))
    signed.add_checkpoint(Checkpoint(2, "f" * 64, NOW, "k", "sig"))
    with pytest.raises(StoreError, match="signed checkpoint at record 2"):
        prune(signed, str(tmp_path), SHORT, NOW)
    assert signed.anchors() == []


def test_the_anchor_must_match_a_signed_checkpoint_at_its_record(tmp_path: Path) -> None:
    store = filled(*(record(i, 100) for i in range(1, 4)), record(4, 1))
    hashes = {r.seq: r.hash for r in store.scan()}
    store.add_checkpoint(Checkpoint(3, hashes[3], NOW, "k", "sig"))
    prune(store, str(tmp_path), SHORT, NOW)
    assert verify_log(store).ok

    forged = filled(*(record(i, 100) for i in range(1, 4)), record(4, 1))
    forged.add_checkpoint(Checkpoint(3, hashes[3], NOW, "k", "sig"))
    prune(forged, str(tmp_path / "b"), SHORT, NOW)
    forged._anchors[-1] = replace(forged._anchors[-1], hash="e" * 64)  # someone rewrote the anchor
    check = verify_log(forged)
    assert not check.ok and "signed checkpoint" in (check.reason or "")


def test_exports_keep_fields_protected_and_erasure_reaches_them(tmp_path: Path) -> None:
    secret = b"s" * 32
    policy = AuditPolicy(retention_days=30, fields={"name": "encrypt", "cid": "hash"}, subject_field="cid")
    store = MemoryAuditStore()
    store.set_policy("short", policy.to_dict())
    keys = StoreSubjectKeys(store, secret)
    store.append([protect(record(i, 100, name="Ann", cid="C-1"), policy, keys, secret=secret) for i in (1, 2)])

    result = prune(store, str(tmp_path), load_policies(store), NOW)
    text = Path(result.exports[0].url).read_text()
    assert "Ann" not in text and "C-1" not in text

    _, exported = read_export(result.exports[0].url)
    assert reveal(exported[0], keys).inputs["name"] == "Ann"
    forget("C-1", keys, secret)
    assert reveal(exported[0], keys).inputs["name"] == ERASED
    assert verify_export(result.exports[0].url).ok


def test_prune_wants_an_aware_time(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        prune(MemoryAuditStore(), str(tmp_path), {}, datetime(2027, 1, 1))
