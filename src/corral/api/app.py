"""The FastAPI application: thin routes over the services and the model server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.middleware.cors import CORSMiddleware

from corral import __version__
from corral.api import alerts as alerts_api
from corral.api import audit as audit_api
from corral.api import audit_explain as audit_explain_api
from corral.api import auth, errors, members, reports, responses, v1, v2
from corral.api import monitoring as monitoring_api
from corral.api import pipelines as pipelines_api
from corral.api.metrics import ServingMetrics
from corral.api.middleware import OperationsMiddleware, RequestBodyMiddleware, TrustedHostsMiddleware
from corral.app import (
    Services,
    build_alert_loop,
    build_audit,
    build_checkpointer,
    build_explainer,
    build_monitoring,
    build_server,
    build_services,
    build_worker,
)
from corral.dashboard import pages as dashboard
from corral.settings import Settings


class Background:
    """What runs beside the request path in a server process: the sinks, the model server, the alert loop,
    the pipeline worker; started in this order and stopped in the reverse."""

    def __init__(self, services: Services, metrics: ServingMetrics) -> None:
        audit_on = services.settings.audit.enabled
        self.monitoring = build_monitoring(services)
        self.checkpointer = build_checkpointer(services) if audit_on else None
        self.explainer = build_explainer(services) if audit_on else None
        self.audit = build_audit(services, self.checkpointer, self.explainer, on_lost=metrics.unrecorded)
        self.sinks = [sink for sink in (self.monitoring, self.audit) if sink is not None]
        self.server = build_server(services, observer=metrics, sinks=self.sinks)
        self.alert_loop = build_alert_loop(services)
        self.worker = build_worker(services) if services.settings.pipelines.worker else None

    async def start(self) -> None:
        if self.checkpointer is not None:  # what a killed process stored but did not write out
            await asyncio.to_thread(self.checkpointer.publish_missing)
        for sink in self.sinks:
            await sink.start()
        await self.server.start()
        if self.alert_loop is not None:
            await self.alert_loop.start()
        if self.worker is not None:
            self.worker.start()

    async def stop(self) -> None:
        if self.worker is not None:
            await asyncio.to_thread(self.worker.stop, 5.0)  # a run still going lets its lease lapse
        if self.alert_loop is not None:
            await self.alert_loop.stop()
        await self.server.stop()
        for sink in self.sinks:
            await sink.stop()  # the last records and partial windows reach the store
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.flush)  # sign the last records before exit
        if self.explainer is not None:
            await asyncio.to_thread(self.explainer.stop)


def create_app(
    services: Services, *, close_services: bool = False, multiprocess_metrics_dir: str | None = None
) -> FastAPI:
    """The corral HTTP application over ``services``.

    The model server starts with the app (loading every enabled deployment)
    and stops with it, finishing in-flight requests. With several worker
    processes, ``multiprocess_metrics_dir`` is prometheus-client's shared
    folder, and ``/metrics`` reports all of them together.
    """
    metrics = ServingMetrics()
    background = Background(services, metrics)
    server = background.server

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await background.start()
        try:
            yield
        finally:
            await background.stop()
            if close_services:
                services.close()

    app = FastAPI(
        title="corral",
        version=__version__,
        description="Model serving (Open Inference Protocol V2 and a plain JSON API) and registry operations.",
        lifespan=lifespan,
    )
    app.state.server = server
    app.state.services = services
    app.state.metrics = metrics
    app.state.monitoring = background.monitoring
    app.state.audit = background.audit
    app.state.explainer = background.explainer
    app.state.alert_loop = background.alert_loop
    app.state.worker = background.worker
    serving = services.settings.serving
    errors.install(app, extra_roots=[str(services.settings.home.resolve()), services.settings.resolved_artifacts_url()])
    auth.install(app, services)
    app.include_router(v2.router(server, max_json_depth=serving.max_json_depth))
    app.include_router(v1.router(services, server))
    app.include_router(members.router(services, server))
    app.include_router(reports.router(services))
    app.include_router(audit_api.router(services))
    app.include_router(audit_explain_api.router(services))
    app.include_router(monitoring_api.router(services))
    app.include_router(alerts_api.router(services))
    dashboard.install(app, services, server, errors.status_for)
    app.include_router(pipelines_api.router(services))

    responses.install(app, v1.PLAIN_ROUTES, v2.PLAIN_ROUTES)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.exposition(multiprocess_metrics_dir), media_type=CONTENT_TYPE_LATEST)

    # innermost, after authentication: a body is read (within the limit) only for a request that may be served
    app.add_middleware(
        RequestBodyMiddleware, max_body_bytes=serving.max_body_bytes, max_json_depth=serving.max_json_depth
    )
    security = services.settings.auth
    if security.enabled:  # before any body is read: every request was looked up in the permission table
        app.add_middleware(
            auth.AuthMiddleware, owner=app, tokens=services.tokens, record_denials=security.record_denials
        )
    if security.cors_origins:  # answers preflights before authentication, as browsers send them without tokens
        app.add_middleware(
            CORSMiddleware,
            allow_origins=security.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Content-Encoding",
                "Inference-Header-Content-Length",
                "X-Request-Id",
                "X-Routing-Key",
            ],
            max_age=600,
        )
    hosts = ["*"] if "*" in security.allowed_hosts else auth.allowed_hosts(security.allowed_hosts, security.bind_host)
    app.add_middleware(TrustedHostsMiddleware, allowed_hosts=hosts)
    app.add_middleware(
        OperationsMiddleware, max_body_bytes=serving.max_body_bytes, metrics=metrics, access_log=serving.access_log
    )
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn (``--factory``): settings from the environment, one per worker process."""
    # set by `corral serve --workers N` before the workers start (prometheus-client's own convention)
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return create_app(build_services(Settings()), close_services=True, multiprocess_metrics_dir=shared)
