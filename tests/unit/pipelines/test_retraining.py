"""A pipeline run end to end on real SQLite: data from a file, training in a child process, registration with
lineage, the evaluation gate against the champion, and the start of the rollout as a shadow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.app import Services, build_services, build_worker
from corral.cli.main import main
from corral.errors import ConfigurationError, DeploymentNotFoundError
from corral.pipelines.entities import FAILED, REJECTED, SUCCEEDED, Pipeline
from corral.settings import Settings
from corral.testing.auth import admin_headers

COLUMNS = ["mean radius", "mean texture", "mean smoothness", "mean concavity"]


@pytest.fixture
def world(tmp_path: Path, cancer: pd.DataFrame) -> tuple[Services, Path]:
    services = build_services(Settings(home=tmp_path / "home"))
    data = cancer[[*COLUMNS, "target"]].sample(frac=1.0, random_state=3).reset_index(drop=True)
    champion = LogisticRegression(C=1e-4, max_iter=2000).fit(data[COLUMNS], data["target"])  # a weak champion
    services.registry.log_model(champion, name="cancer", training_data=data, target="target")
    services.registry.promote("cancer", 1)
    services.deployments.create("api", model="cancer")
    path = tmp_path / "train.csv"
    data.to_csv(path, index=False)
    return services, path


def pipeline(path: Path, train: str, **fields: object) -> Pipeline:
    values: dict[str, object] = {
        "name": "retrain",
        "train": f"pipeline_models:{train}",
        "data": ({"kind": "file", "path": str(path)},),
        "target": "target",
        "deployment": "api",
        **fields,
    }
    return Pipeline(**values)  # type: ignore[arg-type]


def test_a_better_candidate_passes_the_gate_and_shadows_the_champion(world: tuple[Services, Path]) -> None:
    services, path = world
    services.pipelines.create(pipeline(path, "good", params={"C": "1"}))
    queued = services.pipelines.run("retrain", reason="test")
    assert queued is not None and services.pipelines.run("retrain") is None  # one active run at a time
    done = build_worker(services).run_once()
    assert done is not None and done.id == queued.id
    assert done.state == SUCCEEDED, done.log
    assert done.result["candidate"] == "cancer/2" and done.result["gate"]["passed"]
    version = services.registry.get_version("cancer", 2)
    assert version.created_by.startswith("pipeline:retrain/") and version.lineage.params["run"] == done.id
    assert version.lineage.data is not None and version.lineage.data.source == str(path)
    assert [(m.model, m.version, m.role) for m in services.deployments.get("api").members] == [("cancer", 2, "shadow")]
    assert "training on" in done.log and "gate: pass" in done.log


def test_a_worse_candidate_is_registered_but_not_deployed(world: tuple[Services, Path]) -> None:
    services, path = world
    services.registry.promote("cancer", services.registry.log_model(
        LogisticRegression(max_iter=2000).fit(*_xy(path)), name="cancer",
        training_data=pd.read_csv(path), target="target").version)  # fmt: skip
    services.pipelines.create(pipeline(path, "bad"))
    services.pipelines.run("retrain")
    done = build_worker(services).run_once()
    assert done is not None and done.state == REJECTED
    assert "is not deployed" in done.reason and "significantly worse" in done.reason
    assert services.registry.get_version("cancer", 3).version == 3  # registered for the record
    assert services.deployments.get("api").members == ()


def test_a_failing_training_function_fails_the_run_with_its_error(world: tuple[Services, Path]) -> None:
    services, path = world
    services.pipelines.create(pipeline(path, "broken"))
    services.pipelines.run("retrain")
    done = build_worker(services).run_once()
    assert done is not None and done.state == FAILED and "the feature store is down" in done.reason
    assert "Traceback" in done.log or "the feature store is down" in done.log


def test_bad_pipelines_are_refused(world: tuple[Services, Path]) -> None:
    services, path = world
    with pytest.raises(ConfigurationError, match="module:function"):
        Pipeline(name="x", train="no-colon", data=({"kind": "file", "path": str(path)},), target="t", deployment="api")
    with pytest.raises(ConfigurationError, match="not both"):
        pipeline(path, "good", schedule="0 3 * * 1", every_seconds=60)
    with pytest.raises(ConfigurationError):
        services.pipelines.create(pipeline(path, "good", schedule="not a cron"))
    with pytest.raises(DeploymentNotFoundError, match="no deployment named 'ghost'"):
        services.pipelines.create(pipeline(path, "good", deployment="ghost"))


def test_the_command_line(
    world: tuple[Services, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, path = world
    monkeypatch.setenv("CORRAL_HOME", str(services.settings.home))
    monkeypatch.setenv("COLUMNS", "200")
    args = ["pipelines", "create", "retrain", "--train", "pipeline_models:good", "--deployment", "api"]
    assert main([*args, "--target", "target", "--data", str(path), "--every", "6h", "--on", "drift"]) == 0
    assert main(["pipelines", "list"]) == 0 and "retrain" in capsys.readouterr().out
    assert main(["pipelines", "run", "retrain", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "succeeded" in out
    run_id = services.pipelines.store.list_runs(pipeline="retrain")[0].id
    assert main(["runs", "list"]) == 0 and run_id in capsys.readouterr().out
    assert main(["runs", "logs", run_id]) == 0 and "gate: pass" in capsys.readouterr().out
    assert main(["runs", "show", run_id, "--json"]) == 0 and '"state": "succeeded"' in capsys.readouterr().out
    assert main([*args, "--target", "target", "--data", str(path), "--every", "often"]) != 0


def _xy(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_csv(path)
    return frame[COLUMNS], frame["target"]


def _serve_labelled(services: Services, path: Path, requests: int, start: int = 0) -> None:
    """Answer ``requests`` single rows through the real API (worker and alert loop off) and label them all."""
    import asyncio

    import httpx

    from corral.api.app import create_app

    frame = pd.read_csv(path)
    rows, labels = frame[COLUMNS].to_dict("records"), frame["target"].tolist()
    app = create_app(services)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=admin_headers(services)) as c,
        ):
            ids, truth = [], []
            for k in range(start, start + requests):
                i = k % len(rows)
                body = {"instances": [rows[i]], "routing_key": f"customer-{k}"}
                ids += (await c.post("/v1/deployments/api/predict", json=body)).json()["prediction_ids"]
                truth.append(labels[i])
            await app.state.server.drain_shadows("api")
            await c.post(
                "/v1/feedback", json=[{"prediction_id": p, "label": y} for p, y in zip(ids, truth, strict=True)]
            )

    asyncio.run(asyncio.wait_for(main(), 120))


@pytest.fixture
def quiet(world: tuple[Services, Path]) -> tuple[Services, Path]:
    services, path = world
    services.settings.pipelines.worker = False  # the tests drive the worker and the rollout themselves
    services.settings.alerts.enabled = False
    return services, path


def test_a_candidate_moves_through_shadow_and_canaries_to_champion(quiet: tuple[Services, Path]) -> None:
    from corral.retraining import advance_rollouts

    services, path = quiet
    services.pipelines.create(pipeline(path, "good", shadow_requests=40, canary_steps=(30.0, 60.0), step_requests=25))
    services.pipelines.run("retrain")
    done = build_worker(services).run_once()
    assert done is not None and done.state == SUCCEEDED, done.log
    assert advance_rollouts(services) == []  # not enough requests yet
    _serve_labelled(services, path, 60)
    [moved] = advance_rollouts(services)
    assert "canary at 30%" in moved
    assert [(m.role, m.percent) for m in services.deployments.get("api").members] == [("canary", 30.0)]
    _serve_labelled(services, path, 150, start=60)
    assert "canary at 60%" in advance_rollouts(services)[0]
    _serve_labelled(services, path, 120, start=210)
    assert "now the champion of api" in advance_rollouts(services)[0]
    assert services.registry.resolve("cancer@champion").version == 2
    assert services.deployments.get("api").members == ()
    history = services.registry.alias_history("cancer")
    run_actor = f"pipeline:retrain/{done.id}"
    reasons = [e.reason for e in history if e.actor == run_actor]
    assert "rollout of api: shadow" in reasons and "rollout of api: canary 30%" in reasons
    assert any("rollout of api completed" in r for r in reasons)


def test_a_candidate_worse_in_production_is_rolled_back(quiet: tuple[Services, Path]) -> None:
    from sklearn.dummy import DummyClassifier

    from corral.retraining import advance_rollouts
    from corral.serving.entities import Member

    services, path = quiet
    services.pipelines.create(pipeline(path, "good", shadow_requests=40))
    frame = pd.read_csv(path)
    bad = DummyClassifier(strategy="constant", constant=0).fit(frame[COLUMNS], frame["target"])
    services.registry.promote("cancer", services.registry.log_model(
        LogisticRegression(max_iter=2000).fit(frame[COLUMNS], frame["target"]), name="cancer",
        training_data=frame, target="target").version)  # fmt: skip
    version = services.registry.log_model(
        bad, name="cancer", training_data=frame, target="target", tags={"pipeline": "retrain", "run": "r-1"}
    )
    services.deployments.set_members("api", [Member("cancer", version.version, "shadow")])
    services.registry.set_alias("cancer", "candidate", version.version, reason="rollout of api: shadow", actor="t")
    _serve_labelled(services, path, 80)
    [action] = advance_rollouts(services)
    assert "rolled back" in action and "worse than the champion" in action
    assert services.deployments.get("api").members == ()
    assert services.registry.resolve("cancer@champion").version == 2
    [event] = services.alerts.list_alerts(deployment="api")
    assert event.rule == f"rollout:cancer:{version.version}"


def test_a_candidate_a_guard_took_off_ends_its_rollout_as_rolled_back(quiet: tuple[Services, Path]) -> None:
    from corral.app import _guarded
    from corral.retraining import advance_rollouts

    services, path = quiet
    services.pipelines.create(pipeline(path, "good", shadow_requests=40))
    services.pipelines.run("retrain")
    done = build_worker(services).run_once()
    assert done is not None and done.state == SUCCEEDED, done.log
    [member] = services.deployments.get("api").members
    assert services.registry.get_model("cancer").aliases["candidate"] == member.version
    # what a server's guard does when the shadow's error rate climbs: take it off, raise an alert saying why
    services.deployments.remove_member("api", member.model, member.version)
    _guarded(services, "api", member, "error rate 0.41 vs the champion's 0 on 120 requests")
    [action] = advance_rollouts(services)
    assert action.startswith(f"rollout of cancer:{member.version} on api rolled back") and "error rate 0.41" in action
    assert "candidate" not in services.registry.get_model("cancer").aliases
    [last] = services.registry.alias_history("cancer", "candidate")[-1:]
    assert last.action == "remove" and last.actor == f"pipeline:retrain/{done.id}" and "error rate 0.41" in last.reason
    assert services.registry.resolve("cancer@champion").version == 1  # the champion never changed
    assert advance_rollouts(services) == []  # said once


def test_a_stage_can_also_end_after_its_time(quiet: tuple[Services, Path]) -> None:
    from datetime import UTC, datetime, timedelta

    from corral.retraining import advance_rollouts

    services, path = quiet
    services.pipelines.create(pipeline(path, "good", shadow_requests=10_000, stage_seconds=60.0))
    services.pipelines.run("retrain")
    done = build_worker(services).run_once()
    assert done is not None and done.state == SUCCEEDED, done.log
    _serve_labelled(services, path, 20)
    assert advance_rollouts(services) == []  # far from 10,000 requests, and the minute is not over
    later = datetime.now(UTC) + timedelta(seconds=61)
    [moved] = advance_rollouts(services, now=later)
    assert "canary at 10%" in moved
    with pytest.raises(ConfigurationError, match="stage_seconds"):
        pipeline(path, "good", stage_seconds=0)
