"""The dashboard's routes under ``/ui``: deployments (overview, side by side, drift) and models here; the audit
and pipeline pages in their own modules. Live parts are fragments htmx reloads; controls are forms that act
through the same services as the API and redirect back saying what happened."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from corral.app import Services, member_event
from corral.dashboard import charts, views
from corral.dashboard.audit_pages import audit_routes
from corral.dashboard.login_pages import login_routes
from corral.dashboard.pipeline_pages import pipeline_routes
from corral.dashboard.render import Page, StatusFor, confirmed, reason_of, same_origin, who, whole_number
from corral.serving.server import ModelServer

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, services: Services, server: ModelServer, status_for: StatusFor) -> None:
    """Add the ``/ui`` pages and their static files (stylesheet, script, bundled libraries) to ``app``."""
    app.include_router(router(services, server, status_for))
    app.mount("/ui/static", StaticFiles(directory=str(STATIC)), name="ui-static")


def router(services: Services, server: ModelServer, status_for: StatusFor) -> APIRouter:
    """The ``/ui`` pages over ``services`` and the model server; ``status_for`` maps an error to its HTTP status."""
    ui = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(same_origin)])
    page = Page(status_for)
    login_routes(ui, services)
    deployment_routes(ui, page, services, server)
    audit_routes(ui, page, services)
    pipeline_routes(ui, page, services)
    return ui


def deployment_routes(ui: APIRouter, page: Page, services: Services, server: ModelServer) -> None:
    cache = views.Cache()
    actor = services.registry.actor

    @ui.get("", response_class=HTMLResponse)
    async def overview(request: Request) -> HTMLResponse:
        build = lambda: views.overview(services, server, cache)  # noqa: E731
        return await page.render(request, "overview.html", build, title="Overview", section="overview")

    @ui.get("/fragments/overview", response_class=HTMLResponse)
    async def overview_fragment(request: Request) -> HTMLResponse:
        build = lambda: views.overview(services, server, cache)  # noqa: E731
        return await page.render(request, "_overview_table.html", build, title="Overview", section="overview")

    @ui.get("/deployments/{name}", response_class=HTMLResponse)
    async def deployment(request: Request, name: str, window: Annotated[int, Query(ge=60)] = 86400) -> HTMLResponse:
        def build() -> dict[str, Any]:
            data = views.deployment_page(services, server, name, window=window)
            return {**data, "charts": charts.deployment_charts(data)}

        return await page.render(request, "deployment.html", build, title=f"Deployment {name}", section="overview")

    @ui.get("/fragments/deployments/{name}/versions", response_class=HTMLResponse)
    async def versions_fragment(request: Request, name: str) -> HTMLResponse:
        build = lambda: {"versions": views.versions(services, server, name), "name": name}  # noqa: E731
        return await page.render(request, "_versions_table.html", build, title=name, section="overview")

    @ui.post("/deployments/{name}/promote")
    async def promote(
        request: Request,
        name: str,
        version: Annotated[str, Form()],
        reason: Annotated[str, Form()] = "",
        confirm: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        async def act() -> str:
            confirmed(confirm, "promote")
            why = reason_of(reason, "promotion")
            deployment = services.deployments.get(name)
            number = whole_number(version, "version")
            services.registry.set_alias(
                deployment.model, deployment.alias, number, reason=why, actor=who(request, actor)
            )
            await server.refresh()
            return f"{deployment.model}:{number} is now {deployment.alias} of {name}"

        return await page.act(f"/ui/deployments/{quote(name)}", act)

    @ui.post("/deployments/{name}/rollback")
    async def rollback(
        request: Request, name: str, reason: Annotated[str, Form()] = "", confirm: Annotated[str, Form()] = ""
    ) -> RedirectResponse:
        async def act() -> str:
            confirmed(confirm, "roll back")
            why = reason_of(reason, "rollback")
            deployment = services.deployments.get(name)
            services.registry.rollback(deployment.model, alias=deployment.alias, reason=why, actor=who(request, actor))
            await server.refresh()
            now = services.registry.get_model(deployment.model).aliases.get(deployment.alias)
            return f"rolled back: {deployment.alias} of {name} is now version {now}"

        return await page.act(f"/ui/deployments/{quote(name)}", act)

    @ui.post("/deployments/{name}/remove")
    async def remove(
        request: Request,
        name: str,
        *,
        model: Annotated[str, Form()],
        version: Annotated[str, Form()],
        reason: Annotated[str, Form()] = "",
        confirm: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        async def act() -> str:
            confirmed(confirm, "remove a version")
            why = reason_of(reason, "removal")
            number = whole_number(version, "version")
            services.deployments.remove_member(name, model, number)
            message = f"{model}:{number} was removed from {name} by {who(request, actor)} from the dashboard: {why}"
            services.alerts.raise_event(name, member_event("removed", model, number), message, severity="info")
            await server.refresh()
            return f"{model}:{number} removed from {name}"

        return await page.act(f"/ui/deployments/{quote(name)}", act)

    @ui.get("/deployments/{name}/drift", response_class=HTMLResponse)
    async def drift(request: Request, name: str, window: int | None = None, start: str | None = None) -> HTMLResponse:
        length = window or min(services.settings.monitoring.windows)

        def build() -> dict[str, Any]:
            data = views.drift_page(services, name, window=length, start=start or None)
            return {**data, "charts": charts.drift_charts(data)}

        return await page.render(request, "drift.html", build, title=f"Drift of {name}", section="overview")

    @ui.get("/models", response_class=HTMLResponse)
    async def models(request: Request) -> HTMLResponse:
        build = lambda: views.models_page(services)  # noqa: E731
        return await page.render(request, "models.html", build, title="Models", section="models")

    @ui.get("/models/{name}/{version}", response_class=HTMLResponse)
    async def version_page(request: Request, name: str, version: str) -> HTMLResponse:
        build = lambda: views.version_page(services, name, whole_number(version, "version"))  # noqa: E731
        return await page.render(request, "version.html", build, title=f"{name}:{version}", section="models")

    @ui.get("/", include_in_schema=False)
    async def slash() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)
