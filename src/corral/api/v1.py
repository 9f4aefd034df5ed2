"""The plain JSON API: records in, predictions (with ids) out; MLflow-style scoring;
deployments and aliases for operators."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from corral.api.middleware import parsed_json
from corral.api.params import MAX_VERSION, request_id
from corral.api.responses import (
    PREDICTION_ERRORS,
    PlainRoutes,
    errors,
    header_parameters,
    json_body,
    ok,
    openapi_errors,
    path_parameters,
)
from corral.app import Services, explain_prediction
from corral.errors import DeploymentNotFoundError, SchemaError
from corral.protocol import strict_json
from corral.protocol.strict_json import DEFAULT_MAX_DEPTH
from corral.serving.entities import BatchingPolicy, ExecutionPolicy
from corral.serving.server import InferenceResult, ModelServer


class BatchingBody(BaseModel):
    enabled: bool = True
    max_batch_size: int = Field(64, ge=1)
    max_wait_ms: float = Field(1.0, ge=0)


class ExecutionBody(BaseModel):
    """Where a deployment's versions run and their limits (see ``ExecutionPolicy``)."""

    model_config = {"extra": "forbid"}

    isolation: Literal["auto", "in_process", "isolated"] = "auto"
    device: str = "cpu"
    timeout_seconds: float | None = Field(30.0, gt=0, le=3600)
    max_concurrency: int | None = Field(None, ge=1)
    max_queue: int = Field(1000, ge=0)
    max_memory_mb: int | None = Field(None, ge=64)

    def policy(self) -> ExecutionPolicy:
        return ExecutionPolicy.from_dict(self.model_dump())


class DeploymentBody(BaseModel):
    name: str
    model: str
    alias: str = "champion"
    batching: BatchingBody = Field(default_factory=BatchingBody)
    execution: ExecutionBody = Field(default_factory=ExecutionBody)
    description: str = ""


class DeploymentPatch(BaseModel):
    alias: str | None = None
    batching: BatchingBody | None = None
    execution: ExecutionBody | None = None
    enabled: bool | None = None
    description: str | None = None


class AliasBody(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION)
    reason: str = ""


class ReasonBody(BaseModel):
    reason: str = ""


_ROWS = {"type": "array", "items": {"type": "object"}, "description": "one object per row: feature name to value"}
MLFLOW_BODY: dict[str, Any] = {
    "type": "object",
    "description": "MLflow's scoring bodies: exactly one of dataframe_split, dataframe_records, instances, inputs",
    "properties": {
        "dataframe_split": {
            "type": "object",
            "properties": {"columns": {"type": "array", "items": {"type": "string"}}, "data": {"type": "array"}},
            "required": ["columns", "data"],
        },
        "dataframe_records": _ROWS,
        "instances": _ROWS,
        "inputs": {"anyOf": [_ROWS, {"type": "object", "description": "column name to its values"}]},
    },
}
PREDICT_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "instances": _ROWS,
        "routing_key": {"type": "string", "description": "keeps a caller on one side of a split (or X-Routing-Key)"},
    },
    "required": ["instances"],
}
PREDICTION: dict[str, Any] = {
    "type": "object",
    "description": "one entry per row in each list, in the order of the rows sent",
    "properties": {
        "predictions": {"type": "array"},
        "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "classes": {"type": "array"},
        "prediction_ids": {"type": "array", "items": {"type": "string"}},
        "model": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": "integer"}},
            "required": ["name", "version"],
        },
        "deployment": {"type": "string"},
        "role": {"type": "string", "description": "split or canary when not the primary answered"},
        "out_of_range": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
        "anomaly": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"score": {"type": "number"}, "flagged": {"type": "boolean"}},
                "required": ["score", "flagged"],
            },
        },
        "explanations": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["predictions", "prediction_ids", "model", "deployment"],
}
_ROUTING = header_parameters(
    x_request_id="the caller's id for this request, kept in the prediction log",
    x_routing_key="keeps a caller on one side of a split",
)
PLAIN_ROUTES = PlainRoutes(
    paths={
        "/v1/deployments/{name}/predict": {
            "post": {
                "tags": ["corral"],
                "summary": "Predict",
                "description": "Predictions for rows given as records; `explain=true` adds feature attributions.",
                "operationId": "predict_v1_deployments__name__predict_post",
                "parameters": [
                    *path_parameters("name"),
                    {"name": "explain", "in": "query", "required": False, "schema": {"type": "boolean"}},
                    *_ROUTING,
                ],
                **json_body(PREDICT_BODY),
                "responses": {"200": ok(PREDICTION), **openapi_errors(413, 429, 504)},
            }
        }
    }
)


async def _json(request: Request, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """The body as strict JSON: as the body middleware parsed it, or parsed here (same rules) when it did not."""
    parsed, value = parsed_json(request.scope)
    if parsed:
        return value
    return strict_json.loads(await request.body(), max_depth=max_depth)


def _records(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict) or "instances" not in payload:
        raise SchemaError('expected a JSON object {"instances": [{"feature": value, ...}, ...]}')
    instances = payload["instances"]
    if not isinstance(instances, list) or not all(isinstance(r, dict) for r in instances):
        raise SchemaError('"instances" must be a list of objects, one per row: [{"feature": value, ...}]')
    return instances


def mlflow_records(payload: Any) -> Any:
    """Rows from any of MLflow's scoring bodies: dataframe_split, dataframe_records, instances, inputs."""
    if not isinstance(payload, dict):
        raise SchemaError("expected a JSON object with one of dataframe_split, dataframe_records, instances, inputs")
    keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in payload]
    if len(keys) != 1:
        raise SchemaError(
            "expected exactly one of dataframe_split, dataframe_records, instances, inputs; "
            f"got {sorted(payload) or 'none'}"
        )
    body = payload[keys[0]]
    if keys[0] == "dataframe_split":
        if not isinstance(body, dict) or not isinstance(body.get("columns"), list) or "data" not in body:
            raise SchemaError('dataframe_split needs {"columns": [...], "data": [[...], ...]}')
        columns, data = body["columns"], body["data"]
        if not isinstance(data, list) or any(not isinstance(r, list) or len(r) != len(columns) for r in data):
            raise SchemaError(f"dataframe_split: every row of data must be a list of {len(columns)} values")
        return [dict(zip(columns, row, strict=True)) for row in data]
    if isinstance(body, dict):  # {"inputs": {"column": [values...]}}
        return {k: v if isinstance(v, list) else [v] for k, v in body.items()}
    if isinstance(body, list) and all(isinstance(r, dict) for r in body):
        return body
    raise SchemaError(f"{keys[0]} must be a list of row objects (or, for inputs, an object of columns)")


def _plain(values: np.ndarray) -> list[Any]:
    plain: list[Any] = np.asarray(values).tolist()
    return plain


def _explain(services: Services, prediction_ids: list[str]) -> list[dict[str, Any]]:
    """Feature attributions of just-recorded predictions (computed and stored with the records)."""
    if not services.settings.audit.enabled:
        raise SchemaError("explanations need the prediction log: CORRAL_AUDIT__ENABLED is false")
    return [explain_prediction(services, pid)[0].to_dict() for pid in prediction_ids]


def predict_body(result: InferenceResult) -> dict[str, Any]:
    prediction = result.prediction
    body: dict[str, Any] = {"predictions": _plain(prediction.values)}
    if prediction.probabilities is not None:
        body["probabilities"] = prediction.probabilities.tolist()
        body["classes"] = list(prediction.classes or ())
    body["prediction_ids"] = result.prediction_ids
    body["model"] = {"name": result.model, "version": result.version}
    body["deployment"] = result.deployment
    if result.role != "primary":
        body["role"] = result.role
    if any(result.out_of_range):
        body["out_of_range"] = [list(f) for f in result.out_of_range]
    if result.anomaly_scores is not None and result.anomaly_flagged is not None:
        body["anomaly"] = [
            {"score": round(float(s), 6), "flagged": bool(f)}
            for s, f in zip(result.anomaly_scores, result.anomaly_flagged, strict=True)
        ]
    return body


def router(services: Services, server: ModelServer) -> APIRouter:
    api = APIRouter(tags=["corral"])
    depth = services.settings.serving.max_json_depth

    async def predict(request: Request) -> Response:  # hot path: a plain Starlette route (no dependency solving)
        payload = await _json(request, depth)
        rows = _records(payload)
        name = request.path_params["name"]
        key = payload.get("routing_key") or request.headers.get("x-routing-key")
        request_key = request_id(request.headers.get("x-request-id"))
        result = await server.predict(name, rows, request_id=request_key, routing_key=str(key) if key else None)
        body = predict_body(result)
        if request.query_params.get("explain", "").lower() in ("1", "true", "yes"):
            body["explanations"] = await asyncio.to_thread(_explain, services, result.prediction_ids)
        return JSONResponse(body)

    api.add_route("/v1/deployments/{name}/predict", predict, methods=["POST"])

    @api.post(
        "/v1/deployments/{name}/invocations",
        response_model=None,
        responses={200: ok(PREDICTION), **PREDICTION_ERRORS},
        openapi_extra=json_body(MLFLOW_BODY),
    )
    async def invocations(name: str, request: Request) -> dict[str, Any]:
        rows = mlflow_records(await _json(request, depth))
        key = request.headers.get("x-routing-key")
        result = await server.predict(
            name, rows, request_id=request_id(request.headers.get("x-request-id")), routing_key=key
        )
        return predict_body(result)

    @api.post(
        "/invocations",
        response_model=None,
        responses={200: ok(PREDICTION), **PREDICTION_ERRORS, **errors(404)},
        openapi_extra=json_body(MLFLOW_BODY),
    )
    async def default_invocations(request: Request) -> dict[str, Any]:
        names = [s.name for s in server.status()]
        if len(names) != 1:
            raise DeploymentNotFoundError(
                f"/invocations needs exactly one deployment to choose; there are {len(names)}: "
                "use /v1/deployments/NAME/invocations"
            )
        rows = mlflow_records(await _json(request, depth))
        request_key = request_id(request.headers.get("x-request-id"))
        return predict_body(await server.predict(names[0], rows, request_id=request_key))

    @api.get("/v1/deployments")
    async def list_deployments() -> list[dict[str, Any]]:
        status = {s.name: s for s in server.status()}
        return [_with_status(d.to_dict(), status.get(d.name)) for d in services.deployments.list()]

    @api.get("/v1/deployments/{name}")
    async def get_deployment(name: str) -> dict[str, Any]:
        deployment = services.deployments.get(name)
        status = {s.name: s for s in server.status()}.get(name)
        return _with_status(deployment.to_dict(), status)

    @api.post("/v1/deployments", status_code=201, responses=errors(404, 409))
    async def create_deployment(body: DeploymentBody) -> dict[str, Any]:
        created = services.deployments.create(
            body.name,
            model=body.model,
            alias=body.alias,
            batching=BatchingPolicy(**body.batching.model_dump()),
            description=body.description,
            execution=body.execution.policy(),
        )
        await server.refresh()
        return created.to_dict()

    @api.patch("/v1/deployments/{name}", responses=errors(409))
    async def update_deployment(name: str, body: DeploymentPatch) -> dict[str, Any]:
        batching = BatchingPolicy(**body.batching.model_dump()) if body.batching else None
        if body.execution is not None:
            services.deployments.set_execution(name, body.execution.policy())
        updated = services.deployments.update(
            name, alias=body.alias, batching=batching, enabled=body.enabled, description=body.description
        )
        await server.refresh()
        return updated.to_dict()

    @api.delete("/v1/deployments/{name}", status_code=204, responses=errors(409))
    async def delete_deployment(name: str) -> None:
        services.deployments.delete(name)
        await server.refresh()

    @api.get("/v1/models")
    async def list_models() -> list[dict[str, Any]]:
        return [m.to_dict() for m in services.registry.list_models()]

    @api.get("/v1/models/{name}")
    async def get_model(name: str) -> dict[str, Any]:
        model = services.registry.get_model(name)
        return {**model.to_dict(), "versions": [v.to_dict() for v in services.registry.list_versions(name)]}

    @api.put("/v1/models/{name}/aliases/{alias}", responses=errors(409))
    async def set_alias(name: str, alias: str, body: AliasBody) -> dict[str, Any]:
        event = services.registry.set_alias(name, alias, body.version, reason=body.reason)
        await server.refresh()
        return event.to_dict()

    @api.post("/v1/models/{name}/aliases/{alias}/rollback", responses=errors(409))
    async def rollback(name: str, alias: str, body: ReasonBody | None = None) -> dict[str, Any]:
        event = services.registry.rollback(name, alias, reason=body.reason if body else "")
        await server.refresh()
        return event.to_dict()

    return api


def _with_status(data: dict[str, Any], status: Any) -> dict[str, Any]:
    if status is None:
        return {**data, "state": "UNAVAILABLE", "serving_version": None, "reason": "not loaded by this server"}
    return {**data, "state": status.state, "serving_version": status.version, "reason": status.reason}
