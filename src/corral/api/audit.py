"""The prediction log over HTTP: one prediction with its lineage, search, chain verification, the public key."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from corral.api.params import MAX_SEQ, MAX_VERSION
from corral.app import Services
from corral.audit_log import parse_fields, parse_time, parse_value, prediction_detail, signer, verify_log

MAX_PAGE = 1000


def router(services: Services) -> APIRouter:
    api = APIRouter(tags=["audit"])
    store = services.database.audit

    @api.get("/v1/audit/predictions/{prediction_id}")
    async def show(prediction_id: str) -> dict[str, Any]:
        """One recorded prediction with the lineage of the version that made it (data, code, parameters,
        who promoted it and when)."""
        return await asyncio.to_thread(prediction_detail, services, prediction_id)

    @api.get("/v1/audit/predictions")
    async def search(
        *,
        deployment: str | None = None,
        model: str | None = None,
        version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
        since: str | None = None,
        until: str | None = None,
        output: str | None = None,
        field: Annotated[list[str] | None, Query(description="NAME=VALUE, an input field's value")] = None,
        after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        """Recorded predictions matching every filter, in log order; ``since`` inclusive, ``until`` exclusive.
        Page with ``after=<next_after>`` until ``next_after`` is null."""
        found = await asyncio.to_thread(
            store.search,
            deployment=deployment,
            model=model,
            version=version,
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            output=parse_value(output) if output is not None else None,
            fields=parse_fields(field or []),
            after_seq=after,
            limit=limit,
        )
        return {
            "records": [r.to_dict() for r in found],
            "next_after": found[-1].seq if len(found) == limit else None,
        }

    @api.get("/v1/audit/verify")
    async def check(
        from_seq: Annotated[int, Query(alias="from", ge=1)] = 1,
        to_seq: Annotated[int | None, Query(alias="to", ge=1)] = None,
    ) -> dict[str, Any]:
        """Re-walk the hash chain and check it against the signed checkpoints (in the database and outside
        it). 200 with ``ok: false`` and the problems found when the log was tampered with."""

        report = await asyncio.to_thread(verify_log, services, from_seq=from_seq, to_seq=to_seq)
        return report.to_dict()

    @api.get("/v1/audit/public-key", response_class=PlainTextResponse)
    async def public_key() -> PlainTextResponse:
        """The Ed25519 public key (PEM) that checks the log's checkpoints."""
        pem = await asyncio.to_thread(lambda: signer(services).public_pem())
        return PlainTextResponse(pem)

    return api
