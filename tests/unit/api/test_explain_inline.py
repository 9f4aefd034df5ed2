"""Explanations inline: asked for by the request, or by the deployment's audit policy in the background."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pandas as pd
import pytest
from test_api import COLUMNS, rows, services, with_client

from corral.app import Services
from corral.audit.privacy import AuditPolicy
from corral.cli.main import main

__all__ = ["services"]  # the fixture, shared with test_api


def test_a_request_can_ask_for_its_explanations(services: Services, cancer: pd.DataFrame) -> None:
    async def scenario(client: httpx.AsyncClient) -> Any:
        return (
            await client.post("/v1/deployments/api/predict?explain=true", json={"instances": rows(cancer, 2)})
        ).json()

    body = with_client(services, scenario)
    explanations = body["explanations"]
    assert [e["prediction_id"] for e in explanations] == body["prediction_ids"]
    assert set(explanations[0]["contributions"]) == set(COLUMNS)
    stored = services.database.audit.get_explanation(body["prediction_ids"][0])
    assert stored is not None and stored.to_dict()["contributions"] == explanations[0]["contributions"]


def test_an_always_policy_explains_every_prediction_in_the_background(services: Services, cancer: pd.DataFrame) -> None:
    services.database.audit.set_policy("api", AuditPolicy(explain="always").to_dict())

    async def scenario(client: httpx.AsyncClient) -> list[str]:
        response = await client.post("/v1/deployments/api/predict", json={"instances": rows(cancer, 3)})
        return response.json()["prediction_ids"]

    ids = with_client(services, scenario)  # the app's shutdown lets the explainer finish its queue
    deadline = time.monotonic() + 30
    while any(services.database.audit.get_explanation(p) is None for p in ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(services.database.audit.get_explanation(p) is not None for p in ids)


def test_audit_policies_from_the_command_line(
    services: Services, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(services.settings.home))
    assert main(["audit", "policy", "api", "--json"]) == 0
    assert '"retention_days": 183' in capsys.readouterr().out
    assert main(["audit", "policy", "api", "--retention-days", "400", "--redact", "mean texture"]) == 0
    assert "retention 400 days" in capsys.readouterr().out
    assert main(["audit", "policy", "api", "--hash", "mean radius"]) == 1
    assert "CORRAL_AUDIT__SECRET" in capsys.readouterr().err
    assert main(["audit", "policy", "api", "--explain", "sometimes"]) == 1
    assert "explain policy 'sometimes'" in capsys.readouterr().err
    monkeypatch.setenv("CORRAL_AUDIT__SECRET", "a-long-enough-installation-secret")
    args = ["audit", "policy", "api", "--encrypt", "mean radius", "--subject-field", "mean radius"]
    assert main(args) == 0
    assert main(["audit", "forget", "customer-1"]) == 0 and "no live key" in capsys.readouterr().out
    assert main(["audit", "prune", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pruned"] == 0  # nothing is past its retention yet
    assert main(["audit", "policy", "api", "--clear", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fields"] == {}
