"""The AuditStore's privacy and retention methods, for every implementation (memory, SQLite, PostgreSQL):
subject keys, anchors and prefix deletion, and per-deployment policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corral.audit.ports import AuditStore
from corral.audit.privacy import ERASED, AuditPolicy, Protector, StoreSubjectKeys, forget, reveal
from corral.audit.records import GENESIS, Explanation, PredictionRecord, verify_chain
from corral.audit.retention import prune, verify_history, verify_log
from corral.errors import ConflictError, PredictionNotFoundError
from corral.monitoring.feedback import Label
from corral.monitoring.ports import FeedbackStore
from corral.registry.ports import RegistryStore
from corral.storage.memory import MemoryAuditStore, MemoryFeedbackStore, MemoryRegistryStore
from corral.storage.sql.audit_store import SqlAuditStore
from corral.storage.sql.feedback_store import SqlFeedbackStore
from corral.storage.sql.registry_store import SqlRegistryStore

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def stores(registry_store: RegistryStore) -> tuple[AuditStore, FeedbackStore]:
    if isinstance(registry_store, MemoryRegistryStore):
        audit = MemoryAuditStore()
        return audit, MemoryFeedbackStore(audit)
    assert isinstance(registry_store, SqlRegistryStore)
    return SqlAuditStore(registry_store.engine), SqlFeedbackStore(registry_store.engine)


@pytest.fixture
def audit(stores: tuple[AuditStore, FeedbackStore]) -> AuditStore:
    return stores[0]


def record(i: int, **inputs: object) -> PredictionRecord:
    return PredictionRecord(
        f"p-{i:05d}", T0 + timedelta(seconds=i), "fraud-api", "fraud", 1, {"n": i, **inputs}, i % 2, (0.5, 0.5)
    )


def test_subject_keys_are_created_once_destroyed_for_good_and_replaced_on_return(audit: AuditStore) -> None:
    assert audit.subject_key("a" * 64) is None
    assert audit.destroy_subject_key("a" * 64) is False

    first = audit.subject_key("a" * 64, create=b"k1" * 30)
    assert first == b"k1" * 30
    assert audit.subject_key("a" * 64, create=b"k2" * 30) == first  # the first one stays
    assert audit.subject_key("a" * 64) == first
    assert audit.subject_key("b" * 64) is None

    assert audit.destroy_subject_key("a" * 64) is True
    assert audit.subject_key("a" * 64) is None
    assert audit.destroy_subject_key("a" * 64) is False
    assert audit.subject_key("a" * 64, create=b"k3" * 30) == b"k3" * 30  # the subject came back


def test_delete_through_removes_a_prefix_with_its_labels_and_explanations(
    stores: tuple[AuditStore, FeedbackStore],
) -> None:
    audit, feedback = stores
    stored = audit.append([record(i) for i in range(1, 6)])
    feedback.add_labels([Label("p-00001", 1, T0), Label("p-00004", 0, T0)])
    audit.put_explanation(Explanation("p-00002", "tree", ("proba_1",), (0.4,), {"n": (0.1,)}, T0))

    assert audit.delete_through(3, hash=stored[2].hash, export_url="memory://x/audit-1-3.jsonl", after_seq=0) == 3

    assert [r.seq for r in audit.scan()] == [4, 5]
    assert [r.seq for r in audit.search()] == [4, 5]
    assert audit.count() == 2 and audit.count(model="fraud", version=1) == 2
    assert audit.head() == (5, stored[-1].hash)
    with pytest.raises(PredictionNotFoundError):
        audit.get("p-00001")
    assert audit.get_explanation("p-00002") is None
    assert set(feedback.outcomes_for(["p-00001", "p-00004"])) == {"p-00004"}
    [anchor] = audit.anchors()
    assert (anchor.seq, anchor.hash, anchor.export_url) == (3, stored[2].hash, "memory://x/audit-1-3.jsonl")
    assert anchor.created_at.tzinfo is not None
    assert verify_chain(audit.scan(), after_seq=anchor.seq, after_hash=anchor.hash).ok
    assert audit.delete_through(3, hash=stored[2].hash, export_url="again", after_seq=0) == 0  # a retry: no-op


def test_delete_through_is_a_compare_and_set(audit: AuditStore) -> None:
    stored = audit.append([record(i) for i in range(1, 6)])
    with pytest.raises(ConflictError, match="ends at record 5"):
        audit.delete_through(6, hash="0" * 64, export_url="x", after_seq=0)
    with pytest.raises(ConflictError, match="not " + "f" * 64):
        audit.delete_through(2, hash="f" * 64, export_url="x", after_seq=0)
    with pytest.raises(ConflictError, match="another prune"):
        audit.delete_through(2, hash=stored[1].hash, export_url="x", after_seq=1)
    with pytest.raises(ValueError, match="at least 1"):
        audit.delete_through(0, hash=GENESIS, export_url="x", after_seq=0)
    assert audit.anchors() == [] and audit.count() == 5

    audit.delete_through(2, hash=stored[1].hash, export_url="x", after_seq=0)
    with pytest.raises(ConflictError, match="another prune"):
        audit.delete_through(4, hash=stored[3].hash, export_url="y", after_seq=0)  # a stale pruner
    with pytest.raises(ConflictError, match="already pruned"):
        audit.delete_through(2, hash=stored[3].hash, export_url="y", after_seq=0)
    assert audit.delete_through(4, hash=stored[3].hash, export_url="y", after_seq=2) == 2
    assert [a.seq for a in audit.anchors()] == [2, 4]


def test_the_log_continues_from_the_anchor_once_everything_was_pruned(audit: AuditStore) -> None:
    stored = audit.append([record(1), record(2)])
    audit.delete_through(2, hash=stored[1].hash, export_url="x", after_seq=0)
    assert audit.head() == (2, stored[1].hash) and list(audit.scan()) == []

    [more] = audit.append([record(3)])
    assert (more.seq, more.prev_hash) == (3, stored[1].hash)
    assert verify_log(audit).ok and verify_log(audit).checked == 1


def test_policies_are_stored_per_deployment(audit: AuditStore) -> None:
    policy = AuditPolicy(retention_days=365, fields={"name": "encrypt", "cid": "hash"}, subject_field="cid").to_dict()
    assert audit.get_policy("fraud-api") is None and audit.policies() == {}
    audit.set_policy("fraud-api", policy)
    audit.set_policy("other", {"retention_days": None})
    assert audit.get_policy("fraud-api") == policy
    assert audit.policies() == {"fraud-api": policy, "other": {"retention_days": None}}
    audit.set_policy("fraud-api", {"retention_days": 200})
    assert audit.get_policy("fraud-api") == {"retention_days": 200}
    audit.set_policy("fraud-api", None)
    assert audit.get_policy("fraud-api") is None and list(audit.policies()) == ["other"]


def test_protected_records_survive_erasure_and_pruning_with_a_verifying_chain(
    audit: AuditStore, tmp_path: Path
) -> None:
    secret = b"x" * 32
    policy = AuditPolicy(retention_days=30, fields={"name": "encrypt", "cid": "hash"}, subject_field="cid")
    audit.set_policy("fraud-api", policy.to_dict())
    protector = Protector.from_store(audit, secret=secret)
    audit.append(protector([record(i, name=f"N{i}", cid=f"C-{i % 2}") for i in range(1, 7)]))
    keys = StoreSubjectKeys(audit, secret)

    assert forget("C-1", keys, secret) is True
    assert verify_chain(audit.scan()).ok
    names = [reveal(r, keys).inputs["name"] for r in audit.scan()]
    assert names == [ERASED, "N2", ERASED, "N4", ERASED, "N6"]

    result = prune(audit, str(tmp_path), {"fraud-api": policy}, T0 + timedelta(days=31))
    assert result.pruned == 6
    assert verify_history(audit).ok and verify_history(audit).checked == 6
