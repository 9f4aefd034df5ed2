"""The audit API: a prediction with its lineage, search, verification and the public key."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
from test_api import COLUMNS, rows, services

from corral.api import audit as audit_api
from corral.api.app import create_app
from corral.app import Services
from corral.testing.auth import admin_headers

__all__ = ["services"]  # the fixture, shared with test_api


def with_client(services: Services, scenario: Callable[[httpx.AsyncClient], Any]) -> Any:
    app = create_app(services, close_services=True)
    if not any(getattr(route, "path", "") == "/v1/audit/verify" for route in app.routes):  # until app.py wires it
        app.include_router(audit_api.router(services))

    async def main() -> Any:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=admin_headers(services)
            ) as client:
                return await scenario(client)

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_a_prediction_is_found_with_its_lineage_and_by_search(services: Services, cancer: pd.DataFrame) -> None:
    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        predicted = (await client.post("/v1/deployments/api/predict", json={"instances": rows(cancer, 5)})).json()
        ids = predicted["prediction_ids"]
        radius = cancer[COLUMNS].iloc[2]["mean radius"]
        return {
            "ids": ids,
            "output": predicted["predictions"][0],
            "detail": await client.get(f"/v1/audit/predictions/{ids[0]}"),
            "missing": await client.get("/v1/audit/predictions/no-such-id"),
            "all": await client.get("/v1/audit/predictions", params={"deployment": "api", "limit": 3}),
            "field": await client.get("/v1/audit/predictions", params={"field": f"mean radius={radius}"}),
            "model": await client.get("/v1/audit/predictions", params={"model": "cancer", "version": 2}),
            "time": await client.get("/v1/audit/predictions", params={"since": "2000-01-01T00:00:00", "after": 3}),
            "bad_field": await client.get("/v1/audit/predictions", params={"field": "radius"}),
            "bad_time": await client.get("/v1/audit/predictions", params={"since": "last tuesday"}),
            "bad_limit": await client.get("/v1/audit/predictions", params={"limit": 0}),
        }

    out = with_client(services, scenario)
    ids = out["ids"]
    detail = out["detail"].json()
    assert out["detail"].status_code == 200
    assert detail["record"]["prediction_id"] == ids[0] and detail["record"]["output"] == out["output"]
    version = detail["version"]
    assert version["name"] == "cancer" and version["version"] == 1 and version["artifact_matches_record"]
    assert version["lineage"]["data"]["rows"] == 569 and "code_commit" in version["lineage"]
    [move] = version["aliases"]
    assert (move["alias"], move["to_version"], move["actor"]) == ("champion", 1, "api-test")
    assert out["missing"].status_code == 404 and "no-such-id" in out["missing"].json()["error"]
    page = out["all"].json()
    assert [r["prediction_id"] for r in page["records"]] == ids[:3] and page["next_after"] == 3
    assert [r["prediction_id"] for r in out["field"].json()["records"]] == [ids[2]]
    assert out["model"].json() == {"records": [], "next_after": None}
    assert [r["prediction_id"] for r in out["time"].json()["records"]] == ids[3:]
    assert out["bad_field"].status_code == 400 and "NAME=VALUE" in out["bad_field"].json()["error"]
    assert out["bad_time"].status_code == 400 and "ISO 8601" in out["bad_time"].json()["error"]
    assert out["bad_limit"].status_code == 400


def test_verify_and_public_key(services: Services, cancer: pd.DataFrame) -> None:
    database = services.settings.home / "corral.db"

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        await client.post("/v1/deployments/api/predict", json={"instances": rows(cancer, 4)})
        clean = await client.get("/v1/audit/verify")
        conn = sqlite3.connect(database)
        with conn:
            conn.execute("DELETE FROM predictions WHERE seq = 2")
        return {
            "clean": clean,
            "broken": await client.get("/v1/audit/verify"),
            "range": await client.get("/v1/audit/verify", params={"from": 3, "to": 2}),
            "key": await client.get("/v1/audit/public-key"),
        }

    out = with_client(services, scenario)
    clean = out["clean"].json()
    assert out["clean"].status_code == 200 and clean["ok"] is True and clean["checked"] == 4
    broken = out["broken"].json()
    assert out["broken"].status_code == 200 and broken["ok"] is False
    assert broken["first_problem"]["kind"] == "missing" and broken["first_problem"]["seq"] == 2
    assert out["range"].status_code == 400
    key = out["key"]
    assert key.status_code == 200 and key.headers["content-type"].startswith("text/plain")
    assert key.text.startswith("-----BEGIN PUBLIC KEY-----")
