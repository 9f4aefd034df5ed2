"""Alerting: judge a deployment's metrics against its rules, and work off the delivery outbox.

:meth:`Alerts.evaluate` takes the latest values of a deployment's metrics
(each with the number of samples behind it) and, per enabled rule:

- a breach with no firing alert opens one (unless the rule resolved less than
  ``cooldown_seconds`` ago), queueing a *firing* delivery per channel;
- a breach with a firing alert only records the new value: duplicates are
  suppressed, however many processes evaluate;
- no breach with a firing alert resolves it, queueing a *resolved* delivery;
- too few samples, or no value, leaves everything as it is.

:meth:`Alerts.dispatch` claims due deliveries (a lease, so two processes never
send the same one at once), sends each with its channel, and records the
outcome: delivered, retried later with :func:`~corral.alerts.channels.backoff`,
or failed for good (a non-retryable error, or ``max_attempts`` used up).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.alerts.channels import Channel, Notification, backoff
from corral.alerts.entities import DELIVERED, FAILED, FIRING, PENDING, Alert, Delivery, Rule, default_rules
from corral.alerts.ports import AlertStore
from corral.core.ids import new_id
from corral.core.readings import Reading
from corral.errors import AlertError, DeliveryError, NotFoundError

log = logging.getLogger("corral.alerts")


@dataclass(frozen=True, slots=True)
class Change:
    """What one evaluation did for one rule: ``opened``, ``resolved`` or ``suppressed`` (cooldown)."""

    rule: str
    action: str
    alert_id: str | None
    value: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "action": self.action, "alert_id": self.alert_id, "value": self.value}


class Alerts:
    """Rules, alerts and notifications of every deployment.

    Args:
        store: rules, alerts and the delivery outbox.
        channels: configured channels by name; rules with no channels notify all of them.
        max_attempts: deliveries that fail this often are marked failed.
        lease_seconds: how long a dispatcher holds a claimed delivery.
        link: ``deployment -> URL`` put in notifications (e.g. the dashboard page), or ``None``.
        windows: the window lengths monitoring keeps; a rule over another length is refused (it would never
            be judged). ``None`` accepts any.
    """

    def __init__(
        self,
        store: AlertStore,
        channels: Mapping[str, Channel],
        *,
        max_attempts: int = 8,
        backoff_base: float = 2.0,
        backoff_cap: float = 600.0,
        lease_seconds: float = 60.0,
        link: Callable[[str], str | None] | None = None,
        windows: Sequence[int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.lease_seconds = lease_seconds
        self.link = link
        self.windows = tuple(windows) if windows is not None else None
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- rules ---------------------------------------------------------------------------

    def rules(self, deployment: str) -> list[Rule]:
        """The deployment's rules: its own once any is set, else :func:`default_rules`."""
        return self.store.list_rules(deployment) or default_rules(deployment)

    def set_rule(self, rule: Rule) -> Rule:
        """Create or replace a rule; the first rule set replaces the defaults (which are copied in first)."""
        if self.windows is not None and rule.window not in self.windows:
            raise AlertError(
                f"rule {rule.name!r}: window {rule.window} s is not one monitoring keeps ({list(self.windows)} s); "
                "it would never be judged"
            )
        unknown = [c for c in rule.channels if c not in self.channels]
        if unknown:
            raise AlertError(
                f"rule {rule.name!r} names unknown channels {unknown}; configured: {sorted(self.channels)}"
            )
        if not self.store.list_rules(rule.deployment):
            for default in default_rules(rule.deployment, rule.window):
                if default.name != rule.name:
                    self.store.put_rule(default)
        return self.store.put_rule(rule)

    def delete_rule(self, deployment: str, name: str) -> None:
        """Remove a rule. The last one cannot go (the defaults would come back): disable it instead.

        Raises:
            NotFoundError: no such rule.
            AlertError: it is the deployment's last rule.
        """
        rules = self.rules(deployment)
        if name not in {r.name for r in rules}:
            raise NotFoundError(f"deployment {deployment!r} has no alert rule named {name!r}")
        if len(rules) == 1:
            raise AlertError(
                f"{name!r} is {deployment!r}'s last alert rule; removing it would bring the defaults back, "
                "so disable it instead"
            )
        if not self.store.list_rules(deployment):
            for default in default_rules(deployment):
                self.store.put_rule(default)
        self.store.delete_rule(deployment, name)

    # -- evaluation ----------------------------------------------------------------------

    def evaluate(self, deployment: str, readings: Mapping[str, Reading], *, window: int | None = None) -> list[Change]:
        """Judge every enabled rule (of ``window`` length, if given) on ``readings``; returns what changed."""
        changes = []
        firing = {a.rule: a for a in self.store.list_alerts(deployment=deployment, state=FIRING, limit=10_000)}
        for rule in self.rules(deployment):
            if not rule.enabled or (window is not None and rule.window != window):
                continue
            reading = readings.get(rule.metric)
            if reading is None or reading.value is None or reading.samples < rule.min_samples:
                continue
            change = self._judge(rule, reading, firing.get(rule.name))
            if change is not None:
                changes.append(change)
        return changes

    def _judge(self, rule: Rule, reading: Reading, alert: Alert | None) -> Change | None:
        value = float(reading.value) if reading.value is not None else None
        now = self._now()
        if value is not None and rule.breached(value):
            if alert is not None:
                self.store.touch_alert(alert.id, value, now)
                return None
            if self._cooling(rule, now):
                return Change(rule.name, "suppressed", None, value)
            opened = Alert(
                id=new_id(),
                deployment=rule.deployment,
                rule=rule.name,
                metric=rule.metric,
                severity=rule.severity,
                state=FIRING,
                value=value,
                threshold=rule.threshold,
                message=f"{rule.deployment}: {rule.metric} is {value:.4g}, {rule.op} {rule.threshold:g} "
                f"({reading.samples} samples)" + (f": {reading.detail}" if reading.detail else ""),
                opened_at=now,
                updated_at=now,
                window_start=reading.window_start,
            )
            stored = self.store.open_alert(opened, self._deliveries(rule, opened, now))
            if stored is None:
                return None  # another process opened it first
            log.info("alert firing: %s", opened.message)
            return Change(rule.name, "opened", opened.id, value)
        if alert is None:
            return None
        resolved = replace(alert, state="resolved", resolved_at=now, value=value)
        if self.store.resolve_alert(alert.id, now, value, self._deliveries(rule, resolved, now)):
            log.info("alert resolved: %s %s is %s", rule.deployment, rule.metric, value)
            return Change(rule.name, "resolved", alert.id, value)
        return None

    def _cooling(self, rule: Rule, now: datetime) -> bool:
        if rule.cooldown_seconds <= 0:
            return False
        last = self.store.list_alerts(deployment=rule.deployment, rule=rule.name, limit=1)
        resolved = last[0].resolved_at if last else None
        return resolved is not None and now - resolved < timedelta(seconds=rule.cooldown_seconds)

    def _deliveries(self, rule: Rule, alert: Alert, now: datetime) -> list[Delivery]:
        names = rule.channels or tuple(self.channels)
        note = self.notification(alert)
        return [
            Delivery(new_id(), alert.id, name, alert.state, note.to_dict(), PENDING, 0, now, None, None, now)
            for name in names
        ]

    def notification(self, alert: Alert) -> Notification:
        """The message a channel sends for ``alert`` in its current state."""
        return Notification(
            alert_id=alert.id,
            state=alert.state,
            deployment=alert.deployment,
            rule=alert.rule,
            metric=alert.metric,
            severity=alert.severity,
            value=alert.value,
            threshold=alert.threshold,
            window_start=alert.window_start,
            message=alert.message if alert.state == FIRING else f"resolved: {alert.message}",
            opened_at=alert.opened_at,
            resolved_at=alert.resolved_at,
            link=self.link(alert.deployment) if self.link is not None else None,
        )

    def raise_event(self, deployment: str, name: str, message: str, *, severity: str = "critical") -> Alert:
        """Record and notify something that happened (not a rule's breach): e.g. a guard rule removing a
        faulty challenger. The alert is stored resolved at once (nothing to wait for), and its firing
        notification goes to every channel."""
        now = self._now()
        alert = Alert(
            id=new_id(),
            deployment=deployment,
            rule=name,
            metric="event",
            severity=severity,
            state=FIRING,
            value=None,
            threshold=0.0,
            message=message,
            opened_at=now,
            updated_at=now,
        )
        rule = Rule(deployment, name[:128], "rows", ">", 0.0, severity=severity)
        stored = self.store.open_alert(alert, self._deliveries(rule, alert, now))
        if stored is None:
            raise AlertError(f"an alert named {name!r} is already open on {deployment!r}")
        self.store.resolve_alert(alert.id, now, None, [])
        log.warning("%s: %s", deployment, message)
        return self.store.get_alert(alert.id)

    # -- acknowledgement and history -----------------------------------------------------

    def ack(self, alert_id: str, by: str) -> Alert:
        """Record that ``by`` has seen the alert (it keeps firing until the metric recovers)."""
        return self.store.ack_alert(alert_id, by, self._now())

    def list_alerts(self, *, deployment: str | None = None, state: str | None = None, limit: int = 100) -> list[Alert]:
        return self.store.list_alerts(deployment=deployment, state=state, limit=limit)

    # -- delivery ------------------------------------------------------------------------

    def dispatch(self, *, limit: int = 100) -> list[Delivery]:
        """Send every due delivery once; returns them with their new status. Blocking: run it off the event loop."""
        now = self._now()
        done = []
        for delivery in self.store.claim_deliveries(now, limit=limit, lease_seconds=self.lease_seconds):
            done.append(self._send(delivery))
        return done

    def _send(self, delivery: Delivery) -> Delivery:
        attempts = delivery.attempts + 1
        channel = self.channels.get(delivery.channel)
        status, error, next_at = DELIVERED, None, None
        if channel is None:
            status, error = FAILED, f"channel {delivery.channel!r} is no longer configured"
        else:
            try:
                channel.send(_notification(delivery.payload))
            except DeliveryError as exc:
                error = str(exc)
                if exc.retryable and attempts < self.max_attempts:
                    status = PENDING
                    wait = backoff(attempts, base=self.backoff_base, cap=self.backoff_cap)
                    next_at = self._now() + timedelta(seconds=wait)
                else:
                    status = FAILED
            except Exception as exc:  # a broken channel must not stop the others
                status, error = FAILED, f"{type(exc).__name__}: {exc}"
        at = self._now()
        self.store.finish_delivery(
            delivery.id, status=status, attempts=attempts, at=at, error=error, next_attempt_at=next_at
        )
        if status != DELIVERED:
            log.warning("alert delivery to %s: %s (attempt %d, now %s)", delivery.channel, error, attempts, status)
        return replace(
            delivery,
            status=status,
            attempts=attempts,
            last_error=error,
            next_attempt_at=next_at,
            delivered_at=at if status == DELIVERED else None,
        )


def _notification(payload: Mapping[str, Any]) -> Notification:
    def when(key: str) -> datetime | None:
        value = payload.get(key)
        return datetime.fromisoformat(value) if value else None

    opened = when("opened_at")
    assert opened is not None
    return Notification(
        alert_id=payload["alert_id"],
        state=payload["state"],
        deployment=payload["deployment"],
        rule=payload["rule"],
        metric=payload["metric"],
        severity=payload["severity"],
        value=payload.get("value"),
        threshold=float(payload["threshold"]),
        window_start=when("window_start"),
        message=payload["message"],
        opened_at=opened,
        resolved_at=when("resolved_at"),
        link=payload.get("link"),
    )
