"""The prediction log on SQLAlchemy Core (SQLite and PostgreSQL).

Appends are serialised on the one-row ``audit_head`` table (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE``), which holds the
newest ``seq`` and hash: each append reads the head, chains its records after
it, inserts them and moves the head, in one transaction. So several server
processes share one gap-free chain. SQLite commits with ``synchronous=FULL``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from corral.audit.records import GENESIS, Checkpoint, Explanation, PredictionRecord, chain_one
from corral.audit.retention import Anchor
from corral.errors import AlreadyExistsError, ConflictError, PredictionNotFoundError, StoreError
from corral.storage.sql.engine import WRITE
from corral.storage.sql.registry_store import _utc
from corral.storage.sql.tables import (
    audit_anchors,
    audit_checkpoints,
    audit_head,
    audit_policies,
    audit_subject_keys,
    explanations,
    feedback,
    predictions,
)

_t, _c, _e = predictions, audit_checkpoints, explanations
_COLUMNS = [c.name for c in _t.columns]


class SqlAuditStore:
    """Audit store sharing the registry's engine (migrated by the registry store)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**WRITE)
        self._compiled: tuple[str, list[str], list[Any], bool] | None = None
        self._raw: Any = None  # the SQLite writer's own DBAPI connection
        self._raw_lock = threading.Lock()

    def append(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        if not records:
            return []
        if self.engine.dialect.name == "sqlite":
            return self._append_sqlite(records)
        try:
            with self._writer.begin() as conn:
                head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash).with_for_update()).one_or_none()
                if head is None:
                    raise StoreError("the audit log has no head row: it was tampered with or never migrated")
                seq, prev = int(head.seq), str(head.hash)
                stored, rows = [], []
                for record in records:
                    seq += 1
                    placed, content = chain_one(record, seq, prev)
                    prev = placed.hash
                    stored.append(placed)
                    rows.append(_row(placed, content))
                self._insert(conn, rows)
                conn.execute(audit_head.update().values(seq=seq, hash=prev))
        except sa.exc.IntegrityError as exc:
            ids = [r.prediction_id for r in records]
            raise AlreadyExistsError(
                f"a prediction id among {ids[:5]} is already recorded for the same version; nothing was written"
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            # not only a lost connection (OperationalError): a full disk or a failing trigger on the server comes
            # back as an InternalError, a dropped one as an InterfaceError. Whatever it is, nothing was written
            raise StoreError(f"audit log write failed: {getattr(exc, 'orig', None) or exc}") from exc
        return stored

    def _append_sqlite(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        """The append on one DBAPI connection kept for the writer (SQLite): the same statements and the same
        transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, ``synchronous=FULL``) without a pool checkout and
        SQLAlchemy's statement machinery per commit, which cost more CPU than the commit's own work."""
        import sqlite3

        with self._raw_lock:
            if self._raw is None:
                self._raw = self.engine.raw_connection()
            cursor = self._raw.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    head = cursor.execute("SELECT seq, hash FROM audit_head").fetchone()
                    if head is None:
                        raise StoreError("the audit log has no head row: it was tampered with or never migrated")
                    seq, prev = int(head[0]), str(head[1])
                    stored, rows = [], []
                    for record in records:
                        seq += 1
                        placed, content = chain_one(record, seq, prev)
                        prev = placed.hash
                        stored.append(placed)
                        rows.append(_row(placed, content))
                    sql, params = self._insert_params(self.engine.dialect, rows)
                    cursor.executemany(sql, params)
                    cursor.execute("UPDATE audit_head SET seq = ?, hash = ?", (seq, prev))
                    cursor.execute("COMMIT")
                except BaseException:
                    try:
                        cursor.execute("ROLLBACK")
                    except sqlite3.Error:  # SQLite rolled back already (SQLITE_FULL does): keep the first error
                        self._drop_raw()
                    raise
            except sqlite3.IntegrityError as exc:
                ids = [r.prediction_id for r in records]
                raise AlreadyExistsError(
                    f"a prediction id among {ids[:5]} is already recorded for the same version; nothing was written"
                ) from exc
            except sqlite3.Error as exc:
                self._drop_raw()  # an I/O error leaves the connection in doubt: the next append opens another
                text = str(exc).lower()
                # SQLITE_FULL rolls the transaction back cleanly: the log takes records again once space
                # returns. An I/O error (a failed write or fsync) or a damaged file leaves durability in doubt:
                # the log stops.
                fatal = any(s in text for s in ("disk i/o error", "readonly", "malformed", "not a database"))
                raise StoreError(f"audit log write failed: {exc}", fatal=fatal) from exc
            finally:
                with contextlib.suppress(sqlite3.Error):  # its connection may be closed by now: keep the error above
                    cursor.close()
        return stored

    def _drop_raw(self) -> None:
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.invalidate()
            self._raw = None

    def _insert(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """One executemany at the driver: the statement compiled once and each column's own bind processor
        applied by hand (SQLAlchemy's per-row parameter machinery cost more than the rest of the append)."""
        sql, params = self._insert_params(conn.dialect, rows)
        conn.exec_driver_sql(sql, params)

    def _insert_params(self, dialect: Any, rows: list[dict[str, Any]]) -> tuple[str, list[Any]]:
        if self._compiled is None:
            compiled = _t.insert().compile(dialect=dialect)
            names = list(compiled.positiontup or []) if compiled.positional else [c.name for c in _t.columns]
            processors = [_t.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]
            self._compiled = (str(compiled), names, processors, compiled.positional)
        sql, names, processors, positional = self._compiled
        params: list[Any] = []
        for row in rows:
            values = [row[n] if p is None else p(row[n]) for n, p in zip(names, processors, strict=True)]
            params.append(tuple(values) if positional else dict(zip(names, values, strict=True)))
        return sql, params

    def get(self, prediction_id: str) -> PredictionRecord:
        found = self.get_many([prediction_id])
        if prediction_id not in found:
            raise PredictionNotFoundError(f"no recorded prediction has id {prediction_id!r}")
        return found[prediction_id]

    def get_many(self, prediction_ids: Sequence[str]) -> dict[str, PredictionRecord]:
        out: dict[str, PredictionRecord] = {}
        ids = list(dict.fromkeys(prediction_ids))
        for i in range(0, len(ids), 500):
            query = sa.select(_t).where(_t.c.prediction_id.in_(ids[i : i + 500]), _t.c.role != "shadow")
            out.update((r.prediction_id, r) for r in self._rows(query))
        return out

    def records_for(self, prediction_id: str) -> list[PredictionRecord]:
        return self._rows(sa.select(_t).where(_t.c.prediction_id == prediction_id).order_by(_t.c.seq))

    def search(
        self,
        *,
        deployment: str | None = None,
        model: str | None = None,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
        output: Any = None,
        fields: Mapping[str, Any] | None = None,
    ) -> list[PredictionRecord]:
        query = sa.select(_t).where(_t.c.seq > after_seq)
        if output is not None:
            # JSON equality, the value as the model gave it (bound through the column's JSON type)
            query = query.where(_t.c.output == sa.bindparam("output", output, type_=_t.c.output.type))
        for name, value in (fields or {}).items():
            query = query.where(_json_equals(_t.c.inputs[name], value))
        if deployment is not None:
            query = query.where(_t.c.deployment == deployment)
        if model is not None:
            query = query.where(_t.c.model == model)
        if version is not None:
            query = query.where(_t.c.version == version)
        if since is not None:
            query = query.where(_t.c.timestamp >= since)
        if until is not None:
            query = query.where(_t.c.timestamp < until)
        return self._rows(query.order_by(_t.c.seq).limit(limit))

    def scan(self, *, after_seq: int = 0, chunk: int = 5000) -> Iterator[PredictionRecord]:
        while True:
            rows = self._rows(sa.select(_t).where(_t.c.seq > after_seq).order_by(_t.c.seq).limit(chunk))
            yield from rows
            if len(rows) < chunk:
                return
            after_seq = rows[-1].seq

    def count(self, *, model: str | None = None, version: int | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(_t)
        if model is not None:
            query = query.where(_t.c.model == model)
        if version is not None:
            query = query.where(_t.c.version == version)
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(query).scalar_one())
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        row = {**checkpoint.to_dict(), "created_at": checkpoint.created_at}
        try:
            with self._writer.begin() as conn:
                found = conn.execute(sa.select(_c.c.seq).where(_c.c.seq == checkpoint.seq)).first()
                if found is None:
                    conn.execute(_c.insert().values(**row))
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def checkpoints(self, *, after_seq: int = 0) -> list[Checkpoint]:
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(_c).where(_c.c.seq > after_seq).order_by(_c.c.seq)).all()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return [Checkpoint(int(r.seq), r.hash, _utc(r.created_at), r.key_id, r.signature) for r in rows]

    def put_explanation(self, explanation: Explanation) -> None:
        try:
            with self._writer.begin() as conn:
                known = conn.execute(sa.select(_t.c.seq).where(_t.c.prediction_id == explanation.prediction_id)).first()
                if known is None:
                    raise PredictionNotFoundError(f"no recorded prediction has id {explanation.prediction_id!r}")
                conn.execute(_e.delete().where(_e.c.prediction_id == explanation.prediction_id))
                conn.execute(
                    _e.insert().values(
                        prediction_id=explanation.prediction_id,
                        data=explanation.to_dict(),
                        created_at=explanation.created_at,
                    )
                )
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def get_explanation(self, prediction_id: str) -> Explanation | None:
        try:
            with self.engine.connect() as conn:
                data = conn.execute(sa.select(_e.c.data).where(_e.c.prediction_id == prediction_id)).scalar()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return Explanation.from_dict(data) if data is not None else None

    def head(self) -> tuple[int, str]:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash)).one_or_none()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return (int(row.seq), str(row.hash)) if row is not None else (0, GENESIS)

    def close(self) -> None:
        """Return the writer's connection; the engine belongs to the registry store, which disposes of it."""
        with self._raw_lock:
            if self._raw is not None:
                with contextlib.suppress(Exception):
                    self._raw.close()
                self._raw = None

    # Privacy and retention

    def subject_key(self, subject_ref: str, *, create: bytes | None = None) -> bytes | None:
        keys = audit_subject_keys
        try:
            with self.engine.connect() as conn:
                found = conn.execute(sa.select(keys.c.key).where(keys.c.subject_ref == subject_ref)).scalar()
            if found is not None or create is None:
                return bytes(found) if found is not None else None
            try:
                with self._writer.begin() as conn:
                    row = conn.execute(
                        sa.select(keys.c.key).where(keys.c.subject_ref == subject_ref).with_for_update()
                    ).one_or_none()
                    if row is not None and row.key is not None:
                        return bytes(row.key)
                    now = datetime.now(UTC)
                    if row is None:
                        conn.execute(keys.insert().values(subject_ref=subject_ref, key=create, created_at=now))
                    else:  # destroyed: the subject comes back with a new key
                        conn.execute(
                            keys.update()
                            .where(keys.c.subject_ref == subject_ref)
                            .values(key=create, created_at=now, destroyed_at=None)
                        )
                    return create
            except sa.exc.IntegrityError:  # another writer created it first: use theirs
                with self.engine.connect() as conn:
                    found = conn.execute(sa.select(keys.c.key).where(keys.c.subject_ref == subject_ref)).scalar()
                return bytes(found) if found is not None else None
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def destroy_subject_key(self, subject_ref: str) -> bool:
        keys = audit_subject_keys
        try:
            with self._writer.begin() as conn:
                done = conn.execute(
                    keys.update()
                    .where(keys.c.subject_ref == subject_ref, keys.c.key.is_not(None))
                    .values(key=None, destroyed_at=datetime.now(UTC))
                )
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return bool(done.rowcount)

    def anchors(self) -> list[Anchor]:
        a = audit_anchors
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(a).order_by(a.c.seq)).all()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return [Anchor(int(r.seq), r.hash, _utc(r.created_at), r.export_url) for r in rows]

    def delete_through(self, seq: int, *, hash: str, export_url: str, after_seq: int) -> int:
        if seq < 1:
            raise ValueError(f"seq must be at least 1, got {seq}")
        a = audit_anchors
        try:
            with self._writer.begin() as conn:
                head = conn.execute(sa.select(audit_head.c.seq).with_for_update()).scalar_one_or_none()
                if head is None:
                    raise StoreError("the audit log has no head row: it was tampered with or never migrated")
                if seq > int(head):
                    raise ConflictError(f"cannot prune through record {seq}: the log ends at record {head}")
                same = conn.execute(sa.select(a.c.hash).where(a.c.seq == seq)).scalar()
                if same is not None:
                    if same == hash:
                        return 0
                    raise ConflictError(f"record {seq} was already pruned with hash {same}, not {hash}")
                newest = conn.execute(sa.select(sa.func.max(a.c.seq))).scalar()
                if int(newest or 0) != after_seq or seq <= after_seq:
                    raise ConflictError(
                        f"the newest anchor is at record {int(newest or 0)}, not {after_seq}: "
                        "another prune ran meanwhile; run it again"
                    )
                stored = conn.execute(sa.select(_t.c.hash).where(_t.c.seq == seq)).scalar()
                if stored != hash:
                    raise ConflictError(f"record {seq} has hash {stored}, not {hash}: nothing was deleted")
                doomed = sa.select(_t.c.prediction_id).where(_t.c.seq <= seq)
                conn.execute(feedback.delete().where(feedback.c.prediction_id.in_(doomed)))
                conn.execute(_e.delete().where(_e.c.prediction_id.in_(doomed)))
                done = conn.execute(_t.delete().where(_t.c.seq <= seq))
                conn.execute(a.insert().values(seq=seq, hash=hash, created_at=datetime.now(UTC), export_url=export_url))
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return int(done.rowcount)

    def get_policy(self, deployment: str) -> dict[str, Any] | None:
        p = audit_policies
        try:
            with self.engine.connect() as conn:
                found = conn.execute(sa.select(p.c.policy).where(p.c.deployment == deployment)).scalar_one_or_none()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return dict(found) if found is not None else None

    def set_policy(self, deployment: str, policy: Mapping[str, Any] | None) -> None:
        p = audit_policies
        try:
            with self._writer.begin() as conn:
                conn.execute(p.delete().where(p.c.deployment == deployment))
                if policy is not None:
                    conn.execute(
                        p.insert().values(deployment=deployment, policy=dict(policy), updated_at=datetime.now(UTC))
                    )
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def policies(self) -> dict[str, dict[str, Any]]:
        p = audit_policies
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(p.c.deployment, p.c.policy).order_by(p.c.deployment)).all()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return {r.deployment: dict(r.policy) for r in rows}

    def _rows(self, query: sa.Select[Any]) -> list[PredictionRecord]:
        try:
            with self.engine.connect() as conn:
                return [_record(row._mapping) for row in conn.execute(query)]
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc


def _json_equals(column: Any, value: Any) -> Any:
    """``column`` (a JSON value or path) equals ``value``, compared as the value's own type."""
    if isinstance(value, bool):
        return column.as_boolean() == value
    if isinstance(value, (int, float)):
        return column.as_float() == float(value)
    return column.as_string() == str(value)


def _row(record: PredictionRecord, content: dict[str, Any]) -> dict[str, Any]:
    row = {name: content[name] for name in _COLUMNS}
    row["timestamp"] = record.timestamp
    return row


def _record(row: Any) -> PredictionRecord:
    probabilities = row["probabilities"]
    return PredictionRecord(
        prediction_id=row["prediction_id"],
        timestamp=_utc(row["timestamp"]),
        deployment=row["deployment"],
        model=row["model"],
        version=int(row["version"]),
        inputs=row["inputs"],
        output=row["output"],
        probabilities=tuple(probabilities) if probabilities is not None else None,
        role=row["role"],
        artifact_sha256=row["artifact_sha256"],
        data_sha256=row["data_sha256"],
        latency_ms=float(row["latency_ms"]),
        request_id=row["request_id"],
        caller=row["caller"],
        anomaly_score=row["anomaly_score"],
        anomaly_flagged=bool(row["anomaly_flagged"]),
        out_of_range=tuple(row["out_of_range"]),
        seq=int(row["seq"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
