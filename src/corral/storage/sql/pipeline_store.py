"""Pipelines and their runs (the job queue) on SQLAlchemy Core (SQLite and PostgreSQL).

One active run per pipeline rests on the database: a queued or running run carries ``active_key`` (the
pipeline's name), which is unique, and loses it when it ends. So of several processes enqueueing a run of
the same pipeline, one insert wins and the others hit the constraint and write nothing. Runs are claimed in
a write transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED``), so two
workers never hold the same run; a worker keeps its run by renewing the lease, and only the worker that
holds a run may renew or finish it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from corral.errors import AlreadyExistsError, ConflictError, NotFoundError
from corral.pipelines.entities import FAILED, QUEUED, RUNNING, STATES, Pipeline, Run
from corral.pipelines.ports import PipelineStore
from corral.storage.sql.base import SqlStore, maybe_utc
from corral.storage.sql.registry_store import _utc
from corral.storage.sql.tables import pipeline_runs, pipelines

_p, _r = pipelines, pipeline_runs
_ACTIVE = (QUEUED, RUNNING)


class SqlPipelineStore(SqlStore):
    """Pipeline store sharing the registry's engine (migrated by the registry store)."""

    label = "pipeline store"

    # pipelines

    def put_pipeline(self, pipeline: Pipeline) -> Pipeline:
        values = {"name": pipeline.name, "data": pipeline.to_dict(), "updated_at": datetime.now(UTC)}

        def put(conn: sa.Connection) -> None:
            insert: Any = postgresql.insert(_p) if conn.dialect.name == "postgresql" else sqlite.insert(_p)
            insert = insert.values(**values)
            changed = {"data": values["data"], "updated_at": values["updated_at"]}
            conn.execute(insert.on_conflict_do_update(index_elements=[_p.c.name], set_=changed))

        self._write(put)
        return pipeline

    def get_pipeline(self, name: str) -> Pipeline:
        rows = self._read(sa.select(_p.c.data).where(_p.c.name == name))
        if not rows:
            raise NotFoundError(f"no pipeline is named {name!r}")
        return Pipeline.from_dict(rows[0].data)

    def list_pipelines(self) -> list[Pipeline]:
        return [Pipeline.from_dict(row.data) for row in self._read(sa.select(_p.c.data).order_by(_p.c.name))]

    def delete_pipeline(self, name: str) -> None:
        def delete(conn: sa.Connection) -> None:
            if conn.execute(_lock(conn, sa.select(_p.c.name).where(_p.c.name == name))).one_or_none() is None:
                raise NotFoundError(f"no pipeline is named {name!r}")
            active = conn.execute(sa.select(_r.c.id, _r.c.state).where(_r.c.active_key == name)).one_or_none()
            if active is not None:
                raise ConflictError(
                    f"pipeline {name!r} has a {active.state} run ({active.id}); wait for it to end, then delete"
                )
            conn.execute(_p.delete().where(_p.c.name == name))

        self._write(delete)

    # runs

    def enqueue(self, run: Run) -> Run | None:
        """As the protocol says; also raises NotFoundError for an unknown pipeline."""
        row = _run_row(run)

        def insert(conn: sa.Connection) -> None:
            # a shared lock on the pipeline: a concurrent delete either went first or waits for this insert
            query = sa.select(_p.c.name).where(_p.c.name == run.pipeline)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(read=True)
            if conn.execute(query).one_or_none() is None:
                raise NotFoundError(f"no pipeline is named {run.pipeline!r}")
            conn.execute(_r.insert().values(**row))

        try:
            self._write(insert, integrity=False)
        except sa.exc.IntegrityError as exc:
            if "active_key" in str(exc.orig):
                return None  # the pipeline already has a queued or running run: nothing was written
            raise AlreadyExistsError(f"a run with id {run.id!r} is already stored; nothing was written") from exc
        return run

    def claim(self, worker: str, now: datetime, lease_seconds: float) -> Run | None:
        now = _utc(now)
        until = now + timedelta(seconds=lease_seconds)
        query = sa.select(_r).where(_r.c.state == QUEUED).order_by(_r.c.created_at, _r.c.id).limit(1)

        def claim(conn: sa.Connection) -> Any:
            select = query.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else query
            row = conn.execute(select).one_or_none()
            if row is None:
                return None
            update = (
                _r.update()
                .where(_r.c.id == row.id, _r.c.state == QUEUED)
                .values(
                    state=RUNNING,
                    worker=worker,
                    started_at=maybe_utc(row.started_at) or now,
                    lease_until=until,
                    attempt=_r.c.attempt + 1,
                )
            )
            if conn.execute(update).rowcount == 0:  # pragma: no cover - the row lock (or write lock) held it
                return None
            return conn.execute(sa.select(_r).where(_r.c.id == row.id)).one()

        found = self._write(claim)
        return _run(found) if found is not None else None

    def renew(self, run_id: str, worker: str, lease_until: datetime, log: str | None = None) -> bool:
        values: dict[str, Any] = {"lease_until": _utc(lease_until)}
        if log is not None:
            values["log"] = log
        update = _r.update().where(_r.c.id == run_id, _r.c.state == RUNNING, _r.c.worker == worker).values(**values)
        return self._write(lambda conn: int(conn.execute(update).rowcount)) > 0

    def finish(
        self, run_id: str, worker: str, *, state: str, at: datetime, reason: str, result: Mapping[str, Any], log: str
    ) -> bool:
        if state not in STATES or state in _ACTIVE:
            raise ValueError(f"a run ends succeeded, failed or rejected, not {state!r}")
        update = (
            _r.update()
            .where(_r.c.id == run_id, _r.c.state == RUNNING, _r.c.worker == worker)
            .values(state=state, finished_at=_utc(at), reason=reason, result=dict(result), log=log, active_key=None)
        )
        return self._write(lambda conn: int(conn.execute(update).rowcount)) > 0

    def expire(self, now: datetime) -> list[Run]:
        now = _utc(now)
        query = sa.select(_r).where(_r.c.state == RUNNING, _r.c.lease_until < now).order_by(_r.c.created_at, _r.c.id)

        def expire(conn: sa.Connection) -> list[Any]:
            select = query.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else query
            expired = []
            for row in conn.execute(select).all():
                lapsed = _utc(row.lease_until).isoformat()
                update = (
                    _r.update()
                    .where(_r.c.id == row.id, _r.c.state == RUNNING, _r.c.lease_until < now)
                    .values(
                        state=FAILED,
                        finished_at=now,
                        reason=f"the worker stopped reporting (lease lapsed at {lapsed})",
                        active_key=None,
                    )
                )
                if conn.execute(update).rowcount:
                    expired.append(row.id)
            if not expired:
                return []
            ordered = sa.select(_r).where(_r.c.id.in_(expired)).order_by(_r.c.created_at, _r.c.id)
            return list(conn.execute(ordered))

        return [_run(row) for row in self._write(expire)]

    def get_run(self, run_id: str) -> Run:
        rows = self._read(sa.select(_r).where(_r.c.id == run_id))
        if not rows:
            raise NotFoundError(f"no pipeline run has id {run_id!r}")
        return _run(rows[0])

    def list_runs(self, *, pipeline: str | None = None, limit: int = 50) -> list[Run]:
        query = sa.select(_r)
        if pipeline is not None:
            query = query.where(_r.c.pipeline == pipeline)
        query = query.order_by(_r.c.created_at.desc(), _r.c.id.desc()).limit(limit)
        return [_run(row) for row in self._read(query)]

    def last_run(self, pipeline: str, *, trigger: str | None = None) -> Run | None:
        query = sa.select(_r).where(_r.c.pipeline == pipeline)
        if trigger is not None:
            query = query.where(_r.c.trigger == trigger)
        rows = self._read(query.order_by(_r.c.created_at.desc(), _r.c.id.desc()).limit(1))
        return _run(rows[0]) if rows else None


def _lock(conn: sa.Connection, query: sa.Select[Any]) -> sa.Select[Any]:
    """``query`` locking the rows it reads, on PostgreSQL (SQLite's write transaction holds the whole file)."""
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def _run_row(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "pipeline": run.pipeline,
        "trigger": run.trigger,
        "state": run.state,
        "reason": run.reason,
        "created_at": _utc(run.created_at),
        "started_at": maybe_utc(run.started_at),
        "finished_at": maybe_utc(run.finished_at),
        "worker": run.worker,
        "lease_until": maybe_utc(run.lease_until),
        "attempt": run.attempt,
        "result": dict(run.result),
        "log": run.log,
        "active_key": run.pipeline if run.state in _ACTIVE else None,
    }


def _run(row: Any) -> Run:
    return Run(
        id=row.id,
        pipeline=row.pipeline,
        trigger=row.trigger,
        state=row.state,
        created_at=_utc(row.created_at),
        reason=row.reason,
        started_at=maybe_utc(row.started_at),
        finished_at=maybe_utc(row.finished_at),
        worker=row.worker,
        lease_until=maybe_utc(row.lease_until),
        attempt=int(row.attempt),
        result=dict(row.result or {}),
        log=row.log,
    )


_: type[PipelineStore] = SqlPipelineStore
