"""The dashboard at /ui over a seeded installation: every page renders what the services hold, errors render as
pages with the API's status, and the forms act through the services and say what happened.

The installation is built once for the module (real SQLite services, the application with its lifespan running
behind Starlette's TestClient, real traffic):

- ``cancer`` has three versions (scikit-learn models on the bundled breast-cancer data), and a fourth that the
  pipeline run registered; ``champion``, ``staging`` and ``pipe`` point at version 1 to start with.
- ``api`` serves ``cancer@champion`` with version 2 as a shadow; it answered 200 rows, 150 of them labelled, and
  its monitoring window is stored. Tests only read it.
- ``forms`` serves ``cancer@staging`` with version 3 as a shadow: the form tests change it, and only it.
- ``pipe`` serves ``cancer@pipe``; pipeline ``retrain`` (every six hours) trains for it and has run once, through
  the gate into a shadow rollout of version 4; pipeline ``by-hand`` has not run.
"""

from __future__ import annotations

import html
import json
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from starlette.exceptions import StarletteDeprecationWarning
from test_api import COLUMNS, rows  # on sys.path by conftest.py
from test_pipelines_api import pipeline

from corral.api.app import create_app
from corral.app import Services, build_services, build_worker
from corral.serving.entities import Member
from corral.settings import AlertSettings, MonitoringSettings, PipelineSettings, ServingSettings, Settings
from corral.testing.auth import admin_headers

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 in its TestClient; httpx, our dependency, works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

ACTOR = "dash-tester"
WHO = "token:admin"  # who acts through the forms: the admin token the client signs its requests with
SERVED = 200
LABELLED = 150


@dataclass
class World:
    services: Services
    client: TestClient
    ids: list[str]  # the prediction ids ``api`` answered, in order
    run_id: str  # the run of ``retrain`` a worker carried out


def wait_for_window(client: TestClient, deployment: str, rows_expected: int) -> dict[str, Any]:
    """The deployment's monitoring snapshot once the sink flushed ``rows_expected`` rows (a bounded wait)."""
    deadline = time.monotonic() + 10
    while True:
        body = client.get(f"/v1/deployments/{deployment}/monitoring").json()
        if (body.get("window") and body["window"]["rows"] >= rows_expected) or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, cancer: pd.DataFrame) -> Iterator[World]:
    home = tmp_path_factory.mktemp("dashboard")
    settings = Settings(
        home=home / "home",
        user=ACTOR,
        serving=ServingSettings(access_log=False, refresh_seconds=60),
        monitoring=MonitoringSettings(windows=[3600], process_seconds=0.02, flush_seconds=0.05),
        alerts=AlertSettings(enabled=False),
        pipelines=PipelineSettings(worker=False),  # the fixture carries out the one run itself
    )
    services = build_services(settings)
    data = cancer[[*COLUMNS, "target"]].sample(frac=1.0, random_state=3).reset_index(drop=True)
    models = [
        LogisticRegression(C=1e-3, max_iter=2000),
        LogisticRegression(C=10.0, max_iter=2000),
        HistGradientBoostingClassifier(max_iter=20, random_state=0),
    ]
    for model in models:
        fitted = model.fit(data[COLUMNS], data["target"])
        services.registry.log_model(fitted, name="cancer", training_data=data, target="target")
    for alias in ("champion", "staging", "pipe"):
        services.registry.set_alias("cancer", alias, 1, reason=f"first {alias}")
    services.deployments.create("api", model="cancer")
    services.deployments.create("forms", model="cancer", alias="staging")
    services.deployments.create("pipe", model="cancer", alias="pipe")
    services.deployments.set_members("api", [Member("cancer", 2, "shadow")])
    services.deployments.set_members("forms", [Member("cancer", 3, "shadow")])
    training = home / "train.csv"
    data.to_csv(training, index=False)
    services.pipelines.create(pipeline(training, deployment="pipe", every_seconds=6 * 3600.0))
    services.pipelines.create(pipeline(training, "by-hand", deployment="pipe"))

    app = create_app(services, close_services=True)
    with TestClient(app, base_url="http://localhost", headers=admin_headers(services)) as client:
        ids: list[str] = []
        instances = rows(cancer, SERVED)
        for start in range(0, SERVED, 20):
            response = client.post("/v1/deployments/api/predict", json={"instances": instances[start : start + 20]})
            assert response.status_code == 200, response.text
            ids += response.json()["prediction_ids"]
        assert client.portal is not None
        client.portal.call(app.state.server.drain_shadows, "api")
        labels = cancer["target"].head(LABELLED).tolist()
        feedback = [{"prediction_id": p, "label": y} for p, y in zip(ids, labels, strict=False)]
        assert client.post("/v1/feedback", json=feedback).status_code == 200
        assert wait_for_window(client, "api", SERVED)["window"]["rows"] == SERVED

        assert services.pipelines.run("retrain", reason="seeded by the fixture") is not None
        finished = build_worker(services).run_once()
        assert finished is not None and finished.state == "succeeded", finished.log if finished else None
        yield World(services, client, ids, finished.id)


CANVAS = re.compile(r'<canvas role="img" aria-label="([^"]*)" data-chart="([^"]*)"></canvas>')


def charts_in(page: str) -> dict[str, dict[str, Any]]:
    """Every chart on a page, by its accessible label; each must parse and carry data in every dataset."""
    found = {}
    for label, config in CANVAS.findall(page):
        chart = json.loads(html.unescape(config))
        datasets = chart["data"]["datasets"]
        assert datasets and all(d["data"] for d in datasets), (label, chart)
        found[html.unescape(label)] = chart
    return found


def flash(page: str) -> str:
    """The message of an error page or a refused form."""
    [message] = re.findall(r'role="alert"[^>]*>(.*?)</(?:p|div)>', page, re.S)
    return html.unescape(message)


def ok(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def said(response: httpx.Response) -> tuple[str, str, str]:
    """A form's redirect: (path, done or failed, message)."""
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    [(key, [message])] = parse_qs(location.query).items()
    return location.path, key, message


def post(world: World, url: str, **form: str) -> httpx.Response:
    return world.client.post(url, data=form, follow_redirects=False)


# -- deployments ---------------------------------------------------------------------------------------------------


def test_the_overview_lists_every_deployment_with_its_versions_and_traffic(world: World) -> None:
    page = ok(world.client.get("/ui"))
    fragment = ok(world.client.get("/ui/fragments/overview"))
    assert "<h1>Deployments</h1>" in page and 'hx-get="/ui/fragments/overview"' in page
    assert "<html" not in fragment and "<h1>" not in fragment  # the fragment is the table alone
    for text in (page, fragment):
        assert 'href="/ui/deployments/api"' in text and "cancer@champion" in text and "cancer@staging" in text
        assert 'href="/ui/deployments/pipe"' in text
    api = fragment.split('href="/ui/deployments/api"')[1].split('href="/ui/deployments/forms"')[0]
    assert 'href="/ui/models/cancer/1">cancer:1</a>' in api and 'href="/ui/models/cancer/2">cancer:2</a>' in api
    assert "<td>champion</td>" in api and "<td>shadow</td>" in api and "READY" in api
    assert api.count(f'<td class="num">{SERVED // 20}</td>') == 2  # both versions saw the 10 requests
    assert 'class="badge green"' in api and "no drift, no quality issue, no alert" in api
    pipe = fragment.split('href="/ui/deployments/pipe"')[1]
    assert 'class="badge grey"' in pipe and "no traffic recorded yet" in pipe  # nothing to judge: grey
    assert "cancer:4</a>" in pipe  # the pipeline's candidate shadows it


def test_the_deployment_page_compares_champion_and_shadow_with_charts(world: World) -> None:
    page = ok(world.client.get("/ui/deployments/api"))
    assert "<h1>Deployment api</h1>" in page and "<strong>cancer@champion</strong>" in page
    assert f"{2 * SERVED} recorded predictions" in page  # the champion's and the shadow's records
    side = page.split("Side by side")[1].split("</table>")[0]
    assert f'<td class="num">{SERVED}</td><td class="num">{LABELLED}</td>' in side
    assert "McNemar exact" in side and "<td>shadow</td>" in side

    charts = charts_in(page)
    assert set(charts) == {
        "Share of each output per version",
        "p50 and p99 latency per version in milliseconds",
        "Each version's labelled metric per time bucket, with its 95% interval",
        "Share of requests where each challenger agrees with the champion",
    }
    outputs = charts["Share of each output per version"]["data"]
    assert outputs["labels"] == ["0", "1"]
    assert [d["label"] for d in outputs["datasets"]] == ["cancer:1 (champion)", "cancer:2 (shadow)"]
    assert all(sum(d["data"]) == pytest.approx(1.0) for d in outputs["datasets"])
    audit = world.services.database.audit
    outputs_by_id = {pid: {r.version: r.output for r in audit.records_for(pid)} for pid in world.ids}
    agreement = sum(o[1] == o[2] for o in outputs_by_id.values()) / SERVED
    [agreeing] = charts["Share of requests where each challenger agrees with the champion"]["data"]["datasets"]
    assert agreeing["data"] == [pytest.approx(agreement)]
    quality = charts["Each version's labelled metric per time bucket, with its 95% interval"]["data"]
    lines = [d for d in quality["datasets"] if d.get("type") != "bar"]
    assert [d["label"] for d in lines] == ["cancer:1 (primary)", "cancer:2 (shadow)"]
    assert all(0 <= v <= 1 for d in lines for v in d["data"] if v is not None)

    history = page.split("<h2>Alias history</h2>")[1]
    assert "first champion" in history and ACTOR in history
    for version in (1, 2, 3, 4):  # every version may be promoted
        assert f'<option value="{version}">cancer:{version} (ready)</option>' in page


def test_the_versions_fragment_offers_to_remove_challengers_only(world: World) -> None:
    fragment = ok(world.client.get("/ui/fragments/deployments/api/versions"))
    assert "<html" not in fragment
    assert ">cancer:1</a></th>\n<td>champion</td>" in fragment and ">cancer:2</a></th>\n<td>shadow</td>" in fragment
    assert fragment.count("<form ") == 1 and "Remove cancer:2" in fragment and "Remove cancer:1" not in fragment


def test_the_drift_page_shows_scores_over_time_and_histograms(world: World) -> None:
    page = ok(world.client.get("/ui/deployments/api/drift"))
    assert "<h1>Drift of api</h1>" in page and "Version cancer:1 against its training reference" in page
    assert f"{SERVED} rows" in page and "No feature drifted." in page
    charts = charts_in(page)
    history = charts["Drift score per feature per window"]["data"]
    assert {d["label"] for d in history["datasets"]} == {*COLUMNS, "drift threshold"}
    assert all(len(d["data"]) == len(history["labels"]) == 1 for d in history["datasets"])
    for column in COLUMNS:
        data = charts[f"Reference and production shares of {column}"]["data"]
        reference, production = data["datasets"]
        assert len(reference["data"]) == len(production["data"]) == len(data["labels"])
        assert sum(production["data"]) == pytest.approx(1.0) and sum(reference["data"]) == pytest.approx(1.0)


def test_the_models_and_version_pages_show_lineage_and_where_versions_serve(world: World) -> None:
    page = ok(world.client.get("/ui/models"))
    assert "<h2" in page and ">cancer</h2>" in page and "<strong>champion</strong> → 1" in page
    for version in (1, 2, 3, 4):
        assert f'href="/ui/models/cancer/{version}">cancer:{version}</a>' in page

    first = ok(world.client.get("/ui/models/cancer/1"))
    assert "<h1>cancer:1</h1>" in first and '<span class="badge green">champion</span>' in first
    assert '<a href="/ui/deployments/api">api</a> (follows champion)' in first
    assert '<a href="/ui/deployments/pipe">pipe</a> (follows pipe)' in first
    assert "first champion" in first and ACTOR in first and "569 rows" in first
    shadow = ok(world.client.get("/ui/models/cancer/2"))
    assert '<a href="/ui/deployments/api">api</a> (shadow)' in shadow
    candidate = ok(world.client.get("/ui/models/cancer/4"))
    assert '<span class="badge green">candidate</span>' in candidate and "rollout of pipe: shadow" in candidate


# -- audit --------------------------------------------------------------------------------------------------------


def test_the_audit_search_finds_recorded_predictions(world: World, cancer: pd.DataFrame) -> None:
    empty = ok(world.client.get("/ui/audit"))
    assert "<h1>Audit</h1>" in empty and "prediction(s)" not in empty  # no search yet

    page = ok(world.client.get("/ui/audit", params={"search": "1", "deployment": "api"}))
    assert "<h2>50 prediction(s), more on the next page</h2>" in page
    assert f'href="/ui/audit/{world.ids[0]}">{world.ids[0]}</a>' in page
    [next_page] = re.findall(r'<a href="([^"]*)">Next page</a>', page)
    second = ok(world.client.get(html.unescape(next_page)))
    assert world.ids[0] not in second and re.search(r"<h2>50 prediction\(s\) after record \d+", second)

    radius = float(cancer["mean radius"].iloc[0])
    query = {"search": "1", "deployment": "api", "version": "1", "field": f"mean radius={radius}"}
    found = ok(world.client.get("/ui/audit", params=query))
    matching = [pid for pid, value in zip(world.ids, cancer["mean radius"], strict=False) if value == radius]
    assert f"<h2>{len(matching)} prediction(s)</h2>" in found
    assert re.findall(r'<a href="/ui/audit/([^"]+)">', found) == matching and world.ids[0] in matching
    none = ok(world.client.get("/ui/audit", params={"search": "1", "deployment": "nope"}))
    assert "<h2>0 prediction(s)</h2>" in none and "No recorded prediction matches." in none

    opened = world.client.get("/ui/audit", params={"prediction_id": f" {world.ids[0]} "}, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == f"/ui/audit/{world.ids[0]}"


def test_the_prediction_page_shows_the_record_and_its_lineage(world: World) -> None:
    pid = world.ids[0]
    record = world.services.database.audit.get(pid)
    page = ok(world.client.get(f"/ui/audit/{pid}"))
    assert f"<h1>Prediction <code>{pid}</code></h1>" in page
    assert f"<dd><strong>{record.output}</strong></dd>" in page and f"<code>{record.hash}</code>" in page
    assert '<a href="/ui/models/cancer/1">cancer:1</a>' in page and "(the registered artifact)" in page
    assert f"set champion – → 1 by {ACTOR} (first champion)" in page
    assert "No explanation stored yet." in page and f'action="/ui/audit/{pid}/explain"' in page
    assert charts_in(page) == {}

    replayed = ok(world.client.post(f"/ui/audit/{pid}/replay"))
    assert '<span class="badge green">Identical</span>' in replayed and "artifact matches" in replayed


def test_the_chain_verifies(world: World) -> None:
    fragment = ok(world.client.get("/ui/fragments/audit/verify"))
    count = world.services.database.audit.count()
    assert count >= 2 * SERVED
    assert '<span class="badge green">Verified</span>' in fragment and f"{count} records" in fragment


def test_explaining_stores_the_explanation_and_draws_its_waterfall(world: World) -> None:
    pid = world.ids[5]
    assert world.services.database.audit.get_explanation(pid) is None
    assert said(post(world, f"/ui/audit/{pid}/explain")) == (
        f"/ui/audit/{pid}",
        "done",
        "explanation computed and stored",
    )
    stored = world.services.database.audit.get_explanation(pid)
    assert stored is not None
    assert said(post(world, f"/ui/audit/{pid}/explain"))[1:] == ("done", "the explanation was already stored")

    page = ok(world.client.get(f"/ui/audit/{pid}?done=explanation+computed+and+stored"))
    assert '<div class="flash ok" role="status">explanation computed and stored</div>' in page
    assert "No explanation stored yet." not in page
    charts = charts_in(page)
    assert set(charts) == {f"Waterfall of feature contributions to {o}" for o in stored.outputs}
    for k, output in enumerate(stored.outputs):
        [bars] = charts[f"Waterfall of feature contributions to {output}"]["data"]["datasets"]
        total = stored.base_values[k] + sum(c[k] for c in stored.contributions.values())
        assert bars["data"][0] == [0.0, pytest.approx(stored.base_values[k])]
        assert bars["data"][-1] == [0.0, pytest.approx(total)] and len(bars["data"]) == len(COLUMNS) + 2


# -- pipelines ------------------------------------------------------------------------------------------------------


def test_the_pipelines_page_lists_schedules_and_runs(world: World) -> None:
    page = ok(world.client.get("/ui/pipelines"))
    assert ">retrain " in page and ">by-hand " in page
    assert "every 21600 s" in page and "by hand" in page and "<code>pipeline_models:good</code>" in page
    assert f'<a href="/ui/runs/{world.run_id}">succeeded</a>' in page  # retrain's last run
    assert f'<a href="/ui/runs/{world.run_id}">{world.run_id[:13]}…</a>' in page
    assert "pass: accuracy" in page and "cancer/4" in page


def test_the_run_page_shows_the_gate_the_rollout_and_the_log(world: World) -> None:
    page = ok(world.client.get(f"/ui/runs/{world.run_id}"))
    assert f"<h1>Run <code>{world.run_id}</code></h1>" in page
    assert '<strong class="green">succeeded</strong>' in page and '<a href="/ui/models/cancer/4">cancer/4</a>' in page
    gate = page.split("Evaluation gate")[1].split("</section>")[0]
    assert '<strong class="green">pass</strong> (passed)' in gate and "<dd>McNemar exact on " in gate
    rollout = page.split("<h2>Rollout</h2>")[1].split("<h2>Log</h2>")[0]
    assert "<td>candidate</td><td>set</td><td>–</td><td>4</td>" in rollout and "rollout of pipe: shadow" in rollout
    assert "gate: pass" in page and "registered cancer/4" in page


def test_run_now_queues_one_run(world: World) -> None:
    store = world.services.pipelines.store
    assert store.list_runs(pipeline="by-hand") == []
    path, key, message = said(post(world, "/ui/pipelines/by-hand/run"))
    [run] = store.list_runs(pipeline="by-hand")
    assert (path, key, message) == ("/ui/pipelines", "done", f"run {run.id} of by-hand queued")
    assert (run.state, run.trigger, run.reason) == ("queued", "manual", f"from the dashboard by {WHO}")
    assert said(post(world, "/ui/pipelines/by-hand/run"))[1:] == ("done", "by-hand already has a run queued")
    assert [r.id for r in store.list_runs(pipeline="by-hand")] == [run.id]
    assert said(post(world, "/ui/pipelines/ghost/run"))[1:] == ("failed", "no pipeline is named 'ghost'")


# -- errors ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/ui/deployments/ghost", "no deployment named 'ghost'"),
        ("/ui/fragments/deployments/ghost/versions", "no deployment named 'ghost'"),
        ("/ui/deployments/ghost/drift", "no deployment named 'ghost'"),
        ("/ui/models/cancer/99", "model 'cancer' has no version 99"),
        ("/ui/models/ghost/1", "no model named 'ghost'"),
        ("/ui/audit/no-such-id", "no recorded prediction has id 'no-such-id'"),
        ("/ui/runs/no-such-run", "no pipeline run has id 'no-such-run'"),
    ],
)
def test_unknown_things_are_a_404_page_saying_what_is_missing(world: World, url: str, message: str) -> None:
    response = world.client.get(url)
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.text and flash(response.text) == message


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"version": "abc"}, "version must be a whole number from 1 up, got 'abc'"),
        ({"since": "notatime"}, "since must be an ISO 8601 time"),
        ({"until": "2024-13-45"}, "until must be an ISO 8601 time"),
        ({"field": "novalue"}, "field filter 'novalue' is not NAME=VALUE"),
    ],
)
def test_a_bad_search_is_a_400_page_naming_the_field(world: World, query: dict[str, str], message: str) -> None:
    before = world.services.database.audit.count()
    response = world.client.get("/ui/audit", params={"search": "1", "deployment": "api", **query})
    assert response.status_code == 400 and "<h1>Cannot show this page</h1>" in response.text
    assert flash(response.text).startswith(message)
    assert world.services.database.audit.count() == before


def test_a_window_the_server_does_not_keep_is_a_400_page(world: World) -> None:
    response = world.client.get("/ui/deployments/api/drift?window=60")
    assert response.status_code == 400 and flash(response.text) == "window must be one of [3600] seconds, got 60"


# -- forms: promote, roll back, remove (only ever on ``forms``) ------------------------------------------------------


def staging(world: World) -> int:
    return world.services.registry.get_model("cancer").aliases["staging"]


def test_promote_needs_confirmation_and_a_reason_then_moves_the_alias(world: World) -> None:
    registry = world.services.registry
    current = staging(world)
    target = 2 if current != 2 else 1
    moves = len(registry.alias_history("cancer", "staging"))
    url = "/ui/deployments/forms/promote"
    refused = [
        (post(world, url, version=str(target), reason="a good reason"), "tick the confirmation box to promote"),
        (post(world, url, version=str(target), reason=" x ", confirm="yes"), "give a reason for the promotion"),
        (post(world, url, version="99", reason="a good reason", confirm="yes"), "model 'cancer' has no version 99"),
    ]
    for response, message in refused:
        path, key, text = said(response)
        assert (path, key) == ("/ui/deployments/forms", "failed") and text.startswith(message)
    assert staging(world) == current and len(registry.alias_history("cancer", "staging")) == moves

    reason = "better accuracy on   the shadow traffic"
    done = post(world, url, version=str(target), reason=reason, confirm="yes")
    assert said(done) == ("/ui/deployments/forms", "done", f"cancer:{target} is now staging of forms")
    assert staging(world) == target
    assert registry.get_model("cancer").aliases["champion"] == 1  # the other deployments' alias did not move
    last = registry.alias_history("cancer", "staging")[-1]
    assert (last.to_version, last.from_version, last.actor) == (target, current, WHO)
    assert last.reason == "better accuracy on the shadow traffic"  # whitespace folded

    page = ok(world.client.get(done.headers["location"]))
    assert f"cancer:{target} is now staging of forms" in page and "better accuracy on the shadow traffic" in page


def test_rollback_needs_confirmation_and_a_reason_then_moves_the_alias_back(world: World) -> None:
    registry = world.services.registry
    before = staging(world)
    registry.set_alias("cancer", "staging", 3 if before != 3 else 1, reason="set up for the rollback")
    moved = staging(world)
    url = "/ui/deployments/forms/rollback"
    for form, message in (
        ({"reason": "regressed"}, "tick the confirmation box to roll back"),
        ({"reason": "no", "confirm": "yes"}, "give a reason for the rollback"),
    ):
        path, key, text = said(post(world, url, **form))
        assert (path, key) == ("/ui/deployments/forms", "failed") and text.startswith(message)
    assert staging(world) == moved

    response = post(world, url, reason="the new version regressed", confirm="yes")
    assert said(response) == ("/ui/deployments/forms", "done", f"rolled back: staging of forms is now version {before}")
    assert staging(world) == before
    last = world.services.registry.alias_history("cancer", "staging")[-1]
    assert (last.action, last.to_version, last.actor, last.reason) == (
        "rollback",
        before,
        WHO,
        "the new version regressed",
    )


def test_removing_a_shadow_needs_confirmation_and_records_an_event(world: World) -> None:
    services = world.services
    services.deployments.set_members("forms", [Member("cancer", 3, "shadow")])
    url = "/ui/deployments/forms/remove"
    unconfirmed = said(post(world, url, model="cancer", version="3", reason="too slow"))
    assert unconfirmed[1:] == ("failed", "tick the confirmation box to remove a version")
    assert [m.key for m in services.deployments.get("forms").members] == [("cancer", 3)]

    removed = said(post(world, url, model="cancer", version="3", reason="too slow on p99", confirm="yes"))
    assert removed == ("/ui/deployments/forms", "done", "cancer:3 removed from forms")
    assert services.deployments.get("forms").members == ()
    [event] = [a for a in services.alerts.list_alerts(deployment="forms") if a.rule == "removed:cancer:3"]
    assert event.severity == "info" and "too slow on p99" in event.message and WHO in event.message
    assert services.deployments.get("api").members == (Member("cancer", 2, "shadow"),)  # untouched

    again = said(post(world, url, model="cancer", version="3", reason="too slow on p99", confirm="yes"))
    assert again[1:] == ("failed", "deployment 'forms' has no member cancer/3")
    assert len([a for a in services.alerts.list_alerts(deployment="forms") if a.rule == "removed:cancer:3"]) == 1


def test_a_version_that_is_not_a_number_is_a_400_page(world: World) -> None:
    response = world.client.get("/ui/models/cancer/abc")
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")
    assert flash(response.text) == "version must be a whole number from 1 up, got 'abc'"


@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
def test_a_form_posted_from_another_site_is_refused_and_changes_nothing(world: World, origin: str) -> None:
    before = world.services.registry.get_model("cancer").aliases
    response = world.client.post(
        "/ui/deployments/forms/rollback",
        data={"reason": "forged by another site", "confirm": "yes"},
        headers={"Origin": origin},
        follow_redirects=False,
    )
    assert response.status_code == 403 and origin in response.json()["error"]
    assert world.services.registry.get_model("cancer").aliases == before


def test_a_form_from_this_server_passes_the_origin_check(world: World) -> None:
    response = world.client.post(
        "/ui/pipelines/ghost/run", headers={"Origin": str(world.client.base_url).rstrip("/")}, follow_redirects=False
    )
    assert response.status_code == 303 and "failed=" in response.headers["location"]  # judged, not refused
