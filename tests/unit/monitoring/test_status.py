from __future__ import annotations

import numpy as np
import pandas as pd

from corral.core.profile import Profile, profile_frame
from corral.core.schema import Signature
from corral.monitoring.aggregator import Aggregator, output_columns
from corral.monitoring.status import status


def reference() -> tuple[pd.DataFrame, Profile]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"amount": rng.normal(100, 10, 2000), "country": rng.choice(["NO", "SE", "DK"], 2000)})
    sig = Signature.infer(frame)
    profile = Profile(len(frame), profile_frame(frame, sig))
    return frame, profile


def window_of(profile: Profile, frame: pd.DataFrame) -> object:
    aggregator = Aggregator((3600,), clock=lambda: 1_800_000_000.0)
    aggregator.track("api", "m", 1, profile)
    aggregator.update("api", "m", 1, frame, output_columns(np.zeros(len(frame))))
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
