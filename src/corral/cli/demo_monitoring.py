"""The monitoring half of ``corral demo``: a credit model meets a world that changes.

A car-loan default model is trained on NannyML's reference period (real, time-ordered data read
from the pinned wheel, see :mod:`corral.datasets`), registered and deployed. Production traffic
then goes through the real HTTP API in this process (audit log, monitoring windows, feedback):
first applications like the training period, then applications from after the market shifted.
Labels arrive as feedback. After each phase the demo reads the monitoring snapshot (drift per
feature, data quality, realized and estimated accuracy) and evaluates the deployment's alert
rules; the alert it raises is delivered to the log and to a webhook receiver started here. A logistic
regression challenger shadows the champion the whole time, and the two are compared on the same labelled
requests at the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd

from corral.alerts.channels import WebhookChannel
from corral.app import Services, deployment_comparison, deployment_readings, set_members
from corral.cli.output import console, table
from corral.serving.entities import SHADOW, Member

MODEL = "car-loan"
ROWS = 2000  # per phase: enough for the 3-point accuracy drop to stand out of its noise
BATCH = 100


def monitoring_demo(svc: Services, *, rows: int = ROWS) -> None:
    """Train, deploy, send traffic before and after the drift, and show what monitoring finds."""
    from corral.datasets import load_car_loan

    data = load_car_loan()
    console.print(
        f"\n[bold]Monitoring[/] · {MODEL}: NannyML's car-loan applications ({_wheel(data)}), "
        f"training period {data.reference[data.timestamp].min():%Y-%m-%d} to "
        f"{data.reference[data.timestamp].max():%Y-%m-%d}"
    )
    _register(svc, data)
    with _receiver() as received:
        svc.alerts.channels["demo-webhook"] = WebhookChannel("demo-webhook", received["url"], timeout=5)
        asyncio.run(_traffic(svc, data, rows))
        _compare(svc)
        deliveries = svc.alerts.dispatch()
        for d in deliveries:
            console.print(f"  notification {d.state} → {d.channel}: {d.status} after {d.attempts} attempt(s)")
        console.print(f"  the webhook receiver got {len(received['bodies'])} notification(s)")
        for body in received["bodies"]:
            console.print(f"    {body['state']} {body['severity']}: {body['message']}")
    _retrain(svc, data, rows)


def _retrain(svc: Services, data: Any, rows: int) -> None:
    """The drift alert triggers a retraining pipeline; its candidate passes the gate and is rolled out in
    stages to champion on fresh traffic; a slow candidate passes the gate, shadows, and is taken off by the
    guard and rolled back; a careless candidate is caught at the gate."""
    from corral.app import build_worker
    from corral.pipelines.entities import Pipeline

    console.print("\n[bold]Retraining[/] · the drift alert triggers the car-loan pipeline")
    folder = svc.settings.home / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    reference = folder / "car-loan-reference.parquet"
    data.reference[[*data.features, data.target]].to_parquet(reference)
    svc.pipelines.create(
        Pipeline(
            name="car-loan-retrain",
            train="corral.cli.demo_training:car_loan",
            data=({"kind": "file", "path": str(reference)}, {"kind": "production", "window_seconds": 86400}),
            target=data.target,
            deployment=MODEL,
            on_alerts=("drift",),
            shadow_requests=300,
            canary_steps=(25.0, 50.0),
            step_requests=150,
        )
    )
    for alert in svc.alerts.list_alerts(deployment=MODEL, state="firing"):
        svc.pipelines.on_alert(MODEL, alert.rule, alert.metric)  # what every server's alert loop does
    for quiet in ("corral.pipelines", "corral.serving", "corral.alerts"):  # the demo prints what they did itself
        logging.getLogger(quiet).setLevel(logging.ERROR)
    worker = build_worker(svc, name="demo-worker")
    done = worker.run_once()
    if done is None:
        console.print("  no run was queued (is a run of it already going?)")
        return
    console.print(f"  run {done.id} ({done.trigger}): {done.state}: {done.reason}", markup=False)
    gate = done.result.get("gate") or {}
    if gate:
        console.print(f"  gate: {gate.get('reason')}", markup=False)
    if done.state != "succeeded":
        return
    fresh = data.after_drift.iloc[rows:]
    offset = _until_decided(svc, data, fresh, 0, done.result)
    champion = svc.registry.resolve(f"{MODEL}@champion")
    console.print(f"  {MODEL}@champion is now version {champion.version}")
    console.print("\n[bold]A slow candidate[/] · as accurate as the champion, but every call pauses")
    # the guard judges a challenger after 50 requests, and a p99 over twice the champion's is too slow (the
    # default 5x lets a busy machine's slow champion hide the pause)
    guard = replace(svc.deployments.get(MODEL).guard, min_requests=50, max_latency_ratio=2.0)
    svc.deployments.set_guard(MODEL, guard)
    svc.pipelines.create(
        Pipeline(
            name="car-loan-hotfix",
            train="corral.cli.demo_training:hesitant",
            data=({"kind": "file", "path": str(reference)}, {"kind": "production", "window_seconds": 86400}),
            target=data.target,
            deployment=MODEL,
            margin=0.01,  # a point of accuracy below the champion's is within the margin
            shadow_requests=300,
        )
    )
    svc.pipelines.run("car-loan-hotfix", reason="a change that slows every call, to show the guard")
    slow = worker.run_once()
    if slow is not None:
        console.print(f"  run {slow.id} of car-loan-hotfix: {slow.state}: {slow.reason}", markup=False)
        if slow.state == "succeeded":
            _until_decided(svc, data, fresh, offset, slow.result)
    console.print(f"  {MODEL}@champion is still version {svc.registry.resolve(f'{MODEL}@champion').version}")
    svc.pipelines.create(
        Pipeline(
            name="car-loan-careless",
            train="corral.cli.demo_training:careless",
            data=({"kind": "file", "path": str(reference)},),
            target=data.target,
            deployment=MODEL,
        )
    )
    svc.pipelines.run("car-loan-careless", reason="a careless change, to show the gate")
    bad = worker.run_once()
    if bad is not None:
        console.print(f"  run {bad.id} of car-loan-careless: {bad.state}: {bad.reason}", markup=False)


def _until_decided(svc: Services, data: Any, fresh: pd.DataFrame, offset: int, result: Mapping[str, Any]) -> int:
    """Stream labelled production traffic in chunks, advancing the rollout after each, until the run's
    candidate is no longer on the traffic (promoted, or rolled back); returns where the stream stopped."""
    from corral.retraining import advance_rollouts

    candidate = int(str(result.get("candidate", "/0")).rsplit("/", 1)[1])
    for _ in range(8):
        chunk = fresh.iloc[offset : offset + 600]
        offset += 600
        if chunk.empty:
            break
        asyncio.run(_labelled_traffic(svc, data, chunk))
        for action in advance_rollouts(svc):
            console.print(f"  rollout: {action}", markup=False)
        if all(m.version != candidate for m in svc.deployments.get(MODEL).members):
            break  # promoted, or rolled back (by the comparison, or after a guard took it off)
    return offset


async def _labelled_traffic(svc: Services, data: Any, frame: pd.DataFrame) -> None:
    import httpx

    from corral import auth_headers
    from corral.api.app import create_app

    svc.settings.pipelines.worker = False  # the demo drives its worker itself
    app = create_app(svc)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost", headers=auth_headers(svc.settings)
        ) as client:
            records = frame[data.features].to_dict(orient="records")
            ids: list[str] = []
            for i in range(0, len(records), 10):
                body = {"instances": records[i : i + 10], "routing_key": f"batch-{len(ids)}-{i}"}
                response = await client.post(f"/v1/deployments/{MODEL}/predict", json=body)
                response.raise_for_status()
                ids.extend(response.json()["prediction_ids"])
            await app.state.server.drain_shadows(MODEL)
            await app.state.server.guard()  # what the server's refresh loop does every second
            await _feedback(client, ids, frame[data.target])


def _wheel(data: Any) -> str:
    return data.wheel.name if data.wheel is not None else "nannyml wheel"


def _register(svc: Services, data: Any) -> None:
    from sklearn.base import clone
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = [*data.features, data.target]
    train, valid = data.reference.iloc[:40_000], data.reference.iloc[40_000:]
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), data.categorical), remainder=StandardScaler()
    )
    candidates: dict[str, tuple[Any, dict[str, Any]]] = {
        "HistGradientBoostingClassifier": (
            make_pipeline(encode, HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=7)),
            {"max_iter": 100},
        ),
        "LogisticRegression": (make_pipeline(clone(encode), LogisticRegression(max_iter=1000)), {"C": 1.0}),
    }
    versions = []
    for algorithm, (model, params) in candidates.items():
        model.fit(train[data.features], train[data.target])
        metrics = {
            "accuracy": float(accuracy_score(valid[data.target], model.predict(valid[data.features]))),
            "roc_auc": float(roc_auc_score(valid[data.target], model.predict_proba(valid[data.features])[:, 1])),
        }
        version = svc.registry.log_model(
            model,
            name=MODEL,
            training_data=train[columns],
            target=data.target,
            params={"algorithm": algorithm, **params},
            metrics=metrics,
            source=f"{_wheel(data)}:synthetic_car_loan_reference.csv rows 0-39999",
            description=f"car-loan repayment ({algorithm}) on NannyML's synthetic reference period",
            tags={"demo": "true"},
        )
        versions.append(version)
        console.print(
            f"  registered {version.ref} ({algorithm}): held-out accuracy {metrics['accuracy']:.3f}, "
            f"ROC AUC {metrics['roc_auc']:.3f}"
        )
    champion, challenger = versions
    svc.registry.promote(MODEL, champion.version, reason="demo: trained on the reference period")
    if MODEL not in {d.name for d in svc.deployments.list()}:
        svc.deployments.create(MODEL, model=MODEL, description="demo: car-loan default model")
    set_members(svc, MODEL, [Member(MODEL, challenger.version, SHADOW)])
    console.print(f"  deployed {champion.ref} as champion, {challenger.ref} as its shadow (scores every request)")


async def _traffic(svc: Services, data: Any, rows: int) -> None:
    import httpx

    from corral import auth_headers
    from corral.api.app import create_app

    svc.settings.pipelines.worker = False  # the demo drives its worker itself
    app = create_app(svc)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost", headers=auth_headers(svc.settings)
        ) as client:
            phases = (
                ("applications like the training period", data.before_drift.tail(rows)),
                ("applications after the market shifted", data.after_drift.head(rows)),
            )
            for title, frame in phases:
                start, end = frame[data.timestamp].min(), frame[data.timestamp].max()
                console.print(f"\n  [bold]{title}[/] ({len(frame)} rows, {start:%Y-%m-%d} to {end:%Y-%m-%d})")
                ids = await _predict(client, frame[data.features])
                await app.state.server.drain_shadows(MODEL)  # the shadow has scored every request
                await _sync(app)
                estimated = await _accuracy(client, "estimated")
                await _feedback(client, ids, frame[data.target])
                realized = await _accuracy(client, "realized")
                console.print(f"  accuracy before labels (CBPE estimate) {estimated}; once labelled {realized}")
                await _report(client, svc)


async def _predict(client: Any, frame: pd.DataFrame) -> list[str]:
    ids: list[str] = []
    records = frame.to_dict(orient="records")
    for i in range(0, len(records), BATCH):
        response = await client.post(f"/v1/deployments/{MODEL}/predict", json={"instances": records[i : i + BATCH]})
        response.raise_for_status()
        ids.extend(response.json()["prediction_ids"])
    return ids


async def _feedback(client: Any, ids: list[str], labels: pd.Series) -> None:
    items = [{"prediction_id": i, "label": int(y)} for i, y in zip(ids, labels, strict=True)]
    response = await client.post("/v1/feedback", json=items)
    response.raise_for_status()


async def _sync(app: Any) -> None:
    """Aggregate and flush this process's windows now (a server does it every few seconds)."""
    app.state.monitoring.process()
    await asyncio.to_thread(app.state.monitoring.flush)


async def _accuracy(client: Any, kind: str) -> str:
    snapshot = (await client.get(f"/v1/deployments/{MODEL}/monitoring")).json()
    metric = ((snapshot.get("performance") or {}).get(kind) or {}).get("accuracy")
    if not metric or metric.get("value") is None:
        return "-"
    low, high = metric.get("lower"), metric.get("upper")
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{metric['value']:.3f}{interval}"


async def _report(client: Any, svc: Services) -> None:
    snapshot = (await client.get(f"/v1/deployments/{MODEL}/monitoring")).json()
    rows = [
        (f["name"], f["drift"]["detector"], f"{f['drift']['statistic']:.3f}", "yes" if f["drift"]["drifted"] else "no")
        for f in snapshot["features"]
        if f["drift"]
    ]
    title = f"{MODEL}: this hour's window, {snapshot['window']['rows']} rows"
    table(title, ["feature", "test", "stat", "drifted"], rows)
    changes = await asyncio.to_thread(svc.alerts.evaluate, MODEL, deployment_readings(svc, MODEL, 3600), window=3600)
    for change in changes:
        console.print(f"  alert rule [bold]{change.rule}[/]: {change.action} (value {change.value:.3g})")
    firing = svc.alerts.list_alerts(deployment=MODEL, state="firing")
    console.print(f"  firing alerts: {', '.join(a.rule for a in firing) or 'none'}")


def _compare(svc: Services) -> None:
    """The champion and its shadow on the same 4,000 labelled requests."""
    result = deployment_comparison(svc, MODEL, window=3600, bootstrap=500)
    versions = result.get("versions", [])
    rows = []
    for v in versions:
        metrics = (v.get("quality") or {}).get("metrics") or {}
        accuracy = (metrics.get("accuracy") or {}).get("value")
        agreement = (v.get("agreement") or {}).get("agreement")
        comparison = v.get("comparison") or {}
        tests = {t["metric"]: t for t in comparison.get("tests", [])}
        mcnemar = tests.get("accuracy", {})
        rows.append(
            (
                f"{v['model']}/{v['version']}",
                "champion" if v.get("champion") else v["role"],
                v["rows"],
                f"{accuracy:.3f}" if accuracy is not None else "-",
                f"{agreement:.1%}" if agreement is not None else "-",
                f"p={mcnemar['p_value']:.3g}" if mcnemar.get("p_value") is not None else "-",
                comparison.get("verdict") or "-",
            )
        )
    table(
        f"\n{MODEL}: champion and shadow on the same requests",
        ["version", "role", "rows", "accuracy", "agreement", "McNemar", "verdict"],
        rows,
    )


@contextmanager
def _receiver() -> Iterator[dict[str, Any]]:
    """A local HTTP endpoint standing in for an on-call team's webhook."""
    received: dict[str, Any] = {"bodies": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received["bodies"].append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received["url"] = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
