"""The fault suite: a real ``corral serve`` is killed, loses its database or its disk, runs models that crash or
hang, is raced by promotions, and is handed a corrupted artifact. After each fault, every prediction a client
received in a 200 response is in the prediction log exactly once and the hash chain verifies
(:func:`fault_tools.check_log`); while the log cannot be written, predictions are refused with 503, and the
server recovers on its own once the store is back.

1. SIGKILL of the server's process group at a random moment in a burst of concurrent predictions, 20 times
   on one SQLite store (``scripts/kill_loop.py`` runs the longer loop, on SQLite or PostgreSQL).
2. PostgreSQL stopped and started again under load (a server of the test's own, so no other test loses its
   connections), then a write error injected by a trigger on the prediction table.
3. The store's disk full: the whole ``CORRAL_HOME`` on a 16 MiB tmpfs filled by a filler file (where
   ``mount`` is permitted; otherwise the injected write error of 2, on PostgreSQL, stands in for it).
4. A model that kills its isolated worker (503) and one that sleeps past its timeout (504 naming the
   deployment), through HTTP; the server stays healthy and other deployments answer meanwhile.
5. 50 concurrent promote and rollback calls on a two-process server: no 5xx, each answer names the version
   it set, and the alias history replays to the alias; the two races it found (a rollback decided before the
   alias went A→B→A, a promotion to the current version while another process moves it) are replayed
   deterministically on SQLite and PostgreSQL.
6. One byte of a version's stored artifact flipped: promoting it leaves the old version serving and the
   deployment's status names the integrity failure.

The seed of the random kill moments (and of the racing calls' order) is printed; ``CORRAL_FAULT_SEED``
repeats a run, ``CORRAL_FAULT_KEEP_LOGS=1`` keeps every server's log and prints where.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from fault_tools import (
    DEPLOYMENT,
    MODEL,
    Answer,
    Postgres,
    Seen,
    check_log,
    fit,
    headers,
    install,
    kill_loop,
    serving,
    throwaway_postgres,
    traffic,
)
from moody import MODELS, SIGNATURE, moody
from server_process import ServerProcess, corral_env, open_services
from sklearn.pipeline import Pipeline

from corral.errors import ConflictError
from corral.isolation.environments import Environments
from corral.registry.entities import AliasAction
from corral.registry.service import Registry
from corral.serving.entities import ExecutionPolicy
from corral.testing.postgres import PostgresUnavailable, _unavailable, fresh_database

pytestmark = pytest.mark.slow

KILLS = 20  # SIGKILLs in make test; scripts/kill_loop.py runs as many as asked
HANG_BOUND = 10.0  # no request waits longer than this, whatever the store does
RECOVERY_BOUND = 10.0  # seconds from the store's return to the first prediction answered again
REFUSALS = 8  # consecutive 503s that show the server refuses while the store is broken
SEED = int(os.environ.get("CORRAL_FAULT_SEED") or random.randrange(2**32))


@pytest.fixture(scope="module")
def fitted(cancer: pd.DataFrame) -> Pipeline:
    return fit(cancer)


@pytest.fixture(scope="module")
def rows(cancer: pd.DataFrame) -> list[dict[str, float]]:
    records: list[dict[str, float]] = cancer.drop(columns="target").to_dict(orient="records")
    return records


# -- 1. SIGKILL during bursts --------------------------------------------------------------------------------------


@pytest.mark.timeout(900)  # 20 server starts: about 90 s on an idle 2-core machine, much more on a busy one
def test_sigkill_during_bursts_loses_no_acknowledged_prediction(
    tmp_path: Path, fitted: Pipeline, cancer: pd.DataFrame, rows: list[dict[str, float]]
) -> None:
    env = corral_env(tmp_path / "home")
    install(env, fitted, cancer)

    loop = kill_loop(
        env, rows, iterations=KILLS, rng=random.Random(SEED), clients=8, kill_within=0.6, ahead=2, cold_every=5
    )
    check = check_log(env, loop.acknowledged)

    print(
        f"\n{loop.summary()}; {check.records - len(loop.acknowledged)} rows recorded but never answered (seed {SEED})"
    )
    assert len(loop.rounds) == KILLS
    for done in loop.rounds:
        assert not done.refused, f"round {done.number} (seed {SEED}): {done.refused[:3]}"
        assert done.answered >= 8, done  # killed once the burst was answering (8 answers back): mid-burst
    # Requests were in flight at most kills (a busy machine may run the kill just as the server has answered
    # everyone and the clients have not yet sent again)
    assert sum(done.cut_off >= 1 for done in loop.rounds) >= KILLS // 2, loop.rounds
    assert check.ok, f"seed {SEED}: {check.problems()}"
    assert check.records >= len(loop.acknowledged)


# -- faults of the store: the server refuses while it lasts and recovers on its own after ---------------------------


@dataclass
class Outage:
    seen: Seen
    broke: float  # monotonic: breaking the store began here...
    broken: float  # ...and was done here (PostgreSQL stopped, the disk full)...
    mending: float  # ...until mending it began here...
    mended: float  # ...and was done here (PostgreSQL accepts connections, the filler is gone)
    recovered: float  # the first answer after the mend that was a 200

    def inside(self) -> list[Answer]:
        """Answers to requests sent once the store was broken and answered before its mending began."""
        return [a for a in self.seen.answers if a.sent >= self.broken and a.sent + a.took <= self.mending]


async def _until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g}s for {what}")
        await asyncio.sleep(0.02)


def through_a_fault(
    server: ServerProcess,
    env: dict[str, str],
    rows: list[dict[str, float]],
    *,
    breaks: Callable[[], None],
    mends: Callable[[], None],
    least_outage: float = 0.0,
    clients: int = 3,
) -> Outage:
    """Clients predict all along; the store is broken (``breaks``) once they are answered, kept broken until
    REFUSALS requests in a row were refused (and at least ``least_outage`` seconds), mended, and the load goes
    on until 20 more answers came back after the first success."""
    seen = Seen()

    async def scenario() -> Outage:
        stop = asyncio.Event()
        load = asyncio.create_task(
            traffic(server.base_url, headers(env), rows, clients=clients, stop=stop, seen=seen, pause=0.01, timeout=30)
        )
        broke = broken = mending = mended = 0.0
        try:
            await _until(lambda: seen.answered >= 10, 60, "10 answers before the fault")
            broke = time.monotonic()
            await asyncio.to_thread(breaks)
            broken = time.monotonic()

            def refusing() -> bool:
                last = [a.status for a in seen.answers if a.sent >= broke][-REFUSALS:]
                return len(last) == REFUSALS and 200 not in last

            await _until(refusing, 120, f"{REFUSALS} refusals in a row while the store is broken")
            await asyncio.sleep(max(0.0, broke + least_outage - time.monotonic()))
            mending = time.monotonic()
            await asyncio.to_thread(mends)
            mended = time.monotonic()

            def back() -> list[Answer]:
                return [a for a in seen.answers if a.sent >= mended and a.status == 200]

            await _until(lambda: bool(back()), RECOVERY_BOUND + HANG_BOUND, "an answer after the store came back")
            recovered = min(a.sent + a.took for a in back())
            await _until(lambda: sum(a.sent > recovered for a in seen.answers) >= 20, 60, "20 answers after it")
        except BaseException as exc:
            statuses = Counter(a.status for a in seen.answers if a.sent >= broke) if broke else None
            exc.add_note(f"statuses since the fault: {statuses}; refusals: {seen.refused()[-3:]}")
            raise
        finally:
            stop.set()
            await load
            if broke and not mending:
                await asyncio.to_thread(mends)  # leave the store as it was found, whatever failed
        return Outage(seen, broke, broken, mending, mended, recovered)

    return asyncio.run(asyncio.wait_for(scenario(), 300))


def check_outage(outage: Outage, server: ServerProcess, *, pid: int) -> str:
    """The fail-closed assertions shared by every store fault; returns a line of numbers for the output."""
    seen = outage.seen
    statuses = seen.statuses()
    assert set(statuses) <= {200, 503}, (
        f"answers other than 200/503: {[a for a in seen.refused() if a.status != 503][:5]}\n"
        f"server log: {server.log[-6000:]}"
    )
    assert statuses[503] >= REFUSALS
    for refusal in seen.refused():
        assert refusal.body.startswith("{") and '"error"' in refusal.body, refusal  # a JSON error body
    assert seen.slowest() < HANG_BOUND, f"a request took {seen.slowest():.1f}s"
    took = outage.recovered - outage.mended
    assert took < RECOVERY_BOUND, f"the first answer came {took:.1f}s after the store was back"
    assert server.process.poll() is None and server.process.pid == pid  # recovered without a restart
    return (
        f"{statuses[200]} answered, {statuses[503]} refused with 503; store broken for "
        f"{outage.mending - outage.broken:.1f}s (breaking it took {outage.broken - outage.broke:.1f}s, mending it "
        f"{outage.mended - outage.mending:.1f}s); first answer {took:.2f}s after it was back; "
        f"slowest request {seen.slowest():.2f}s"
    )


# -- 2. PostgreSQL restarted under load ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of this module's own, which its tests stop and start."""
    try:
        with throwaway_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        _unavailable(f"no PostgreSQL server could be started for the fault tests: {exc}")


@pytest.fixture
def postgres_env(
    own_postgres: Postgres, tmp_path: Path, fitted: Pipeline, cancer: pd.DataFrame
) -> Iterator[dict[str, str]]:
    """A home on a fresh database of :func:`own_postgres`, which is up again when the test ends, whatever it did."""
    with fresh_database(own_postgres.url, prefix="corral_faults_") as url:
        try:
            env = corral_env(tmp_path / "home", CORRAL_DATABASE_URL=url, CORRAL_AUTH__CACHE_SECONDS="1")
            install(env, fitted, cancer)
            yield env
        finally:
            if not own_postgres.is_up():
                own_postgres.start()


REFUSE = """
CREATE FUNCTION corral_faults_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file: No space left on device (injected by the fault test)'; END $$;
CREATE TRIGGER corral_faults_refuse BEFORE INSERT ON predictions FOR EACH ROW EXECUTE FUNCTION corral_faults_refuse();
"""
ALLOW = "DROP TRIGGER corral_faults_refuse ON predictions; DROP FUNCTION corral_faults_refuse();"


def _sql(url: str, script: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(script)
    finally:
        engine.dispose()


def test_postgres_restarted_under_load_refuses_then_recovers_by_itself(
    own_postgres: Postgres, postgres_env: dict[str, str], rows: list[dict[str, float]]
) -> None:
    env = postgres_env
    with serving(env) as server:
        pid = server.process.pid
        restart = through_a_fault(
            server,
            env,
            rows,
            breaks=lambda: own_postgres.stop("fast"),
            mends=own_postgres.start,
            least_outage=3.0,  # longer than the token cache (1 s here): authentication asks the store too
        )
        restarted = check_outage(restart, server, pid=pid)
        served_unrecorded = [a for a in restart.inside() if a.status == 200]
        assert not served_unrecorded, served_unrecorded[:5]  # nothing can be recorded while PostgreSQL is down

        injected = through_a_fault(
            server,
            env,
            rows,
            breaks=lambda: _sql(env["CORRAL_DATABASE_URL"], REFUSE),
            mends=lambda: _sql(env["CORRAL_DATABASE_URL"], ALLOW),
        )
        refused = check_outage(injected, server, pid=pid)
        assert not [a for a in injected.inside() if a.status == 200]
        health = httpx.get(f"{server.base_url}/v2/health/ready", timeout=10)
        assert health.status_code == 200, health.text

    check = check_log(env, restart.seen.acknowledged | injected.seen.acknowledged)
    assert check.ok, check.problems()
    print(f"\nPostgreSQL restarted: {restarted}\ninjected write error: {refused}")


# -- 3. Disk full -------------------------------------------------------------------------------------------------


@contextmanager
def small_disk(folder: Path, size: str = "16m") -> Iterator[str | None]:
    """A size-limited tmpfs mounted at ``folder``; yields ``None`` where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        reason: str | None = str(exc)
    else:
        reason = None if done.returncode == 0 else (done.stderr or done.stdout).strip()
    if reason is not None:
        yield reason
        return
    try:
        yield None
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30, check=False).returncode:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30, check=False)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem has no byte left; return its size."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


def test_a_full_disk_refuses_predictions_until_space_returns(
    tmp_path: Path,
    fitted: Pipeline,
    cancer: pd.DataFrame,
    rows: list[dict[str, float]],
    request: pytest.FixtureRequest,
) -> None:
    disk = tmp_path / "disk"
    with small_disk(disk) as cannot:
        if cannot is not None:
            print(f"\nmount not permitted ({cannot}): the disk fault is the write error injected on PostgreSQL")
            own = request.getfixturevalue("own_postgres")
            env = request.getfixturevalue("postgres_env")
            breaks = lambda: _sql(env["CORRAL_DATABASE_URL"], REFUSE)  # noqa: E731
            mends = lambda: _sql(env["CORRAL_DATABASE_URL"], ALLOW)  # noqa: E731
            assert own.is_up()
        else:
            env = corral_env(disk / "home")
            install(env, fitted, cancer)
            filler = disk / "filler"
            breaks = lambda: print(f"\ntmpfs of 16 MiB filled with {fill(filler) / 2**20:.1f} MiB")  # noqa: E731
            mends = filler.unlink
        with serving(env) as server:
            outage = through_a_fault(server, env, rows, breaks=breaks, mends=mends)
            numbers = check_outage(outage, server, pid=server.process.pid)
            failed = [str(e["message"]) for e in server.errors() if e.get("logger") == "corral.audit"]
        assert failed, "no failed commit was logged"
        assert all("full" in m or "No space left" in m for m in failed), failed[:3]  # the cause, named as it was
        check = check_log(env, outage.seen.acknowledged)
    assert check.ok, check.problems()
    print(f"{'tmpfs full' if cannot is None else 'injected write error'}: {numbers}")


# -- 4. Models that crash their worker or hang --------------------------------------------------------------------


def test_a_crashing_and_a_hanging_model_fail_alone_with_503_and_504(
    tmp_path: Path, environments: Environments, fitted: Pipeline, cancer: pd.DataFrame
) -> None:
    env = corral_env(tmp_path / "home", CORRAL_ISOLATION__ROOT=str(environments.root))
    install(env, fitted, cancer)  # cancer-api: in process, untouched by the other deployment's faults
    services = open_services(env)
    try:
        services.registry.log_model(moody(), name="moody", signature=SIGNATURE, options={"code_paths": [str(MODELS)]})
        services.registry.promote("moody", 1)
        services.deployments.create(
            "moody-api", model="moody", execution=ExecutionPolicy(isolation="isolated", timeout_seconds=1.0)
        )
    finally:
        services.close()
    cancer_rows = cancer.drop(columns="target").head(3).to_dict(orient="records")

    async def scenario(server: ServerProcess) -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers(env), timeout=30) as http:

            async def moody_says(x: float) -> httpx.Response:
                return await http.post("/v1/deployments/moody-api/predict", json={"instances": [{"x": x}]})

            async def cancer_says() -> httpx.Response:
                return await http.post(f"/v1/deployments/{DEPLOYMENT}/predict", json={"instances": cancer_rows})

            async def answered_again() -> float:
                began = time.monotonic()
                while (await moody_says(4)).status_code != 200:
                    assert time.monotonic() - began < 30, "the isolated deployment did not come back"
                    await asyncio.sleep(0.1)
                return time.monotonic() - began

            first = await moody_says(1)
            assert first.status_code == 200 and first.json()["predictions"] == [2.0], first.text

            crashed, beside = await asyncio.gather(moody_says(13), cancer_says())
            out["crash"], out["beside crash"] = crashed, beside
            out["back after crash"] = await answered_again()

            began = time.monotonic()
            hung = asyncio.create_task(moody_says(7))
            await asyncio.sleep(0.2)
            during = await cancer_says()
            out["beside hang"], out["beside hang took"] = during, time.monotonic() - began
            out["hang"], out["hang took"] = await hung, time.monotonic() - began
            out["back after hang"] = await answered_again()
            out["ready"] = await http.get("/v2/health/ready")
        return out

    with serving(env) as server:
        seen = asyncio.run(asyncio.wait_for(scenario(server), 180))
        errors = server.errors()

    crash, hang = seen["crash"], seen["hang"]
    assert crash.status_code == 503, crash.text
    assert "moody-api" in crash.json()["error"] and "exited" in crash.json()["error"], crash.text
    assert hang.status_code == 504, hang.text
    assert "moody-api" in hang.json()["error"], hang.text  # the 504 names the deployment
    assert seen["hang took"] < 1.0 + HANG_BOUND
    for other in ("beside crash", "beside hang"):
        assert seen[other].status_code == 200, seen[other].text  # the other deployment answers meanwhile
    assert seen["beside hang took"] < seen["hang took"]  # answered while moody-api was still hung
    assert seen["ready"].status_code == 200
    assert not [e for e in errors if "Traceback" in str(e)], errors
    services = open_services(env)
    try:
        recorded = [r.inputs["x"] for r in services.database.audit.search(deployment="moody-api", limit=100)]
    finally:
        services.close()
    assert 13 not in recorded and 7 not in recorded  # a failed prediction was never answered, so never recorded
    print(
        f"\ncrash: 503 ({crash.json()['error']}); back {seen['back after crash']:.2f}s later. hang: 504 after "
        f"{seen['hang took']:.2f}s ({hang.json()['error']}); back {seen['back after hang']:.2f}s later"
    )


# -- 5 and 6. Promotions raced, and a corrupted artifact ------------------------------------------------------------

RACED = (1, 2, 3, 4)  # versions the racing calls set; version 5 is kept for the corrupted artifact
CALLS = 50


@pytest.fixture(scope="module")
def two_processes(
    tmp_path_factory: pytest.TempPathFactory, fitted: Pipeline, cancer: pd.DataFrame
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    env = corral_env(tmp_path_factory.mktemp("promotions") / "home", CORRAL_SERVING__REFRESH_SECONDS="0.2")
    install(env, fitted, cancer, versions=5)
    with serving(env, workers=2) as server:
        yield server, env


def test_concurrent_promotions_and_rollbacks_leave_the_alias_consistent(
    two_processes: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, env = two_processes
    services = open_services(env)
    try:
        before = len(services.registry.alias_history(MODEL, "champion"))
    finally:
        services.close()
    rng = random.Random(SEED)
    plan: list[int | None] = [rng.choice(RACED) if rng.random() < 0.6 else None for _ in range(CALLS)]  # None: rollback

    async def race() -> list[tuple[int | None, httpx.Response]]:
        limits = httpx.Limits(max_connections=CALLS)
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers(env), limits=limits, timeout=60) as http:
            start = asyncio.Event()

            async def call(version: int | None) -> tuple[int | None, httpx.Response]:
                await start.wait()
                if version is None:
                    return version, await http.post(f"/v1/models/{MODEL}/aliases/champion/rollback", json={})
                return version, await http.put(f"/v1/models/{MODEL}/aliases/champion", json={"version": version})

            calls = [asyncio.create_task(call(v)) for v in plan]
            await asyncio.sleep(0.1)
            start.set()
            return await asyncio.gather(*calls)

    answers = asyncio.run(asyncio.wait_for(race(), 120))
    services = open_services(env)
    try:
        history = services.registry.alias_history(MODEL, "champion")
        alias = services.registry.resolve(f"{MODEL}@champion").version
    finally:
        services.close()

    statuses = [r.status_code for _, r in answers]
    assert set(statuses) <= {200, 409}, [
        (v, r.status_code, r.text) for v, r in answers if r.status_code not in (200, 409)
    ]
    for _, refused in (a for a in answers if a[1].status_code == 409):
        assert refused.json()["error"], refused.text
    ok = [(v, r.json()) for v, r in answers if r.status_code == 200]
    for version, event in ok:
        assert isinstance(event["to_version"], int), event  # each answer names the version it set...
        if version is not None:
            assert event["to_version"] == version, (version, event)  # ...the one asked for
        else:
            assert event["action"] == "rollback", event

    # Every move is one new event answered to the call that made it. A PUT of the version the alias has already
    # moves nothing and answers with the event that put it there (shared, or older than the race).
    new = history[before:]
    by_id = {e.id: e for e in history}
    answered = Counter(event["id"] for _, event in ok)
    assert all(answered[e.id] >= 1 for e in new), [e for e in new if not answered[e.id]]  # no move unanswered
    assert set(answered) <= set(by_id)
    rollbacks = [event["id"] for version, event in ok if version is None]
    assert len(rollbacks) == len(set(rollbacks)) and set(rollbacks) <= {e.id for e in new}  # each one a move
    assert len(new) <= len(ok)
    for _, event in ok:
        stored = by_id[event["id"]]
        assert (stored.from_version, stored.to_version) == (event["from_version"], event["to_version"]), event
    assert history[-1].to_version == alias  # the alias is where its last event put it
    for earlier, later in itertools.pairwise(history):
        assert later.from_version == earlier.to_version, (earlier, later)  # no move was lost or crossed
    stack: list[int] = []  # a rollback goes back to the version before the last move, as the history tells
    for event in history:
        if event.action is AliasAction.SET and event.to_version is not None:
            stack.append(event.to_version)
        elif event.action is AliasAction.ROLLBACK:
            stack.pop()
            assert event.to_version == stack[-1], (event, stack)
    assert stack[-1] == alias
    print(
        f"\n{CALLS} concurrent calls on two processes: {statuses.count(200)} succeeded ({len(new)} moves, "
        f"{len(ok) - len(new)} PUTs of the version already set), {statuses.count(409)} got 409"
    )


class Meanwhile:
    """A registry store that lets another process move the alias at a chosen point of the next history read:
    the interleavings the race above hits by chance, made certain."""

    def __init__(self, store: Any, meanwhile: Callable[[], None], *, after: bool) -> None:
        self.store, self.meanwhile, self.after = store, meanwhile, after
        self.done = False

    def alias_events(self, name: str, alias: str | None = None) -> Any:
        if not self.done and not self.after:
            self.done = True
            self.meanwhile()
        events = self.store.alias_events(name, alias)
        if not self.done:
            self.done = True
            self.meanwhile()
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture(params=["sqlite", "postgres"])
def two_registries(
    request: pytest.FixtureRequest, tmp_path: Path, fitted: Pipeline, cancer: pd.DataFrame
) -> Iterator[tuple[Any, Any]]:
    """Two sets of services on one store with versions 1-3 of ``cancer`` (1 the champion): two processes."""
    with ExitStack() as stack:
        settings = {}
        if request.param == "postgres":
            server = request.getfixturevalue("own_postgres")
            settings["CORRAL_DATABASE_URL"] = stack.enter_context(fresh_database(server.url, prefix="corral_faults_"))
        env = corral_env(tmp_path / "home", **settings)
        install(env, fitted, cancer, versions=3)
        one, other = open_services(env), open_services(env)
        stack.callback(one.close)
        stack.callback(other.close)
        yield one.registry, other.registry


def test_a_rollback_decided_before_the_alias_went_away_and_back_is_refused(two_registries: tuple[Any, Any]) -> None:
    one, other = two_registries
    one.promote(MODEL, 2)  # 1 → 2: a rollback now goes back to 1

    def away_and_back() -> None:  # after the rollback read the history: 2 → 3 → 2, so before 2 is now 3
        other.promote(MODEL, 3)
        other.promote(MODEL, 2)

    racing = Registry(Meanwhile(one.store, away_and_back, after=True), one.artifacts, actor="racing")
    with pytest.raises(ConflictError, match="moved meanwhile"):
        racing.rollback(MODEL)  # it went to 1 before: an alias its own history no longer explains
    assert one.resolve(f"{MODEL}@champion").version == 2
    assert one.rollback(MODEL).to_version == 3  # decided now, it goes where the history says


def test_a_promotion_to_the_version_the_alias_has_answers_with_that_version(two_registries: tuple[Any, Any]) -> None:
    one, other = two_registries
    one.promote(MODEL, 2)
    racing = Registry(Meanwhile(one.store, lambda: other.promote(MODEL, 3), after=False), one.artifacts, actor="r")
    event = racing.promote(MODEL, 2)  # 2 already, but moved to 3 while the promotion looked at the history
    assert event.to_version == 2  # it answered with the event that moved it to 3 before
    assert one.resolve(f"{MODEL}@champion").version == 2
    assert one.alias_history(MODEL, "champion")[-1].id == event.id


def test_a_corrupted_artifact_never_takes_traffic(
    two_processes: tuple[ServerProcess, dict[str, str]], rows: list[dict[str, float]]
) -> None:
    server, env = two_processes
    services = open_services(env)
    try:
        serving_now = services.registry.resolve(f"{MODEL}@champion").version
        sha = services.registry.get_version(MODEL, 5).artifact_sha256
    finally:
        services.close()
    blob = Path(env["CORRAL_HOME"]) / "artifacts" / "sha256" / sha[:2] / sha
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    blob.write_bytes(bytes(data))

    with httpx.Client(base_url=server.base_url, headers=headers(env), timeout=30) as http:
        moved = http.put(f"/v1/models/{MODEL}/aliases/champion", json={"version": 5})
        assert moved.status_code == 200 and moved.json()["to_version"] == 5, moved.text
        status: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = http.get(f"/v1/deployments/{DEPLOYMENT}").raise_for_status().json()
            if "5" in str(status.get("reason")) and "failed" in str(status.get("reason")):
                break
            time.sleep(0.1)
        answers = [
            http.post(f"/v1/deployments/{DEPLOYMENT}/predict", json={"instances": rows[i : i + 2]}) for i in range(20)
        ]
        back = http.post(f"/v1/models/{MODEL}/aliases/champion/rollback", json={"reason": "corrupted artifact"})
    assert back.status_code == 200 and back.json()["to_version"] == serving_now, back.text

    assert status["state"] == "READY" and status["serving_version"] == serving_now, status  # the old one serves...
    assert "ArtifactIntegrityError" in status["reason"] or "integrity" in status["reason"].lower(), status
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers if a.status_code != 200]
    assert {a.json()["model"]["version"] for a in answers} == {serving_now}  # ...and answers every request
    print(f"\ncorrupted {MODEL}/5 promoted: {status['state']} on {MODEL}/{serving_now}; reason: {status['reason']}")
