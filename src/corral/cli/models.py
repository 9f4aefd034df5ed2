"""``corral models ...`` and ``corral lineage``: the registry from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli.context import services
from corral.cli.output import console, emit_json, fields, table, when
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
