"""The AuditStore and FeedbackStore contracts, for every implementation (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from corral.audit.ports import AuditStore
from corral.audit.records import GENESIS, Checkpoint, Explanation, PredictionRecord, verify_chain
from corral.errors import AlreadyExistsError, PredictionNotFoundError
from corral.monitoring.feedback import Label
from corral.monitoring.ports import FeedbackStore
from corral.registry.ports import RegistryStore
from corral.storage.memory import MemoryAuditStore, MemoryFeedbackStore, MemoryRegistryStore
from corral.storage.sql.audit_store import SqlAuditStore
from corral.storage.sql.engine import create_engine
from corral.storage.sql.feedback_store import SqlFeedbackStore
from corral.storage.sql.registry_store import SqlRegistryStore
from corral.storage.sql.tables import predictions

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


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


@pytest.fixture
def feedback(stores: tuple[AuditStore, FeedbackStore]) -> FeedbackStore:
    return stores[1]


def record(i: int, **fields: object) -> PredictionRecord:
    base = PredictionRecord(
        prediction_id=f"p-{i:05d}",
        timestamp=T0 + timedelta(seconds=i),
        deployment="fraud-api",
        model="fraud",
        version=1,
        inputs={"amount": 10.5 * i, "country": "FR", "missing": float("nan"), "n": i},
        output=i % 2,
        probabilities=(0.25, 0.75) if i % 2 else (0.875, 0.125),
        artifact_sha256="a" * 64,
        data_sha256="d" * 64,
        latency_ms=1.25,
        request_id=f"r-{i}",
        anomaly_score=0.5,
        out_of_range=("amount",) if i % 3 == 0 else (),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_append_chains_records_and_get_returns_them_verbatim(audit: AuditStore) -> None:
    assert audit.head() == (0, GENESIS)
    stored = audit.append([record(1), record(2)])
    more = audit.append([record(3)])

    assert [r.seq for r in stored + more] == [1, 2, 3]
    assert stored[0].prev_hash == GENESIS and stored[1].prev_hash == stored[0].hash
    assert more[0].prev_hash == stored[1].hash
    assert audit.head() == (3, more[0].hash)
    got = audit.get("p-00002")
    assert got.to_dict() == stored[1].to_dict()
    assert got.timestamp == T0 + timedelta(seconds=2) and got.timestamp.tzinfo is not None
    assert got.inputs["missing"] is None and got.probabilities == (0.875, 0.125)
    check = verify_chain(audit.scan())
    assert check.ok and check.checked == 3 and check.head_hash == more[0].hash


def test_unknown_id_is_not_found(audit: AuditStore) -> None:
    with pytest.raises(PredictionNotFoundError, match="nope"):
        audit.get("nope")
    assert audit.get_many(["nope"]) == {}


def test_a_duplicate_id_writes_nothing(audit: AuditStore) -> None:
    audit.append([record(1)])
    with pytest.raises(AlreadyExistsError):
        audit.append([record(2), record(1)])
    assert audit.head()[0] == 1
    assert audit.get_many(["p-00002"]) == {}


def test_search_filters_and_pages(audit: AuditStore) -> None:
    audit.append([record(i) for i in range(1, 11)] + [record(11, deployment="other", model="m", version=2)])
    assert [r.seq for r in audit.search(deployment="fraud-api", limit=3)] == [1, 2, 3]
    assert [r.seq for r in audit.search(deployment="fraud-api", after_seq=8)] == [9, 10]
    window = audit.search(since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=5))
    assert [r.prediction_id for r in window] == ["p-00003", "p-00004"]
    assert [r.seq for r in audit.search(model="m", version=2)] == [11]
    assert len(list(audit.scan(chunk=4))) == 11


def test_concurrent_appends_form_one_gap_free_chain(audit: AuditStore, registry_store: RegistryStore) -> None:
    make: Callable[[], AuditStore]
    if isinstance(registry_store, SqlRegistryStore):
        url = registry_store.engine.url.render_as_string(hide_password=False)
        make = lambda: SqlAuditStore(create_engine(url))  # noqa: E731  (one engine per writer, like processes)
    else:
        make = lambda: audit  # noqa: E731
    writers = [make() for _ in range(4)]
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for b in range(5):
                writers[w].append([record(w * 1000 + b * 10 + i) for i in range(3)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    check = verify_chain(audit.scan())
    assert check.ok and check.checked == 60 and audit.head()[0] == 60
    for writer in writers:
        if isinstance(writer, SqlAuditStore) and writer is not audit:
            writer.engine.dispose()


def test_tampering_in_the_database_is_found(audit: AuditStore) -> None:
    audit.append([record(i) for i in range(1, 6)])
    if isinstance(audit, SqlAuditStore):
        with audit.engine.begin() as conn:
            conn.execute(sa.update(predictions).where(predictions.c.seq == 3).values(output=0))
    else:
        assert isinstance(audit, MemoryAuditStore)
        audit.replace_record(3, replace(audit.get("p-00003"), output=0))
    check = verify_chain(audit.scan())
    assert not check.ok and check.first_bad_seq == 3 and check.checked == 2
    assert "altered" in (check.reason or "")


def test_labels_join_outcomes_and_relabels_are_refused(audit: AuditStore, feedback: FeedbackStore) -> None:
    audit.append([record(i) for i in range(1, 5)])
    now = datetime.now(UTC)
    feedback.add_labels([Label("p-00001", 1, now, "alice"), Label("p-00002", 0, now)])
    feedback.add_labels([Label("p-00001", 1, now)])  # the same label again: nothing changes

    got = feedback.outcomes_for(["p-00001", "p-00003", "missing"])
    assert set(got) == {"p-00001", "p-00003"}
    assert got["p-00001"].labelled and got["p-00001"].label == 1 and got["p-00001"].output == 1
    assert not got["p-00003"].labelled and got["p-00003"].label is None
    assert got["p-00003"].probabilities == (0.25, 0.75)

    with pytest.raises(AlreadyExistsError, match="p-00002"):
        feedback.add_labels([Label("p-00004", 1, now), Label("p-00002", 1, now)])
    assert not feedback.outcomes_for(["p-00004"])["p-00004"].labelled  # all or nothing
    with pytest.raises(PredictionNotFoundError, match="ghost"):
        feedback.add_labels([Label("p-00004", 1, now), Label("ghost", 1, now)])
    assert not feedback.outcomes_for(["p-00004"])["p-00004"].labelled


def test_outcomes_of_a_time_range(audit: AuditStore, feedback: FeedbackStore) -> None:
    audit.append([record(i) for i in range(1, 7)] + [record(7, role="shadow")])
    feedback.add_labels([Label("p-00002", 1, datetime.now(UTC))])
    since, until = T0 + timedelta(seconds=2), T0 + timedelta(seconds=5)
    rows = feedback.outcomes("fraud-api", since=since, until=until)
    assert [o.prediction_id for o in rows] == ["p-00002", "p-00003", "p-00004"]
    assert [o.prediction_id for o in feedback.outcomes("fraud-api", since=since, until=until, labelled_only=True)] == [
        "p-00002"
    ]
    everything = T0 + timedelta(days=1)
    assert [o.prediction_id for o in feedback.outcomes("fraud-api", since=T0, until=everything, role="shadow")] == [
        "p-00007"
    ]
    assert feedback.outcomes("fraud-api", since=T0, until=everything, version=9) == []
    assert all(math.isclose(sum(o.probabilities or ()), 1.0) for o in rows)


def test_scores_are_the_probabilities_of_the_outcomes_of_a_time_range(
    audit: AuditStore, feedback: FeedbackStore
) -> None:
    audit.append([record(i) for i in range(1, 7)] + [record(7, role="shadow"), record(8, probabilities=None)])
    feedback.add_labels([Label("p-00002", 1, datetime.now(UTC))])
    everything = T0 + timedelta(days=1)
    for since, until, scope in [
        (T0 + timedelta(seconds=2), T0 + timedelta(seconds=5), {}),
        (T0, everything, {}),
        (T0, everything, {"role": None}),
        (T0, everything, {"role": "shadow"}),
        (T0, everything, {"model": "fraud", "version": 9}),
    ]:
        outcomes = feedback.outcomes("fraud-api", since=since, until=until, **scope)  # type: ignore[arg-type]
        scores = list(feedback.scores("fraud-api", since=since, until=until, **scope))  # type: ignore[arg-type]
        assert scores == [o.probabilities for o in outcomes]
    assert list(feedback.scores("fraud-api", since=T0, until=everything))[-1] is None  # record 8 has none


def test_search_by_output_and_input_field_values(audit: AuditStore) -> None:
    audit.append(
        [record(i, inputs={"customer": f"C-{i % 3}", "amount": float(i), "vip": i % 2 == 0}) for i in range(1, 10)]
    )
    assert [r.seq for r in audit.search(fields={"customer": "C-1"})] == [1, 4, 7]
    assert [r.seq for r in audit.search(fields={"customer": "C-1", "vip": True})] == [4]
    assert [r.seq for r in audit.search(fields={"amount": 5})] == [5]  # 5 matches the stored 5.0
    assert [r.seq for r in audit.search(output=1, limit=3)] == [1, 3, 5]
    assert audit.search(fields={"customer": "nobody"}) == []
    assert audit.search(fields={"no_such_field": "x"}) == []
    page = audit.search(fields={"customer": "C-0"}, limit=2)
    assert [r.seq for r in page] == [3, 6]
    assert [r.seq for r in audit.search(fields={"customer": "C-0"}, after_seq=page[-1].seq)] == [9]


def test_counts_per_model_and_version(audit: AuditStore) -> None:
    audit.append([record(1), record(2, version=2), record(3, model="other")])
    assert audit.count() == 3 and audit.count(model="fraud") == 2
    assert audit.count(model="fraud", version=2) == 1 and audit.count(model="fraud", version=7) == 0


def test_checkpoints_are_kept_once_in_order(audit: AuditStore) -> None:
    first = Checkpoint(5, "a" * 64, T0, "key1", "ab" * 64)
    audit.add_checkpoint(Checkpoint(9, "b" * 64, T0, "key1", "cd" * 64))
    audit.add_checkpoint(first)
    audit.add_checkpoint(replace(first, hash="f" * 64))  # the same seq again: the first one stays
    assert audit.checkpoints() == [first, Checkpoint(9, "b" * 64, T0, "key1", "cd" * 64)]
    assert [c.seq for c in audit.checkpoints(after_seq=5)] == [9]


def test_explanations_are_stored_for_recorded_predictions(audit: AuditStore) -> None:
    audit.append([record(1)])
    explanation = Explanation("p-00001", "tree", ("proba_1",), (0.4,), {"amount": (0.3,), "n": (-0.1,)}, T0)
    assert audit.get_explanation("p-00001") is None
    audit.put_explanation(explanation)
    assert audit.get_explanation("p-00001") == explanation
    again = replace(explanation, method="kernel")
    audit.put_explanation(again)
    assert audit.get_explanation("p-00001") == again
    with pytest.raises(PredictionNotFoundError):
        audit.put_explanation(replace(explanation, prediction_id="ghost"))


def test_shadow_records_share_the_answers_prediction_ids(audit: AuditStore, feedback: FeedbackStore) -> None:
    answer = record(1)
    shadows = [record(1, model="fraud-gbm", version=7, role="shadow", output=0), record(1, version=2, role="shadow")]
    audit.append([answer, *shadows])
    with pytest.raises(AlreadyExistsError):
        audit.append([record(1, version=2, role="shadow")])  # the same version twice for one id
    assert audit.get("p-00001").role == "primary" and audit.get("p-00001").model == "fraud"
    assert [(r.model, r.version, r.role) for r in audit.records_for("p-00001")] == [
        ("fraud", 1, "primary"),
        ("fraud-gbm", 7, "shadow"),
        ("fraud", 2, "shadow"),
    ]
    feedback.add_labels([Label("p-00001", 1, datetime.now(UTC))])
    assert feedback.outcomes_for(["p-00001"])["p-00001"].role == "primary"
    everything = feedback.outcomes("fraud-api", since=T0, until=T0 + timedelta(days=1), role=None)
    assert [(o.model, o.role, o.label) for o in everything] == [
        ("fraud", "primary", 1),
        ("fraud-gbm", "shadow", 1),
        ("fraud", "shadow", 1),
    ]
    assert all(o.latency_ms == 1.25 for o in everything)
    assert verify_chain(audit.scan()).ok
