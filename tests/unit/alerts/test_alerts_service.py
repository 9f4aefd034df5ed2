"""Alert evaluation and delivery: fire once, suppress duplicates, resolve, cool down, retry until delivered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_channels import Receiver, receiver

from corral.alerts.channels import LogChannel, WebhookChannel
from corral.alerts.entities import DELIVERED, FAILED, FIRING, PENDING, RESOLVED, Rule, default_rules
from corral.alerts.service import Alerts
from corral.core.readings import Reading
from corral.errors import AlertError, NotFoundError
from corral.storage.memory import MemoryAlertStore

__all__ = ["receiver"]  # the fixture, shared with test_channels

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def alerts_with(clock: Clock, **channels: object) -> Alerts:
    return Alerts(MemoryAlertStore(), channels or {"log": LogChannel()}, clock=clock, backoff_base=10)  # type: ignore[arg-type]


def drift(share: float, samples: int = 500) -> dict[str, Reading]:
    return {"drifted_share": Reading(share, samples)}


def test_every_deployment_starts_with_the_default_rules(clock: Clock) -> None:
    alerts = alerts_with(clock)
    assert [r.name for r in alerts.rules("fraud")] == [r.name for r in default_rules("fraud")]
    alerts.set_rule(Rule("fraud", "age", "drift_score:age", ">", 2.0, severity="critical"))
    names = {r.name for r in alerts.rules("fraud")}
    assert names == {r.name for r in default_rules("fraud")} | {"age"}  # the defaults were kept
    alerts.delete_rule("fraud", "prediction-drift")
    assert "prediction-drift" not in {r.name for r in alerts.rules("fraud")}
    with pytest.raises(NotFoundError, match="no alert rule named 'nope'"):
        alerts.delete_rule("fraud", "nope")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"metric": "accurasy"}, "unknown metric 'accurasy'; known metrics: accuracy"),
        ({"metric": "drift_score"}, "needs a feature"),
        ({"metric": "rows:age"}, "takes no feature"),
        ({"op": "=="}, "operator '==' is not one of"),
        ({"threshold": float("nan")}, "finite number"),
        ({"severity": "panic"}, "severity 'panic'"),
        ({"window": 0}, "window must be positive"),
        ({"name": ""}, "needs a name"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"deployment": "d", "name": "r", "metric": "rows", "op": ">", "threshold": 1.0}
    with pytest.raises(AlertError, match=message):
        Rule.from_dict({**values, **fields})


def test_rules_with_unknown_fields_or_channels_are_refused(clock: Clock) -> None:
    with pytest.raises(AlertError, match="unknown rule fields: colour"):
        Rule.from_dict({"deployment": "d", "name": "r", "metric": "rows", "op": ">", "threshold": 1, "colour": 1})
    with pytest.raises(AlertError, match=r"unknown channels \['pager'\]"):
        alerts_with(clock).set_rule(Rule("d", "r", "rows", ">", 1.0, channels=("pager",)))


def test_a_breach_fires_once_then_resolves_then_cools_down(clock: Clock) -> None:
    alerts = alerts_with(clock)
    assert alerts.evaluate("fraud", drift(0.1)) == []
    assert alerts.evaluate("fraud", drift(0.9, samples=10)) == []  # too few samples to judge
    [opened] = alerts.evaluate("fraud", drift(0.5))
    assert opened.action == "opened" and opened.rule == "dataset-drift"
    clock.now += 60
    assert alerts.evaluate("fraud", drift(0.6)) == []  # still firing: no duplicate
    [firing] = alerts.list_alerts(deployment="fraud", state=FIRING)
    assert firing.id == opened.alert_id and firing.value == 0.6
    clock.now += 60
    [resolved] = alerts.evaluate("fraud", drift(0.0))
    assert resolved.action == "resolved" and resolved.alert_id == opened.alert_id
    assert alerts.store.get_alert(opened.alert_id).state == RESOLVED
    clock.now += 60
    [suppressed] = alerts.evaluate("fraud", drift(0.7))  # inside the hour of cooldown
    assert suppressed.action == "suppressed" and not alerts.list_alerts(state=FIRING)
    clock.now += 3600
    [again] = alerts.evaluate("fraud", drift(0.7))
    assert again.action == "opened" and again.alert_id != opened.alert_id
    states = sorted(d.state for d in alerts.store.list_deliveries())
    assert states == [FIRING, FIRING, RESOLVED]


def test_a_disabled_rule_or_a_missing_value_does_nothing(clock: Clock) -> None:
    alerts = alerts_with(clock)
    alerts.set_rule(Rule("d", "dataset-drift", "drifted_share", ">=", 0.5, enabled=False))
    assert alerts.evaluate("d", drift(0.9)) == []
    assert alerts.evaluate("d", {"drifted_share": Reading(None, 1000)}) == []


def test_acknowledging_keeps_the_alert_firing(clock: Clock) -> None:
    alerts = alerts_with(clock)
    [opened] = alerts.evaluate("fraud", drift(0.5))
    acked = alerts.ack(opened.alert_id or "", "alice")
    assert acked.acked_by == "alice" and acked.state == FIRING
    with pytest.raises(NotFoundError):
        alerts.ack("no-such-alert", "alice")


def test_a_failing_receiver_gets_the_alert_once_it_recovers(clock: Clock, receiver: Receiver) -> None:
    receiver.plan = ["500", "503"]
    alerts = alerts_with(clock, ops=WebhookChannel("ops", receiver.url, timeout=2))
    [opened] = alerts.evaluate("fraud", drift(0.5))

    [first] = alerts.dispatch()
    assert first.status == PENDING and first.attempts == 1 and "500" in (first.last_error or "")
    assert alerts.dispatch() == []  # not due yet: backing off
    clock.now += 12  # 10 s ± 10% of jitter
    [second] = alerts.dispatch()
    assert second.status == PENDING and second.attempts == 2
    clock.now += 23  # 20 s ± 10%
    [third] = alerts.dispatch()
    assert third.status == DELIVERED and third.attempts == 3
    clock.now += 3600
    assert alerts.dispatch() == []  # delivered: never sent again

    assert len(receiver.received) == 3
    bodies = [r.json() for r in receiver.received]
    assert all(b["alert_id"] == opened.alert_id and b["state"] == FIRING for b in bodies)
    assert {r.headers["idempotency-key"] for r in receiver.received} == {f"{opened.alert_id}:firing"}


def test_a_rejecting_receiver_fails_the_delivery_for_good(clock: Clock, receiver: Receiver) -> None:
    receiver.plan = ["400"]
    alerts = alerts_with(clock, ops=WebhookChannel("ops", receiver.url, timeout=2))
    alerts.evaluate("fraud", drift(0.5))
    [done] = alerts.dispatch()
    assert done.status == FAILED and done.attempts == 1
    clock.now += 3600
    assert alerts.dispatch() == []


def test_a_hanging_receiver_is_bounded_and_retried(clock: Clock, receiver: Receiver) -> None:
    receiver.plan = ["hang"]
    alerts = alerts_with(clock, ops=WebhookChannel("ops", receiver.url, timeout=0.5))
    alerts.evaluate("fraud", drift(0.5))
    [done] = alerts.dispatch()
    assert done.status == PENDING and "timed out" in (done.last_error or "")
    receiver.release.set()


def test_giving_up_after_max_attempts(clock: Clock, receiver: Receiver) -> None:
    receiver.plan = ["500"] * 5
    alerts = alerts_with(clock, ops=WebhookChannel("ops", receiver.url, timeout=2))
    alerts.max_attempts = 2
    alerts.evaluate("fraud", drift(0.5))
    assert alerts.dispatch()[0].status == PENDING
    clock.now += 3600
    assert alerts.dispatch()[0].status == FAILED


def test_a_channel_removed_from_the_configuration_fails_its_deliveries(clock: Clock) -> None:
    alerts = alerts_with(clock)
    alerts.evaluate("fraud", drift(0.5))
    alerts.channels = {}
    [done] = alerts.dispatch()
    assert done.status == FAILED and "no longer configured" in (done.last_error or "")


def test_rules_over_windows_monitoring_does_not_keep_are_refused(clock: Clock) -> None:
    alerts = Alerts(MemoryAlertStore(), {"log": LogChannel()}, clock=clock, windows=(3600, 86400))
    with pytest.raises(AlertError, match=r"window 60 s is not one monitoring keeps \(\[3600, 86400\] s\)"):
        alerts.set_rule(Rule("d", "fast", "rows", ">", 1.0, window=60))
    assert alerts.set_rule(Rule("d", "daily", "rows", ">", 1.0, window=86400)).window == 86400


def test_the_last_rule_cannot_be_deleted_only_disabled(clock: Clock) -> None:
    alerts = alerts_with(clock)
    names = [r.name for r in alerts.rules("d")]
    for name in names[:-1]:
        alerts.delete_rule("d", name)
    with pytest.raises(AlertError, match=r"last alert rule; .* disable it instead"):
        alerts.delete_rule("d", names[-1])
    assert [r.name for r in alerts.rules("d")] == names[-1:]


def test_drift_rules_wait_for_enough_rows_to_judge(clock: Clock) -> None:
    alerts = alerts_with(clock)
    noisy = {"drifted_features": Reading(2, 100), "drifted_share": Reading(0.6, 100)}
    assert alerts.evaluate("d", noisy) == []  # PSI's noise floor at 100 rows is next to its threshold
    enough = {"drifted_features": Reading(2, 500), "drifted_share": Reading(0.6, 500)}
    assert {c.rule for c in alerts.evaluate("d", enough)} == {"feature-drift", "dataset-drift"}
