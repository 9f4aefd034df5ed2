from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.api.app import create_app
from corral.app import Services, build_services
from corral.settings import MonitoringSettings, ServingSettings, Settings

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
            httpx.AsyncClient(transport=transport, base_url="http://corral") as client,
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
