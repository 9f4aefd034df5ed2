"""Promote and roll back under concurrent traffic against a real ``corral serve``: not one request fails.

Eight clients, each on its own keep-alive connection (so each talks to one
server process), score rows in a loop while the real ``corral models promote``
and ``corral models rollback`` run against the same store. Every answer names
the version that produced it and must equal what that version computes in
this process; each connection must see old → new → old with no interleaving.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from server_process import CORRAL, ServerProcess, auth_headers, corral_env, open_services, server_process
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

pytestmark = pytest.mark.slow

MODEL = "cancer"
DEPLOYMENT = "cancer-api"
REFRESH = "0.2"
CLIENTS = 8
BIG_CLIENTS = 4  # clients 0-3 send BIG requests: over 256 rows, validated off the event loop (across an await)
SMALL, BIG = 3, 300  # rows per request
MAX_REQUESTS = 20_000  # bounds the traffic whatever happens
PHASE_SECONDS = 15.0  # longest wait for any one phase (a switch to be seen); failing it fails the test
PAUSE = 0.02  # seconds each client waits between requests, leaving the CLI some CPU on a small machine
SWITCH_BOUND = 2.0  # seconds from the CLI returning to the first answer from the new version


def rows_per_request(client: int) -> int:
    return BIG if client < BIG_CLIENTS else SMALL


@dataclass(frozen=True)
class Expected:
    """What each registered version computes in this process, for every row of ``rows``."""

    rows: pd.DataFrame
    predictions: dict[int, np.ndarray]
    probabilities: dict[int, np.ndarray]


@dataclass
class Answer:
    client: int
    start: int  # first row of the request in Expected.rows
    sent: float
    received: float
    status: int | None = None
    version: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def __str__(self) -> str:
        outcome = f"version {self.version}" if self.version is not None else f"{self.status} {self.error}"
        return f"client {self.client}, rows {self.start}+{rows_per_request(self.client)}: {outcome}"


@dataclass
class Traffic:
    """Concurrent clients scoring rows until told to stop (or a bound is hit)."""

    base_url: str
    expected: Expected
    deployment: str = DEPLOYMENT
    answers: list[Answer] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run_client(self, client: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        headers = auth_headers(self.base_url)
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, limits=limits, timeout=30) as http:
            k = 0
            while not self.stop.is_set() and len(self.answers) < MAX_REQUESTS:
                size = rows_per_request(client)
                start = (client * 71 + k * 13) % (len(self.expected.rows) - size)
                k += 1
                rows = self.expected.rows.iloc[start : start + size].to_dict(orient="records")
                answer = Answer(client, start, sent=time.monotonic(), received=0.0)
                try:
                    response = await http.post(f"/v1/deployments/{self.deployment}/predict", json={"instances": rows})
                    answer.status = response.status_code
                    answer.body = response.json()
                    if answer.status == 200:
                        answer.version = answer.body["model"]["version"]
                    else:
                        answer.error = str(answer.body.get("error"))
                except Exception as exc:  # every failure is recorded and fails the test afterwards
                    answer.error = f"{type(exc).__name__}: {exc}"
                answer.received = time.monotonic()
                self.answers.append(answer)
                await asyncio.sleep(PAUSE)

    def seen(self, version: int, *, after: float, per_client: int = 3) -> bool:
        """Whether every client got at least ``per_client`` answers from ``version`` sent after ``after``."""
        counts = [0] * CLIENTS
        for a in self.answers:
            if a.version == version and a.sent > after:
                counts[a.client] += 1
        return min(counts) >= per_client

    def first(self, version: int, *, after: float) -> float:
        """When the first answer from ``version`` to a request sent after ``after`` arrived."""
        return min(a.received for a in self.answers if a.version == version and a.sent > after)


async def wait_for(condition: Callable[[], bool], what: str, traffic: Traffic) -> None:
    deadline = time.monotonic() + PHASE_SECONDS
    while not condition():
        if time.monotonic() > deadline or len(traffic.answers) >= MAX_REQUESTS:
            raise AssertionError(f"gave up waiting for {what} ({len(traffic.answers)} answers so far)")
        await asyncio.sleep(0.02)


async def cli(env: dict[str, str], *args: str) -> float:
    """Run the real ``corral`` command to completion; return when it returned."""
    process = await asyncio.create_subprocess_exec(
        str(CORRAL), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    returned = time.monotonic()
    assert process.returncode == 0, f"corral {' '.join(args)} exited {process.returncode}: {out!r} {err!r}"
    return returned


def under_traffic(
    base_url: str, expected: Expected, scenario: Callable[[Traffic], Awaitable[None]], deployment: str = DEPLOYMENT
) -> Traffic:
    """Run ``scenario`` while CLIENTS clients send requests; stop them when it ends (or fails)."""

    async def main() -> Traffic:
        traffic = Traffic(base_url, expected, deployment)
        clients = [asyncio.create_task(traffic.run_client(i)) for i in range(CLIENTS)]
        try:
            await wait_for(
                lambda: all(any(a.client == i for a in traffic.answers) for i in range(CLIENTS)), "traffic", traffic
            )
            await scenario(traffic)
        finally:
            traffic.stop.set()
            await asyncio.gather(*clients)
        return traffic

    return asyncio.run(asyncio.wait_for(main(), 120))


def check_answers(traffic: Traffic) -> None:
    """Zero failures, and every answer is exactly what the version it names computes."""
    failed = [a for a in traffic.answers if a.error or a.status != 200]
    assert not failed, f"{len(failed)} of {len(traffic.answers)} requests failed: " + "; ".join(map(str, failed[:5]))
    expected = traffic.expected
    for a in traffic.answers:
        assert a.version in expected.predictions, str(a)
        rows = slice(a.start, a.start + rows_per_request(a.client))
        assert a.body["predictions"] == expected.predictions[a.version][rows].tolist(), str(a)
        np.testing.assert_allclose(a.body["probabilities"], expected.probabilities[a.version][rows], rtol=1e-9)
        assert a.body["deployment"] == traffic.deployment


def versions_per_client(traffic: Traffic) -> dict[int, list[int | None]]:
    """Each client's versions in the order its requests were answered, runs collapsed: [1, 2, 1]."""
    return {i: [v for v, _ in groupby(a.version for a in traffic.answers if a.client == i)] for i in range(CLIENTS)}


# -- fixtures ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    model: Pipeline
    training_data: pd.DataFrame


@pytest.fixture(scope="module")
def trained(cancer: pd.DataFrame) -> tuple[list[Version], Expected]:
    """Three models to register as versions 1, 2, 3, and what each computes on every row.

    Versions 1 and 2 disagree on most rows (2 learned flipped labels); 3 is
    there to have its artifact corrupted.
    """
    features, target = cancer.drop(columns="target"), cancer["target"]
    versions, expected = [], Expected(features, {}, {})
    for number, (c, labels) in enumerate([(1.0, target), (0.01, 1 - target), (0.1, target)], start=1):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(features, labels)
        versions.append(Version(model, features.assign(target=labels)))
        expected.predictions[number] = model.predict(features)
        expected.probabilities[number] = model.predict_proba(features)
    assert (expected.predictions[1] != expected.predictions[2]).mean() > 0.5
    return versions, expected


@pytest.fixture(scope="module")
def expected(trained: tuple[list[Version], Expected]) -> Expected:
    return trained[1]


def register(env: dict[str, str], model: str, deployment: str, versions: list[Version]) -> None:
    """Register ``versions`` as 1, 2, ... of ``model``, point champion at 1 and deploy it."""
    services = open_services(env)
    try:
        for version in versions:
            services.registry.log_model(
                version.model, name=model, training_data=version.training_data, target="target", code_commit="0" * 40
            )
        services.registry.promote(model, 1)
        services.deployments.create(deployment, model=model)
    finally:
        services.close()


@pytest.fixture(scope="module")
def template(trained: tuple[list[Version], Expected], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CORRAL_HOME with versions 1, 2, 3 of ``cancer`` (champion: 1) and its deployment; servers get copies."""
    home = tmp_path_factory.mktemp("zero-downtime") / "template"
    register(corral_env(home), MODEL, DEPLOYMENT, trained[0])
    return home


def copy_of(template: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> dict[str, str]:
    home = tmp_path_factory.mktemp(name) / "home"
    shutil.copytree(template, home)
    return corral_env(home, CORRAL_SERVING__REFRESH_SECONDS=REFRESH)


@pytest.fixture(scope="module")
def one_worker(
    template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    env = copy_of(template, tmp_path_factory, "one-worker")
    with server_process(env) as server:
        yield server, env


# -- the swap ------------------------------------------------------------------------------------------------------


def promote_then_rollback(
    server: ServerProcess, env: dict[str, str], expected: Expected
) -> tuple[Traffic, dict[str, float]]:
    """Promote 2 under traffic, wait until every client and worker switched; roll back, wait again."""
    marks: dict[str, float] = {}

    def switched(version: int, times: int) -> Callable[[], bool]:
        line = f"deployment {DEPLOYMENT} now serves {MODEL}/{version}"
        return lambda: server.log.count(line) >= times * server.workers

    async def scenario(traffic: Traffic) -> None:
        marks["promoting"] = time.monotonic()
        marks["promote"] = await cli(env, "models", "promote", MODEL, "2", "--reason", "canary looked good")
        await wait_for(lambda: traffic.seen(2, after=marks["promote"]) and switched(2, 1)(), "version 2", traffic)
        marks["rolling back"] = time.monotonic()
        marks["rollback"] = await cli(env, "models", "rollback", MODEL, "--reason", "alert storm")
        await wait_for(
            lambda: traffic.seen(1, after=marks["rollback"]) and switched(1, 2)(), "version 1 again", traffic
        )

    traffic = under_traffic(server.base_url, expected, scenario)
    return traffic, marks


def test_promote_and_rollback_under_traffic_lose_no_request(
    one_worker: tuple[ServerProcess, dict[str, str]], expected: Expected
) -> None:
    server, env = one_worker
    traffic, marks = promote_then_rollback(server, env, expected)

    check_answers(traffic)
    assert not server.errors(), server.errors()
    assert all(v == [1, 2, 1] for v in versions_per_client(traffic).values()), versions_per_client(traffic)
    # one process swaps with one assignment: once any client got version 2, every later request gets it
    first_new = traffic.first(2, after=0)
    first_back = traffic.first(1, after=marks["rollback"])
    assert {a.version for a in traffic.answers if first_new < a.sent and a.received < marks["rolling back"]} == {2}
    assert {a.version for a in traffic.answers if a.sent > first_back} == {1}

    to_new, back = first_new - marks["promote"], first_back - marks["rollback"]
    print(
        f"\none worker: first answer from version 2 {to_new:+.3f}s after `promote` returned "
        f"({first_new - marks['promoting']:.3f}s after it started); from version 1 {back:+.3f}s after `rollback` "
        f"returned ({first_back - marks['rolling back']:.3f}s after it started); {len(traffic.answers)} requests"
    )
    assert to_new < SWITCH_BOUND and back < SWITCH_BOUND


def test_a_corrupted_version_never_takes_traffic(
    one_worker: tuple[ServerProcess, dict[str, str]], expected: Expected
) -> None:
    server, env = one_worker
    services = open_services(env)
    try:
        serving = services.registry.resolve(f"{MODEL}@champion").version
        sha = services.registry.get_version(MODEL, 3).artifact_sha256
    finally:
        services.close()
    blob = Path(env["CORRAL_HOME"]) / "artifacts" / "sha256" / sha[:2] / sha
    blob.write_bytes(bytes(b ^ 0xFF for b in blob.read_bytes()))  # same size, every byte wrong

    seen: dict[str, Any] = {}

    async def scenario(traffic: Traffic) -> None:
        promoted = await cli(env, "models", "promote", MODEL, "3")
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=10) as http:
            for _ in range(int(PHASE_SECONDS / 0.05)):
                entries = (await http.post("/v2/repository/index")).json()
                seen.update(next(e for e in entries if e["name"] == DEPLOYMENT))
                if "failed to load" in seen["reason"]:
                    break
                await asyncio.sleep(0.05)
        await wait_for(lambda: traffic.seen(serving, after=promoted + 2 * float(REFRESH)), "more traffic", traffic)

    try:
        traffic = under_traffic(server.base_url, expected, scenario)
    finally:
        services = open_services(env)
        try:
            services.registry.promote(MODEL, serving, reason="put back after the corrupted version")
        finally:
            services.close()

    check_answers(traffic)
    assert {a.version for a in traffic.answers} == {serving}
    assert seen["state"] == "READY" and seen["version"] == str(serving)  # the old version kept serving...
    assert f"{MODEL}/3 failed to load" in seen["reason"]  # ...and the index says why the new one does not
    assert "ArtifactIntegrityError" in seen["reason"]


def test_every_worker_process_switches(
    template: Path, expected: Expected, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = copy_of(template, tmp_path_factory, "two-workers")
    with server_process(env, workers=2) as server:
        traffic, marks = promote_then_rollback(server, env, expected)
        log, errors = server.log, server.errors()

    check_answers(traffic)
    assert not errors, errors
    # each connection stays on one process: each sees old → new → old, never back and forth
    assert all(v == [1, 2, 1] for v in versions_per_client(traffic).values()), versions_per_client(traffic)
    assert log.count(f"now serves {MODEL}/2") == 2  # both processes took version 2...
    assert log.count(f"now serves {MODEL}/1") == 4  # ...and version 1 at startup and again after the rollback
    to_new = traffic.first(2, after=0) - marks["promote"]
    print(
        f"\ntwo workers: first answer from version 2 {to_new:+.3f}s after `promote` returned "
        f"({traffic.first(2, after=0) - marks['promoting']:.3f}s after it started); {len(traffic.answers)} requests"
    )
    assert to_new < SWITCH_BOUND


# -- PostgreSQL ----------------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_server_on_postgres_follows_a_promote(
    postgres_url: str, trained: tuple[list[Version], Expected], tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]  # the session's database is shared: names of our own
    model, deployment = f"pg-cancer-{suffix}", f"pg-api-{suffix}"
    env = corral_env(tmp_path / "home", CORRAL_DATABASE_URL=postgres_url, CORRAL_SERVING__REFRESH_SECONDS=REFRESH)
    versions, expected = trained
    register(env, model, deployment, versions[:2])

    async def scenario(traffic: Traffic) -> None:
        promoted = await cli(env, "models", "promote", model, "2")
        await wait_for(lambda: traffic.seen(2, after=promoted), "version 2", traffic)

    with server_process(env) as server:
        traffic = under_traffic(server.base_url, expected, scenario, deployment=deployment)

    check_answers(traffic)
    assert all(v == [1, 2] for v in versions_per_client(traffic).values()), versions_per_client(traffic)
