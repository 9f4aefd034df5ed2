"""Retraining pipelines and their runs through the API, on real SQLite: definitions with their next scheduled
run, a manual run queued and then carried out by a worker (training in a child process), its gate result,
rollout and log; unknown names and bad parameters refused with a JSON error naming them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.api.app import create_app
from corral.app import Services, build_services, build_worker
from corral.pipelines.entities import GATE_FIELDS, Pipeline
from corral.settings import AlertSettings, PipelineSettings, ServingSettings, Settings
from corral.testing.auth import admin_headers

COLUMNS = ["mean radius", "mean texture", "mean smoothness", "mean concavity"]
TRAINING_FUNCTIONS = Path(__file__).parents[1] / "pipelines"  # pipeline_models.py, imported by the training child


@pytest.fixture
def world(tmp_path: Path, cancer: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> tuple[Services, Path]:
    monkeypatch.syspath_prepend(str(TRAINING_FUNCTIONS))  # a spawned child inherits sys.path
    settings = Settings(
        home=tmp_path / "home",
        serving=ServingSettings(access_log=False),
        alerts=AlertSettings(enabled=False),
        pipelines=PipelineSettings(worker=False),  # the tests carry out runs themselves
    )
    services = build_services(settings)
    data = cancer[[*COLUMNS, "target"]].sample(frac=1.0, random_state=3).reset_index(drop=True)
    champion = LogisticRegression(C=1e-4, max_iter=2000).fit(data[COLUMNS], data["target"])  # a weak champion
    services.registry.log_model(champion, name="cancer", training_data=data, target="target")
    services.registry.promote("cancer", 1)
    services.deployments.create("api", model="cancer")
    path = tmp_path / "train.csv"
    data.to_csv(path, index=False)
    return services, path


def pipeline(path: Path, name: str = "retrain", train: str = "good", **fields: object) -> Pipeline:
    values: dict[str, object] = {
        "name": name,
        "train": f"pipeline_models:{train}",
        "data": ({"kind": "file", "path": str(path)},),
        "target": "target",
        "deployment": "api",
        **fields,
    }
    return Pipeline(**values)  # type: ignore[arg-type]


def with_client(services: Services, scenario: Any) -> Any:
    app = create_app(services, close_services=True)

    async def run() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=admin_headers(services)) as c,
        ):
            return await scenario(c)

    return asyncio.run(asyncio.wait_for(run(), 120))


def test_pipelines_are_listed_and_shown_with_their_next_run(world: tuple[Services, Path]) -> None:
    services, path = world
    hourly = services.pipelines.create(
        pipeline(path, every_seconds=6 * 3600.0, on_alerts=("drift",), margin=0.01, canary_steps=(25.0, 50.0))
    )
    services.pipelines.create(pipeline(path, "weekly", schedule="0 3 * * 1", metric="roc_auc"))
    services.pipelines.create(pipeline(path, "by-hand"))

    async def scenario(c: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        return await c.get("/v1/pipelines"), await c.get("/v1/pipelines/retrain")

    listed, shown = with_client(services, scenario)
    assert listed.status_code == 200 and shown.status_code == 200
    by_name = {p["name"]: p for p in listed.json()}
    assert list(by_name) == ["by-hand", "retrain", "weekly"]
    item = by_name["retrain"]
    assert item["train"] == "pipeline_models:good" and item["deployment"] == "api" and item["target"] == "target"
    assert item["data"] == [{"kind": "file", "path": str(path)}]
    assert (item["schedule"], item["every_seconds"], item["on_alerts"]) == (None, 21600.0, ["drift"])
    assert (item["metric"], item["margin"], item["canary_steps"]) == ("accuracy", 0.01, [25.0, 50.0])
    assert item["shadow_requests"] == 200 and item["step_requests"] == 200 and item["stage_seconds"] is None
    assert hourly.created_at is not None and item["last_run"] is None
    assert datetime.fromisoformat(item["next_run_at"]) == hourly.created_at + timedelta(hours=6)
    weekly = datetime.fromisoformat(by_name["weekly"]["next_run_at"])
    assert (weekly.weekday(), weekly.hour, weekly.minute) == (0, 3, 0) and weekly > datetime.now(UTC)
    assert by_name["weekly"]["metric"] == "roc_auc" and by_name["by-hand"]["next_run_at"] is None
    detail = shown.json()
    assert {k: v for k, v in detail.items() if k != "runs"} == item and detail["runs"] == []


def test_a_manual_run_is_queued_and_visible(world: tuple[Services, Path]) -> None:
    services, path = world
    services.pipelines.create(pipeline(path))

    async def scenario(c: httpx.AsyncClient) -> dict[str, Any]:
        queued = await c.post("/v1/pipelines/retrain/runs")
        run_id = queued.json()["id"]
        return {
            "queued": queued,
            "again": await c.post("/v1/pipelines/retrain/runs", json={"reason": "once more"}),
            "runs": (await c.get("/v1/runs")).json(),
            "queued_runs": (await c.get("/v1/runs?state=queued&pipeline=retrain&limit=5")).json(),
            "succeeded_runs": (await c.get("/v1/runs?state=succeeded")).json(),
            "one": (await c.get(f"/v1/runs/{run_id}")).json(),
            "pipeline": (await c.get("/v1/pipelines/retrain")).json(),
        }

    seen = with_client(services, scenario)
    queued = seen["queued"]
    assert queued.status_code == 202, queued.text
    run = queued.json()
    assert (run["pipeline"], run["trigger"], run["state"], run["reason"]) == (
        "retrain",
        "manual",
        "queued",
        "run by hand",
    )
    assert queued.headers["location"] == f"/v1/runs/{run['id']}"
    assert run["started_at"] is None and run["wait_seconds"] is None and run["duration_seconds"] is None
    assert run["candidate"] is None and run["gate"] is None and run["error"] is None
    again = seen["again"]
    assert again.status_code == 409 and "retrain" in again.json()["error"] and run["id"] in again.json()["error"]
    assert [r["id"] for r in seen["runs"]] == [run["id"]] == [r["id"] for r in seen["queued_runs"]]
    assert seen["succeeded_runs"] == []
    assert seen["one"]["state"] == "queued" and seen["one"]["log"] == "" and seen["one"]["rollout"] == []
    assert [r["id"] for r in seen["pipeline"]["runs"]] == [run["id"]] and seen["pipeline"]["last_run"] == run
    assert services.pipelines.store.get_run(run["id"]).state == "queued"  # the API queued it in the store


def test_an_executed_run_shows_its_gate_result_rollout_and_log(world: tuple[Services, Path]) -> None:
    services, path = world
    services.pipelines.create(pipeline(path, params={"C": "1"}))
    services.pipelines.create(pipeline(path, "broken", train="broken"))
    worker = build_worker(services)

    async def scenario(c: httpx.AsyncClient) -> dict[str, Any]:
        good = (await c.post("/v1/pipelines/retrain/runs")).json()["id"]
        assert (await asyncio.to_thread(worker.run_once)) is not None
        bad = (await c.post("/v1/pipelines/broken/runs", json={"reason": "see it fail"})).json()["id"]
        assert (await asyncio.to_thread(worker.run_once)) is not None
        logs = (await c.get(f"/v1/runs/{good}/logs")).json()
        return {
            "good": (await c.get(f"/v1/runs/{good}")).json(),
            "logs": logs,
            "rest": (await c.get(f"/v1/runs/{good}/logs?offset={logs['next_offset']}")).json(),
            "bad": (await c.get(f"/v1/runs/{bad}")).json(),
            "failed": (await c.get("/v1/runs?state=failed")).json(),
            "list": (await c.get("/v1/pipelines")).json(),
        }

    seen = with_client(services, scenario)
    good = seen["good"]
    assert good["state"] == "succeeded", good["log"]
    assert good["candidate"] == "cancer/2" and good["result"]["champion"] == "cancer/1" and good["error"] is None
    gate = good["gate"]
    assert set(gate) == set(GATE_FIELDS)
    assert gate["passed"] is True and gate["verdict"] == "pass" and gate["metric"] == "accuracy"
    assert gate["candidate"] >= gate["champion"] and gate["difference"] == pytest.approx(
        gate["candidate"] - gate["champion"]
    )
    assert gate["test"]["metric"] == "accuracy" and gate["rows"] > 0 and "accuracy" in gate["reason"]
    assert good["wait_seconds"] >= 0 and good["duration_seconds"] > 0 and good["worker"] == worker.name
    assert [(e["alias"], e["to_version"], e["reason"]) for e in good["rollout"]] == [
        ("candidate", 2, "rollout of api: shadow")
    ]
    assert "gate: pass" in good["log"] and "registered cancer/2" in good["log"]

    logs = seen["logs"]
    assert logs["id"] == good["id"] and logs["state"] == "succeeded" and logs["done"] is True
    assert logs["lines"] == good["log"].splitlines() and logs["next_offset"] == len(logs["lines"])
    assert any("gate: pass" in line for line in logs["lines"])
    assert seen["rest"]["lines"] == [] and seen["rest"]["next_offset"] == logs["next_offset"]

    bad = seen["bad"]
    assert bad["state"] == "failed" and bad["reason"] == bad["error"] and "the feature store is down" in bad["error"]
    assert bad["candidate"] is None and bad["gate"] is None and bad["rollout"] == []
    assert [r["id"] for r in seen["failed"]] == [bad["id"]]
    last = {p["name"]: p["last_run"]["state"] for p in seen["list"]}
    assert last == {"broken": "failed", "retrain": "succeeded"}


def test_unknown_names_and_bad_parameters_are_refused_by_name(world: tuple[Services, Path]) -> None:
    services, path = world
    services.pipelines.create(pipeline(path))

    async def scenario(c: httpx.AsyncClient) -> dict[str, httpx.Response]:
        return {
            "pipeline": await c.get("/v1/pipelines/ghost"),
            "run_ghost": await c.post("/v1/pipelines/ghost/runs"),
            "runs_of_ghost": await c.get("/v1/runs?pipeline=ghost"),
            "run": await c.get("/v1/runs/no-such-run"),
            "logs": await c.get("/v1/runs/no-such-run/logs"),
            "limit": await c.get("/v1/runs?limit=-1"),
            "state": await c.get("/v1/runs?state=exploded"),
            "offset": await c.get("/v1/runs/no-such-run/logs?offset=-3"),
            "reason": await c.post("/v1/pipelines/retrain/runs", json={"reason": ""}),
        }

    seen = with_client(services, scenario)
    for key in ("pipeline", "run_ghost", "runs_of_ghost"):
        assert seen[key].status_code == 404 and "'ghost'" in seen[key].json()["error"], key
    for key in ("run", "logs"):
        assert seen[key].status_code == 404 and "'no-such-run'" in seen[key].json()["error"], key
    for key, word in (("limit", "limit"), ("state", "state"), ("offset", "offset"), ("reason", "reason")):
        assert seen[key].status_code == 400 and word in seen[key].json()["error"], (key, seen[key].text)
    assert "'exploded'" in seen["state"].json()["error"] and "queued" in seen["state"].json()["error"]
    assert services.pipelines.store.list_runs() == []  # nothing was queued by the refused request
