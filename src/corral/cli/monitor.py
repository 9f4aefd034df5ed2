"""``corral monitor NAME``: a deployment's latest production window against its training data."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli.context import services
from corral.cli.output import console, emit_json, table
from corral.errors import ConfigurationError
from corral.monitoring.status import choose_reference, status


def monitor(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    window: Annotated[int, typer.Option(help="Window length in seconds (one of CORRAL_MONITORING__WINDOWS).")] = 3600,
    reference: Annotated[
        str, typer.Option(help="'training' (the version's profile) or the start (epoch seconds) of a stored window.")
    ] = "training",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """Features sorted by drift, with data quality, for the version a deployment serves now."""
    svc = services()
    lengths = svc.settings.monitoring.windows
    if window not in lengths:
        raise ConfigurationError(f"--window must be one of {lengths} seconds, got {window}")
    deployment = svc.deployments.get(name)
    version = svc.registry.resolve(deployment.target)
    windows = svc.database.monitoring.get_windows(name, length=window, model=version.name, version=version.version)
    profile = svc.registry.get_profile(version.name, version.version)
    if not windows or profile is None:
        why = "no reference profile for this version" if profile is None else "no traffic recorded yet"
        if as_json:
            emit_json(
                {"deployment": name, "model": version.name, "version": version.version, "window": None, "reason": why}
            )
        else:
            console.print(f"{name} ({version.ref}): {why} in a {window} s window")
        return
    report = status(choose_reference(profile, windows, reference), windows[-1])
    if as_json:
        emit_json({"deployment": name, "model": version.name, "version": version.version, **report})
        return
    info = report["window"]
    rows = []
    for feature in [*report["features"], *report["outputs"]]:
        drift, quality = feature["drift"], feature["quality"]
        rows.append(
            (
                feature["name"],
                feature["kind"],
                drift["detector"] if drift else "-",
                f"{drift['statistic']:.4g}" if drift and drift["statistic"] is not None else "-",
                ("yes" if drift["drifted"] else "no") if drift else feature.get("reason", "-"),
                f"{quality['missing_rate']:.1%}",
                f"{quality.get('out_of_range_rate', quality.get('unseen_rate', 0.0)):.1%}",
            )
        )
    table(
        f"{name} → {version.ref}: {info['rows']} rows since {info['start_time']}",
        ["feature", "kind", "detector", "statistic", "drifted", "missing", "out of range / unseen"],
        rows,
    )
    drifted = report["drifted_features"]
    console.print(
        f"{len(drifted)} of {len(report['features'])} features drifted" + (f": {', '.join(drifted)}" if drifted else "")
    )
