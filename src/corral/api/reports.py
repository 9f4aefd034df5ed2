"""Model reports over HTTP: the facts as JSON, or the reviewer's HTML or Markdown page."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, PlainTextResponse

from corral.api.params import MAX_VERSION
from corral.api.responses import documents
from corral.app import Services
from corral.errors import SchemaError


def router(services: Services) -> APIRouter:
    api = APIRouter(tags=["reports"])

    @api.get(
        "/v1/models/{name}/versions/{version}/report",
        response_model=None,
        responses=documents("text/html", "text/markdown"),
    )
    async def model_report(name: str, version: str, format: str = "json") -> Any:
        """A model version's report for a reviewer: lineage, training profile, alias history, serving history,
        live drift and performance, prediction counts. ``format``: json, html or md."""
        from corral.model_report import build_report, render_html, render_markdown

        if format not in ("json", "html", "md"):
            raise SchemaError(f"format must be json, html or md, got {format!r}")
        if version.isdigit() and not 1 <= int(version) <= MAX_VERSION:  # past what the store holds: no such version
            raise SchemaError(f"version must be from 1 to {MAX_VERSION} (or an alias), got {version[:40]!r}")
        facts = await asyncio.to_thread(build_report, services, name, version)
        if format == "html":
            return HTMLResponse(render_html(facts))
        if format == "md":
            return PlainTextResponse(render_markdown(facts), media_type="text/markdown")
        return facts

    return api
