"""The composition root: the one place that turns settings into wired services."""

from __future__ import annotations

from dataclasses import dataclass

from corral.registry.environment import current_user
from corral.registry.service import Registry
from corral.settings import Settings
from corral.storage import open_artifact_store, open_registry_store


@dataclass
class Services:
    """Everything a front end (SDK functions, CLI, later the API) talks to."""

    settings: Settings
    registry: Registry

    def close(self) -> None:
        """Release database connections."""
        self.registry.store.close()


def build_services(settings: Settings | None = None) -> Services:
    """Open the stores named by ``settings`` (migrating the schema) and wire the services."""
    settings = settings or Settings()
    store = open_registry_store(settings.resolved_database_url())
    artifacts = open_artifact_store(settings.resolved_artifacts_url())
    registry = Registry(
        store,
        artifacts,
        actor=settings.user or current_user(),
        verify_rows=settings.registry.verify_rows,
        profile_rows=settings.registry.profile_rows,
    )
    return Services(settings=settings, registry=registry)


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
