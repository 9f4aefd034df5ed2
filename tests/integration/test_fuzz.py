"""Property-based calls on every operation of a real ``corral serve``, from its own OpenAPI document.

schemathesis reads ``/openapi.json`` from the running server (with the admin token) and, for every operation
in it, sends generated requests: its coverage phase (boundary values, missing and wrong-typed parameters,
wrong content types), then Hypothesis-generated valid and invalid inputs. Two passes:

- **with the admin token**: no response is a server error (5xx), no response has a status code or a content
  type the document does not list for its operation, and every response body matches the schema the document
  gives for it;
- **without a token**: every operation but the public ones (health) answers ``401`` with a JSON error body
  that matches the document, and never a 5xx.

Path parameters are sometimes the names of what exists (the deployment under test, its model, a recorded
prediction...), so the calls reach the handlers' logic and not only the 404 of an unknown name. Operations
that change what serves are pointed at scratch deployments and a scratch model, never at ``cancer-api``
(the deployment the reading operations and predictions use), and no call may revoke the token the test uses.

Bounded for ``make test`` (``CORRAL_FUZZ_EXAMPLES`` generated cases per operation, default 10, and a fixed
seed, so a run is reproducible; about 40 seconds); run it longer, or with another seed, with for example::

    CORRAL_FUZZ_EXAMPLES=300 CORRAL_FUZZ_SEED=7 .venv/bin/pytest tests/integration/test_fuzz.py

(300 examples take about ten minutes; each pass's time limit grows with ``CORRAL_FUZZ_EXAMPLES``).

A failure names the operation and shows the request (as a curl command) and the response.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_process import ServerProcess, corral_env, open_services, server_process
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from corral.pipelines.entities import Pipeline
from corral.security.permissions import ROUTES, Permission, permission_for
from corral.testing.auth import admin_headers

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CORRAL_FUZZ_EXAMPLES", "10"))  # generated cases per operation (plus coverage cases)
ANONYMOUS_EXAMPLES = max(3, EXAMPLES // 4)
SEED = int(os.environ.get("CORRAL_FUZZ_SEED", "20240601"))
TIMEOUT = 30.0  # seconds a single call may take
PASS_TIMEOUT = max(300, 120 + 4 * EXAMPLES)  # seconds for a whole pass over every operation (pytest-timeout)

MODEL, DEPLOYMENT = "cancer", "cancer-api"  # read and predicted, never changed
SCRATCH_MODEL, SCRATCH, DOOMED = "scratch-model", "scratch", "doomed"  # changed, rolled back, deleted
VICTIM_TOKEN = "fuzz-victim"  # the token DELETE /v1/tokens/{token} may revoke
RULE = "fuzz-rule"
PIPELINE = "fuzz-pipeline"  # retrains the scratch deployment; no worker runs here, so its runs stay queued


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """``not_a_server_error``, but for two 503s that tell the truth, as the document says: the Open Inference
    Protocol's readiness answer ``{"ready": false}`` (a version the deployment does not serve), and "not ready"
    from a scratch deployment (which the calls themselves unload, disable or point at versions that cannot
    load)."""
    if response.status_code == 503:
        body = response.json()
        if case.operation.path.endswith("/ready") and body.get("ready") is False:
            return None
        scratch = (case.path_parameters or {}).get("name") in (SCRATCH, DOOMED)
        if scratch and body.get("code") == "unavailable":
            return None
    result: bool | None = not_a_server_error(ctx, response, case)
    return result


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

with_token = schemathesis.pytest.from_fixture("api_schema")
without_token = schemathesis.pytest.from_fixture("anonymous_schema")


class Fuzzed:
    """The running server and the names that exist on it."""

    def __init__(self, server: ServerProcess, headers: dict[str, str], prediction_id: str, run_id: str) -> None:
        self.server = server
        self.headers = headers
        self.prediction_id = prediction_id
        self.run_id = run_id
        me = httpx.get(f"{server.base_url}/v1/whoami", headers=headers, timeout=TIMEOUT).raise_for_status().json()
        self.protected_tokens = {"admin", me["name"], me["id"]}  # revoking the test's own token would end the run

    def known(self, method: str, path: str) -> dict[str, str]:
        """Path parameters naming things that exist, for an operation: reads and predictions go to the
        deployment under test, changes to the scratch ones."""
        writes = method.upper() != "GET"
        values: dict[str, str] = {
            "version": "1",
            "alias": "champion",
            "model": SCRATCH_MODEL,
            "prediction_id": self.prediction_id,
            "token": VICTIM_TOKEN,
            "rule": RULE,
            "run_id": self.run_id,
        }
        if path.startswith(("/v1/deployments/{name}", "/v2/models/{name}")):
            values["name"] = DEPLOYMENT
            if writes and not path.endswith(("/invocations", "/predict", "/infer")):
                values["name"] = SCRATCH
            if method.upper() == "DELETE" and path == "/v1/deployments/{name}":
                values["name"] = DOOMED
        elif path.startswith("/v2/repository/models/{name}"):
            values["name"] = SCRATCH
        elif path.startswith("/v1/models/{name}"):
            values["name"] = SCRATCH_MODEL if writes else MODEL
        elif path.startswith("/v1/pipelines/{name}"):
            values["name"] = PIPELINE
        if path == "/v1/deployments/{name}/members/{model}/{version}":
            values["version"] = "2"
        return values


def _fit(frame: pd.DataFrame, c: float) -> Any:
    features, target = frame.drop(columns="target"), frame["target"]
    return make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(features, target)


@pytest.fixture(scope="module")
def fuzzed(cancer: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    env = corral_env(home, CORRAL_SERVING__REFRESH_SECONDS="0.5", CORRAL_PIPELINES__WORKER="false")
    services = open_services(env)
    try:
        registry = services.registry
        for name, versions in ((MODEL, (1.0,)), (SCRATCH_MODEL, (1.0, 0.1))):
            for c in versions:
                registry.log_model(
                    _fit(cancer, c), name=name, training_data=cancer, target="target", code_commit="0" * 40
                )
            registry.promote(name, 1)
        services.deployments.create(DEPLOYMENT, model=MODEL)
        services.deployments.create(SCRATCH, model=SCRATCH_MODEL)
        services.deployments.create(DOOMED, model=SCRATCH_MODEL)
        services.pipelines.create(
            Pipeline(
                name=PIPELINE,
                train="pipeline_functions:train",
                data=({"kind": "file", "path": "train.csv"},),
                target="target",
                deployment=SCRATCH,
                schedule="0 3 * * *",
            )
        )
        run = services.pipelines.run(PIPELINE, reason="queued for the fuzzing")
        assert run is not None
    finally:
        services.close()
    with server_process(env) as server:
        headers = admin_headers(home)
        rows = cancer.drop(columns="target").head(3).to_dict(orient="records")
        answer = httpx.post(
            f"{server.base_url}/v1/deployments/{DEPLOYMENT}/predict",
            json={"instances": rows},
            headers=headers,
            timeout=TIMEOUT,
        )
        assert answer.status_code == 200, answer.text
        made = httpx.post(
            f"{server.base_url}/v1/tokens", json={"name": VICTIM_TOKEN, "role": "viewer"}, headers=headers
        )
        assert made.status_code == 201, made.text
        yield Fuzzed(server, headers, answer.json()["prediction_ids"][0], run.id)
        # whatever the calls did to the scratch deployments, the deployment under test still answers
        again = httpx.post(
            f"{server.base_url}/v1/deployments/{DEPLOYMENT}/predict",
            json={"instances": rows},
            headers=headers,
            timeout=TIMEOUT,
        )
        assert again.status_code == 200, again.text


def _load_schema(fuzzed: Fuzzed, phases: list[str]) -> Any:
    """The server's own OpenAPI document, as schemathesis reads it (with the admin token: the document needs
    ``read``), with path parameters that name what exists half of the time."""
    loaded = schemathesis.openapi.from_url(f"{fuzzed.server.base_url}/openapi.json", headers=fuzzed.headers)
    loaded.config.update(base_url=fuzzed.server.base_url, request_timeout=TIMEOUT)
    loaded.config.seed = SEED
    loaded.config.phases.update(phases=phases)

    @loaded.hook
    def flatmap_path_parameters(context: Any, parameters: dict[str, Any] | None) -> Any:
        if not parameters:
            return st.just(parameters)
        operation = context.operation
        known = fuzzed.known(operation.method, operation.path)
        return st.fixed_dictionaries(
            {k: st.sampled_from([v, known[k]]) if k in known else st.just(v) for k, v in parameters.items()}
        )

    @loaded.hook
    def filter_path_parameters(_context: Any, parameters: dict[str, Any] | None) -> bool:
        return not isinstance(parameters, dict) or parameters.get("token") not in fuzzed.protected_tokens

    return loaded


@pytest.fixture(scope="module")
def api_schema(fuzzed: Fuzzed) -> Any:
    """For the admin pass: the coverage phase (boundary values, missing parameters, wrong types and content
    types, unsupported methods), then generated valid and invalid inputs."""
    return _load_schema(fuzzed, ["examples", "coverage", "fuzzing"])


@pytest.fixture(scope="module")
def anonymous_schema(fuzzed: Fuzzed) -> Any:
    """For the pass without a token: a few generated requests per operation are enough, since the token is
    checked before anything else is read."""
    return _load_schema(fuzzed, ["fuzzing"])


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 renames the test node per operation through ``_nodeid``, which pytest 9.2 no longer
    has (the node id is derived); give it the attribute so its lazy schema runs (the subtests still report
    each operation's label)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


NOT_API = ("/ui", "/docs", "/redoc", "/openapi.json", "/metrics")  # the dashboard, the docs pages, Prometheus


def test_the_document_describes_every_api_route_and_its_refusals(fuzzed: Fuzzed) -> None:
    """Every route of the API in the permission table is in the document (the plain Starlette routes of the hot
    path included), so the fuzzing above reaches each one; every refusal is declared with the one error body."""
    document = httpx.get(f"{fuzzed.server.base_url}/openapi.json", headers=fuzzed.headers, timeout=TIMEOUT).json()
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    api = {(method, path) for method, path in ROUTES if not path.startswith(NOT_API)}
    assert documented == api, (sorted(api - documented), sorted(documented - api))
    error_body = document["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {"error", "code"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path in sorted(documented):
        responses = document["paths"][path][method.lower()]["responses"]
        assert "422" not in responses, (method, path)  # corral answers invalid input with 400
        if permission_for(method, path) is not Permission.PUBLIC:
            assert {"401", "403"} <= set(responses), (method, path, sorted(responses))
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                readiness = status == "503" and path.endswith("/ready")  # {"ready": false}, the protocol's answer
                assert "ErrorBody" in str(schema) or readiness, (method, path, status, schema)


@with_token.parametrize()
@settings(FUZZ_SETTINGS)
@pytest.mark.timeout(PASS_TIMEOUT)
def test_every_operation_with_the_admin_token(case: Any, fuzzed: Fuzzed) -> None:
    """No 5xx, no undocumented status, no body that breaks the schema the document gives for it."""
    case.call_and_validate(headers=fuzzed.headers, checks=CHECKS, timeout=TIMEOUT)


@without_token.parametrize()
@settings(FUZZ_SETTINGS, max_examples=ANONYMOUS_EXAMPLES)
@pytest.mark.timeout(PASS_TIMEOUT)
def test_every_operation_without_a_token(case: Any, fuzzed: Fuzzed) -> None:
    """401 with a JSON error body everywhere but health, whatever the request; never a 5xx."""
    response = case.call(timeout=TIMEOUT)
    case.validate_response(response, checks=CHECKS)
    if case.method.upper() != case.operation.method.upper():  # schemathesis probing an unsupported method
        assert response.status_code == 405, (case.operation.label, case.method, response.status_code, response.text)
        return
    public = permission_for(case.operation.method, case.operation.path) is Permission.PUBLIC
    if not public:
        assert response.status_code == 401, (case.operation.label, response.status_code, response.text)
        assert response.json()["code"] == "unauthenticated", response.text
