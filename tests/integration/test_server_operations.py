"""Operating a real ``corral serve``: metrics, access log, limits, graceful shutdown, MLflow scoring, batching."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_process import ServerProcess, auth_headers, corral_env, metric, open_services, server_process
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

pytestmark = pytest.mark.slow

DEPLOYMENT = "ops"
MODEL = "cancer"
FEATURES = ["mean radius", "mean texture", "mean smoothness", "worst radius", "worst concavity", "worst symmetry"]
MAX_BODY_BYTES = 64 * 1024
MAX_ROWS = 100
LABELS = {"deployment": DEPLOYMENT, "model": MODEL, "version": "1"}


@dataclass
class Ops:
    server: ServerProcess
    env: dict[str, str]
    model: Pipeline
    rows: pd.DataFrame

    @property
    def url(self) -> str:
        return self.server.base_url

    def records(self, n: int, start: int = 0) -> list[dict[str, Any]]:
        return self.rows.iloc[start : start + n].to_dict(orient="records")


@pytest.fixture(scope="module")
def home(cancer: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pipeline]:
    """One model, one deployment: the only one, so ``POST /invocations`` knows what to score."""
    home = tmp_path_factory.mktemp("operations") / "home"
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(cancer[FEATURES], cancer["target"])
    services = open_services(corral_env(home))
    try:
        services.registry.log_model(
            model, name=MODEL, training_data=cancer[[*FEATURES, "target"]], target="target", code_commit="0" * 40
        )
        services.registry.promote(MODEL, 1)
        services.deployments.create(DEPLOYMENT, model=MODEL)
    finally:
        services.close()
    return home, model


@pytest.fixture(scope="module")
def ops(home: tuple[Path, Pipeline], cancer: pd.DataFrame) -> Iterator[Ops]:
    env = corral_env(
        home[0], CORRAL_SERVING__MAX_BODY_BYTES=str(MAX_BODY_BYTES), CORRAL_SERVING__MAX_ROWS=str(MAX_ROWS)
    )
    with server_process(env) as server:
        yield Ops(server, env, home[1], cancer[FEATURES])


def predict(ops: Ops, body: Any, path: str = f"/v1/deployments/{DEPLOYMENT}/predict", **kwargs: Any) -> httpx.Response:
    headers = {**auth_headers(ops.url), **kwargs.pop("headers", {})}
    return httpx.post(f"{ops.url}{path}", json=body, timeout=30, headers=headers, **kwargs)


# -- metrics and logs ----------------------------------------------------------------------------------------------


def test_metrics_are_labelled_by_deployment_model_and_version(ops: Ops) -> None:
    before = metric(ops.url, "corral_inference_request_success_total", **LABELS)
    for n in (1, 5, 20):
        assert predict(ops, {"instances": ops.records(n)}).status_code == 200

    text = httpx.get(f"{ops.url}/metrics", headers=auth_headers(ops.url), timeout=10).text
    samples = {
        s.name: s for family in text_string_to_metric_families(text) for s in family.samples if s.labels == LABELS
    }
    assert "corral_inference_request_success_total" in samples
    assert "corral_inference_request_duration_seconds_count" in samples
    assert "corral_inference_batch_size_count" in samples
    assert metric(ops.url, "corral_inference_request_success_total", **LABELS) == before + 3
    assert metric(ops.url, "corral_inference_count_total", **LABELS) >= 26  # rows
    assert metric(ops.url, "corral_inference_batch_size_sum", **LABELS) >= 26


def test_access_log_is_one_json_object_per_line(ops: Ops) -> None:
    marker = f"log-{time.time_ns()}"
    assert predict(ops, {"instances": [{"nope": 1}]}).status_code == 400
    assert predict(ops, {"instances": ops.records(2)}, headers={"X-Request-ID": marker}).status_code == 200
    for _ in range(100):  # the line is written just after the response goes out
        if marker in ops.server.log:
            break
        time.sleep(0.05)

    assert not ops.server.stdout  # logs go to stderr, nothing else anywhere
    lines = [line for line in ops.server.log.splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{") or not isinstance(json.loads(line), dict)]
    assert not not_json, not_json[:5]
    access = [r for r in ops.server.log_records() if "method" in r]
    mine = next(r for r in access if r.get("request_id") == marker)
    assert mine["method"] == "POST" and mine["path"] == f"/v1/deployments/{DEPLOYMENT}/predict"
    assert mine["status"] == 200 and mine["deployment"] == DEPLOYMENT
    assert isinstance(mine["duration_ms"], int | float) and mine["duration_ms"] >= 0
    assert any(r["status"] == 400 and r["path"] == mine["path"] for r in access)


def test_the_server_asks_for_tokens_and_never_logs_them(ops: Ops) -> None:
    token_file = Path(ops.env["CORRAL_HOME"]) / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600  # written on first start, for the owner only
    token = token_file.read_text().strip()
    assert httpx.get(f"{ops.url}/v2/health/live", timeout=10).status_code == 200  # health needs no token
    refused = predict(ops, {"instances": ops.records(1)}, headers={"Authorization": ""})
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    forged = httpx.get(f"{ops.url}/v1/models", headers={"Authorization": f"Bearer {token[:-2]}xx"}, timeout=10)
    assert forged.status_code == 401 and forged.json()["code"] == "invalid_token"
    marker = f"auth-{time.time_ns()}"
    assert predict(ops, {"instances": ops.records(1)}, headers={"X-Request-ID": marker}).status_code == 200
    for _ in range(100):
        if marker in ops.server.log:
            break
        time.sleep(0.05)
    assert marker in ops.server.log and token[len("corral_") :][:12] not in ops.server.log
    assert "authorization" not in ops.server.log.lower()


# -- limits --------------------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(ops: Ops) -> None:
    too_big = json.dumps({"instances": ops.records(1), "padding": "x" * MAX_BODY_BYTES}).encode()
    headers = auth_headers(ops.url)
    declared = httpx.post(
        f"{ops.url}/v1/deployments/{DEPLOYMENT}/predict", content=too_big, headers=headers, timeout=30
    )
    assert declared.status_code == 413
    assert f"over the limit of {MAX_BODY_BYTES} bytes" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for start in range(0, len(too_big), 8192):
            yield too_big[start : start + 8192]

    streamed = httpx.post(
        f"{ops.url}/v1/deployments/{DEPLOYMENT}/predict", content=chunks(), headers=headers, timeout=30
    )
    assert streamed.status_code == 413
    assert f"over the limit of {MAX_BODY_BYTES} bytes" in streamed.json()["error"]
    assert predict(ops, {"instances": ops.records(1)}).status_code == 200  # and the server carries on


def test_more_rows_than_the_limit_is_413(ops: Ops) -> None:
    executions = metric(ops.url, "corral_inference_exec_count_total", **LABELS)
    response = predict(ops, {"instances": ops.records(MAX_ROWS + 1)})
    assert response.status_code == 413
    assert f"{MAX_ROWS + 1} rows is over this server's limit of {MAX_ROWS} rows" in response.json()["error"]
    assert metric(ops.url, "corral_inference_exec_count_total", **LABELS) == executions
    assert predict(ops, {"instances": ops.records(MAX_ROWS)}).status_code == 200


# -- MLflow-style scoring ------------------------------------------------------------------------------------------


def test_mlflow_bodies_score_the_same(ops: Ops) -> None:
    frame = ops.rows.iloc[10:17]
    bodies = {
        "dataframe_split": {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))},
        "dataframe_records": {"dataframe_records": frame.to_dict(orient="records")},
        "instances": {"instances": frame.to_dict(orient="records")},
        "inputs": {"inputs": frame.to_dict(orient="list")},
    }
    expected = ops.model.predict(frame).tolist()
    for kind, body in bodies.items():
        response = predict(ops, body, path=f"/v1/deployments/{DEPLOYMENT}/invocations")
        assert response.status_code == 200, (kind, response.text)
        assert response.json()["predictions"] == expected, kind
        np.testing.assert_allclose(response.json()["probabilities"], ops.model.predict_proba(frame), rtol=1e-9)
    only = predict(ops, bodies["dataframe_split"], path="/invocations")  # exactly one deployment: it is the one
    assert only.status_code == 200 and only.json()["predictions"] == expected
    assert only.json()["deployment"] == DEPLOYMENT


# -- adaptive batching ---------------------------------------------------------------------------------------------


def test_concurrent_single_rows_are_coalesced_and_each_caller_gets_its_own_row(ops: Ops) -> None:
    """64 requests that reach the server together share model calls, and each gets its own row back.

    The requests are written on 64 open connections in one go, so they are at the server at the same
    moment (an idle server answers a lone request at once; coalescing is for requests that meet).
    """
    n = 64
    records = ops.records(n, start=100)
    host, port = ops.url.removeprefix("http://").split(":")
    token = auth_headers(ops.url)["Authorization"]

    def request(record: dict[str, Any]) -> bytes:
        body = json.dumps({"instances": [record]}).encode()
        head = (
            f"POST /v1/deployments/{DEPLOYMENT}/predict HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def read_response(reader: asyncio.StreamReader) -> tuple[int, Any]:
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, json.loads(await reader.readexactly(length))

    async def main() -> list[tuple[int, Any]]:
        streams = [await asyncio.open_connection(host, int(port)) for _ in range(n)]
        try:
            for (_, writer), record in zip(streams, records, strict=True):
                writer.write(request(record))  # back to back, microseconds apart
            await asyncio.gather(*(writer.drain() for _, writer in streams))
            return await asyncio.gather(*(read_response(reader) for reader, _ in streams))
        finally:
            for _, writer in streams:
                writer.close()

    before = metric(ops.url, "corral_inference_exec_count_total", **LABELS)
    responses = asyncio.run(asyncio.wait_for(main(), 60))
    executions = metric(ops.url, "corral_inference_exec_count_total", **LABELS) - before
    assert all(status == 200 for status, _ in responses)
    assert executions < n, f"{n} concurrent requests took {executions:g} model calls"
    expected = ops.model.predict_proba(pd.DataFrame(records))
    for i, (_, body) in enumerate(responses):  # the rows were all different: a mix-up would show
        np.testing.assert_allclose(body["probabilities"], expected[i : i + 1], rtol=1e-9)


# -- graceful shutdown ---------------------------------------------------------------------------------------------


def start_slow_request(base_url: str, path: str, length: int) -> socket.socket:
    """Send a request's headers with ``Expect: 100-continue`` and wait for the app to ask for the body.

    When ``100 Continue`` arrives the request is in the application, waiting
    for its body: in flight, whatever the scheduling.
    """
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: {auth_headers(base_url)['Authorization']}\r\n"
        f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    )
    sock.sendall(head.encode())
    interim = b""
    while b"\r\n\r\n" not in interim:
        chunk = sock.recv(1024)
        assert chunk, f"connection closed before 100 Continue: {interim!r}"
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100"), interim
    return sock


def finish_request(sock: socket.socket, body: bytes) -> tuple[int, dict[str, Any]]:
    """Send the body and read the whole response (the server closes the connection while shutting down)."""
    sock.sendall(body)
    data = b""
    while chunk := sock.recv(1 << 20):
        data += chunk
    sock.close()
    head, _, content = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(content)


def test_sigterm_finishes_requests_in_flight_and_exits_0(home: tuple[Path, Pipeline], cancer: pd.DataFrame) -> None:
    rows = cancer[FEATURES].sample(10_000, replace=True, random_state=0).reset_index(drop=True)
    body = json.dumps({"instances": rows.to_dict(orient="records")}).encode()
    expected = home[1].predict(rows).tolist()
    path = f"/v1/deployments/{DEPLOYMENT}/predict"
    with server_process(corral_env(home[0])) as server:
        in_flight = [start_slow_request(server.base_url, path, len(body)) for _ in range(3)]
        os.kill(server.process.pid, signal.SIGTERM)
        for _ in range(200):  # the bodies go only once the server is shutting down, waiting on these requests
            if "Waiting for connections to close" in server.log:
                break
            time.sleep(0.05)
        assert "Waiting for connections to close" in server.log, server.log[-3000:]
        results = [finish_request(sock, body) for sock in in_flight]
        code = server.process.wait(timeout=60)
        log = server.log

    for status, answer in results:
        assert status == 200, answer
        assert answer["predictions"] == expected
    assert code == 0, log[-3000:]
    assert "Shutting down" in log and "Application shutdown complete" in log


def test_metrics_add_up_every_worker_process(home: tuple[Path, Pipeline], cancer: pd.DataFrame) -> None:
    env = corral_env(home[0])
    with server_process(env, workers=2) as server:
        before = metric(server.base_url, "corral_inference_request_success_total", **LABELS)
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as client:  # both workers
            for i in range(40):
                body = {"instances": cancer[FEATURES].iloc[[i]].to_dict(orient="records")}
                response = client.post(
                    f"/v1/deployments/{DEPLOYMENT}/predict", json=body, headers={"connection": "close"}
                )
                assert response.status_code == 200
        totals = {metric(server.base_url, "corral_inference_request_success_total", **LABELS) for _ in range(6)}
        assert totals == {before + 40}  # whichever process answers /metrics reports both
        assert metric(server.base_url, "corral_model_loaded", **LABELS) == 1


def test_windows_from_every_worker_add_up_in_the_store(home: tuple[Path, Pipeline], cancer: pd.DataFrame) -> None:
    """Two worker processes each keep their own windows; the database adds their deltas up exactly."""
    env = corral_env(home[0], CORRAL_MONITORING__FLUSH_SECONDS="0.2", CORRAL_MONITORING__PROCESS_SECONDS="0.05")
    with (
        server_process(env, workers=2) as server,
        httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as client,
    ):
        before = client.get(f"/v1/deployments/{DEPLOYMENT}/monitoring").json()
        seen = before["window"]["rows"] if before.get("window") else 0
        sent = 0
        for i in range(60):  # new connections, so both workers answer
            rows = cancer[FEATURES].iloc[[i, i + 60]].to_dict(orient="records")
            response = client.post(
                f"/v1/deployments/{DEPLOYMENT}/predict", json={"instances": rows}, headers={"connection": "close"}
            )
            assert response.status_code == 200
            sent += 2
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            report = client.get(f"/v1/deployments/{DEPLOYMENT}/monitoring").json()
            if report.get("window") and report["window"]["rows"] >= seen + sent:
                break
            time.sleep(0.1)
        assert report["window"]["rows"] == seen + sent
        radius = next(f for f in report["features"] if f["name"] == "mean radius")
        assert radius["quality"]["count"] == seen + sent and radius["quality"]["missing_rate"] == 0
