"""The ``corral`` command. Each command group lives in its own module."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from corral.cli import alerts, audit, db, deployments, models, pipelines, tokens
from corral.cli.compare import compare
from corral.cli.context import services
from corral.cli.demo import demo
from corral.cli.drift import drift
from corral.cli.feedback import feedback
from corral.cli.monitor import monitor
from corral.cli.monitoring_config import monitor_config
from corral.cli.output import errors
from corral.cli.report import report
from corral.cli.serve import serve
from corral.errors import CorralError

app = typer.Typer(
    name="corral",
    help="corral: ML models into production, kept trustworthy there.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models.app, name="models")
app.add_typer(deployments.app, name="deployments")
app.add_typer(db.app, name="db")
app.add_typer(alerts.app, name="alerts")
app.add_typer(audit.app, name="audit")
app.add_typer(pipelines.app, name="pipelines")
app.add_typer(pipelines.runs, name="runs")
app.add_typer(tokens.app, name="tokens")
app.command("worker")(pipelines.worker)
app.command("lineage")(models.lineage)
app.command("demo")(demo)
app.command("serve")(serve)
app.command("monitor")(monitor)
app.command("monitor-config")(monitor_config)
app.command("report")(report)
app.command("compare")(compare)
app.command("drift")(drift)
app.command("feedback")(feedback)


@app.command()
def version(short: Annotated[bool, typer.Option("--short", help="Only the number.")] = False) -> None:
    """Print corral's version."""
    from corral import __version__

    print(__version__ if short else f"corral {__version__}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 a corral error, 2 bad usage."""
    command = typer.main.get_command(app)
    services.cache_clear()  # settings are read afresh on every invocation
    try:
        command.main(args=argv, prog_name="corral", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        errors.print("aborted")
        return 1
    except typer.TyperException as exc:  # bad usage: unknown command, missing argument, ...
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            errors.print(f"error: {exc}")
        return int(getattr(exc, "exit_code", 2))
    except CorralError as exc:
        errors.print(f"[bold red]error:[/] {exc}", markup=True)
        return 1
    except ValidationError as exc:  # a CORRAL_* setting that does not parse
        for problem in exc.errors():
            name = "CORRAL_" + "__".join(str(p) for p in problem["loc"]).upper()
            errors.print(f"[bold red]error:[/] invalid setting {name}: {problem['msg']}", markup=True)
        return 2
    return 0


def run() -> None:
    sys.exit(main())
