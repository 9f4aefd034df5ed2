"""The AlertStore contract, for every implementation (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from corral.alerts.entities import DELIVERED, FAILED, FIRING, PENDING, RESOLVED, Alert, Delivery, Rule
from corral.alerts.ports import AlertStore
from corral.errors import NotFoundError
from corral.registry.ports import RegistryStore
from corral.storage.memory import MemoryAlertStore, MemoryRegistryStore
from corral.storage.sql.alert_store import SqlAlertStore
from corral.storage.sql.engine import create_engine
from corral.storage.sql.registry_store import SqlRegistryStore

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def store(registry_store: RegistryStore) -> AlertStore:
    if isinstance(registry_store, MemoryRegistryStore):
        return MemoryAlertStore()
    assert isinstance(registry_store, SqlRegistryStore)
    return SqlAlertStore(registry_store.engine)


@pytest.fixture
def other_stores(store: AlertStore) -> Iterator[Callable[[], AlertStore]]:
    """Makes another handle on the same data, as a second process would have (its own engine for SQL)."""
    made: list[SqlAlertStore] = []

    def make() -> AlertStore:
        if not isinstance(store, SqlAlertStore):
            return store
        other = SqlAlertStore(create_engine(store.engine.url.render_as_string(hide_password=False)))
        made.append(other)
        return other

    yield make
    for other in made:
        other.engine.dispose()


def rule(name: str = "feature-drift", deployment: str = "fraud-api", **fields: Any) -> Rule:
    return replace(Rule(deployment, name, "drifted_share", ">", 0.25), **fields)


def alert(alert_id: str, *, rule: str = "feature-drift", deployment: str = "fraud-api", at: datetime = T0) -> Alert:
    return Alert(
        id=alert_id,
        deployment=deployment,
        rule=rule,
        metric="drifted_share",
        severity="warning",
        state=FIRING,
        value=0.5,
        threshold=0.25,
        message=f"{rule} fired",
        opened_at=at,
        updated_at=at,
        window_start=at - timedelta(hours=1),
    )


def delivery(
    delivery_id: str, alert_id: str, *, channel: str = "slack", state: str = FIRING, **fields: Any
) -> Delivery:
    fields.setdefault("created_at", T0)
    return Delivery(delivery_id, alert_id, channel, state, {"text": f"{alert_id} is {state}", "n": [1, 2]}, **fields)


def test_rules_are_put_replaced_listed_and_deleted(store: AlertStore) -> None:
    first = rule(channels=("slack", "pager"))
    assert store.put_rule(first) == first
    store.put_rule(rule("accuracy-drop", metric="accuracy_drop", op=">=", threshold=0.05, severity="critical"))
    store.put_rule(rule("feature-drift", deployment="churn-api", enabled=False, window=60, min_samples=5))
    replaced = rule(threshold=0.5, cooldown_seconds=10.5, channels=("email",))
    store.put_rule(replaced)

    assert [(r.deployment, r.name) for r in store.list_rules()] == [
        ("churn-api", "feature-drift"),
        ("fraud-api", "accuracy-drop"),
        ("fraud-api", "feature-drift"),
    ]
    fraud = store.list_rules("fraud-api")
    assert [r.name for r in fraud] == ["accuracy-drop", "feature-drift"]
    assert fraud[1] == replaced and fraud[1].channels == ("email",)
    assert store.list_rules("churn-api")[0] == rule(deployment="churn-api", enabled=False, window=60, min_samples=5)

    store.delete_rule("fraud-api", "feature-drift")
    assert [r.name for r in store.list_rules("fraud-api")] == ["accuracy-drop"]
    with pytest.raises(NotFoundError, match="feature-drift"):
        store.delete_rule("fraud-api", "feature-drift")
    assert store.list_rules("nobody") == []


def test_open_alert_stores_it_once_per_rule(store: AlertStore) -> None:
    opened = alert("a-1")
    assert store.open_alert(opened, [delivery("d-1", "a-1"), delivery("d-2", "a-1", channel="email")]) == opened
    assert store.get_alert("a-1") == opened
    assert {d.id for d in store.list_deliveries(alert_id="a-1")} == {"d-1", "d-2"}

    # the same breach seen again (another process): nothing is written
    assert store.open_alert(alert("a-2", at=T0 + timedelta(minutes=1)), [delivery("d-3", "a-2")]) is None
    with pytest.raises(NotFoundError):
        store.get_alert("a-2")
    assert store.list_deliveries(alert_id="a-2") == []
    assert [a.id for a in store.list_alerts()] == ["a-1"]

    # other rules and other deployments fire on their own
    assert store.open_alert(alert("a-3", rule="accuracy-drop"), []) is not None
    assert store.open_alert(alert("a-4", deployment="churn-api"), []) is not None

    # once resolved, the rule may fire again
    assert store.resolve_alert("a-1", T0 + timedelta(minutes=5), 0.1, [])
    assert store.open_alert(alert("a-5", at=T0 + timedelta(minutes=10)), [delivery("d-5", "a-5")]) is not None
    assert [a.id for a in store.list_alerts(rule="feature-drift", deployment="fraud-api")] == ["a-5", "a-1"]
    assert store.open_alert(alert("a-6", at=T0 + timedelta(minutes=11)), []) is None


def test_concurrent_opens_of_one_rule_make_one_alert(store: AlertStore, other_stores: Callable[[], AlertStore]) -> None:
    openers = [other_stores() for _ in range(4)]
    barrier = threading.Barrier(len(openers))
    results: list[Alert | None] = []
    errors: list[BaseException] = []

    def open_one(i: int) -> None:
        try:
            barrier.wait()
            results.append(openers[i].open_alert(alert(f"a-{i}"), [delivery(f"d-{i}", f"a-{i}")]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(len(openers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    winners = [r for r in results if r is not None]
    assert len(results) == 4 and len(winners) == 1
    assert [a.id for a in store.list_alerts()] == [winners[0].id]
    assert [d.alert_id for d in store.list_deliveries()] == [winners[0].id]


def test_touch_records_the_latest_value_while_firing(store: AlertStore) -> None:
    store.open_alert(alert("a-1"), [])
    later = T0 + timedelta(minutes=3)
    store.touch_alert("a-1", 0.75, later)
    got = store.get_alert("a-1")
    assert got.value == 0.75 and got.updated_at == later and got.opened_at == T0 and got.state == FIRING

    store.resolve_alert("a-1", T0 + timedelta(minutes=5), 0.125, [])
    store.touch_alert("a-1", 0.9, T0 + timedelta(minutes=6))  # resolved: ignored
    got = store.get_alert("a-1")
    assert got.value == 0.125 and got.updated_at == T0 + timedelta(minutes=5)
    store.touch_alert("ghost", 1.0, later)  # unknown: ignored


def test_resolve_happens_once_and_queues_its_deliveries(store: AlertStore) -> None:
    store.open_alert(alert("a-1"), [delivery("d-1", "a-1")])
    at = T0 + timedelta(minutes=5)
    resolved = [delivery("r-1", "a-1", state=RESOLVED, created_at=at)]
    assert store.resolve_alert("a-1", at, None, resolved) is True
    again = [delivery("r-2", "a-1", state=RESOLVED, created_at=at)]
    assert store.resolve_alert("a-1", at + timedelta(minutes=1), 0.0, again) is False
    assert store.resolve_alert("ghost", at, 0.0, []) is False

    got = store.get_alert("a-1")
    assert got.state == RESOLVED and got.resolved_at == at and got.updated_at == at and got.value is None
    history = store.list_deliveries(alert_id="a-1")
    assert [(d.id, d.state, d.status) for d in history] == [("r-1", RESOLVED, PENDING), ("d-1", FIRING, PENDING)]
    assert history[0].payload == {"text": "a-1 is resolved", "n": [1, 2]}


def test_ack_records_who_and_when(store: AlertStore) -> None:
    store.open_alert(alert("a-1"), [])
    at = T0 + timedelta(minutes=2)
    acked = store.ack_alert("a-1", "alice", at)
    assert acked.acked_by == "alice" and acked.acked_at == at and acked.state == FIRING
    assert store.get_alert("a-1") == acked
    with pytest.raises(NotFoundError, match="ghost"):
        store.ack_alert("ghost", "alice", at)
    with pytest.raises(NotFoundError, match="ghost"):
        store.get_alert("ghost")


def test_list_alerts_filters_newest_first(store: AlertStore) -> None:
    store.open_alert(alert("a-1", at=T0), [])
    store.resolve_alert("a-1", T0 + timedelta(minutes=1), 0.0, [])
    store.open_alert(alert("a-2", at=T0 + timedelta(minutes=2)), [])
    store.open_alert(alert("a-3", rule="accuracy-drop", at=T0 + timedelta(minutes=3)), [])
    store.open_alert(alert("a-4", deployment="churn-api", at=T0 + timedelta(minutes=4)), [])

    assert [a.id for a in store.list_alerts()] == ["a-4", "a-3", "a-2", "a-1"]
    assert [a.id for a in store.list_alerts(limit=2)] == ["a-4", "a-3"]
    assert [a.id for a in store.list_alerts(deployment="fraud-api")] == ["a-3", "a-2", "a-1"]
    assert [a.id for a in store.list_alerts(state=FIRING, deployment="fraud-api")] == ["a-3", "a-2"]
    assert [a.id for a in store.list_alerts(state=RESOLVED)] == ["a-1"]
    assert [a.id for a in store.list_alerts(rule="feature-drift")] == ["a-4", "a-2", "a-1"]
    assert store.list_alerts(deployment="nobody") == []


def test_claims_respect_due_times_and_hold_for_the_lease(store: AlertStore) -> None:
    later = T0 + timedelta(minutes=10)
    store.open_alert(
        alert("a-1"),
        [
            delivery("d-3", "a-1", created_at=T0 + timedelta(seconds=2)),
            delivery("d-1", "a-1", channel="email"),
            delivery("d-2", "a-1", channel="pager", created_at=T0 + timedelta(seconds=1)),
            delivery("d-4", "a-1", channel="hook", next_attempt_at=later),
        ],
    )
    now = T0 + timedelta(minutes=1)
    assert [d.id for d in store.claim_deliveries(now, limit=2, lease_seconds=30)] == ["d-1", "d-2"]
    assert [d.id for d in store.claim_deliveries(now, limit=10, lease_seconds=30)] == ["d-3"]
    assert store.claim_deliveries(now + timedelta(seconds=29), limit=10, lease_seconds=30) == []
    # the leases ran out (the dispatcher died): the deliveries are claimable again
    again = store.claim_deliveries(now + timedelta(seconds=30), limit=10, lease_seconds=3600)
    assert [d.id for d in again] == ["d-1", "d-2", "d-3"]
    assert again[0].payload == {"text": "a-1 is firing", "n": [1, 2]} and again[0].status == PENDING
    assert [d.id for d in store.claim_deliveries(later, limit=10, lease_seconds=30)] == ["d-4"]
    assert store.claim_deliveries(later, limit=10, lease_seconds=30) == []


def test_concurrent_claimers_never_share_a_delivery(store: AlertStore, other_stores: Callable[[], AlertStore]) -> None:
    store.open_alert(
        alert("a-1"),
        [delivery(f"d-{i:02d}", "a-1", created_at=T0 + timedelta(seconds=i)) for i in range(30)],
    )
    claimers = [other_stores() for _ in range(2)]
    claimed: list[list[str]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)
    now = T0 + timedelta(minutes=1)

    def claim(c: int) -> None:
        try:
            barrier.wait()
            while batch := claimers[c].claim_deliveries(now, limit=3, lease_seconds=600):
                claimed[c].extend(d.id for d in batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(c,)) for c in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == [f"d-{i:02d}" for i in range(30)]


def test_finishing_records_the_attempt(store: AlertStore) -> None:
    store.open_alert(
        alert("a-1"),
        [
            delivery("d-1", "a-1"),
            delivery("d-2", "a-1", channel="email", created_at=T0 + timedelta(seconds=1)),
            delivery("d-3", "a-1", channel="pager", created_at=T0 + timedelta(seconds=2)),
        ],
    )
    now = T0 + timedelta(minutes=1)
    assert len(store.claim_deliveries(now, limit=10, lease_seconds=300)) == 3
    retry_at = now + timedelta(seconds=20)
    store.finish_delivery("d-1", status=DELIVERED, attempts=1, at=now)
    store.finish_delivery("d-2", status=PENDING, attempts=1, at=now, error="HTTP 503", next_attempt_at=retry_at)
    store.finish_delivery("d-3", status=FAILED, attempts=5, at=now, error="HTTP 404")

    # finishing released the hold: d-2 comes back at its next attempt, well before the lease ends
    assert store.claim_deliveries(retry_at - timedelta(seconds=1), limit=10, lease_seconds=300) == []
    [retried] = store.claim_deliveries(retry_at, limit=10, lease_seconds=300)
    assert retried.id == "d-2" and retried.attempts == 1 and retried.last_error == "HTTP 503"
    assert retried.next_attempt_at == retry_at

    history = {d.id: d for d in store.list_deliveries(alert_id="a-1")}
    assert history["d-1"].status == DELIVERED and history["d-1"].delivered_at == now
    assert history["d-1"].attempts == 1 and history["d-1"].last_error is None
    assert history["d-2"].status == PENDING and history["d-2"].delivered_at is None
    assert history["d-3"].status == FAILED and history["d-3"].attempts == 5 and history["d-3"].last_error == "HTTP 404"
    store.finish_delivery("d-2", status=PENDING, attempts=2, at=retry_at, next_attempt_at=retry_at + timedelta(hours=2))
    assert store.claim_deliveries(retry_at + timedelta(hours=1), limit=10, lease_seconds=300) == []

    store.finish_delivery("d-2", status=DELIVERED, attempts=2, at=retry_at)
    assert store.list_deliveries(alert_id="a-1")[1].delivered_at == retry_at


def test_delivery_history_is_newest_first(store: AlertStore) -> None:
    store.open_alert(alert("a-1"), [delivery("d-1", "a-1"), delivery("d-2", "a-1", channel="email")])
    store.open_alert(alert("a-2", rule="accuracy-drop"), [delivery("d-3", "a-2", created_at=T0 + timedelta(1))])
    store.resolve_alert(
        "a-1", T0 + timedelta(hours=1), 0.0, [delivery("r-1", "a-1", state=RESOLVED, created_at=T0 + timedelta(2))]
    )
    assert [d.id for d in store.list_deliveries()] == ["r-1", "d-3", "d-2", "d-1"]
    assert [d.id for d in store.list_deliveries(limit=2)] == ["r-1", "d-3"]
    assert [d.id for d in store.list_deliveries(alert_id="a-1")] == ["r-1", "d-2", "d-1"]
    assert store.list_deliveries(alert_id="ghost") == []


def test_times_come_back_timezone_aware(store: AlertStore) -> None:
    paris = timezone(timedelta(hours=2))
    opened = replace(alert("a-1"), opened_at=T0.astimezone(paris), updated_at=T0.astimezone(paris))
    store.open_alert(opened, [delivery("d-1", "a-1", created_at=T0.astimezone(paris))])
    store.ack_alert("a-1", "bob", (T0 + timedelta(minutes=1)).astimezone(paris))
    got = store.get_alert("a-1")
    times = [got.opened_at, got.updated_at, got.window_start, got.acked_at]
    assert times == [T0, T0, T0 - timedelta(hours=1), T0 + timedelta(minutes=1)]
    assert all(t is not None and t.utcoffset() is not None for t in times)
    [sent] = store.list_deliveries()
    assert sent.created_at == T0 and sent.created_at.utcoffset() is not None
    if isinstance(store, SqlAlertStore):
        assert all(t is not None and t.tzinfo is UTC for t in [*times, sent.created_at])
