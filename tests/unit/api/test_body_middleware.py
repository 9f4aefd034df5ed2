"""corral.api.middleware.RequestBodyMiddleware on its own: what reaches the application, and what never does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from corral.api.middleware import PARSED_JSON, RequestBodyMiddleware, parsed_json

LIMIT = 1024


class Recorder:
    """An ASGI application that reads its body and remembers what it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope, body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(
    path: str, chunks: list[bytes], headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[Recorder, int, dict[str, Any] | None, int]:
    """Run one request through the middleware; returns the app, the status, the error body, and how many
    messages the middleware took from the client."""
    app = Recorder()
    middleware = RequestBodyMiddleware(app, max_body_bytes=LIMIT, max_json_depth=4)
    sent = {"transfer-encoding": "chunked", **(headers or {})}
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in sent.items()],
    }
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    taken = 0
    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal taken
        taken += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    asyncio.run(middleware(scope, receive, send))
    status = out[0]["status"] if out else 0
    body = b"".join(m.get("body", b"") for m in out[1:])
    error = json.loads(body) if status >= 400 else None
    return app, status, error, taken


def test_a_json_body_reaches_the_route_whole_and_parsed_once() -> None:
    app, status, _, _ = call("/v1/deployments/x/predict", [b'{"instances": ', b"[]}"])
    assert status == 200
    scope, body = app.calls[0]
    assert body == b'{"instances": []}'
    assert parsed_json(scope) == (True, {"instances": []}) and PARSED_JSON in scope["state"]


def test_infer_bodies_are_left_to_the_route() -> None:
    app, status, _, _ = call("/v2/models/x/infer", [b"not json here: the route decodes (and inflates) it"])
    assert status == 200 and parsed_json(app.calls[0][0]) == (False, None)


@pytest.mark.parametrize("content_type", ["application/python-pickle", "text/plain", "application/octet-stream"])
def test_a_refused_content_type_is_refused_before_reading(content_type: str) -> None:
    app, status, error, taken = call("/v1/feedback", [b"\x80\x05..."], {"content-type": content_type})
    assert (status, taken, app.calls) == (415, 0, [])
    assert error is not None and error["code"] == "unsupported_media_type"


def test_a_chunked_body_is_cut_off_at_the_limit() -> None:
    chunks = [b" " * 300] * 100  # 30 KB in 300-byte pieces
    app, status, error, taken = call("/v1/deployments", chunks)
    assert (status, app.calls) == (413, [])
    assert error is not None and error["code"] == "limit_exceeded"
    assert taken == LIMIT // 300 + 1  # it stopped reading as soon as the count passed the limit


def test_invalid_json_and_depth() -> None:
    for body, fragment in [(b'{"a": 1, "a": 2}', "twice"), (b"[[[[[1]]]]]", "deeper than 4 levels")]:
        app, status, error, _ = call("/v1/deployments", [body])
        assert status == 400 and app.calls == [] and error is not None
        assert error["code"] == "invalid_json" and fragment in error["error"]


def test_a_client_that_hangs_up_gets_nothing_and_the_app_never_runs() -> None:
    app = Recorder()
    middleware = RequestBodyMiddleware(app, max_body_bytes=LIMIT)
    out: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    scope = {"type": "http", "method": "PUT", "path": "/v1/x", "headers": [(b"content-length", b"10")]}
    asyncio.run(middleware(scope, receive, send))
    assert out == [] and app.calls == []


def test_dashboard_forms_and_reads_pass() -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    app, status, _, _ = call("/ui/login", [b"token=abc"], form)
    assert status == 200 and app.calls[0][1] == b"token=abc"
    app, status, _, _ = call("/v1/deployments", [b""], method="GET")
    assert status == 200
