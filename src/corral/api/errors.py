"""CorralError -> HTTP status and the Open Inference Protocol's error body ``{"error": "..."}``."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from corral.errors import (
    AlreadyExistsError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    CorralError,
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

_STATUS: tuple[tuple[type[CorralError], int], ...] = (
    (AuthenticationError, 401),  # the authorization middleware answers these itself (corral.api.auth)
    (PermissionDeniedError, 403),
    (SchemaError, 400),  # includes ProtocolError and SignatureMismatchError
    (InvalidNameError, 400),
    (InvalidReferenceError, 400),
    (ConfigurationError, 400),
    (MonitoringError, 400),  # feedback, alert rules and detectors given bad input
    (LimitExceededError, 413),
    (NotFoundError, 404),
    (NotReadyError, 503),  # includes WorkerCrashedError
    (ModelTimeoutError, 504),
    (OverloadedError, 429),
    (ModelLoadError, 503),
    (AlreadyExistsError, 409),
    (ConflictError, 409),
    (VersionInUseError, 409),
    (VersionArchivedError, 409),
    (RollbackError, 409),
    (StoreError, 503),  # the database is unreachable or failed: retry later
)


def status_for(error: CorralError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def install(app: FastAPI) -> None:
    """Register the handlers: every error leaves as ``{"error": message}``."""

    @app.exception_handler(CorralError)
    async def corral_error(_request: Request, exc: CorralError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("request failed: %s: %s", type(exc).__name__, exc)
        response = error_response(status, str(exc))
        if isinstance(exc, OverloadedError):
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        elif isinstance(exc, NotReadyError):
            response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return error_response(400, "invalid request: " + "; ".join(problems))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"internal error: {type(exc).__name__}")
