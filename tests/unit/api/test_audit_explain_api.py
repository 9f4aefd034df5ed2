"""Explain and replay recorded predictions, over HTTP and from the CLI, on predictions the server recorded."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import typer
from sklearn.ensemble import HistGradientBoostingClassifier

from corral.api.app import create_app
from corral.api.audit_explain import router
from corral.app import Services, build_services
from corral.cli import audit_explain
from corral.cli.context import services as cli_services
from corral.errors import CorralError
from corral.settings import Settings
from corral.testing.auth import admin_headers

COLUMNS = ["mean radius", "mean texture", "mean smoothness", "worst area"]


@pytest.fixture
def services(tmp_path: Path, cancer: pd.DataFrame) -> Services:
    services = build_services(Settings(home=tmp_path / "home", user="explain-test"))
    data = cancer[[*COLUMNS, "target"]]
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(data[COLUMNS], data["target"])
    services.registry.log_model(model, name="cancer", training_data=data, target="target")
    services.registry.promote("cancer", 1)
    services.deployments.create("api", model="cancer")
    return services


def serve(services: Services, scenario: Any) -> Any:
    import asyncio

    app = create_app(services)
    app.include_router(router(services))  # until the application includes it itself

    async def main() -> Any:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=admin_headers(services)
            ) as client:
                return await scenario(client)

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_explanations_and_replays_over_http(services: Services, cancer: pd.DataFrame) -> None:
    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        rows = cancer[COLUMNS].head(30).to_dict(orient="records")
        predicted = (await client.post("/v1/deployments/api/predict", json={"instances": rows})).json()
        pid = predicted["prediction_ids"][4]
        return {
            "predicted": predicted,
            "first": await client.get(f"/v1/audit/predictions/{pid}/explanation"),
            "second": await client.get(f"/v1/audit/predictions/{pid}/explanation"),
            "replay": await client.post(f"/v1/audit/predictions/{pid}/replay"),
            "missing": await client.get("/v1/audit/predictions/no-such-id/explanation"),
            "missing_replay": await client.post("/v1/audit/predictions/no-such-id/replay"),
        }

    out = serve(services, scenario)
    first, second = out["first"].json(), out["second"].json()
    assert out["first"].status_code == 200 and first["computed"] is True and second["computed"] is False
    assert first["method"] == "tree-path-dependent:log-odds" and set(first["contributions"]) == set(COLUMNS)
    assert {k: v for k, v in first.items() if k != "computed"} == {k: v for k, v in second.items() if k != "computed"}
    assert [c["ok"] for c in first["checks"]] == [True, True]
    assert first["checks"][1]["expected"] == pytest.approx(out["predicted"]["probabilities"][4][1], abs=1e-12)
    replayed = out["replay"].json()
    assert out["replay"].status_code == 200 and replayed["identical"] is True and replayed["artifact_matches"] is True
    assert replayed["recorded_output"] == replayed["replayed_output"] == out["predicted"]["predictions"][4]
    assert out["missing"].status_code == 404 and "no-such-id" in out["missing"].json()["error"]
    assert out["missing_replay"].status_code == 404


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The two commands in a group of their own, with the exit codes `corral` gives (1 for a corral error)."""
    app = typer.Typer()
    app.command("explain")(audit_explain.explain)
    app.command("replay")(audit_explain.replay)
    cli_services.cache_clear()
    try:
        typer.main.get_command(app).main(args=list(args), prog_name="corral audit", standalone_mode=False)
        code = 0
    except typer.Exit as exc:
        code = int(exc.exit_code)
    except CorralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_explains_once_stores_and_replays(
    services: Services,
    cancer: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[str]:
        rows = cancer[COLUMNS].iloc[100:120].to_dict(orient="records")
        response = await client.post("/v1/deployments/api/predict", json={"instances": rows})
        return list(response.json()["prediction_ids"])

    ids = serve(services, scenario)
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CORRAL_USER", "cli")
    monkeypatch.setenv("COLUMNS", "200")

    code, out, _ = run(capsys, "explain", ids[0], "--top", "3")
    assert code == 0 and "computed now and stored" in out and "tree-path-dependent:log-odds" in out
    assert "Top 3 of 4 contributions" in out and "matches the recorded" in out
    code, out, _ = run(capsys, "explain", ids[0], "--json")
    body = json.loads(out)
    assert code == 0 and body["computed"] is False and all(c["ok"] for c in body["checks"])
    assert services.database.audit.get_explanation(ids[0]) is not None

    code, out, _ = run(capsys, "replay", ids[1])
    assert code == 0 and "identical" in out
    code, out, _ = run(capsys, "replay", ids[1], "--json")
    assert code == 0 and json.loads(out)["identical"] is True

    for command in ("explain", "replay"):
        code, _, err = run(capsys, command, "no-such-id")
        assert code == 1 and "no-such-id" in err


@pytest.mark.slow
def test_a_trusted_pickle_replays_in_a_worker_and_an_untrusted_one_is_refused(
    tmp_path: Path, environments: Any
) -> None:
    """A pickle version serves from a worker once an admin trusts it; replaying its predictions loads it the
    same way (never in this process), and once the trust is revoked a replay is refused with the reason."""
    from sklearn.linear_model import LinearRegression

    from corral.isolation.host import WorkerRuntime

    services = build_services(Settings(home=tmp_path / "home", user="explain-test"))
    services.environments = environments  # the machine's shared cache: built once per machine
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 3.0, 5.0, 7.0]})
    services.registry.log_model(
        LinearRegression().fit(frame[["x"]], frame["y"]),
        name="lin",
        training_data=frame,
        target="y",
        options={"serialization": "pickle"},
        trusted=True,
    )
    services.registry.trust("lin", 1, reason="trained by this test", actor="admin")
    services.registry.promote("lin", 1)
    services.deployments.create("lin", model="lin")

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        predicted = await client.post("/v1/deployments/lin/predict", json={"instances": [{"x": 10.0}]})
        pid = predicted.json()["prediction_ids"][0]
        replay = await client.post(f"/v1/audit/predictions/{pid}/replay")
        runtime = services.loaded("lin", 1).runtime
        explained = await client.get(f"/v1/audit/predictions/{pid}/explanation")
        services.registry.untrust("lin", 1)
        services._loaded.clear()  # a new process would not have it loaded
        refused = await client.post(f"/v1/audit/predictions/{pid}/replay")
        return {
            "predicted": predicted,
            "replay": replay,
            "refused": refused,
            "runtime": runtime,
            "explained": explained,
        }

    out = serve(services, scenario)
    assert out["predicted"].status_code == 200 and out["predicted"].json()["predictions"] == pytest.approx([21.0])
    replayed = out["replay"].json()
    assert out["replay"].status_code == 200 and replayed["identical"] is True, replayed
    explained = out["explained"].json()
    assert out["explained"].status_code == 200 and explained["method"].startswith("kernel"), explained
    assert [c["ok"] for c in explained["checks"]] == [True] and explained["checks"][0]["expected"] == pytest.approx(
        21.0
    )
    refused = out["refused"].json()
    assert out["refused"].status_code == 503 and refused["code"] == "unavailable"
    assert "lin/1 is a pickle (loading it can run any code) and no admin has trusted it" in refused["error"]
    assert isinstance(out["runtime"], WorkerRuntime) and out["runtime"].pid not in (None, os.getpid())
