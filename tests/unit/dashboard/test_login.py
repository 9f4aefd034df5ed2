"""Signing in to the dashboard with a token, the cookie it sets, signing out, and the permission table applied to
every page and form: a viewer sees a deployment but cannot promote, an auditor sees the audit pages only."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from starlette.exceptions import StarletteDeprecationWarning

from corral.api.app import create_app
from corral.app import Services, build_services
from corral.settings import AlertSettings, PipelineSettings, ServingSettings, Settings

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 in its TestClient; httpx, our dependency, works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

COLUMNS = ["mean radius", "mean texture"]


@dataclass
class Site:
    services: Services
    app: object
    secrets: dict[str, str]

    def client(self, base_url: str = "http://localhost") -> TestClient:
        return TestClient(self.app, base_url=base_url, follow_redirects=False)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, cancer: pd.DataFrame) -> Iterator[Site]:
    settings = Settings(
        home=tmp_path_factory.mktemp("login") / "home",
        user="login-test",
        serving=ServingSettings(access_log=False, refresh_seconds=60),
        alerts=AlertSettings(enabled=False),
        pipelines=PipelineSettings(worker=False),
    )
    services = build_services(settings)
    data = cancer[[*COLUMNS, "target"]]
    for c in (0.1, 10.0):
        model = LogisticRegression(C=c, max_iter=1000).fit(data[COLUMNS], data["target"])
        services.registry.log_model(model, name="cancer", training_data=data, target="target")
    services.registry.promote("cancer", 1)
    services.deployments.create("d", model="cancer")
    app = create_app(services, close_services=True)
    secrets = {role: services.tokens.create(f"{role}-1", role).secret for role in ("viewer", "deployer", "auditor")}
    secrets["predictor"] = services.tokens.create("scorer", "predictor").secret
    with TestClient(app, base_url="http://localhost"):  # runs the lifespan: the model server starts
        yield Site(services, app, secrets)


def sign_in(client: TestClient, secret: str, next_url: str = "/ui") -> object:
    return client.post("/ui/login", data={"token": secret, "next": next_url})


def test_pages_send_a_visitor_without_a_token_to_sign_in(site: Site) -> None:
    client = site.client()
    page = client.get("/ui/deployments/d?window=3600")
    assert (
        page.status_code == 303 and page.headers["location"] == "/ui/login?next=%2Fui%2Fdeployments%2Fd%3Fwindow%3D3600"
    )
    fragment = client.get("/ui/fragments/overview", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["hx-redirect"].startswith("/ui/login?next=")
    form = client.post("/ui/deployments/d/promote", data={"version": "2", "reason": "xyz", "confirm": "yes"})
    assert form.status_code == 303 and form.headers["location"].startswith("/ui/login")
    login = client.get("/ui/login?next=/ui/models")
    assert login.status_code == 200 and 'name="token"' in login.text and 'value="/ui/models"' in login.text
    assert 'href="/ui/models"' not in login.text and "Sign out" not in login.text  # no menu before signing in
    assert client.get("/ui/static/corral.css").status_code == 200


def test_signing_in_sets_a_strict_http_only_cookie(site: Site) -> None:
    client = site.client()
    response = sign_in(client, site.secrets["viewer"], "/ui/deployments/d")
    assert response.status_code == 303 and response.headers["location"] == "/ui/deployments/d"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"corral_token={site.secrets['viewer']};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie and "Secure" not in cookie
    secure = sign_in(site.client("https://localhost"), site.secrets["viewer"]).headers["set-cookie"]
    assert "Secure" in secure


def test_bad_tokens_and_roles_without_pages_are_refused_on_the_form(site: Site) -> None:
    client = site.client()
    wrong = sign_in(client, "corral_" + "x" * 43)
    assert (
        wrong.status_code == 401 and "Not signed in: invalid token" in wrong.text and "set-cookie" not in wrong.headers
    )
    scorer = sign_in(client, site.secrets["predictor"])
    assert scorer.status_code == 403 and "role predictor, which has no dashboard pages" in scorer.text
    elsewhere = sign_in(client, site.secrets["viewer"], "//evil.example.com/ui")
    assert elsewhere.headers["location"] == "/ui"  # only this dashboard's pages
    forged = client.post(
        "/ui/login", data={"token": site.secrets["viewer"]}, headers={"Origin": "https://evil.example.com"}
    )
    assert forged.status_code == 403 and "set-cookie" not in forged.headers  # no login from another site


def test_a_viewer_sees_a_deployment_but_cannot_promote(site: Site) -> None:
    client = site.client()
    sign_in(client, site.secrets["viewer"])
    page = client.get("/ui/deployments/d?window=3600")
    assert page.status_code == 200 and "viewer-1" in page.text and "Sign out" in page.text
    assert 'action="/ui/deployments/d/promote"' not in page.text and "need a deployer" in page.text
    assert 'href="/ui/audit"' not in page.text and 'href="/ui/models"' in page.text
    refused = client.post("/ui/deployments/d/promote", data={"version": "2", "reason": "try it", "confirm": "yes"})
    assert refused.status_code == 403 and "<h1>Not allowed</h1>" in refused.text
    assert "needs the deploy permission, held by the roles deployer, admin" in refused.text
    assert site.services.registry.get_model("cancer").aliases["champion"] == 1
    [denial] = [d for d in site.services.tokens.denials() if d.token_name == "viewer-1"]
    assert (denial.status, denial.route) == (403, "/ui/deployments/{name}/promote")
    assert client.get("/ui/audit").status_code == 403


def test_a_deployer_promotes_as_itself(site: Site) -> None:
    client = site.client()
    sign_in(client, site.secrets["deployer"])
    assert 'action="/ui/deployments/d/promote"' in client.get("/ui/deployments/d?window=3600").text
    done = client.post("/ui/deployments/d/promote", data={"version": "2", "reason": "better", "confirm": "yes"})
    assert done.status_code == 303 and parse_qs(urlsplit(done.headers["location"]).query)["done"]
    last = site.services.registry.alias_history("cancer", "champion")[-1]
    assert (last.to_version, last.actor, last.reason) == (2, "token:deployer-1", "better")
    site.services.registry.promote("cancer", 1, reason="back for the other tests")


def test_an_auditor_lands_on_the_audit_pages_only(site: Site) -> None:
    client = site.client()
    assert sign_in(client, site.secrets["auditor"]).headers["location"] == "/ui/audit"
    audit = client.get("/ui/audit")
    assert audit.status_code == 200 and 'href="/ui/models"' not in audit.text and 'href="/ui/audit"' in audit.text
    assert client.get("/ui").status_code == 403


def test_signing_out_clears_the_cookie(site: Site) -> None:
    client = site.client()
    sign_in(client, site.secrets["viewer"])
    assert client.get("/ui").status_code == 200
    out = client.post("/ui/logout")
    assert out.status_code == 303 and out.headers["location"] == "/ui/login?done=Signed+out"
    assert 'corral_token=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/ui").status_code == 303
    assert "Signed out" in client.get("/ui/login?done=Signed+out").text


def test_a_revoked_token_signs_the_browser_out(site: Site) -> None:
    client = site.client()
    issued = site.services.tokens.create("short-lived", "viewer")
    sign_in(client, issued.secret)
    assert client.get("/ui/models").status_code == 200
    site.services.tokens.revoke("short-lived")
    page = client.get("/ui/models")
    query = parse_qs(urlsplit(page.headers["location"]).query)
    assert page.status_code == 303 and query["failed"] == ["Signed out: token 'short-lived' was revoked"]
    assert "corral_token=" in page.headers["set-cookie"] and "Max-Age=0" in page.headers["set-cookie"]


def test_the_sign_in_page_says_when_authentication_is_off(tmp_path: Path) -> None:
    services = build_services(Settings(home=tmp_path, auth={"enabled": False}))  # type: ignore[arg-type]
    with TestClient(create_app(services, close_services=True), base_url="http://localhost") as client:
        assert "Authentication is off on this server" in client.get("/ui/login").text
        assert client.get("/ui/models").status_code == 200
