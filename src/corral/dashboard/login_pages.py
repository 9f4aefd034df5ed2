"""Signing in and out of the dashboard: a form that takes an API token and keeps it in a cookie.

The cookie (``corral_token``) is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
it) and Secure when the dashboard is reached over https; it lasts until the token expires or the browser
session ends. Every page and form then needs what the permission table says, as every API route does: the
server's authorization middleware reads the cookie (:mod:`corral.api.auth`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from corral.app import Services
from corral.dashboard.render import COOKIE, templates
from corral.errors import AuthenticationError
from corral.security.permissions import ROLE_PERMISSIONS, Permission


def safe_next(target: str | None, default: str = "/ui") -> str:
    """Where to go after signing in: a dashboard path on this server, never another site."""
    if not target or not target.startswith("/ui") or target.startswith("//") or "\\" in target:
        return default
    return target


def login_routes(ui: APIRouter, services: Services) -> None:
    enabled = services.settings.auth.enabled

    def form(request: Request, next_url: str, message: str | None, status: int) -> HTMLResponse:
        context: dict[str, Any] = {
            "title": "Sign in",
            "section": "login",
            "next": safe_next(next_url),
            "message": message,
            "enabled": enabled,
            "done": request.query_params.get("done"),
            "user": None,
            "can": set(),
        }
        return templates().TemplateResponse(request, "login.html", context, status_code=status)

    @ui.get("/login", response_class=HTMLResponse)
    async def login_page(
        request: Request,
        next_url: Annotated[str, Query(alias="next")] = "/ui",
        failed: str | None = None,
    ) -> HTMLResponse:
        return form(request, next_url, failed, 200)

    @ui.post("/login", response_model=None)
    async def login(
        request: Request,
        token: Annotated[str, Form()] = "",
        next_url: Annotated[str, Form(alias="next")] = "/ui",
    ) -> Response:
        secret = token.strip()
        try:
            found = await asyncio.to_thread(services.tokens.authenticate, secret)
        except AuthenticationError as exc:
            return form(request, next_url, f"Not signed in: {exc}", 401)
        can = ROLE_PERMISSIONS[found.role]
        if Permission.READ not in can and Permission.AUDIT not in can:
            message = (
                f"Not signed in: token {found.name!r} has the role {found.role.value}, which has no dashboard pages"
            )
            return form(request, next_url, message, 403)
        target = safe_next(next_url)
        if Permission.READ not in can and not target.startswith("/ui/audit"):  # an auditor sees the audit pages only
            target = "/ui/audit"
        response = RedirectResponse(target, status_code=303)
        lifetime = None
        if found.expires_at is not None:
            lifetime = max(1, int((found.expires_at - datetime.now(UTC)).total_seconds()))
        response.set_cookie(
            COOKIE,
            secret,
            max_age=lifetime,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @ui.post("/logout")
    async def logout(request: Request) -> RedirectResponse:
        response = RedirectResponse("/ui/login?done=Signed+out", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response
