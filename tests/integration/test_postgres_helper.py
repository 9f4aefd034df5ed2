"""``corral.testing.postgres``: where the test database comes from, and what happens without one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from corral.testing import postgres
from corral.testing.postgres import ENV_URL, PostgresUnavailable, fresh_database, session_database


def _no_binaries() -> None:
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; looked in nowhere")


@pytest.fixture
def without_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(postgres, "_find_bindir", _no_binaries)


@pytest.mark.usefixtures("without_server")
def test_without_a_server_the_tests_skip_loudly_saying_how_to_enable_them(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(pytest.skip.Exception) as skipped, session_database():
        pytest.fail("no database should have been yielded")

    message = str(skipped.value)
    assert "no PostgreSQL server binaries" in message
    assert ENV_URL in message
    assert "WARNING" in capfd.readouterr().err


@pytest.mark.usefixtures("without_server")
@pytest.mark.parametrize("ci", ["true", "1"])
def test_without_a_server_in_ci_the_tests_fail(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)

    with pytest.raises(pytest.fail.Exception, match="CI=true") as failed, session_database():
        pass

    assert ENV_URL in str(failed.value)


@pytest.mark.parametrize("url", ["sqlite:///x.db", "not a url at all"])
def test_a_configured_url_that_is_not_postgresql_fails(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(ENV_URL, url)

    with pytest.raises(pytest.fail.Exception, match=ENV_URL), session_database():
        pass


def test_a_configured_server_that_is_down_fails_rather_than_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(ENV_URL, "postgresql://nobody@/db?host=/nonexistent-corral-socket-dir&port=1")

    with pytest.raises(pytest.fail.Exception, match="cannot create a database"), session_database():
        pass


@pytest.mark.postgres
def test_fresh_database_creates_and_drops_a_database(postgres_url: str) -> None:
    admin = sa.create_engine(postgres_url, poolclass=NullPool)
    try:
        with fresh_database(postgres_url, prefix="corral_helper_") as url:
            name = make_url(url).database
            assert name is not None
            assert name.startswith("corral_helper_")
            assert url.startswith("postgresql+psycopg://")
            probe = sa.create_engine(url, poolclass=NullPool)
            with probe.connect() as conn:
                assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == name
                assert sa.inspect(conn).get_table_names() == []
            probe.dispose()
        with admin.connect() as conn:
            left = conn.execute(sa.text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name})
            assert left.scalar_one() == 0
    finally:
        admin.dispose()


@pytest.mark.postgres
def test_the_session_database_is_fresh_and_named_for_tests(postgres_url: str) -> None:
    name = make_url(postgres_url).database

    assert name is not None
    assert name.startswith("corral_test_")


def test_database_name_prefixes_are_checked() -> None:
    with pytest.raises(ValueError, match="prefix"), fresh_database("postgresql://u@h/db", prefix='x"; DROP'):
        pass
