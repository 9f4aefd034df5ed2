"""Several versions on one deployment over HTTP: set shadows, splits and canaries; remove one; roll back."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from corral.api.params import MAX_VERSION, MAX_WINDOW_SECONDS
from corral.api.responses import documents, errors
from corral.app import Services, deployment_comparison, rollback_deployment, set_members
from corral.errors import SchemaError
from corral.serving.entities import GuardPolicy, Member
from corral.serving.server import ModelServer


class MemberBody(BaseModel):
    model: str
    version: int = Field(ge=1, le=MAX_VERSION)
    role: str
    percent: float = 0.0


class MembersBody(BaseModel):
    members: list[MemberBody]


class GuardBody(BaseModel):
    enabled: bool = True
    min_requests: int = 100
    max_error_rate_increase: float = 0.05
    max_latency_ratio: float = 5.0
    min_latency_ms: float = 50.0


class ReasonBody(BaseModel):
    reason: str = ""


def router(services: Services, server: ModelServer) -> APIRouter:
    api = APIRouter(tags=["deployments"])

    @api.put("/v1/deployments/{name}/members", responses=errors(409))
    async def put_members(name: str, body: MembersBody) -> dict[str, Any]:
        """Replace the deployment's shadows, splits and canaries (every server follows within seconds)."""
        members = [Member(m.model, m.version, m.role, m.percent) for m in body.members]
        updated = await asyncio.to_thread(set_members, services, name, members)
        await server.refresh()
        return updated.to_dict()

    @api.delete("/v1/deployments/{name}/members/{model}/{version}", responses=errors(409))
    async def remove_member(
        name: str, model: str, version: Annotated[int, Path(ge=1, le=MAX_VERSION)]
    ) -> dict[str, Any]:
        """Take one version off the deployment's traffic."""
        updated = await asyncio.to_thread(services.deployments.remove_member, name, model, version)
        await server.refresh()
        return updated.to_dict()

    @api.put("/v1/deployments/{name}/guard")
    async def put_guard(name: str, body: GuardBody) -> dict[str, Any]:
        """When servers take a faulty member off the traffic on their own."""
        updated = await asyncio.to_thread(services.deployments.set_guard, name, GuardPolicy(**body.model_dump()))
        await server.refresh()
        return updated.to_dict()

    @api.post("/v1/deployments/{name}/rollback", responses=errors(409))
    async def rollback(name: str, body: ReasonBody | None = None) -> dict[str, Any]:
        """Move the alias the deployment follows back one step."""
        await asyncio.to_thread(rollback_deployment, services, name, reason=body.reason if body else "")
        await server.refresh()
        return services.deployments.get(name).to_dict()

    @api.get("/v1/deployments/{name}/comparison", response_model=None, responses=documents("text/html"))
    async def comparison(
        name: str, window: Annotated[int, Query(ge=1, le=MAX_WINDOW_SECONDS)] = 3600, format: str = "json"
    ) -> Any:
        """Every version on the deployment side by side over the last ``window`` seconds: counts, latency,
        error rate (this server's), output distributions and drift, agreement with the champion on the same
        requests, and labelled quality with intervals and paired tests. ``format=html`` gives the report."""
        if format not in ("json", "html"):
            raise SchemaError(f"format must be json or html, got {format!r}")
        errors = {key: (s.requests, s.errors) for key, s in server.member_stats(name).items()}
        result = await asyncio.to_thread(deployment_comparison, services, name, window=window, errors=errors)
        if format == "html":
            from corral.monitoring.comparison_report import render_comparison_html

            return HTMLResponse(render_comparison_html(result, f"{name}: versions compared"))
        return result

    return api
