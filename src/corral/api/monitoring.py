"""Monitoring over HTTP: a deployment's production windows against its reference, latest and over time."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request

from corral.api.responses import errors, json_body
from corral.app import Services, drift_histograms, drift_history, monitoring_snapshot
from corral.errors import FeedbackError, MonitoringError

_LABEL = {
    "type": "object",
    "properties": {
        "prediction_id": {"type": "string", "description": "as the prediction's response gave it"},
        "label": {"description": "the true outcome: a class of the model, or a number for a regressor"},
    },
    "required": ["prediction_id", "label"],
}
FEEDBACK: dict[str, Any] = {
    "anyOf": [
        _LABEL,
        {"type": "array", "items": _LABEL},
        {"type": "object", "properties": {"items": {"type": "array", "items": _LABEL}}, "required": ["items"]},
    ]
}
MONITORING_CONFIG: dict[str, Any] = {
    "type": "object",
    "description": "parts left out keep their defaults; {} resets everything",
    "properties": {"detectors": {"type": "object"}, "thresholds": {"type": "object"}, "quality": {"type": "object"}},
}


def router(services: Services) -> APIRouter:
    api = APIRouter(tags=["monitoring"])

    @api.get("/v1/deployments/{name}/monitoring")
    async def monitoring(name: str, window: int = 3600, reference: str = "training") -> dict[str, Any]:
        """The latest production window of the version the deployment serves, against its training profile
        (``reference=training``) or an earlier window of the same length (``reference=<its start>``, epoch
        seconds): drift and data quality per feature, performance (realized on labelled rows, estimated
        before labels), and the deployment's firing alerts."""
        return await asyncio.to_thread(monitoring_snapshot, services, name, window=window, reference=reference)

    @api.get("/v1/deployments/{name}/monitoring/history")
    async def history(name: str, window: int = 3600, limit: int = Query(48, ge=1, le=1000)) -> dict[str, Any]:
        """Drift score per feature and model output in each of the last ``limit`` stored windows of the
        version the deployment serves, against its training profile (1 at the detector's threshold)."""
        return await asyncio.to_thread(drift_history, services, name, window=window, limit=limit)

    @api.get("/v1/deployments/{name}/monitoring/histograms")
    async def histograms(name: str, window: int = 3600, start: datetime | None = None) -> dict[str, Any]:
        """Training against production histograms per feature and model output (shares of rows per bin or
        category) for the window starting at ``start`` (ISO 8601, UTC when no offset is given) or the latest."""
        return await asyncio.to_thread(drift_histograms, services, name, window=window, start=start)

    @api.get("/v1/deployments/{name}/monitoring/config")
    async def get_config(name: str) -> dict[str, Any]:
        """Which drift detectors judge which kind of feature, their thresholds, and the data-quality limits."""
        services.deployments.get(name)
        return (await asyncio.to_thread(services.monitor.config, name)).to_dict()

    @api.put("/v1/deployments/{name}/monitoring/config", openapi_extra=json_body(MONITORING_CONFIG))
    async def put_config(name: str, request: Request) -> dict[str, Any]:
        """Set the configuration; parts left out keep their defaults (``{}`` resets everything)."""
        services.deployments.get(name)
        try:
            body = await request.json()
        except ValueError as exc:
            raise MonitoringError(f"monitoring configuration is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise MonitoringError("monitoring configuration must be an object with detectors, thresholds, quality")
        return (await asyncio.to_thread(services.monitor.configure, name, body or None)).to_dict()

    @api.post("/v1/feedback", responses=errors(404, 409), openapi_extra=json_body(FEEDBACK))
    async def feedback(request: Request) -> dict[str, Any]:
        """Ground-truth labels for recorded predictions: ``{"prediction_id": ..., "label": ...}``, a list of them,
        or ``{"items": [...]}``. All or nothing; sending the same label again changes nothing."""
        try:
            payload = await request.json()
        except ValueError as exc:
            raise FeedbackError(f"feedback body is not JSON: {exc}") from exc
        if isinstance(payload, dict) and "items" in payload:
            payload = payload["items"]
        items = payload if isinstance(payload, list) else [payload]
        result = await asyncio.to_thread(services.feedback.record, items)
        return result.to_dict()

    @api.get("/v1/predictions/{prediction_id}")
    async def prediction(prediction_id: str) -> dict[str, Any]:
        """One recorded prediction, as the audit log holds it."""
        record = await asyncio.to_thread(services.database.audit.get, prediction_id)
        return record.to_dict()

    return api
