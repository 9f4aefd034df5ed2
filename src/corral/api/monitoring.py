"""Monitoring over HTTP: a deployment's latest production window against its reference."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from corral.app import Services
from corral.errors import FeedbackError, SchemaError
from corral.monitoring.status import choose_reference, status
from corral.serving.server import ModelServer


def router(services: Services, server: ModelServer) -> APIRouter:
    api = APIRouter(tags=["monitoring"])

    @api.get("/v1/deployments/{name}/monitoring")
    async def monitoring(name: str, window: int = 3600, reference: str = "training") -> dict[str, Any]:
        """The latest production window of the version serving now, against its training profile
        (``reference=training``) or against an earlier window of the same length (``reference=<its start>``,
        epoch seconds)."""
        if window not in services.settings.monitoring.windows:
            raise SchemaError(f"window must be one of {services.settings.monitoring.windows} seconds, got {window}")
        deployment = services.deployments.get(name)
        version = server.version_record(name) if server.ready(name) else services.registry.resolve(deployment.target)
        head = {"deployment": name, "model": version.name, "version": version.version, "window_seconds": window}
        windows = await asyncio.to_thread(
            services.database.monitoring.get_windows, name, length=window, model=version.name, version=version.version
        )
        profile = services.registry.get_profile(version.name, version.version)
        if not windows or profile is None:
            why = "no reference profile for this version" if profile is None else "no traffic recorded yet"
            return {**head, "window": None, "features": [], "outputs": [], "reason": why}
        head["reference"] = reference
        profile = choose_reference(profile, windows, reference)
        return {**head, **await asyncio.to_thread(status, profile, windows[-1])}

    @api.post("/v1/feedback")
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
