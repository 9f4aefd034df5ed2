"""Labelled quality over time: each version's primary metric, with its confidence interval, per time bucket.

The comparison (:mod:`corral.monitoring.comparison`) answers "is the challenger better over this window";
the timeline answers "when did it change": the window is cut into equal buckets and each version's labelled
predictions in a bucket give one point (accuracy with a Wilson interval for classification, RMSE with a
bootstrap interval for regression). A bucket where a version has no labelled prediction gives no point.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from corral.errors import MonitoringError
from corral.monitoring.feedback import Outcome
from corral.monitoring.performance import classification_metrics, regression_metrics

METRIC = {"classification": "accuracy", "regression": "rmse"}


def quality_timeline(
    outcomes: Sequence[Outcome],
    *,
    task: str,
    since: datetime,
    until: datetime,
    classes: Sequence[Any] | None = None,
    buckets: int = 12,
    bootstrap: int = 100,
) -> dict[str, Any]:
    """Each version's primary metric per bucket of ``[since, until)``; JSON-able.

    Returns ``{"metric", "buckets": [{"start", "end"}...], "versions": [{"model", "version", "roles",
    "points": [{"value", "lower", "upper", "rows"} | None per bucket]}]}``.

    Raises:
        MonitoringError: an unknown task, ``buckets`` below 1, an empty or reversed window, or a
            classification timeline without classes.
    """
    if task not in METRIC:
        raise MonitoringError(f"task must be one of {', '.join(METRIC)}, got {task!r}")
    if buckets < 1:
        raise MonitoringError(f"buckets must be at least 1, got {buckets}")
    if until <= since:
        raise MonitoringError(f"the window must end after it starts, got {since.isoformat()} to {until.isoformat()}")
    if task == "classification" and not classes:
        raise MonitoringError("a classification timeline needs the classes")
    width = (until - since) / buckets
    edges = [since + width * i for i in range(buckets + 1)]
    by_version: dict[tuple[str, int], list[list[Outcome]]] = {}
    roles: dict[tuple[str, int], set[str]] = {}
    for outcome in outcomes:
        if not since <= outcome.timestamp < until:
            continue
        key = (outcome.model, outcome.version)
        roles.setdefault(key, set()).add(outcome.role)
        if not outcome.labelled:
            by_version.setdefault(key, [[] for _ in range(buckets)])
            continue
        index = min(int((outcome.timestamp - since) / width), buckets - 1)
        by_version.setdefault(key, [[] for _ in range(buckets)])[index].append(outcome)
    metric = METRIC[task]
    versions = [
        {
            "model": model,
            "version": version,
            "roles": sorted(roles[(model, version)]),
            "points": [_point(rows, task, metric, classes, bootstrap) for rows in cells],
        }
        for (model, version), cells in sorted(by_version.items())
    ]
    return {
        "metric": metric,
        "buckets": [{"start": a.isoformat(), "end": b.isoformat()} for a, b in itertools.pairwise(edges)],
        "versions": versions,
    }


def _point(
    rows: list[Outcome], task: str, metric: str, classes: Sequence[Any] | None, bootstrap: int
) -> dict[str, Any] | None:
    if not rows:
        return None
    truth = [o.label for o in rows]
    predicted = [o.output for o in rows]
    if task == "classification":
        found = classification_metrics(truth, predicted, list(classes or ()), bootstrap=0)[metric]
    else:
        found = regression_metrics(
            np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float), bootstrap=bootstrap
        )[metric]
    return {"value": found.value, "lower": found.lower, "upper": found.upper, "rows": len(rows)}
