"""``corral serve``: the model server under uvicorn."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from typing import Annotated, Any

import typer

from corral.errors import ConfigurationError
from corral.settings import Settings


class JsonFormatter(logging.Formatter):
    """One JSON object per line: access logs are already JSON, other records are wrapped."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "corral.access":
            data = json.loads(record.getMessage())
        else:
            data = {"level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
            if record.exc_info:
                data["exception"] = self.formatException(record.exc_info)
        return json.dumps({"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), **data})


def log_config() -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "corral": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 or :: for every interface; needs authentication on).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes sharing the port.")] = 1,
    graceful_timeout: Annotated[int, typer.Option(help="Seconds to finish in-flight requests on shutdown.")] = 30,
) -> None:
    """Serve every deployment over HTTP: Open Inference Protocol V2, the JSON API and /metrics."""
    import uvicorn

    settings = Settings()  # fail fast, in this process, on bad settings
    _secure(settings, host)
    os.environ["CORRAL_AUTH__BIND_HOST"] = host  # the workers accept this host name besides the loopback ones
    if "OMP_NUM_THREADS" not in os.environ:
        # a model's OpenMP pool would otherwise take every core, fighting the event loop (and, with
        # several workers, each other): leave one core's share to each worker's event loop
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // (workers + 1)))
    # uvicorn handles SIGTERM itself (finishing in-flight requests), then raises it again once it has stopped;
    # under the default handler a clean shutdown would then end the process as killed (exit code -15)
    signal.signal(signal.SIGTERM, _stopped)
    shared_metrics = None
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # every worker writes its metrics here, so /metrics adds all processes up whichever one answers
        shared_metrics = tempfile.mkdtemp(prefix="corral-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared_metrics
    try:
        uvicorn.run(
            "corral.api.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=log_config(),
            access_log=False,
            timeout_graceful_shutdown=graceful_timeout,
            server_header=False,
        )
    finally:
        if shared_metrics is not None:  # leave no pointer to a removed folder for anything started later
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            shutil.rmtree(shared_metrics, ignore_errors=True)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _secure(settings: Settings, host: str) -> None:
    """With authentication off, listen on the loopback address only; with it on, make the first admin token
    here, before any worker starts, so that several workers never race to make one."""
    if not settings.auth.enabled:
        if not is_loopback(host):
            raise ConfigurationError(
                f"refusing to listen on {host} with authentication disabled (CORRAL_AUTH__ENABLED=false): anyone "
                "who can reach it could predict, promote and read the audit log; listen on 127.0.0.1, or turn "
                "authentication on"
            )
        _say(
            logging.WARNING,
            "authentication is disabled (CORRAL_AUTH__ENABLED=false): every route is open to anyone "
            f"who can reach {host}",
        )
        return
    from corral.app import build_services
    from corral.security.bootstrap import ensure_admin_token

    services = build_services(settings)
    try:
        issued = ensure_admin_token(services.tokens, settings.resolved_token_file())
    finally:
        services.close()
    if issued is not None:
        _say(
            logging.INFO,
            f"first start: the admin token is in {settings.resolved_token_file()} (readable by you only); "
            "`corral tokens create NAME --role ROLE` makes tokens for others",
        )


def _say(level: int, message: str) -> None:
    """One log line on stderr, formatted as the server's own lines are (before uvicorn sets logging up)."""
    record = logging.LogRecord("corral.serve", level, __file__, 0, message, None, None)
    print(JsonFormatter().format(record), file=sys.stderr, flush=True)


def _stopped(_signum: int, _frame: object) -> None:
    """SIGTERM outside uvicorn's own handling: before it starts serving, or after its graceful shutdown."""
    raise SystemExit(0)
