"""Several versions on one deployment through the API: the champion answers, shadows are recorded with the same
prediction ids, a split answers its share; the comparison agrees with the recorded predictions; removal,
rollback and the guard rule work end to end."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from corral.api.app import create_app
from corral.app import Services, build_services
from corral.cli.main import main
from corral.settings import AlertSettings, ServingSettings, Settings
from corral.testing.auth import admin_headers

COLUMNS = ["mean radius", "mean texture", "mean smoothness"]


@pytest.fixture
def services(tmp_path: Path, cancer: pd.DataFrame) -> Services:
    settings = Settings(
        home=tmp_path / "home",
        serving=ServingSettings(access_log=False, refresh_seconds=60),
        alerts=AlertSettings(enabled=False),
    )
    services = build_services(settings)
    data = cancer[[*COLUMNS, "target"]]
    models = [
        LogisticRegression(C=1e-3, max_iter=2000),
        LogisticRegression(C=10.0, max_iter=2000),
        HistGradientBoostingClassifier(max_iter=30, random_state=0),
    ]
    for model in models:
        services.registry.log_model(model.fit(data[COLUMNS], data["target"]), name="cancer", training_data=data,
                                    target="target")  # fmt: skip
    services.registry.promote("cancer", 1)
    services.deployments.create("api", model="cancer")
    return services


def with_client(services: Services, scenario: Any) -> Any:
    app = create_app(services)

    async def run() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=admin_headers(services)) as c,
        ):
            return await scenario(c, app)

    return asyncio.run(asyncio.wait_for(run(), 120))


def test_champion_shadows_and_split_on_the_same_traffic(services: Services, cancer: pd.DataFrame) -> None:
    rows = cancer[COLUMNS].to_dict("records")
    labels = cancer["target"].tolist()

    async def scenario(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
        members = {"members": [
            {"model": "cancer", "version": 2, "role": "shadow"},
            {"model": "cancer", "version": 3, "role": "shadow"},
            {"model": "cancer", "version": 2, "role": "split", "percent": 20},
        ]}  # fmt: skip
        duplicate = await client.put("/v1/deployments/api/members", json=members)
        members["members"].pop()
        unknown = await client.put("/v1/deployments/api/members", json={"members": [
            {"model": "cancer", "version": 9, "role": "shadow"}]})  # fmt: skip
        ok = await client.put("/v1/deployments/api/members", json=members)
        answers = []
        for i in range(0, 200, 4):
            response = await client.post("/v1/deployments/api/predict", json={"instances": rows[i : i + 4]})
            answers.append(response.json())
        await app.state.server.drain_shadows("api")
        ids = [pid for a in answers for pid in a["prediction_ids"]]
        await client.post("/v1/feedback", json=[{"prediction_id": p, "label": labels[i]} for i, p in enumerate(ids)])
        comparison = (await client.get("/v1/deployments/api/comparison?window=3600")).json()
        html = await client.get("/v1/deployments/api/comparison?format=html")
        split = await client.put("/v1/deployments/api/members", json={"members": [
            {"model": "cancer", "version": 3, "role": "split", "percent": 30}]})  # fmt: skip
        routed = Counter()
        for i in range(100):
            body = {"instances": rows[i : i + 1], "routing_key": f"customer-{i}"}
            routed[(await client.post("/v1/deployments/api/predict", json=body)).json()["model"]["version"]] += 1
        sticky = {(await client.post("/v1/deployments/api/predict", json={"instances": rows[:1], "routing_key": "x"}
                                     )).json()["model"]["version"] for _ in range(10)}  # fmt: skip
        removed = await client.delete("/v1/deployments/api/members/cancer/3")
        after = {(await client.post("/v1/deployments/api/predict", json={"instances": rows[:1], "routing_key": f"k{i}"}
                                    )).json()["model"]["version"] for i in range(30)}  # fmt: skip
        return {"duplicate": duplicate, "unknown": unknown, "ok": ok, "ids": ids, "answers": answers,
                "comparison": comparison, "html": html, "split": split, "routed": routed, "sticky": sticky,
                "removed": removed, "after": after}  # fmt: skip

    out = with_client(services, scenario)
    assert out["duplicate"].status_code == 400 and "listed twice" in out["duplicate"].json()["error"]
    assert out["unknown"].status_code == 404
    assert out["ok"].status_code == 200 and [m["role"] for m in out["ok"].json()["members"]] == ["shadow", "shadow"]
    assert all(a["model"]["version"] == 1 for a in out["answers"])  # shadows never answer

    audit = services.database.audit
    for pid in out["ids"]:
        records = audit.records_for(pid)
        assert sorted((r.version, r.role) for r in records) == [(1, "primary"), (2, "shadow"), (3, "shadow")]
    comparison = out["comparison"]
    by_version = {v["version"]: v for v in comparison["versions"]}
    assert set(by_version) == {1, 2, 3} and by_version[1]["champion"] and by_version[2]["role"] == "shadow"
    recorded = {pid: {r.version: r.output for r in audit.records_for(pid)} for pid in out["ids"]}
    agree = np.mean([recorded[p][1] == recorded[p][2] for p in out["ids"]])
    assert by_version[2]["agreement"]["agreement"] == pytest.approx(agree)
    assert by_version[2]["agreement"]["paired_rows"] == 200 and by_version[3]["labelled"] == 200
    truth = dict(zip(out["ids"], cancer["target"].tolist()[:200], strict=True))
    accuracy = np.mean([recorded[p][3] == truth[p] for p in out["ids"]])
    assert by_version[3]["quality"]["metrics"]["accuracy"]["value"] == pytest.approx(accuracy)
    assert by_version[3]["comparison"]["paired"] and by_version[3]["comparison"]["verdict"]
    assert out["html"].status_code == 200 and "<svg" in out["html"].text

    assert out["split"].status_code == 200
    assert set(out["routed"]) == {1, 3} and 15 <= out["routed"][3] <= 45 and len(out["sticky"]) == 1
    assert out["removed"].status_code == 200 and out["after"] == {1}


def test_rollback_and_compare_from_the_command_line(
    services: Services, cancer: pd.DataFrame, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = cancer[COLUMNS].to_dict("records")
    services.registry.promote("cancer", 2)

    async def scenario(client: httpx.AsyncClient, app: Any) -> list[int]:
        await client.put("/v1/deployments/api/members", json={"members": [{"model": "cancer", "version": 3,
                                                                             "role": "shadow"}]})  # fmt: skip
        for i in range(0, 40, 4):
            await client.post("/v1/deployments/api/predict", json={"instances": rows[i : i + 4]})
        await app.state.server.drain_shadows("api")
        rolled = await client.post("/v1/deployments/api/rollback", json={"reason": "challenger regressed"})
        served = (await client.post("/v1/deployments/api/predict", json={"instances": rows[:1]})).json()
        return [rolled.status_code, served["model"]["version"]]

    assert with_client(services, scenario) == [200, 1]
    history = services.registry.alias_history("cancer", "champion")
    assert history[-1].reason == "challenger regressed"
    monkeypatch.setenv("CORRAL_HOME", str(services.settings.home))
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["compare", "api"]) == 0
    out = capsys.readouterr().out
    assert "cancer:3" in out and "shadow" in out and "champion" in out
    assert main(["compare", "nope"]) == 1


def test_a_challenger_with_worse_labelled_quality_is_removed_by_its_guard(
    services: Services, cancer: pd.DataFrame
) -> None:
    from sklearn.dummy import DummyClassifier

    from corral.app import guard_quality
    from corral.serving.entities import GuardPolicy, Member

    data = cancer[[*COLUMNS, "target"]]
    constant = DummyClassifier(strategy="constant", constant=0).fit(data[COLUMNS], data["target"])
    services.registry.log_model(constant, name="always-no", training_data=data, target="target")
    services.deployments.set_members("api", [Member("always-no", 1, "shadow"), Member("cancer", 2, "shadow")])
    services.deployments.set_guard("api", GuardPolicy(min_requests=50))
    rows = cancer[COLUMNS].to_dict("records")
    labels = cancer["target"].tolist()

    async def scenario(client: httpx.AsyncClient, app: Any) -> None:
        ids: list[str] = []
        for i in range(0, 120, 6):
            response = await client.post("/v1/deployments/api/predict", json={"instances": rows[i : i + 6]})
            ids += response.json()["prediction_ids"]
        await app.state.server.drain_shadows("api")
        await client.post("/v1/feedback", json=[{"prediction_id": p, "label": labels[i]} for i, p in enumerate(ids)])

    with_client(services, scenario)
    [(name, member, reason)] = guard_quality(services)
    assert (name, member.model) == ("api", "always-no") and "significantly worse" in reason and "roc_auc" in reason
    assert [m.model for m in services.deployments.get("api").members] == ["cancer"]
    [event] = services.alerts.list_alerts(deployment="api")
    assert event.rule == "guard:always-no:1" and "removed from api automatically" in event.message
    assert guard_quality(services) == []  # the second model is not worse: it stays


def test_guard_rules_over_the_api_and_the_command_line(
    services: Services, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(client: httpx.AsyncClient, app: Any) -> list[httpx.Response]:
        return [
            await client.put("/v1/deployments/api/guard", json={"min_requests": 30, "max_latency_ratio": 2.0}),
            await client.put("/v1/deployments/api/guard", json={"max_latency_ratio": 0.5}),
        ]

    good, bad = with_client(services, scenario)
    assert good.status_code == 200 and good.json()["guard"]["min_requests"] == 30
    assert bad.status_code == 400 and "max_latency_ratio" in bad.json()["error"]
    monkeypatch.setenv("CORRAL_HOME", str(services.settings.home))
    assert main(["deployments", "guard", "api", "--max-error-increase", "0.02", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"max_error_rate_increase": 0.02' in out and '"min_requests": 30' in out
    assert main(["deployments", "guard", "api", "--max-latency-ratio", "0.5"]) == 1


def test_after_a_promotion_the_comparison_measures_against_the_new_champion(
    services: Services, cancer: pd.DataFrame
) -> None:
    """Inside a window where the former champion answered most requests, the version the alias names now is
    the champion every member is compared with (a shadow of the new champion is paired with it, not with
    the former one)."""
    rows = cancer[COLUMNS].to_dict("records")

    async def scenario(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
        for i in range(0, 120, 4):  # cancer/1 answers 120 rows
            (await client.post("/v1/deployments/api/predict", json={"instances": rows[i : i + 4]})).raise_for_status()
        services.registry.promote("cancer", 2, reason="better")
        put = {"members": [{"model": "cancer", "version": 3, "role": "shadow"}]}
        (await client.put("/v1/deployments/api/members", json=put)).raise_for_status()
        await app.state.server.refresh()
        for i in range(120, 160, 4):  # cancer/2 answers 40, shadowed by cancer/3
            (await client.post("/v1/deployments/api/predict", json={"instances": rows[i : i + 4]})).raise_for_status()
        await app.state.server.drain_shadows("api")
        await asyncio.sleep(0.2)  # the shadow's records reach the log
        return (await client.get("/v1/deployments/api/comparison", params={"bootstrap": 0})).json()

    result = with_client(services, scenario)
    assert result["champion"] == {"model": "cancer", "version": 2}
    roles = {v["version"]: (v["role"], v["rows"]) for v in result["versions"]}
    assert roles == {2: ("primary", 40), 1: ("former champion", 120), 3: ("shadow", 40)}
    shadow = next(v for v in result["versions"] if v["version"] == 3)
    assert shadow["agreement"]["paired_rows"] == 40
