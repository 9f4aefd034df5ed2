"""Several versions on one deployment over HTTP: set shadows, splits and canaries; remove one; roll back."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from corral.app import Services, rollback_deployment, set_members
from corral.serving.entities import Member
from corral.serving.server import ModelServer


class MemberBody(BaseModel):
    model: str
    version: int = Field(ge=1)
    role: str
    percent: float = 0.0


class MembersBody(BaseModel):
    members: list[MemberBody]


class ReasonBody(BaseModel):
    reason: str = ""


def router(services: Services, server: ModelServer) -> APIRouter:
    api = APIRouter(tags=["deployments"])

    @api.put("/v1/deployments/{name}/members")
    async def put_members(name: str, body: MembersBody) -> dict[str, Any]:
        """Replace the deployment's shadows, splits and canaries (every server follows within seconds)."""
        members = [Member(m.model, m.version, m.role, m.percent) for m in body.members]
        updated = await asyncio.to_thread(set_members, services, name, members)
        await server.refresh()
        return updated.to_dict()

    @api.delete("/v1/deployments/{name}/members/{model}/{version}")
    async def remove_member(name: str, model: str, version: int) -> dict[str, Any]:
        """Take one version off the deployment's traffic."""
        updated = await asyncio.to_thread(services.deployments.remove_member, name, model, version)
        await server.refresh()
        return updated.to_dict()

    @api.post("/v1/deployments/{name}/rollback")
    async def rollback(name: str, body: ReasonBody | None = None) -> dict[str, Any]:
        """Move the alias the deployment follows back one step."""
        await asyncio.to_thread(rollback_deployment, services, name, reason=body.reason if body else "")
        await server.refresh()
        return services.deployments.get(name).to_dict()

    return api
