"""Monitoring windows on SQLAlchemy Core (SQLite and PostgreSQL).

Each window is one row keyed by its :class:`~corral.monitoring.aggregator.WindowKey`,
holding :meth:`DeploymentWindow.to_dict` as JSON. Flushes merge on write: on
SQLite the transaction begins with ``BEGIN IMMEDIATE``, which serialises
writers; on PostgreSQL a missing row is inserted with ``ON CONFLICT DO
NOTHING`` and an existing one is read ``FOR UPDATE`` (keys in sorted order,
so two flushes never deadlock), so concurrent flushes of one key add up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from corral.errors import StoreError
from corral.monitoring.aggregator import DeploymentWindow, WindowKey, merge_all
from corral.monitoring.ports import MonitoringStore
from corral.storage.sql.engine import WRITE
from corral.storage.sql.tables import monitoring_configs, monitoring_windows

_t = monitoring_windows


class SqlMonitoringStore:
    """Monitoring store sharing the registry's engine (migrated by the registry store)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**WRITE)

    def add_windows(self, windows: Sequence[DeploymentWindow]) -> None:
        incoming = merge_all(windows)
        if not incoming:
            return
        try:
            with self._writer.begin() as conn:
                now = datetime.now(UTC)
                for key in sorted(incoming):
                    _add(conn, incoming[key], now)
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def get_windows(
        self,
        deployment: str,
        *,
        length: int,
        since: int | None = None,
        model: str | None = None,
        version: int | None = None,
    ) -> list[DeploymentWindow]:
        query = sa.select(_t.c.data).where(_t.c.deployment == deployment, _t.c.length == length)
        if since is not None:
            query = query.where(_t.c.start >= since)
        if model is not None:
            query = query.where(_t.c.model == model)
        if version is not None:
            query = query.where(_t.c.version == version)
        query = query.order_by(_t.c.start, _t.c.model, _t.c.version)
        try:
            with self.engine.begin() as conn:
                rows = conn.execute(query).all()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return [DeploymentWindow.from_dict(row.data) for row in rows]

    def get_config(self, deployment: str) -> dict[str, Any] | None:
        query = sa.select(monitoring_configs.c.config).where(monitoring_configs.c.deployment == deployment)
        try:
            with self.engine.connect() as conn:
                found = conn.execute(query).scalar_one_or_none()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return dict(found) if found is not None else None

    def set_config(self, deployment: str, config: Mapping[str, Any] | None) -> None:
        table = monitoring_configs
        try:
            with self._writer.begin() as conn:
                conn.execute(table.delete().where(table.c.deployment == deployment))
                if config is not None:
                    conn.execute(
                        table.insert().values(deployment=deployment, config=dict(config), updated_at=datetime.now(UTC))
                    )
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def delete_before(self, start: int) -> int:
        try:
            with self._writer.begin() as conn:
                done = conn.execute(_t.delete().where(_t.c.start < start))
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return int(done.rowcount)

    def close(self) -> None:
        self.engine.dispose()


def _where(key: WindowKey) -> sa.ColumnElement[bool]:
    return sa.and_(
        _t.c.deployment == key.deployment,
        _t.c.model == key.model,
        _t.c.version == key.version,
        _t.c.length == key.length,
        _t.c.start == key.start,
    )


def _add(conn: sa.Connection, window: DeploymentWindow, now: datetime) -> None:
    """Insert ``window``, or merge it into the stored row of its key (which is locked first)."""
    where = _where(window.key)
    stored = conn.execute(sa.select(_t.c.data).where(where).with_for_update()).one_or_none()
    if stored is None:
        values = {**window.key.to_dict(), "data": window.to_dict(), "updated_at": now}
        insert: Any = (postgresql.insert(_t) if conn.dialect.name == "postgresql" else sqlite.insert(_t)).values(
            **values
        )
        if conn.execute(insert.on_conflict_do_nothing().returning(_t.c.start)).first() is not None:
            return
        # another transaction inserted the key meanwhile (PostgreSQL): wait for it, then merge
        stored = conn.execute(sa.select(_t.c.data).where(where).with_for_update()).one()
    merged = DeploymentWindow.from_dict(stored.data).merge(window)
    conn.execute(_t.update().where(where).values(data=merged.to_dict(), updated_at=now))


_: type[MonitoringStore] = SqlMonitoringStore
