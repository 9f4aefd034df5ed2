"""A prediction whose response was sent is in the log, even if the server is SIGKILLed the next instant.

A real ``corral serve`` (one process: uvicorn runs inside the ``corral``
process itself, which the test checks against uvicorn's "Started server
process [PID]" line) answers 16 concurrent clients that post 1-, 7- and
40-row predict requests back to back, each on its own keep-alive connection.
About 1.5 s into the burst the test sends SIGKILL to that process from the
clients' own event loop, so requests are in flight when it dies (the test
checks that some were cut off). Then, with nothing shut down cleanly:

* every prediction id of every 200 response any client received is in the
  log (read straight from the database with ``open_database``), with the
  row's deployment and model version;
* the hash chain verifies from the genesis record to the head, gap-free;
* a restarted server on the same database appends after the old head
  (``seq`` continues at head + 1) and the whole chain still verifies.

Runs on SQLite (WAL, ``synchronous=FULL``) and, where a PostgreSQL server can
be had, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest
from server_process import (
    CORRAL,
    ServerProcess,
    _wait_until_ready,
    admin_token,
    auth_headers,
    corral_env,
    open_services,
    server_process,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from corral.audit.records import verify_chain
from corral.storage import open_database
from corral.testing.postgres import fresh_database

pytestmark = pytest.mark.slow

MODEL = "cancer"
DEPLOYMENT = "cancer-api"
CLIENTS = 16
SIZES = (1, 7, 40)  # rows per request, client i sends SIZES[i % 3]
KILL_AFTER = 1.5  # seconds of burst before SIGKILL
MIN_IDS = 200
_STARTED = re.compile(r"Started server process \[(\d+)\]")


@dataclass
class Burst:
    """What the clients saw: every id from a 200 response, and the requests cut off by the kill."""

    received: dict[str, int] = field(default_factory=dict)  # prediction id -> model version that answered
    answered: int = 0
    cut_off: int = 0  # requests sent before the kill that never got a complete response
    refused: list[str] = field(default_factory=list)  # non-200 answers (must not happen)


@pytest.fixture(scope="module")
def fitted(cancer: pd.DataFrame) -> Pipeline:
    features, target = cancer.drop(columns="target"), cancer["target"]
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(features, target)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(
    request: pytest.FixtureRequest, tmp_path: Path, fitted: Pipeline, cancer: pd.DataFrame
) -> Iterator[dict[str, str]]:
    """A CORRAL_HOME with ``cancer`` version 1 as champion behind ``cancer-api``, on SQLite or a fresh PostgreSQL."""
    with ExitStack() as stack:
        settings: dict[str, str] = {}
        if request.param == "postgres":
            server = request.getfixturevalue("postgres_url")
            settings["CORRAL_DATABASE_URL"] = stack.enter_context(fresh_database(server, prefix="corral_durable_"))
        environment = corral_env(tmp_path / "home", **settings)
        services = open_services(environment)
        try:
            services.registry.log_model(fitted, name=MODEL, training_data=cancer, target="target", code_commit="0" * 40)
            services.registry.promote(MODEL, 1)
            services.deployments.create(DEPLOYMENT, model=MODEL)
        finally:
            services.close()
        yield environment


def database_url(env: dict[str, str]) -> str:
    return env.get("CORRAL_DATABASE_URL") or f"sqlite:///{Path(env['CORRAL_HOME']).resolve() / 'corral.db'}"


@contextmanager
def killable_server(env: dict[str, str]) -> Iterator[ServerProcess]:
    """``corral serve`` with one process, started like ``server_process`` but not required to exit 0."""
    with tempfile.TemporaryDirectory(prefix="corral-durability-") as tmp:
        folder = Path(tmp)
        with (folder / "stdout.log").open("wb") as out, (folder / "stderr.log").open("wb") as err:
            process = subprocess.Popen(
                [str(CORRAL), "serve", "--host", "127.0.0.1", "--port", "0", "--workers", "1"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        server = ServerProcess(process, "", folder, 1)
        try:
            server.base_url = _wait_until_ready(server)
            yield server
        finally:
            server.terminate(timeout=5)  # SIGKILLs the group if anything is left


async def burst(server: ServerProcess, rows: list[dict[str, float]], headers: dict[str, str]) -> Burst:
    """CLIENTS clients post as fast as they can; SIGKILL the server KILL_AFTER seconds in; wait for all to fail."""
    seen = Burst()
    killed = asyncio.Event()

    async def client(number: int) -> None:
        size = SIZES[number % len(SIZES)]
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, limits=limits, timeout=20) as http:
            k = 0
            while True:
                start = (number * 37 + k * size) % (len(rows) - size)
                k += 1
                sent_before_kill = not killed.is_set()
                try:
                    response = await http.post(
                        f"/v1/deployments/{DEPLOYMENT}/predict", json={"instances": rows[start : start + size]}
                    )
                    body = response.json()
                except (httpx.TransportError, ValueError):
                    if not killed.is_set():
                        raise
                    seen.cut_off += sent_before_kill  # in flight at the kill, not refused a connection after it
                    return
                if response.status_code != 200:
                    seen.refused.append(f"{response.status_code} {body}")
                    continue
                ids = body["prediction_ids"]
                assert len(ids) == size == len(body["predictions"])
                seen.answered += 1
                seen.received.update((i, body["model"]["version"]) for i in ids)

    async def kill() -> None:
        await asyncio.sleep(KILL_AFTER)
        killed.set()
        os.kill(server.process.pid, signal.SIGKILL)

    await asyncio.wait_for(asyncio.gather(kill(), *(client(i) for i in range(CLIENTS))), 60)
    return seen


async def some_requests(base_url: str, rows: list[dict[str, float]], count: int) -> list[str]:
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=base_url, headers=auth_headers(base_url), timeout=20) as http:
        for k in range(count):
            size = SIZES[k % len(SIZES)]
            response = await http.post(f"/v1/deployments/{DEPLOYMENT}/predict", json={"instances": rows[k : k + size]})
            assert response.status_code == 200, response.text
            ids.extend(response.json()["prediction_ids"])
    return ids


def test_every_answered_prediction_survives_sigkill_and_the_chain_continues(
    env: dict[str, str], cancer: pd.DataFrame
) -> None:
    rows = cancer.drop(columns="target").to_dict(orient="records")
    with killable_server(env) as server:
        started = _STARTED.search(server.log)
        assert started is not None, server.log[-2000:]
        assert int(started.group(1)) == server.process.pid  # the process we kill is the one uvicorn serves in
        began = time.monotonic()
        token = admin_token(env)
        assert token is not None
        seen = asyncio.run(burst(server, rows, {"Authorization": f"Bearer {token}"}))
        assert server.process.wait(timeout=10) == -signal.SIGKILL
        took = time.monotonic() - began

    assert not seen.refused, seen.refused[:5]
    assert len(seen.received) > MIN_IDS, f"only {len(seen.received)} ids in {seen.answered} answers"
    assert seen.cut_off >= 1, "no request was in flight when the server died: the kill was not mid-burst"

    database = open_database(database_url(env), migrate=False)
    try:
        found = database.audit.get_many(list(seen.received))
        missing = sorted(set(seen.received) - set(found))
        assert not missing, f"{len(missing)} of {len(seen.received)} answered ids are not in the log: {missing[:5]}"
        assert all(r.deployment == DEPLOYMENT and r.version == seen.received[i] for i, r in found.items())
        check = verify_chain(database.audit.scan())
        head_seq, head_hash = database.audit.head()
    finally:
        database.close()
    assert check.ok, check
    assert (check.head_seq, check.head_hash) == (head_seq, head_hash)
    assert head_seq >= len(seen.received)  # committed but never answered (cut off in the response) is allowed
    print(
        f"\n{len(seen.received)} ids in {seen.answered} answers over {took:.2f}s, {seen.cut_off} requests cut off "
        f"by SIGKILL; log head {head_seq} ({head_seq - len(seen.received)} recorded but never answered)"
    )

    with server_process(env) as again:
        after = asyncio.run(some_requests(again.base_url, rows, 12))
        assert not again.errors(), again.errors()

    database = open_database(database_url(env), migrate=False)
    try:
        found = database.audit.get_many([*seen.received, *after])
        check = verify_chain(database.audit.scan())
    finally:
        database.close()
    assert set(found) == set(seen.received) | set(after)
    assert min(found[i].seq for i in after) == head_seq + 1  # the restarted server chains on from the old head
    assert check.ok, check
    assert check.head_seq == head_seq + len(after) == check.checked
