"""What each page shows, as plain data: one function a page, reading the services the API reads.

Nothing here renders HTML or knows about HTTP; :mod:`corral.dashboard.pages` turns these dicts into pages.
Health colours follow one rule everywhere: ``red`` when the served version's outputs drifted, a critical
data-quality issue or a critical alert is open; ``amber`` when any feature drifted, any quality issue or any
alert is open; ``green`` otherwise; ``grey`` when there is no traffic or no reference to judge against.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from corral.app import Services, deployment_comparison, monitoring_snapshot
from corral.errors import CorralError, NotFoundError
from corral.serving.server import ModelServer

RUNS_SHOWN = 20


class Cache:
    """Results kept for ``seconds``: the overview refreshes every few seconds, drift judgements need not."""

    def __init__(self, seconds: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._kept: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        now = self.clock()
        kept = self._kept.get(key)
        if kept is not None and now - kept[0] < self.seconds:
            return kept[1]
        value = compute()
        self._kept[key] = (now, value)
        return value


def health(snapshot: dict[str, Any] | None, alerts: list[dict[str, Any]]) -> tuple[str, str]:
    """(colour, why) for a deployment, from its monitoring snapshot and its firing alerts."""
    if any(a.get("severity") == "critical" for a in alerts):
        return "red", f"{len(alerts)} alert(s) firing"
    if snapshot is None or snapshot.get("window") is None:
        why = (snapshot or {}).get("reason") or "no monitoring data"
        return ("amber", f"{len(alerts)} alert(s) firing") if alerts else ("grey", why)
    issues = snapshot.get("quality_issues") or []
    drifted = snapshot.get("drifted_features") or []
    if snapshot.get("prediction_drift") or any(i.get("severity") == "critical" for i in issues):
        return "red", "outputs drifted" if snapshot.get("prediction_drift") else "critical data-quality issue"
    if drifted or issues or alerts:
        parts = [f"{len(drifted)} feature(s) drifted"] if drifted else []
        parts += [f"{len(issues)} quality issue(s)"] if issues else []
        parts += [f"{len(alerts)} alert(s) firing"] if alerts else []
        return "amber", ", ".join(parts)
    return "green", "no drift, no quality issue, no alert"


def overview(services: Services, server: ModelServer, cache: Cache) -> dict[str, Any]:
    """Every deployment: champion and challengers with this server's traffic, latency and errors, open
    alerts, and drift health."""
    window = min(services.settings.monitoring.windows)
    statuses = {s.name: s for s in server.status()}
    firing = [a.to_dict() for a in services.alerts.list_alerts(state="firing", limit=500)]
    rows = []
    for deployment in services.deployments.list():
        status = statuses.get(deployment.name)
        alerts = [a for a in firing if a["deployment"] == deployment.name]
        snapshot = cache.get(
            ("snapshot", deployment.name, window), partial(_snapshot, services, deployment.name, window)
        )
        colour, why = health(snapshot, alerts)
        rows.append(
            {
                "name": deployment.name,
                "model": deployment.model,
                "alias": deployment.alias,
                "enabled": deployment.enabled,
                "state": status.state if status else "UNAVAILABLE",
                "reason": status.reason if status else "not loaded by this server",
                "versions": versions(services, server, deployment.name),
                "alerts": alerts,
                "health": colour,
                "health_reason": why,
                "drifted": (snapshot or {}).get("drifted_features") or [],
            }
        )
    return {"deployments": rows, "alerts": firing, "window_seconds": window}


def versions(services: Services, server: ModelServer, name: str) -> list[dict[str, Any]]:
    """The champion (first) and every member of deployment ``name``, with what this server saw of each."""
    deployment = services.deployments.get(name)
    try:
        champion = server.deployment_status(name).version
    except NotFoundError:
        champion = None
    if champion is None:
        try:
            champion = services.registry.resolve(deployment.target).version
        except CorralError:
            champion = None
    stats = server.member_stats(name)
    listed: list[dict[str, Any]] = [
        {"model": deployment.model, "version": champion, "role": "champion", "percent": None}
    ]
    listed += [
        {"model": m.model, "version": m.version, "role": m.role, "percent": m.percent} for m in deployment.members
    ]
    for entry in listed:
        seen = stats.get((entry["model"], entry["version"]))
        entry["stats"] = seen.to_dict() if seen is not None else None
    return listed


def _snapshot(services: Services, name: str, window: int) -> dict[str, Any] | None:
    try:
        return monitoring_snapshot(services, name, window=window)
    except CorralError as exc:
        return {"window": None, "reason": str(exc)}


def deployment_page(services: Services, server: ModelServer, name: str, *, window: int) -> dict[str, Any]:
    """Champion and challengers side by side over the last ``window`` seconds, quality over time, the
    deployment's alias history and the versions a user may promote."""
    from corral.monitoring.timeline import quality_timeline

    deployment = services.deployments.get(name)
    errors = {key: (s.requests, s.errors) for key, s in server.member_stats(name).items()}
    comparison = deployment_comparison(services, name, window=window, errors=errors, bootstrap=200)
    until = datetime.now(UTC)
    since = until - timedelta(seconds=window)
    outcomes = services.database.feedback.outcomes(name, since=since, until=until, role=None)
    outputs = services.registry.resolve(deployment.target).signature.outputs
    timeline = None
    if outcomes:  # buckets over the span that has traffic, not the empty start of a long window
        first = min(o.timestamp for o in outcomes)
        last = max(o.timestamp for o in outcomes) + timedelta(microseconds=1)
        task, classes = str(outputs.task), outputs.classes
        timeline = quality_timeline(outcomes, task=task, classes=classes, since=first, until=last)
    history = [e.to_dict() for e in reversed(services.registry.alias_history(deployment.model, deployment.alias))]
    candidates = [
        {"version": v.version, "status": str(v.status), "created_at": v.created_at.isoformat()}
        for v in services.registry.list_versions(deployment.model, include_archived=False)
    ]
    return {
        "name": name,
        "deployment": deployment.to_dict(),
        "versions": versions(services, server, name),
        "comparison": comparison,
        "timeline": timeline,
        "history": history[:30],
        "candidates": list(reversed(candidates)),
        "alerts": [a.to_dict() for a in services.alerts.list_alerts(deployment=name, limit=20)],
        "window_seconds": window,
    }


def drift_page(services: Services, name: str, *, window: int, start: str | None) -> dict[str, Any]:
    """Drift per feature over time and, for one window (the latest, or the one starting at ``start``), the
    reference and production histograms, the features sorted by drift and the data-quality issues."""
    from corral.app import drift_histograms, drift_history
    from corral.audit_log import parse_time

    snapshot = monitoring_snapshot(services, name, window=window)
    history = drift_history(services, name, window=window)
    histograms = drift_histograms(services, name, window=window, start=parse_time(start, "start"))
    return {
        "deployment": name,
        "window_seconds": window,
        "windows": services.settings.monitoring.windows,
        "snapshot": snapshot,
        "history": history,
        "histograms": histograms,
        "start": start,
    }


def version_page(services: Services, name: str, version: int) -> dict[str, Any]:
    """A version's lineage, every alias move that involved it, and where it serves now."""
    record = services.registry.get_version(name, version)
    model = services.registry.get_model(name)
    moves = [
        e.to_dict()
        for e in reversed(services.registry.alias_history(name))
        if version in (e.to_version, e.from_version)
    ]
    aliases = aliases_of(model.aliases, version)
    serving = []
    for deployment in services.deployments.list():
        if deployment.model != name:
            continue
        if deployment.alias in aliases:
            serving.append({"deployment": deployment.name, "role": f"follows {deployment.alias}"})
        role = next((m.role for m in deployment.members if m.key == (name, version)), None)
        if role is not None:
            serving.append({"deployment": deployment.name, "role": role})
    return {
        "version": record.to_dict(),
        "aliases": aliases,
        "moves": moves,
        "serving": serving,
        "others": [v.version for v in services.registry.list_versions(name)],
    }


def aliases_of(aliases: dict[str, int], version: int) -> list[str]:
    return sorted(alias for alias, number in aliases.items() if number == version)


def models_page(services: Services) -> dict[str, Any]:
    """Every registered model with its versions and aliases."""
    models = []
    for model in services.registry.list_models():
        models.append(
            {
                **model.to_dict(),
                "versions": [v.to_dict() for v in reversed(services.registry.list_versions(model.name))],
            }
        )
    return {"models": models}


def pipelines_page(services: Services) -> dict[str, Any]:
    """Every pipeline with its schedule and next run, and the latest runs of all of them."""
    from corral.retraining import describe_pipeline

    store = services.pipelines.store
    pipelines = [describe_pipeline(services, p, runs=0) for p in store.list_pipelines()]
    return {"pipelines": pipelines, "runs": [r.to_dict() for r in store.list_runs(limit=RUNS_SHOWN)]}


def run_page(services: Services, run_id: str) -> dict[str, Any]:
    """One run: its state, the gate's verdict with the numbers, the rollout it started, its log."""
    from corral.retraining import rollout_of

    run = services.pipelines.store.get_run(run_id)
    return {"run": run.to_dict(), "rollout": rollout_of(services, run), "log": run.log}
