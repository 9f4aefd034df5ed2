"""``corral monitor NAME``: a deployment's latest production window against its training data.

The JSON (``--json``) is the monitoring snapshot, the same as ``GET /v1/deployments/{name}/monitoring``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from corral.app import monitoring_snapshot
from corral.cli.context import services
from corral.cli.output import console, emit_json, table
from corral.errors import ConfigurationError


def monitor(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    window: Annotated[int, typer.Option(help="Window length in seconds (one of CORRAL_MONITORING__WINDOWS).")] = 3600,
    reference: Annotated[
        str, typer.Option(help="'training' (the version's profile) or the start (epoch seconds) of a stored window.")
    ] = "training",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """Drift, data quality, performance and firing alerts of the version a deployment serves now."""
    svc = services()
    lengths = svc.settings.monitoring.windows
    if window not in lengths:
        raise ConfigurationError(f"--window must be one of {lengths} seconds, got {window}")
    snapshot = monitoring_snapshot(svc, name, window=window, reference=reference)
    if as_json:
        emit_json(snapshot)
        return
    ref = f"{snapshot['model']}/{snapshot['version']}"
    if snapshot["window"] is None:
        console.print(f"{name} ({ref}): {snapshot['reason']} in a {window} s window", markup=False)
        _alerts(snapshot["alerts"])
        return
    _features(name, ref, snapshot)
    _quality(snapshot["quality_issues"])
    _performance(snapshot.get("performance"))
    _alerts(snapshot["alerts"])


def _features(name: str, ref: str, snapshot: dict[str, Any]) -> None:
    info = snapshot["window"]
    rows = []
    for feature in [*snapshot["features"], *snapshot["outputs"]]:
        drift, quality = feature["drift"], feature["quality"]
        checks = list(dict.fromkeys(issue["check"] for issue in feature.get("issues", [])))
        rows.append(
            (
                escape(feature["name"]),
                feature["kind"],
                drift["detector"] if drift else "-",
                f"{drift['statistic']:.4g}" if drift and drift["statistic"] is not None else "-",
                ("yes" if drift["drifted"] else "no") if drift else escape(feature.get("reason", "-")),
                f"{quality['missing_rate']:.1%}",
                f"{quality.get('out_of_range_rate', quality.get('unseen_rate', 0.0)):.1%}",
                ", ".join(checks) or "-",
            )
        )
    table(
        escape(f"{name} → {ref}: {info['rows']} rows since {info['start_time']}"),
        ["feature", "kind", "detector", "statistic", "drifted", "missing", "out of range / unseen", "issues"],
        rows,
    )
    drifted = snapshot["drifted_features"]
    console.print(
        f"{len(drifted)} of {len(snapshot['features'])} features drifted"
        + (f": {', '.join(drifted)}" if drifted else ""),
        markup=False,
    )


def _quality(issues: list[dict[str, Any]]) -> None:
    if not issues:
        console.print("No data-quality issues.")
        return
    ordered = sorted(issues, key=lambda i: i["severity"] != "critical")  # stable: keeps the snapshot's order
    table(
        f"Data-quality issues ({len(issues)})",
        ["severity", "feature", "check", "message"],
        [(i["severity"], escape(i["feature"]), i["check"], escape(i["message"])) for i in ordered],
    )


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


def _realized(metric: dict[str, Any] | None) -> str:
    if metric is None:
        return "-"
    if metric.get("value") is None:
        return f"- ({metric['reason']})" if metric.get("reason") else "-"
    text = _number(metric["value"])
    if metric.get("lower") is not None and metric.get("upper") is not None:
        text += f" [{_number(metric['lower'])}, {_number(metric['upper'])}]"
    return text


def _performance(performance: dict[str, Any] | None) -> None:
    if not performance or not performance.get("rows"):
        return
    realized, estimated = performance.get("realized", {}), performance.get("estimated", {})
    registered, compared = performance.get("registered", {}), performance.get("compared_to_registered", {})
    names = list(dict.fromkeys([*realized, *estimated]))
    rows = []
    for metric in names:
        change = compared.get(metric, {}).get("change")
        rows.append(
            (
                metric,
                escape(_realized(realized.get(metric))),
                _number((estimated.get(metric) or {}).get("value")),
                _number(registered.get(metric)),
                f"{change:+.4g}" if isinstance(change, int | float) else "-",
            )
        )
    title = f"Performance: {performance['labelled']} labelled of {performance['rows']} rows"
    if rows:
        table(title, ["metric", "realized", "estimated (CBPE)", "registered", "change"], rows)
    else:
        console.print(title, markup=False)


def _alerts(alerts: list[dict[str, Any]]) -> None:
    if not alerts:
        return
    table(
        f"Firing alerts ({len(alerts)})",
        ["severity", "rule", "message", "since"],
        [
            (a["severity"], escape(a["rule"]), escape(a["message"]), datetime.fromisoformat(a["opened_at"]))
            for a in alerts
        ],
    )
