"""Feedback labels on SQLAlchemy Core, joined to the prediction log.

``add_labels`` runs in one write transaction: it checks every id against the
log and against labels already stored (inside the transaction, so two
clients racing to label one prediction differently cannot both win), then
inserts the new ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from corral.errors import AlreadyExistsError, PredictionNotFoundError, StoreError
from corral.monitoring.feedback import Label, Outcome
from corral.storage.sql.engine import WRITE
from corral.storage.sql.registry_store import _utc
from corral.storage.sql.tables import feedback, predictions

_p, _f = predictions, feedback
_CHUNK = 5000  # rows fetched at a time by scores()
_OUTCOME = sa.select(
    _p.c.prediction_id,
    _p.c.timestamp,
    _p.c.deployment,
    _p.c.model,
    _p.c.version,
    _p.c.role,
    _p.c.output,
    _p.c.probabilities,
    _p.c.latency_ms,
    _f.c.label,
    _f.c.prediction_id.label("labelled"),
).select_from(_p.outerjoin(_f, _f.c.prediction_id == _p.c.prediction_id))


class SqlFeedbackStore:
    """Feedback store sharing the registry's engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**WRITE)

    def outcomes_for(self, prediction_ids: Sequence[str]) -> dict[str, Outcome]:
        ids = list(dict.fromkeys(prediction_ids))
        out: dict[str, Outcome] = {}
        try:
            with self.engine.connect() as conn:
                for i in range(0, len(ids), 500):
                    part = ids[i : i + 500]
                    rows = conn.execute(_OUTCOME.where(_p.c.prediction_id.in_(part), _p.c.role != "shadow"))
                    out.update((row.prediction_id, _outcome(row)) for row in rows)
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc
        return out

    def add_labels(self, labels: Sequence[Label]) -> None:
        if not labels:
            return
        ids = [label.prediction_id for label in labels]
        try:
            with self._writer.begin() as conn:
                known: set[str] = set()
                existing: dict[str, Any] = {}
                for i in range(0, len(ids), 500):
                    part = ids[i : i + 500]
                    known.update(conn.scalars(sa.select(_p.c.prediction_id).where(_p.c.prediction_id.in_(part))))
                    rows = conn.execute(sa.select(_f.c.prediction_id, _f.c.label).where(_f.c.prediction_id.in_(part)))
                    existing.update((row.prediction_id, row.label) for row in rows)
                unknown = [pid for pid in ids if pid not in known]
                if unknown:
                    raise PredictionNotFoundError(f"no recorded prediction has id {', '.join(unknown[:10])}")
                fresh = []
                for label in labels:
                    if label.prediction_id in existing:
                        if existing[label.prediction_id] != label.label:
                            raise AlreadyExistsError(
                                f"prediction {label.prediction_id} is already labelled "
                                f"{existing[label.prediction_id]!r}; nothing was stored"
                            )
                        continue
                    fresh.append(
                        {
                            "prediction_id": label.prediction_id,
                            "label": label.label,
                            "received_at": label.received_at,
                            "caller": label.caller,
                        }
                    )
                if fresh:
                    conn.execute(_f.insert(), fresh)
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def outcomes(
        self,
        deployment: str,
        *,
        since: datetime,
        until: datetime,
        model: str | None = None,
        version: int | None = None,
        role: str | None = "primary",
        labelled_only: bool = False,
    ) -> list[Outcome]:
        query = _in_window(_OUTCOME, deployment, since=since, until=until, model=model, version=version, role=role)
        if labelled_only:
            query = query.where(_f.c.prediction_id.is_not(None))
        try:
            with self.engine.connect() as conn:
                return [_outcome(row) for row in conn.execute(query.order_by(_p.c.seq))]
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def scores(
        self,
        deployment: str,
        *,
        since: datetime,
        until: datetime,
        model: str | None = None,
        version: int | None = None,
        role: str | None = "primary",
    ) -> Iterator[tuple[float, ...] | None]:
        """One column, streamed in chunks: a window's rows never all wait in memory as result rows at once."""
        query = _in_window(
            sa.select(_p.c.probabilities), deployment, since=since, until=until, model=model, version=version, role=role
        )
        try:
            with self.engine.connect() as conn:
                for (probabilities,) in conn.execution_options(yield_per=_CHUNK).execute(query.order_by(_p.c.seq)):
                    yield tuple(probabilities) if probabilities is not None else None
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def close(self) -> None:
        """The engine belongs to the registry store."""


def _outcome(row: Any) -> Outcome:
    probabilities = row.probabilities
    return Outcome(
        prediction_id=row.prediction_id,
        timestamp=_utc(row.timestamp),
        deployment=row.deployment,
        model=row.model,
        version=int(row.version),
        role=row.role,
        output=row.output,
        probabilities=tuple(probabilities) if probabilities is not None else None,
        label=row.label,
        labelled=row.labelled is not None,
        latency_ms=float(row.latency_ms),
    )


def _in_window(
    query: Any,
    deployment: str,
    *,
    since: datetime,
    until: datetime,
    model: str | None,
    version: int | None,
    role: str | None,
) -> Any:
    """``query`` limited to one deployment's predictions made in ``[since, until)``, of one model, version and
    role where given (what :meth:`SqlFeedbackStore.outcomes` and :meth:`~SqlFeedbackStore.scores` share)."""
    query = query.where(_p.c.deployment == deployment, _p.c.timestamp >= since, _p.c.timestamp < until)
    for column, value in ((_p.c.role, role), (_p.c.model, model), (_p.c.version, version)):
        if value is not None:
            query = query.where(column == value)
    return query
