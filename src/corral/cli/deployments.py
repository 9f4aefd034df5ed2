"""``corral deployments ...``: named endpoints that follow a model alias."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli.context import services
from corral.cli.output import console, emit_json, table
from corral.serving.entities import BatchingPolicy

app = typer.Typer(
    help="Deployments: named endpoints serving whatever version an alias points at.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Endpoint name (the Open Inference Protocol model name).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model to serve.")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to follow.")] = "champion",
    batching: Annotated[bool, typer.Option("--batching/--no-batching", help="Coalesce concurrent requests.")] = True,
    max_batch_size: Annotated[int, typer.Option(help="Most rows per model call.")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="Under load, longest wait for a batch to fill.")] = 1.0,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a deployment; every `corral serve` on this database starts serving it within seconds."""
    policy = BatchingPolicy(batching, max_batch_size, max_wait_ms)
    created = services().deployments.create(name, model=model, alias=alias, batching=policy, description=description)
    if as_json:
        emit_json(created.to_dict())
        return
    console.print(f"deployment {created.name} → {created.model}@{created.alias}")


@app.command("list")
def list_deployments(as_json: JsonOpt = False) -> None:
    """Every deployment with the version its alias points at now."""
    svc = services()
    rows = []
    for d in svc.deployments.list():
        try:
            version: object = svc.registry.resolve(d.target).version
        except Exception as exc:  # an alias not set yet is normal for a new deployment
            version = f"- ({type(exc).__name__})"
        rows.append((d, version))
    if as_json:
        emit_json([{**d.to_dict(), "version": v if isinstance(v, int) else None} for d, v in rows])
        return
    if not rows:
        console.print("No deployments. Create one: corral deployments create NAME --model MODEL")
        return
    table(
        "Deployments",
        ["name", "serves", "version now", "enabled", "batching"],
        [
            (
                d.name,
                f"{d.model}@{d.alias}",
                v,
                d.enabled,
                f"≤{d.batching.max_batch_size} rows, ≤{d.batching.max_wait_ms:g} ms" if d.batching.enabled else "off",
            )
            for d, v in rows
        ],
    )


@app.command()
def show(name: str, as_json: JsonOpt = False) -> None:
    """One deployment."""
    deployment = services().deployments.get(name)
    if as_json:
        emit_json(deployment.to_dict())
        return
    table(f"Deployment {name}", ["field", "value"], [(k, v) for k, v in deployment.to_dict().items()])


@app.command()
def update(
    name: str,
    alias: Annotated[str | None, typer.Option("--alias", "-a", help="Follow another alias.")] = None,
    batching: Annotated[bool | None, typer.Option("--batching/--no-batching")] = None,
    max_batch_size: Annotated[int | None, typer.Option()] = None,
    max_wait_ms: Annotated[float | None, typer.Option()] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable", help="Load or unload everywhere.")] = None,
) -> None:
    """Change what a deployment follows, how it batches, or whether servers load it."""
    svc = services()
    current = svc.deployments.get(name).batching
    policy = None
    if batching is not None or max_batch_size is not None or max_wait_ms is not None:
        policy = BatchingPolicy(
            current.enabled if batching is None else batching,
            current.max_batch_size if max_batch_size is None else max_batch_size,
            current.max_wait_ms if max_wait_ms is None else max_wait_ms,
        )
    updated = svc.deployments.update(name, alias=alias, batching=policy, enabled=enabled)
    console.print(f"deployment {updated.name} → {updated.model}@{updated.alias} (enabled: {updated.enabled})")


@app.command()
def delete(
    name: str, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False
) -> None:
    """Delete a deployment; servers stop serving it within seconds."""
    if not yes:
        typer.confirm(f"Delete deployment {name}?", abort=True)
    services().deployments.delete(name)
    console.print(f"deployment {name} deleted")
