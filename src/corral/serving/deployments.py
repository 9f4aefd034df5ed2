"""The deployments service: create, change and remove named endpoints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from corral.core.refs import validate_alias, validate_name
from corral.errors import ConfigurationError
from corral.serving.entities import BatchingPolicy, Deployment
from corral.serving.ports import DeploymentStore

MAX_BATCH = 100_000


def check_batching(policy: BatchingPolicy) -> BatchingPolicy:
    """Refuse batching settings that cannot work, naming the setting."""
    if not 1 <= policy.max_batch_size <= MAX_BATCH:
        raise ConfigurationError(f"max_batch_size must be between 1 and {MAX_BATCH}, got {policy.max_batch_size}")
    if not 0 <= policy.max_wait_ms <= 1000:
        raise ConfigurationError(f"max_wait_ms must be between 0 and 1000, got {policy.max_wait_ms}")
    return policy


class Deployments:
    """Deployments in the store. Servers pick up every change on their next refresh."""

    def __init__(self, store: DeploymentStore, *, actor: str, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.actor = actor
        self.clock = clock or (lambda: datetime.now(UTC))

    def create(
        self,
        name: str,
        *,
        model: str,
        alias: str = "champion",
        batching: BatchingPolicy | None = None,
        description: str = "",
        actor: str | None = None,
    ) -> Deployment:
        """Create a deployment serving ``model@alias``.

        Raises:
            InvalidNameError, ModelNotFoundError, AlreadyExistsError, ConfigurationError.
        """
        now = self.clock()
        deployment = Deployment(
            name=validate_name(name, what="deployment name"),
            model=validate_name(model),
            alias=validate_alias(alias),
            created_by=actor or self.actor,
            created_at=now,
            updated_at=now,
            batching=check_batching(batching or BatchingPolicy()),
            description=description,
        )
        return self.store.create(deployment)

    def get(self, name: str) -> Deployment:
        return self.store.get(name)

    def list(self) -> list[Deployment]:
        return self.store.list()

    def update(
        self,
        name: str,
        *,
        alias: str | None = None,
        batching: BatchingPolicy | None = None,
        enabled: bool | None = None,
        description: str | None = None,
    ) -> Deployment:
        """Change what a deployment follows or how it batches; unchanged fields stay."""
        current = self.store.get(name)
        changed = replace(
            current,
            alias=validate_alias(alias) if alias is not None else current.alias,
            batching=check_batching(batching) if batching is not None else current.batching,
            enabled=enabled if enabled is not None else current.enabled,
            description=description if description is not None else current.description,
            updated_at=self.clock(),
        )
        return self.store.update(changed)

    def delete(self, name: str) -> None:
        self.store.delete(name)
