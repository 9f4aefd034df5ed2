"""What serving needs from storage: a deployment store."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from corral.serving.entities import Deployment


class DeploymentStore(Protocol):
    """Persistence of deployments; every method is one atomic operation."""

    def create(self, deployment: Deployment) -> Deployment:
        """Store a new deployment. Raises AlreadyExistsError when the name is taken."""
        ...

    def get(self, name: str) -> Deployment:
        """Raises DeploymentNotFoundError."""
        ...

    def list(self) -> list[Deployment]:
        """All deployments, by name."""
        ...

    def update(self, deployment: Deployment, *, expected: datetime | None = None) -> Deployment:
        """Replace a deployment's alias, batching, enabled flag, description, members and guard.

        With ``expected``, only if the stored deployment's ``updated_at`` is still that (compare-and-set);
        otherwise ConflictError, so two read-modify-writes never lose one another's change.
        """
        ...

    def delete(self, name: str) -> None: ...

    def close(self) -> None: ...
