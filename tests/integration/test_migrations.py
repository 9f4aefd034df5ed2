"""The schema comes from the Alembic migrations, and matches ``tables.py``, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from corral.app import database_revisions, upgrade_database
from corral.cli.main import main as cli
from corral.errors import StoreError
from corral.settings import Settings
from corral.storage import open_registry_store
from corral.storage.sql.engine import create_engine, current_revision, head_revision, upgrade
from corral.storage.sql.registry_store import SqlRegistryStore
from corral.storage.sql.tables import metadata
from corral.testing.postgres import fresh_database

FUTURE = "9999_from_the_future"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (nothing migrated yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        with fresh_database(request.getfixturevalue("postgres_url"), prefix="corral_migrations_") as url:
            yield url


@pytest.fixture
def engine(empty_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(empty_url)
    yield engine
    engine.dispose()


def _same_default(
    context: Any, inspected_column: Any, metadata_column: Any, inspected: str | None, _meta: Any, rendered: str | None
) -> bool | None:
    """On SQLite, defaults differ unless equal once parentheses and quotes are taken off both.

    Alembic's own SQLite comparison reports the reflected ``('')`` and the
    rendered empty string as different;
    elsewhere (``None``) its comparison is used as is.
    """
    if context.dialect.name != "sqlite":
        return None

    def bare(text: str | None) -> str | None:
        if text is None:
            return None
        text = text.strip()
        while text.startswith("(") and text.endswith(")"):
            text = text[1:-1].strip()
        return text.removeprefix("'").removesuffix("'")

    return bare(inspected) != bare(rendered)


def _differences(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": _same_default})
        return list(compare_metadata(context, metadata))


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_the_migrated_schema_matches_the_table_definitions(engine: sa.Engine) -> None:
    upgrade(engine)

    assert _differences(engine) == []
    assert _tables(engine) == {t.name for t in metadata.sorted_tables} | {"alembic_version"}


def test_the_comparison_would_notice_a_difference(engine: sa.Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_model_versions_data_sha256"))

    assert any("ix_model_versions_data_sha256" in repr(diff) for diff in _differences(engine))


def test_upgrade_is_idempotent_and_keeps_data(empty_url: str, engine: sa.Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO registered_models (name, description, created_by, created_at, latest_version) "
                "VALUES ('kept', '', 'ada', CURRENT_TIMESTAMP, 0)"
            )
        )

    upgrade(engine)
    upgrade(engine)
    open_registry_store(empty_url)  # migrates on open, again a no-op

    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
        assert conn.execute(sa.text("SELECT name FROM registered_models")).scalars().all() == ["kept"]
    assert _differences(engine) == []


def test_the_schema_is_created_by_migrations_not_create_all(
    empty_url: str, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the schema must come from the Alembic migrations, not MetaData.create_all")

    monkeypatch.setattr(sa.MetaData, "create_all", forbidden)

    store = open_registry_store(empty_url)

    assert isinstance(store, SqlRegistryStore)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
    assert {t.name for t in metadata.sorted_tables} <= _tables(engine)
    store.engine.dispose()


def test_opening_without_migrate_leaves_the_database_alone(empty_url: str, engine: sa.Engine) -> None:
    store = open_registry_store(empty_url, migrate=False)

    assert _tables(engine) == set()
    assert current_revision(engine) is None
    assert isinstance(store, SqlRegistryStore)
    store.engine.dispose()


def test_db_upgrade_and_current_report_revisions(empty_url: str) -> None:
    settings = Settings(database_url=empty_url)
    head = head_revision()

    assert database_revisions(settings) == (None, head)
    assert upgrade_database(settings) == (None, head)
    assert database_revisions(settings) == (head, head)
    assert upgrade_database(settings) == (head, head)


def test_the_cli_db_commands(
    empty_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CORRAL_DATABASE_URL", empty_url)
    head = head_revision()

    assert cli(["db", "current"]) == 0
    assert f"database: empty; this corral: {head}" in capsys.readouterr().out
    assert cli(["db", "upgrade"]) == 0
    assert f"schema: empty → {head}" in capsys.readouterr().out
    assert cli(["db", "current"]) == 0
    assert f"database: {head}; this corral: {head}" in capsys.readouterr().out


def _stamp_future(engine: sa.Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE})


def test_a_database_from_a_newer_corral_is_refused(
    empty_url: str, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stamp_future(engine)

    with pytest.raises(StoreError, match="newer corral") as caught:
        open_registry_store(empty_url)
    assert FUTURE in str(caught.value)
    with pytest.raises(StoreError, match="newer corral"):
        upgrade_database(Settings(database_url=empty_url))
    assert database_revisions(Settings(database_url=empty_url)) == (FUTURE, head_revision())
    with engine.connect() as conn:  # and nothing was touched
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [FUTURE]

    monkeypatch.setenv("CORRAL_DATABASE_URL", empty_url)
    assert cli(["db", "upgrade"]) == 1
    assert "newer corral" in capsys.readouterr().err
