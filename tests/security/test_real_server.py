"""What only a socket can send, against a real ``corral serve`` (uvicorn): a chunked body over the limit with no
``Content-Length``, lengths that lie both ways, ``../`` left in the request line, a pickle body, and names and
headers that try to break the one-JSON-object-per-line log. Each is refused without invoking the model or
writing anything, and the server stays healthy; every line it logged is one JSON object.
"""

from __future__ import annotations

import json
import pickle
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
from attack_world import COLUMNS, ROW, SECRET
from crafted import Sentinel
from server_process import ServerProcess, corral_env, metric, open_services, server_process
from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.slow

LIMIT = 65536
EXECUTIONS = "corral_inference_exec_count_total"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Served:
    server: ServerProcess
    host: str
    port: int
    home: Path
    env: dict[str, str]

    def send(
        self, head: str, body: bytes = b"", *, chunks: list[bytes] | None = None, half_close: bool = False
    ) -> Answer | None:
        """Send a raw request (``head`` without the blank line) and read the first response; ``None`` when the
        server closed the connection without one."""
        with socket.create_connection((self.host, self.port), timeout=10) as conn:
            conn.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
            try:
                for chunk in chunks or []:
                    conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                if chunks is not None:
                    conn.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed before the body ended: read what it said
            if half_close:
                conn.shutdown(socket.SHUT_WR)
            data = b""
            try:
                while True:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    data += piece
                    if _complete(data):
                        break
            except (ConnectionResetError, TimeoutError):
                pass
        return _parse(data) if data else None

    def head(self, method: str, path: str, *extra: str) -> str:
        auth = self.server.headers["Authorization"]
        return "\r\n".join(
            [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Authorization: {auth}", *extra]
        )

    def executions(self) -> float:
        return metric(self.server.base_url, EXECUTIONS)

    def audit_rows(self) -> int:
        services = open_services(self.env)
        try:
            return services.database.audit.count()
        finally:
            services.close()


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def _parse(data: bytes) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return Answer(status, headers, body[:length])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, cancer: pd.DataFrame) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("real-attacks") / "home"
    env = corral_env(home, CORRAL_SERVING__MAX_BODY_BYTES=str(LIMIT), CORRAL_PIPELINES__WORKER="false")
    services = open_services(env)
    try:
        data = cancer[[*COLUMNS, "target"]]
        model = LogisticRegression(max_iter=2000).fit(data[COLUMNS], data["target"])
        services.registry.log_model(model, name="cancer", training_data=data, target="target")
        services.registry.promote("cancer", 1)
        services.deployments.create("api", model="cancer")
    finally:
        services.close()
    (home / "sentinel.txt").write_text(SECRET)
    with server_process(env) as server:
        address = urlsplit(server.base_url)
        assert address.hostname is not None and address.port is not None
        yield Served(server, address.hostname, address.port, home, env)
        for line in server.log.splitlines():  # every line the server wrote is one JSON object
            assert isinstance(json.loads(line), dict), line


@pytest.fixture
def unchanged(served: Served) -> Iterator[None]:
    """The test's requests invoke no model and record nothing; the server is healthy after them."""
    calls, rows = served.executions(), served.audit_rows()
    yield
    assert served.executions() == calls, "the model was invoked"
    assert served.audit_rows() == rows, "something was recorded"
    ready = served.send(served.head("GET", "/v2/health/ready"))
    assert ready is not None and ready.status == 200
    body = json.dumps({"instances": [ROW]}).encode()
    good = served.send(
        served.head(
            "POST", "/v1/deployments/api/predict", "Content-Type: application/json", f"Content-Length: {len(body)}"
        ),
        body,
    )
    assert good is not None and good.status == 200, good


def _refused(answer: Answer | None, status: int, code: str) -> dict[str, object]:
    assert answer is not None, "no response"
    assert answer.status == status, (answer.status, answer.body[:300])
    error = answer.json()
    assert set(error) == {"error", "code"} and error["code"] == code, error
    assert SECRET not in str(error)
    return error


@pytest.mark.usefixtures("unchanged")
def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(served: Served) -> None:
    head = served.head(
        "POST", "/v1/deployments/api/predict", "Content-Type: application/json", "Transfer-Encoding: chunked"
    )
    answer = served.send(head, chunks=[b" " * 8192] * 32)  # 256 KiB, four times the limit, with no Content-Length
    error = _refused(answer, 413, "limit_exceeded")
    assert f"over the limit of {LIMIT} bytes" in str(error["error"])


@pytest.mark.usefixtures("unchanged")
def test_a_declared_length_over_the_limit_is_refused_before_the_body(served: Served) -> None:
    head = served.head("POST", "/v2/models/api/infer", f"Content-Length: {LIMIT * 100}")
    _refused(served.send(head, b"{"), 413, "limit_exceeded")  # answered without waiting for 6 MB that never come


@pytest.mark.usefixtures("unchanged")
def test_a_content_length_lower_than_the_body_reads_only_what_it_declares(served: Served) -> None:
    body = json.dumps({"instances": [ROW]}).encode()
    head = served.head("POST", "/v1/deployments/api/predict", "Content-Type: application/json", "Content-Length: 20")
    answer = served.send(head, body)
    assert answer is not None and answer.status == 400
    # the first 20 bytes are the body, not a whole JSON document; the rest is no HTTP request, which uvicorn
    # answers itself (and first, in plain text) when it reads both at once
    if answer.body != b"Invalid HTTP request received.":
        assert "not valid JSON" in str(_refused(answer, 400, "invalid_json")["error"])


@pytest.mark.usefixtures("unchanged")
def test_a_content_length_higher_than_the_body_then_a_hang_up(served: Served) -> None:
    head = served.head("POST", "/v1/deployments/api/predict", "Content-Type: application/json", "Content-Length: 5000")
    answer = served.send(head, json.dumps({"instances": [ROW]}).encode(), half_close=True)
    assert answer is None or 400 <= answer.status < 500  # nobody left to answer, or a 400 for the short body


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/../../../sentinel.txt",
        "/ui/static/..%2f..%2f..%2fsentinel.txt",
        "/ui/static/%2e%2e/%2e%2e/%2e%2e/sentinel.txt",
        "/v1/deployments/../../../../etc/passwd",
        "/v1/models/..%2f..%2f..%2fetc%2fpasswd",
        "//proc/self/root/etc/passwd",
    ],
)
def test_dot_segments_left_in_the_request_line(served: Served, path: str) -> None:
    answer = served.send(served.head("GET", path))
    assert answer is not None and 400 <= answer.status < 500, answer
    assert SECRET.encode() not in answer.body and b"root:x:0:0" not in answer.body


@pytest.mark.usefixtures("unchanged")
def test_a_pickle_body_is_never_unpickled(served: Served, tmp_path: Path) -> None:
    sentinel = tmp_path / "unpickled"
    body = pickle.dumps(Sentinel(sentinel))
    for path, kind in [
        ("/v1/deployments/api/predict", "application/python-pickle"),
        ("/v2/models/api/infer", "application/x-python-serialize"),
    ]:
        head = served.head("POST", path, f"Content-Type: {kind}", f"Content-Length: {len(body)}")
        _refused(served.send(head, body), 415, "unsupported_media_type")
    assert not sentinel.exists()


@pytest.mark.usefixtures("unchanged")
def test_injection_in_the_path_and_headers_keeps_the_log_one_object_per_line(served: Served) -> None:
    before = len(served.server.log.splitlines())
    body = json.dumps({"instances": [ROW]}).encode()
    for path, request_id in [
        ("/v1/deployments/evil%0A%7B%22status%22%3A200%7D/predict", "ok"),
        ("/v1/deployments/%1B%5B31mred/predict", 'quote"d\\"'),
        ("/v1/deployments/api%22%2C%22status%22%3A200/predict", "x" * 300),
    ]:
        head = served.head(
            "POST",
            path,
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"X-Request-Id: {request_id}",
        )
        answer = served.send(head, body)
        assert answer is not None and 400 <= answer.status < 500, answer
    time.sleep(0.2)  # the access log is written as each response finishes
    lines = served.server.log.splitlines()[before:]
    access = [json.loads(line) for line in lines if '"method"' in line]
    assert len(access) >= 3
    for record in access:
        assert "status" in record and isinstance(record["status"], int)
        assert record.get("status") != 200 or record["path"].startswith("/v1/deployments/api/predict")
    assert any("\n" in r["path"] for r in access) and any("\x1b" in r["path"] for r in access)
