"""ASGI middleware: body size limit, JSON access log, HTTP metrics, graceful refusal."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api.metrics import ServingMetrics

access = logging.getLogger("corral.access")


class _TooLarge(Exception):
    pass


class OperationsMiddleware:
    """Refuses bodies over ``max_body_bytes`` (413), logs and measures every request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: ServingMetrics, access_log: bool) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send, int(declared))
            self._done(scope, 413, started, headers)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            status = 413
            await self._refuse(send, seen)
        finally:
            self._done(scope, status, started, headers)

    async def _refuse(self, send: Send, size: int) -> None:
        body = json.dumps(
            {"error": f"request body of {size} bytes or more is over the limit of {self.max_body_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _done(self, scope: Scope, status: int, started: float, headers: dict[bytes, bytes]) -> None:
        seconds = time.perf_counter() - started
        route = _route(scope)
        self.metrics.http.labels(scope["method"], route, str(status)).observe(seconds)
        deployment = (scope.get("path_params") or {}).get("name")
        if status >= 400 and deployment is not None:
            self.metrics.failed(deployment, status)
        if self.access_log:
            record: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": (scope.get("client") or ("", 0))[0],
            }
            if deployment is not None:
                record["deployment"] = deployment
            request_id = headers.get(b"x-request-id")
            if request_id:
                record["request_id"] = request_id.decode(errors="replace")
            access.info(json.dumps(record))


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
