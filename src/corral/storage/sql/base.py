"""What the newer SQL stores share: one engine, writes in one transaction with errors turned into StoreError,
reads that do the same, and UTC times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa

from corral.errors import StoreError
from corral.storage.sql.engine import WRITE
from corral.storage.sql.registry_store import _utc

_T = TypeVar("_T")


class SqlStore:
    """A store sharing the registry's engine (migrated and disposed of by the registry store)."""

    label: ClassVar[str] = "store"  # named in the error of a refused write

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**WRITE)

    def close(self) -> None:
        """The engine belongs to the registry store, which disposes of it."""

    def _write(self, work: Callable[[sa.Connection], _T], *, integrity: bool = True) -> _T:
        """Run ``work`` in one write transaction; ``integrity=False`` lets an IntegrityError through."""
        try:
            with self._writer.begin() as conn:
                return work(conn)
        except sa.exc.IntegrityError as exc:
            if not integrity:
                raise
            raise StoreError(f"{self.label} write refused: {exc.orig}") from exc
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc

    def _read(self, query: sa.Select[Any]) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(query))
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error: {exc.orig}") from exc


def maybe_utc(value: datetime | None) -> datetime | None:
    return _utc(value) if value is not None else None
