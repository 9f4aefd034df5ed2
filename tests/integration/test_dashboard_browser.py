"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) against a real
``corral serve`` with real traffic: every page renders its data at 1280 px and on a 390 px phone, charts have
data points, axe finds no serious accessibility violation, the keyboard reaches every part, the overview
updates live, a promotion from the UI changes the served version, and an audit search finds a known prediction
that can then be explained and replayed. Every page is opened signed in through the dashboard's sign-in form
(with the admin token the server wrote on first start, or a viewer's token to check what a viewer may not do).

``CORRAL_SCREENSHOTS=<folder>`` saves a screenshot of every page there (``make screenshots`` uses the demo's data).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from server_process import ServerProcess, corral_env, open_services, server_process
from sklearn.ensemble import RandomForestClassifier

from corral.pipelines.entities import Pipeline
from corral.serving.entities import SHADOW, Member

pytestmark = pytest.mark.slow
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path(os.environ.get("CORRAL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [  # as root in a sandbox with no outside network: no sandbox, no background connections
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MODEL, DEPLOYMENT = "cancer", "cancer-api"
WIDTHS = {"desktop": 1280, "phone": 390}
REQUESTS = 80


@pytest.fixture(scope="module")
def served(cancer: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server with three versions of a forest on the breast-cancer data (champion 1, shadow 2), traffic
    with labels for half of it, and a retraining pipeline."""
    features, target = cancer.drop(columns="target"), cancer["target"]
    home = tmp_path_factory.mktemp("dashboard") / "home"
    env = corral_env(home, CORRAL_SERVING__REFRESH_SECONDS="0.3", CORRAL_PIPELINES__WORKER="false")
    services = open_services(env)
    try:
        for version, trees in enumerate((20, 5, 30), start=1):
            model = RandomForestClassifier(n_estimators=trees, max_depth=4, random_state=version).fit(features, target)
            services.registry.log_model(
                model, name=MODEL, training_data=features.assign(target=target), target="target", code_commit="a" * 40
            )
        services.registry.promote(MODEL, 1, reason="first model")
        services.deployments.create(DEPLOYMENT, model=MODEL)
        services.deployments.set_members(DEPLOYMENT, [Member(MODEL, 2, SHADOW)])
        data = home.parent / "train.csv"
        cancer.to_csv(data, index=False)
        services.pipelines.create(
            Pipeline(
                name="retrain",
                train="pipeline_functions:good",
                data=({"kind": "file", "path": str(data)},),
                target="target",
                deployment=DEPLOYMENT,
                every_seconds=86400.0,
                on_alerts=("drift",),
            )
        )
    finally:
        services.close()
    with server_process(env) as server:
        ids = []
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as client:
            for i in range(REQUESTS):
                row = features.iloc[i * 7 % len(features)].to_dict()
                body = client.post(f"/v1/deployments/{DEPLOYMENT}/predict", json={"instances": [row]}).json()
                ids.append((body["prediction_ids"][0], int(target.iloc[i * 7 % len(features)])))
            labels = [{"prediction_id": pid, "label": label} for pid, label in ids[::2]]
            assert client.post("/v1/feedback", json=labels).status_code == 200
        time.sleep(2.0)  # the shadow's records and the monitoring windows reach the store
        services = open_services(env)
        try:
            viewer = services.tokens.create("browser-viewer", "viewer").secret
        finally:
            services.close()
        admin = server.headers["Authorization"].removeprefix("Bearer ")
        yield {
            "server": server,
            "env": env,
            "ids": [pid for pid, _ in ids],
            "features": features,
            "tokens": {"admin": admin, "viewer": viewer},
        }
        assert not server.errors(), server.errors()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: `make test` installs Debian's chromium package")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def sign_in(page: Any, base_url: str, token: str) -> None:
    """Sign in through the dashboard's form, as a person would: the browser keeps the session cookie."""
    page.goto(base_url + "/ui/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/ui(\?.*)?$"))


def open_page(
    browser: Any, width: int, served: dict[str, Any] | None = None, role: str = "admin"
) -> tuple[Any, list[str]]:
    """A fresh page ``width`` px wide, signed in with ``role``'s token when ``served`` is given, and the list its
    console errors and page errors go to."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    if served is not None:
        sign_in(page, served["server"].base_url, served["tokens"][role])
    return page, problems


def chart_points(page: Any) -> list[int]:
    """The number of data points Chart.js drew on every chart of the page."""
    points: list[int] = page.evaluate(
        """() => Array.from(document.querySelectorAll('canvas[data-chart]')).map(c => {
            const chart = Chart.getChart(c);
            return chart ? chart.data.datasets.reduce((n, d) => n + d.data.filter(v => v !== null).length, 0) : -1;
        })"""
    )
    return points


def pages(served: dict[str, Any]) -> dict[str, str]:
    first = served["ids"][0]
    return {
        "overview": "/ui",
        "deployment": f"/ui/deployments/{DEPLOYMENT}?window=3600",
        "drift": f"/ui/deployments/{DEPLOYMENT}/drift",
        "models": "/ui/models",
        "version": f"/ui/models/{MODEL}/1",
        "audit": f"/ui/audit?search=1&deployment={DEPLOYMENT}",
        "prediction": f"/ui/audit/{first}",
        "pipelines": "/ui/pipelines",
    }


@pytest.mark.parametrize("screen", sorted(WIDTHS))
def test_every_page_renders_its_data(served: dict[str, Any], browser: Any, screen: str) -> None:
    server: ServerProcess = served["server"]
    width = WIDTHS[screen]
    page, problems = open_page(browser, width, served)
    shots = os.environ.get("CORRAL_SCREENSHOTS")
    for name, path in pages(served).items():
        response = page.goto(server.base_url + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").count() == 1, path
        points = chart_points(page)
        assert all(n > 0 for n in points), (path, points)  # every chart drawn, with data
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than a {width}px screen"
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"{name}-{screen}.png"), full_page=True)
    assert not problems, problems
    page.close()
    # what each page must show, checked once on the desktop: charts where there is data to chart
    if screen == "desktop":
        page, _ = open_page(browser, width, served)
        page.goto(server.base_url + f"/ui/deployments/{DEPLOYMENT}?window=3600")
        page.wait_for_load_state("networkidle")
        assert len(chart_points(page)) >= 3  # outputs, latency, agreement (labels arrived: quality too)
        assert page.get_by_role("cell", name=re.compile(r"shadow")).count() >= 1
        page.goto(server.base_url + f"/ui/deployments/{DEPLOYMENT}/drift")
        page.wait_for_load_state("networkidle")
        assert len(chart_points(page)) >= 30  # drift over time, and one histogram per feature and output
        page.close()


def test_pages_pass_axe_accessibility_checks(served: dict[str, Any], browser: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    page, _ = open_page(browser, WIDTHS["desktop"], served)
    serious: dict[str, list[str]] = {}
    for path in pages(served).values():
        page.goto(served["server"].base_url + path)
        page.wait_for_load_state("networkidle")
        results = axe.run(page)
        found = [v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        if found:
            serious[path] = found
    page.close()
    assert not serious, serious


def test_keyboard_reaches_the_navigation_and_the_forms(served: dict[str, Any], browser: Any) -> None:
    page, _ = open_page(browser, WIDTHS["desktop"], served)
    page.goto(served["server"].base_url + "/ui")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    for _ in range(10):  # on to the Audit link, then follow it with Enter
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent") == "Audit":
            break
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/audit")
    labelled = page.evaluate(
        """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select'))
                 .every(e => e.labels && e.labels.length > 0)"""
    )
    assert labelled  # every control is named by a <label>
    page.close()


def test_the_overview_updates_live(served: dict[str, Any], browser: Any) -> None:
    server: ServerProcess = served["server"]
    page, _ = open_page(browser, WIDTHS["desktop"], served)
    page.goto(server.base_url + "/ui")
    champion_requests = page.locator("#overview tbody tr").first.locator("td.num").first
    before = int(champion_requests.inner_text())
    row = served["features"].iloc[3].to_dict()
    for _ in range(5):
        httpx.post(
            f"{server.base_url}/v1/deployments/{DEPLOYMENT}/predict",
            json={"instances": [row]},
            headers=server.headers,
            timeout=30,
        )
    page.wait_for_function(  # htmx reloads the table every 5 s: no page reload
        f"() => parseInt(document.querySelector('#overview tbody tr td.num').textContent) >= {before + 5}",
        timeout=15000,
    )
    page.close()


def test_an_audit_search_finds_a_known_prediction_which_is_explained_and_replayed(
    served: dict[str, Any], browser: Any
) -> None:
    server: ServerProcess = served["server"]
    known = served["ids"][5]
    page, problems = open_page(browser, WIDTHS["desktop"], served)
    page.goto(server.base_url + "/ui/audit")
    page.wait_for_load_state("networkidle")
    assert "Verified" in page.locator("#verify").inner_text()  # the chain checks out
    page.get_by_label("Deployment").fill(DEPLOYMENT)
    page.get_by_label("Version").fill("1")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state("networkidle")
    page.get_by_role("link", name=known).click()
    page.wait_for_url(f"**/ui/audit/{known}")
    assert known in page.locator("h1").inner_text()
    page.get_by_role("button", name="Explain this prediction").click()
    page.wait_for_load_state("networkidle")
    assert "explanation computed and stored" in page.get_by_role("status").first.inner_text()
    points = chart_points(page)
    assert points and all(n > 2 for n in points)  # base value, one bar per feature, the output
    page.get_by_role("button", name="Replay").click()
    page.wait_for_load_state("networkidle")
    assert "Identical" in page.get_by_role("status").first.inner_text()
    assert not problems, problems
    page.close()


def test_a_run_queued_from_the_dashboard_shows_on_its_page(served: dict[str, Any], browser: Any) -> None:
    page, problems = open_page(browser, WIDTHS["desktop"], served)
    page.goto(served["server"].base_url + "/ui/pipelines")
    assert "every 86400 s" in page.locator("main").inner_text()
    page.get_by_role("button", name="Run retrain now").click()
    page.wait_for_url("**done=*")
    assert "queued" in page.get_by_role("status").first.inner_text()
    page.get_by_role("button", name="Run retrain now").click()  # one run at a time
    page.wait_for_url("**done=*already*")
    page.locator("table a[href^='/ui/runs/']").first.click()
    page.wait_for_url("**/ui/runs/*")
    main = page.locator("main").inner_text()
    assert "queued" in main and "manual" in main and "The run did not reach the gate" in main
    assert not problems, problems
    page.close()


def test_a_promotion_from_the_dashboard_changes_the_served_version(served: dict[str, Any], browser: Any) -> None:
    server: ServerProcess = served["server"]
    page, _ = open_page(browser, WIDTHS["desktop"], served)
    page.goto(server.base_url + f"/ui/deployments/{DEPLOYMENT}")
    promote = page.locator("form[action$='/promote']")
    promote.get_by_label("Version").select_option("3")
    promote.get_by_label("Reason").fill("better recall on the review set")
    promote.get_by_role("button", name="Promote").click()  # the confirmation is required: nothing happens
    assert page.url.endswith(f"/ui/deployments/{DEPLOYMENT}")
    promote.get_by_label("I confirm").check()
    promote.get_by_role("button", name="Promote").click()
    page.wait_for_url("**done=*")
    assert "cancer:3 is now champion" in page.get_by_role("status").first.inner_text()
    assert "better recall on the review set" in page.locator("table").filter(has_text="Who").first.inner_text()
    row = served["features"].iloc[0].to_dict()
    deadline = time.monotonic() + 10
    while True:  # the server swaps within a refresh
        url = f"{server.base_url}/v1/deployments/{DEPLOYMENT}/predict"
        body = httpx.post(url, json={"instances": [row]}, headers=server.headers).json()
        if body["model"]["version"] == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert body["model"]["version"] == 3
    page.close()


def test_signing_in_and_out_and_a_viewer_cannot_promote(served: dict[str, Any], browser: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    server: ServerProcess = served["server"]
    page, problems = open_page(browser, WIDTHS["phone"])  # not signed in
    page.goto(server.base_url + f"/ui/deployments/{DEPLOYMENT}")
    assert "/ui/login?next=" in page.url and page.locator("h1").inner_text() == "Sign in"
    violations = Axe().run(page).response["violations"]
    assert not [v["id"] for v in violations if v["impact"] in ("serious", "critical")]
    page.get_by_label("API token").fill("corral_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    assert "invalid token" in page.get_by_role("alert").inner_text()

    page.get_by_label("API token").fill(served["tokens"]["viewer"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/ui/deployments/{DEPLOYMENT}")  # back where the visitor was going
    assert "browser-viewer" in page.locator("header").inner_text()
    assert page.locator("form[action$='/promote']").count() == 0 and "need a deployer" in page.content()
    assert page.get_by_role("link", name="Audit").count() == 0
    champion = httpx.get(f"{server.base_url}/v1/models/{MODEL}", headers=server.headers).json()["aliases"]["champion"]
    target = 1 if champion != 1 else 2
    refused = page.request.post(  # the form posted anyway, with the viewer's session cookie
        server.base_url + f"/ui/deployments/{DEPLOYMENT}/promote",
        form={"version": str(target), "reason": "a viewer tries", "confirm": "yes"},
        max_redirects=0,
    )
    assert refused.status == 403 and "needs the deploy permission" in refused.text()
    after = httpx.get(f"{server.base_url}/v1/models/{MODEL}", headers=server.headers).json()["aliases"]["champion"]
    assert after == champion

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login?done=*")
    assert "Signed out" in page.get_by_role("status").first.inner_text()
    page.goto(server.base_url + "/ui")
    assert "/ui/login" in page.url
    expected = ("status of 401", "status of 403")  # the refused sign-in and the refused promotion
    assert not [p for p in problems if not any(e in p for e in expected)], problems
    page.close()
