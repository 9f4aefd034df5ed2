"""Predictions are recorded before they are answered; feedback labels them over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pandas as pd
import pytest
from test_api import COLUMNS, rows, services, with_client

from corral.app import Services, build_services
from corral.errors import VersionInUseError

__all__ = ["services"]  # the fixture, shared with test_api


def test_answered_predictions_are_in_the_log_and_take_feedback_once(services: Services, cancer: pd.DataFrame) -> None:
    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        predicted = (await client.post("/v1/deployments/api/predict", json={"instances": rows(cancer, 3)})).json()
        ids = predicted["prediction_ids"]
        record = (await client.get(f"/v1/predictions/{ids[0]}")).json()
        first = await client.post("/v1/feedback", json=[{"prediction_id": i, "label": 1} for i in ids[:2]])
        single = await client.post("/v1/feedback", json={"prediction_id": ids[2], "label": "0"})
        again = await client.post("/v1/feedback", json={"items": [{"prediction_id": ids[0], "label": 1}]})
        relabel = await client.post("/v1/feedback", json={"prediction_id": ids[0], "label": 0})
        unknown = await client.post("/v1/feedback", json={"prediction_id": "no-such-id", "label": 1})
        wrong = await client.post("/v1/feedback", json={"prediction_id": ids[1], "label": "maybe"})
        garbage = await client.post("/v1/feedback", content=b"{not json")
        missing = await client.get("/v1/predictions/no-such-id")
        return {
            "predicted": predicted,
            "record": record,
            "responses": [first, single, again, relabel, unknown, wrong, garbage, missing],
        }

    out = with_client(services, scenario)
    record = out["record"]
    assert record["deployment"] == "api" and record["model"] == "cancer" and record["version"] == 1
    assert set(record["inputs"]) == set(COLUMNS) and record["seq"] >= 1 and len(record["hash"]) == 64
    assert record["output"] == out["predicted"]["predictions"][0]
    version = services.registry.get_version("cancer", 1)
    assert record["artifact_sha256"] == version.artifact_sha256
    assert record["data_sha256"] == version.lineage.data.sha256  # type: ignore[union-attr]
    first, single, again, relabel, unknown, wrong, garbage, missing = out["responses"]
    assert (first.status_code, first.json()) == (200, {"recorded": 2, "unchanged": 0})
    assert single.json() == {"recorded": 1, "unchanged": 0}
    assert again.json() == {"recorded": 0, "unchanged": 1}
    assert relabel.status_code == 409 and "already labelled 1" in relabel.json()["error"]
    assert unknown.status_code == 404 and "no-such-id" in unknown.json()["error"]
    assert wrong.status_code == 400 and "not one of the model's classes" in wrong.json()["error"]
    assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["error"]
    assert missing.status_code == 404


def test_a_version_with_recorded_predictions_cannot_be_deleted(services: Services, cancer: pd.DataFrame) -> None:
    async def scenario(client: httpx.AsyncClient) -> int:
        response = await client.post("/v1/deployments/api/predict", json={"instances": rows(cancer, 2)})
        return response.status_code

    assert with_client(services, scenario) == 200
    services = build_services(services.settings)  # a new process: the guard reads the log, not memory
    services.registry.archive("cancer", 2, reason="unused")
    services.registry.delete_version("cancer", 2)  # never served: deletable
    services.registry.remove_alias("cancer", "champion")
    with pytest.raises(VersionInUseError, match="2 recorded predictions reference it"):
        services.registry.delete_version("cancer", 1)
    assert services.registry.get_version("cancer", 1).version == 1
