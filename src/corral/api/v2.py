"""Open Inference Protocol V2 (KServe / Triton / MLServer REST), with the binary tensor
data and model repository extensions. A V2 "model" is a corral deployment."""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from corral import __version__
from corral.api.params import MAX_VERSION, request_id
from corral.api.responses import (
    PREDICTION_ERRORS,
    PlainRoutes,
    component_schemas,
    header_parameters,
    openapi_errors,
    path_parameters,
)
from corral.core.schema import FeatureKind, Signature
from corral.errors import LimitExceededError, ProtocolError
from corral.protocol import decode_request, encode_response, output_tensor, parse_header_length, wants_binary
from corral.protocol.frames import request_to_frame
from corral.protocol.strict_json import DEFAULT_MAX_DEPTH
from corral.protocol.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    ModelMetadata,
    ServerMetadata,
)
from corral.serving.server import InferenceResult, ModelServer

EXTENSIONS = ["binary_tensor_data", "model_repository"]
_DATATYPE = {FeatureKind.BOOLEAN: "BOOL", FeatureKind.CATEGORICAL: "BYTES"}


class Readiness(BaseModel):
    ready: bool


class ModelReadiness(BaseModel):
    name: str
    version: str | None = None
    ready: bool


def _readiness(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": "Ready"}, 503: {"model": model, "description": "Not ready"}}


def router(server: ModelServer, *, max_json_depth: int = DEFAULT_MAX_DEPTH) -> APIRouter:
    api = APIRouter(prefix="/v2", tags=["Open Inference Protocol"])

    @api.get("/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @api.get("/health/ready", responses=_readiness(Readiness))
    async def ready() -> JSONResponse:
        return JSONResponse({"ready": server.started}, status_code=200 if server.started else 503)

    @api.get("")
    async def metadata() -> dict[str, Any]:
        return ServerMetadata(name="corral", version=__version__, extensions=EXTENSIONS).model_dump()

    @api.get("/models/{name}")
    async def model_metadata(name: str) -> dict[str, Any]:
        return _metadata(server, name, None)

    @api.get("/models/{name}/versions/{version}")
    async def model_version_metadata(name: str, version: str) -> dict[str, Any]:
        return _metadata(server, name, _version(version))

    @api.get("/models/{name}/ready", responses=_readiness(ModelReadiness))
    async def model_ready(name: str) -> JSONResponse:
        server.deployment_status(name)
        ready = server.ready(name)
        return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 503)

    @api.get("/models/{name}/versions/{version}/ready", responses=_readiness(ModelReadiness))
    async def model_version_ready(name: str, version: str) -> JSONResponse:
        status = server.deployment_status(name)
        ready = server.ready(name) and status.version == _version(version)
        return JSONResponse({"name": name, "version": version, "ready": ready}, status_code=200 if ready else 503)

    # The hot path: plain Starlette routes, without FastAPI's per-request dependency solving
    # (the body is raw bytes or binary tensors anyway, decoded by corral.protocol).
    async def infer(request: Request) -> Response:
        return await _infer(server, request.path_params["name"], None, request, max_json_depth)

    async def infer_version(request: Request) -> Response:
        params = request.path_params
        return await _infer(server, params["name"], _version(params["version"]), request, max_json_depth)

    api.add_route("/v2/models/{name}/infer", infer, methods=["POST"])
    api.add_route("/v2/models/{name}/versions/{version}/infer", infer_version, methods=["POST"])

    @api.post("/repository/index")
    async def repository_index() -> list[dict[str, Any]]:
        return [
            {"name": s.name, "version": str(s.version) if s.version else "", "state": s.state, "reason": s.reason}
            for s in server.status()
        ]

    @api.post("/repository/models/{name}/load")
    async def repository_load(name: str) -> dict[str, Any]:
        await server.set_enabled(name, True)
        return {"name": name, "loaded": server.ready(name), "state": server.deployment_status(name).state}

    @api.post("/repository/models/{name}/unload")
    async def repository_unload(name: str) -> dict[str, Any]:
        await server.set_enabled(name, False)
        return {"name": name, "loaded": False}

    return api


def _version(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_VERSION:
        raise ProtocolError(f"model version must be an integer from 1 to {MAX_VERSION}, got {text[:40]!r}")
    return int(text)


def _metadata(server: ModelServer, name: str, version: int | None) -> dict[str, Any]:
    live = server.version_record(name, version)
    signature: Signature = live.signature
    inputs = [MetadataTensor(name=f.name, datatype=_DATATYPE.get(f.kind, "FP64"), shape=[-1]) for f in signature.inputs]
    meta = ModelMetadata(
        name=name,
        versions=[str(live.version)],
        platform=f"corral_{live.flavor}",
        inputs=inputs,
        outputs=_metadata_outputs(signature),
    )
    return meta.model_dump()


def _metadata_outputs(signature: Signature) -> list[MetadataTensor]:
    outputs = [MetadataTensor(name="predict", datatype=_label_type(signature), shape=[-1])]
    if signature.outputs.probabilities and signature.outputs.classes:
        outputs.append(
            MetadataTensor(name="predict_proba", datatype="FP64", shape=[-1, len(signature.outputs.classes)])
        )
    outputs.append(MetadataTensor(name="prediction_id", datatype="BYTES", shape=[-1]))
    if any(f.kind is FeatureKind.NUMERICAL for f in signature.inputs):
        outputs.append(MetadataTensor(name="anomaly_score", datatype="FP64", shape=[-1]))
        outputs.append(MetadataTensor(name="anomaly_flagged", datatype="BOOL", shape=[-1]))
    return outputs


def _label_type(signature: Signature) -> str:
    if signature.outputs.classes and any(isinstance(c, str) for c in signature.outputs.classes):
        return "BYTES"
    return "INT64" if signature.outputs.dtype in ("int64", "bool") else "FP64"


async def _infer(
    server: ModelServer, name: str, version: int | None, request: Request, max_json_depth: int
) -> Response:
    body = _decompressed(await request.body(), request.headers.get("content-encoding"), server.max_body_bytes)
    header_length = parse_header_length(request.headers.get("inference-header-content-length"))
    decoded = decode_request(body, header_length, max_depth=max_json_depth)
    request_id(decoded.id, "the request's id", header=False)
    signature = server.version_record(name, version).signature
    if decoded.outputs:  # before the model runs: a request refused afterwards would leave a recorded prediction
        offered = [tensor.name for tensor in _metadata_outputs(signature)]
        unknown = [o.name for o in decoded.outputs if o.name not in offered]
        if unknown:
            raise ProtocolError(f"unknown output(s) {unknown}; this model has {offered}")
    frame = request_to_frame(decoded, signature.columns)
    parameters = decoded.parameters or {}
    key = request.headers.get("x-routing-key") or parameters.get("routing_key")
    result = await server.predict(
        name, frame, version=version, request_id=decoded.id, routing_key=str(key) if key else None
    )
    outputs = _outputs(result)
    if decoded.outputs:
        wanted = [o.name for o in decoded.outputs]
        unknown = [n for n in wanted if n not in outputs]
        if unknown:
            raise ProtocolError(f"unknown output(s) {unknown}; this model has {list(outputs)}")
        outputs = {n: outputs[n] for n in wanted}
    response = InferenceResponse(
        model_name=name,
        model_version=str(result.version),
        id=decoded.id,
        outputs=list(outputs.values()),
        parameters={"model": result.model} | _flags(result),
    )
    content, headers = encode_response(response, binary_outputs=wants_binary(decoded))
    return Response(content=content, headers=headers)


def _outputs(result: InferenceResult) -> dict[str, Any]:
    prediction = result.prediction
    values = np.asarray(prediction.values)
    if values.dtype == object:
        values = values.astype(str)
    outputs = {"predict": output_tensor("predict", values)}
    if prediction.probabilities is not None:
        outputs["predict_proba"] = output_tensor("predict_proba", np.asarray(prediction.probabilities, dtype="float64"))
    outputs["prediction_id"] = output_tensor("prediction_id", np.asarray(result.prediction_ids, dtype=object))
    if result.anomaly_scores is not None and result.anomaly_flagged is not None:
        outputs["anomaly_score"] = output_tensor("anomaly_score", np.asarray(result.anomaly_scores, dtype="float64"))
        outputs["anomaly_flagged"] = output_tensor("anomaly_flagged", np.asarray(result.anomaly_flagged, dtype=bool))
    return outputs


def _flags(result: InferenceResult) -> dict[str, Any]:
    """Rows with features outside the training range, as a JSON string (V2 parameters hold scalars only)."""
    if not any(result.out_of_range):
        return {}
    return {"out_of_range": json.dumps({str(i): list(f) for i, f in enumerate(result.out_of_range) if f})}


def _decompressed(body: bytes, encoding: str | None, limit: int) -> bytes:
    """tritonclient may gzip or deflate its requests; inflate them, but no further than ``limit``."""
    if not encoding or encoding.lower() == "identity":
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding.lower())
    if wbits is None:
        raise ProtocolError(f"unsupported Content-Encoding {encoding!r}: send gzip, deflate or identity")
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(f"the {encoding} body does not decompress: {exc}") from None
    if len(data) > limit:
        raise LimitExceededError(f"the decompressed body is over the limit of {limit} bytes")
    return data


def _infer_operation(*path: str) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    return {
        "tags": ["Open Inference Protocol"],
        "summary": "Infer",
        "description": "A V2 inference request: JSON, or (binary tensor data extension) a JSON header of "
        "`Inference-Header-Content-Length` bytes followed by the tensors' bytes; the response is binary the same "
        "way when the request asks for binary outputs.",
        "operationId": "infer_" + "_".join(path),
        "parameters": [
            *path_parameters(*path),
            {
                "name": "inference-header-content-length",
                "in": "header",
                "required": False,
                "schema": {"type": "integer", "minimum": 0},
                "description": "length of the JSON header when binary tensor data follows it",
            },
            *header_parameters(
                content_encoding="gzip, deflate or identity", x_routing_key="keeps a caller on one side of a split"
            ),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
                "application/octet-stream": {"schema": binary},
            },
        },
        "responses": {
            "200": {
                "description": "The outputs (binary tensor data when asked for)",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/InferenceResponse"}},
                    "application/octet-stream": {"schema": binary},
                },
            },
            **openapi_errors(*(int(s) for s in PREDICTION_ERRORS)),
        },
    }


PLAIN_ROUTES = PlainRoutes(
    paths={
        "/v2/models/{name}/infer": {"post": _infer_operation("name")},
        "/v2/models/{name}/versions/{version}/infer": {"post": _infer_operation("name", "version")},
    },
    schemas={
        **component_schemas(InferenceRequest),
        **component_schemas(InferenceResponse, mode="serialization"),
    },
)
