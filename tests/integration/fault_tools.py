"""Tools of the fault suite (``test_faults.py``) and of ``scripts/kill_loop.py``: real ``corral serve`` processes
started, loaded with concurrent predictions and killed, a PostgreSQL server of their own to stop and start,
and the check of the prediction log that every fault ends with.

The one invariant every fault is judged by: **a prediction id the client received in a 200 response is in the
log exactly once, and the hash chain verifies** (:func:`check_log`). Rows recorded but never answered (the
server died between the commit and the response) are allowed; answered but not recorded never is.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
from server_process import CORRAL, ServerProcess, _wait_until_ready, admin_token, open_services
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from corral.audit_log import verify_log
from corral.testing.auth import bearer
from corral.testing.postgres import _find_bindir, _free_port, _run

MODEL = "cancer"
DEPLOYMENT = "cancer-api"
SIZES = (1, 7, 40)  # rows per request: client i sends SIZES[i % 3]


def cancer_frame() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return frame


def fit(cancer: pd.DataFrame) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(cancer.drop(columns="target"), cancer["target"])


def install(env: Mapping[str, str], fitted: Pipeline, cancer: pd.DataFrame, *, versions: int = 1) -> None:
    """Register ``cancer`` (``versions`` times), make version 1 the champion, deploy it as ``cancer-api``."""
    services = open_services(env)
    try:
        for _ in range(versions):
            services.registry.log_model(fitted, name=MODEL, training_data=cancer, target="target", code_commit="0" * 40)
        services.registry.promote(MODEL, 1)
        services.deployments.create(DEPLOYMENT, model=MODEL)
    finally:
        services.close()


def headers(env: Mapping[str, str]) -> dict[str, str]:
    """The admin token's header for the installation in ``env`` (after its first server started)."""
    token = admin_token(env)
    return bearer(token) if token else {}


# -- servers that may die ------------------------------------------------------------------------------------------


def spawn(env: Mapping[str, str], *, workers: int = 1) -> ServerProcess:
    """Start ``corral serve`` in its own process group; return at once (:func:`ready` waits for it)."""
    folder = Path(tempfile.mkdtemp(prefix="corral-fault-"))
    with (folder / "stdout.log").open("wb") as out, (folder / "stderr.log").open("wb") as err:
        process = subprocess.Popen(
            [str(CORRAL), "serve", "--host", "127.0.0.1", "--port", "0", "--workers", str(workers)],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    return ServerProcess(process, "", folder, workers)


def ready(server: ServerProcess) -> ServerProcess:
    """Wait until ``server`` answers ``/v2/health/ready`` (raises with its log if it exits or takes a minute)."""
    if not server.base_url:
        server.base_url = _wait_until_ready(server)
    return server


def discard(server: ServerProcess) -> None:
    """Stop whatever is left of ``server`` and delete its logs (kept when ``CORRAL_FAULT_KEEP_LOGS`` is set)."""
    if server.process.poll() is None:
        server.terminate(timeout=10)
    if os.environ.get("CORRAL_FAULT_KEEP_LOGS"):
        print(f"server {server.process.pid} logged to {server.folder}")
    else:
        shutil.rmtree(server.folder, ignore_errors=True)


@contextmanager
def serving(env: Mapping[str, str], *, workers: int = 1) -> Iterator[ServerProcess]:
    """A server for the duration of the block, stopped (SIGTERM, SIGKILL if it lingers) at exit, whatever it
    went through; its log is kept until then for the test's messages."""
    server = spawn(env, workers=workers)
    try:
        yield ready(server)
    finally:
        discard(server)


# -- load ----------------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float  # monotonic seconds
    took: float
    status: int  # 0: no HTTP answer (connection refused, reset, timed out)
    body: str = ""


@dataclass
class Seen:
    """What the clients saw."""

    acknowledged: dict[str, int] = field(default_factory=dict)  # prediction id of a 200 answer -> its version
    answers: list[Answer] = field(default_factory=list)
    cut_off: int = 0  # requests sent before a kill that never got a complete response

    @property
    def answered(self) -> int:
        return sum(a.status == 200 for a in self.answers)

    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.answers)

    def refused(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]

    def slowest(self) -> float:
        return max((a.took for a in self.answers), default=0.0)


async def traffic(
    base_url: str,
    auth: Mapping[str, str],
    rows: list[dict[str, float]],
    *,
    clients: int,
    stop: asyncio.Event,
    killed: asyncio.Event | None = None,
    seen: Seen | None = None,
    pause: float = 0.0,
    timeout: float = 60.0,
    deployment: str = DEPLOYMENT,
) -> Seen:
    """``clients`` clients, each on its own keep-alive connection, post predictions back to back until ``stop``.

    A transport error after ``killed`` is set ends that client (the server is gone); before it, it is recorded
    as an answer with status 0. Every 200's prediction ids go to ``seen.acknowledged``.
    """
    seen = seen if seen is not None else Seen()

    async def client(number: int) -> None:
        size = SIZES[number % len(SIZES)]
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base_url, headers=dict(auth), limits=limits, timeout=timeout) as http:
            k = 0
            while not stop.is_set():
                start = (number * 37 + k * size) % (len(rows) - size)
                k += 1
                before_kill = killed is None or not killed.is_set()
                sent = time.monotonic()
                try:
                    response = await http.post(
                        f"/v1/deployments/{deployment}/predict", json={"instances": rows[start : start + size]}
                    )
                    body = response.json()
                except (httpx.TransportError, ValueError) as exc:
                    if killed is not None and killed.is_set():
                        seen.cut_off += before_kill
                        return
                    seen.answers.append(Answer(sent, time.monotonic() - sent, 0, f"{type(exc).__name__}: {exc}"))
                    await asyncio.sleep(0.05)  # nothing listens (yet): do not spin
                    continue
                took = time.monotonic() - sent
                if response.status_code != 200:
                    seen.answers.append(Answer(sent, took, response.status_code, response.text[:500]))
                else:
                    ids = body["prediction_ids"]
                    assert len(ids) == size == len(body["predictions"]), body
                    seen.answers.append(Answer(sent, took, 200))
                    seen.acknowledged.update((i, int(body["model"]["version"])) for i in ids)
                if pause:
                    await asyncio.sleep(pause)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return seen


async def burst_and_kill(
    server: ServerProcess,
    auth: Mapping[str, str],
    rows: list[dict[str, float]],
    *,
    clients: int,
    kill_within: float,
    rng: random.Random,
) -> tuple[Seen, float]:
    """Clients post as fast as they can; once ``clients`` answers came back (the burst is on), the server's
    process group is SIGKILLed after a random ``0..kill_within`` seconds. Returns what they saw and the delay."""
    seen, stop, killed = Seen(), asyncio.Event(), asyncio.Event()
    delay = rng.uniform(0.0, kill_within)

    async def killer() -> None:
        try:
            deadline = time.monotonic() + 60
            while seen.answered < clients and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            await asyncio.sleep(delay)
        finally:
            killed.set()
            stop.set()
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(server.process.pid, signal.SIGKILL)

    await asyncio.wait_for(
        asyncio.gather(
            killer(), traffic(server.base_url, auth, rows, clients=clients, stop=stop, killed=killed, seen=seen)
        ),
        120,
    )
    return seen, delay


# -- the kill loop -------------------------------------------------------------------------------------------------


@dataclass
class Round:
    number: int
    cold: bool  # no other server was up at the kill: the next one opened the database after its writer died
    delay: float  # seconds from the burst answering to the SIGKILL
    acknowledged: int
    answered: int
    cut_off: int
    refused: list[str]
    restart: float  # seconds from the kill to the next server answering ready


@dataclass
class KillLoop:
    rounds: list[Round] = field(default_factory=list)
    acknowledged: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        ids = len(self.acknowledged)
        answered = sum(r.answered for r in self.rounds)
        cut = sum(r.cut_off for r in self.rounds)
        cold = sum(r.cold for r in self.rounds)
        restarts = sorted(r.restart for r in self.rounds)
        median = restarts[len(restarts) // 2] if restarts else 0.0
        return (
            f"{len(self.rounds)} SIGKILLs ({cold} followed by a cold start) in {self.seconds:.1f}s: {ids} "
            f"acknowledged prediction ids in {answered} answers, {cut} requests cut off by the kills; restart to "
            f"ready: median {median:.1f}s, longest {max(restarts, default=0.0):.1f}s"
        )


def kill_loop(
    env: Mapping[str, str],
    rows: list[dict[str, float]],
    *,
    iterations: int,
    rng: random.Random,
    clients: int = 8,
    kill_within: float = 0.6,
    ahead: int = 2,
    cold_every: int = 5,
    report: Callable[[Round], None] | None = None,
) -> KillLoop:
    """``iterations`` rounds of: a burst from ``clients`` clients, SIGKILL of the server's process group at a
    random moment in it, the next server on the same store.

    A server's start costs seconds of CPU (imports, mostly), so up to ``ahead`` next servers are started
    while a burst runs; every ``cold_every``-th round (and the last) is cold instead: no other server is up
    when it is killed, and the next one opens a database whose only writer died without closing it.
    ``report(round)`` is called after each round. After the last kill one more server is started and stopped
    cleanly, as an operator would, and the caller checks the log (:func:`check_log`) with
    :attr:`KillLoop.acknowledged`.
    """
    result = KillLoop()
    began = time.monotonic()
    servers: dict[int, ServerProcess] = {1: spawn(env)}
    cold = {r for r in range(1, iterations + 1) if r % cold_every == 0 or r == iterations}
    try:
        auth: dict[str, str] | None = None
        for number in range(1, iterations + 1):
            if number not in servers:
                servers[number] = spawn(env)
            current = ready(servers[number])
            auth = auth if auth is not None else headers(env)
            wall = min(c for c in cold if c >= number)  # S(wall + 1) starts only once S(wall) is dead
            for later in range(number + 1, min(number + ahead, wall) + 1):
                if later not in servers:
                    servers[later] = spawn(env)
            seen, delay = asyncio.run(
                burst_and_kill(current, auth, rows, clients=clients, kill_within=kill_within, rng=rng)
            )
            status = current.process.wait(timeout=30)
            killed_at = time.monotonic()
            if status != -signal.SIGKILL:
                raise AssertionError(f"the server exited {status} before the kill:\n{current.log[-3000:]}")
            discard(servers.pop(number))
            if number + 1 not in servers:
                servers[number + 1] = spawn(env)
            ready(servers[number + 1])  # after the last kill too: the server an operator would start
            result.acknowledged.update(seen.acknowledged)
            done = Round(
                number,
                number in cold,
                delay,
                len(seen.acknowledged),
                seen.answered,
                seen.cut_off,
                [f"{a.status} {a.body}" for a in seen.refused()],
                time.monotonic() - killed_at,
            )
            result.rounds.append(done)
            if report is not None:
                report(done)
        # it picks up what the last killed one left (a checkpoint stored but not written out, say) and stops
        recovery = servers[iterations + 1]
        if (code := recovery.terminate()) != 0:
            raise AssertionError(f"the server after the last kill exited {code}:\n{recovery.log[-3000:]}")
    finally:
        for server in servers.values():
            discard(server)
    result.seconds = time.monotonic() - began
    return result


# -- the log -------------------------------------------------------------------------------------------------------


@dataclass
class LogCheck:
    records: int  # answered rows in the log (role primary), however many times each
    head: int
    missing: list[str]  # acknowledged, not in the log
    duplicated: list[str]  # in the log more than once
    wrong_version: list[str]  # recorded with another version than the answer named
    verified: bool
    verify_report: str

    def problems(self) -> str:
        return (
            f"{len(self.missing)} acknowledged ids missing {self.missing[:5]}, {len(self.duplicated)} recorded more "
            f"than once {self.duplicated[:5]}, {len(self.wrong_version)} with another version "
            f"{self.wrong_version[:5]}; chain: {self.verify_report}"
        )

    @property
    def ok(self) -> bool:
        return self.verified and not (self.missing or self.duplicated or self.wrong_version)


def check_log(env: Mapping[str, str], acknowledged: Mapping[str, int]) -> LogCheck:
    """Every acknowledged id in the log exactly once with the version that answered, and the chain verified
    (against the signed checkpoints too), read through a fresh set of services."""
    services = open_services(env)
    try:
        audit = services.database.audit
        found = audit.get_many(list(acknowledged))
        counts = Counter(r.prediction_id for r in audit.scan() if r.role != "shadow")
        report = verify_log(services)
        head, _ = audit.head()
    finally:
        services.close()
    return LogCheck(
        records=sum(counts.values()),
        head=head,
        missing=sorted(set(acknowledged) - set(found)),
        duplicated=sorted(i for i, n in counts.items() if n > 1),
        wrong_version=sorted(i for i, r in found.items() if r.version != acknowledged[i]),
        verified=report.ok,
        verify_report=str(report),
    )


# -- a PostgreSQL server of the test's own -------------------------------------------------------------------------


@dataclass
class Postgres:
    """A throwaway PostgreSQL server (the machine's own binaries, durable settings: ``fsync`` and synchronous
    commit on) listening on 127.0.0.1, which a test may stop and start without touching anyone else's."""

    bindir: Path
    folder: Path
    port: int
    as_postgres: bool

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str, what: str) -> None:
        _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), *args],
            as_postgres=self.as_postgres,
            what=what,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=60"
        self._ctl("-l", str(self.folder / "server.log"), "-w", "-t", "60", "-o", options, "start", what="pg_ctl start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "-t", "60", "stop", what="pg_ctl stop")

    def is_up(self) -> bool:
        with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def throwaway_postgres() -> Iterator[Postgres]:
    """initdb a server into a temporary folder, start it, yield it; stop it and delete everything at exit.

    Raises:
        corral.testing.postgres.PostgresUnavailable: no binaries, or they could not run.
    """
    import pwd

    bindir = _find_bindir()
    as_root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="corral-fault-pg-"))
    try:
        if as_root:
            owner = pwd.getpwnam("postgres")
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        init = [str(bindir / "initdb"), "-D", str(folder / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        _run([*init, "--locale=C", "--no-sync"], as_postgres=as_root, what="initdb")
        server = Postgres(bindir, folder, _free_port(), as_root)
        server.start()
        try:
            yield server
        finally:
            with suppress(Exception):
                server.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
