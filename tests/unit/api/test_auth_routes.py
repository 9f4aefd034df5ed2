"""Every route of the server, tried without a token and with a token of each role, against the permission table.

The routes come from the application itself: its OpenAPI document plus the routes it leaves out of it (the
dashboard, the hot-path predict routes, /metrics and the documents). Each call uses a harmless request (names
that do not exist, empty bodies), so only the authorization outcome is judged: refused by the middleware
(401 or 403, or the dashboard's redirect to its sign-in page) exactly where the table says so.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.api.app import create_app
from corral.api.auth import allowed_hosts, route_methods
from corral.app import Services, build_services
from corral.security.entities import Role
from corral.security.permissions import MANAGEMENT, ROUTES, Permission, allows, permission_for
from corral.settings import AlertSettings, AuthSettings, PipelineSettings, ServingSettings, Settings
from corral.testing.auth import admin_headers, bearer

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 in its TestClient; httpx, our dependency, works
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

PARAMS = {
    "name": "ghost",
    "version": "1",
    "alias": "nowhere",
    "model": "ghost",
    "prediction_id": "01a00000-0000-7000-8000-000000000000",
    "alert_id": "ghost",
    "rule": "ghost",
    "run_id": "ghost",
    "token": "ghost",
    "path": "corral.css",
}
AUTH_CODES = {"unauthenticated", "invalid_token", "token_expired", "token_revoked", "forbidden"}


def settings_for(home: Path, **auth: object) -> Settings:
    return Settings(
        home=home,
        user="auth-test",
        serving=ServingSettings(access_log=False),
        alerts=AlertSettings(enabled=False),
        pipelines=PipelineSettings(worker=False),
        auth=AuthSettings(**auth),  # type: ignore[arg-type]
    )


@dataclass
class Served:
    services: Services
    client: TestClient
    headers: dict[str | None, dict[str, str]]  # by role (None: no token)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    services = build_services(settings_for(tmp_path_factory.mktemp("auth") / "home"))
    app = create_app(services, close_services=True)
    headers: dict[str | None, dict[str, str]] = {None: {}}
    for role in Role:
        headers[role.value] = bearer(services.tokens.create(f"as-{role.value}", role).secret)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        yield Served(services, client, headers)


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], template)


def refused(response: object) -> int | None:
    """401 or 403 when the authorization middleware refused the request (as the API or the dashboard says it);
    ``None`` when the request reached its handler, whatever that answered."""
    status = response.status_code  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    if status == 303 and headers.get("location", "").startswith("/ui/login?next="):
        return 401
    if status in (401, 403):
        if headers.get("content-type", "").startswith("application/json"):
            body = response.json()  # type: ignore[attr-defined]
            return status if body.get("code") in AUTH_CODES else None
        if status == 403 and "<h1>Not allowed</h1>" in response.text:  # type: ignore[attr-defined]
            return 403
    return None


def every_operation(app: object) -> list[tuple[str, str]]:
    """(method, path template) of every operation in the OpenAPI document and every route it leaves out."""
    operations = [
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    return sorted(set(operations) | set(route_methods(app)))  # type: ignore[arg-type]


def test_every_route_has_exactly_one_entry_in_the_permission_table(served: Served) -> None:
    app = served.client.app
    routes = set(route_methods(app))  # type: ignore[arg-type]
    documented = {(m.upper(), p) for p, item in app.openapi()["paths"].items() for m in item}  # type: ignore[attr-defined]
    assert documented <= routes  # the OpenAPI document describes routes the middleware can find
    missing = sorted(r for r in routes if r not in ROUTES)
    assert not missing, f"routes without an entry in corral.security.permissions.ROUTES: {missing}"
    stale = sorted(r for r in ROUTES if r not in routes)
    assert not stale, f"entries in corral.security.permissions.ROUTES for routes that do not exist: {stale}"


def test_every_route_and_method_without_a_token_and_with_each_role(served: Served) -> None:
    operations = every_operation(served.client.app)
    assert len(operations) >= 80
    outcomes: dict[tuple[str, str], dict[str | None, int | None]] = {}
    for method, template in operations:
        permission = permission_for(method, template)
        assert permission is not None, (method, template)
        path = concrete(template)
        for role, headers in served.headers.items():
            body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
            response = served.client.request(method, path, headers=headers, follow_redirects=False, **body)
            got = refused(response)
            outcomes.setdefault((method, template), {})[role] = got
            if role is None:
                expected = None if permission is Permission.PUBLIC else 401
            else:
                expected = None if allows(Role(role), permission) else 403
            assert got == expected, (
                f"{method} {template} ({permission.value}) as {role or 'no token'}: expected "
                f"{expected or 'let through'}, got {response.status_code} {response.text[:300]}"
            )
    # the outcomes are the published table: every role's column matches its permissions
    for (method, template), by_role in outcomes.items():
        permission = ROUTES[(method, template)]
        assert [r for r in Role if by_role[r.value] is None] == [r for r in Role if allows(r, permission)]


def test_refusals_say_why_in_json_with_a_code(served: Served) -> None:
    client = served.client
    missing = client.get("/v1/models")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="corral"'
    assert missing.json()["code"] == "unauthenticated" and "Authorization: Bearer" in missing.json()["error"]
    forged = client.get("/v1/models", headers=bearer("corral_" + "A" * 43))
    assert forged.status_code == 401 and forged.json()["code"] == "invalid_token"
    assert forged.headers["www-authenticate"] == 'Bearer realm="corral", error="invalid_token"'
    wrong_scheme = client.get("/v1/models", headers={"Authorization": "Basic " + "A" * 20})
    assert wrong_scheme.status_code == 401 and wrong_scheme.json()["code"] == "unauthenticated"
    viewer = client.post("/v1/deployments", json={}, headers=served.headers["viewer"])
    assert viewer.status_code == 403 and viewer.json() == {
        "error": "token 'as-viewer' has the role viewer, which may not POST /v1/deployments: that needs the deploy "
        "permission, held by the roles deployer, admin",
        "code": "forbidden",
    }
    unknown = client.get("/v1/nowhere", headers=served.headers["admin"])
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    wrong_method = client.delete("/v1/models", headers=served.headers["admin"])
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET"


def test_a_route_missing_from_the_table_is_refused(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(ROUTES, ("GET", "/v1/models"))
    response = served.client.get("/v1/models", headers=served.headers["admin"])
    assert response.status_code == 403 and "no entry in the permission table" in response.json()["error"]


def test_denied_attempts_on_management_routes_are_recorded(served: Served) -> None:
    client, tokens = served.client, served.services.tokens
    before = {d.id for d in tokens.denials(limit=1000)}
    client.put("/v1/models/ghost/aliases/champion", json={"version": 1})  # no token: deploy
    client.get("/v1/audit/verify", headers=served.headers["viewer"])  # audit
    client.post("/v1/tokens", json={"name": "x", "role": "admin"}, headers=served.headers["deployer"])  # admin
    client.get("/v1/tokens", headers=bearer("corral_" + "B" * 43))
    client.get("/v1/models")  # a read: not recorded
    client.post("/v1/deployments/ghost/predict", json={}, headers=served.headers["viewer"])  # predict: not recorded
    new = [d for d in tokens.denials(limit=1000) if d.id not in before]
    assert [(d.method, d.route, d.status, d.token_name) for d in reversed(new)] == [
        ("PUT", "/v1/models/{name}/aliases/{alias}", 401, None),
        ("GET", "/v1/audit/verify", 403, "as-viewer"),
        ("POST", "/v1/tokens", 403, "as-deployer"),
        ("GET", "/v1/tokens", 401, None),
    ]
    assert all(d.client == "testclient" and d.reason for d in new)
    assert new[-1].path == "/v1/models/ghost/aliases/champion" and "needs the audit permission" in new[-2].reason
    listed = client.get("/v1/denials", params={"limit": 4}, headers=served.headers["admin"]).json()
    assert [d["route"] for d in listed] == [d.route for d in new]
    assert {Permission.PUBLISH, Permission.DEPLOY, Permission.AUDIT, Permission.ADMIN} == MANAGEMENT


def test_tokens_over_http_are_shown_once_and_revoked_at_once(served: Served) -> None:
    client, admin = served.client, served.headers["admin"]
    made = client.post("/v1/tokens", json={"name": "http-made", "role": "predictor", "expires_in": "1d"}, headers=admin)
    assert made.status_code == 201
    body = made.json()
    assert body["token"].startswith("corral_") and body["created_by"] == "token:as-admin" and body["expires_at"]
    listed = client.get("/v1/tokens", headers=admin)
    assert body["token"] not in listed.text and "hash" not in listed.text
    assert any(t["name"] == "http-made" and t["state"] == "active" for t in listed.json())
    mine = bearer(body["token"])
    assert client.get("/v1/whoami", headers=mine).json()["permissions"] == [
        "authenticated",
        "feedback",
        "metadata",
        "predict",
    ]
    assert client.delete("/v1/tokens/http-made", headers=admin).json()["state"] == "revoked"
    gone = client.get("/v1/whoami", headers=mine)
    assert gone.status_code == 401 and gone.json() == {
        "error": "token 'http-made' was revoked",
        "code": "token_revoked",
    }
    bad = client.post("/v1/tokens", json={"name": "x", "role": "root"}, headers=admin)
    assert bad.status_code == 400 and "unknown role 'root'" in bad.json()["error"]


def test_a_cookie_opens_reads_but_never_an_api_write(served: Served) -> None:
    client = served.client
    secret = served.headers["admin"]["Authorization"].removeprefix("Bearer ")
    client.cookies.set("corral_token", secret)
    try:
        assert client.get("/v1/models").status_code == 200  # the dashboard's links to reports
        write = client.post("/v1/deployments", json={"name": "x", "model": "y"})
        assert write.status_code == 401 and write.json()["code"] == "unauthenticated"
    finally:
        client.cookies.clear()


def test_tokens_never_reach_the_access_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(tmp_path / "home")
    settings.serving.access_log = True
    services = build_services(settings)
    app = create_app(services, close_services=True)
    headers = admin_headers(services)
    secret = headers["Authorization"].removeprefix("Bearer ")
    with caplog.at_level(logging.INFO, logger="corral.access"), TestClient(app, base_url="http://localhost") as client:
        assert client.get("/v1/models", headers=headers).status_code == 200
        assert client.get("/v1/models", headers=bearer(secret[:-1] + "x")).status_code == 401
        client.cookies.set("corral_token", secret)
        assert client.get("/ui/models").status_code == 200
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "corral.access"]
    assert [line["status"] for line in lines] == [200, 401, 200]
    assert secret[:20] not in caplog.text and "authorization" not in caplog.text.lower()


def test_trusted_hosts_and_cors(tmp_path: Path) -> None:
    assert allowed_hosts([], "127.0.0.1") == ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts(["API.example.com"], "::1") == ["localhost", "127.0.0.1", "[::1]", "api.example.com"]
    assert allowed_hosts([], "10.0.0.5")[-1] == "10.0.0.5"
    services = build_services(
        settings_for(tmp_path / "home", allowed_hosts=["models.example.com"], cors_origins=["https://app.example.com"])
    )
    app = create_app(services, close_services=True)
    headers = admin_headers(services)
    with TestClient(app, base_url="http://localhost") as client:
        hosts = [("localhost:8000", 200), ("127.0.0.1", 200), ("[::1]:8000", 200), ("models.example.com", 200)]
        for host, status in [*hosts, ("evil.example.com", 400), ("corral", 400)]:
            assert client.get("/v1/models", headers={**headers, "Host": host}).status_code == status, host
        bad = ["localhost.evil.com", "127.0.0.1:x", "user@localhost", "localhost/x", "[::1", "", "LOCALHOST:1:2"]
        for host in bad:
            refused = client.get("/v1/models", headers={**headers, "Host": host})
            assert refused.status_code == 400, host
            assert refused.json() == {
                "error": "this server does not answer to that Host header",
                "code": "invalid_host",
            }
        assert client.get("/v1/models", headers={**headers, "Host": "LocalHost:8000"}).status_code == 200
        preflight = {
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        answer = client.options("/v1/deployments/x/predict", headers=preflight)
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://app.example.com"
        other = client.options("/v1/deployments/x/predict", headers={**preflight, "Origin": "https://evil.example.com"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        simple = client.get("/v1/models", headers={**headers, "Origin": "https://app.example.com"})
        assert simple.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "access-control-allow-credentials" not in simple.headers  # tokens travel in a header, not cookies


def test_cors_is_off_unless_origins_are_configured(served: Served) -> None:
    client = served.client
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    assert client.options("/v1/deployments/x/predict", headers=preflight).status_code == 405
    simple = client.get("/v1/models", headers={**served.headers["viewer"], "Origin": "https://app.example.com"})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


def test_authentication_can_be_turned_off_explicitly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    services = build_services(settings_for(home, enabled=False))
    with caplog.at_level(logging.WARNING, logger="corral.auth"):
        app = create_app(services, close_services=True)
    assert "authentication is disabled" in caplog.text
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/v1/models").status_code == 200
        assert client.get("/v1/whoami").json()["authentication"] == "disabled"
        assert client.get("/ui").status_code == 200
        assert client.get("/v1/models", headers={"Host": "evil.example.com"}).status_code == 400  # still checked
    assert not (home / "admin-token").exists()  # no token is made when none is needed


def test_the_first_start_of_an_app_makes_the_admin_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    services = build_services(settings_for(home))
    create_app(services, close_services=True)
    token = (home / "admin-token").read_text().strip()
    assert (home / "admin-token").stat().st_mode & 0o777 == 0o600
    assert services.tokens.authenticate(token).role is Role.ADMIN
    create_app(services)  # a second application on the same installation: the file stays
    assert (home / "admin-token").read_text().strip() == token and len(services.tokens.all()) == 1


def test_a_flood_of_refusals_is_recorded_only_up_to_a_budget(caplog: pytest.LogCaptureFixture) -> None:
    from corral.api.auth import DenialBudget

    budget = DenialBudget(rate=0.0, burst=3)
    assert [budget.take() for _ in range(5)] == [True, True, True, False, False]
    assert budget.dropped == 2
    budget.reported -= 61  # a minute later, the dropped ones are logged once
    with caplog.at_level(logging.WARNING, logger="corral.auth"):
        assert not budget.take()
    assert "3 refused requests were not recorded" in caplog.text and budget.dropped == 0
