"""Drift over time and reference-against-current histograms, from real windows."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from corral.core.profile import Profile, profile_frame
from corral.core.schema import OutputSpec, Signature, Task
from corral.errors import MonitoringError, SchemaError
from corral.monitoring.aggregator import Aggregator, DeploymentWindow, output_columns
from corral.monitoring.history import drift_history, histograms
from corral.monitoring.service import Monitor, VersionFacts
from corral.monitoring.status import status
from corral.storage.memory import MemoryMonitoringStore

T0 = 1_800_000_000 - 1_800_000_000 % 3600
SHIFTS = (0.0, 0.0, 1.0, 10.0, 25.0, 40.0)  # amount's shift per hour: calm, then drifting away


@pytest.fixture
def reference() -> tuple[pd.DataFrame, Profile]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"amount": rng.normal(100, 10, 2000), "country": rng.choice(["NO", "SE", "DK"], 2000)})
    frame.loc[:49, "amount"] = np.nan  # the reference has some missing values
    outputs = profile_frame(
        pd.DataFrame({"prediction": rng.integers(0, 2, 2000)}), Signature.infer(pd.DataFrame({"prediction": [0, 1]}))
    )
    return frame, Profile(len(frame), profile_frame(frame, Signature.infer(frame)), outputs)


def hourly(profile: Profile, frames: list[pd.DataFrame], *, max_unseen: int = 100) -> list[DeploymentWindow]:
    """One window per frame, an hour apart, as the aggregator drains them."""
    clock = [float(T0)]
    aggregator = Aggregator((3600,), clock=lambda: clock[0], max_unseen=max_unseen)
    aggregator.track("api", "m", 1, profile)
    for frame in frames:
        aggregator.update("api", "m", 1, frame, output_columns(np.zeros(len(frame), dtype=int)))
        clock[0] += 3600
    return sorted(aggregator.drain(), key=lambda w: w.key.start)


def drifting(frame: pd.DataFrame) -> list[pd.DataFrame]:
    rng = np.random.default_rng(11)
    n = 300 * len(SHIFTS)
    fresh = pd.DataFrame({"amount": rng.normal(100, 10, n), "country": rng.choice(["NO", "SE", "DK"], n)})
    return [
        fresh.iloc[i * 300 : (i + 1) * 300].assign(amount=lambda f, s=s: f["amount"] + s) for i, s in enumerate(SHIFTS)
    ]


def test_a_drifting_feature_scores_below_one_early_and_above_late(reference: tuple[pd.DataFrame, Profile]) -> None:
    frame, profile = reference
    windows = hourly(profile, drifting(frame))
    history = drift_history(profile, windows)
    assert [w["start"] for w in history["windows"]] == [T0 + 3600 * i for i in range(len(SHIFTS))]
    assert history["windows"][0]["start_time"] == datetime.fromtimestamp(T0, UTC).isoformat()
    assert history["windows"][0]["end_time"] == datetime.fromtimestamp(T0 + 3600, UTC).isoformat()
    assert all(w["rows"] == 300 for w in history["windows"])
    assert history["threshold_score"] == 1.0
    amount, country = history["features"]["amount"], history["features"]["country"]
    assert all(score < 1 for score in amount[:2]) and all(score > 1 for score in amount[-2:])
    assert amount[2:] == sorted(amount[2:])  # the further away, the higher
    assert history["drifted"]["amount"] == [score > 1 for score in amount]
    assert all(score < 1 for score in country) and not any(history["drifted"]["country"])
    assert (
        list(history["outputs"]["scores"]) == ["prediction"] and len(history["outputs"]["drifted"]["prediction"]) == 6
    )
    for window, score in zip(windows, amount, strict=True):  # the very score status() sorts features by
        judged = next(f for f in status(profile, window)["features"] if f["name"] == "amount")
        assert judged["drift"]["score"] == score


def test_thresholds_by_detector_name(reference: tuple[pd.DataFrame, Profile]) -> None:
    frame, profile = reference
    windows = hourly(profile, drifting(frame))
    lenient = drift_history(profile, windows, thresholds={"psi": 100.0})
    assert not any(lenient["drifted"]["amount"]) and all(s < 1 for s in lenient["features"]["amount"])
    both = drift_history(profile, windows, detectors=["ks", "psi"], thresholds={"ks": 0.5})
    assert both["drifted"]["amount"][-1] is True
    with pytest.raises(MonitoringError, match=r"thresholds for \['ks'\] name no detector chosen"):
        drift_history(profile, windows, thresholds={"ks": 0.01})


def test_a_window_without_any_value_of_a_feature_scores_none(reference: tuple[pd.DataFrame, Profile]) -> None:
    frame, profile = reference
    frames = drifting(frame)[:3]
    frames[1] = frames[1].assign(amount=np.nan)
    history = drift_history(profile, hourly(profile, frames))
    assert history["features"]["amount"][1] is None and history["drifted"]["amount"][1] is None
    assert history["features"]["amount"][0] is not None and history["features"]["country"][1] is not None
    (hole,) = [h for h in histograms(profile, hourly(profile, frames)[1]) if h["name"] == "amount"]
    assert hole["current"][-1] == 1.0 and hole["labels"][-1] == "missing" and hole["special"] == ["missing"]


def test_numerical_shares_are_the_counts_on_the_reference_bins(reference: tuple[pd.DataFrame, Profile]) -> None:
    frame, profile = reference
    rng = np.random.default_rng(8)
    current = pd.DataFrame({"amount": rng.normal(130, 25, 500), "country": rng.choice(["NO", "SE"], 500)})
    current.loc[:19, "amount"] = np.nan
    (window,) = hourly(profile, [current])
    amount = next(h for h in histograms(profile, window) if h["name"] == "amount")
    edges = np.asarray(profile.features["amount"].bin_edges)
    bins = len(edges) - 1

    def shares(values: pd.Series) -> np.ndarray:
        present = values.dropna().to_numpy()
        counts = np.bincount(np.searchsorted(edges[1:-1], present, side="left"), minlength=bins)
        return np.append(counts, values.isna().sum()) / len(values)  # the bins, then "missing"

    assert amount["kind"] == "numerical" and amount["edges"] == list(edges)
    assert len(amount["labels"]) == bins + 1 and amount["special"] == ["missing"]
    assert amount["labels"][0].startswith("(-inf, ") and amount["labels"][-2].endswith(", inf)")
    assert amount["labels"][1] == f"({edges[1]:.4g}, {edges[2]:.4g}]"
    assert len(set(amount["labels"])) == len(amount["labels"])
    np.testing.assert_allclose(amount["current"], shares(current["amount"]))
    np.testing.assert_allclose(amount["reference"], shares(frame["amount"]))
    assert amount["current_rows"] == 500 and amount["reference_rows"] == 2000
    assert sum(amount["current"]) == pytest.approx(1.0) and sum(amount["reference"]) == pytest.approx(1.0)
    prediction = next(h for h in histograms(profile, window) if h["name"] == "prediction")
    assert prediction["labels"] == ["(-inf, inf)"] and prediction["current"] == [1.0]  # one bin: edges (0, 1)


def test_categorical_bars_are_the_union_with_unseen_categories(reference: tuple[pd.DataFrame, Profile]) -> None:
    frame, profile = reference
    values = ["NO"] * 50 + ["FI"] * 30 + ["IS"] * 15 + ["EE"] * 5 + [None] * 10
    current = pd.DataFrame({"amount": np.full(len(values), 100.0), "country": values})
    (window,) = hourly(profile, [current])
    country = next(h for h in histograms(profile, window) if h["name"] == "country")
    known = list(profile.features["country"].categories)
    assert country["kind"] == "categorical" and country["labels"] == [*known, "FI", "IS", "EE", "missing"]
    counts = current["country"].value_counts()
    expected = [counts.get(c, 0) / len(values) for c in [*known, "FI", "IS", "EE"]] + [10 / len(values)]
    np.testing.assert_allclose(country["current"], expected)
    ref_counts = frame["country"].value_counts()
    np.testing.assert_allclose(country["reference"], [ref_counts[c] / 2000 for c in known] + [0, 0, 0, 0])

    (capped,) = hourly(profile, [current], max_unseen=1)  # unseen categories past the cap count as "other"
    country = next(h for h in histograms(profile, capped) if h["name"] == "country")
    assert country["labels"] == [*known, "FI", "other", "missing"] and country["special"] == ["other", "missing"]
    assert country["current"][-2] == pytest.approx(20 / len(values)) and sum(country["current"]) == pytest.approx(1)


def test_the_monitor_serves_history_and_histograms(reference: tuple[pd.DataFrame, Profile]) -> None:
    frame, profile = reference
    store = MemoryMonitoringStore()
    store.add_windows(hourly(profile, drifting(frame)))
    facts = VersionFacts(profile, OutputSpec(Task.CLASSIFICATION, "int64", (0, 1)))
    monitor = Monitor(store, None, lambda m, v: facts)

    history = monitor.history("api", "m", 1, window=3600, limit=4)
    assert (history["deployment"], history["model"], history["version"], history["window_seconds"]) == (
        "api",
        "m",
        1,
        3600,
    )
    assert [w["start"] for w in history["windows"]] == [T0 + 3600 * i for i in range(2, 6)]
    assert len(history["features"]["amount"]) == 4 and history["reference"] == "training"
    against = monitor.history("api", "m", 1, window=3600, reference=str(T0 + 5 * 3600))
    assert against["features"]["amount"][-1] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(SchemaError, match="limit must be"):
        monitor.history("api", "m", 1, window=3600, limit=0)
    assert monitor.history("api", "m", 1, window=86400)["reason"] == "no traffic recorded yet"

    latest = monitor.histograms("api", "m", 1, window=3600)
    assert latest["window"]["start"] == T0 + 5 * 3600 and latest["window"]["rows"] == 300
    assert [h["name"] for h in latest["histograms"]] == ["amount", "country", "prediction"]
    second = monitor.histograms("api", "m", 1, window=3600, start=datetime.fromtimestamp(T0 + 3600, UTC))
    naive = monitor.histograms(
        "api", "m", 1, window=3600, start=datetime.fromtimestamp(T0 + 3600, UTC).replace(tzinfo=None)
    )
    assert second["window"]["start"] == naive["window"]["start"] == T0 + 3600
    unknown = datetime.fromtimestamp(T0 + 1800, UTC)
    with pytest.raises(SchemaError, match=re.escape(f"starts at {unknown.isoformat()} (6 stored, from")) as raised:
        monitor.histograms("api", "m", 1, window=3600, start=unknown)
    assert len(str(raised.value)) < 300
    assert monitor.histograms("api", "m", 1, window=86400)["reason"] == "no traffic recorded yet"
    none = Monitor(store, None, lambda m, v: VersionFacts(None, facts.outputs))
    assert none.histograms("api", "m", 1, window=3600)["reason"] == "no reference profile for this version"
    assert none.history("api", "m", 1, window=3600)["windows"] == []
