"""The composition root: the one place that turns settings into wired services."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from corral.audit.sink import AuditSink
from corral.core.events import PredictionSink
from corral.core.profile import Profile
from corral.monitoring.feedback import FeedbackService
from corral.monitoring.sink import MonitoringSink
from corral.registry.environment import current_user
from corral.registry.service import Registry
from corral.serving.deployments import Deployments
from corral.serving.server import ModelServer, ServingObserver
from corral.settings import Settings
from corral.storage import Database, open_artifact_store, open_database


@dataclass
class Services:
    """Everything a front end (SDK functions, CLI, later the API) talks to."""

    settings: Settings
    registry: Registry
    deployments: Deployments
    database: Database
    feedback: FeedbackService

    def close(self) -> None:
        """Release database connections."""
        self.database.close()


def build_services(settings: Settings | None = None) -> Services:
    """Open the stores named by ``settings`` (migrating the schema) and wire the services."""
    settings = settings or Settings()
    database = open_database(settings.resolved_database_url())
    artifacts = open_artifact_store(settings.resolved_artifacts_url())
    actor = settings.user or current_user()
    registry = Registry(
        database.registry,
        artifacts,
        actor=actor,
        verify_rows=settings.registry.verify_rows,
        profile_rows=settings.registry.profile_rows,
    )
    deployments = Deployments(database.deployments, actor=actor)
    feedback = FeedbackService(database.feedback, lambda m, v: registry.get_version(m, v).signature.outputs)
    return Services(settings=settings, registry=registry, deployments=deployments, database=database, feedback=feedback)


def build_server(
    services: Services, observer: ServingObserver | None = None, sinks: Sequence[PredictionSink] = ()
) -> ModelServer:
    """The model server over ``services``, configured by ``services.settings.serving``."""
    serving = services.settings.serving
    return ModelServer(
        services.database.deployments,
        services.registry,
        refresh_seconds=serving.refresh_seconds,
        max_rows=serving.max_rows,
        max_body_bytes=serving.max_body_bytes,
        sinks=sinks,
        observer=observer,
    )


def build_monitoring(services: Services) -> MonitoringSink | None:
    """The sink that keeps production windows, or ``None`` when monitoring is disabled."""
    settings = services.settings.monitoring
    if not settings.enabled:
        return None
    registry = services.registry

    def describe(model: str, version: int) -> tuple[Profile | None, tuple[Any, ...] | None]:
        return registry.get_profile(model, version), registry.get_version(model, version).signature.outputs.classes

    return MonitoringSink(
        services.database.monitoring,
        describe,
        lengths=settings.windows,
        process_seconds=settings.process_seconds,
        flush_seconds=settings.flush_seconds,
        retention_seconds=settings.retention_days * 86400 if settings.retention_days is not None else None,
    )


def build_audit(services: Services) -> AuditSink | None:
    """The sink that appends every answered row to the prediction log, or ``None`` when the audit is disabled."""
    settings = services.settings.audit
    if not settings.enabled:
        return None
    registry = services.registry

    def describe(model: str, version: int) -> tuple[str, str | None]:
        record = registry.get_version(model, version)
        return record.artifact_sha256, record.lineage.data.sha256 if record.lineage.data is not None else None

    return AuditSink(services.database.audit, describe, mode=settings.mode, max_batch=settings.max_batch)


def upgrade_database(settings: Settings) -> tuple[str | None, str]:
    """Migrate the configured database to the newest schema; returns (before, after) revisions."""
    from corral.storage.sql.engine import create_engine, current_revision, head_revision, upgrade

    engine = create_engine(settings.resolved_database_url())
    try:
        before = current_revision(engine)
        upgrade(engine)
        return before, head_revision()
    finally:
        engine.dispose()


def database_revisions(settings: Settings) -> tuple[str | None, str]:
    """(revision of the configured database, newest revision this corral knows)."""
    from corral.storage.sql.engine import create_engine, current_revision, head_revision

    engine = create_engine(settings.resolved_database_url())
    try:
        return current_revision(engine), head_revision()
    finally:
        engine.dispose()
