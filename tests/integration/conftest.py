"""Fixtures for the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from corral.storage.sql import engine as sql_engine


@pytest.fixture(autouse=True)
def _dispose_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[sa.Engine]]:
    """Dispose every engine a test made, so no pooled connection is left for the garbage collector.

    Tests open stores freely without closing them; a psycopg connection closed
    by the garbage collector warns (ResourceWarning), which this suite treats
    as an error.
    """
    made: list[sa.Engine] = []
    original = sql_engine.create_engine

    def tracked(url: str, *args: Any, **kwargs: Any) -> sa.Engine:
        engine = original(url, *args, **kwargs)
        made.append(engine)
        return engine

    monkeypatch.setattr(sql_engine, "create_engine", tracked)
    yield made
    for engine in made:
        engine.dispose()
