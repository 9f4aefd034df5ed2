"""Explanations and replays of recorded predictions over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from corral.app import Services, explain_prediction
from corral.audit.explain import check_sums
from corral.audit.replay import replay_recorded


def router(services: Services) -> APIRouter:
    api = APIRouter(tags=["audit"])

    def explanation(prediction_id: str) -> dict[str, Any]:
        audit = services.database.audit
        found, computed = explain_prediction(services, prediction_id)
        record = audit.get(prediction_id)
        checks = check_sums(found, probabilities=record.probabilities, output=record.output)
        return {**found.to_dict(), "computed": computed, "checks": [c.to_dict() for c in checks]}

    @api.get("/v1/audit/predictions/{prediction_id}/explanation")
    async def get_explanation(prediction_id: str) -> dict[str, Any]:
        """A recorded prediction's feature attributions (SHAP values): the stored explanation, or one computed
        now from the version that made it and stored. ``checks`` says whether base value plus attributions give
        the recorded answer, per output; ``computed`` whether it was computed by this call."""
        return await asyncio.to_thread(explanation, prediction_id)

    @api.post("/v1/audit/predictions/{prediction_id}/replay")
    async def replay(prediction_id: str) -> dict[str, Any]:
        """Re-run the stored input through the archived version that answered and compare: ``identical`` when
        the output is equal and every probability within 1e-12, with both answers."""
        result = await asyncio.to_thread(replay_recorded, services.database.audit, services.loaded, prediction_id)
        return result.to_dict()

    return api
