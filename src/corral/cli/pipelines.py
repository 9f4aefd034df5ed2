"""``corral pipelines ...``, ``corral runs ...`` and ``corral worker``: retraining pipelines and their runs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from corral.cli.context import services
from corral.cli.output import console, emit_json, table
from corral.errors import ConfigurationError
from corral.pipelines.entities import Pipeline

app = typer.Typer(help="Retraining pipelines: what to train, on which data, when.", no_args_is_help=True)
runs = typer.Typer(help="Pipeline runs: their state, result and log.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Pipeline name.")],
    train: Annotated[str, typer.Option(help="module:function taking (frame, context), returning a fitted model.")],
    deployment: Annotated[str, typer.Option(help="The deployment whose model it retrains.")],
    target: Annotated[str, typer.Option(help="The label column of the training data.")],
    data: Annotated[
        list[str],
        typer.Option(
            help="A source (repeatable): a CSV/Parquet file or glob, sql:URL::QUERY, or production[:DAYS] "
            "(the deployment's labelled requests)."
        ),
    ],
    schedule: Annotated[str | None, typer.Option(help='A cron schedule in UTC, e.g. "0 3 * * 1".')] = None,
    every: Annotated[str | None, typer.Option(help="An interval, e.g. 6h, 30m, 1d.")] = None,
    on: Annotated[str | None, typer.Option(help="Alerts that trigger a run, e.g. drift,performance.")] = None,
    metric: Annotated[str, typer.Option(help="The metric the evaluation gate compares.")] = "accuracy",
    margin: Annotated[float, typer.Option(help="How much worse than the champion a candidate may be.")] = 0.0,
    timeout: Annotated[float, typer.Option(help="Seconds a run may train before it is stopped.")] = 3600.0,
    param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE passed to the training function.")] = None,
    shadow_requests: Annotated[int, typer.Option(help="Labelled requests a candidate shadows first.")] = 200,
    canary_steps: Annotated[str, typer.Option(help="Traffic shares in turn, e.g. 10,50 (percent).")] = "10,50",
    step_requests: Annotated[int, typer.Option(help="Labelled requests each canary step answers.")] = 200,
    stage_minutes: Annotated[
        float | None, typer.Option(help="Or end each stage after this many minutes (with any labelled request).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create (or replace) a pipeline. A candidate that passes the evaluation gate shadows the deployment, then
    answers each canary share in turn, then becomes the champion; a regression on the way rolls it back."""
    from corral.pipelines.schedule import parse_every

    params: dict[str, Any] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--param takes KEY=VALUE, got {item!r}")
        params[key] = value
    pipeline = Pipeline(
        name=name,
        train=train,
        data=tuple(_source(text) for text in data),
        target=target,
        deployment=deployment,
        schedule=schedule,
        every_seconds=parse_every(every) if every else None,
        on_alerts=tuple(a.strip() for a in (on or "").split(",") if a.strip()),
        params=params,
        metric=metric,
        margin=margin,
        timeout_seconds=timeout,
        shadow_requests=shadow_requests,
        canary_steps=_steps(canary_steps),
        step_requests=step_requests,
        stage_seconds=stage_minutes * 60 if stage_minutes is not None else None,
    )
    created = services().pipelines.create(pipeline)
    if as_json:
        emit_json(created.to_dict())
        return
    console.print(f"pipeline {created.name}: trains {created.train} for {created.deployment}", markup=False)


def _steps(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part.strip().rstrip("%")) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigurationError(f"--canary-steps takes percentages like 10,50, got {text!r}") from None


def _source(text: str) -> dict[str, Any]:
    if text.startswith("sql:"):
        url, sep, query = text[4:].partition("::")
        if not sep or not url or not query:
            raise ConfigurationError(f"a SQL source is sql:URL::QUERY, got {text!r}")
        return {"kind": "sql", "url": url, "query": query}
    if text == "production" or text.startswith("production:"):
        days = text.partition(":")[2]
        try:
            return {"kind": "production", "window_seconds": float(days or 30) * 86400}
        except ValueError:
            raise ConfigurationError(f"production takes a number of days, got {text!r}") from None
    return {"kind": "file", "path": text}


@app.command("list")
def list_pipelines(as_json: JsonOpt = False) -> None:
    """Every pipeline with its triggers and last run."""
    svc = services()
    found = svc.pipelines.store.list_pipelines()
    if as_json:
        emit_json([p.to_dict() for p in found])
        return
    rows = []
    for p in found:
        last = svc.pipelines.store.last_run(p.name)
        trigger = p.schedule or (f"every {p.every_seconds:g} s" if p.every_seconds else "manual")
        alerts = ", ".join(p.on_alerts) or "-"
        rows.append((p.name, p.deployment, p.train, trigger, alerts, f"{last.state} {last.id}" if last else "-"))
    table("Pipelines", ["name", "deployment", "train", "schedule", "on alerts", "last run"], rows)


@app.command()
def show(name: str, as_json: JsonOpt = False) -> None:
    """One pipeline."""
    pipeline = services().pipelines.store.get_pipeline(name)
    if as_json:
        emit_json(pipeline.to_dict())
        return
    table(f"Pipeline {name}", ["field", "value"], [(k, v) for k, v in pipeline.to_dict().items()])


@app.command()
def run(
    name: str,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Carry it out here and show its progress.")] = False,
) -> None:
    """Queue a run now (a worker carries it out); with --wait, carry it out in this process."""
    svc = services()
    queued = svc.pipelines.run(name, reason="run by hand")
    if queued is None:
        raise ConfigurationError(f"pipeline {name} already has a run queued or running")
    console.print(f"run {queued.id} of {name} queued")
    if not wait:
        return
    from corral.app import build_worker

    worker = build_worker(svc)
    with console.status(f"running {name}..."):
        while (done := worker.run_once()) is not None and done.id != queued.id:
            pass
    final = svc.pipelines.store.get_run(queued.id)
    console.print(f"run {final.id}: {final.state}: {final.reason}", markup=False)
    if final.state == "failed":
        raise typer.Exit(1)


@app.command()
def delete(name: str) -> None:
    """Delete a pipeline (refused while a run is queued or running)."""
    services().pipelines.store.delete_pipeline(name)
    console.print(f"pipeline {name} deleted")


@runs.command("list")
def list_runs(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's runs.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Runs, newest first."""
    found = services().pipelines.store.list_runs(pipeline=pipeline, limit=limit)
    if as_json:
        emit_json([r.to_dict() for r in found])
        return
    rows = [(r.id, r.pipeline, r.trigger, r.state, r.created_at, r.reason) for r in found]
    table("Runs", ["id", "pipeline", "trigger", "state", "queued", "why / result"], rows)


@runs.command("show")
def show_run(run_id: str, as_json: JsonOpt = False) -> None:
    """One run: its state, result and reason."""
    found = services().pipelines.store.get_run(run_id)
    if as_json:
        emit_json({**found.to_dict(), "log": found.log})
        return
    table(f"Run {run_id}", ["field", "value"], [(k, v) for k, v in found.to_dict().items()])


@runs.command("logs")
def run_logs(
    run_id: str, follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing while it runs.")] = False
) -> None:
    """A run's log (saved while it runs, every third of its lease)."""
    store = services().pipelines.store
    shown = 0
    while True:
        found = store.get_run(run_id)
        lines = found.log.splitlines()
        for line in lines[shown:]:
            console.print(line, markup=False, highlight=False)
        shown = len(lines)
        if not follow or found.state not in ("queued", "running"):
            return
        time.sleep(1.0)


def worker(name: Annotated[str | None, typer.Option(help="This worker's name in the runs it claims.")] = None) -> None:
    """Carry out queued pipeline runs until interrupted (several workers may share one database)."""
    from corral.app import build_worker

    built = build_worker(services(), name=name)
    console.print(f"worker {built.name} waiting for runs (Ctrl-C to stop)", markup=False)
    try:
        built.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
