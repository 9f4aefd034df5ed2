"""``corral monitor-config NAME``: show or change which drift detectors and limits judge a deployment."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.cli.context import services
from corral.cli.output import console, emit_json, table
from corral.errors import MonitoringError


def monitor_config(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    detector: Annotated[
        list[str] | None,
        typer.Option(help="KIND=NAME[,NAME]: detectors for numerical, categorical or boolean features (repeatable)."),
    ] = None,
    threshold: Annotated[
        list[str] | None, typer.Option(help="DETECTOR=VALUE, e.g. psi=0.25 or ks=0.01 (repeatable).")
    ] = None,
    quality: Annotated[
        list[str] | None, typer.Option(help="LIMIT=VALUE, e.g. missing_rate_jump=0.2 or min_rows=50 (repeatable).")
    ] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Go back to the defaults.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show a deployment's monitoring configuration, or change parts of it (the rest is kept)."""
    svc = services()
    svc.deployments.get(name)
    monitor = svc.monitor
    if reset:
        config = monitor.configure(name, None)
    elif detector or threshold or quality:
        current = monitor.config(name).to_dict()
        detectors = {kind: names.split(",") for kind, names in _pairs(detector, "--detector").items()}
        current["detectors"].update(detectors)
        current["thresholds"].update({k: _number(k, v) for k, v in _pairs(threshold, "--threshold").items()})
        current["quality"].update(_pairs(quality, "--quality"))
        config = monitor.configure(name, current)
    else:
        config = monitor.config(name)
    data = config.to_dict()
    if as_json:
        emit_json({"deployment": name, **data})
        return
    rows = [
        (kind, ", ".join(names), ", ".join(f"{n}={data['thresholds'][n]:g}" for n in names if n in data["thresholds"]))
        for kind, names in data["detectors"].items()
    ]
    table(f"{name}: drift detectors", ["kind", "detectors", "thresholds (else each detector's default)"], rows)
    console.print("data-quality limits: " + ", ".join(f"{k}={v}" for k, v in data["quality"].items()))


def _pairs(values: list[str] | None, option: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise MonitoringError(f"{option} takes KEY=VALUE, got {value!r}")
        out[key.strip()] = rest.strip()
    return out


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise MonitoringError(f"threshold for {name!r} must be a number, got {value!r}") from None
