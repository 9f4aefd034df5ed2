"""Rendering shared by every dashboard page: the Jinja2 environment and its filters, a page built in a thread
with errors shown as an error page, and form actions that redirect back saying what happened (or what was wrong)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from corral.errors import CorralError, SchemaError
from corral.security.entities import Token
from corral.security.permissions import ROLE_PERMISSIONS, Permission

log = logging.getLogger("corral.dashboard")
TEMPLATES = Path(__file__).parent / "templates"
COOKIE = "corral_token"
"""The cookie that carries a signed-in browser's token (HttpOnly, SameSite=Strict, Secure over https)."""

StatusFor = Callable[[CorralError], int]


@cache
def templates() -> Jinja2Templates:
    """The page templates, with the filters they format numbers, times and chart configurations with."""
    found = Jinja2Templates(directory=str(TEMPLATES))
    filters = found.env.filters
    filters["chart"] = lambda config: json.dumps(config, separators=(",", ":"), allow_nan=False)
    filters["pct"] = lambda v, digits=1: "–" if v is None else f"{100 * float(v):.{digits}f}%"
    filters["num"] = lambda v, digits=3: "–" if v is None else f"{float(v):.{digits}g}"
    filters["ms"] = lambda v: "–" if v is None else f"{float(v):.1f} ms"
    filters["when"] = lambda v: "–" if not v else str(v).replace("T", " ")[:19]
    filters["urlq"] = lambda v: quote(str(v), safe="")
    return found


def principal(request: Request) -> Token | None:
    """The token the request was let in with (``None`` when authentication is off)."""
    found = getattr(request.state, "principal", None)
    return found if isinstance(found, Token) else None


def who(request: Request, fallback: str) -> str:
    """Who acts in the alias history and alerts: the signed-in token's name, else ``fallback``."""
    token = principal(request)
    return f"token:{token.name}" if token is not None else fallback


def session(request: Request) -> dict[str, Any]:
    """What every page knows of the visitor: ``user`` (name and role, or ``None`` when authentication is off)
    and ``can`` (the permissions it holds; all of them when authentication is off)."""
    token = principal(request)
    if token is None:
        return {"user": None, "can": {p.value for p in Permission}}
    return {
        "user": {"name": token.name, "role": token.role.value},
        "can": {p.value for p in ROLE_PERMISSIONS[token.role]},
    }


def denied_page(request: Request, message: str, *, status: int = 403) -> HTMLResponse:
    """The error page for a request the visitor's role may not make."""
    context = {"title": "Not allowed", "section": "", "error": message, "status": status, **session(request)}
    return templates().TemplateResponse(request, "error.html", context, status_code=status)


def reason_of(text: str, what: str) -> str:
    """A person's reason for an action: required, 3 to 500 characters.

    Raises:
        SchemaError: it is missing, too short or too long.
    """
    reason = " ".join(text.split())
    if not 3 <= len(reason) <= 500:
        raise SchemaError(f"give a reason for the {what} (3 to 500 characters), got {len(reason)} characters")
    return reason


def same_origin(request: Request) -> None:
    """Refuse a form posted from another site (cross-site request forgery): a browser names the page a POST came
    from in ``Origin`` (or ``Referer``); it must be this server. A client that sends neither (curl, a script)
    is not a browser another site can drive, and passes; ``Origin: null`` (a sandboxed page) is refused.

    Raises:
        HTTPException: 403, naming the foreign origin.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return
    host = request.headers.get("host", "")
    if urlsplit(source).netloc != host:
        raise HTTPException(403, f"refused: a form from {source!r} may not act on this server ({host})")


def whole_number(text: str, what: str) -> int:
    """A version number from a path or a form.

    Raises:
        SchemaError: it is not a whole number from 1 up.
    """
    if not text.strip().isdigit() or int(text) < 1:
        raise SchemaError(f"{what} must be a whole number from 1 up, got {text!r}")
    return int(text)


def confirmed(value: str, what: str) -> None:
    """Raises SchemaError unless the confirmation box was ticked."""
    if value != "yes":
        raise SchemaError(f"tick the confirmation box to {what}")


class Page:
    """Renders a view into a template; maps corral's errors to an error page or a message after a redirect."""

    def __init__(self, status_for: StatusFor) -> None:
        self.templates = templates()
        self.status_for = status_for

    async def render(
        self, request: Request, template: str, build: Callable[[], dict[str, Any]], *, title: str, section: str
    ) -> HTMLResponse:
        """``build()`` (in a thread) rendered with ``template``; a CorralError renders the error page with the
        status the API would answer."""
        try:
            data = await asyncio.to_thread(build)
            status = 200
        except CorralError as exc:
            status = self.status_for(exc)
            if status >= 500:
                log.error("dashboard page failed: %s: %s", type(exc).__name__, exc)
            data, template = {"error": str(exc), "status": status}, "error.html"
        query = request.query_params
        context = {
            "title": title,
            "section": section,
            "done": query.get("done"),
            "failed": query.get("failed"),
            **session(request),
        }
        return self.templates.TemplateResponse(request, template, {**context, **data}, status_code=status)

    async def act(self, url: str, action: Callable[[], Awaitable[str]]) -> RedirectResponse:
        """Run a form's action and go back to ``url`` with its message, or with the error that stopped it."""
        try:
            message = await action()
        except CorralError as exc:
            return _back(url, "failed", str(exc))
        return _back(url, "done", message)


def _back(url: str, key: str, message: str) -> RedirectResponse:
    sep = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{sep}{urlencode({key: message})}", status_code=303)
