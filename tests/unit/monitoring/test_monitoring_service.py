"""The monitoring snapshot: drift and quality of the latest window, performance from labelled predictions,
and the readings alert rules judge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from corral.audit.records import PredictionRecord
from corral.core.profile import Profile, profile_frame
from corral.core.schema import OutputSpec, Signature, Task
from corral.monitoring.aggregator import Aggregator, output_columns, window_start
from corral.monitoring.feedback import Label, Outcome
from corral.monitoring.service import Monitor, VersionFacts, readings
from corral.storage.memory import MemoryAuditStore, MemoryFeedbackStore, MemoryMonitoringStore

NOW = 1_800_000_000.0
START = datetime.fromtimestamp(window_start(NOW, 3600), UTC)
CLASSIFIER = OutputSpec(Task.CLASSIFICATION, "int64", (0, 1), probabilities=True)


@pytest.fixture
def reference() -> tuple[pd.DataFrame, Profile]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"amount": rng.normal(100, 10, 2000), "country": rng.choice(["NO", "SE", "DK"], 2000)})
    outputs = profile_frame(
        pd.DataFrame({"prediction": rng.integers(0, 2, 2000)}), Signature.infer(pd.DataFrame({"prediction": [0, 1]}))
    )
    return frame, Profile(len(frame), profile_frame(frame, Signature.infer(frame)), outputs)


def monitor_with(profile: Profile, frame: pd.DataFrame, *, outputs: OutputSpec = CLASSIFIER, metrics=None):  # type: ignore[no-untyped-def]
    windows, audit = MemoryMonitoringStore(), MemoryAuditStore()
    feedback = MemoryFeedbackStore(audit)
    aggregator = Aggregator((3600,), clock=lambda: NOW)
    aggregator.track("api", "m", 1, profile)
    aggregator.update("api", "m", 1, frame, output_columns(np.zeros(len(frame), dtype=int)))
    windows.add_windows(aggregator.drain())
    facts = VersionFacts(profile, outputs, metrics or {"accuracy": 0.9})
    return Monitor(windows, feedback, lambda m, v: facts, bootstrap=20), audit, feedback


def record(i: int, p: float, output: int) -> PredictionRecord:
    return PredictionRecord(f"p{i}", START + timedelta(seconds=i), "api", "m", 1, {"amount": 1.0}, output, (1 - p, p))


def test_a_snapshot_judges_drift_quality_and_performance(reference: tuple[pd.DataFrame, Profile]) -> None:
    frame, profile = reference
    drifted = frame.head(400).assign(amount=frame["amount"].head(400) + 40)
    monitor, audit, feedback = monitor_with(profile, drifted)
    rng = np.random.default_rng(5)
    probs = rng.uniform(0, 1, 300)
    audit.append([record(i, p, int(p >= 0.5)) for i, p in enumerate(probs)])
    truth = (rng.uniform(0, 1, 300) < probs).astype(int)
    feedback.add_labels([Label(f"p{i}", int(truth[i]), datetime.now(UTC)) for i in range(200)])

    snap = monitor.snapshot("api", "m", 1, window=3600)
    assert snap["window"]["rows"] == 400 and snap["drifted_features"] == ["amount"]
    perf = snap["performance"]
    assert perf["rows"] == 300 and perf["labelled"] == 200
    realized = float(np.mean(truth[:200] == (probs[:200] >= 0.5)))
    assert perf["realized"]["accuracy"]["value"] == pytest.approx(realized)
    assert perf["estimated"]["accuracy"]["value"] == pytest.approx(np.mean(np.maximum(probs, 1 - probs)))
    assert perf["registered"] == {"accuracy": 0.9}
    assert perf["compared_to_registered"]["accuracy"]["registered"] == 0.9

    got = readings(snap)
    assert got["drifted_share"].value == 0.5 and got["drifted_share"].samples == 400
    assert got["drift_score:amount"].value > 1 and got["rows"].value == 400
    assert got["accuracy"].samples == 200 and got["estimated_accuracy"].samples == 300
    assert got["accuracy_drop"].value == pytest.approx(0.9 - realized)
    checks = [(i["feature"], i["check"], i["severity"]) for i in snap["quality_issues"]]
    assert checks == [("amount", "out_of_range", "critical"), ("prediction", "constant", "warning")]  # all zeros
    assert got["critical_quality_issues"].value == 1 and got["quality_issues"].value == 2
    assert got["drifted_share"].window_start == START and got["drifted_features"].detail == "amount"
    assert "amount" in (got["critical_quality_issues"].detail or "")


def test_performance_builds_outcomes_of_the_labelled_rows_only(
    reference: tuple[pd.DataFrame, Profile], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alert loop judges the latest hour every minute; an Outcome per row of it, all held at once, grew a
    busy server by about half a kilobyte per row served in the hour (bench/soak.py). CBPE gets an array."""
    frame, profile = reference
    monitor, audit, feedback = monitor_with(profile, frame.head(100))
    probs = np.linspace(0.05, 0.95, 50)
    audit.append([record(i, p, int(p >= 0.5)) for i, p in enumerate(probs)])
    feedback.add_labels([Label(f"p{i}", 1, datetime.now(UTC)) for i in range(5)])
    built: list[Outcome] = []
    outcomes = feedback.outcomes

    def counted(*args: Any, **kwargs: Any) -> list[Outcome]:
        found: list[Outcome] = outcomes(*args, **kwargs)
        built.extend(found)
        return found

    monkeypatch.setattr(feedback, "outcomes", counted)
    perf = monitor.snapshot("api", "m", 1, window=3600)["performance"]
    assert perf["rows"] == 50 and perf["labelled"] == 5 and len(built) == 5
    assert perf["estimated"]["accuracy"]["value"] == pytest.approx(np.mean(np.maximum(probs, 1 - probs)))


def test_no_traffic_or_no_profile_gives_a_reason_and_no_readings(reference: tuple[pd.DataFrame, Profile]) -> None:
    _, profile = reference
    monitor = Monitor(MemoryMonitoringStore(), None, lambda m, v: VersionFacts(profile, CLASSIFIER))
    snap = monitor.snapshot("api", "m", 1, window=3600)
    assert snap["reason"] == "no traffic recorded yet" and snap["performance"] is None
    assert readings(snap) == {}
    bare = Monitor(MemoryMonitoringStore(), None, lambda m, v: VersionFacts(None, CLASSIFIER))
    assert bare.snapshot("api", "m", 1, window=3600)["reason"] == "no reference profile for this version"


def test_a_regressor_gets_error_metrics(reference: tuple[pd.DataFrame, Profile]) -> None:
    frame, profile = reference
    monitor, audit, feedback = monitor_with(profile, frame.head(100), outputs=OutputSpec(Task.REGRESSION, "float64"))
    audit.append([PredictionRecord(f"r{i}", START, "api", "m", 1, {}, float(i)) for i in range(10)])
    feedback.add_labels([Label(f"r{i}", float(i) + 1.0, datetime.now(UTC)) for i in range(10)])
    perf = monitor.snapshot("api", "m", 1, window=3600)["performance"]
    assert perf["realized"]["mae"]["value"] == pytest.approx(1.0) and perf["estimated"] == {}
    assert readings(monitor.snapshot("api", "m", 1, window=3600))["rmse"].value == pytest.approx(1.0)


def test_an_all_missing_feature_is_a_critical_reading(reference: tuple[pd.DataFrame, Profile]) -> None:
    frame, profile = reference
    monitor, _, _ = monitor_with(profile, frame.head(200).assign(amount=np.nan))
    got = readings(monitor.snapshot("api", "m", 1, window=3600))
    assert got["critical_quality_issues"].value == 1 and got["missing_rate:amount"].value == 1.0
