"""Labelled quality over time: outcomes go to the bucket their time falls in, a point per bucket with labels
(unlabelled predictions count for nothing), values equal to the metric computed directly, bad arguments refused
by name."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from corral.errors import MonitoringError
from corral.monitoring.feedback import Outcome
from corral.monitoring.performance import wilson_interval
from corral.monitoring.timeline import quality_timeline

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
IDS = itertools.count()


def outcome(seconds: float, output: Any, label: Any = None, *, version: int = 1, role: str = "primary") -> Outcome:
    return Outcome(
        prediction_id=f"p{next(IDS)}",
        timestamp=T0 + timedelta(seconds=seconds),
        deployment="api",
        model="m",
        version=version,
        role=role,
        output=output,
        label=label,
        labelled=label is not None,
    )


def test_each_labelled_outcome_counts_in_the_bucket_its_time_falls_in() -> None:
    outcomes = [
        outcome(0, 1, 1),  # the window's first instant: bucket 0
        outcome(59.999, 0, 1),  # bucket 0
        outcome(60, 1, 1),  # a bucket's start belongs to it: bucket 1
        outcome(90, 1, None),  # unlabelled: ignored
        outcome(200, 0, None),  # bucket 3 has only an unlabelled one: no point
        outcome(5 * 60 + 30, 1, 0),  # bucket 5
        outcome(6 * 60 - 0.001, 0, 0),  # the last instant of the window: bucket 5
        outcome(6 * 60, 1, 1),  # at the window's end: outside
        outcome(-1, 1, 1),  # before it: outside
    ]
    found = quality_timeline(
        outcomes, task="classification", classes=[0, 1], since=T0, until=T0 + 6 * MINUTE, buckets=6
    )
    assert found["metric"] == "accuracy"
    assert found["buckets"] == [
        {"start": (T0 + i * MINUTE).isoformat(), "end": (T0 + (i + 1) * MINUTE).isoformat()} for i in range(6)
    ]
    [line] = found["versions"]
    assert (line["model"], line["version"], line["roles"]) == ("m", 1, ["primary"])
    points = line["points"]
    assert [p["rows"] if p else None for p in points] == [2, 1, None, None, None, 2]
    assert [p["value"] if p else None for p in points] == [0.5, 1.0, None, None, None, 0.5]


def test_a_version_without_any_label_has_no_point() -> None:
    outcomes = [outcome(10, 1, 1), outcome(20, 0, None, version=2, role="shadow")]
    found = quality_timeline(outcomes, task="classification", classes=[0, 1], since=T0, until=T0 + MINUTE, buckets=2)
    assert [(v["version"], v["roles"]) for v in found["versions"]] == [(1, ["primary"]), (2, ["shadow"])]
    assert found["versions"][1]["points"] == [None, None]


def test_versions_are_sorted_and_keep_every_role_they_answered_in() -> None:
    outcomes = [
        outcome(10, 1, 1, version=3, role="shadow"),
        outcome(20, 1, 1, version=3, role="split"),
        outcome(30, 0, 1, version=1),
    ]
    found = quality_timeline(outcomes, task="classification", classes=[0, 1], since=T0, until=T0 + MINUTE, buckets=1)
    assert [(v["version"], v["roles"]) for v in found["versions"]] == [(1, ["primary"]), (3, ["shadow", "split"])]
    assert [v["points"][0]["value"] for v in found["versions"]] == [0.0, 1.0]


def test_no_outcome_in_the_window_gives_buckets_and_no_version() -> None:
    found = quality_timeline([outcome(-5, 1, 1)], task="regression", since=T0, until=T0 + MINUTE, buckets=4)
    assert found == {"metric": "rmse", "buckets": found["buckets"], "versions": []} and len(found["buckets"]) == 4


def test_accuracy_and_its_interval_equal_a_direct_computation() -> None:
    rng = np.random.default_rng(7)
    classes = ["cat", "dog", "eel"]
    times = rng.uniform(0, 3600, 600)
    truth = rng.choice(classes, 600)
    predicted = np.where(rng.uniform(size=600) < 0.3 + times / 7200, truth, rng.choice(classes, 600))  # improves
    labelled = rng.uniform(size=600) < 0.7
    outcomes = [
        outcome(float(t), str(p), str(y) if keep else None)
        for t, p, y, keep in zip(times, predicted, truth, labelled, strict=True)
    ]
    found = quality_timeline(outcomes, task="classification", classes=classes, since=T0, until=T0 + 60 * MINUTE)
    [line] = found["versions"]
    assert len(line["points"]) == len(found["buckets"]) == 12  # the default
    for i, point in enumerate(line["points"]):
        inside = (times >= 300 * i) & (times < 300 * (i + 1)) & labelled
        right = int(np.sum(predicted[inside] == truth[inside]))
        assert point["rows"] == int(inside.sum())
        assert point["value"] == pytest.approx(right / inside.sum())
        assert (point["lower"], point["upper"]) == pytest.approx(wilson_interval(right, int(inside.sum())))
    assert sum(p["rows"] for p in line["points"]) == int(labelled.sum())
    assert line["points"][-1]["value"] > line["points"][0]["value"]  # the change over time shows


def test_regression_gives_rmse_per_bucket_with_a_bootstrap_interval() -> None:
    rng = np.random.default_rng(3)
    times = np.arange(0, 120, 0.5)
    truth = rng.normal(10, 2, times.size)
    error = np.where(times < 60, rng.normal(0, 0.5, times.size), rng.normal(0, 3, times.size))  # worse later
    outcomes = [outcome(float(t), float(y + e), float(y)) for t, y, e in zip(times, truth, error, strict=True)]
    outcomes.append(outcome(150, 99.0, None))  # unlabelled: ignored
    found = quality_timeline(outcomes, task="regression", since=T0, until=T0 + 2 * MINUTE, buckets=2, bootstrap=50)
    assert found["metric"] == "rmse"
    first, second = found["versions"][0]["points"]
    for point, half in ((first, times < 60), (second, times >= 60)):
        assert point["rows"] == int(half.sum())
        assert point["value"] == pytest.approx(math.sqrt(np.mean(error[half] ** 2)))
        assert point["lower"] <= point["value"] <= point["upper"]
    assert second["lower"] > first["upper"]  # the regression is visible


def test_a_single_labelled_row_has_no_regression_interval() -> None:
    found = quality_timeline([outcome(1, 3.0, 5.0)], task="regression", since=T0, until=T0 + MINUTE, buckets=1)
    [point] = found["versions"][0]["points"]
    assert point == {"value": pytest.approx(2.0), "lower": None, "upper": None, "rows": 1}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"task": "ranking", "classes": [0, 1]}, "task must be one of classification, regression, got 'ranking'"),
        ({"task": "classification", "classes": [0, 1], "buckets": 0}, "buckets must be at least 1, got 0"),
        ({"task": "regression", "buckets": -3}, "buckets must be at least 1, got -3"),
        ({"task": "regression", "until": T0}, "the window must end after it starts"),
        ({"task": "regression", "until": T0 - MINUTE}, "the window must end after it starts"),
        ({"task": "classification"}, "a classification timeline needs the classes"),
        ({"task": "classification", "classes": []}, "a classification timeline needs the classes"),
    ],
)
def test_bad_arguments_are_refused_by_name(arguments: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"since": T0, "until": T0 + MINUTE, **arguments}
    with pytest.raises(MonitoringError, match=message.replace("(", r"\(")):
        quality_timeline([outcome(1, 1, 1)], **values)


def test_a_label_that_is_not_a_class_is_refused() -> None:
    with pytest.raises(MonitoringError, match="'bird'"):
        quality_timeline(
            [outcome(1, "cat", "bird")], task="classification", classes=["cat", "dog"], since=T0, until=T0 + MINUTE
        )
