"""What the OpenAPI document says each operation may answer besides success, so that it tells the truth.

Every refusal of the API leaves as one JSON error body (:class:`ErrorBody`): the exception handlers of
``corral.api.errors``, the authorization middleware (401, 403) and the body checks of ``corral.api.middleware``
(413, 415) all write it. Routes declare the statuses their own handlers give with :func:`errors` (FastAPI's
``responses=``); :func:`document` adds what any request can meet whatever its route (401 and 403 on the routes
the permission table does not make public, 503 when the store is down, 400 for a malformed parameter or body,
404 for any name in the path, 413 and 415 for a body over the limit or of a type the route does not read),
describes the plain Starlette routes FastAPI leaves out (:class:`PlainRoutes`: the hot paths), and removes
FastAPI's 422, which corral never sends (invalid parameters and bodies are 400). The fuzzing test
(``tests/integration/test_fuzz.py``) checks every response of a running server against this document.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaMode

from corral.security.permissions import Permission, permission_for

DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed: a parameter or the body is invalid",
    401: "No token, or one that is unknown, expired or revoked (with `WWW-Authenticate: Bearer`)",
    403: "The token's role lacks the permission this route needs",
    404: "What the path or the body names does not exist",
    409: "The request conflicts with the current state (exists already, in use, nothing to roll back)",
    413: "The body (or its decompressed form, or the rows it holds) is over a limit",
    415: "The body's content type is not one this route reads",
    429: "The deployment's queue is full: retry after `Retry-After` seconds",
    503: "Not ready (the model is loading or failed to load), or the store is unavailable: retry later",
    504: "The model took longer than the deployment's timeout",
}
REF = "#/components/schemas/{model}"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_VALIDATION = ("HTTPValidationError", "ValidationError")  # FastAPI's 422 schemas, never sent by corral


class ErrorBody(BaseModel):
    """Every error response: a message for people and a stable code for programs."""

    error: str = Field(description="what went wrong, for people; never a path, stack trace or SQL")
    code: str = Field(description="stable and machine-readable, one per kind of error: `not_found`, `forbidden`...")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` declaring ``statuses`` with :class:`ErrorBody` bodies."""
    return {status: {"model": ErrorBody, "description": DESCRIPTIONS[status]} for status in statuses}


PREDICTION_ERRORS = errors(413, 429, 504)
"""What predictions may meet besides the statuses every route declares: a body or batch over the limits, a
full queue, a model over its timeout."""


def json_body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    """FastAPI ``openapi_extra`` documenting the JSON body of a route that reads it itself."""
    body: dict[str, Any] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return {"requestBody": body}


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def openapi_errors(*statuses: int) -> dict[str, Any]:
    """:func:`errors` as OpenAPI response objects, for :class:`PlainRoutes`."""
    return {str(status): _error_response(status) for status in statuses}


def documents(*media_types: str) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for a route that answers 200 with JSON or, when asked (``format=``), a document of
    one of ``media_types`` (``text/html``...)."""
    content = {"application/json": {"schema": {"type": "object"}}}
    content |= {media_type: {"schema": {"type": "string"}} for media_type in media_types}
    return {200: {"description": "The facts as JSON, or the document asked for", "content": content}}


def ok(schema: dict[str, Any], description: str = "Successful Response") -> dict[str, Any]:
    """An OpenAPI response object with a JSON body of ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def path_parameters(*names: str) -> list[dict[str, Any]]:
    """Required string path parameters, for :class:`PlainRoutes`."""
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


def header_parameters(**descriptions: str) -> list[dict[str, Any]]:
    """Optional string headers (``x_request_id`` is ``x-request-id``)."""
    return [
        {"name": n.replace("_", "-"), "in": "header", "required": False, "schema": {"type": "string"}, "description": d}
        for n, d in descriptions.items()
    ]


def _add_error(responses: dict[str, Any], status: int) -> None:
    """Declare an error body for ``status``; where the route gives that status another body too (a readiness
    answer's 503), the schema is either."""
    declared = responses.get(str(status))
    if declared is None:
        responses[str(status)] = _error_response(status)
        return
    content = declared.setdefault("content", {}).setdefault("application/json", {})
    schema = content.get("schema")
    error = {"$ref": "#/components/schemas/ErrorBody"}
    if schema is not None and schema != error:
        content["schema"] = {"anyOf": [schema, error]}


def _finish(schema: dict[str, Any]) -> dict[str, Any]:
    """The refusals every operation can meet, the error body's schema, and no 422."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in _VALIDATION:
        components.pop(name, None)
    components["ErrorBody"] = ErrorBody.model_json_schema()
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            responses.pop("422", None)
            added: list[int] = []
            parameters = operation.get("parameters") or []
            reads_body = method.upper() in _BODY_METHODS  # corral.api.middleware checks any body these carry
            if parameters or reads_body:
                added.append(400)
            if any(p.get("in") == "path" for p in parameters):
                added.append(404)  # also for a name holding a "/" (decoded from %2F) that leaves no route matching
            if reads_body:
                added += [413, 415]
            if permission_for(method, path) is not Permission.PUBLIC:
                added += [401, 403, 503]
            for status in added:
                _add_error(responses, status)
            operation["responses"] = dict(sorted(responses.items()))
    return schema


def component_schemas(*models: type[BaseModel], mode: JsonSchemaMode = "validation") -> dict[str, Any]:
    """The JSON schemas of ``models`` and of the models they use, by name, for ``components/schemas``."""
    found: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF, mode=mode)
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


@dataclass(frozen=True)
class PlainRoutes:
    """The OpenAPI description of routes added without FastAPI (the hot paths: plain Starlette routes),
    which FastAPI leaves out of the document: their path items and the schemas they refer to."""

    paths: dict[str, dict[str, Any]]
    schemas: dict[str, Any] = field(default_factory=dict)


def document(app: FastAPI, *plain: PlainRoutes) -> dict[str, Any]:
    """The application's OpenAPI document (made once, then kept, as FastAPI does)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
        )
        for routes in plain:
            for path, item in routes.paths.items():
                schema["paths"].setdefault(path, {}).update(copy.deepcopy(item))
            schema.setdefault("components", {}).setdefault("schemas", {}).update(copy.deepcopy(routes.schemas))
        app.openapi_schema = _finish(schema)
    return app.openapi_schema


def install(app: FastAPI, *plain: PlainRoutes) -> None:
    """Serve :func:`document` at ``/openapi.json`` (and to the docs pages) instead of FastAPI's own, with the
    ``plain`` routes described."""
    app.openapi = lambda: document(app, *plain)  # type: ignore[method-assign]
