"""The registry store on SQLAlchemy Core: SQLite and PostgreSQL.

Rows become entities here and nowhere else. Each method runs in one
transaction; writes that read then write lock the model's row first
(``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the write transaction
itself, begun IMMEDIATE, is the lock).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from corral.core.profile import Profile
from corral.core.schema import Signature
from corral.errors import (
    AliasNotFoundError,
    ConflictError,
    ModelNotFoundError,
    StoreError,
    VersionArchivedError,
    VersionInUseError,
    VersionNotFoundError,
)
from corral.registry.entities import (
    AliasAction,
    AliasEvent,
    ArtifactSignature,
    Lineage,
    ModelVersion,
    RegisteredModel,
    VersionStatus,
    VersionTrust,
)
from corral.registry.ports import ANY, AliasHead, RegistryStore, Seal
from corral.runtimes.base import RuntimeSpec
from corral.storage.sql.engine import WRITE, upgrade
from corral.storage.sql.tables import alias_events, aliases, model_versions, reference_profiles, registered_models


def _utc(value: datetime) -> datetime:
    """``value`` in UTC; naive values are taken to be UTC already.

    Times are written in UTC too: SQLite keeps no offset, so a time written
    in another zone would read back shifted by that offset.
    """
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SqlRegistryStore:
    """Registry store for ``sqlite:`` and ``postgresql+psycopg:`` URLs."""

    def __init__(self, engine: sa.Engine, *, migrate: bool = True) -> None:
        self.engine = engine
        if migrate:
            upgrade(engine)
        self._writer = engine.execution_options(**WRITE)

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        try:
            with self._writer.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    # -- models and versions ------------------------------------------------

    def create_version(self, draft: ModelVersion, profile: Profile | None, *, seal: Seal | None = None) -> ModelVersion:
        with self._write() as conn:
            insert = _insert_ignore(conn).values(
                name=draft.name,
                description=draft.description,
                created_by=draft.created_by,
                created_at=_utc(draft.created_at),
                latest_version=0,
            )
            conn.execute(insert)
            latest = conn.execute(
                _lock(conn, sa.select(registered_models.c.latest_version).where(registered_models.c.name == draft.name))
            ).scalar_one()
            number = latest + 1
            conn.execute(
                registered_models.update().where(registered_models.c.name == draft.name).values(latest_version=number)
            )
            values = _version_row(draft, number)
            if seal is not None:  # signed once numbered, in this transaction: a failed signature stores nothing
                signature = seal(replace(draft, version=number, trust=None, artifact_signature=None))
                values["artifact_signature"] = signature.to_dict() if signature is not None else None
            conn.execute(model_versions.insert().values(**values))
            if profile is not None:
                conn.execute(
                    reference_profiles.insert().values(name=draft.name, version=number, profile=profile.to_dict())
                )
            row = conn.execute(_version_query(draft.name, number)).one()
        return _version(row)

    def get_model(self, name: str) -> RegisteredModel:
        with self._read() as conn:
            return self._model(conn, name)

    def list_models(self) -> list[RegisteredModel]:
        with self._read() as conn:
            rows = conn.execute(sa.select(registered_models).order_by(registered_models.c.name)).all()
            alias_rows = conn.execute(sa.select(aliases).order_by(aliases.c.alias)).all()
        by_model: dict[str, dict[str, int]] = {}
        for a in alias_rows:
            by_model.setdefault(a.name, {})[a.alias] = a.version
        return [_model(r, by_model.get(r.name, {})) for r in rows]

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self._read() as conn:
            return self._version(conn, name, version)

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self._read() as conn:
            self._model(conn, name)
            rows = conn.execute(
                sa.select(model_versions).where(model_versions.c.name == name).order_by(model_versions.c.version)
            ).all()
        return [_version(r) for r in rows]

    def get_profile(self, name: str, version: int) -> Profile | None:
        with self._read() as conn:
            self._version(conn, name, version)
            data = conn.execute(
                sa.select(reference_profiles.c.profile).where(
                    reference_profiles.c.name == name, reference_profiles.c.version == version
                )
            ).scalar_one_or_none()
        return Profile.from_dict(data) if data is not None else None

    # -- aliases ------------------------------------------------------------

    def move_alias(
        self,
        name: str,
        alias: str,
        to_version: int | None,
        *,
        expected: object,
        action: AliasAction,
        actor: str,
        reason: str,
        at: datetime,
    ) -> AliasEvent:
        with self._write() as conn:
            self._model(conn, name, lock=True)
            current = conn.execute(
                sa.select(aliases.c.version).where(aliases.c.name == name, aliases.c.alias == alias)
            ).scalar_one_or_none()
            if to_version is not None:
                target = self._version(conn, name, to_version)
                if target.status is VersionStatus.ARCHIVED:
                    raise VersionArchivedError(f"{name}/{to_version} is archived; restore it before giving it an alias")
            elif current is None:
                raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}")
            if isinstance(expected, AliasHead):
                newest = conn.execute(
                    sa.select(sa.func.max(alias_events.c.id)).where(
                        alias_events.c.name == name, alias_events.c.alias == alias
                    )
                ).scalar()
                if (current, newest) != (expected.version, expected.event_id):
                    raise ConflictError(f"alias {name}@{alias} moved meanwhile; look again and retry")
            elif expected is not ANY and expected != current:
                raise ConflictError(f"alias {name}@{alias} moved to {current} meanwhile; look again and retry")
            where = (aliases.c.name == name) & (aliases.c.alias == alias)
            if to_version is None:
                conn.execute(aliases.delete().where(where))
            elif current is None:
                conn.execute(aliases.insert().values(name=name, alias=alias, version=to_version))
            else:
                conn.execute(aliases.update().where(where).values(version=to_version))
            event_id = conn.execute(
                alias_events.insert()
                .values(
                    name=name,
                    alias=alias,
                    from_version=current,
                    to_version=to_version,
                    action=str(action),
                    actor=actor,
                    reason=reason,
                    at=_utc(at),
                )
                .returning(alias_events.c.id)
            ).scalar_one()
        return AliasEvent(event_id, name, alias, current, to_version, action, actor, reason, _utc(at))

    def alias_events(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        with self._read() as conn:
            self._model(conn, name)
            query = sa.select(alias_events).where(alias_events.c.name == name)
            if alias is not None:
                query = query.where(alias_events.c.alias == alias)
            rows = conn.execute(query.order_by(alias_events.c.id)).all()
        return [
            AliasEvent(
                r.id,
                r.name,
                r.alias,
                r.from_version,
                r.to_version,
                AliasAction(r.action),
                r.actor,
                r.reason,
                _utc(r.at),
            )
            for r in rows
        ]

    # -- lifecycle ----------------------------------------------------------

    def set_status(self, name: str, version: int, status: VersionStatus, *, reason: str | None) -> ModelVersion:
        with self._write() as conn:
            self._model(conn, name, lock=True)
            self._version(conn, name, version)
            if status is VersionStatus.ARCHIVED:
                self._refuse_if_aliased(conn, name, version, "archive")
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == version)
                .values(status=str(status), status_reason=reason)
            )
            return self._version(conn, name, version)

    def delete_version(self, name: str, version: int) -> None:
        with self._write() as conn:
            self._model(conn, name, lock=True)
            self._version(conn, name, version)
            self._refuse_if_aliased(conn, name, version, "delete")
            key = (reference_profiles.c.name == name) & (reference_profiles.c.version == version)
            conn.execute(reference_profiles.delete().where(key))
            conn.execute(
                model_versions.delete().where(model_versions.c.name == name, model_versions.c.version == version)
            )

    def set_trust(self, name: str, version: int, trust: VersionTrust | None) -> ModelVersion:
        if trust is not None:
            trust = VersionTrust(trust.by, _utc(trust.at), trust.reason)
        return self._update(name, version, trust=trust.to_dict() if trust is not None else None)

    def set_signature(self, name: str, version: int, signature: ArtifactSignature) -> ModelVersion:
        return self._update(name, version, artifact_signature=signature.to_dict())

    def set_requirements(self, name: str, version: int, requirements: dict[str, str]) -> ModelVersion:
        with self._write() as conn:
            found = self._version(conn, name, version)
            lineage = replace(found.lineage, requirements=dict(sorted(requirements.items())))
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == version)
                .values(lineage=lineage.to_dict())
            )
            return self._version(conn, name, version)

    def _update(self, name: str, version: int, **values: Any) -> ModelVersion:
        with self._write() as conn:
            self._version(conn, name, version)
            conn.execute(
                model_versions.update()
                .where(model_versions.c.name == name, model_versions.c.version == version)
                .values(**values)
            )
            return self._version(conn, name, version)

    def artifact_in_use(self, sha256: str) -> bool:
        with self._read() as conn:
            query = sa.select(sa.func.count()).where(model_versions.c.artifact_sha256 == sha256)
            return bool(conn.execute(query).scalar_one())

    def close(self) -> None:
        self.engine.dispose()

    # -- helpers --------------------------------------------------------------

    def _model(self, conn: sa.Connection, name: str, *, lock: bool = False) -> RegisteredModel:
        query = sa.select(registered_models).where(registered_models.c.name == name)
        row = conn.execute(_lock(conn, query) if lock else query).one_or_none()
        if row is None:
            raise ModelNotFoundError(f"no model named {name!r}")
        alias_rows = conn.execute(sa.select(aliases).where(aliases.c.name == name).order_by(aliases.c.alias)).all()
        return _model(row, {a.alias: a.version for a in alias_rows})

    def _version(self, conn: sa.Connection, name: str, version: int) -> ModelVersion:
        row = conn.execute(_version_query(name, version)).one_or_none()
        if row is None:
            self._model(conn, name)
            raise VersionNotFoundError(f"model {name!r} has no version {version}")
        return _version(row)

    def _refuse_if_aliased(self, conn: sa.Connection, name: str, version: int, verb: str) -> None:
        holders = (
            conn.execute(
                sa.select(aliases.c.alias)
                .where(aliases.c.name == name, aliases.c.version == version)
                .order_by(aliases.c.alias)
            )
            .scalars()
            .all()
        )
        if holders:
            raise VersionInUseError(
                f"cannot {verb} {name}/{version}: alias {', '.join(holders)} points at it; move the alias first"
            )


def _insert_ignore(conn: sa.Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(registered_models).on_conflict_do_nothing(index_elements=["name"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(registered_models).on_conflict_do_nothing(index_elements=["name"])


def _lock(conn: sa.Connection, query: sa.Select[Any]) -> sa.Select[Any]:
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def _version_query(name: str, version: int) -> sa.Select[Any]:
    return sa.select(model_versions).where(model_versions.c.name == name, model_versions.c.version == version)


def _version_row(draft: ModelVersion, number: int) -> dict[str, Any]:
    return {
        "name": draft.name,
        "version": number,
        "flavor": draft.flavor,
        "artifact_sha256": draft.artifact_sha256,
        "artifact_size": draft.artifact_size,
        "data_sha256": draft.lineage.data.sha256 if draft.lineage.data else None,
        "signature": draft.signature.to_dict(),
        "runtime": draft.runtime.to_dict(),
        "lineage": draft.lineage.to_dict(),
        "tags": draft.tags,
        "description": draft.description,
        "status": str(VersionStatus.READY),
        "status_reason": None,
        "created_by": draft.created_by,
        "created_at": _utc(draft.created_at),
        "trust": None,
        "artifact_signature": None,
    }


def _version(row: sa.Row[Any]) -> ModelVersion:
    return ModelVersion(
        name=row.name,
        version=row.version,
        flavor=row.flavor,
        artifact_sha256=row.artifact_sha256,
        artifact_size=row.artifact_size,
        signature=Signature.from_dict(row.signature),
        runtime=RuntimeSpec.from_dict(row.runtime),
        lineage=Lineage.from_dict(row.lineage),
        created_by=row.created_by,
        created_at=_utc(row.created_at),
        description=row.description,
        tags=dict(row.tags),
        status=VersionStatus(row.status),
        status_reason=row.status_reason,
        trust=VersionTrust.from_dict(row.trust) if row.trust else None,
        artifact_signature=ArtifactSignature.from_dict(row.artifact_signature) if row.artifact_signature else None,
    )


def _model(row: sa.Row[Any], alias_map: dict[str, int]) -> RegisteredModel:
    return RegisteredModel(
        name=row.name,
        created_at=_utc(row.created_at),
        created_by=row.created_by,
        latest_version=row.latest_version,
        aliases=alias_map,
        description=row.description,
    )


_: type[RegistryStore] = SqlRegistryStore
