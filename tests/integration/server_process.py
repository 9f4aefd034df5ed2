"""A real ``corral serve`` process for the server's integration tests.

:func:`server_process` starts the installed ``corral`` command (``corral serve
--port 0``, so the OS picks a free port, read back from uvicorn's startup line
on stderr) in its own process group with the given environment, waits until
every worker has started and ``/v2/health/ready`` answers 200, and at exit
stops the whole group (SIGTERM, then SIGKILL after a grace period) and
checks that the server exited 0.
:func:`running_server` is the same, yielding only the base URL.

Authentication is on, as it is by default: once a server is ready, :func:`auth_headers` gives the
``Authorization`` header with the admin token it wrote to its ``CORRAL_HOME`` on first start (or one made for
the tests when an earlier server on the same database made the first), and :func:`metric` uses it.

stderr and stdout go to files (a pipe nobody reads would fill up and block
the server); :attr:`ServerProcess.log` reads stderr, where every log line
goes, and a server that fails to start raises with its tail.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from corral.app import Services, build_services
from corral.security.bootstrap import read_token_file
from corral.settings import Settings
from corral.testing.auth import bearer

CORRAL = Path(sys.executable).with_name("corral")  # the console script installed next to this interpreter
STARTUP_SECONDS = 60.0
STOP_SECONDS = 30.0
_LISTENING = re.compile(r"Uvicorn running on http://([^:\s]+):(\d+)")
_TOKENS: dict[str, str] = {}  # base URL -> an admin token of that server


def auth_headers(base_url: str) -> dict[str, str]:
    """The ``Authorization`` header with an admin token of the server at ``base_url`` (started by
    :func:`server_process`); empty when that server runs with authentication off."""
    token = _TOKENS.get(base_url.rstrip("/"))
    return bearer(token) if token else {}


def admin_token(env: Mapping[str, str]) -> str | None:
    """An admin token for the installation in ``env``: the one its first server wrote to ``CORRAL_HOME``, else
    (an earlier server on the same database, with another home, made the first) one made now."""
    if env.get("CORRAL_AUTH__ENABLED", "true").strip().lower() in ("false", "0", "no", "off"):
        return None
    path = Path(env.get("CORRAL_AUTH__TOKEN_FILE") or Path(env["CORRAL_HOME"]) / "admin-token")
    if path.exists():
        return read_token_file(path)
    services = open_services(env)
    try:
        return services.tokens.create(f"tests-{secrets.token_hex(4)}", "admin").secret
    finally:
        services.close()


def corral_env(home: Path, **settings: str) -> dict[str, str]:
    """This process's environment with corral pointed at ``home`` (SQLite there unless a database URL is given).

    ``settings`` are extra variables, e.g. ``CORRAL_SERVING__REFRESH_SECONDS="0.2"``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_HOME=str(home), CORRAL_USER="server-tests", OMP_NUM_THREADS="1", **settings)
    return env


def open_services(env: Mapping[str, str]) -> Services:
    """The services (registry, deployments) on the stores the server in ``env`` uses; close them when done."""
    return build_services(
        Settings(home=Path(env["CORRAL_HOME"]), database_url=env.get("CORRAL_DATABASE_URL"), user="server-tests")
    )


def metric(base_url: str, sample: str, **labels: str) -> float:
    """The sum of ``sample`` (e.g. ``corral_inference_exec_count_total``) over series matching ``labels``."""
    text = httpx.get(f"{base_url}/metrics", headers=auth_headers(base_url), timeout=10).raise_for_status().text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def run_cli(env: Mapping[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real ``corral`` command; fail with its output unless it exits 0."""
    done = subprocess.run(
        [str(CORRAL), *args], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"corral {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@dataclass
class ServerProcess:
    """A running ``corral serve``."""

    process: subprocess.Popen[bytes]
    base_url: str
    folder: Path  # holds stderr.log and stdout.log
    workers: int

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header with an admin token of this server."""
        return auth_headers(self.base_url)

    @property
    def log(self) -> str:
        """Everything the server wrote to stderr so far."""
        return (self.folder / "stderr.log").read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return (self.folder / "stdout.log").read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The stderr lines that are JSON objects (all of them, when logging works as designed)."""
        records = []
        for line in self.log.splitlines():
            with suppress(json.JSONDecodeError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def errors(self) -> list[dict[str, Any]]:
        """Records logged at level error or worse (a failed refresh, an unexpected exception...)."""
        return [r for r in self.log_records() if r.get("level") in ("error", "critical")]

    def terminate(self, timeout: float = STOP_SECONDS) -> int:
        """SIGTERM the group, wait for the main process; SIGKILL everything left after ``timeout``."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            code = self.process.wait(timeout=10)
        _signal_group(self.process.pid, signal.SIGKILL)  # any worker that outlived the supervisor
        return code


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@contextmanager
def server_process(env: Mapping[str, str], *, workers: int = 1) -> Iterator[ServerProcess]:
    """Start ``corral serve`` with ``env``; yield it once ready; stop its process group at exit."""
    with tempfile.TemporaryDirectory(prefix="corral-serve-") as tmp:
        folder = Path(tmp)
        with (folder / "stdout.log").open("wb") as out, (folder / "stderr.log").open("wb") as err:
            process = subprocess.Popen(
                [str(CORRAL), "serve", "--host", "127.0.0.1", "--port", "0", "--workers", str(workers)],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: stopping it stops every worker
            )
        server = ServerProcess(process, "", folder, workers)
        try:
            server.base_url = _wait_until_ready(server)
            token = admin_token(env)
            if token:
                _TOKENS[server.base_url] = token
            yield server
        except BaseException:
            server.terminate()
            raise
        code = server.terminate()
        assert code == 0, f"corral serve exited {code} when stopped with SIGTERM:\n{server.log[-3000:]}"


@contextmanager
def running_server(env: Mapping[str, str], *, workers: int = 1) -> Iterator[str]:
    """Start ``corral serve`` with ``env``; yield its base URL (``http://127.0.0.1:PORT``) once ready."""
    with server_process(env, workers=workers) as server:
        yield server.base_url


def _wait_until_ready(server: ServerProcess) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    base_url = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"corral serve exited {server.process.returncode} while starting:\n{server.log[-4000:]}")
        log = server.log
        if not base_url and (found := _LISTENING.search(log)):
            base_url = f"http://{found.group(1)}:{found.group(2)}"
        if base_url and log.count("Application startup complete") >= server.workers:
            with suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/v2/health/ready", timeout=2).status_code == 200:
                    return base_url
        time.sleep(0.05)
    raise RuntimeError(f"corral serve was not ready after {STARTUP_SECONDS:g}s:\n{server.log[-4000:]}")
