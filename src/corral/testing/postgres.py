"""A fresh PostgreSQL database for a test session.

:func:`session_database` creates ``corral_test_<random hex>`` and drops it
(``WITH (FORCE)``) at exit. The server is, in order of preference:

1. the one named by ``CORRAL_TEST_POSTGRES_URL``, a URL of an existing
   database there that serves as the admin connection (the user needs
   ``CREATEDB``), e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``;
2. a private throwaway server: ``initdb`` into a temporary folder and
   ``pg_ctl start`` listening only on a unix socket in that folder, stopped
   and deleted at exit. Binaries come from ``pg_config --bindir``,
   ``/usr/lib/postgresql/*/bin`` or ``PATH``. As root, initdb and pg_ctl run
   as the ``postgres`` user (initdb refuses root).

When neither works the caller's tests are skipped with a message saying why
and how to enable them; under ``CI=true`` they fail instead, so a CI run
never silently loses its PostgreSQL coverage.

pytest is imported only when a skip or failure has to be raised.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

ENV_URL = "CORRAL_TEST_POSTGRES_URL"
_DRIVER = "postgresql+psycopg"
_HOW_TO_ENABLE = (
    f"set {ENV_URL}=postgresql+psycopg://USER@HOST:PORT/DB (a database on a server where USER may CREATE DATABASE), "
    "or install the PostgreSQL server binaries (initdb, pg_ctl) so a private server can be started"
)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be had; the message says why."""


@contextmanager
def session_database() -> Iterator[str]:
    """Yield the SQLAlchemy URL of a fresh database, dropped (and any private server stopped) at exit.

    Raises (through pytest): ``Skipped`` when no server can be had; ``Failed``
    instead under ``CI=true``, or when ``CORRAL_TEST_POSTGRES_URL`` is set but
    unusable. Outside pytest, :class:`PostgresUnavailable`.
    """
    configured = os.environ.get(ENV_URL, "").strip()
    with ExitStack() as stack:
        if configured:
            try:
                admin_url = _psycopg_url(configured).render_as_string(hide_password=False)
            except (sa.exc.ArgumentError, ValueError) as exc:
                _unavailable(f"{ENV_URL}={configured!r} is not a PostgreSQL URL: {exc}", explicit=True)
            where = f"{ENV_URL}={_safe(admin_url)}"
        else:
            try:
                admin_url = stack.enter_context(private_server())
            except PostgresUnavailable as exc:
                _unavailable(f"{ENV_URL} is not set and no private PostgreSQL server could be started: {exc}")
            where = f"the private server at {_safe(admin_url)}"
        try:
            url = stack.enter_context(fresh_database(admin_url))
        except sa.exc.SQLAlchemyError as exc:
            _unavailable(f"cannot create a database on {where}: {_first_line(exc)}", explicit=bool(configured))
        yield url


@contextmanager
def fresh_database(server_url: str, *, prefix: str = "corral_test_") -> Iterator[str]:
    """Create ``<prefix><random hex>`` through ``server_url``; yield its URL; drop it ``WITH (FORCE)`` at exit."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
        raise ValueError(f"database name prefix {prefix!r}: use lowercase letters, digits and '_'")
    admin = _psycopg_url(server_url)
    name = f"{prefix}{secrets.token_hex(6)}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


@contextmanager
def private_server() -> Iterator[str]:
    """Start a throwaway PostgreSQL server; yield an admin URL (database ``postgres``); stop and delete it at exit.

    The server listens only on a unix socket inside its temporary folder,
    trusts local connections and skips fsync (its data is disposable).

    Raises:
        PostgresUnavailable: no binaries, no way to run them, or they failed.
    """
    bindir = _find_bindir()
    as_root = os.geteuid() == 0
    owner = None
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root, and initdb refuses root, but there is no 'postgres' user to run it as"
            ) from None
        if not (shutil.which("runuser") or shutil.which("su")):
            raise PostgresUnavailable("running as root, but neither runuser nor su is there to run initdb as postgres")
    tmp = Path(tempfile.mkdtemp(prefix="corral-pg-"))
    try:
        if owner is not None:
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
        data, log = tmp / "data", tmp / "server.log"
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            as_postgres=as_root,
            what="initdb",
        )
        port = _free_port()
        options = f"-p {port} -k {tmp} -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
        options += " -c full_page_writes=off -c max_connections=100"
        start = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"]
        try:
            _run(start, as_postgres=as_root, what="pg_ctl start")
        except PostgresUnavailable as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(f"{exc}\nserver log:\n{tail}") from None
        try:
            query = {"host": str(tmp), "port": str(port)}
            url = URL.create(_DRIVER, username="postgres", database="postgres", query=query)
            yield url.render_as_string(hide_password=False)
        finally:
            stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop"]
            try:
                _run(stop, as_postgres=as_root, what="pg_ctl stop")
            except PostgresUnavailable as exc:  # pragma: no cover - nothing more to do than say so
                print(f"corral.testing.postgres: could not stop the private server: {exc}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _find_bindir() -> Path:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=_version_key, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "nowhere (no pg_config, no /usr/lib/postgresql/*/bin)"
    raise PostgresUnavailable(f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; looked in {looked}")


def _version_key(path: str) -> tuple[int, ...]:
    parts = Path(path).parent.name.split(".")
    return tuple(int(p) for p in parts if p.isdigit())


def _run(command: Sequence[str], *, as_postgres: bool, what: str) -> None:
    if as_postgres:
        runuser = shutil.which("runuser")
        if runuser:
            command = [runuser, "-u", "postgres", "--", *command]
        else:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd="/")
    except (OSError, subprocess.SubprocessError) as exc:
        raise PostgresUnavailable(f"{what} could not run: {exc}") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise PostgresUnavailable(f"{what} failed (exit {result.returncode}): {output}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _psycopg_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string()}")
    return parsed.set(drivername=_DRIVER)


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _unavailable(reason: str, *, explicit: bool = False) -> NoReturn:
    """Skip loudly, or fail under ``CI=true`` or when the server was asked for explicitly."""
    in_ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    message = f"PostgreSQL tests cannot run: {reason}. To run them, {_HOW_TO_ENABLE}."
    banner = "!" * 78
    print(
        f"\n{banner}\nWARNING (corral.testing.postgres): {message}\n{banner}",
        file=sys.__stderr__ or sys.stderr,
        flush=True,
    )
    try:
        import pytest
    except ImportError:
        raise PostgresUnavailable(message) from None
    if in_ci or explicit:
        why = "CI=true" if in_ci else f"{ENV_URL} is set"
        pytest.fail(f"{message} ({why}, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {message}")
