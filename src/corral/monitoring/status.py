"""A deployment's monitoring status: a production window compared with the version's reference profile."""

from __future__ import annotations

import math
from typing import Any

from corral.core.profile import FeatureProfile, Profile
from corral.errors import CorralError, SchemaError
from corral.monitoring.aggregator import DeploymentWindow
from corral.monitoring.detectors import compare_profiles
from corral.monitoring.distributions import Distribution
from corral.monitoring.quality import QualityIssue, QualityThresholds, check_window
from corral.monitoring.windows import FeatureWindow


def window_distribution(window: FeatureWindow) -> Distribution:
    """A feature window's counts as a :class:`Distribution` on the reference's bins or categories."""
    layout = window.layout
    if layout.numerical:
        return Distribution.from_counts(
            window.hist, layout.kind, edges=layout.edges, missing=window.missing, name=layout.name
        )
    counts = {**window.categories(), **window.unseen}
    return Distribution.from_counts(
        counts, layout.kind, other=window.overflow, missing=window.missing, name=layout.name
    )


def window_profile(window: DeploymentWindow) -> Profile:
    """A production window as a reference :class:`Profile` (same bins), to compare a later window with it."""

    def column(feature: FeatureWindow) -> FeatureProfile:
        layout = feature.layout
        if layout.numerical:
            return FeatureProfile(
                layout.name,
                layout.kind,
                feature.count,
                feature.missing,
                min=_finite(feature.min),
                max=_finite(feature.max),
                mean=_finite(feature.mean) if feature.count else None,
                std=_finite(feature.std) if feature.count > 1 else None,
                bin_edges=layout.edges,
                bin_counts=tuple(int(c) for c in feature.hist),
            )
        categories = {**feature.categories(), **feature.unseen}
        return FeatureProfile(
            layout.name, layout.kind, feature.count, feature.missing, categories=categories, other=feature.overflow
        )

    return Profile(
        rows=window.rows,
        features={name: column(f) for name, f in window.features.items()},
        outputs={name: column(f) for name, f in window.outputs.items()},
    )


def choose_reference(training: Profile, windows: list[DeploymentWindow], reference: str) -> Profile:
    """``"training"`` gives the version's profile; the start (epoch seconds) of a stored window gives that window.

    Raises:
        SchemaError: for anything else, naming the windows there are.
    """
    if reference == "training":
        return training
    if not reference.isdigit():
        raise SchemaError(f"reference must be 'training' or the start of a stored window, got {reference!r}")
    chosen = [w for w in windows if w.key.start == int(reference)]
    if not chosen:
        starts = [w.key.start for w in windows]
        raise SchemaError(f"no window starts at {reference}; stored windows start at {starts}")
    return window_profile(chosen[0])


def status(
    reference: Profile,
    window: DeploymentWindow,
    *,
    detectors: Any = None,
    thresholds: QualityThresholds | None = None,
) -> dict[str, Any]:
    """Per feature (sorted by drift) and per model output: drift against the reference, and data quality.

    Each column's entry lists its data-quality ``issues`` (see :mod:`corral.monitoring.quality`,
    checked with ``thresholds`` or the defaults); ``quality_issues`` lists them all, critical first.
    A feature the window saw no value of gets ``drift: null`` with the reason and an ``all_missing``
    issue, never an exception.
    """
    features = [_column(reference, window.features, name, detectors, outputs=False) for name in window.features]
    outputs = [_column(reference, window.outputs, name, detectors, outputs=True) for name in window.outputs]
    issues = check_window(reference, window, thresholds)
    _attach(features, [i for i in issues if i.group == "features"])
    _attach(outputs, [i for i in issues if i.group == "outputs"])
    features.sort(key=lambda f: -(f["drift"]["score"] if f["drift"] else -1.0))
    return {
        "window": {**window.key.to_dict(), "start_time": window.key.start_time.isoformat(), "rows": window.rows},
        "features": features,
        "outputs": outputs,
        "drifted_features": [f["name"] for f in features if f["drift"] and f["drift"]["drifted"]],
        "prediction_drift": any(o["drift"] and o["drift"]["drifted"] for o in outputs),
        "quality_issues": [issue.to_dict() for issue in issues],
    }


def _column(
    reference: Profile, columns: dict[str, FeatureWindow], name: str, detectors: Any, *, outputs: bool
) -> dict[str, Any]:
    window = columns[name]
    ref = (reference.outputs if outputs else reference.features).get(name)
    quality = {
        "count": window.count,
        "missing_rate": _round(window.missing_rate),
        "reference_missing_rate": _round(ref.missing_rate) if ref is not None else None,
        "invalid": window.invalid,
        "invalid_rate": _round(window.invalid_rate),
    }
    if window.layout.numerical:
        quality["out_of_range_rate"] = _round(window.out_of_range_rate)
        quality["min"] = _finite(window.min)
        quality["max"] = _finite(window.max)
    else:
        quality["unseen_rate"] = _round(window.unseen_rate)
    drift, reason = column_drift(reference, window, detectors, outputs=outputs)
    out: dict[str, Any] = {"name": name, "kind": str(window.layout.kind), "drift": drift, "quality": quality}
    if reason:
        out["reason"] = reason
    return out


def column_drift(
    reference: Profile, window: FeatureWindow, detectors: Any = None, *, outputs: bool = False
) -> tuple[dict[str, Any] | None, str | None]:
    """One column's drift judgement as :func:`status` reports it, and why there is none.

    The judgement holds ``detector``, ``statistic``, ``p_value``, ``threshold``, ``drifted`` and ``score``
    (1 at the threshold, above 1 when drifted); with several detectors the most alarmed one speaks and
    ``all`` lists every one. ``(None, reason)`` when the column cannot be judged (say, no value of it in
    the window); ``(None, None)`` when no detector applies to its kind.
    """
    try:
        results = compare_profiles(reference, {window.name: window_distribution(window)}, detectors, outputs=outputs)
    except CorralError as exc:  # e.g. no value of this feature in the window
        return None, str(exc)
    if not results:
        return None, None
    judged: list[dict[str, Any]] = [
        {
            "detector": result.detector,
            "statistic": _finite(result.statistic),
            "p_value": _finite(result.p_value),
            "threshold": result.threshold,
            "drifted": result.drifted,
            "score": _score(result.statistic, result.p_value, result.threshold),
        }
        for result in results
    ]
    drift = max(judged, key=lambda d: float(d["score"]))  # with several detectors, the most alarmed one speaks
    return ({**drift, "all": judged} if len(judged) > 1 else drift), None


def _attach(columns: list[dict[str, Any]], issues: list[QualityIssue]) -> None:
    """Give each column entry its own issues (critical first, as in ``issues``)."""
    for column in columns:
        column["issues"] = [issue.to_dict() for issue in issues if issue.feature == column["name"]]


def _score(statistic: float, p_value: float | None, threshold: float) -> float:
    """1 at the threshold, above 1 when drifted: comparable across detectors for sorting."""
    if p_value is not None:
        return math.log(max(p_value, 1e-300)) / math.log(threshold)
    return statistic / threshold if threshold else statistic


def _round(value: float) -> float:
    return round(float(value), 6)


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
