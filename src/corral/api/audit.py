"""The prediction log over HTTP: one prediction with its lineage, search, chain verification, the public key."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from corral.app import Services
from corral.audit.checkpoints import default_checkpoint_url
from corral.audit.keys import load_signer
from corral.audit.verify import verify
from corral.errors import NotFoundError, SchemaError

MAX_PAGE = 1000


def audit_folder(services: Services) -> Path:
    """``<CORRAL_HOME>/audit``: the signing key and, by default, the external checkpoints."""
    return (services.settings.home / "audit").resolve()


def checkpoint_url(services: Services) -> str:
    """Where checkpoints are written outside the database (``CORRAL_AUDIT__CHECKPOINT_URL`` when set)."""
    configured = services.settings.audit.checkpoint_url
    return str(configured) if configured else default_checkpoint_url(audit_folder(services))


def prediction_detail(services: Services, prediction_id: str) -> dict[str, Any]:
    """The recorded prediction and the lineage of the version that made it.

    ``version`` holds the version's data fingerprint and source, code commit, parameters and metrics,
    whether its artifact is the one the record names, and every alias move that involved it (who
    promoted it to which alias, when and why). A version deleted since is reported as ``null`` with the
    reason in ``version_error``.

    Raises:
        PredictionNotFoundError: no prediction has this id.
    """
    record = services.database.audit.get(prediction_id)
    detail: dict[str, Any] = {"record": record.to_dict(), "version": None, "version_error": None}
    try:
        version = services.registry.get_version(record.model, record.version)
    except NotFoundError as exc:
        detail["version_error"] = str(exc)
    else:
        moves = [
            event.to_dict()
            for event in services.registry.alias_history(record.model)
            if record.version in (event.to_version, event.from_version)
        ]
        detail["version"] = {
            "name": version.name,
            "version": version.version,
            "flavor": version.flavor,
            "status": str(version.status),
            "artifact_sha256": version.artifact_sha256,
            "artifact_matches_record": version.artifact_sha256 == record.artifact_sha256,
            "created_by": version.created_by,
            "created_at": version.created_at.isoformat(),
            "lineage": version.lineage.to_dict(),
            "aliases": moves,
        }
    explanation = services.database.audit.get_explanation(prediction_id)
    detail["explanation"] = explanation.to_dict() if explanation is not None else None
    return detail


def parse_value(text: str) -> Any:
    """A filter value: JSON when it parses (``1``, ``true``, ``"x"``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_fields(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs as a dict (values as :func:`parse_value`).

    Raises:
        SchemaError: an item has no ``=`` or no name.
    """
    fields: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SchemaError(f"field filter {item!r} is not NAME=VALUE (e.g. customer_id=C-1)")
        fields[name.strip()] = parse_value(value)
    return fields


def parse_time(text: str | None, what: str) -> datetime | None:
    """An ISO 8601 time (a time without zone is UTC).

    Raises:
        SchemaError: it does not parse.
    """
    if text is None or text == "":
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise SchemaError(f"{what} must be an ISO 8601 time such as 2024-05-01T12:00:00Z, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
        version: int | None = None,
        since: str | None = None,
        until: str | None = None,
        output: str | None = None,
        field: Annotated[list[str] | None, Query(description="NAME=VALUE, an input field's value")] = None,
        after: Annotated[int, Query(ge=0)] = 0,
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

        def run() -> dict[str, Any]:
            verifier = load_signer(audit_folder(services)).verifier()
            report = verify(
                store, verifier=verifier, external_url=checkpoint_url(services), from_seq=from_seq, to_seq=to_seq
            )
            return report.to_dict()

        return await asyncio.to_thread(run)

    @api.get("/v1/audit/public-key", response_class=PlainTextResponse)
    async def public_key() -> PlainTextResponse:
        """The Ed25519 public key (PEM) that checks the log's checkpoints."""
        pem = await asyncio.to_thread(lambda: load_signer(audit_folder(services)).public_pem())
        return PlainTextResponse(pem)

    return api
