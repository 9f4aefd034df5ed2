"""Data quality: a production window's columns checked against the reference profile.

:func:`check_feature` looks at one :class:`~corral.monitoring.windows.FeatureWindow`
and returns a :class:`QualityIssue` per check that fails; :func:`check_window`
does every feature and model output of a
:class:`~corral.monitoring.aggregator.DeploymentWindow`. The checks, by name:

- ``all_missing`` (critical): every value the window saw was missing. Raised
  whatever the row count, and it replaces ``missing_rate`` for that column.
- ``missing_rate``: the missing rate rose by more than ``missing_rate_jump``
  (absolute) over the reference's.
- ``out_of_range`` (numerical): more than ``out_of_range_rate`` of the present
  values fell outside the training minimum and maximum.
- ``unseen_categories`` (categorical, boolean): more than ``unseen_rate`` of the
  present values were categories the reference does not list, beyond the share
  the reference itself summed under "other" (categories past its top list).
- ``invalid_type``: more than ``invalid_rate`` of the values sent were rejected
  by schema validation for their type (``invalid / (total + invalid)``).
- ``constant``: a numerical column took one value (``min == max``) while the
  reference varies, or a categorical column one category while the reference
  had several.
- ``exploded`` (numerical): the window's standard deviation is more than
  ``explode_ratio`` times the reference's, or its minimum or maximum lies more
  than ``explode_ratio`` reference ranges beyond the reference's bounds.

A check needs at least ``min_rows`` values in its denominator (rows for missing
rates, present values for value checks, values sent for ``invalid_type``);
below that it stays quiet, except ``all_missing``. Model outputs get
``all_missing`` and ``constant`` (a model predicting one value is worth a look).

Each issue's ``value`` is the measured number and ``threshold`` the limit it
passed. Severity is ``warning``, or ``critical`` for ``all_missing`` and when a
rate's excess over its baseline, or the explosion ratio, reaches
``critical_factor`` times its threshold. A ``constant`` column is a warning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from corral.core.profile import FeatureProfile, Profile
from corral.errors import SchemaError
from corral.monitoring.aggregator import DeploymentWindow
from corral.monitoring.windows import FeatureWindow

CRITICAL = "critical"
WARNING = "warning"
SEVERITIES = (CRITICAL, WARNING)
CHECKS = (
    "all_missing",
    "missing_rate",
    "out_of_range",
    "unseen_categories",
    "invalid_type",
    "constant",
    "exploded",
)
MAX_NAMED = 5  # unseen categories named in a message


@dataclass(frozen=True, slots=True)
class QualityIssue:
    """One failed data-quality check of one column.

    Attributes:
        feature: the column (a feature, or a model output when ``group`` is ``"outputs"``).
        check: which check failed (one of :data:`CHECKS`).
        value: the measured number (a rate, a ratio, or a count of distinct values).
        threshold: the limit it passed.
        severity: ``"critical"`` or ``"warning"``.
        message: one sentence for a person, with the numbers.
        group: ``"features"`` or ``"outputs"``.
    """

    feature: str
    check: str
    value: float
    threshold: float
    severity: str
    message: str
    group: str = "features"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable (non-finite numbers become ``None``)."""
        out = asdict(self)
        out["value"] = _json_number(self.value)
        out["threshold"] = _json_number(self.threshold)
        return out


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """The limits the checks use (see the module docstring for each check).

    Attributes:
        missing_rate_jump: absolute rise of the missing rate over the reference's, in [0, 1].
        out_of_range_rate: share of present values outside the training range, in [0, 1].
        unseen_rate: share of present values of unseen categories, in [0, 1].
        invalid_rate: share of values sent that were rejected for their type, in [0, 1].
        explode_ratio: window std over reference std, or reference ranges beyond its bounds; >= 1.
        min_rows: values a check needs before it may fire (``all_missing`` needs none); >= 0.
        critical_factor: an issue is critical at this many times its threshold; >= 1.

    Raises:
        SchemaError: a threshold is not a number, is NaN, or is out of its range (the message names it).
    """

    missing_rate_jump: float = 0.1
    out_of_range_rate: float = 0.05
    unseen_rate: float = 0.05
    invalid_rate: float = 0.01
    explode_ratio: float = 5.0
    min_rows: int = 30
    critical_factor: float = 5.0

    def __post_init__(self) -> None:
        for name in ("missing_rate_jump", "out_of_range_rate", "unseen_rate", "invalid_rate"):
            _check_number(name, getattr(self, name), 0.0, 1.0)
        _check_number("explode_ratio", self.explode_ratio, 1.0, math.inf)
        _check_number("critical_factor", self.critical_factor, 1.0, math.inf)
        rows = self.min_rows
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise SchemaError(f"quality threshold 'min_rows' must be a whole number >= 0, got {rows!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityThresholds:
        """Thresholds from a mapping (say, query parameters); unnamed ones keep their defaults.

        Raises:
            SchemaError: an unknown name, or a bad value (naming it).
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SchemaError(f"unknown quality thresholds {unknown}; known ones are {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            values[name] = _parse(name, value, whole=name == "min_rows")
        return cls(**values)


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value)
    if bad or not low <= value <= high:
        upper = "" if math.isinf(high) else f" and <= {high:g}"
        raise SchemaError(f"quality threshold {name!r} must be a number >= {low:g}{upper}, got {value!r}")


def _parse(name: str, value: Any, *, whole: bool) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return int(value) if whole else float(value)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise SchemaError(f"quality threshold {name!r} must be {kind}, got {value!r}") from None


DEFAULT_THRESHOLDS = QualityThresholds()


# -- the checks --------------------------------------------------------------------------------------


def check_feature(
    reference: FeatureProfile | None, window: FeatureWindow, thresholds: QualityThresholds | None = None
) -> list[QualityIssue]:
    """The data-quality issues of one feature's window against its reference profile (``None``: unknown).

    Without a reference only the checks that need none run: ``all_missing``,
    ``out_of_range`` and ``unseen_categories`` (both against the window's
    layout, which the reference fixed) and ``invalid_type``.
    """
    limits = thresholds or DEFAULT_THRESHOLDS
    empty = _all_missing(window, "features")
    checks = [
        empty or _missing_rate(reference, window, limits),
        _out_of_range(window, limits),
        _unseen_categories(reference, window, limits),
        _invalid_type(window, limits),
        _constant(reference, window, limits, "features"),
        _exploded(reference, window, limits),
    ]
    return _present(checks)


def check_output(
    reference: FeatureProfile | None, window: FeatureWindow, thresholds: QualityThresholds | None = None
) -> list[QualityIssue]:
    """The issues of one model output's window: ``all_missing`` and ``constant`` (predictions that never change)."""
    limits = thresholds or DEFAULT_THRESHOLDS
    found = _all_missing(window, "outputs")
    if found is not None:
        return [found]
    return _present([_constant(reference, window, limits, "outputs")])


def check_window(
    reference: Profile, window: DeploymentWindow, thresholds: QualityThresholds | None = None
) -> list[QualityIssue]:
    """Every feature's and model output's issues, critical first (then in column order)."""
    issues = [
        issue
        for name, feature in window.features.items()
        for issue in check_feature(reference.features.get(name), feature, thresholds)
    ]
    issues += [
        issue
        for name, output in window.outputs.items()
        for issue in check_output(reference.outputs.get(name), output, thresholds)
    ]
    return sort_issues(issues)


def sort_issues(issues: list[QualityIssue]) -> list[QualityIssue]:
    """Critical first; otherwise the order given (stable)."""
    return sorted(issues, key=lambda issue: SEVERITIES.index(issue.severity))


def _present(found: list[QualityIssue | None]) -> list[QualityIssue]:
    return [issue for issue in found if issue is not None]


def _all_missing(window: FeatureWindow, group: str) -> QualityIssue | None:
    if window.count or not window.missing:
        return None
    return QualityIssue(
        window.name,
        "all_missing",
        1.0,
        1.0,
        CRITICAL,
        f"{_what(window.name, group)} was missing in all {window.missing} rows of the window.",
        group,
    )


def _missing_rate(
    reference: FeatureProfile | None, window: FeatureWindow, limits: QualityThresholds
) -> QualityIssue | None:
    if reference is None or window.total < limits.min_rows:
        return None
    base = reference.missing_rate
    jump = window.missing_rate - base
    if not jump > limits.missing_rate_jump:
        return None
    return QualityIssue(
        window.name,
        "missing_rate",
        jump,
        limits.missing_rate_jump,
        _severity(jump, limits.missing_rate_jump, limits),
        f"Feature {window.name!r} was missing in {_pct(window.missing_rate)} of {window.total} rows, up from "
        f"{_pct(base)} in the reference (a rise of {_points(jump)} points; "
        f"the limit is {_points(limits.missing_rate_jump)}).",
    )


def _out_of_range(window: FeatureWindow, limits: QualityThresholds) -> QualityIssue | None:
    layout = window.layout
    if not layout.numerical or window.count < limits.min_rows or (layout.low is None and layout.high is None):
        return None
    rate = window.out_of_range_rate
    if not rate > limits.out_of_range_rate:
        return None
    return QualityIssue(
        window.name,
        "out_of_range",
        rate,
        limits.out_of_range_rate,
        _severity(rate, limits.out_of_range_rate, limits),
        f"{_pct(rate)} of {window.count} values of feature {window.name!r} fell outside the training range "
        f"[{_num(layout.low)}, {_num(layout.high)}] ({window.below} below, {window.above} above; "
        f"the limit is {_pct(limits.out_of_range_rate)}).",
    )


def _unseen_categories(
    reference: FeatureProfile | None, window: FeatureWindow, limits: QualityThresholds
) -> QualityIssue | None:
    if window.layout.numerical or window.count < limits.min_rows:
        return None
    base = reference.other / reference.count if reference is not None and reference.count else 0.0
    rate = window.unseen_rate
    limit = base + limits.unseen_rate
    if not rate > limit:
        return None
    ranked = sorted(window.unseen.items(), key=lambda item: (-item[1], item[0]))
    named = ", ".join(repr(name) for name, _ in ranked[:MAX_NAMED])
    rest = window.unseen_total - sum(n for _, n in ranked[:MAX_NAMED])
    listing = f"{named} and {rest} other values" if named and rest else named or f"{rest} values"
    return QualityIssue(
        window.name,
        "unseen_categories",
        rate,
        limit,
        _severity(rate - base, limits.unseen_rate, limits),
        f"{_pct(rate)} of {window.count} values of feature {window.name!r} were categories the training data did "
        f"not have ({listing}; the limit is {_pct(limit)}).",
    )


def _invalid_type(window: FeatureWindow, limits: QualityThresholds) -> QualityIssue | None:
    sent = window.total + window.invalid
    if not window.invalid or sent < limits.min_rows:
        return None
    rate = window.invalid_rate
    if not rate > limits.invalid_rate:
        return None
    return QualityIssue(
        window.name,
        "invalid_type",
        rate,
        limits.invalid_rate,
        _severity(rate, limits.invalid_rate, limits),
        f"{window.invalid} of {sent} values sent for feature {window.name!r} ({_pct(rate)}) were rejected for "
        f"having the wrong type (the limit is {_pct(limits.invalid_rate)}).",
    )


def _constant(
    reference: FeatureProfile | None, window: FeatureWindow, limits: QualityThresholds, group: str
) -> QualityIssue | None:
    if reference is None or window.count < limits.min_rows:
        return None
    what = _what(window.name, group)
    if window.layout.numerical:
        spread = reference.std
        if window.min is None or window.min != window.max or spread is None or not spread > 0:
            return None
        message = (
            f"{what} took the single value {_num(window.min)} in all {window.count} present values, "
            f"while its reference varies (std {_num(spread)})."
        )
        return QualityIssue(window.name, "constant", 0.0, float(spread), WARNING, message, group)
    seen = [name for name, n in {**window.categories(), **window.unseen}.items() if n]
    known = sum(1 for n in reference.categories.values() if n) + (1 if reference.other else 0)
    if len(seen) != 1 or window.overflow or known < 2:
        return None
    message = (
        f"{what} took the single value {seen[0]!r} in all {window.count} present values, "
        f"while its reference had {known} distinct values."
    )
    return QualityIssue(window.name, "constant", 1.0, float(known), WARNING, message, group)


def _exploded(
    reference: FeatureProfile | None, window: FeatureWindow, limits: QualityThresholds
) -> QualityIssue | None:
    if reference is None or not window.layout.numerical or window.count < limits.min_rows:
        return None
    return _exploded_spread(reference, window, limits) or _exploded_bounds(reference, window, limits)


def _exploded_spread(
    reference: FeatureProfile, window: FeatureWindow, limits: QualityThresholds
) -> QualityIssue | None:
    spread = reference.std
    if spread is None or not spread > 0 or window.count < 2:
        return None
    ratio = window.std / spread
    if not ratio > limits.explode_ratio:
        return None
    return QualityIssue(
        window.name,
        "exploded",
        ratio,
        limits.explode_ratio,
        _severity(ratio, limits.explode_ratio, limits),
        f"Feature {window.name!r} spread out to a standard deviation of {_num(window.std)} over {window.count} "
        f"values, {ratio:.1f} times the reference's {_num(spread)} (the limit is {limits.explode_ratio:g} times).",
    )


def _exploded_bounds(
    reference: FeatureProfile, window: FeatureWindow, limits: QualityThresholds
) -> QualityIssue | None:
    low, high = reference.min, reference.max
    if low is None or high is None or not high > low or window.min is None or window.max is None:
        return None
    width = high - low
    beyond = max((low - window.min) / width, (window.max - high) / width)
    if not beyond > limits.explode_ratio:
        return None
    return QualityIssue(
        window.name,
        "exploded",
        beyond,
        limits.explode_ratio,
        _severity(beyond, limits.explode_ratio, limits),
        f"Feature {window.name!r} reached [{_num(window.min)}, {_num(window.max)}], {beyond:.1f} reference ranges "
        f"beyond its training range [{_num(low)}, {_num(high)}] (the limit is {limits.explode_ratio:g} ranges).",
    )


# -- wording -------------------------------------------------------------------------------------------


def _severity(excess: float, threshold: float, limits: QualityThresholds) -> str:
    return CRITICAL if excess >= limits.critical_factor * threshold else WARNING


def _what(name: str, group: str) -> str:
    return f"{'Output' if group == 'outputs' else 'Feature'} {name!r}"


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f}%"


def _points(rate: float) -> str:
    return f"{100 * rate:.1f}"


def _num(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:.4g}"


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
