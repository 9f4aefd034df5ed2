from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.api.app import create_app
from corral.app import Services, build_services
from corral.settings import MonitoringSettings, ServingSettings, Settings
from corral.testing.auth import admin_headers

COLUMNS = ["mean radius", "mean texture", "mean smoothness"]


@pytest.fixture
def services(tmp_path: Path, cancer: pd.DataFrame) -> Services:
    settings = Settings(
        home=tmp_path / "home",
        serving=ServingSettings(access_log=False),
        monitoring=MonitoringSettings(windows=[3600], process_seconds=0.02, flush_seconds=0.05),
    )
    services = build_services(settings)
    data = cancer[[*COLUMNS, "target"]]
    model = LogisticRegression(max_iter=2000).fit(data[COLUMNS], data["target"])
    services.registry.log_model(model, name="cancer", training_data=data, target="target")
    services.registry.promote("cancer", 1)
    services.deployments.create("api", model="cancer")
    return services


async def rows_seen(client: httpx.AsyncClient, expected: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10  # bounded wait for the sink's next flush
    while True:
        body = (await client.get("/v1/deployments/api/monitoring")).json()
        if (body.get("window") and body["window"]["rows"] >= expected) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


def test_drift_and_quality_of_live_traffic(services: Services, cancer: pd.DataFrame) -> None:
    normal = cancer[COLUMNS].sample(200, random_state=1)
    shifted = normal.assign(**{"mean radius": normal["mean radius"] * 1.6})

    async def scenario(client: httpx.AsyncClient) -> tuple[dict[str, Any], ...]:
        empty = (await client.get("/v1/deployments/api/monitoring")).json()
        for i in range(0, 200, 20):
            await client.post(
                "/v1/deployments/api/predict", json={"instances": normal.iloc[i : i + 20].to_dict("records")}
            )
        calm = await rows_seen(client, 200)
        for i in range(0, 200, 20):
            body = {"instances": shifted.iloc[i : i + 20].to_dict("records")}
            await client.post("/v1/deployments/api/predict", json=body)
        drifted = await rows_seen(client, 400)
        bad = await client.get("/v1/deployments/api/monitoring?window=60")
        missing = await client.get("/v1/deployments/nope/monitoring")
        return (
            empty,
            calm,
            drifted,
            {"bad": bad.status_code, "bad_error": bad.json()["error"], "missing": missing.status_code},
        )

    app = create_app(services, close_services=True)

    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=admin_headers(services)
            ) as client,
        ):
            return await scenario(client)

    empty, calm, drifted, errors = asyncio.run(asyncio.wait_for(main(), 60))
    assert empty["window"] is None and empty["reason"] == "no traffic recorded yet"
    assert calm["window"]["rows"] == 200 and calm["drifted_features"] == []
    assert {f["name"] for f in calm["features"]} == set(COLUMNS)
    assert all(f["quality"]["missing_rate"] == 0 for f in calm["features"])
    assert drifted["window"]["rows"] == 400
    assert drifted["features"][0]["name"] == "mean radius" and drifted["features"][0]["drift"]["drifted"]
    assert drifted["drifted_features"] == ["mean radius"]
    assert drifted["features"][0]["quality"]["out_of_range_rate"] > 0
    assert "prediction" in {o["name"] for o in drifted["outputs"]}
    assert errors["bad"] == 400 and "window must be one of [3600] seconds" in errors["bad_error"]
    assert errors["missing"] == 404


def test_a_window_can_be_the_reference(services: Services, cancer: pd.DataFrame) -> None:
    from corral.monitoring.aggregator import Aggregator, output_columns

    t0 = 1_800_000_000 - 1_800_000_000 % 3600
    clock = [float(t0)]
    aggregator = Aggregator((3600,), clock=lambda: clock[0])
    aggregator.track("api", "cancer", 1, services.registry.get_profile("cancer", 1))
    shuffled = cancer[COLUMNS].sample(frac=1, random_state=0)
    week1 = shuffled.iloc[:250]
    week2 = shuffled.iloc[250:500].assign(**{"mean texture": shuffled["mean texture"].iloc[250:500] + 6})
    for frame in (week1, week2):
        aggregator.update("api", "cancer", 1, frame, output_columns(np.zeros(len(frame), dtype=int)))
        clock[0] += 3600
    services.database.monitoring.add_windows(aggregator.drain())

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        base = "/v1/deployments/api/monitoring"
        return [
            await client.get(f"{base}?reference={t0}"),
            await client.get(f"{base}?reference=last-week"),
            await client.get(f"{base}?reference={t0 - 3600}"),
        ]

    app = create_app(services, close_services=True)

    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=admin_headers(services)
            ) as client,
        ):
            return await scenario(client)

    against_window, bad, missing = asyncio.run(asyncio.wait_for(main(), 60))
    report = against_window.json()
    assert report["reference"] == str(t0) and report["window"]["start"] == t0 + 3600
    assert report["drifted_features"] == ["mean texture"]
    assert bad.status_code == 400 and "reference must be 'training' or the start" in bad.json()["error"]
    assert (
        missing.status_code == 400
        and f"no window starts at {t0 - 3600}; stored windows start at [{t0}, {t0 + 3600}]" in missing.json()["error"]
    )


def test_the_drift_configuration_is_set_per_deployment_and_used(services: Services, cancer: pd.DataFrame) -> None:
    normal = cancer[COLUMNS].sample(200, random_state=2)

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        default = (await client.get("/v1/deployments/api/monitoring/config")).json()
        put = await client.put(
            "/v1/deployments/api/monitoring/config",
            json={"detectors": {"numerical": ["ks", "psi"]}, "thresholds": {"ks": 0.01}},
        )
        await client.post("/v1/deployments/api/predict", json={"instances": normal.to_dict("records")})
        judged = await rows_seen(client, 200)
        bad = await client.put("/v1/deployments/api/monitoring/config", json={"detectors": {"numerical": ["nope"]}})
        garbage = await client.put("/v1/deployments/api/monitoring/config", content=b"[1, 2]")
        unknown = await client.get("/v1/deployments/ghost/monitoring/config")
        reset = await client.put("/v1/deployments/api/monitoring/config", json={})
        return {"default": default, "put": put, "judged": judged, "bad": bad, "garbage": garbage,
                "unknown": unknown, "reset": reset.json()}  # fmt: skip

    app = create_app(services, close_services=True)

    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=admin_headers(services)
            ) as client,
        ):
            return await scenario(client)

    out = asyncio.run(asyncio.wait_for(main(), 60))
    assert out["default"]["detectors"]["numerical"] == ["psi"]
    assert out["put"].status_code == 200 and out["put"].json()["thresholds"] == {"ks": 0.01}
    feature = out["judged"]["features"][0]
    assert {d["detector"] for d in feature["drift"]["all"]} == {"ks", "psi"}
    assert next(d for d in feature["drift"]["all"] if d["detector"] == "ks")["threshold"] == 0.01
    assert out["bad"].status_code == 400 and "no drift detector named 'nope'" in out["bad"].json()["error"]
    assert out["garbage"].status_code == 400 and "must be an object" in out["garbage"].json()["error"]
    assert out["unknown"].status_code == 404
    assert out["reset"]["detectors"]["numerical"] == ["psi"] and out["reset"]["thresholds"] == {}
