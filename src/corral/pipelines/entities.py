"""Pipelines and their runs: what the pipeline store keeps.

A :class:`Pipeline` names a training function (``module:function``), its data sources, the deployment it
feeds, and its triggers (a cron schedule or an interval, alert rules, or a manual run). Each trigger makes
a :class:`Run`: a job persisted in the store that one worker claims (a lease, renewed while it runs), so a
job survives a worker's restart, never runs twice at once, and a crashed run is marked failed once its
lease lapses, with its log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from corral.errors import ConfigurationError

QUEUED, RUNNING, SUCCEEDED, FAILED, REJECTED = "queued", "running", "succeeded", "failed", "rejected"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, REJECTED)
"""``rejected``: the run trained and registered a candidate that the evaluation gate refused."""
TRIGGERS = ("manual", "schedule", "alert")
GATE_FIELDS = ("passed", "verdict", "reason", "metric", "champion", "candidate", "difference", "test", "rows")
"""What a run's evaluation gate reports: the verdict and why, the metric, both versions' values on the same
rows, their difference, and the paired test (``None`` where the gate stopped before comparing)."""


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A retraining pipeline.

    Attributes:
        train: ``module:function`` taking ``(frame, context)`` and returning a fitted model.
        data: data sources, each a mapping with ``kind`` (``file``, ``sql``, ``production``) and its options
            (``path`` for a file or glob; ``url`` and ``query`` for SQL; ``window_seconds`` for production);
            the frames are concatenated.
        target: the label column in the training data.
        deployment: the deployment whose model the pipeline retrains.
        schedule: a five-field cron expression (UTC), or ``None``.
        every_seconds: an interval, or ``None`` (at most one of schedule and interval).
        on_alerts: alert metrics or rule names whose firing triggers a run (e.g. ``drift``, ``performance``).
        params: passed to the training function in its context.
        metric: the metric the gate compares (``accuracy``, ``roc_auc``, ``rmse``, ...).
        margin: how much worse than the champion the candidate may be and still pass.
        timeout_seconds: a run that trains longer is stopped and failed.
        shadow_requests: labelled requests a candidate must shadow before it takes a share of traffic.
        canary_steps: the shares (percent) the candidate answers in turn before it becomes the champion.
        step_requests: labelled requests each canary step must answer before the next.
        stage_seconds: or, if given, a stage also ends after this long (with at least one labelled request).
    """

    name: str
    train: str
    data: tuple[Mapping[str, Any], ...]
    target: str
    deployment: str
    schedule: str | None = None
    every_seconds: float | None = None
    on_alerts: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"
    margin: float = 0.0
    timeout_seconds: float = 3600.0
    shadow_requests: int = 200
    canary_steps: tuple[float, ...] = (10.0, 50.0)
    step_requests: int = 200
    stage_seconds: float | None = None
    enabled: bool = True
    created_by: str = ""
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        module, sep, function = self.train.partition(":")
        if not sep or not module or not function:
            raise ConfigurationError(f"--train must be module:function, got {self.train!r}")
        if self.schedule is not None and self.every_seconds is not None:
            raise ConfigurationError("give a schedule or an interval, not both")
        if self.every_seconds is not None and self.every_seconds <= 0:
            raise ConfigurationError(f"the interval must be positive, got {self.every_seconds} s")
        if not self.data:
            raise ConfigurationError("a pipeline needs at least one data source")
        if self.timeout_seconds <= 0:
            raise ConfigurationError("timeout_seconds must be positive")
        if self.stage_seconds is not None and self.stage_seconds <= 0:
            raise ConfigurationError(f"stage_seconds must be positive, got {self.stage_seconds}")
        if self.shadow_requests < 1 or self.step_requests < 1:
            raise ConfigurationError("shadow_requests and step_requests must be at least 1")
        steps = list(self.canary_steps)
        if any(not 0 < step < 100 for step in steps) or steps != sorted(set(steps)):
            raise ConfigurationError(f"canary steps must rise strictly between 0 and 100 %, got {steps}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "train": self.train,
            "data": [dict(d) for d in self.data],
            "target": self.target,
            "deployment": self.deployment,
            "schedule": self.schedule,
            "every_seconds": self.every_seconds,
            "on_alerts": list(self.on_alerts),
            "params": dict(self.params),
            "metric": self.metric,
            "margin": self.margin,
            "timeout_seconds": self.timeout_seconds,
            "shadow_requests": self.shadow_requests,
            "canary_steps": list(self.canary_steps),
            "step_requests": self.step_requests,
            "stage_seconds": self.stage_seconds,
            "enabled": self.enabled,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pipeline:
        created = data.get("created_at")
        return cls(
            name=str(data["name"]),
            train=str(data["train"]),
            data=tuple(dict(d) for d in data["data"]),
            target=str(data["target"]),
            deployment=str(data["deployment"]),
            schedule=data.get("schedule"),
            every_seconds=data.get("every_seconds"),
            on_alerts=tuple(data.get("on_alerts") or ()),
            params=dict(data.get("params") or {}),
            metric=str(data.get("metric", "accuracy")),
            margin=float(data.get("margin", 0.0)),
            timeout_seconds=float(data.get("timeout_seconds", 3600.0)),
            shadow_requests=int(data.get("shadow_requests", 200)),
            canary_steps=tuple(float(x) for x in data.get("canary_steps", (10.0, 50.0))),
            step_requests=int(data.get("step_requests", 200)),
            stage_seconds=data.get("stage_seconds"),
            enabled=bool(data.get("enabled", True)),
            created_by=str(data.get("created_by", "")),
            created_at=datetime.fromisoformat(created) if created else None,
        )


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of a pipeline: a job in the store.

    ``lease_until`` is the time a running run's worker promised to report by; a worker renews it while the
    run goes on, and a running run whose lease lapsed belonged to a worker that died.
    """

    id: str
    pipeline: str
    trigger: str
    state: str
    created_at: datetime
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    lease_until: datetime | None = None
    attempt: int = 0
    result: Mapping[str, Any] = field(default_factory=dict)
    log: str = ""

    @property
    def wait_seconds(self) -> float | None:
        """Seconds from queueing to a worker's claim; ``None`` while queued."""
        return _seconds(self.created_at, self.started_at)

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from a worker's claim to the end; ``None`` until the run ends."""
        return _seconds(self.started_at, self.finished_at)

    @property
    def candidate(self) -> str | None:
        """The version the run registered (``name/3``), if it got that far."""
        found = self.result.get("candidate")
        return str(found) if found is not None else None

    @property
    def gate(self) -> dict[str, Any] | None:
        """The evaluation gate's result with every field of :data:`GATE_FIELDS`; ``None`` if the gate never ran."""
        found = self.result.get("gate")
        if not isinstance(found, Mapping):
            return None
        return {name: found.get(name) for name in GATE_FIELDS}

    @property
    def error(self) -> str | None:
        """Why a failed run failed; ``None`` for any other state (a rejected run says why in ``reason``)."""
        return self.reason if self.state == FAILED else None

    def to_dict(self) -> dict[str, Any]:
        """The run without its log (which can be long): state, times, result, and the fields read from it."""
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "trigger": self.trigger,
            "state": self.state,
            "reason": self.reason,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "wait_seconds": self.wait_seconds,
            "duration_seconds": self.duration_seconds,
            "worker": self.worker,
            "lease_until": _iso(self.lease_until),
            "attempt": self.attempt,
            "candidate": self.candidate,
            "gate": self.gate,
            "error": self.error,
            "result": dict(self.result),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()
