from __future__ import annotations

import numpy as np
import pandas as pd

from corral.core.profile import Profile, profile_frame
from corral.core.schema import Signature
from corral.monitoring.aggregator import Aggregator, DeploymentWindow, output_columns
from corral.monitoring.quality import QualityThresholds
from corral.monitoring.status import status


def reference() -> tuple[pd.DataFrame, Profile]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"amount": rng.normal(100, 10, 2000), "country": rng.choice(["NO", "SE", "DK"], 2000)})
    sig = Signature.infer(frame)
    profile = Profile(len(frame), profile_frame(frame, sig))
    return frame, profile


def window_of(profile: Profile, frame: pd.DataFrame, rejected: dict[str, int] | None = None) -> DeploymentWindow:
    aggregator = Aggregator((3600,), clock=lambda: 1_800_000_000.0)
    aggregator.track("api", "m", 1, profile)
    aggregator.update("api", "m", 1, frame, output_columns(np.zeros(len(frame))))
    for feature, count in (rejected or {}).items():
        aggregator.reject("api", "m", 1, feature, count)
    (window,) = aggregator.drain()
    return window


def test_a_feature_missing_for_the_whole_window_is_reported_not_raised() -> None:
    frame, profile = reference()
    current = frame.head(300).assign(amount=np.nan)
    report = status(profile, window_of(profile, current))
    amount = next(f for f in report["features"] if f["name"] == "amount")
    assert amount["drift"] is None and "amount" in amount["reason"]
    assert amount["quality"]["missing_rate"] == 1.0 and amount["quality"]["reference_missing_rate"] == 0.0
    assert report["window"]["rows"] == 300
    (issue,) = amount["issues"]
    assert (issue["check"], issue["severity"], issue["feature"]) == ("all_missing", "critical", "amount")
    assert report["quality_issues"] == [issue]


def test_data_like_the_reference_has_no_quality_issues() -> None:
    frame, profile = reference()
    report = status(profile, window_of(profile, frame.sample(400, random_state=5)))
    assert report["quality_issues"] == [] and all(f["issues"] == [] for f in report["features"])
    assert all(f["quality"]["invalid"] == 0 and f["quality"]["invalid_rate"] == 0.0 for f in report["features"])


def test_rejected_values_and_quality_issues_critical_first() -> None:
    frame, profile = reference()
    current = frame.head(400).assign(country="NO")
    report = status(profile, window_of(profile, current, {"amount": 100}))
    amount = next(f for f in report["features"] if f["name"] == "amount")
    assert amount["quality"]["invalid"] == 100 and amount["quality"]["invalid_rate"] == 0.2
    checks = [(i["feature"], i["check"], i["severity"]) for i in report["quality_issues"]]
    assert checks == [("amount", "invalid_type", "critical"), ("country", "constant", "warning")]
    assert [i["check"] for i in amount["issues"]] == ["invalid_type"]
    lenient = status(
        profile, window_of(profile, current, {"amount": 100}), thresholds=QualityThresholds(invalid_rate=0.5)
    )
    assert [i["check"] for i in lenient["quality_issues"]] == ["constant"]


def test_shift_and_unseen_categories_are_reported_first() -> None:
    frame, profile = reference()
    current = frame.head(500).assign(amount=frame["amount"].head(500) + 40, country="FI")
    report = status(profile, window_of(profile, current))
    names = [f["name"] for f in report["features"]]
    assert set(report["drifted_features"]) == {"amount", "country"} and set(names) == {"amount", "country"}
    country = next(f for f in report["features"] if f["name"] == "country")
    assert country["quality"]["unseen_rate"] == 1.0
    amount = next(f for f in report["features"] if f["name"] == "amount")
    assert amount["quality"]["out_of_range_rate"] > 0.5
