"""Storage adapters: the only home of SQLAlchemy and of artifact I/O.

Start at :func:`open_registry_store` and :func:`open_artifact_store`, which
pick an implementation by URL scheme (``memory:``, ``sqlite:``,
``postgresql+psycopg:``; any fsspec URL or a local path for artifacts).
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.alerts.ports import AlertStore
from corral.audit.ports import AuditStore
from corral.errors import ConfigurationError
from corral.monitoring.ports import FeedbackStore, MonitoringStore
from corral.pipelines.ports import PipelineStore
from corral.registry.ports import ArtifactStore, RegistryStore
from corral.security.ports import TokenStore
from corral.serving.ports import DeploymentStore


@dataclass
class Database:
    """The stores that share one database (one engine for SQL URLs)."""

    registry: RegistryStore
    deployments: DeploymentStore
    monitoring: MonitoringStore
    audit: AuditStore
    feedback: FeedbackStore
    alerts: AlertStore
    pipelines: PipelineStore
    tokens: TokenStore

    def close(self) -> None:
        self.registry.close()


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Every store for ``url``, sharing one connection pool; the schema is migrated first."""
    registry = open_registry_store(url, migrate=migrate)
    from corral.storage import memory

    if isinstance(registry, memory.MemoryRegistryStore):
        audit = memory.MemoryAuditStore()
        return Database(
            registry,
            memory.MemoryDeploymentStore(registry),
            memory.MemoryMonitoringStore(),
            audit,
            memory.MemoryFeedbackStore(audit),
            memory.MemoryAlertStore(),
            memory.MemoryPipelineStore(),
            memory.MemoryTokenStore(),
        )
    from corral.storage.sql.alert_store import SqlAlertStore
    from corral.storage.sql.audit_store import SqlAuditStore
    from corral.storage.sql.deployment_store import SqlDeploymentStore
    from corral.storage.sql.feedback_store import SqlFeedbackStore
    from corral.storage.sql.monitoring_store import SqlMonitoringStore
    from corral.storage.sql.pipeline_store import SqlPipelineStore
    from corral.storage.sql.registry_store import SqlRegistryStore
    from corral.storage.sql.token_store import SqlTokenStore

    assert isinstance(registry, SqlRegistryStore)
    engine = registry.engine
    return Database(
        registry,
        SqlDeploymentStore(engine),
        SqlMonitoringStore(engine),
        SqlAuditStore(engine),
        SqlFeedbackStore(engine),
        SqlAlertStore(engine),
        SqlPipelineStore(engine),
        SqlTokenStore(engine),
    )


def open_registry_store(url: str, *, migrate: bool = True) -> RegistryStore:
    """A registry store for ``url``; SQL schemas are migrated to the newest revision."""
    if url in ("memory:", "memory://"):
        from corral.storage.memory import MemoryRegistryStore

        return MemoryRegistryStore()
    if url.startswith(("sqlite:", "postgresql", "postgres:")):
        from corral.storage.sql.engine import create_engine
        from corral.storage.sql.registry_store import SqlRegistryStore

        return SqlRegistryStore(create_engine(url), migrate=migrate)
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use sqlite:///path, postgresql+psycopg://user@host/db or memory:"
    )


def open_artifact_store(url: str) -> ArtifactStore:
    """A content-addressed artifact store for a folder path or fsspec URL."""
    from corral.storage.artifacts import FsspecArtifactStore

    return FsspecArtifactStore(url)


__all__ = ["Database", "open_artifact_store", "open_database", "open_registry_store"]
