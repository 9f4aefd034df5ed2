"""The pipelines page (schedules, next and last runs), a run's page (gate, rollout, log) and "run now"."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from corral.app import Services
from corral.dashboard import views
from corral.dashboard.render import Page, who


def pipeline_routes(ui: APIRouter, page: Page, services: Services) -> None:
    actor = services.registry.actor

    @ui.get("/pipelines", response_class=HTMLResponse)
    async def pipelines(request: Request) -> HTMLResponse:
        build = lambda: views.pipelines_page(services)  # noqa: E731
        return await page.render(request, "pipelines.html", build, title="Pipelines", section="pipelines")

    @ui.post("/pipelines/{name}/run")
    async def run_now(request: Request, name: str) -> RedirectResponse:
        async def act() -> str:
            by = who(request, actor)
            run = services.pipelines.run(name, trigger="manual", reason=f"from the dashboard by {by}")
            return f"run {run.id} of {name} queued" if run is not None else f"{name} already has a run queued"

        return await page.act("/ui/pipelines", act)

    @ui.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_detail(request: Request, run_id: str) -> HTMLResponse:
        build = lambda: views.run_page(services, run_id)  # noqa: E731
        return await page.render(request, "run.html", build, title=f"Run {run_id}", section="pipelines")
