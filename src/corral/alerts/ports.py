"""What the alerts room needs from storage: rules, alerts and the delivery outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from corral.alerts.entities import Alert, Delivery, Rule


class AlertStore(Protocol):
    """Persistence of rules, alerts and deliveries. Every method is one atomic operation."""

    def put_rule(self, rule: Rule) -> Rule:
        """Create or replace the rule named ``rule.name`` of ``rule.deployment``."""
        ...

    def delete_rule(self, deployment: str, name: str) -> None:
        """Remove a rule.

        Raises:
            NotFoundError: the deployment has no rule of that name.
        """
        ...

    def list_rules(self, deployment: str | None = None) -> list[Rule]:
        """Stored rules (of one deployment), by deployment then name."""
        ...

    def open_alert(self, alert: Alert, deliveries: Sequence[Delivery]) -> Alert | None:
        """Store a firing alert and its deliveries, unless the rule already has a firing alert.

        Returns the stored alert, or ``None`` when one was already firing (duplicate suppression:
        of several processes that see the same breach, one opens the alert).
        """
        ...

    def touch_alert(self, alert_id: str, value: float | None, at: datetime) -> None:
        """Record the latest value of a firing alert."""
        ...

    def resolve_alert(self, alert_id: str, at: datetime, value: float | None, deliveries: Sequence[Delivery]) -> bool:
        """Mark a firing alert resolved and queue its deliveries; ``False`` if it was not firing."""
        ...

    def ack_alert(self, alert_id: str, by: str, at: datetime) -> Alert:
        """Record who acknowledged an alert.

        Raises:
            NotFoundError: no alert has this id.
        """
        ...

    def get_alert(self, alert_id: str) -> Alert:
        """One alert.

        Raises:
            NotFoundError: no alert has this id.
        """
        ...

    def list_alerts(
        self, *, deployment: str | None = None, state: str | None = None, rule: str | None = None, limit: int = 100
    ) -> list[Alert]:
        """Alerts, newest first."""
        ...

    def claim_deliveries(self, now: datetime, *, limit: int, lease_seconds: float) -> list[Delivery]:
        """Pending deliveries due at ``now`` that no one holds, oldest first, now held for ``lease_seconds``.

        Two dispatchers (in two processes) never hold the same delivery at once.
        """
        ...

    def finish_delivery(
        self,
        delivery_id: str,
        *,
        status: str,
        attempts: int,
        at: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Record an attempt: ``delivered``, ``failed`` (for good), or ``pending`` again at ``next_attempt_at``."""
        ...

    def list_deliveries(self, *, alert_id: str | None = None, limit: int = 100) -> list[Delivery]:
        """Deliveries (of one alert), newest first: the notification history."""
        ...

    def close(self) -> None:
        """Release what the store holds."""
        ...
