"""The audit pages: search the prediction log, one prediction with its lineage and explanation (waterfall),
explain and replay buttons, and the chain's verification status."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from corral.app import Services, explain_prediction
from corral.audit_log import parse_fields, parse_time, parse_value, prediction_detail, verify_log
from corral.dashboard import charts
from corral.dashboard.render import Page, whole_number

SEARCH_PAGE = 50
FORM = ("deployment", "model", "version", "since", "until", "output", "field")


def search(services: Services, form: dict[str, str], after: int) -> dict[str, Any]:
    """One page of the predictions matching every filled filter of ``form`` (``field``: ``NAME=VALUE`` pairs
    separated by ``;``)."""
    version = form["version"].strip()
    found = services.database.audit.search(
        deployment=form["deployment"].strip() or None,
        model=form["model"].strip() or None,
        version=whole_number(version, "version") if version else None,
        since=parse_time(form["since"].strip(), "since"),
        until=parse_time(form["until"].strip(), "until"),
        output=parse_value(form["output"]) if form["output"] else None,
        fields=parse_fields([f for f in form["field"].split(";") if f.strip()]),
        after_seq=after,
        limit=SEARCH_PAGE,
    )
    more = found[-1].seq if len(found) == SEARCH_PAGE else None
    return {"form": form, "records": [r.to_dict() for r in found], "next_after": more, "after": after}


def audit_routes(ui: APIRouter, page: Page, services: Services) -> None:
    @ui.get("/audit", response_class=HTMLResponse)
    async def audit(request: Request, prediction_id: str = "", after: Annotated[int, Query(ge=0)] = 0) -> Response:
        if prediction_id.strip():
            return RedirectResponse(f"/ui/audit/{quote(prediction_id.strip(), safe='')}", status_code=303)
        form = {key: request.query_params.get(key, "") for key in FORM}
        searched = "search" in request.query_params

        def build() -> dict[str, Any]:
            return search(services, form, after) if searched else {"form": form, "records": None}

        return await page.render(request, "audit.html", build, title="Audit", section="audit")

    @ui.get("/fragments/audit/verify", response_class=HTMLResponse)
    async def verify_fragment(request: Request) -> HTMLResponse:
        build = lambda: {"report": verify_log(services).to_dict()}  # noqa: E731
        return await page.render(request, "_verify.html", build, title="Verification", section="audit")

    @ui.get("/audit/{prediction_id}", response_class=HTMLResponse)
    async def prediction(request: Request, prediction_id: str) -> HTMLResponse:
        def build() -> dict[str, Any]:
            detail = prediction_detail(services, prediction_id)
            return {**detail, "charts": charts.explanation_charts(detail.get("explanation"))}

        return await page.render(
            request, "prediction.html", build, title=f"Prediction {prediction_id}", section="audit"
        )

    @ui.post("/audit/{prediction_id}/explain")
    async def explain(prediction_id: str) -> RedirectResponse:
        async def act() -> str:
            _, computed = explain_prediction(services, prediction_id)
            return "explanation computed and stored" if computed else "the explanation was already stored"

        return await page.act(f"/ui/audit/{quote(prediction_id, safe='')}", act)

    @ui.post("/audit/{prediction_id}/replay", response_class=HTMLResponse)
    async def replay(request: Request, prediction_id: str) -> HTMLResponse:
        def build() -> dict[str, Any]:
            from corral.audit.replay import replay_recorded

            detail = prediction_detail(services, prediction_id)
            replayed = replay_recorded(services.database.audit, services.loaded, prediction_id)
            return {
                **detail,
                "replay": replayed.to_dict(),
                "charts": charts.explanation_charts(detail.get("explanation")),
            }

        return await page.render(
            request, "prediction.html", build, title=f"Prediction {prediction_id}", section="audit"
        )
