"""Drift history and histograms over HTTP, on windows stored the way the sink stores them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.api.app import create_app
from corral.app import Services, build_services
from corral.monitoring.aggregator import Aggregator, output_columns
from corral.settings import MonitoringSettings, ServingSettings, Settings
from corral.testing.auth import admin_headers

COLUMNS = ["mean radius", "mean texture", "mean smoothness"]
T0 = 1_800_000_000 - 1_800_000_000 % 3600


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
    clock = [float(T0)]
    aggregator = Aggregator((3600,), clock=lambda: clock[0])
    profile = services.registry.get_profile("cancer", 1)
    assert profile is not None
    aggregator.track("api", "cancer", 1, profile)
    shuffled = cancer[COLUMNS].sample(frac=1, random_state=0)
    for i, shift in enumerate((0.0, 0.0, 8.0)):  # mean texture moves away in the third hour
        frame = shuffled.iloc[i * 150 : (i + 1) * 150]
        frame = frame.assign(**{"mean texture": frame["mean texture"] + shift})
        aggregator.update("api", "cancer", 1, frame, output_columns(np.zeros(len(frame), dtype=int)))
        clock[0] += 3600
    services.database.monitoring.add_windows(aggregator.drain())
    return services


def get_all(services: Services, paths: list[str]) -> list[httpx.Response]:
    app = create_app(services, close_services=True)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=admin_headers(services)
            ) as client,
        ):
            return [await client.get(path) for path in paths]

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_history_and_histograms_of_the_served_version(services: Services) -> None:
    second = datetime.fromtimestamp(T0 + 3600, UTC).isoformat()
    base = "/v1/deployments/api/monitoring"
    history, last_two, latest, chosen = get_all(
        services,
        [
            f"{base}/history",
            f"{base}/history?window=3600&limit=2",
            f"{base}/histograms?window=3600",
            f"{base}/histograms?window=3600&start={second.replace('+', '%2B')}",
        ],
    )
    body: dict[str, Any] = history.json()
    assert history.status_code == 200 and (body["model"], body["version"], body["window_seconds"]) == (
        "cancer",
        1,
        3600,
    )
    assert [w["start"] for w in body["windows"]] == [T0, T0 + 3600, T0 + 7200]
    texture = body["features"]["mean texture"]
    assert texture[-1] > 1 > max(texture[:2]) and body["drifted"]["mean texture"] == [False, False, True]
    assert set(body["features"]) == set(COLUMNS) and "prediction" in body["outputs"]["scores"]
    assert [w["start"] for w in last_two.json()["windows"]] == [T0 + 3600, T0 + 7200]
    shown = latest.json()
    assert shown["window"]["start"] == T0 + 7200 and shown["window"]["rows"] == 150
    bars = next(h for h in shown["histograms"] if h["name"] == "mean texture")
    assert len(bars["labels"]) == len(bars["reference"]) == len(bars["current"])
    assert sum(bars["current"]) == pytest.approx(1.0) and bars["reference_rows"] > 0
    assert chosen.status_code == 200 and chosen.json()["window"]["start_time"] == second


def test_bad_requests_are_named(services: Services) -> None:
    unknown = datetime.fromtimestamp(T0 + 60, UTC).isoformat().replace("+", "%2B")
    responses = get_all(
        services,
        [
            "/v1/deployments/api/monitoring/history?window=60",
            "/v1/deployments/api/monitoring/histograms?window=60",
            "/v1/deployments/nope/monitoring/history",
            "/v1/deployments/nope/monitoring/histograms",
            f"/v1/deployments/api/monitoring/histograms?start={unknown}",
            "/v1/deployments/api/monitoring/histograms?start=yesterday",
            "/v1/deployments/api/monitoring/history?limit=0",
        ],
    )
    codes = [r.status_code for r in responses]
    assert codes == [400, 400, 404, 404, 400, 400, 400]
    errors = [r.json()["error"] for r in responses]
    assert all("window must be one of [3600] seconds, got 60" in e for e in errors[:2])
    assert "nope" in errors[2] and "nope" in errors[3]
    assert f"starts at {datetime.fromtimestamp(T0 + 60, UTC).isoformat()} (3 stored" in errors[4]
    assert "start" in errors[5] and "limit" in errors[6]
