from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.api.app import create_app
from corral.app import Services, build_services
from corral.settings import ServingSettings, Settings
from corral.testing.auth import admin_headers

COLUMNS = ["mean radius", "mean texture", "mean smoothness"]


@pytest.fixture
def services(tmp_path: Path, cancer: pd.DataFrame) -> Services:
    settings = Settings(
        home=tmp_path / "home",
        user="api-test",
        serving=ServingSettings(max_body_bytes=16384, max_rows=50, access_log=False),
    )
    services = build_services(settings)
    data = cancer[[*COLUMNS, "target"]]
    for c in (1e-3, 10.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(data[COLUMNS], data["target"])
        services.registry.log_model(model, name="cancer", training_data=data, target="target")
    services.registry.promote("cancer", 1)
    services.deployments.create("api", model="cancer")
    return services


Call = Callable[..., Any]


def with_client(services: Services, scenario: Callable[[httpx.AsyncClient], Any]) -> Any:
    app = create_app(services, close_services=True)

    async def main() -> Any:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=admin_headers(services)
            ) as client:
                return await scenario(client)

    return asyncio.run(asyncio.wait_for(main(), 60))


def rows(cancer: pd.DataFrame, n: int) -> list[dict[str, float]]:
    return cancer[COLUMNS].head(n).to_dict(orient="records")


def test_v1_predict(services: Services, cancer: pd.DataFrame) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/v1/deployments/api/predict", json={"instances": rows(cancer, 3)})

    response = with_client(services, scenario)
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == {"name": "cancer", "version": 1} and body["deployment"] == "api"
    assert len(body["predictions"]) == 3 and len(body["prediction_ids"]) == 3 and body["classes"] == [0, 1]
    assert [a["flagged"] for a in body["anomaly"]] == [False, False, False]
    assert np.allclose(np.sum(body["probabilities"], axis=1), 1.0)


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"rows": []}, 400, 'expected a JSON object {"instances"'),
        ({"instances": [1, 2]}, 400, "must be a list of objects"),
        ({"instances": [{"mean radius": 1.0}]}, 400, "missing columns: mean texture, mean smoothness"),
        (
            {"instances": [{"mean radius": "big", "mean texture": 1.0, "mean smoothness": 0.1}]},
            400,
            "column 'mean radius' expects numbers",
        ),
        (
            {"instances": [{"mean radius": None, "mean texture": 1.0, "mean smoothness": 0.1}]},
            400,
            "'mean radius' is missing a value",
        ),
        ({"instances": []}, 413, "no rows"),
    ],
)
def test_v1_bad_input_is_a_4xx_naming_the_problem(
    services: Services, payload: dict[str, Any], status: int, fragment: str
) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, str]:
        response = await client.post("/v1/deployments/api/predict", json=payload)
        return response, (await client.get("/metrics")).text

    response, metrics = with_client(services, scenario)
    assert response.status_code == status
    assert fragment in response.json()["error"]
    assert "corral_inference_exec_count_total{" not in metrics  # the model never ran


def test_limits_unknown_deployment_and_invalid_json(services: Services, cancer: pd.DataFrame) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post("/v1/deployments/api/predict", json={"instances": rows(cancer, 60)}),
            await client.post("/v1/deployments/api/predict", content=b"{" + b" " * 17000 + b"}"),
            await client.post("/v1/deployments/nope/predict", json={"instances": rows(cancer, 1)}),
            await client.post("/v1/deployments/api/predict", content=b"{not json"),
        ]

    too_many, too_big, unknown, garbage = with_client(services, scenario)
    assert too_many.status_code == 413 and "over this server's limit of 50 rows" in too_many.json()["error"]
    assert too_big.status_code == 413 and "over the limit of 16384 bytes" in too_big.json()["error"]
    assert unknown.status_code == 404 and unknown.json() == {"error": "no deployment named 'nope'", "code": "not_found"}
    assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["error"]


def test_mlflow_bodies_all_score_the_same(services: Services, cancer: pd.DataFrame) -> None:
    frame = cancer[COLUMNS].head(4)
    bodies = [
        {"dataframe_split": {"columns": COLUMNS, "data": frame.to_numpy().tolist()}},
        {"dataframe_records": frame.to_dict(orient="records")},
        {"instances": frame.to_dict(orient="records")},
        {"inputs": frame.to_dict(orient="list")},
    ]

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        answers = [await client.post("/v1/deployments/api/invocations", json=b) for b in bodies]
        answers.append(await client.post("/invocations", json=bodies[0]))
        answers.append(
            await client.post("/invocations", json={"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}})
        )
        answers.append(await client.post("/invocations", json={"instances": [], "inputs": {}}))
        return answers

    *good, bad_split, ambiguous = with_client(services, scenario)
    predictions = [r.json()["predictions"] for r in good]
    assert all(r.status_code == 200 for r in good) and all(p == predictions[0] for p in predictions)
    assert bad_split.status_code == 400 and "every row of data must be a list of 1 values" in bad_split.json()["error"]
    assert ambiguous.status_code == 400 and "exactly one of" in ambiguous.json()["error"]


def test_v2_metadata_readiness_and_infer_json(services: Services, cancer: pd.DataFrame) -> None:
    frame = cancer[COLUMNS].head(2)
    request = {
        "id": "42",
        "inputs": [{"name": c, "shape": [2], "datatype": "FP64", "data": frame[c].tolist()} for c in COLUMNS],
        "outputs": [{"name": "predict_proba"}],
    }

    async def scenario(client: httpx.AsyncClient) -> dict[str, httpx.Response]:
        return {
            "server": await client.get("/v2"),
            "live": await client.get("/v2/health/live"),
            "ready": await client.get("/v2/health/ready"),
            "model": await client.get("/v2/models/api"),
            "v2meta": await client.get("/v2/models/api/versions/2"),
            "model_ready": await client.get("/v2/models/api/ready"),
            "v2ready": await client.get("/v2/models/api/versions/2/ready"),
            "infer": await client.post("/v2/models/api/infer", json=request),
            "pinned": await client.post("/v2/models/api/versions/2/infer", json=request),
            "unknown_output": await client.post("/v2/models/api/infer", json={**request, "outputs": [{"name": "x"}]}),
            "missing": await client.get("/v2/models/nope"),
            "bad_version": await client.post("/v2/models/api/versions/zero/infer", json=request),
        }

    r = with_client(services, scenario)
    assert r["server"].json()["extensions"] == ["binary_tensor_data", "model_repository"]
    assert r["live"].json() == {"live": True} and r["ready"].status_code == 200
    meta = r["model"].json()
    assert meta["versions"] == ["1"] and [i["name"] for i in meta["inputs"]] == COLUMNS
    assert [o["name"] for o in meta["outputs"]] == [
        "predict",
        "predict_proba",
        "prediction_id",
        "anomaly_score",
        "anomaly_flagged",
    ]
    assert r["v2meta"].json()["versions"] == ["2"]
    assert r["model_ready"].status_code == 200 and r["v2ready"].status_code == 503
    infer = r["infer"].json()
    assert (
        infer["id"] == "42"
        and infer["model_version"] == "1"
        and [o["name"] for o in infer["outputs"]] == ["predict_proba"]
    )
    assert infer["outputs"][0]["shape"] == [2, 2]
    assert r["pinned"].json()["model_version"] == "2"
    assert r["unknown_output"].status_code == 400 and "unknown output(s) ['x']" in r["unknown_output"].json()["error"]
    assert r["missing"].status_code == 404 and r["bad_version"].status_code == 400


def test_operator_endpoints_follow_the_store(services: Services, cancer: pd.DataFrame) -> None:
    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["create"] = await client.post(
            "/v1/deployments", json={"name": "second", "model": "cancer", "alias": "champion"}
        )
        out["dupe"] = await client.post("/v1/deployments", json={"name": "second", "model": "cancer"})
        out["bad"] = await client.post("/v1/deployments", json={"name": "../x", "model": "cancer"})
        out["missing_field"] = await client.post("/v1/deployments", json={"name": "third"})
        out["promote"] = await client.put("/v1/models/cancer/aliases/champion", json={"version": 2, "reason": "better"})
        out["after"] = await client.post("/v1/deployments/second/predict", json={"instances": rows(cancer, 1)})
        out["rollback"] = await client.post("/v1/models/cancer/aliases/champion/rollback", json={"reason": "oops"})
        out["again"] = await client.post("/v1/deployments/second/predict", json={"instances": rows(cancer, 1)})
        out["list"] = await client.get("/v1/deployments")
        out["patch"] = await client.patch("/v1/deployments/second", json={"enabled": False})
        out["disabled"] = await client.post("/v1/deployments/second/predict", json={"instances": rows(cancer, 1)})
        out["index"] = await client.post("/v2/repository/index")
        out["load"] = await client.post("/v2/repository/models/second/load")
        out["delete"] = await client.delete("/v1/deployments/second")
        out["gone"] = await client.get("/v1/deployments/second")
        out["archived"] = await client.put("/v1/models/cancer/aliases/champion", json={"version": 7})
        return out

    r = with_client(services, scenario)
    assert r["create"].status_code == 201 and r["dupe"].status_code == 409
    assert r["bad"].status_code == 400 and "invalid deployment name" in r["bad"].json()["error"]
    assert r["missing_field"].status_code == 400 and "model: Field required" in r["missing_field"].json()["error"]
    assert r["promote"].json()["to_version"] == 2 and r["after"].json()["model"]["version"] == 2
    assert r["rollback"].json()["to_version"] == 1 and r["again"].json()["model"]["version"] == 1
    states = {d["name"]: (d["state"], d["serving_version"]) for d in r["list"].json()}
    assert states == {"api": ("READY", 1), "second": ("READY", 1)}
    assert r["patch"].json()["enabled"] is False
    assert r["disabled"].status_code == 503 and "disabled" in r["disabled"].json()["error"]
    assert {i["name"]: i["state"] for i in r["index"].json()}["second"] == "UNAVAILABLE"
    assert r["load"].json()["loaded"] is True
    assert r["delete"].status_code == 204 and r["gone"].status_code == 404
    assert r["archived"].status_code == 404


def test_metrics_count_requests_batches_and_failures(services: Services, cancer: pd.DataFrame) -> None:
    async def scenario(client: httpx.AsyncClient) -> str:
        await asyncio.gather(
            *(client.post("/v1/deployments/api/predict", json={"instances": rows(cancer, 1)}) for _ in range(20))
        )
        await client.post("/v1/deployments/api/predict", json={"instances": [{}]})
        return (await client.get("/metrics")).text

    text = with_client(services, scenario)
    labels = 'deployment="api",model="cancer",version="1"'
    assert f"corral_inference_request_success_total{{{labels}}} 20.0" in text
    assert f"corral_inference_count_total{{{labels}}} 20.0" in text
    assert f"corral_inference_request_duration_seconds_count{{{labels}}} 20.0" in text
    assert 'corral_inference_request_failure_total{deployment="api",status="400"} 1.0' in text
    assert f"corral_model_loaded{{{labels}}} 1.0" in text
    executions = float(
        next(line.split()[-1] for line in text.splitlines() if line.startswith("corral_inference_exec_count_total"))
    )
    assert 1 <= executions <= 20


def test_v2_compressed_requests(services: Services, cancer: pd.DataFrame) -> None:
    import gzip
    import json

    frame = cancer[COLUMNS].head(2)
    body = json.dumps(
        {"inputs": [{"name": c, "shape": [2], "datatype": "FP64", "data": frame[c].tolist()} for c in COLUMNS]}
    ).encode()

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post(
                "/v2/models/api/infer", content=gzip.compress(body), headers={"content-encoding": "gzip"}
            ),
            await client.post("/v2/models/api/infer", content=b"garbage", headers={"content-encoding": "gzip"}),
            await client.post("/v2/models/api/infer", content=body, headers={"content-encoding": "br"}),
            await client.post(
                "/v2/models/api/infer", content=gzip.compress(b" " * 20000 + body), headers={"content-encoding": "gzip"}
            ),
        ]

    ok, garbage, unknown, bomb = with_client(services, scenario)
    assert ok.status_code == 200 and ok.json()["outputs"][0]["name"] == "predict"
    assert garbage.status_code == 400 and "does not decompress" in garbage.json()["error"]
    assert unknown.status_code == 415 and "Content-Encoding 'br' is not accepted" in unknown.json()["error"]
    assert bomb.status_code == 413


def test_an_outlying_row_is_scored_and_flagged_but_served(services: Services, cancer: pd.DataFrame) -> None:
    rows_ = rows(cancer, 2)
    rows_[1]["mean radius"] = 500.0  # far outside anything the training data held

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/v1/deployments/api/predict", json={"instances": rows_})

    body = with_client(services, scenario).json()
    assert [a["flagged"] for a in body["anomaly"]] == [False, True]
    assert body["anomaly"][1]["score"] > 50 > body["anomaly"][0]["score"]
    assert body["out_of_range"] == [[], ["mean radius"]]
