"""What the registry stores: models, versions, their lineage, and alias moves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from corral.core.fingerprint import DataFingerprint
from corral.core.refs import ModelRef
from corral.core.schema import Signature
from corral.runtimes.base import RuntimeSpec


class VersionStatus(StrEnum):
    """A version is ``ready`` to serve, or ``archived``: kept for the record, never served."""

    READY = "ready"
    ARCHIVED = "archived"


class AliasAction(StrEnum):
    SET = "set"
    ROLLBACK = "rollback"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a version came from: its data, its code, its settings and its libraries."""

    data: DataFingerprint | None = None
    code_commit: str | None = None
    code_dirty: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    requirements: dict[str, str] = field(default_factory=dict)
    python: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data.to_dict() if self.data else None,
            "code_commit": self.code_commit,
            "code_dirty": self.code_dirty,
            "params": self.params,
            "metrics": self.metrics,
            "requirements": self.requirements,
            "python": self.python,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        fp = data.get("data")
        return cls(
            data=DataFingerprint(fp["sha256"], int(fp["rows"]), int(fp["columns"]), fp.get("source")) if fp else None,
            code_commit=data.get("code_commit"),
            code_dirty=data.get("code_dirty"),
            params=dict(data.get("params") or {}),
            metrics=dict(data.get("metrics") or {}),
            requirements=dict(data.get("requirements") or {}),
            python=data.get("python"),
        )


@dataclass(frozen=True, slots=True)
class VersionTrust:
    """An admin's explicit opt-in to load a version whose artifact runs code when loaded (a pickle).

    A trusted version is still never unpickled inside a server: servers load it in a worker process.
    """

    by: str
    at: datetime
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "at": self.at.isoformat(), "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionTrust:
        at = data["at"]
        return cls(str(data["by"]), at if isinstance(at, datetime) else datetime.fromisoformat(at), str(data["reason"]))


@dataclass(frozen=True, slots=True)
class ArtifactSignature:
    """A signature over a version's name, number and artifact SHA-256 (see :mod:`corral.registry.signing`).

    Attributes:
        algorithm: ``ed25519``.
        key_id: the first 16 hex digits of the SHA-256 of the raw public key that checks it.
        value: the signature, hex.
    """

    algorithm: str
    key_id: str
    value: str

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "key_id": self.key_id, "value": self.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArtifactSignature:
        return cls(str(data["algorithm"]), str(data["key_id"]), str(data["value"]))


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One immutable registered version of a model.

    Only ``status`` (and its reason), ``trust`` (an admin's opt-in to load a pickle) and
    ``artifact_signature`` (set at registration, or later by an admin) ever change after registration.
    """

    name: str
    version: int
    flavor: str
    artifact_sha256: str
    artifact_size: int
    signature: Signature
    runtime: RuntimeSpec
    lineage: Lineage
    created_by: str
    created_at: datetime
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    status: VersionStatus = VersionStatus.READY
    status_reason: str | None = None
    trust: VersionTrust | None = None
    artifact_signature: ArtifactSignature | None = None

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, version=self.version)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, used by ``--json`` and, later, the API."""
        return {
            "name": self.name,
            "version": self.version,
            "flavor": self.flavor,
            "status": str(self.status),
            "status_reason": self.status_reason,
            "artifact": {
                "sha256": self.artifact_sha256,
                "size": self.artifact_size,
                "signature": self.artifact_signature.to_dict() if self.artifact_signature else None,
            },
            "trust": self.trust.to_dict() if self.trust else None,
            "signature": self.signature.to_dict(),
            "runtime": self.runtime.to_dict(),
            "lineage": self.lineage.to_dict(),
            "description": self.description,
            "tags": self.tags,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A named model: its versions share the name, aliases point into them."""

    name: str
    created_at: datetime
    created_by: str
    latest_version: int
    aliases: dict[str, int] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "latest_version": self.latest_version,
            "aliases": self.aliases,
            "description": self.description,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class AliasEvent:
    """One move of an alias: who moved it from where to where, when and why."""

    id: int
    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    action: AliasAction
    actor: str
    reason: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "action": str(self.action),
            "actor": self.actor,
            "reason": self.reason,
            "at": self.at.isoformat(),
        }
