"""The prediction log on SQLAlchemy Core (SQLite and PostgreSQL).

Appends are serialised on the one-row ``audit_head`` table (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE``), which holds the
newest ``seq`` and hash: each append reads the head, chains its records after
it, inserts them and moves the head, in one transaction. So several server
processes share one gap-free chain. SQLite commits with ``synchronous=FULL``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from corral.audit.records import GENESIS, Checkpoint, Explanation, PredictionRecord
from corral.errors import AlreadyExistsError, PredictionNotFoundError, StoreError
from corral.storage.sql.engine import WRITE
from corral.storage.sql.registry_store import _utc
from corral.storage.sql.tables import audit_checkpoints, audit_head, explanations, predictions

_t, _c, _e = predictions, audit_checkpoints, explanations
_COLUMNS = [c.name for c in _t.columns]


class SqlAuditStore:
    """Audit store sharing the registry's engine (migrated by the registry store)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**WRITE)

    def append(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        if not records:
            return []
        try:
            with self._writer.begin() as conn:
                head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash).with_for_update()).one_or_none()
                if head is None:
                    raise StoreError("the audit log has no head row: it was tampered with or never migrated")
                seq, prev = int(head.seq), str(head.hash)
                stored = []
                for record in records:
                    seq += 1
                    placed = record.chained(seq, prev)
                    prev = placed.hash
                    stored.append(placed)
                conn.execute(_t.insert(), [_row(r) for r in stored])
                conn.execute(audit_head.update().values(seq=seq, hash=prev))
        except sa.exc.IntegrityError as exc:
            ids = [r.prediction_id for r in records]
            raise AlreadyExistsError(
                f"a prediction id among {ids[:5]} is already recorded; nothing was written"
            ) from exc
        except sa.exc.OperationalError as exc:
            raise StoreError(f"audit log write failed: {exc.orig}") from exc
        return stored

    def get(self, prediction_id: str) -> PredictionRecord:
        found = self.get_many([prediction_id])
        if prediction_id not in found:
            raise PredictionNotFoundError(f"no recorded prediction has id {prediction_id!r}")
        return found[prediction_id]

    def get_many(self, prediction_ids: Sequence[str]) -> dict[str, PredictionRecord]:
        out: dict[str, PredictionRecord] = {}
        ids = list(dict.fromkeys(prediction_ids))
        for i in range(0, len(ids), 500):
            rows = self._rows(sa.select(_t).where(_t.c.prediction_id.in_(ids[i : i + 500])))
            out.update((r.prediction_id, r) for r in rows)
        return out

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
        """The engine belongs to the registry store, which disposes of it."""

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


def _row(record: PredictionRecord) -> dict[str, Any]:
    content = record.content()
    row = {name: content[name] for name in _COLUMNS if name in content}
    row["timestamp"] = record.timestamp
    row["hash"] = record.hash
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
