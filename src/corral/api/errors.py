"""Errors to HTTP: a status and one body shape, ``{"error": message, "code": CODE}``, for every refusal.

``code`` is stable and machine-readable, one per kind of error (:data:`CODES` lists them); ``error`` is for
people. A 4xx message names the client's mistake. A 5xx message is short and never carries file paths, SQL,
driver messages or tracebacks: the full error goes to the log under an error id, and the message ends with
that id (``the database is unavailable; retry later (error 01a2...)``) so an operator can find it.
:func:`scrub` is the filter every message passes: it replaces filesystem paths with ``<path>`` and reports
SQL and tracebacks, which 5xx messages then drop entirely.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from corral.core.ids import new_id
from corral.errors import (
    AlertError,
    AlreadyExistsError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    CorralError,
    FeedbackError,
    InvalidJSONError,
    InvalidNameError,
    InvalidReferenceError,
    LimitExceededError,
    ModelLoadError,
    ModelTimeoutError,
    MonitoringError,
    NotFoundError,
    NotReadyError,
    OverloadedError,
    PermissionDeniedError,
    RollbackError,
    SchemaError,
    StoreError,
    VersionArchivedError,
    VersionInUseError,
)

log = logging.getLogger("corral.api")

_ERRORS: tuple[tuple[type[CorralError], int, str], ...] = (
    (AuthenticationError, 401, "unauthenticated"),  # the authorization middleware answers these itself, by exc.code
    (PermissionDeniedError, 403, "forbidden"),
    (InvalidJSONError, 400, "invalid_json"),
    (SchemaError, 400, "schema_error"),  # includes ProtocolError and SignatureMismatchError
    (InvalidNameError, 400, "invalid_name"),
    (InvalidReferenceError, 400, "invalid_reference"),
    (ConfigurationError, 400, "invalid_configuration"),
    (FeedbackError, 400, "invalid_feedback"),
    (AlertError, 400, "invalid_alert_rule"),
    (MonitoringError, 400, "invalid_monitoring"),  # detectors and thresholds given bad input
    (LimitExceededError, 413, "limit_exceeded"),
    (NotFoundError, 404, "not_found"),
    (NotReadyError, 503, "unavailable"),  # includes WorkerCrashedError
    (ModelTimeoutError, 504, "model_timeout"),
    (OverloadedError, 429, "overloaded"),
    (ModelLoadError, 503, "unavailable"),
    (AlreadyExistsError, 409, "already_exists"),
    (ConflictError, 409, "conflict"),
    (VersionInUseError, 409, "version_in_use"),
    (VersionArchivedError, 409, "version_archived"),
    (RollbackError, 409, "nothing_to_roll_back"),
    (StoreError, 503, "unavailable"),  # the database is unreachable or failed: retry later
)

HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "limit_exceeded",
    415: "unsupported_media_type",
    422: "schema_error",
    429: "overloaded",
    503: "unavailable",
    504: "model_timeout",
}
"""Codes of refusals that are not a :class:`~corral.errors.CorralError` (the middleware's, Starlette's)."""

CODES: frozenset[str] = frozenset(
    {code for _, _, code in _ERRORS}
    | set(HTTP_CODES.values())
    | {"internal", "invalid_token", "token_expired", "token_revoked"}
)
"""Every ``code`` an error body may carry."""

_GENERIC_5XX: tuple[tuple[type[CorralError], str], ...] = (
    (StoreError, "the database or artifact store is unavailable; retry later"),
    (ModelTimeoutError, "the model did not answer within the deployment's timeout"),
    (NotReadyError, "the deployment is not ready; retry later"),
    (ModelLoadError, "the model version could not be loaded"),
)


def status_for(error: CorralError) -> int:
    return _entry(error)[0]


def code_for(error: CorralError) -> str:
    if isinstance(error, AuthenticationError):
        return error.code
    return _entry(error)[1]


def _entry(error: CorralError) -> tuple[int, str]:
    for kind, status, code in _ERRORS:
        if isinstance(error, kind):
            return status, code
    return 500, "internal"


def error_response(status: int, message: str, code: str | None = None) -> JSONResponse:
    """The error body every refusal carries: ``{"error": message, "code": code}``."""
    return JSONResponse({"error": message, "code": code or HTTP_CODES.get(status, "internal")}, status_code=status)


# -- scrubbing ---------------------------------------------------------------------------------------------------

_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d+")
_DRIVER = re.compile(
    r"\[SQL:|\[parameters:|\bsqlalchemy\b|\bsqlite3?\b|\bpsycopg2?\b|\bpg8000\b|\b(?:Operational|Integrity|Programming|"
    r"Database|Data|Interface|Internal)Error\b|\bno such (?:table|column)\b|\bsyntax error at or near\b|"
    r"\bJSON path error\b|\bdatabase is locked\b",
    re.IGNORECASE,
)
_STATEMENT = re.compile(  # as drivers and SQLAlchemy write them: upper case (English has "delete from" too)
    r"\bSELECT\b.+\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\S+\s+SET\b|\bDELETE\s+FROM\b|"
    r"\b(?:CREATE|DROP|ALTER)\s+(?:TABLE|INDEX|VIEW)\b"
)
_START = r"(?<![\w.~/-])"  # a path starts a token: not inside a word, a URL's host or another path
_PATH_CHARS = r"[^\s'\"<>,;:)\]}]*"
_WINDOWS_PATH = re.compile(r"\b[A-Za-z]:\\[^\s'\"<>|]*")
_FILE_URL = re.compile(r"\bfile://[^\s'\"<>]*", re.IGNORECASE)
_ROOT_DIRS = (
    "home|root|tmp|var|usr|etc|opt|srv|mnt|media|proc|sys|dev|run|boot|lib|lib64|bin|sbin|snap|nix|private|"
    "Users|Volumes|Library|System|Applications|work|workspace|app|data|code|src|build"
)
_POSIX_PATH = re.compile(rf"{_START}/(?:{_ROOT_DIRS})(?=/|\b){_PATH_CHARS}")


def _local_roots() -> list[str]:
    """Folders of this machine a message might name: the interpreter's, the working folder, the temp folder,
    the home folder; longest first, so the most specific is replaced."""
    roots: set[str] = set()
    candidates = (sys.prefix, sys.base_prefix, sys.exec_prefix, tempfile.gettempdir(), os.getcwd(), str(Path.home()))
    for candidate in candidates:
        text = str(candidate).rstrip("/\\")
        if len(text) > 1:
            roots.add(text)
    return sorted(roots, key=len, reverse=True)


_LOCAL = re.compile("|".join(_START + re.escape(root) + _PATH_CHARS for root in _local_roots()) or r"(?!x)x")


def scrub(message: str, *, extra_roots: Iterable[str] = ()) -> str:
    """``message`` with every filesystem path replaced by ``<path>``.

    Paths are absolute POSIX paths under the usual root folders (``/home``, ``/tmp``, ``/var``, ``/etc``...),
    paths under this machine's own folders (the interpreter's, the working and temp folders, ``extra_roots``
    such as ``CORRAL_HOME``), Windows paths (``C:\\...``) and ``file://`` URLs. URL paths of the API
    (``/v1/...``, ``/v2/...``) are left alone.
    """
    text = message
    extra = [_START + re.escape(str(root).rstrip("/\\")) + _PATH_CHARS for root in extra_roots if len(str(root)) > 1]
    if extra:
        text = re.sub("|".join(extra), "<path>", text)
    text = _LOCAL.sub("<path>", text)
    text = _FILE_URL.sub("<path>", text)
    text = _WINDOWS_PATH.sub("<path>", text)
    return _POSIX_PATH.sub("<path>", text)


def leaks_internals(message: str) -> bool:
    """Whether ``message`` holds SQL, a driver's message or a traceback (what no 5xx body may carry)."""
    return _first_leak(message) is not None


def _first_leak(message: str) -> int | None:
    found = [m.start() for pattern in (_DRIVER, _STATEMENT, _TRACEBACK) if (m := pattern.search(message))]
    return min(found) if found else None


def _safe_part(message: str) -> str:
    """``message`` up to where SQL, a driver's message or a traceback starts (a worker's last output, say)."""
    cut = _first_leak(message)
    return message if cut is None else message[:cut].rstrip(" :;,|([")


def public_message(error: Exception, error_id: str, *, extra_roots: Iterable[str] = ()) -> str:
    """What a 5xx body says about ``error``: its own message up to any SQL, driver message or traceback in it (a
    worker's last output), paths scrubbed, or else a generic one for its kind (always for the store's errors,
    whose messages are the driver's); either way ending with the error id the log has the details under."""
    generic = "internal error"
    for kind, text in _GENERIC_5XX:
        if isinstance(error, kind):
            generic = text
            break
    own = _safe_part(str(error)) if isinstance(error, CorralError) and not isinstance(error, StoreError) else ""
    message = scrub(own, extra_roots=extra_roots) if len(own) >= 10 else generic
    if len(message) > 500:
        message = message[:497] + "..."
    return f"{message} (error {error_id})"


# -- handlers ----------------------------------------------------------------------------------------------------


def install(app: FastAPI, *, extra_roots: Iterable[str] = ()) -> None:
    """Register the handlers: every error leaves as ``{"error": message, "code": code}``.

    ``extra_roots`` are folders (``CORRAL_HOME``, the artifact store) whose paths messages must not show.
    """
    roots = [str(root) for root in extra_roots]

    def server_error(status: int, exc: Exception, code: str) -> JSONResponse:
        error_id = new_id()
        log.error(
            "request failed (error %s): %s: %s",
            error_id,
            type(exc).__name__,
            exc,
            exc_info=exc if not isinstance(exc, CorralError) or isinstance(exc, StoreError) else None,
        )
        return error_response(status, public_message(exc, error_id, extra_roots=roots), code)

    @app.exception_handler(CorralError)
    async def corral_error(_request: Request, exc: CorralError) -> JSONResponse:
        status, code = status_for(exc), code_for(exc)
        if status >= 500:
            response = server_error(status, exc, code)
        else:
            response = error_response(status, scrub(str(exc), extra_roots=roots), code)
        if isinstance(exc, OverloadedError):
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        elif isinstance(exc, NotReadyError | StoreError):
            response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return error_response(400, scrub("invalid request: " + "; ".join(problems), extra_roots=roots), "schema_error")

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code >= 500:
            return server_error(exc.status_code, exc, HTTP_CODES.get(exc.status_code, "internal"))
        response = error_response(exc.status_code, scrub(str(exc.detail), extra_roots=roots))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return server_error(500, exc, "internal")
