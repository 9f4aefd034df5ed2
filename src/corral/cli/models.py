"""``corral models ...`` and ``corral lineage``: the registry from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from corral.cli.context import services
from corral.cli.output import console, emit_json, fields, table, when
from corral.core.files import read_frame
from corral.errors import ConfigurationError
from corral.isolation.host import IsolatedHost
from corral.registry.entities import ModelVersion

app = typer.Typer(help="Registered models: list, inspect, promote, roll back, archive.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why; kept in the alias history.")]
AliasOpt = Annotated[str, typer.Option("--alias", "-a", help="The alias to move.")]


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{a}→{v}" for a, v in aliases.items()) or "-"


@app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """Every registered model with its newest version and aliases."""
    models = services().registry.list_models()
    if as_json:
        emit_json([m.to_dict() for m in models])
        return
    if not models:
        console.print("No models yet. Register one with corral.log_model(...) or run `make demo`.")
        return
    table(
        "Models",
        ["name", "latest", "aliases", "created by", "created"],
        [(m.name, m.latest_version, _aliases(m.aliases), m.created_by, m.created_at) for m in models],
    )


@app.command()
def register(
    path: Annotated[
        Path, typer.Argument(help="The model: a file (.skops, .onnx, .pkl...) or a folder (MLflow, external).")
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="The model's name.")],
    training_data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Training data (CSV or Parquet), target column included.")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", "-t", help="The target column in --data.")] = None,
    flavor: Annotated[str | None, typer.Option(help="The framework; detected from the file when left out.")] = None,
    requirement: Annotated[
        list[str] | None,
        typer.Option("--requirement", "-r", help="A library release the model needs, NAME==VERSION (repeatable)."),
    ] = None,
    isolated: Annotated[
        bool,
        typer.Option("--isolated", help="Save and check the model in its own environment built from --requirement."),
    ] = False,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="A flavor option, KEY=JSON (repeatable).")
    ] = None,
    trusted: Annotated[
        bool, typer.Option("--trusted", help="Read a pickle or joblib file (it can run code): only files you trust.")
    ] = False,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Register a model file or folder as the next version of NAME.

    With --isolated the model is saved, loaded and checked by a worker in an environment holding exactly the
    --requirement releases, so a model made by another release of its framework is registered without this
    process ever loading it; servers then run it isolated.
    """
    svc = services()
    requirements = parse_requirements(requirement or [])
    if isolated and not requirements:
        raise ConfigurationError("--isolated needs the releases the model needs: --requirement NAME==VERSION")
    data = read_frame(training_data) if training_data is not None else None
    host = IsolatedHost(svc.environments, requirements) if isolated else None
    version = svc.registry.log_model(
        str(path),
        name=name,
        training_data=data,
        target=target,
        flavor=flavor,
        requirements=requirements,
        options=parse_options(option or []),
        trusted=trusted,
        description=description,
        source=str(training_data) if training_data is not None else None,
        host=host,
    )
    if as_json:
        emit_json(version.to_dict())
        return
    console.print(f"Registered {version.ref} ({version.flavor}); needs {_needs(version.lineage.requirements)}")


@app.command()
def requirements(
    name: str,
    version: int,
    requirement: Annotated[
        list[str] | None, typer.Option("--requirement", "-r", help="Set a release, NAME==VERSION (repeatable).")
    ] = None,
    drop: Annotated[list[str] | None, typer.Option("--drop", help="Stop recording a library (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or edit the library releases a version records: what its own environment is built from when it
    runs isolated (servers use the new set the next time they load the version)."""
    registry = services().registry
    changes: dict[str, str | None] = {**parse_requirements(requirement or []), **dict.fromkeys(drop or [])}
    found = registry.set_requirements(name, version, changes) if changes else registry.get_version(name, version)
    if as_json:
        emit_json({"model": name, "version": version, "requirements": found.lineage.requirements})
        return
    table(f"{found.ref} needs", ["library", "release"], sorted(found.lineage.requirements.items()))


def parse_requirements(items: list[str]) -> dict[str, str]:
    """``NAME==VERSION`` items as a mapping.

    Raises:
        ConfigurationError: an item without ``==``.
    """
    found = {}
    for item in items:
        name, sep, version = item.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ConfigurationError(f"requirement {item!r} is not NAME==VERSION")
        found[name.strip()] = version.strip()
    return found


def parse_options(items: list[str]) -> dict[str, Any]:
    """``KEY=JSON`` items as a mapping (a value that is not JSON is taken as text).

    Raises:
        ConfigurationError: an item without ``=``.
    """
    found: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"option {item!r} is not KEY=VALUE")
        try:
            found[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            found[key.strip()] = raw
    return found


def _needs(requirements: dict[str, str]) -> str:
    shown = [f"{k}=={v}" for k, v in requirements.items() if k != "corral"]
    return ", ".join(shown) or "nothing recorded"


@app.command()
def show(name: str, as_json: JsonOpt = False) -> None:
    """One model: its aliases and versions."""
    registry = services().registry
    model = registry.get_model(name)
    versions = registry.list_versions(name)
    if as_json:
        emit_json({**model.to_dict(), "versions": [v.to_dict() for v in versions]})
        return
    fields(
        f"Model {model.name}",
        [
            ("latest version", model.latest_version),
            ("aliases", _aliases(model.aliases)),
            ("created", f"{when(model.created_at)} by {model.created_by}"),
            ("description", model.description or "-"),
        ],
    )
    _versions_table(versions, model.aliases)


@app.command()
def versions(
    name: str,
    as_json: JsonOpt = False,
    ready: Annotated[bool, typer.Option("--ready", help="Leave out archived versions.")] = False,
) -> None:
    """A model's versions, oldest first."""
    registry = services().registry
    found = registry.list_versions(name, include_archived=not ready)
    if as_json:
        emit_json([v.to_dict() for v in found])
        return
    _versions_table(found, registry.get_model(name).aliases)


def _versions_table(found: list[ModelVersion], aliases: dict[str, int]) -> None:
    by_version: dict[int, list[str]] = {}
    for alias, number in aliases.items():
        by_version.setdefault(number, []).append(alias)
    table(
        "Versions",
        ["version", "flavor", "status", "aliases", "task", "metrics", "data", "created"],
        [
            (
                v.version,
                v.flavor,
                v.status,
                by_version.get(v.version, []),
                v.signature.outputs.task,
                v.lineage.metrics,
                f"{v.lineage.data.rows}×{v.lineage.data.columns} {v.lineage.data.sha256[:12]}"
                if v.lineage.data
                else None,
                v.created_at,
            )
            for v in found
        ],
    )


@app.command()
def promote(
    name: str, version: int, alias: AliasOpt = "champion", reason: ReasonOpt = "", as_json: JsonOpt = False
) -> None:
    """Point an alias (champion by default) at a version."""
    event = services().registry.promote(name, version, alias=alias, reason=reason)
    if as_json:
        emit_json(event.to_dict())
        return
    was = f" (was {event.from_version})" if event.from_version else ""
    console.print(f"{name}@{alias} → version {event.to_version}{was}")


@app.command()
def rollback(name: str, alias: AliasOpt = "champion", reason: ReasonOpt = "", as_json: JsonOpt = False) -> None:
    """Move an alias back to the version it pointed at before its last move."""
    event = services().registry.rollback(name, alias, reason=reason)
    if as_json:
        emit_json(event.to_dict())
        return
    console.print(f"{name}@{alias} rolled back: version {event.from_version} → {event.to_version}")


@app.command()
def unalias(name: str, alias: str, reason: ReasonOpt = "") -> None:
    """Remove an alias."""
    event = services().registry.remove_alias(name, alias, reason=reason)
    console.print(f"{name}@{alias} removed (was version {event.from_version})")


@app.command()
def archive(name: str, version: int, reason: ReasonOpt = "", as_json: JsonOpt = False) -> None:
    """Retire a version: kept for the record, never served or aliased."""
    archived = services().registry.archive(name, version, reason=reason)
    if as_json:
        emit_json(archived.to_dict())
        return
    console.print(f"{name}/{version} archived")


@app.command()
def restore(name: str, version: int) -> None:
    """Bring an archived version back."""
    services().registry.restore(name, version)
    console.print(f"{name}/{version} restored")


@app.command()
def delete(
    name: str,
    version: int,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a version nothing uses (aliased or referenced versions can only be archived)."""
    if not yes:
        typer.confirm(f"Delete {name}/{version} and its artifact for good?", abort=True)
    services().registry.delete_version(name, version)
    console.print(f"{name}/{version} deleted")


@app.command()
def trust(
    name: str,
    version: int,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why its artifact is safe to unpickle (who made it, how reviewed).")
    ] = "",
    revoke: Annotated[bool, typer.Option("--revoke", help="Withdraw the trust: servers stop serving it.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Let servers load a pickle or joblib version (an admin's decision), always in a worker process of its own.

    Unpickling runs whatever code the file holds: trust a version only after reviewing where it came from.
    Servers refuse an untrusted pickle version, and load a trusted one only in a separate process.
    """
    registry = services().registry
    if revoke:
        updated = registry.untrust(name, version)
    else:
        if not reason.strip():
            raise ConfigurationError("say why with --reason: who made the pickle and how it was reviewed")
        updated = registry.trust(name, version, reason=reason)
    if as_json:
        emit_json(updated.to_dict())
        return
    if revoke:
        console.print(f"{updated.ref} is no longer trusted; servers stop serving it at their next refresh")
    elif registry.needs_trust(updated):
        by = updated.trust.by if updated.trust else "?"
        console.print(f"{updated.ref} trusted by {by}: servers load it in a worker process of its own")
    else:
        console.print(f"{updated.ref} trusted, though it loads no code (it is not a pickle): the trust changes nothing")


@app.command()
def sign(name: str, version: int, as_json: JsonOpt = False) -> None:
    """Sign a version registered before artifact signing was set up (its artifact's hash is checked first)."""
    signed = services().registry.sign_version(name, version)
    if as_json:
        emit_json(signed.to_dict())
        return
    key = signed.artifact_signature.key_id if signed.artifact_signature else "?"
    console.print(f"{signed.ref} signed with key {key}")


@app.command()
def history(
    name: str,
    alias: Annotated[str | None, typer.Option("--alias", "-a", help="Only this alias.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every alias move: who, when, from, to and why."""
    events = services().registry.alias_history(name, alias)
    if as_json:
        emit_json([e.to_dict() for e in events])
        return
    table(
        f"Alias history of {name}",
        ["when", "alias", "action", "from", "to", "who", "reason"],
        [(e.at, e.alias, e.action, e.from_version, e.to_version, e.actor, e.reason) for e in events],
    )


def lineage(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version number, or an alias such as champion.")],
    as_json: JsonOpt = False,
) -> None:
    """Where a version came from: data fingerprint, code, parameters, metrics, libraries."""
    registry = services().registry
    ref = f"{name}/{version}" if version.isdigit() else f"{name}@{version}"
    found = registry.resolve(ref)
    profile = registry.get_profile(found.name, found.version)
    if as_json:
        emit_json({**found.to_dict(), "profile": profile.to_dict() if profile else None})
        return
    data = found.lineage.data
    fields(
        f"Lineage of {found.ref}",
        [
            ("flavor", found.flavor),
            ("status", found.status if not found.status_reason else f"{found.status} ({found.status_reason})"),
            ("artifact sha256", found.artifact_sha256),
            (
                "artifact signature",
                f"{found.artifact_signature.algorithm}, key {found.artifact_signature.key_id}"
                if found.artifact_signature
                else "-",
            ),
            (
                "trust",
                f"trusted by {found.trust.by} {when(found.trust.at)}: {found.trust.reason}"
                if found.trust
                else ("needs an admin's trust (a pickle)" if registry.needs_trust(found) else "-"),
            ),
            ("training data sha256", data.sha256 if data else "-"),
            ("training data", f"{data.rows} rows × {data.columns} columns" if data else "-"),
            ("data source", (data.source if data else None) or "-"),
            (
                "code commit",
                (found.lineage.code_commit or "-") + (" (uncommitted changes)" if found.lineage.code_dirty else ""),
            ),
            ("params", found.lineage.params),
            ("metrics", found.lineage.metrics),
            ("python", found.lineage.python),
            ("libraries", found.lineage.requirements),
            (
                "task",
                f"{found.signature.outputs.task}"
                + (f", classes {list(found.signature.outputs.classes)}" if found.signature.outputs.classes else ""),
            ),
            ("created", f"{when(found.created_at)} by {found.created_by}"),
        ],
    )
    table(
        "Input signature",
        ["feature", "dtype", "kind", "training range / categories", "missing (train)"],
        [
            (
                f.name,
                f.dtype,
                f.kind,
                f"{f.min:g} … {f.max:g}"
                if f.min is not None and f.max is not None
                else (", ".join(f.categories[:8]) + (" …" if len(f.categories) > 8 else "") if f.categories else "-"),
                f"{profile.features[f.name].missing_rate:.1%}" if profile and f.name in profile.features else "-",
            )
            for f in found.signature.inputs
        ],
    )
