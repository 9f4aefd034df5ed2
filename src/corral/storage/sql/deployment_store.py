"""Deployments on SQLAlchemy Core (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from corral.errors import AlreadyExistsError, ConflictError, DeploymentNotFoundError, ModelNotFoundError, StoreError
from corral.serving.entities import BatchingPolicy, Deployment, ExecutionPolicy, GuardPolicy, Member
from corral.serving.ports import DeploymentStore
from corral.storage.sql.engine import WRITE
from corral.storage.sql.registry_store import _utc
from corral.storage.sql.tables import deployments, registered_models


class SqlDeploymentStore:
    """Deployment store sharing the registry's engine (migrated by the registry store)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**WRITE)

    def create(self, deployment: Deployment) -> Deployment:
        try:
            with self._writer.begin() as conn:
                exists = conn.execute(
                    sa.select(registered_models.c.name).where(registered_models.c.name == deployment.model)
                ).first()
                if exists is None:
                    raise ModelNotFoundError(f"no model named {deployment.model!r} to deploy")
                taken = conn.execute(sa.select(deployments.c.name).where(deployments.c.name == deployment.name)).first()
                if taken is not None:
                    raise AlreadyExistsError(f"a deployment named {deployment.name!r} already exists")
                conn.execute(deployments.insert().values(**_row(deployment)))
        except sa.exc.IntegrityError as exc:
            raise AlreadyExistsError(f"a deployment named {deployment.name!r} already exists") from exc
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return self.get(deployment.name)

    def get(self, name: str) -> Deployment:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(deployments).where(deployments.c.name == name)).one_or_none()
        if row is None:
            raise DeploymentNotFoundError(f"no deployment named {name!r}")
        return _deployment(row)

    def list(self) -> list[Deployment]:
        try:
            with self.engine.begin() as conn:
                rows = conn.execute(sa.select(deployments).order_by(deployments.c.name)).all()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return [_deployment(r) for r in rows]

    def update(self, deployment: Deployment, *, expected: datetime | None = None) -> Deployment:
        values = _row(deployment)
        for key in ("name", "model", "created_by", "created_at"):
            values.pop(key)
        with self._writer.begin() as conn:
            where = deployments.c.name == deployment.name
            if expected is not None:
                row = conn.execute(sa.select(deployments.c.updated_at).where(where).with_for_update()).one_or_none()
                if row is not None and _utc(row.updated_at) != _utc(expected):
                    raise ConflictError(f"deployment {deployment.name!r} changed meanwhile; read it again")
            done = conn.execute(deployments.update().where(where).values(**values))
            if done.rowcount == 0:
                raise DeploymentNotFoundError(f"no deployment named {deployment.name!r}")
        return self.get(deployment.name)

    def delete(self, name: str) -> None:
        with self._writer.begin() as conn:
            done = conn.execute(deployments.delete().where(deployments.c.name == name))
            if done.rowcount == 0:
                raise DeploymentNotFoundError(f"no deployment named {name!r}")

    def close(self) -> None:
        self.engine.dispose()


def _row(d: Deployment) -> dict[str, Any]:
    return {
        "name": d.name,
        "model": d.model,
        "alias": d.alias,
        "enabled": d.enabled,
        "batching_enabled": d.batching.enabled,
        "max_batch_size": d.batching.max_batch_size,
        "max_wait_ms": d.batching.max_wait_ms,
        "description": d.description,
        "members": [m.to_dict() for m in d.members],
        "guard": d.guard.to_dict(),
        "execution": d.execution.to_dict(),
        "created_by": d.created_by,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    }


def _deployment(row: sa.Row[Any]) -> Deployment:
    return Deployment(
        name=row.name,
        model=row.model,
        alias=row.alias,
        created_by=row.created_by,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        enabled=bool(row.enabled),
        batching=BatchingPolicy(bool(row.batching_enabled), int(row.max_batch_size), float(row.max_wait_ms)),
        description=row.description,
        members=tuple(Member.from_dict(m) for m in row.members or ()),
        guard=GuardPolicy.from_dict(row.guard),
        execution=ExecutionPolicy.from_dict(row.execution),
    )


_: type[DeploymentStore] = SqlDeploymentStore
