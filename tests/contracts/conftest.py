"""Fixtures for the contract suites: every store implementation, and version drafts.

``registry_store`` is parametrized over memory, SQLite and PostgreSQL. The
PostgreSQL store is opened (and migrated) once per session on the session
database; every test starts from empty tables (TRUNCATE ... RESTART IDENTITY).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from registry_factories import DraftFactory, make_draft

from corral.audit.records import GENESIS
from corral.registry.ports import RegistryStore
from corral.storage import open_registry_store
from corral.storage.memory import MemoryRegistryStore
from corral.storage.sql.registry_store import SqlRegistryStore
from corral.storage.sql.tables import audit_head, metadata


@pytest.fixture
def draft() -> DraftFactory:
    """``draft(name, **fields)``: a complete version draft."""
    return make_draft


@pytest.fixture(scope="session")
def _postgres_store(request: pytest.FixtureRequest) -> Iterator[SqlRegistryStore]:
    url: str = request.getfixturevalue("postgres_url")
    store = open_registry_store(url)
    assert isinstance(store, SqlRegistryStore)
    yield store
    store.engine.dispose()


def truncate_all(store: SqlRegistryStore) -> None:
    tables = ", ".join(t.name for t in metadata.sorted_tables)
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(audit_head.insert().values(id=1, seq=0, hash=GENESIS))  # as migration 0004 leaves it


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def registry_store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[RegistryStore]:
    """Each RegistryStore implementation, empty."""
    if request.param == "memory":
        yield MemoryRegistryStore()
    elif request.param == "sqlite":
        store = open_registry_store(f"sqlite:///{tmp_path / 'contract.db'}")
        assert isinstance(store, SqlRegistryStore)
        yield store
        store.engine.dispose()
    else:
        store = request.getfixturevalue("_postgres_store")
        truncate_all(store)
        yield store
