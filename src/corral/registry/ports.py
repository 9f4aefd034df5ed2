"""The registry's ports: what it needs from storage, as small protocols.

Implementations live in ``corral.storage`` (memory, SQL) and state their
conformance; ``tests/contracts`` runs one suite against each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from corral.core.profile import Profile
from corral.core.schema import Signature
from corral.registry.entities import (
    AliasAction,
    AliasEvent,
    ArtifactSignature,
    ModelVersion,
    RegisteredModel,
    VersionStatus,
    VersionTrust,
)
from corral.runtimes.base import RuntimeSpec

ANY = object()
"""Pass as ``expected`` to :meth:`RegistryStore.move_alias` to skip the compare-and-set check."""


@dataclass(frozen=True)
class AliasHead:
    """Pass as ``expected`` to :meth:`RegistryStore.move_alias`: the alias points at ``version`` **and** its
    newest event is ``event_id`` (``None``: it has none), i.e. nothing moved it since the caller read its
    history. A version alone misses A→B→A by someone else meanwhile, which changes what a rollback means."""

    version: int | None
    event_id: int | None


VersionGuard = Callable[[str, int], str | None]
"""Says why a version is still in use (e.g. stored predictions reference it), or ``None``."""

Seal = Callable[[ModelVersion], ArtifactSignature | None]
"""Signs a version once its number is known (inside :meth:`RegistryStore.create_version`'s transaction)."""


class RegistryStore(Protocol):
    """Persistence of registered models, versions, profiles and aliases.

    Every method is one atomic operation; none leaves partial state behind.
    """

    def create_version(self, draft: ModelVersion, profile: Profile | None, *, seal: Seal | None = None) -> ModelVersion:
        """Store ``draft`` under the next version number of its model (creating the model).

        Numbers are unique and gap-free per model even under concurrent callers;
        ``draft.version``, ``status``, ``trust`` and ``artifact_signature`` are ignored. ``seal`` is called
        with the numbered version in the same transaction and its signature stored with it; when it raises,
        nothing is stored.
        """
        ...

    def get_model(self, name: str) -> RegisteredModel: ...

    def list_models(self) -> list[RegisteredModel]: ...

    def get_version(self, name: str, version: int) -> ModelVersion: ...

    def list_versions(self, name: str) -> list[ModelVersion]: ...

    def get_profile(self, name: str, version: int) -> Profile | None: ...

    def move_alias(
        self,
        name: str,
        alias: str,
        to_version: int | None,
        *,
        expected: object,
        action: AliasAction,
        actor: str,
        reason: str,
        at: datetime,
    ) -> AliasEvent:
        """Point ``alias`` at ``to_version`` (``None`` removes it) and record the move.

        Raises:
            VersionNotFoundError / VersionArchivedError: for a bad target.
            ConflictError: when ``expected`` is not ``ANY`` and the alias does not
                currently point there (a version), or has moved since (an :class:`AliasHead`).
        """
        ...

    def alias_events(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Alias moves, oldest first."""
        ...

    def set_status(self, name: str, version: int, status: VersionStatus, *, reason: str | None) -> ModelVersion:
        """Archive or restore. Archiving a version an alias points at raises VersionInUseError."""
        ...

    def delete_version(self, name: str, version: int) -> None:
        """Remove a version and its profile. Raises VersionInUseError if an alias points at it."""
        ...

    def set_trust(self, name: str, version: int, trust: VersionTrust | None) -> ModelVersion:
        """Record an admin's trust in a version (``None`` revokes it); returns the updated version.

        Raises:
            ModelNotFoundError / VersionNotFoundError.
        """
        ...

    def set_requirements(self, name: str, version: int, requirements: dict[str, str]) -> ModelVersion:
        """Replace the library releases a version records (its lineage's ``requirements``); returns it updated.

        Raises:
            ModelNotFoundError / VersionNotFoundError.
        """
        ...

    def set_signature(self, name: str, version: int, signature: ArtifactSignature) -> ModelVersion:
        """Store a signature of a version registered before signing was configured; returns it updated.

        Raises:
            ModelNotFoundError / VersionNotFoundError.
        """
        ...

    def artifact_in_use(self, sha256: str) -> bool:
        """Whether any version still refers to this artifact."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


class ArtifactStore(Protocol):
    """Content-addressed blobs: stored under their SHA-256, verified on every read."""

    url: str

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its SHA-256 hex digest."""
        ...

    def get(self, sha256: str) -> bytes:
        """The bytes stored under ``sha256``.

        Raises:
            ArtifactNotFoundError: when there is no such blob.
            ArtifactIntegrityError: when the stored bytes no longer hash to ``sha256``.
        """
        ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None: ...


class ModelHost(Protocol):
    """Saves and loads a model somewhere other than this process (its own environment, for one).

    ``Registry.log_model(path, host=...)`` registers through it: the host writes the model into ``folder``
    and returns the spec and a runtime answering from where it was loaded (closed after registration).
    ``recorded`` holds the library versions to record for the version, read after ``save_and_load``.
    """

    recorded: dict[str, str]

    def save_and_load(
        self,
        model: Any,
        folder: Path,
        *,
        flavor: str,
        signature: Signature | None,
        options: Mapping[str, Any],
        trusted: bool,
    ) -> tuple[RuntimeSpec, Any]: ...
