"""``corral deployments ...``: named endpoints that follow a model alias."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated

import typer

from corral.app import rollback_deployment, set_members
from corral.cli.context import services
from corral.cli.output import console, emit_json, table
from corral.errors import ConfigurationError
from corral.serving.entities import CANARY, SHADOW, SPLIT, BatchingPolicy, ExecutionPolicy, GuardPolicy, Member

app = typer.Typer(
    help="Deployments: named endpoints serving whatever version an alias points at.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
IsolationOpt = Annotated[
    str | None,
    typer.Option(help="in_process, isolated (own environment and worker), or auto (isolated when libraries differ)."),
]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (runtimes that use a GPU).")]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", help="Seconds a request may wait for the model (then 504).")
]
ConcurrencyOpt = Annotated[int | None, typer.Option(help="Requests inside the model at once, per server process.")]
QueueOpt = Annotated[int | None, typer.Option(help="Requests allowed to wait beyond that (then 429).")]
MemoryOpt = Annotated[int | None, typer.Option("--max-memory-mb", help="An isolated worker's memory limit.")]


def _execution(current: ExecutionPolicy, changes: Mapping[str, object]) -> ExecutionPolicy:
    return ExecutionPolicy.from_dict({**current.to_dict(), **{k: v for k, v in changes.items() if v is not None}})


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Endpoint name (the Open Inference Protocol model name).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model to serve.")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to follow.")] = "champion",
    batching: Annotated[bool, typer.Option("--batching/--no-batching", help="Coalesce concurrent requests.")] = True,
    max_batch_size: Annotated[int, typer.Option(help="Most rows per model call.")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="Under load, longest wait for a batch to fill.")] = 1.0,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    isolation: IsolationOpt = None,
    device: DeviceOpt = None,
    timeout: TimeoutOpt = None,
    max_concurrency: ConcurrencyOpt = None,
    max_queue: QueueOpt = None,
    max_memory_mb: MemoryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a deployment; every `corral serve` on this database starts serving it within seconds."""
    policy = BatchingPolicy(batching, max_batch_size, max_wait_ms)
    limits = {"isolation": isolation, "device": device, "timeout_seconds": timeout}
    limits |= {"max_concurrency": max_concurrency, "max_queue": max_queue, "max_memory_mb": max_memory_mb}
    execution = _execution(ExecutionPolicy(), limits)
    created = services().deployments.create(
        name, model=model, alias=alias, batching=policy, description=description, execution=execution
    )
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


@app.command("set")
def set_members_command(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    shadow: Annotated[
        list[str] | None, typer.Option(help="MODEL:VERSION scoring a copy of every request, never answering.")
    ] = None,
    split: Annotated[list[str] | None, typer.Option(help="MODEL:VERSION=PERCENT% answering that share.")] = None,
    canary: Annotated[list[str] | None, typer.Option(help="MODEL:VERSION=PERCENT% (a split a rollout raises).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every shadow, split and canary.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put other versions on a deployment's traffic beside its champion, e.g.
    `corral deployments set fraud --shadow fraud-gbm:7 --split fraud-lr:3=10%`. The listed members replace
    the current ones; every server follows within seconds, and no in-flight request fails."""
    svc = services()
    members = [] if clear else [
        *(_member(text, SHADOW) for text in shadow or ()),
        *(_member(text, SPLIT) for text in split or ()),
        *(_member(text, CANARY) for text in canary or ()),
    ]  # fmt: skip
    if not clear and not members:
        raise ConfigurationError("name at least one --shadow, --split or --canary (or --clear)")
    updated = set_members(svc, name, members)
    if as_json:
        emit_json(updated.to_dict())
        return
    _print_members(updated.name, updated.model, updated.alias, updated.members)


@app.command("remove")
def remove_member(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    version: Annotated[str, typer.Argument(help="VERSION of the deployment's model, or MODEL:VERSION.")],
) -> None:
    """Take one version off a deployment's traffic (every server, within seconds)."""
    svc = services()
    deployment = svc.deployments.get(name)
    model, number = _ref(version if ":" in version else f"{deployment.model}:{version}")
    updated = svc.deployments.remove_member(name, model, number)
    console.print(f"{model}:{number} removed from {name}")
    _print_members(updated.name, updated.model, updated.alias, updated.members)


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    reason: Annotated[str, typer.Option(help="Why, for the alias history.")] = "",
) -> None:
    """Move the alias the deployment follows back one step: every server serves the previous champion
    within seconds."""
    svc = services()
    deployment = rollback_deployment(svc, name, reason=reason)
    version = svc.registry.resolve(deployment.target)
    console.print(f"{name}: {deployment.model}@{deployment.alias} is back to version {version.version}")


def _ref(text: str) -> tuple[str, int]:
    model, sep, number = text.partition(":")
    if not sep or not model or not number.isdigit() or int(number) < 1:
        raise ConfigurationError(f"expected MODEL:VERSION (e.g. fraud-gbm:7), got {text!r}")
    return model, int(number)


def _member(text: str, role: str) -> Member:
    if role == SHADOW:
        if "=" in text:
            raise ConfigurationError(f"a shadow takes a copy of every request; drop the share in {text!r}")
        return Member(*_ref(text), role)
    ref, sep, share = text.partition("=")
    try:
        percent = float(share.rstrip("%")) if sep else math.nan
    except ValueError:
        percent = math.nan
    if math.isnan(percent):  # missing or unreadable
        raise ConfigurationError(f"expected MODEL:VERSION=PERCENT% for a {role} (e.g. fraud-lr:3=10%), got {text!r}")
    return Member(*_ref(ref), role, percent)


def _print_members(name: str, model: str, alias: str, members: tuple[Member, ...]) -> None:
    share = 100.0 - sum(m.percent for m in members)
    rows = [(f"{model}@{alias}", "champion", f"{share:g}%")]
    rows += [(f"{m.model}:{m.version}", m.role, f"{m.percent:g}%" if m.role != SHADOW else "copy") for m in members]
    table(f"Deployment {name}", ["version", "role", "traffic"], rows)


@app.command("limits")
def limits(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    isolation: IsolationOpt = None,
    device: DeviceOpt = None,
    timeout: TimeoutOpt = None,
    no_timeout: Annotated[bool, typer.Option("--no-timeout", help="Let requests wait for the model forever.")] = False,
    max_concurrency: ConcurrencyOpt = None,
    max_queue: QueueOpt = None,
    max_memory_mb: MemoryOpt = None,
    no_caps: Annotated[bool, typer.Option("--no-caps", help="Remove the concurrency and memory caps.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show or change where a deployment's versions run (in process or isolated, which device) and their
    limits: request timeout, concurrency and queue, memory. Servers reload the versions within seconds."""
    svc = services()
    current = svc.deployments.get(name).execution
    changes: dict[str, object] = {"isolation": isolation, "device": device, "timeout_seconds": timeout}
    changes |= {"max_concurrency": max_concurrency, "max_queue": max_queue, "max_memory_mb": max_memory_mb}
    if any(v is not None for v in changes.values()) or no_timeout or no_caps:
        values = _execution(current, changes).to_dict()
        if no_timeout:
            values["timeout_seconds"] = None
        if no_caps:
            values["max_concurrency"] = values["max_memory_mb"] = None
        current = svc.deployments.set_execution(name, ExecutionPolicy.from_dict(values)).execution
    if as_json:
        emit_json({"deployment": name, **current.to_dict()})
        return
    table(
        f"Execution of {name}",
        ["setting", "value"],
        [(k, "-" if v is None else v) for k, v in current.to_dict().items()],
    )


@app.command("guard")
def guard(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    min_requests: Annotated[
        int | None, typer.Option(help="Requests (or labelled rows) before a member is judged.")
    ] = None,
    max_error_increase: Annotated[
        float | None, typer.Option(help="Largest error-rate excess over the champion's, e.g. 0.05.")
    ] = None,
    max_latency_ratio: Annotated[float | None, typer.Option(help="Largest p99 latency over the champion's.")] = None,
    min_latency_ms: Annotated[float | None, typer.Option(help="p99 latencies under this never count.")] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable", help="Let servers remove members.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or change when servers take a faulty shadow, split or canary off the traffic on their own (error
    rate, p99 latency, or labelled quality significantly worse than the champion's)."""
    svc = services()
    current = svc.deployments.get(name).guard
    changes = {
        "min_requests": min_requests,
        "max_error_rate_increase": max_error_increase,
        "max_latency_ratio": max_latency_ratio,
        "min_latency_ms": min_latency_ms,
        "enabled": enabled,
    }
    if any(v is not None for v in changes.values()):
        values = {**current.to_dict(), **{k: v for k, v in changes.items() if v is not None}}
        current = svc.deployments.set_guard(name, GuardPolicy.from_dict(values)).guard
    if as_json:
        emit_json({"deployment": name, **current.to_dict()})
        return
    table(f"Guard rules of {name}", ["setting", "value"], list(current.to_dict().items()))
