"""Alert rules, alerts and the delivery outbox on SQLAlchemy Core (SQLite and PostgreSQL).

Duplicate suppression rests on the database: a firing alert carries
``firing_key`` (deployment and rule), which is unique, and loses it when it
resolves. So of several processes opening the same alert, one insert wins and
the others hit the constraint and write nothing. Deliveries are claimed by
setting ``held_until`` in a write transaction (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED``), so two dispatchers never
hold the same delivery at once; a claim whose lease ran out is claimable again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from corral.alerts.entities import DELIVERED, FIRING, PENDING, RESOLVED, Alert, Delivery, Rule
from corral.alerts.ports import AlertStore
from corral.errors import AlreadyExistsError, NotFoundError
from corral.storage.sql.base import SqlStore, maybe_utc
from corral.storage.sql.registry_store import _utc
from corral.storage.sql.tables import alert_deliveries, alert_rules, alerts

_r, _a, _d = alert_rules, alerts, alert_deliveries


def firing_key(deployment: str, rule: str) -> str:
    """The unique key a firing alert of ``rule`` holds (NULL once resolved)."""
    return f"{deployment}\x1f{rule}"


class SqlAlertStore(SqlStore):
    """Alert store sharing the registry's engine (migrated by the registry store)."""

    label = "alert store"

    # rules

    def put_rule(self, rule: Rule) -> Rule:
        values = {
            "deployment": rule.deployment,
            "name": rule.name,
            "metric": rule.metric,
            "op": rule.op,
            "threshold": float(rule.threshold),
            "window": rule.window,
            "min_samples": rule.min_samples,
            "severity": rule.severity,
            "cooldown_seconds": float(rule.cooldown_seconds),
            "channels": list(rule.channels),
            "enabled": rule.enabled,
            "updated_at": datetime.now(UTC),
        }

        def put(conn: sa.Connection) -> None:
            insert: Any = postgresql.insert(_r) if conn.dialect.name == "postgresql" else sqlite.insert(_r)
            insert = insert.values(**values)
            changed = {k: v for k, v in values.items() if k not in ("deployment", "name")}
            conn.execute(insert.on_conflict_do_update(index_elements=[_r.c.deployment, _r.c.name], set_=changed))

        self._write(put)
        return rule

    def delete_rule(self, deployment: str, name: str) -> None:
        def delete(conn: sa.Connection) -> int:
            return int(conn.execute(_r.delete().where(_r.c.deployment == deployment, _r.c.name == name)).rowcount)

        if self._write(delete) == 0:
            raise NotFoundError(f"deployment {deployment!r} has no alert rule named {name!r}")

    def list_rules(self, deployment: str | None = None) -> list[Rule]:
        query = sa.select(_r)
        if deployment is not None:
            query = query.where(_r.c.deployment == deployment)
        return [_rule(row) for row in self._read(query.order_by(_r.c.deployment, _r.c.name))]

    # alerts

    def open_alert(self, alert: Alert, deliveries: Sequence[Delivery]) -> Alert | None:
        row = _alert_row(alert)
        row["firing_key"] = firing_key(alert.deployment, alert.rule) if alert.state == FIRING else None

        def insert(conn: sa.Connection) -> None:
            conn.execute(_a.insert().values(**row))
            if deliveries:
                conn.execute(_d.insert(), [_delivery_row(d, alert.opened_at) for d in deliveries])

        try:
            self._write(insert, integrity=False)
        except sa.exc.IntegrityError as exc:
            if "firing_key" in str(exc.orig):
                return None  # the rule already has a firing alert: the transaction rolled back
            raise AlreadyExistsError(
                f"alert {alert.id!r} or one of its deliveries is already stored; nothing was written"
            ) from exc
        return alert

    def touch_alert(self, alert_id: str, value: float | None, at: datetime) -> None:
        update = _a.update().where(_a.c.id == alert_id, _a.c.state == FIRING).values(value=value, updated_at=_utc(at))
        self._write(lambda conn: conn.execute(update))

    def resolve_alert(self, alert_id: str, at: datetime, value: float | None, deliveries: Sequence[Delivery]) -> bool:
        update = (
            _a.update()
            .where(_a.c.id == alert_id, _a.c.state == FIRING)
            .values(state=RESOLVED, resolved_at=_utc(at), updated_at=_utc(at), value=value, firing_key=None)
        )

        def resolve(conn: sa.Connection) -> bool:
            if conn.execute(update).rowcount == 0:
                return False
            if deliveries:
                conn.execute(_d.insert(), [_delivery_row(d, at) for d in deliveries])
            return True

        return self._write(resolve)

    def ack_alert(self, alert_id: str, by: str, at: datetime) -> Alert:
        def ack(conn: sa.Connection) -> Any:
            conn.execute(_a.update().where(_a.c.id == alert_id).values(acked_by=by, acked_at=_utc(at)))
            return conn.execute(sa.select(_a).where(_a.c.id == alert_id)).one_or_none()

        row = self._write(ack)
        if row is None:
            raise NotFoundError(f"no alert has id {alert_id!r}")
        return _alert(row)

    def get_alert(self, alert_id: str) -> Alert:
        rows = self._read(sa.select(_a).where(_a.c.id == alert_id))
        if not rows:
            raise NotFoundError(f"no alert has id {alert_id!r}")
        return _alert(rows[0])

    def list_alerts(
        self, *, deployment: str | None = None, state: str | None = None, rule: str | None = None, limit: int = 100
    ) -> list[Alert]:
        query = sa.select(_a)
        if deployment is not None:
            query = query.where(_a.c.deployment == deployment)
        if state is not None:
            query = query.where(_a.c.state == state)
        if rule is not None:
            query = query.where(_a.c.rule == rule)
        query = query.order_by(_a.c.opened_at.desc(), _a.c.id.desc()).limit(limit)
        return [_alert(row) for row in self._read(query)]

    # deliveries

    def claim_deliveries(self, now: datetime, *, limit: int, lease_seconds: float) -> list[Delivery]:
        now = _utc(now)
        until = now + timedelta(seconds=lease_seconds)
        query = (
            sa.select(_d)
            .where(
                _d.c.status == PENDING,
                sa.or_(_d.c.next_attempt_at.is_(None), _d.c.next_attempt_at <= now),
                sa.or_(_d.c.held_until.is_(None), _d.c.held_until <= now),
            )
            .order_by(_d.c.created_at, _d.c.id)
            .limit(limit)
        )

        def claim(conn: sa.Connection) -> list[Any]:
            select = query.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else query
            rows = list(conn.execute(select))
            if rows:
                conn.execute(_d.update().where(_d.c.id.in_([r.id for r in rows])).values(held_until=until))
            return rows

        if limit <= 0:
            return []
        return [_delivery(row) for row in self._write(claim)]

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
        update = (
            _d.update()
            .where(_d.c.id == delivery_id)
            .values(
                status=status,
                attempts=attempts,
                last_error=error,
                next_attempt_at=_utc(next_attempt_at) if next_attempt_at is not None else None,
                delivered_at=_utc(at) if status == DELIVERED else None,
                held_until=None,
            )
        )
        if self._write(lambda conn: int(conn.execute(update).rowcount)) == 0:
            raise NotFoundError(f"no alert delivery has id {delivery_id!r}")

    def list_deliveries(self, *, alert_id: str | None = None, limit: int = 100) -> list[Delivery]:
        query = sa.select(_d)
        if alert_id is not None:
            query = query.where(_d.c.alert_id == alert_id)
        query = query.order_by(_d.c.created_at.desc(), _d.c.id.desc()).limit(limit)
        return [_delivery(row) for row in self._read(query)]


def _rule(row: Any) -> Rule:
    return Rule(
        deployment=row.deployment,
        name=row.name,
        metric=row.metric,
        op=row.op,
        threshold=float(row.threshold),
        window=int(row.window),
        min_samples=int(row.min_samples),
        severity=row.severity,
        cooldown_seconds=float(row.cooldown_seconds),
        channels=tuple(row.channels or ()),
        enabled=bool(row.enabled),
    )


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "deployment": alert.deployment,
        "rule": alert.rule,
        "metric": alert.metric,
        "severity": alert.severity,
        "state": alert.state,
        "value": alert.value,
        "threshold": float(alert.threshold),
        "message": alert.message,
        "opened_at": _utc(alert.opened_at),
        "updated_at": _utc(alert.updated_at),
        "window_start": maybe_utc(alert.window_start),
        "resolved_at": maybe_utc(alert.resolved_at),
        "acked_by": alert.acked_by,
        "acked_at": maybe_utc(alert.acked_at),
    }


def _alert(row: Any) -> Alert:
    return Alert(
        id=row.id,
        deployment=row.deployment,
        rule=row.rule,
        metric=row.metric,
        severity=row.severity,
        state=row.state,
        value=float(row.value) if row.value is not None else None,
        threshold=float(row.threshold),
        message=row.message,
        opened_at=_utc(row.opened_at),
        updated_at=_utc(row.updated_at),
        window_start=maybe_utc(row.window_start),
        resolved_at=maybe_utc(row.resolved_at),
        acked_by=row.acked_by,
        acked_at=maybe_utc(row.acked_at),
    )


def _delivery_row(delivery: Delivery, created_at: datetime) -> dict[str, Any]:
    """The row of a new delivery; one without ``created_at`` is dated ``created_at`` (its state change)."""
    return {
        "id": delivery.id,
        "alert_id": delivery.alert_id,
        "channel": delivery.channel,
        "state": delivery.state,
        "payload": dict(delivery.payload),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": maybe_utc(delivery.next_attempt_at),
        "held_until": None,
        "last_error": delivery.last_error,
        "delivered_at": maybe_utc(delivery.delivered_at),
        "created_at": _utc(delivery.created_at or created_at),
    }


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        alert_id=row.alert_id,
        channel=row.channel,
        state=row.state,
        payload=row.payload,
        status=row.status,
        attempts=int(row.attempts),
        next_attempt_at=maybe_utc(row.next_attempt_at),
        last_error=row.last_error,
        delivered_at=maybe_utc(row.delivered_at),
        created_at=_utc(row.created_at),
    )


_: type[AlertStore] = SqlAlertStore
