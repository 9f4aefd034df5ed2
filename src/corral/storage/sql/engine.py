"""Engines for SQLite and PostgreSQL, and schema migration on open.

SQLite runs in WAL mode with ``synchronous=FULL`` and foreign keys on. Writes
begin with ``BEGIN IMMEDIATE`` so two processes never both read and then
fail to upgrade to a write lock; they queue on the busy timeout instead.
PostgreSQL writes that need serialising lock the rows they read.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from corral.errors import ConfigurationError, StoreError

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x636F7272616C  # "corral": serialises concurrent migrations on PostgreSQL
WRITE = {"corral_write": True}


def normalize_url(url: str) -> str:
    """Pick the psycopg 3 driver for bare ``postgresql://`` and ``postgres://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(url: str) -> sa.Engine:
    """An engine for ``sqlite:`` or ``postgresql+psycopg:`` URLs, tuned for corral."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    if parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ConfigurationError(f"use the psycopg 3 driver: postgresql+psycopg://..., not {parsed.drivername}")
        return sa.create_engine(url, pool_pre_ping=True)
    raise ConfigurationError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql+psycopg://"
    )


def _sqlite_engine(url: str, database: str | None) -> sa.Engine:
    in_memory = database in (None, "", ":memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60, "check_same_thread": False}}
    if in_memory:
        kwargs["poolclass"] = StaticPool
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("corral_write") else "BEGIN")

    return engine


@cache
def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Bring the schema to the newest migration; safe when several processes race."""
    try:
        if current_revision(engine) == head_revision():
            return
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.execution_options(**WRITE).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except sa.exc.OperationalError as exc:
        raise StoreError(f"cannot reach the database {engine.url.render_as_string()}: {exc.orig}") from exc
    except Exception as exc:
        if "Can't locate revision" in str(exc):
            raise StoreError(
                f"the database {engine.url!r} has schema revision {current_revision(engine)!r}, "
                "which this corral does not know: it was written by a newer corral; upgrade corral"
            ) from exc
        raise
