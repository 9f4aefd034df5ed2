"""Alerts over HTTP: firing and past alerts, acknowledgement, and each deployment's rules."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from corral.alerts.entities import Rule
from corral.app import Services


class AckBody(BaseModel):
    by: str = Field(min_length=1, max_length=256)


class RuleBody(BaseModel):
    metric: str
    op: str
    threshold: float
    window: int = 3600
    min_samples: int = 100
    severity: str = "warning"
    cooldown_seconds: float = 3600.0
    channels: list[str] = Field(default_factory=list)
    enabled: bool = True


def router(services: Services) -> APIRouter:
    api = APIRouter(tags=["alerts"])
    alerts = services.alerts

    @api.get("/v1/alerts")
    async def list_alerts(
        deployment: str | None = None, state: str | None = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> list[Any]:
        """Alerts, newest first (``state=firing`` for the open ones)."""
        found = await asyncio.to_thread(alerts.list_alerts, deployment=deployment, state=state, limit=limit)
        return [a.to_dict() for a in found]

    @api.get("/v1/alerts/{alert_id}")
    async def get_alert(alert_id: str) -> dict[str, Any]:
        """One alert with its notification history."""
        alert = await asyncio.to_thread(alerts.store.get_alert, alert_id)
        deliveries = await asyncio.to_thread(alerts.store.list_deliveries, alert_id=alert_id)
        return {**alert.to_dict(), "deliveries": [d.to_dict() for d in deliveries]}

    @api.post("/v1/alerts/{alert_id}/ack")
    async def ack(alert_id: str, body: AckBody) -> dict[str, Any]:
        """Record who has seen the alert."""
        return (await asyncio.to_thread(alerts.ack, alert_id, body.by)).to_dict()

    @api.get("/v1/deployments/{name}/alert-rules")
    async def rules(name: str) -> list[dict[str, Any]]:
        """The deployment's rules (the defaults until any is set)."""
        services.deployments.get(name)
        return [r.to_dict() for r in await asyncio.to_thread(alerts.rules, name)]

    @api.put("/v1/deployments/{name}/alert-rules/{rule}")
    async def put_rule(name: str, rule: str, body: RuleBody) -> dict[str, Any]:
        """Create or replace one rule."""
        services.deployments.get(name)
        values = body.model_dump()
        values["channels"] = tuple(values["channels"])
        created = Rule(deployment=name, name=rule, **values)
        return (await asyncio.to_thread(alerts.set_rule, created)).to_dict()

    @api.delete("/v1/deployments/{name}/alert-rules/{rule}", status_code=204)
    async def delete_rule(name: str, rule: str) -> None:
        services.deployments.get(name)  # an unknown deployment has no rules to delete (nor defaults to save)
        await asyncio.to_thread(alerts.delete_rule, name, rule)

    return api
