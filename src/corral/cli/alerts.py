"""``corral alerts ...``: firing and past alerts, acknowledgement, each deployment's rules, and evaluation on demand."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from corral.alerts.entities import FIRING, METRICS, RESOLVED, SEVERITIES, Alert, Rule
from corral.app import Services, deployment_readings
from corral.cli.context import services
from corral.cli.output import console, emit_json, errors, fields, table
from corral.core.readings import Reading
from corral.errors import AlertError, ConfigurationError, CorralError
from corral.registry.environment import current_user

app = typer.Typer(
    help="Alerts: what fired and when, who saw it, and the rules each deployment is judged by.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


# -- alerts --------------------------------------------------------------------------------------


@app.command("list")
def list_alerts(
    deployment: Annotated[str | None, typer.Option("--deployment", "-d", help="Only this deployment's.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="firing or resolved.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Most alerts to show.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Alerts, newest first."""
    if state is not None and state not in (FIRING, RESOLVED):
        raise AlertError(f"--state must be {FIRING} or {RESOLVED}, got {state!r}")
    found = services().alerts.list_alerts(deployment=deployment, state=state, limit=limit)
    if as_json:
        emit_json([a.to_dict() for a in found])
        return
    if not found:
        console.print("No alerts.")
        return
    table(
        "Alerts",
        ["id", "deployment", "rule", "severity", "state", "value", "threshold", "opened", "acked by"],
        [
            (
                a.id,
                escape(a.deployment),
                escape(a.rule),
                a.severity,
                a.state,
                a.value,
                a.threshold,
                a.opened_at,
                escape(a.acked_by) if a.acked_by else None,
            )
            for a in found
        ],
    )


@app.command()
def show(alert_id: Annotated[str, typer.Argument(help="Alert id.")], as_json: JsonOpt = False) -> None:
    """One alert with its notification history."""
    store = services().alerts.store
    alert = store.get_alert(alert_id)
    deliveries = store.list_deliveries(alert_id=alert_id)
    if as_json:
        emit_json({**alert.to_dict(), "deliveries": [d.to_dict() for d in deliveries]})
        return
    fields(f"Alert {alert.id}", [(k, escape(v) if isinstance(v, str) else v) for k, v in _alert_fields(alert)])
    if not deliveries:
        console.print("No notifications.")
        return
    table(
        "Notifications",
        ["channel", "state", "status", "attempts", "last error", "delivered at"],
        [
            (
                escape(d.channel),
                d.state,
                d.status,
                d.attempts,
                escape(d.last_error) if d.last_error else None,
                d.delivered_at,
            )
            for d in deliveries
        ],
    )


def _alert_fields(alert: Alert) -> list[tuple[str, Any]]:
    return [
        ("deployment", alert.deployment),
        ("rule", alert.rule),
        ("metric", alert.metric),
        ("severity", alert.severity),
        ("state", alert.state),
        ("value", alert.value),
        ("threshold", alert.threshold),
        ("message", alert.message),
        ("window start", alert.window_start),
        ("opened", alert.opened_at),
        ("updated", alert.updated_at),
        ("resolved", alert.resolved_at),
        ("acked by", alert.acked_by),
        ("acked at", alert.acked_at),
    ]


@app.command()
def ack(
    alert_id: Annotated[str, typer.Argument(help="Alert id.")],
    by: Annotated[str | None, typer.Option("--by", help="Who saw it (default: CORRAL_USER or the login name).")] = None,
) -> None:
    """Record that someone has seen an alert (it keeps firing until the metric recovers)."""
    svc = services()
    who = by or svc.settings.user or current_user()
    alert = svc.alerts.ack(alert_id, who)
    console.print(
        f"alert {alert.id} ({alert.deployment}: {alert.rule}, {alert.state}) acknowledged by {who}", markup=False
    )


# -- rules ---------------------------------------------------------------------------------------


@app.command()
def rules(name: Annotated[str, typer.Argument(help="Deployment name.")], as_json: JsonOpt = False) -> None:
    """A deployment's alert rules (the defaults until any is set)."""
    svc = services()
    svc.deployments.get(name)
    found = svc.alerts.rules(name)
    if as_json:
        emit_json([r.to_dict() for r in found])
        return
    defaults = not svc.alerts.store.list_rules(name)
    table(
        escape(f"Alert rules of {name}") + (" (defaults)" if defaults else ""),
        ["rule", "metric", "condition", "window", "min samples", "severity", "cooldown", "channels", "enabled"],
        [
            (
                escape(r.name),
                escape(r.metric),
                f"{r.op} {r.threshold:g}",
                f"{r.window} s",
                r.min_samples,
                r.severity,
                f"{r.cooldown_seconds:g} s",
                escape(", ".join(r.channels)) if r.channels else "all",
                r.enabled,
            )
            for r in found
        ],
    )


@app.command("set-rule")
def set_rule(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    rule: Annotated[str, typer.Argument(help="Rule name (replaced if it exists).")],
    metric: Annotated[str, typer.Option("--metric", help="What to watch (see `corral alerts metrics`).")],
    op: Annotated[str, typer.Option("--op", help="One of >, >=, <, <=.")],
    threshold: Annotated[float, typer.Option("--threshold", help="The limit.")],
    window: Annotated[int, typer.Option("--window", help="Window length in seconds.")] = 3600,
    min_samples: Annotated[int, typer.Option("--min-samples", help="Fewer rows (labels) and it does not judge.")] = 100,
    severity: Annotated[str, typer.Option("--severity", help=", ".join(SEVERITIES) + ".")] = "warning",
    cooldown: Annotated[
        float, typer.Option("--cooldown", help="Seconds after resolving before it fires again.")
    ] = 3600.0,
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="A channel to notify (repeat it; default: all).")
    ] = None,
    disable: Annotated[bool, typer.Option("--disable", help="Keep the rule but do not evaluate it.")] = False,
) -> None:
    """Create or replace one alert rule of a deployment (the first one set replaces the defaults)."""
    svc = services()
    svc.deployments.get(name)
    created = svc.alerts.set_rule(
        Rule(
            deployment=name,
            name=rule,
            metric=metric,
            op=op,
            threshold=threshold,
            window=window,
            min_samples=min_samples,
            severity=severity,
            cooldown_seconds=cooldown,
            channels=tuple(channel or ()),
            enabled=not disable,
        )
    )
    state = "" if created.enabled else " (disabled)"
    console.print(f"rule {created.name} of {name}: {created.describe()}, {created.severity}{state}", markup=False)


@app.command("delete-rule")
def delete_rule(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    rule: Annotated[str, typer.Argument(help="Rule name.")],
) -> None:
    """Delete one alert rule of a deployment."""
    svc = services()
    svc.deployments.get(name)
    svc.alerts.delete_rule(name, rule)
    console.print(f"rule {rule} of {name} deleted", markup=False)


@app.command()
def metrics(as_json: JsonOpt = False) -> None:
    """The metrics rules can watch."""
    if as_json:
        emit_json(
            [{"name": m.name, "description": m.description, "per_feature": m.per_feature} for m in METRICS.values()]
        )
        return
    table(
        "Metrics",
        ["metric", "meaning"],
        [(escape(f"{m.name}:<feature>" if m.per_feature else m.name), m.description) for m in METRICS.values()],
    )


# -- evaluation on demand ------------------------------------------------------------------------


def _verdict(rule: Rule, reading: Reading | None) -> str:
    if reading is None or reading.value is None:
        return "no value"
    if reading.samples < rule.min_samples:
        return f"too few samples ({reading.samples} < {rule.min_samples})"
    return "breached" if rule.breached(float(reading.value)) else "ok"


def _evaluate_one(svc: Services, name: str, window: int | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    kept = svc.settings.monitoring.windows
    enabled = [r for r in svc.alerts.rules(name) if r.enabled]
    lengths = sorted({r.window for r in enabled if r.window in kept}) if window is None else [window]
    judged: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    for length in lengths:
        readings = deployment_readings(svc, name, length)
        for r in enabled:
            if r.window == length:
                reading = readings.get(r.metric)
                value = reading.value if reading is not None else None
                samples = reading.samples if reading is not None else 0
                judged.append(
                    {
                        "deployment": name,
                        "rule": r.name,
                        "condition": r.describe(),
                        "value": value,
                        "samples": samples,
                        "verdict": _verdict(r, reading),
                    }
                )
        for change in svc.alerts.evaluate(name, readings, window=length):
            changes.append({"deployment": name, "window": length, **change.to_dict()})
    return judged, changes


@app.command()
def evaluate(
    name: Annotated[str | None, typer.Argument(help="Deployment name (default: every enabled deployment).")] = None,
    window: Annotated[
        int | None, typer.Option("--window", help="Only rules over this window length (seconds).", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate alert rules now and send due notifications, without waiting for a server's alert loop."""
    svc = services()
    kept = svc.settings.monitoring.windows
    if window is not None and window not in kept:
        raise ConfigurationError(f"--window must be one of {kept} seconds, got {window}")
    if name is not None:
        svc.deployments.get(name)
        names = [name]
    else:
        names = [d.name for d in svc.deployments.list() if d.enabled]
    judged: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for each in names:
        try:
            rules_judged, made = _evaluate_one(svc, each, window)
        except CorralError as exc:
            if name is not None:
                raise
            skipped.append({"deployment": each, "reason": str(exc)})  # e.g. an alias not set yet
            continue
        judged.extend(rules_judged)
        changes.extend(made)
    deliveries = svc.alerts.dispatch()
    if as_json:
        emit_json(
            {
                "rules": judged,
                "changes": changes,
                "deliveries": [d.to_dict() for d in deliveries],
                "skipped": skipped,
            }
        )
        return
    for skip in skipped:
        errors.print(f"skipped {skip['deployment']}: {skip['reason']}", markup=False)
    if judged:
        table(
            "Rules evaluated",
            ["deployment", "rule", "condition", "value", "samples", "verdict"],
            [
                (
                    escape(j["deployment"]),
                    escape(j["rule"]),
                    escape(j["condition"]),
                    j["value"],
                    j["samples"],
                    j["verdict"],
                )
                for j in judged
            ],
        )
    else:
        console.print("No rules evaluated (no enabled rule over a kept window).")
    if changes:
        table(
            "Changes",
            ["deployment", "rule", "action", "value", "alert"],
            [(escape(c["deployment"]), escape(c["rule"]), c["action"], c["value"], c["alert_id"]) for c in changes],
        )
    else:
        console.print("No alert opened or resolved.")
    if deliveries:
        table(
            "Notifications sent",
            ["alert", "channel", "state", "status", "attempts", "error"],
            [
                (
                    d.alert_id,
                    escape(d.channel),
                    d.state,
                    d.status,
                    d.attempts,
                    escape(d.last_error) if d.last_error else None,
                )
                for d in deliveries
            ],
        )
    else:
        console.print("No notifications due.")
