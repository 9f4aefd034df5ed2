"""Drift over time and the histograms behind it, for a deployment version's stored windows (pure functions).

:func:`drift_history` judges each window against the reference exactly as
:func:`corral.monitoring.status.status` does (:func:`~corral.monitoring.status.column_drift`), one point per
window; :func:`histograms` lays a window's counts beside the reference's, bar by bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from corral.core.profile import FeatureProfile, Profile
from corral.errors import DriftInputError, MonitoringError
from corral.monitoring.aggregator import DeploymentWindow
from corral.monitoring.detectors import BINNED_DEFAULTS, get_detector
from corral.monitoring.status import column_drift
from corral.monitoring.windows import FeatureWindow

THRESHOLD_SCORE = 1.0  # every detector's score is 1 at its threshold (status._score)


def drift_history(
    reference: Profile,
    windows: Sequence[DeploymentWindow],
    *,
    detectors: Any = None,
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Each window's drift score per feature and per model output, in the windows' order.

    ``detectors`` as in :func:`~corral.monitoring.detectors.compare_profiles` (``None``: ``psi`` for every
    kind); ``thresholds`` overrides the thresholds of detectors given by name (the defaults included), by
    detector name, as :class:`~corral.monitoring.config.MonitoringConfig` stores them.

    Returns ``{"windows": [{"start", "start_time", "end_time", "rows"}], "features": {name: [score]},
    "drifted": {name: [drifted]}, "outputs": {"scores": {name: [score]}, "drifted": {name: [drifted]}},
    "threshold_score": 1.0}``. Each list has one entry per window; the score is the one :func:`status`
    sorts features by (1 at the detector's threshold, above 1 when drifted; with several detectors, the
    most alarmed one's). ``None`` where a window cannot be judged (say, no value of the feature in it).

    Raises:
        UnknownDetectorError, ConfigurationError: a detector name or threshold that cannot be used.
        MonitoringError: ``thresholds`` names a detector not chosen by name.
    """
    chosen = _with_thresholds(detectors, thresholds)
    features = _series(reference, [w.features for w in windows], chosen, outputs=False)
    outputs = _series(reference, [w.outputs for w in windows], chosen, outputs=True)
    return {
        "windows": [
            {
                "start": w.key.start,
                "start_time": w.key.start_time.isoformat(),
                "end_time": w.key.end_time.isoformat(),
                "rows": w.rows,
            }
            for w in windows
        ],
        "features": features[0],
        "drifted": features[1],
        "outputs": {"scores": outputs[0], "drifted": outputs[1]},
        "threshold_score": THRESHOLD_SCORE,
    }


def _series(
    reference: Profile, columns: list[dict[str, FeatureWindow]], detectors: Any, *, outputs: bool
) -> tuple[dict[str, list[float | None]], dict[str, list[bool | None]]]:
    names = list(dict.fromkeys(name for group in columns for name in group))  # windows of one version agree
    scores: dict[str, list[float | None]] = {name: [] for name in names}
    drifted: dict[str, list[bool | None]] = {name: [] for name in names}
    for group in columns:
        for name in names:
            window = group.get(name)
            drift = column_drift(reference, window, detectors, outputs=outputs)[0] if window is not None else None
            scores[name].append(float(drift["score"]) if drift else None)
            drifted[name].append(bool(drift["drifted"]) if drift else None)
    return scores, drifted


def _with_thresholds(detectors: Any, thresholds: Mapping[str, float] | None) -> Any:
    """``detectors`` with each one given by name built with its threshold from ``thresholds``."""
    if not thresholds:
        return detectors
    named: set[str] = set()

    def build(spec: Any) -> Any:
        if not isinstance(spec, str):
            return spec  # a built detector carries its own threshold
        named.add(spec)
        return get_detector(spec, thresholds.get(spec))

    chosen = BINNED_DEFAULTS if detectors is None else detectors
    if isinstance(chosen, Mapping):
        built: Any = {kind: [build(s) for s in specs] for kind, specs in chosen.items()}
    else:
        built = [build(s) for s in chosen]
    unused = sorted(set(thresholds) - named)
    if unused:
        raise MonitoringError(f"thresholds for {unused} name no detector chosen by name; chosen: {sorted(named)}")
    return built


def histograms(reference: Profile, window: DeploymentWindow) -> list[dict[str, Any]]:
    """Reference and window side by side, one entry per feature, then per model output.

    Each entry: ``name``, ``kind``, ``labels`` (one per bar), ``reference`` and ``current`` (the share of
    each side's rows in each bar), ``reference_rows`` and ``current_rows`` (present plus missing values;
    values rejected for their type are in neither), and ``special``: the trailing labels that are neither
    bins nor categories, ``"other"`` then ``"missing"``, each shown only when one side has some.
    Each side's shares sum to 1 over the bars (all zeros for a side without rows).

    Numerical columns are on the reference's bins, right-closed with open ends as
    :func:`corral.core.profile.histogram` counts them (labels like ``"(-inf, 1.2]"``, ``"(1.2, 3.4]"``,
    ``"(3.4, inf)"``; ``edges`` gives the numbers). Categorical and boolean columns are on the union of
    the reference's categories (in its order) and the window's (unseen ones by count); ``"other"`` is the
    reference's categories past its top ones, and the window's unseen categories past its cap.

    Raises:
        DriftInputError: a numerical column whose reference counts do not fit the window's bins.
    """
    out = [_histogram(reference.features.get(name), w) for name, w in window.features.items()]
    return out + [_histogram(reference.outputs.get(name), w) for name, w in window.outputs.items()]


def _histogram(ref: FeatureProfile | None, window: FeatureWindow) -> dict[str, Any]:
    layout = window.layout
    entry: dict[str, Any] = {"name": layout.name, "kind": str(layout.kind)}
    if layout.numerical:
        labels = _bin_labels(layout.edges, layout.bins)
        ref_counts = list(ref.bin_counts) if ref is not None and ref.bin_counts else [0] * layout.bins
        if len(ref_counts) != layout.bins:
            raise DriftInputError(f"{layout.name}: the reference has {len(ref_counts)} bins, the window {layout.bins}")
        cur_counts = [int(c) for c in window.hist]
        entry["edges"] = list(layout.edges)
        ref_other = cur_other = 0
    else:
        ref_categories = ref.categories if ref is not None else {}
        current = {**window.categories(), **window.unseen}
        unseen = sorted((c for c in current if c not in ref_categories), key=lambda c: (-current[c], c))
        labels = [*ref_categories, *unseen]
        ref_counts = [ref_categories.get(c, 0) for c in labels]
        cur_counts = [current.get(c, 0) for c in labels]
        ref_other, cur_other = (ref.other if ref is not None else 0), window.overflow
    ref_missing = ref.missing if ref is not None else 0
    special = []
    for label, ref_n, cur_n in (("other", ref_other, cur_other), ("missing", ref_missing, window.missing)):
        if ref_n or cur_n:
            special.append(label)
            ref_counts.append(ref_n)
            cur_counts.append(cur_n)
    ref_rows = (ref.count + ref.missing) if ref is not None else 0
    cur_rows = window.count + window.missing
    return {
        **entry,
        "labels": [*labels, *special],
        "reference": _shares(ref_counts, ref_rows),
        "current": _shares(cur_counts, cur_rows),
        "reference_rows": ref_rows,
        "current_rows": cur_rows,
        "special": special,
    }


def _shares(counts: list[int], rows: int) -> list[float]:
    return [n / rows if rows else 0.0 for n in counts]


def _bin_labels(edges: Sequence[float], bins: int) -> list[str]:
    """``(low, high]`` per bin, the ends open; as few digits as keep distinct edges apart."""
    inner = list(edges[1:-1]) if len(edges) > 2 else []
    distinct = len(set(inner))
    for digits in range(4, 18):
        shown = [f"{e:.{digits}g}" for e in inner]
        if len(set(shown)) == distinct:
            break
    bounds = ["-inf", *shown, "inf"]
    return [f"({bounds[i]}, {bounds[i + 1]}{')' if i == bins - 1 else ']'}" for i in range(bins)]
