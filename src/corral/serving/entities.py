"""Deployments: named endpoints that follow a model alias."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from corral.core.refs import ModelRef


@dataclass(frozen=True, slots=True)
class BatchingPolicy:
    """How concurrent requests to one deployment are coalesced into model calls.

    Attributes:
        enabled: coalesce at all.
        max_batch_size: most rows in one model call.
        max_wait_ms: under load, how long a batch may wait for more rows before
            it runs. An idle deployment never waits: a lone request runs at once.
    """

    enabled: bool = True
    max_batch_size: int = 64
    max_wait_ms: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "max_batch_size": self.max_batch_size, "max_wait_ms": self.max_wait_ms}


@dataclass(frozen=True, slots=True)
class Deployment:
    """A named endpoint serving whatever version ``model@alias`` points at.

    Attributes:
        name: the endpoint name (the Open Inference Protocol's model name).
        model: the registered model it serves.
        alias: the alias it follows (``champion`` by default).
        enabled: whether servers load it (the repository extension's load/unload).
        batching: the adaptive batching policy.
    """

    name: str
    model: str
    alias: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    enabled: bool = True
    batching: BatchingPolicy = field(default_factory=BatchingPolicy)
    description: str = ""

    @property
    def target(self) -> ModelRef:
        return ModelRef(self.model, alias=self.alias)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "alias": self.alias,
            "enabled": self.enabled,
            "batching": self.batching.to_dict(),
            "description": self.description,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
