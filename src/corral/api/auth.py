"""Authentication and authorization of every request, by its route, from the one permission table.

:class:`AuthMiddleware` sits in front of the router. For each request it finds the route the router would
pick (the same route objects, matched the same way), looks up ``(method, path template)`` in
:data:`corral.security.permissions.ROUTES`, and then:

- ``public`` routes (health, the dashboard's sign-in page and static files) go through;
- otherwise the token comes from ``Authorization: Bearer ...`` (or, for the dashboard's pages, forms and the
  API's GET routes a signed-in browser follows, the ``corral_token`` cookie); none, or one that is unknown,
  expired or revoked, is a 401 with ``WWW-Authenticate: Bearer``; a valid token whose role lacks the
  permission is a 403 naming the roles that have it; both as ``{"error": ..., "code": ...}`` (the dashboard
  gets its sign-in page or an error page instead);
- a route missing from the table is refused (403): nothing is reachable by default;
- a path no route matches is answered here (404, or 405 naming the allowed methods), so no request reaches
  the application without having been looked up.

Refused requests on management routes (publish, deploy, audit, admin) are recorded in the store, with the
time, method, route, token (if valid), reason and client address: ``corral tokens denials`` and
``GET /v1/denials`` show them. Tokens never appear in logs or in denial records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from corral.api.errors import public_message
from corral.api.responses import errors
from corral.app import Services
from corral.core.ids import new_id
from corral.dashboard.render import COOKIE, denied_page
from corral.errors import AuthenticationError, PermissionDeniedError, StoreError
from corral.security.bootstrap import ensure_admin_token
from corral.security.entities import Denial, Token
from corral.security.permissions import MANAGEMENT, ROLE_PERMISSIONS, Permission, permission_for
from corral.security.service import Tokens, parse_duration

log = logging.getLogger("corral.auth")

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_WILDCARDS = ("0.0.0.0", "::", "[::]", "")
_MATCH_CACHE = 4096


def walk_routes(routes: Iterable[BaseRoute]) -> Iterator[tuple[BaseRoute, str]]:
    """Every route of an application in the router's order, with its path template (a mount's is
    ``PREFIX/{path}``). Routers included by FastAPI are walked into.

    Raises:
        RuntimeError: a kind of route this walk does not know (so nothing is served unlooked-up).
    """
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:  # FastAPI keeps an included router whole and routes into it
            prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            if prefix:
                raise RuntimeError(
                    f"routers included with a prefix ({prefix!r}) are not supported: set it on the router"
                )
            yield from walk_routes(inner.routes)
        elif isinstance(route, Mount):
            yield route, route.path.rstrip("/") + "/{path}"
        elif isinstance(route, Route):
            yield route, route.path
        else:
            raise RuntimeError(f"the authorization middleware cannot look up a route of type {type(route).__name__}")


def route_methods(app: FastAPI) -> list[tuple[str, str]]:
    """``(method, path template)`` of every route the application answers (``HEAD`` folded into ``GET``;
    a mount as ``GET``): what the permission table must cover."""
    found: list[tuple[str, str]] = []
    for route, template in walk_routes(app.router.routes):
        methods = getattr(route, "methods", None) or {"GET"}
        for method in sorted(methods - {"HEAD"} if methods != {"HEAD"} else methods):
            if (method, template) not in found:
                found.append((method, template))
    return found


class RouteTable:
    """Finds the route the router would choose for a request: the first that matches path and method fully."""

    def __init__(self, routes: Sequence[tuple[BaseRoute, str]]) -> None:
        self.routes = list(routes)
        self._cache: dict[tuple[str, str, str], tuple[Match, str | None, BaseRoute | None, tuple[str, ...]]] = {}

    def match(self, scope: Scope) -> tuple[Match, str | None, BaseRoute | None, tuple[str, ...]]:
        """(FULL, template, route, ()) for a match; (PARTIAL, None, None, allowed methods) when only the method
        is wrong; (NONE, None, None, ()) when no route has this path."""
        key = (scope["method"], scope["path"], scope.get("root_path", ""))
        found = self._cache.get(key)
        if found is not None:
            return found
        probe = {"type": "http", "method": key[0], "path": key[1], "root_path": key[2]}
        allowed: set[str] = set()
        result: tuple[Match, str | None, BaseRoute | None, tuple[str, ...]] = (Match.NONE, None, None, ())
        for route, template in self.routes:
            match, _ = route.matches(dict(probe))
            if match is Match.FULL:
                result = (Match.FULL, template, route, ())
                break
            if match is Match.PARTIAL:
                allowed |= getattr(route, "methods", None) or set()
        else:
            if allowed:
                result = (Match.PARTIAL, None, None, tuple(sorted(allowed)))
        if len(self._cache) >= _MATCH_CACHE:
            self._cache.clear()
        self._cache[key] = result
        return result


class DenialBudget:
    """How many refusals a server records: ``rate`` a second on average, ``burst`` at once. Anyone can be
    refused, so a flood of refused requests must not turn into a flood of database writes; the ones over the
    budget are counted and logged once a minute instead."""

    def __init__(self, rate: float = 20.0, burst: float = 200.0) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.last = time.monotonic()
        self.dropped = 0
        self.reported = self.last

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.dropped += 1
        if now - self.reported >= 60:
            log.warning("%d refused requests were not recorded (over %g a second)", self.dropped, self.rate)
            self.dropped, self.reported = 0, now
        return False


class AuthMiddleware:
    """Looks every request's route up in the permission table and lets through only what it allows."""

    def __init__(self, app: ASGIApp, *, owner: FastAPI, tokens: Tokens, record_denials: bool = True) -> None:
        self.app = app
        self.owner = owner
        self.tokens = tokens
        self.record_denials = record_denials
        self._table: RouteTable | None = None
        self._budget = DenialBudget()

    @property
    def table(self) -> RouteTable:
        if self._table is None:  # built at the first request, when every route has been added
            self._table = RouteTable(list(walk_routes(self.owner.router.routes)))
        return self._table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websocket route exists; refuse any
            await send({"type": "websocket.close", "code": 1008})
            return
        method = scope["method"]
        match, template, route, allowed = self.table.match(scope)
        if match is Match.NONE:
            await _json(404, f"no route {scope['path']!r}", "not_found")(scope, receive, send)
            return
        if match is Match.PARTIAL or template is None:
            headers = {"Allow": ", ".join(allowed)}
            message = f"{method} is not allowed on {scope['path']!r}; allowed: {', '.join(allowed)}"
            await _json(405, message, "method_not_allowed", headers)(scope, receive, send)
            return
        scope.setdefault("route", route)  # so refused requests are measured under their route
        permission = permission_for(method, template)
        if permission is None:
            message = f"{method} {template} has no entry in the permission table, so it is refused (default deny)"
            await self._deny(
                scope,
                receive,
                send,
                status=403,
                code="forbidden",
                message=message,
                template=template,
                permission=None,
                token=None,
            )
            return
        if permission is Permission.PUBLIC:
            await self.app(scope, receive, send)
            return
        secret = _credential(scope, template)
        try:
            if self.tokens.needs_store(secret):
                token = await asyncio.to_thread(self.tokens.authenticate, secret)
            else:
                token = self.tokens.authenticate(secret)
        except StoreError as exc:  # the store is down: refuse like every other request then, 503, never a 500
            error_id = new_id()
            log.error("request refused: its token could not be checked (error %s): %s", error_id, exc)
            response = _json(503, public_message(exc, error_id), "unavailable", {"Retry-After": "1"})
            await response(scope, receive, send)
            return
        except AuthenticationError as exc:
            await self._deny(
                scope,
                receive,
                send,
                status=401,
                code=exc.code,
                message=str(exc),
                template=template,
                permission=permission,
                token=None,
            )
            return
        try:
            self.tokens.authorize(token, permission, action=f"{method} {template}")
        except PermissionDeniedError as exc:
            await self._deny(
                scope,
                receive,
                send,
                status=403,
                code="forbidden",
                message=str(exc),
                template=template,
                permission=permission,
                token=token,
            )
            return
        scope.setdefault("state", {})["principal"] = token
        await self.app(scope, receive, send)

    async def _deny(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        status: int,
        code: str,
        message: str,
        template: str,
        permission: Permission | None,
        token: Token | None,
    ) -> None:
        recorded = self.record_denials and (permission is None or permission in MANAGEMENT)
        if recorded and self._budget.take():
            denial = Denial(
                at=datetime.now(UTC),
                method=scope["method"],
                route=template,
                path=scope["path"],
                status=status,
                reason=message,
                client=(scope.get("client") or ("",))[0] or None,
                token_id=token.id if token else None,
                token_name=token.name if token else None,
            )
            try:
                await asyncio.to_thread(self.tokens.record_denial, denial)
            except Exception as exc:  # the refusal stands whether or not it could be recorded
                log.warning("could not record a refused request: %s: %s", type(exc).__name__, exc)
        if template == "/ui" or template.startswith("/ui/"):
            if token is not None:  # the error page shows who is signed in and what they may open
                scope.setdefault("state", {})["principal"] = token
            response = _dashboard_refusal(scope, status, code, message)
        else:
            headers = {}
            if status == 401:
                error = "" if code == "unauthenticated" else ', error="invalid_token"'
                headers["WWW-Authenticate"] = f'Bearer realm="corral"{error}'
            response = _json(status, message, code, headers)
        await response(scope, receive, send)


def _credential(scope: Scope, template: str) -> str | None:
    """The bearer token of the request; else, for the dashboard and for GET routes (the links a signed-in
    browser follows), the sign-in cookie. Other API writes need the header, so a cookie alone never acts."""
    cookie_header = None
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials.strip() if scheme.lower() == "bearer" else None
        if name == b"cookie":
            cookie_header = value
    if cookie_header is None:
        return None
    if not (template == "/ui" or template.startswith("/ui/") or scope["method"] in ("GET", "HEAD")):
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header.decode("latin-1"))
    except Exception:
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel is not None else None


def _json(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": message, "code": code}).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _dashboard_refusal(scope: Scope, status: int, code: str, message: str) -> Response:
    """The dashboard's answer: the sign-in page (401), or an error page naming what is needed (403)."""
    request = Request(scope)
    if status == 403:
        return denied_page(request, message)
    target = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
    location = f"/ui/login?next={quote(target, safe='')}"
    if code in ("token_expired", "token_revoked", "invalid_token"):
        location += f"&failed={quote('Signed out: ' + message, safe='')}"
    if request.headers.get("hx-request"):  # a fragment htmx reloads: send the whole page to sign in
        response = Response(status_code=401, headers={"HX-Redirect": location})
    else:
        response = Response(status_code=303, headers={"Location": location})
    if code != "unauthenticated":
        response.delete_cookie(COOKIE, path="/")
    return response


def allowed_hosts(configured: Sequence[str], bind_host: str | None) -> list[str]:
    """The host names the trusted-host check accepts: loopback names, the address the server listens on
    (or, listening on every interface, this machine's names), and the configured ones (``*``: any)."""
    hosts = list(LOOPBACK_HOSTS)
    if bind_host in _WILDCARDS and bind_host is not None:
        hosts += [socket.gethostname(), socket.getfqdn()]
    elif bind_host:
        hosts.append(f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host)
    hosts += [h.strip() for h in configured if h.strip()]
    return list(dict.fromkeys(h.lower() for h in hosts if h))


def install(app: FastAPI, services: Services) -> None:
    """Add the token routes; with authentication on, make the first admin token if there is none and put
    :class:`AuthMiddleware` in front of the router (the caller adds it after every route)."""
    app.include_router(router(services))
    app.state.auth_enabled = services.settings.auth.enabled
    if services.settings.auth.enabled:
        ensure_admin_token(services.tokens, services.settings.resolved_token_file())
    else:
        log.warning(
            "authentication is disabled (CORRAL_AUTH__ENABLED=false): every route is open to anyone who can reach "
            "this server"
        )


class TokenBody(BaseModel):
    name: str
    role: str
    expires_in: str | None = Field(None, description="a lifetime like 30d, 12h or 90m; none: no expiry")


def router(services: Services) -> APIRouter:
    """Who am I, API tokens and denied attempts (``admin`` but for ``/v1/whoami``)."""
    api = APIRouter(tags=["Security"])
    tokens = services.tokens

    def caller(request: Request) -> str:
        token = getattr(request.state, "principal", None)
        return f"token:{token.name}" if isinstance(token, Token) else tokens.actor

    @api.get("/v1/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        """The token this request carries: its name, role and permissions."""
        token = getattr(request.state, "principal", None)
        if not isinstance(token, Token):
            return {"authentication": "disabled", "name": None, "role": None, "permissions": list(Permission)}
        return {
            "authentication": "enabled",
            **token.to_dict(tokens.now()),
            "permissions": sorted(p.value for p in ROLE_PERMISSIONS[token.role]),
        }

    @api.get("/v1/tokens")
    async def list_tokens(include_revoked: bool = True) -> list[dict[str, Any]]:
        """Every token (never a secret or a hash)."""
        now = tokens.now()
        found = await asyncio.to_thread(tokens.all, include_revoked=include_revoked)
        return [t.to_dict(now) for t in found]

    @api.post("/v1/tokens", status_code=201, responses=errors(409))
    async def create_token(request: Request, body: TokenBody) -> dict[str, Any]:
        """Make a token; the response holds its secret, shown this once."""
        lifetime = parse_duration(body.expires_in) if body.expires_in else None
        issued = await asyncio.to_thread(
            tokens.create, body.name, body.role, expires_in=lifetime, created_by=caller(request)
        )
        return {**issued.token.to_dict(tokens.now()), "token": issued.secret}

    @api.delete("/v1/tokens/{token}")
    async def revoke_token(request: Request, token: str) -> dict[str, Any]:
        """Revoke a token by name or id."""
        revoked = await asyncio.to_thread(tokens.revoke, token, by=caller(request))
        return revoked.to_dict(tokens.now())

    @api.get("/v1/denials")
    async def denials(
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Refused requests on management routes, newest first."""
        found = await asyncio.to_thread(tokens.denials, since=since, limit=limit)
        return [d.to_dict() for d in found]

    return api
