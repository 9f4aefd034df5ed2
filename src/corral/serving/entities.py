"""Deployments: named endpoints that follow a model alias."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from corral.core.refs import ModelRef
from corral.errors import ConfigurationError


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
class GuardPolicy:
    """When a server takes a shadow, split or canary off the traffic on its own.

    A member is removed once it has served at least ``min_requests`` in a process and its error rate exceeds
    the champion's by more than ``max_error_rate_increase``, or its p99 latency is over ``max_latency_ratio``
    times the champion's (and over ``min_latency_ms``, so fast models' noise does not count).
    """

    enabled: bool = True
    min_requests: int = 100
    max_error_rate_increase: float = 0.05
    max_latency_ratio: float = 5.0
    min_latency_ms: float = 50.0

    def __post_init__(self) -> None:
        if self.min_requests < 1 or not 0 <= self.max_error_rate_increase <= 1:
            raise ConfigurationError("guard: min_requests must be at least 1 and max_error_rate_increase in [0, 1]")
        if self.max_latency_ratio < 1 or self.min_latency_ms < 0:
            raise ConfigurationError("guard: max_latency_ratio must be at least 1 and min_latency_ms not negative")

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "min_requests": self.min_requests,
            "max_error_rate_increase": self.max_error_rate_increase,
            "max_latency_ratio": self.max_latency_ratio,
            "min_latency_ms": self.min_latency_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GuardPolicy:
        if not data:
            return cls()
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigurationError(f"unknown guard settings {sorted(unknown)}")
        return cls(**data)


ISOLATION_MODES = ("auto", "in_process", "isolated")


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    """Where and within what limits a deployment's versions run.

    Attributes:
        isolation: ``in_process`` runs the model in the server's own Python; ``isolated`` in a worker process
            with the version's own virtual environment (built from its recorded requirements); ``auto`` (the
            default) isolates a version only when the server's installed libraries differ from those it
            recorded.
        device: ``cpu``, or ``cuda`` / ``cuda:N`` for runtimes that use a GPU (PyTorch).
        timeout_seconds: longest a request may wait for the model; past it the caller gets a 504 naming the
            deployment (an isolated worker is killed and restarted; an in-process call is abandoned).
        max_concurrency: requests inside the model at once in one process (``None``: no limit).
        max_queue: requests allowed to wait for a free place beyond ``max_concurrency``; more get a 429
            with ``Retry-After``.
        max_memory_mb: an isolated worker's memory limit (address space), ``None`` for none.
    """

    isolation: str = "auto"
    device: str = "cpu"
    timeout_seconds: float | None = 30.0
    max_concurrency: int | None = None
    max_queue: int = 1000
    max_memory_mb: int | None = None

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATION_MODES:
            raise ConfigurationError(f"isolation {self.isolation!r} is not one of {', '.join(ISOLATION_MODES)}")
        device = self.device.split(":", 1)
        if device[0] not in ("cpu", "cuda") or (len(device) == 2 and not device[1].isdigit()):
            raise ConfigurationError(f"device {self.device!r} is not cpu, cuda or cuda:N")
        if self.timeout_seconds is not None and not 0 < self.timeout_seconds <= 3600:
            raise ConfigurationError(f"timeout_seconds must be in (0, 3600], got {self.timeout_seconds}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.max_queue < 0:
            raise ConfigurationError(f"max_queue must not be negative, got {self.max_queue}")
        if self.max_memory_mb is not None and self.max_memory_mb < 64:
            raise ConfigurationError(f"max_memory_mb must be at least 64, got {self.max_memory_mb}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "isolation": self.isolation,
            "device": self.device,
            "timeout_seconds": self.timeout_seconds,
            "max_concurrency": self.max_concurrency,
            "max_queue": self.max_queue,
            "max_memory_mb": self.max_memory_mb,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ExecutionPolicy:
        if not data:
            return cls()
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigurationError(f"unknown execution settings {sorted(unknown)}")
        return cls(**data)


SHADOW, SPLIT, CANARY = "shadow", "split", "canary"
ROLES = (SHADOW, SPLIT, CANARY)


@dataclass(frozen=True, slots=True)
class Member:
    """Another model version on a deployment's traffic, beside the champion.

    Attributes:
        role: ``shadow`` gets a copy of every request off the response path (its output is recorded,
            never returned); ``split`` answers ``percent`` of the requests (sticky per routing key);
            ``canary`` is a split whose share a rollout raises step by step.
        percent: the share of requests a split or canary answers (0 < percent < 100); 0 for a shadow.
    """

    model: str
    version: int
    role: str
    percent: float = 0.0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigurationError(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.role == SHADOW and self.percent:
            raise ConfigurationError(f"a shadow takes a copy of every request; {self.ref} cannot have a share")
        if self.role != SHADOW and not 0 < self.percent < 100:
            raise ConfigurationError(f"{self.role} {self.ref} needs a share between 0 and 100 %, got {self.percent}")

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.model, version=self.version)

    @property
    def key(self) -> tuple[str, int]:
        return (self.model, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "role": self.role, "percent": self.percent}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Member:
        return cls(str(data["model"]), int(data["version"]), str(data["role"]), float(data.get("percent", 0.0)))


@dataclass(frozen=True, slots=True)
class Deployment:
    """A named endpoint serving whatever version ``model@alias`` points at.

    Attributes:
        name: the endpoint name (the Open Inference Protocol's model name).
        model: the registered model it serves.
        alias: the alias it follows (``champion`` by default).
        enabled: whether servers load it (the repository extension's load/unload).
        batching: the adaptive batching policy.
        members: other versions on the same traffic (shadows, splits, canaries).
        guard: when servers take a faulty member off the traffic on their own.
        execution: in process or isolated, on which device, within which limits.
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
    members: tuple[Member, ...] = ()
    guard: GuardPolicy = field(default_factory=GuardPolicy)
    execution: ExecutionPolicy = field(default_factory=ExecutionPolicy)

    @property
    def shadows(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.role == SHADOW)

    @property
    def answering(self) -> tuple[Member, ...]:
        """The splits and canaries: members that answer a share of the requests."""
        return tuple(m for m in self.members if m.role != SHADOW)

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
            "members": [m.to_dict() for m in self.members],
            "guard": self.guard.to_dict(),
            "execution": self.execution.to_dict(),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
