"""Retraining pipelines with real processes: ``corral worker`` subprocesses sharing a database, a worker killed
with SIGKILL mid-run, and the whole loop inside a real ``corral serve``.

* Two workers on one PostgreSQL database carry out four queued runs: each run exactly once (one attempt, one
  worker), both workers busy, no worker running two at once, none failed.
* A worker SIGKILLed while a run trains (its training child too): the next worker marks the run failed once
  the lease lapses, with the log saved so far; never two attempts at once; a new run then completes.
* ``corral serve`` with its worker: a pipeline created and run through the CLI trains a candidate that beats
  a weak champion, shadows the deployment, goes through the canary steps on labelled HTTP traffic and becomes
  the champion, every stage in the alias history under the run's name.

The training functions live in ``pipeline_functions`` (this folder is put on the subprocesses' PYTHONPATH so
the spawned training child can import it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pandas as pd
import pytest
from server_process import CORRAL, corral_env, open_services, run_cli, server_process
from sklearn.linear_model import LogisticRegression

from corral.pipelines.entities import FAILED, QUEUED, REJECTED, RUNNING, SUCCEEDED, Pipeline, Run
from corral.testing.postgres import fresh_database

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
COLUMNS = ["mean radius", "mean texture", "mean smoothness", "mean concavity"]
MODEL, DEPLOYMENT = "cancer", "api"
DONE = (SUCCEEDED, FAILED, REJECTED)
T = TypeVar("T")


def _env(home: Path, **settings: str) -> dict[str, str]:
    env = corral_env(home, CORRAL_PIPELINES__POLL_SECONDS="0.2", **settings)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return env


def _world(env: dict[str, str], cancer: pd.DataFrame, folder: Path) -> Path:
    """A weak champion (cancer:1) behind deployment ``api``; returns the training data file."""
    data = cancer[[*COLUMNS, "target"]].sample(frac=1.0, random_state=3).reset_index(drop=True)
    path = folder / "train.csv"
    data.to_csv(path, index=False)
    services = open_services(env)
    try:
        champion = LogisticRegression(C=1e-4, max_iter=2000).fit(data[COLUMNS], data["target"])
        services.registry.log_model(champion, name=MODEL, training_data=data, target="target")
        services.registry.promote(MODEL, 1)
        services.deployments.create(DEPLOYMENT, model=MODEL)
    finally:
        services.close()
    return path


def _pipeline(name: str, path: Path, train: str, **fields: Any) -> Pipeline:
    return Pipeline(
        name=name,
        train=f"pipeline_functions:{train}",
        data=({"kind": "file", "path": str(path)},),
        target="target",
        deployment=DEPLOYMENT,
        **fields,
    )


@contextmanager
def _worker(env: dict[str, str], name: str, folder: Path, **settings: str) -> Iterator[subprocess.Popen[bytes]]:
    """``corral worker --name NAME`` in its own process group; stopped (SIGINT, then SIGKILL) at exit."""
    with (folder / f"{name}.out").open("wb") as out, (folder / f"{name}.err").open("wb") as err:
        process = subprocess.Popen(
            [str(CORRAL), "worker", "--name", name],
            env={**env, **settings},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(folder.glob("*.err")))


def _wait(what: str, check: Callable[[], T | None], timeout: float, *, details: Callable[[], str] = str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: not after {timeout:g} s\n{details()}")


def _overlap(a: Run, b: Run) -> bool:
    assert a.started_at and a.finished_at and b.started_at and b.finished_at
    return a.started_at < b.finished_at and b.started_at < a.finished_at


@pytest.mark.postgres
def test_two_workers_on_postgresql_run_each_job_exactly_once(
    postgres_url: str, tmp_path: Path, cancer: pd.DataFrame
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database(postgres_url, prefix="corral_pipelines_"))
        env = _env(tmp_path / "home", CORRAL_DATABASE_URL=url, CORRAL_PIPELINES__LEASE_SECONDS="10")
        path = _world(env, cancer, tmp_path)
        services = open_services(env)
        stack.callback(services.close)
        names = [f"slow-{i}" for i in range(4)]
        queued = {}
        for name in names:
            services.pipelines.create(_pipeline(name, path, "slow", params={"seconds": 2.0}))
            run = services.pipelines.run(name, reason="exclusivity test")
            assert run is not None
            queued[run.id] = name
        store = services.pipelines.store
        started = time.monotonic()
        most_running: dict[str, int] = {}  # per worker, the most runs seen running at once

        def all_done() -> list[Run] | None:
            runs = [store.get_run(run_id) for run_id in queued]
            for worker in {r.worker for r in runs if r.state == RUNNING}:
                running = sum(r.state == RUNNING and r.worker == worker for r in runs)
                most_running[str(worker)] = max(most_running.get(str(worker), 0), running)
            return runs if all(r.state in DONE for r in runs) else None

        with _worker(env, "worker-a", logs), _worker(env, "worker-b", logs):
            runs = _wait("the four runs finished", all_done, 90, details=lambda: _logs(logs))
        took = time.monotonic() - started

        assert all(r.state in (SUCCEEDED, REJECTED) for r in runs), [(r.state, r.reason, r.log) for r in runs]
        assert all(r.attempt == 1 for r in runs), [(r.id, r.attempt) for r in runs]
        assert sorted(r.pipeline for r in runs) == names
        by_worker: dict[str, list[Run]] = {}
        for r in runs:
            assert r.worker in ("worker-a", "worker-b"), r.worker
            assert f"on worker {r.worker}" in r.log and r.log.count(f"run {r.id} of") == 1, r.log
            by_worker.setdefault(r.worker, []).append(r)
        assert set(by_worker) == {"worker-a", "worker-b"}, {w: len(rs) for w, rs in by_worker.items()}
        assert all(count == 1 for count in most_running.values()), most_running
        for mine in by_worker.values():  # one run at a time per worker
            assert not any(_overlap(a, b) for i, a in enumerate(mine) for b in mine[i + 1 :])
        for name in names:  # and per pipeline: one run each, never another attempt
            assert len(store.list_runs(pipeline=name)) == 1
        versions = [r.result["candidate"] for r in runs]
        assert len(set(versions)) == 4, versions  # four distinct registered candidates
        # concurrent runs on one deployment each add their own candidate: none overwrites another's
        shadows = {f"{m.model}/{m.version}" for m in services.deployments.get(DEPLOYMENT).members}
        assert shadows == {r.result["candidate"] for r in runs if r.state == SUCCEEDED}, shadows
        print(f"\n4 runs in {took:.1f} s: " + ", ".join(f"{w} {len(rs)}" for w, rs in sorted(by_worker.items())))


def test_a_worker_killed_mid_run_fails_the_run_once_its_lease_lapses(tmp_path: Path, cancer: pd.DataFrame) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    env = _env(tmp_path / "home", CORRAL_PIPELINES__LEASE_SECONDS="2")
    path = _world(env, cancer, tmp_path)
    pid_file = tmp_path / "train.pid"
    services = open_services(env)
    try:
        pipeline = services.pipelines.create(
            _pipeline("retrain", path, "slow", params={"seconds": 20.0, "pid_file": str(pid_file)})
        )
        first = services.pipelines.run("retrain", reason="to be killed")
        assert first is not None
        store = services.pipelines.store
        seen_running: list[int] = []

        def watch(run_id: str, states: tuple[str, ...]) -> Callable[[], Run | None]:
            def check() -> Run | None:
                runs = store.list_runs(pipeline="retrain")
                seen_running.append(sum(r.state == RUNNING for r in runs))
                found = store.get_run(run_id)
                return found if found.state in states else None

            return check

        with _worker(env, "doomed", logs) as doomed:
            running = _wait("the run is running", watch(first.id, (RUNNING,)), 30, details=lambda: _logs(logs))
            assert running.worker == "doomed" and running.attempt == 1
            _wait("training started", lambda: pid_file.exists() and pid_file.read_text(), 30)
            child = int(pid_file.read_text())
            time.sleep(1.0)  # a renewal or two: the log so far is saved
            os.killpg(doomed.pid, signal.SIGKILL)
            with suppress(ProcessLookupError):
                os.killpg(child, signal.SIGKILL)  # the training child leads its own process group
            assert doomed.wait(timeout=10) == -signal.SIGKILL
        assert store.get_run(first.id).state == RUNNING  # nobody has noticed yet

        with _worker(env, "survivor", logs):
            failed = _wait("the killed run failed", watch(first.id, DONE), 30, details=lambda: _logs(logs))
            assert failed.state == FAILED, (failed.state, failed.reason)
            assert "lease lapsed" in failed.reason and "stopped reporting" in failed.reason, failed.reason
            assert failed.worker == "doomed" and failed.attempt == 1
            assert f"run {first.id} of retrain" in failed.log and "on worker doomed" in failed.log, failed.log
            assert "data:" in failed.log, failed.log  # saved by a renewal before the kill
            time.sleep(1.0)
            assert store.get_run(first.id).state == FAILED  # not picked up again

            services.pipelines.create(replace(pipeline, params={"seconds": 0.2}))
            second = services.pipelines.run("retrain", reason="again")
            assert second is not None
            done = _wait("the second run finished", watch(second.id, DONE), 60, details=lambda: _logs(logs))
        assert done.state == SUCCEEDED, (done.reason, done.log)
        assert done.worker == "survivor" and done.attempt == 1
        assert max(seen_running) == 1
        assert [r.id for r in store.list_runs(pipeline="retrain")] == [second.id, first.id]
    finally:
        services.close()


def test_the_full_loop_in_a_real_server(tmp_path: Path, cancer: pd.DataFrame) -> None:
    env = _env(
        tmp_path / "home",
        CORRAL_PIPELINES__ROLLOUT_SECONDS="0.5",
        CORRAL_ALERTS__ENABLED="false",
        CORRAL_SERVING__REFRESH_SECONDS="0.2",
    )
    path = _world(env, cancer, tmp_path)
    frame = pd.read_csv(path)
    rows, labels = frame[COLUMNS].to_dict("records"), frame["target"].tolist()
    run_cli(
        env,
        *("pipelines", "create", "retrain", "--train", "pipeline_functions:good", "--deployment", DEPLOYMENT),
        *("--target", "target", "--data", str(path), "--shadow-requests", "30"),
        *("--canary-steps", "30,60", "--step-requests", "20"),
    )
    services = open_services(env)
    try:
        with (
            server_process(env) as server,
            httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as http,
        ):
            began = time.monotonic()
            out = run_cli(env, "pipelines", "run", "retrain").stdout
            assert "queued" in out, out
            [run] = services.pipelines.store.list_runs(pipeline="retrain")
            assert run.state in (QUEUED, RUNNING)

            def finished() -> Run | None:
                found = services.pipelines.store.get_run(run.id)
                return found if found.state in DONE else None

            done = _wait("the server's worker ran it", finished, 60, details=lambda: server.log[-4000:])
            assert done.state == SUCCEEDED, (done.reason, done.log)
            assert done.result["candidate"] == f"{MODEL}/2"
            trained = time.monotonic() - began

            def members() -> list[dict[str, Any]]:
                return list(http.get(f"/v1/deployments/{DEPLOYMENT}").raise_for_status().json()["members"])

            assert [(m["model"], m["version"], m["role"]) for m in members()] == [(MODEL, 2, "shadow")]
            roles: list[tuple[tuple[str, float], ...]] = []  # the stages seen, one per round
            sent = 0
            deadline = time.monotonic() + 60
            while members():
                assert time.monotonic() < deadline, (roles, sent, server.log[-4000:])
                roles.append(tuple((m["role"], m["percent"]) for m in members()))
                ids, truth = [], []
                for _ in range(40):
                    i = sent % len(rows)
                    body = {"instances": [rows[i]], "routing_key": f"customer-{sent}"}
                    response = http.post(f"/v1/deployments/{DEPLOYMENT}/predict", json=body)
                    assert response.status_code == 200, response.text
                    ids += response.json()["prediction_ids"]
                    truth.append(labels[i])
                    sent += 1
                feedback = [{"prediction_id": p, "label": y} for p, y in zip(ids, truth, strict=True)]
                http.post("/v1/feedback", json=feedback).raise_for_status()
                time.sleep(0.7)  # a rollout pass or two
            rolled = time.monotonic() - began
            assert not server.errors(), server.errors()
    finally:
        services.close()

    services = open_services(env)
    try:
        assert services.registry.resolve(f"{MODEL}@champion").version == 2
        history = services.registry.alias_history(MODEL)
    finally:
        services.close()
    stages = [percent if role == "canary" else 0.0 for [(role, percent)] in roles]  # one member in each round
    assert stages[0] == 0.0 and stages == sorted(stages) and set(stages) <= {0.0, 30.0, 60.0}, roles
    reasons = [e.reason for e in history if e.actor == f"pipeline:retrain/{run.id}"]
    assert "rollout of api: shadow" in reasons, reasons
    assert "rollout of api: canary 30%" in reasons and "rollout of api: canary 60%" in reasons, reasons
    assert any("rollout of api completed" in r for r in reasons), reasons
    champion = [e for e in history if e.alias == "champion"][-1]
    assert champion.to_version == 2 and champion.actor == f"pipeline:retrain/{run.id}"
    print(f"\ntrained in {trained:.1f} s, champion after {rolled:.1f} s and {sent} requests")
