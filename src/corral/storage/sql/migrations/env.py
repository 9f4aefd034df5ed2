"""Alembic environment: corral passes its own connection in ``config.attributes``."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from corral.storage.sql.tables import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn: sa.Connection) -> None:
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # the plain `alembic` command line, for developers writing migrations
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///.corral/corral.db")
    with engine.begin() as conn:
        _run(conn)
