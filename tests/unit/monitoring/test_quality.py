from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from corral.core.profile import Profile, profile_column, profile_frame
from corral.core.schema import FeatureKind, Signature
from corral.errors import SchemaError
from corral.monitoring.aggregator import DeploymentWindow, WindowKey, WindowLayout
from corral.monitoring.quality import (
    CHECKS,
    CRITICAL,
    WARNING,
    QualityIssue,
    QualityThresholds,
    check_feature,
    check_output,
    check_window,
)
from corral.monitoring.windows import HOUR, FeatureWindow


def draw(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """Rows from the reference distribution: ``amount`` is missing 2% of the time."""
    amount = rng.normal(100, 10, rows)
    amount[rng.random(rows) < 0.02] = np.nan
    return pd.DataFrame(
        {
            "amount": amount,
            "age": rng.integers(18, 90, rows).astype("float64"),
            "country": rng.choice(["NO", "SE", "DK"], rows, p=[0.5, 0.3, 0.2]),
            "flag": rng.choice([True, False], rows),
        }
    )


TRAIN = draw(3000, np.random.default_rng(11))
PROFILE = Profile(len(TRAIN), profile_frame(TRAIN, Signature.infer(TRAIN)))
OUTPUTS = {"prediction": profile_column("prediction", pd.Series([0, 1] * 100), FeatureKind.CATEGORICAL)}
PROFILE_WITH_OUTPUTS = Profile(len(TRAIN), PROFILE.features, OUTPUTS)


def window_of(frame: pd.DataFrame, outputs: dict[str, Any] | None = None) -> DeploymentWindow:
    profile = PROFILE_WITH_OUTPUTS if outputs is not None else PROFILE
    window = DeploymentWindow(WindowKey("api", "m", 1, HOUR, 0), WindowLayout.from_profile(profile))
    window.update(frame, outputs)
    return window


def feature_window(name: str, values: Any) -> FeatureWindow:
    window = FeatureWindow.from_profile(PROFILE.features[name])
    window.update(values)
    return window


def checks(issues: list[QualityIssue]) -> set[tuple[str, str]]:
    return {(i.feature, i.check) for i in issues}


# -- quiet on data drawn from the reference --------------------------------------------------------


@pytest.mark.parametrize("rows", [30, 200, 2000])
@pytest.mark.parametrize("seed", range(8))
def test_data_from_the_reference_distribution_raises_nothing(rows: int, seed: int) -> None:
    frame = draw(rows, np.random.default_rng(100 + seed))
    outputs = {"prediction": np.random.default_rng(seed).integers(0, 2, rows)}
    assert check_window(PROFILE_WITH_OUTPUTS, window_of(frame, outputs)) == []


def test_reference_other_share_is_the_unseen_baseline() -> None:
    rng = np.random.default_rng(5)
    values = pd.Series(rng.choice([f"c{i}" for i in range(10)], 3000))
    reference = profile_column("code", values, FeatureKind.CATEGORICAL, max_categories=5)  # half is "other"
    window = FeatureWindow.from_profile(reference)
    window.update(rng.choice([f"c{i}" for i in range(10)], 500))
    assert window.unseen_rate > 0.4
    assert check_feature(reference, window) == []
    window.update(["brand-new"] * 300)
    (issue,) = check_feature(reference, window)
    assert issue.check == "unseen_categories" and issue.threshold == pytest.approx(0.05 + reference.other / 3000)


# -- each check fires on data built to trigger it ---------------------------------------------------

Shift = Callable[[pd.DataFrame], pd.DataFrame]
CASES: list[tuple[str, str, str, Shift]] = [
    ("missing_rate", "amount", WARNING, lambda f: f.assign(amount=f["amount"].where(f.index % 10 >= 3))),
    ("missing_rate", "amount", CRITICAL, lambda f: f.assign(amount=f["amount"].where(f.index % 10 >= 7))),
    ("out_of_range", "amount", WARNING, lambda f: f.assign(amount=f["amount"].where(f.index % 10 != 0, 500.0))),
    ("out_of_range", "age", CRITICAL, lambda f: f.assign(age=f["age"] + 60)),
    ("unseen_categories", "country", WARNING, lambda f: f.assign(country=f["country"].where(f.index % 10 != 0, "FI"))),
    ("constant", "age", WARNING, lambda f: f.assign(age=42.0)),
    ("constant", "flag", WARNING, lambda f: f.assign(flag=True)),
    ("exploded", "amount", CRITICAL, lambda f: f.assign(amount=(f["amount"] - 100) * 40 + 100)),
    ("exploded", "amount", WARNING, lambda f: f.assign(amount=f["amount"].where(f.index != 7, 100 + 8 * 70.0))),
]


@pytest.mark.parametrize(("check", "feature", "severity", "shift"), CASES)
def test_each_check_fires_on_data_built_for_it(check: str, feature: str, severity: str, shift: Shift) -> None:
    base = draw(500, np.random.default_rng(21))
    assert check_window(PROFILE, window_of(base)) == []
    issues = check_window(PROFILE, window_of(shift(base)))
    found = [i for i in issues if (i.feature, i.check) == (feature, check)]
    assert len(found) == 1, issues
    issue = found[0]
    assert issue.severity == severity
    if check != "constant":
        assert issue.value > issue.threshold
    assert issue.message.endswith(".") and "\n" not in issue.message and repr(feature) in issue.message
    assert any(ch.isdigit() for ch in issue.message)
    assert {i.feature for i in issues} == {feature} and {i.check for i in issues} <= set(CHECKS)


def test_invalid_type_counts_rejected_values_against_all_sent() -> None:
    window = feature_window("amount", draw(500, np.random.default_rng(2))["amount"])
    window.add_invalid(3)
    assert check_feature(PROFILE.features["amount"], window) == []  # 3 / 503 is under 1%
    window.add_invalid(17)
    (issue,) = check_feature(PROFILE.features["amount"], window)
    assert issue.check == "invalid_type" and issue.severity == WARNING
    assert issue.value == pytest.approx(20 / 520) and "20 of 520" in issue.message
    window.add_invalid(100)
    assert check_feature(PROFILE.features["amount"], window)[0].severity == CRITICAL


def test_only_invalid_values_are_reported_too() -> None:
    window = FeatureWindow.from_profile(PROFILE.features["country"])
    window.add_invalid(40)
    (issue,) = check_feature(PROFILE.features["country"], window)
    assert (issue.check, issue.value, issue.severity) == ("invalid_type", 1.0, CRITICAL)


def test_unseen_message_names_at_most_five_categories() -> None:
    values = [f"new{i}" for i in range(8) for _ in range(10 - i)] + ["NO"] * 10
    window = feature_window("country", values)
    (issue,) = [i for i in check_feature(PROFILE.features["country"], window) if i.check == "unseen_categories"]
    named = [f"'new{i}'" for i in range(8) if f"'new{i}'" in issue.message]
    assert named == ["'new0'", "'new1'", "'new2'", "'new3'", "'new4'"]
    assert "and 12 other values" in issue.message  # new5, new6 and new7: 5 + 4 + 3 values


def test_exploded_range_is_measured_in_reference_ranges() -> None:
    reference = PROFILE.features["age"]
    assert reference.min is not None and reference.max is not None
    width = reference.max - reference.min
    frame = draw(300, np.random.default_rng(4))
    frame.loc[0, "age"] = reference.max + 6 * width
    issue = next(i for i in check_window(PROFILE, window_of(frame)) if i.check == "exploded")
    assert issue.feature == "age" and issue.value == pytest.approx(6.0) and issue.threshold == 5.0


def test_constant_predictions_are_a_warning() -> None:
    frame = draw(100, np.random.default_rng(8))
    issues = check_window(PROFILE_WITH_OUTPUTS, window_of(frame, {"prediction": np.ones(100, dtype=int)}))
    (issue,) = issues
    assert (issue.feature, issue.check, issue.severity, issue.group) == ("prediction", "constant", WARNING, "outputs")
    assert issue.message.startswith("Output 'prediction'")


# -- min_rows and all_missing ----------------------------------------------------------------------


def test_below_min_rows_nothing_but_all_missing() -> None:
    frame = draw(29, np.random.default_rng(9)).assign(age=500.0, country="FI", flag=True)
    frame["amount"] = np.nan
    window = window_of(frame)
    issues = check_window(PROFILE, window)
    assert checks(issues) == {("amount", "all_missing")}
    assert check_window(PROFILE, window, QualityThresholds(min_rows=10)) != issues


@pytest.mark.parametrize("rows", [1, 30, 5000])
def test_an_entirely_missing_feature_is_one_critical_issue(rows: int) -> None:
    frame = draw(rows, np.random.default_rng(3)).assign(country=None)
    issues = check_window(PROFILE, window_of(frame))
    assert [(i.feature, i.check, i.severity) for i in issues] == [("country", "all_missing", CRITICAL)]
    assert f"all {rows} rows" in issues[0].message


def test_an_empty_window_raises_nothing() -> None:
    assert check_window(PROFILE_WITH_OUTPUTS, window_of(TRAIN.head(0), {})) == []


def test_without_a_reference_only_layout_checks_run() -> None:
    window = feature_window("amount", np.full(100, 1e6))
    assert checks(check_feature(None, window)) == {("amount", "out_of_range")}
    assert checks(check_feature(PROFILE.features["amount"], window)) == {
        ("amount", "out_of_range"),
        ("amount", "constant"),
        ("amount", "exploded"),
    }
    empty = feature_window("amount", [None] * 3)
    assert checks(check_output(None, empty)) == {("amount", "all_missing")}


def test_issues_are_critical_first_and_serialize_to_json() -> None:
    frame = draw(400, np.random.default_rng(6)).assign(age=42.0)
    frame["country"] = None
    issues = check_window(PROFILE, window_of(frame))
    assert [i.severity for i in issues] == [CRITICAL, WARNING]
    data = json.loads(json.dumps([i.to_dict() for i in issues], allow_nan=False))
    assert data[0] == {
        "feature": "country",
        "check": "all_missing",
        "value": 1.0,
        "threshold": 1.0,
        "severity": "critical",
        "message": "Feature 'country' was missing in all 400 rows of the window.",
        "group": "features",
    }
    assert QualityIssue("x", "exploded", math.inf, 5.0, WARNING, "m.").to_dict()["value"] is None


# -- thresholds ------------------------------------------------------------------------------------


def test_thresholds_change_what_fires() -> None:
    frame = draw(500, np.random.default_rng(21))
    frame = frame.assign(amount=frame["amount"].where(frame.index % 10 >= 2))  # 20% missing
    assert checks(check_window(PROFILE, window_of(frame))) == {("amount", "missing_rate")}
    assert check_window(PROFILE, window_of(frame), QualityThresholds(missing_rate_jump=0.3)) == []
    strict = check_window(PROFILE, window_of(frame), QualityThresholds(critical_factor=1.0))
    assert [i.severity for i in strict] == [CRITICAL]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("missing_rate_jump", -0.1),
        ("out_of_range_rate", math.nan),
        ("unseen_rate", 1.5),
        ("invalid_rate", "x"),
        ("explode_ratio", 0.5),
        ("explode_ratio", math.nan),
        ("min_rows", -1),
        ("min_rows", 2.5),
        ("min_rows", True),
        ("critical_factor", -2.0),
    ],
)
def test_bad_thresholds_are_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(SchemaError, match=field):
        QualityThresholds(**{field: value})
    with pytest.raises(ValueError, match=field):
        QualityThresholds.from_dict({field: value})


def test_thresholds_from_a_mapping() -> None:
    parsed = QualityThresholds.from_dict({"min_rows": "10", "unseen_rate": "0.2"})
    assert parsed == QualityThresholds(min_rows=10, unseen_rate=0.2)
    assert QualityThresholds.from_dict(parsed.to_dict()) == parsed
    with pytest.raises(SchemaError, match=r"unknown quality thresholds.*'min_row'"):
        QualityThresholds.from_dict({"min_row": 3})
    with pytest.raises(SchemaError, match=r"min_rows.*whole number"):
        QualityThresholds.from_dict({"min_rows": "ten"})
    assert QualityThresholds(explode_ratio=math.inf).explode_ratio == math.inf  # inf switches the check off
