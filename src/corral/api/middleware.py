"""ASGI middleware: the access log and HTTP metrics, and what a request body must be before any route reads it.

- :class:`OperationsMiddleware` (outermost) logs one JSON object per request, measures it, and refuses a body
  whose ``Content-Length`` is over the limit before anything else runs.
- :class:`TrustedHostsMiddleware` refuses a request whose ``Host`` is not one this server answers to (DNS
  rebinding), with the same JSON error body as every other refusal.
- :class:`RequestBodyMiddleware` (innermost, after authentication) reads the body, counting as it reads, so a
  chunked body without ``Content-Length`` (or one that lies) is cut off at the limit too; refuses content types
  and codings the route cannot read (415); and checks a JSON body strictly (:mod:`corral.protocol.strict_json`:
  UTF-8, no NaN, no duplicate keys, numbers in range, nesting depth). The parsed value is kept in the request's
  scope (:func:`parsed_json`), so a route reads it without parsing again.

What each route reads (by path):

- ``/v2/models/{name}[/versions/{v}]/infer``: JSON, or the binary tensor extension (``application/octet-stream``,
  JSON header length in ``Inference-Header-Content-Length``), possibly gzip or deflate; the route decodes it
  (after inflating it) with the same strict parser.
- other ``/v2`` routes: JSON (``application/octet-stream`` too, which aiohttp, under tritonclient's asyncio
  client, sends for any body).
- ``/ui`` (the dashboard): its forms; only the size limit applies here.
- everything else: JSON only.

"JSON" is ``application/json`` (``charset``, if given, must be UTF-8) or no ``Content-Type`` at all (clients that
send none, such as tritonclient). Anything else, pickle types included, is refused with 415: no body is ever
unpickled, and ``curl -d`` users add ``-H 'Content-Type: application/json'`` (or use ``curl --json``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api.metrics import ServingMetrics
from corral.errors import InvalidJSONError
from corral.protocol.strict_json import DEFAULT_MAX_DEPTH, loads

access = logging.getLogger("corral.access")

PARSED_JSON = "corral.json"
"""Key of the parsed JSON body in the request scope's ``state``."""

_INFER = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/infer$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CODINGS = frozenset({"gzip", "deflate", "identity"})
_MAX_LOGGED = 200  # characters of a client-chosen value (a request id) the access log keeps


def parsed_json(scope: Scope) -> tuple[bool, Any]:
    """``(True, value)`` when :class:`RequestBodyMiddleware` has parsed this request's JSON body, else
    ``(False, None)``."""
    state = scope.get("state") or {}
    if PARSED_JSON in state:
        return True, state[PARSED_JSON]
    return False, None


async def _refuse(send: Send, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message, "code": code}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return None


def host_name(header: str | None) -> str | None:
    """The host name in a ``Host`` header, lower case, without the port (IPv6 addresses keep their brackets);
    ``None`` when there is none or it does not parse."""
    if not header or any(c in header for c in "/?#@ \\"):
        return None
    try:
        parsed = urlsplit(f"//{header}")
        _ = parsed.port  # a malformed port raises
    except ValueError:
        return None
    name = parsed.hostname
    if not name:
        return None
    return f"[{name}]" if ":" in name else name


class TrustedHostsMiddleware:
    """Answers 400 ``invalid_host`` unless the ``Host`` header names one of ``allowed_hosts`` (exact names;
    ``*`` allows any)."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allow_any = "*" in allowed_hosts
        self.allowed = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] != "http":  # corral has no websocket routes
            await self.app(scope, receive, send)
            return
        if host_name(_header(scope, b"host")) not in self.allowed:
            await _refuse(send, 400, "this server does not answer to that Host header", "invalid_host")
            return
        await self.app(scope, receive, send)


class OperationsMiddleware:
    """Logs and measures every request; refuses a declared ``Content-Length`` over ``max_body_bytes`` (413)."""

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
        status: int | None = None
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body_bytes:
            await _refuse(send, 413, _too_large(int(declared), self.max_body_bytes), "limit_exceeded")
            self._done(scope, 413, started)
            return

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            # no response at all: the client went away before one could be sent (nginx's 499)
            self._done(scope, 499 if status is None else status, started)

    def _done(self, scope: Scope, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        route = _route(scope)
        self.metrics.http.labels(scope["method"], route, str(status)).observe(seconds)
        deployment = (scope.get("path_params") or {}).get("name")
        if status >= 400 and deployment is not None:
            self.metrics.failed(deployment, status)
        if self.access_log:
            # json.dumps escapes newlines, quotes and control characters (ANSI escapes included): whatever a
            # client puts in a path or a header, the record stays one JSON object on one line
            record: dict[str, Any] = {
                "method": scope["method"],
                "path": _clip(scope["path"]),
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": (scope.get("client") or ("", 0))[0],
            }
            if deployment is not None:
                record["deployment"] = _clip(str(deployment))
            request_id = _header(scope, b"x-request-id")
            if request_id:
                record["request_id"] = _clip(request_id)
            access.info(json.dumps(record))


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_LOGGED else text[:_MAX_LOGGED] + "..."


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def _too_large(size: int, limit: int) -> str:
    return f"request body of {size} bytes or more is over the limit of {limit} bytes (CORRAL_SERVING__MAX_BODY_BYTES)"


class RequestBodyMiddleware:
    """Reads every request body within ``max_body_bytes``, refuses what the route cannot read, checks JSON.

    See the module's docstring for what each route reads. Refusals: 413 ``limit_exceeded``, 415
    ``unsupported_media_type``, 400 ``invalid_json``; nothing behind this middleware runs for them.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        kind = "form" if path == "/ui" or path.startswith("/ui/") else "infer" if _INFER.match(path) else "json"
        if kind != "form" and _has_body(scope):
            problem = _unreadable(scope, kind, path)
            if problem is not None:
                await _refuse(send, 415, problem, "unsupported_media_type")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _refuse(send, 413, _too_large(size, self.max_body_bytes), "limit_exceeded")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if kind == "json" and body:
            try:
                value = loads(body, max_depth=self.max_json_depth)
            except InvalidJSONError as exc:
                await _refuse(send, 400, str(exc), "invalid_json")
                return
            scope.setdefault("state", {})[PARSED_JSON] = value
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only http.disconnect comes

        await self.app(scope, replay, send)


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return _header(scope, b"transfer-encoding") is not None


def _unreadable(scope: Scope, kind: str, path: str) -> str | None:
    """Why this route cannot read the body's content type or coding; ``None`` when it can."""
    coding = (_header(scope, b"content-encoding") or "identity").strip().lower()
    if coding not in (_CODINGS if kind == "infer" else {"identity"}):
        where = "gzip, deflate or identity" if kind == "infer" else "identity only (gzip is read on /v2 infer)"
        return f"Content-Encoding {coding!r} is not accepted on {path}: send {where}"
    declared = _header(scope, b"content-type")
    if declared is None or not declared.strip():
        return None  # read as JSON: clients that send none (tritonclient) mean JSON
    media, _, parameters = declared.partition(";")
    media = media.strip().lower()
    if media == "application/json":
        charset = _parameter(parameters, "charset")
        if charset is None or charset.lower() in ("utf-8", "utf8"):
            return None
        return f"Content-Type {declared!r} is not accepted: JSON bodies are UTF-8 (RFC 8259)"
    if media == "application/octet-stream" and path.startswith("/v2/"):
        return None  # the binary tensor extension (infer), or aiohttp's default for any body (tritonclient.aio)
    accepted = "application/json" + (" or application/octet-stream (binary tensor data)" if kind == "infer" else "")
    return (
        f"Content-Type {media!r} is not accepted on {path}: send {accepted}; bodies are read as JSON and never "
        "unpickled (curl: -H 'Content-Type: application/json' or --json)"
    )


def _parameter(parameters: str, name: str) -> str | None:
    for part in parameters.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None
