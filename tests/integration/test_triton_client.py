"""A real ``corral serve`` driven by the real Triton HTTP client (Open Inference Protocol V2) over loopback."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from server_process import auth_headers, corral_env, metric, open_services, run_cli, running_server
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient._plugin import InferenceServerClientPlugin
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.slow

DEPLOYMENT = "cancer-api"
SPARE = "cancer-spare"  # loaded and unloaded through the repository extension, so DEPLOYMENT keeps serving
EXEC_COUNT = "corral_inference_exec_count_total"


@dataclass
class Served:
    base_url: str
    env: dict[str, str]
    models: dict[int, Pipeline]  # version -> the fitted model registered as that version
    rows: pd.DataFrame  # feature rows to score

    @property
    def address(self) -> str:
        return self.base_url.removeprefix("http://")


@pytest.fixture(scope="module")
def served(cancer: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Two versions of a breast-cancer classifier (champion: 1) behind two deployments, on one server."""
    env = corral_env(tmp_path_factory.mktemp("triton") / "home", CORRAL_SERVING__REFRESH_SECONDS="0.2")
    features, target = cancer.drop(columns="target"), cancer["target"]
    models = {
        1: make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(features, target),
        2: make_pipeline(StandardScaler(), LogisticRegression(C=0.01)).fit(features, target),
    }
    services = open_services(env)
    try:
        for model in models.values():
            services.registry.log_model(
                model, name="cancer", training_data=cancer, target="target", code_commit="0" * 40
            )
        services.registry.promote("cancer", 1)
        services.deployments.create(DEPLOYMENT, model="cancer")
        services.deployments.create(SPARE, model="cancer")
    finally:
        services.close()
    with running_server(env) as base_url:
        yield Served(base_url, env, models, features.iloc[::29].reset_index(drop=True))


class BearerToken(InferenceServerClientPlugin):
    """Sends corral's ``Authorization: Bearer`` header with every request (tritonclient's plugin hook)."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers

    def __call__(self, request: Any) -> None:
        request.headers.update(self.headers)


@pytest.fixture
def client(served: Served) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(served.address, network_timeout=30)
    client.register_plugin(BearerToken(auth_headers(served.base_url)))
    yield client
    client.close()


def test_without_a_token_only_health_answers(served: Served) -> None:
    anonymous = triton.InferenceServerClient(served.address, network_timeout=30)
    try:
        assert anonymous.is_server_live() and anonymous.is_server_ready()
        refused = server_error(anonymous.get_server_metadata)
        assert "authentication required" in str(refused)
        inputs = column_inputs(served.rows.head(2), binary=True)
        assert "authentication required" in str(server_error(anonymous.infer, DEPLOYMENT, inputs))
    finally:
        anonymous.close()


def column_inputs(rows: pd.DataFrame, *, binary: bool) -> list[triton.InferInput]:
    """One FP64 input per feature column, named like the column (the tabular convention)."""
    inputs = []
    for column in rows.columns:
        tensor = triton.InferInput(column, [len(rows)], "FP64")
        tensor.set_data_from_numpy(rows[column].to_numpy(dtype="float64"), binary_data=binary)
        inputs.append(tensor)
    return inputs


def requested(*names: str, binary: bool) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=binary) for name in names]


def server_error(call: Any, *args: Any, **kwargs: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call(*args, **kwargs)
    return caught.value


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "corral"
    assert {"binary_tensor_data", "model_repository"} <= set(metadata["extensions"])


def test_model_readiness_and_metadata(client: triton.InferenceServerClient, served: Served) -> None:
    assert client.is_model_ready(DEPLOYMENT)
    assert client.is_model_ready(DEPLOYMENT, "1")
    assert not client.is_model_ready(DEPLOYMENT, "2")  # registered, but not what the deployment serves
    assert not client.is_model_ready("no-such-model")

    metadata = client.get_model_metadata(DEPLOYMENT)
    assert metadata["name"] == DEPLOYMENT and metadata["versions"] == ["1"]
    assert [i["name"] for i in metadata["inputs"]] == list(served.rows.columns)
    assert {i["datatype"] for i in metadata["inputs"]} == {"FP64"}
    outputs = {o["name"]: o for o in metadata["outputs"]}
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict_proba"]["shape"] == [-1, 2]
    assert outputs["prediction_id"]["datatype"] == "BYTES"
    assert client.get_model_metadata(DEPLOYMENT, "2")["versions"] == ["2"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_matches_the_model_in_process(client: triton.InferenceServerClient, served: Served, binary: bool) -> None:
    rows, model = served.rows, served.models[1]
    result = client.infer(
        DEPLOYMENT,
        column_inputs(rows, binary=binary),
        outputs=requested("predict", "predict_proba", "prediction_id", binary=binary),
        request_id=f"req-{binary}",
    )
    response = result.get_response()
    assert response["id"] == f"req-{binary}"
    assert response["model_name"] == DEPLOYMENT and response["model_version"] == "1"
    assert all(("data" in o) != binary for o in response["outputs"])  # really sent the way it was asked for
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(rows))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(rows), rtol=1e-12, atol=0)
    ids = [i.decode() if isinstance(i, bytes) else i for i in result.as_numpy("prediction_id")]
    assert len(ids) == len(set(ids)) == len(rows)
    assert {uuid.UUID(i).version for i in ids} == {7}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_all_outputs_come_back_when_none_are_requested(
    client: triton.InferenceServerClient, served: Served, binary: bool
) -> None:
    result = client.infer(DEPLOYMENT, column_inputs(served.rows, binary=binary))
    assert {o["name"] for o in result.get_response()["outputs"]} == {
        "predict",
        "predict_proba",
        "prediction_id",
        "anomaly_score",
        "anomaly_flagged",
    }
    np.testing.assert_array_equal(result.as_numpy("predict"), served.models[1].predict(served.rows))
    assert result.as_numpy("anomaly_score").shape == (len(served.rows),)
    assert result.as_numpy("anomaly_flagged").dtype == bool


@pytest.mark.parametrize("version", [1, 2])
def test_infer_on_an_explicit_version(client: triton.InferenceServerClient, served: Served, version: int) -> None:
    rows, model = served.rows, served.models[version]
    result = client.infer(
        DEPLOYMENT,
        column_inputs(rows, binary=True),
        model_version=str(version),
        outputs=requested("predict", "predict_proba", binary=True),
    )
    assert result.get_response()["model_version"] == str(version)
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(rows))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(rows), rtol=1e-12, atol=0)
    assert client.get_model_metadata(DEPLOYMENT)["versions"] == ["1"]  # asking for v2 did not change the champion


def test_unknown_model_is_404(client: triton.InferenceServerClient, served: Served) -> None:
    error = server_error(client.infer, "no-such-model", column_inputs(served.rows, binary=True))
    assert error.status() == "404"
    assert "no deployment named 'no-such-model'" in error.message()
    error = server_error(client.get_model_metadata, "no-such-model")
    assert error.status() == "404" and "no-such-model" in error.message()
    error = server_error(client.infer, DEPLOYMENT, column_inputs(served.rows, binary=True), model_version="99")
    assert error.status() == "404" and "no version 99" in error.message()


def _missing_column(rows: pd.DataFrame, binary: bool) -> list[triton.InferInput]:
    return column_inputs(rows.drop(columns="mean texture"), binary=binary)


def _text_in_a_number_column(rows: pd.DataFrame, binary: bool) -> list[triton.InferInput]:
    inputs = column_inputs(rows.drop(columns="mean radius"), binary=binary)
    text = triton.InferInput("mean radius", [len(rows)], "BYTES")
    text.set_data_from_numpy(np.array(["large"] * len(rows), dtype=object), binary_data=binary)
    return [text, *inputs]


def _booleans_in_a_number_column(rows: pd.DataFrame, binary: bool) -> list[triton.InferInput]:
    inputs = column_inputs(rows.drop(columns="mean radius"), binary=binary)
    flags = triton.InferInput("mean radius", [len(rows)], "BOOL")
    flags.set_data_from_numpy(np.ones(len(rows), dtype=bool), binary_data=binary)
    return [flags, *inputs]


def _nan_where_training_had_none(rows: pd.DataFrame, binary: bool) -> list[triton.InferInput]:
    return column_inputs(
        rows.assign(**{"worst area": np.where(rows.index == 2, np.nan, rows["worst area"])}), binary=binary
    )


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (_missing_column, "missing inputs: mean texture"),
        (_text_in_a_number_column, "column 'mean radius' expects numbers"),
        (_booleans_in_a_number_column, "column 'mean radius' expects numbers"),
        (_nan_where_training_had_none, "column 'worst area' is missing a value (row 2)"),
    ],
    ids=["missing-column", "text", "booleans", "nan"],
)
def test_bad_input_is_400_naming_the_column_and_never_reaches_the_model(
    client: triton.InferenceServerClient, served: Served, binary: bool, build: Any, fragment: str
) -> None:
    executions = metric(served.base_url, EXEC_COUNT, deployment=DEPLOYMENT)
    error = server_error(client.infer, DEPLOYMENT, build(served.rows, binary))
    assert error.status() == "400"
    assert fragment in error.message()
    assert metric(served.base_url, EXEC_COUNT, deployment=DEPLOYMENT) == executions
    client.infer(DEPLOYMENT, column_inputs(served.rows, binary=binary))  # the counter does move when the model runs
    assert metric(served.base_url, EXEC_COUNT, deployment=DEPLOYMENT) == executions + 1


def test_repository_index_unload_and_load(client: triton.InferenceServerClient, served: Served) -> None:
    inputs = column_inputs(served.rows, binary=True)
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index[SPARE]["state"] == "READY" and index[SPARE]["version"] == "1"
    assert index[DEPLOYMENT]["state"] == "READY"

    client.unload_model(SPARE)
    assert not client.is_model_ready(SPARE)
    error = server_error(client.infer, SPARE, inputs)
    assert error.status() == "503" and "not ready" in error.message()
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index[SPARE]["state"] == "UNAVAILABLE" and "disabled" in index[SPARE]["reason"]
    assert client.is_model_ready(DEPLOYMENT)  # the other deployment never noticed

    client.load_model(SPARE)
    assert client.is_model_ready(SPARE)
    assert {m["name"]: m["state"] for m in client.get_model_repository_index()}[SPARE] == "READY"
    result = client.infer(SPARE, inputs)
    np.testing.assert_array_equal(result.as_numpy("predict"), served.models[1].predict(served.rows))


def test_an_archived_version_is_not_served_even_once_loaded(
    client: triton.InferenceServerClient, served: Served
) -> None:
    inputs = column_inputs(served.rows, binary=True)
    assert client.infer(DEPLOYMENT, inputs, model_version="2").get_response()["model_version"] == "2"  # now loaded

    def status_of_version_2() -> str:
        for _ in range(100):  # the server hears of the change on its next refresh
            try:
                client.infer(DEPLOYMENT, inputs, model_version="2")
            except InferenceServerException as exc:
                return f"{exc.status()} {exc.message()}"
            time.sleep(0.05)
        return "200"

    services = open_services(served.env)
    try:
        services.registry.archive("cancer", 2, reason="superseded")
        assert status_of_version_2().startswith("409 "), "an archived version is still served"
        assert "archived" in server_error(client.infer, DEPLOYMENT, inputs, model_version="2").message()
    finally:
        services.registry.restore("cancer", 2)
        services.close()
    result = client.infer(DEPLOYMENT, inputs, model_version="2")  # restored: served again
    np.testing.assert_array_equal(result.as_numpy("predict"), served.models[2].predict(served.rows))


def test_deployments_made_with_the_cli_are_served_without_a_restart(
    client: triton.InferenceServerClient, served: Served
) -> None:
    def eventually(condition: Any) -> bool:
        for _ in range(100):  # the server hears of changes on its next refresh
            if condition():
                return True
            time.sleep(0.05)
        return False

    created = json.loads(run_cli(served.env, "deployments", "create", "from-cli", "--model", "cancer", "--json").stdout)
    assert created["name"] == "from-cli" and created["alias"] == "champion"
    try:
        assert eventually(lambda: client.is_model_ready("from-cli"))
        result = client.infer("from-cli", column_inputs(served.rows, binary=True))
        np.testing.assert_array_equal(result.as_numpy("predict"), served.models[1].predict(served.rows))
        listed = json.loads(run_cli(served.env, "deployments", "list", "--json").stdout)
        assert {d["name"]: d["version"] for d in listed}["from-cli"] == 1

        run_cli(served.env, "deployments", "update", "from-cli", "--disable")
        assert eventually(lambda: not client.is_model_ready("from-cli"))
        assert server_error(client.infer, "from-cli", column_inputs(served.rows, binary=True)).status() == "503"
    finally:
        run_cli(served.env, "deployments", "delete", "from-cli", "--yes")
    assert eventually(lambda: "from-cli" not in {m["name"] for m in client.get_model_repository_index()})
    assert server_error(client.get_model_metadata, "from-cli").status() == "404"
