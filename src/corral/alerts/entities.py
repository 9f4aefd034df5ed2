"""Alert rules, alerts and deliveries: what the alert store keeps.

A :class:`Rule` says when a deployment's metric is bad (``metric op
threshold`` over a window, given enough samples). While it holds, one
:class:`Alert` is *firing* for that rule (never two: duplicates are
suppressed); when it stops holding, the alert is *resolved*. Each state
change puts one :class:`Delivery` per channel in a durable outbox, which the
dispatcher works off with retries, so a notification survives a restart and
reaches each channel once.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from corral.errors import AlertError

SEVERITIES = ("info", "warning", "critical")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
FIRING, RESOLVED = "firing", "resolved"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric rules may watch: its name (``prefix:`` takes a feature name) and what it means."""

    name: str
    description: str
    per_feature: bool = False


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("drifted_share", "share of features whose drift test fails (0..1)"),
        Metric("drifted_features", "number of features whose drift test fails"),
        Metric("drift_score", "one feature's drift score (1 = at its detector's threshold)", per_feature=True),
        Metric("prediction_drift", "1 when the model's outputs drifted, else 0"),
        Metric("missing_rate", "one feature's share of missing values", per_feature=True),
        Metric("quality_issues", "number of data-quality issues in the window"),
        Metric("critical_quality_issues", "number of critical data-quality issues (e.g. a feature all missing)"),
        Metric("rows", "rows served in the window"),
        *(
            Metric(name, f"realized {name} on the labelled rows of the window")
            for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "mae", "rmse", "r2")
        ),
        *(
            Metric(f"estimated_{name}", f"{name} estimated from the model's probabilities (CBPE), before labels")
            for name in ("accuracy", "precision", "recall", "f1", "roc_auc")
        ),
        Metric("accuracy_drop", "accuracy recorded at registration minus realized accuracy"),
        Metric("estimated_accuracy_drop", "accuracy recorded at registration minus estimated accuracy"),
    )
}


def check_metric(metric: str) -> None:
    """Raise :class:`AlertError` unless ``metric`` is known (``drift_score:age`` style for per-feature ones)."""
    base, _, feature = metric.partition(":")
    known = METRICS.get(base)
    if known is None:
        raise AlertError(f"unknown metric {metric!r}; known metrics: {', '.join(sorted(METRICS))}")
    if known.per_feature and not feature:
        raise AlertError(f"metric {base!r} needs a feature: write {base}:<feature>")
    if not known.per_feature and feature:
        raise AlertError(f"metric {base!r} takes no feature, got {metric!r}")


@dataclass(frozen=True, slots=True)
class Rule:
    """When a deployment's ``metric`` over its latest ``window`` compares ``op`` ``threshold``, alert.

    Args:
        min_samples: fewer rows (or labelled rows, for realized metrics) than this and the rule does not judge.
        cooldown_seconds: after an alert resolves, the rule does not fire again for this long (no flapping).
        channels: channel names to notify; empty means every configured channel.
    """

    deployment: str
    name: str
    metric: str
    op: str
    threshold: float
    window: int = 3600
    min_samples: int = 100
    severity: str = "warning"
    cooldown_seconds: float = 3600.0
    channels: tuple[str, ...] = ()
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 128:
            raise AlertError("a rule needs a name of 1 to 128 characters")
        check_metric(self.metric)
        if self.op not in OPERATORS:
            raise AlertError(f"rule {self.name!r}: operator {self.op!r} is not one of {', '.join(OPERATORS)}")
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise AlertError(f"rule {self.name!r}: threshold must be a finite number, got {self.threshold!r}")
        if self.severity not in SEVERITIES:
            raise AlertError(f"rule {self.name!r}: severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if self.window <= 0 or self.min_samples < 0 or self.cooldown_seconds < 0:
            raise AlertError(f"rule {self.name!r}: window must be positive, min_samples and cooldown not negative")

    def breached(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.threshold)

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g} over {self.window}s"

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "name": self.name,
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            "window": self.window,
            "min_samples": self.min_samples,
            "severity": self.severity,
            "cooldown_seconds": self.cooldown_seconds,
            "channels": list(self.channels),
            "enabled": self.enabled,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise AlertError(f"unknown rule fields: {', '.join(sorted(unknown))}")
        missing = {"deployment", "name", "metric", "op", "threshold"} - set(data)
        if missing:
            raise AlertError(f"a rule needs {', '.join(sorted(missing))}")
        values = dict(data)
        values["channels"] = tuple(values.get("channels") or ())
        return cls(**values)


DRIFT_MIN_SAMPLES = 500
"""Rows a window needs before the default drift rules judge it. PSI over the profile's 20 bins has a noise
floor of about (bins - 1) / rows on data drawn from the reference itself: 0.19 at 100 rows, next to the 0.2
threshold, so small windows would look drifted; at 500 rows it is 0.04."""


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def default_rules(deployment: str, window: int = 3600) -> list[Rule]:
    """What every deployment watches until its own rules are set."""
    return [
        Rule(deployment, "feature-drift", "drifted_features", ">=", 1, window, DRIFT_MIN_SAMPLES, "warning"),
        Rule(deployment, "dataset-drift", "drifted_share", ">=", 0.5, window, DRIFT_MIN_SAMPLES, "critical"),
        Rule(deployment, "prediction-drift", "prediction_drift", ">=", 1, window, 100, "warning"),
        Rule(deployment, "data-quality", "critical_quality_issues", ">=", 1, window, 1, "critical"),
        Rule(deployment, "accuracy-drop", "accuracy_drop", ">", 0.05, window, 100, "critical"),
        Rule(deployment, "estimated-accuracy-drop", "estimated_accuracy_drop", ">", 0.05, window, 100, "warning"),
    ]


@dataclass(frozen=True, slots=True)
class Alert:
    """One firing episode of a rule, from when it fired until it resolved."""

    id: str
    deployment: str
    rule: str
    metric: str
    severity: str
    state: str
    value: float | None
    threshold: float
    message: str
    opened_at: datetime
    updated_at: datetime
    window_start: datetime | None = None
    resolved_at: datetime | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "rule": self.rule,
            "metric": self.metric,
            "severity": self.severity,
            "state": self.state,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "opened_at": _iso(self.opened_at),
            "updated_at": _iso(self.updated_at),
            "window_start": _iso(self.window_start),
            "resolved_at": _iso(self.resolved_at),
            "acked_by": self.acked_by,
            "acked_at": _iso(self.acked_at),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification of one alert state change to one channel: the outbox row and its history."""

    id: str
    alert_id: str
    channel: str
    state: str
    payload: Mapping[str, Any]
    status: str = PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alert_id": self.alert_id,
            "channel": self.channel,
            "state": self.state,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "last_error": self.last_error,
            "delivered_at": _iso(self.delivered_at),
        }
