"""Drift detectors: does a current distribution still look like the reference?

Every detector compares a reference :class:`Distribution` with a current one
and returns a :class:`DriftResult`. Detectors are registered by lowercase
name; :func:`get_detector` builds one (an unknown name is an
:class:`~corral.errors.UnknownDetectorError` listing the known ones).

========================  ==================  =================  ==============================
name                      kinds               default threshold  drifted when
========================  ==================  =================  ==============================
``psi``                   all                 0.2                statistic > threshold
``ks``                    numerical           0.05               p-value < threshold
``chi2``                  categorical, bool   0.05               p-value < threshold
``jensenshannon``         all                 0.1                statistic > threshold
``wasserstein``           numerical           0.1                statistic > threshold
``domain_classifier``     all (multivariate)  0.55               statistic (ROC AUC) > threshold
========================  ==================  =================  ==============================

Samples and counts:

- ``psi`` and ``jensenshannon`` always work on common bins
  (:func:`~corral.monitoring.distributions.common_counts`): the reference
  profile's bins, or 10 reference quantile bins when both sides are samples.
  PSI clips every bin proportion at ``PSI_EPSILON = 1e-4`` so that empty bins
  give a finite value (proportions are not renormalized after clipping).
- ``ks`` on two samples is exact (the two-sample Kolmogorov–Smirnov test,
  equal to ``scipy.stats.ks_2samp``). On binned data the statistic is the
  largest gap between the two binned CDFs at the bin edges (a lower bound of
  the sample statistic, coarser with fewer bins) and the p-value is scipy's
  asymptotic one (``kstwo`` at the effective size ``n·m/(n+m)``).
- ``wasserstein`` on two samples is the 1-Wasserstein distance (equal to
  ``scipy.stats.wasserstein_distance``); on binned data every count sits at
  its bin's midpoint. By default the distance is divided by the reference's
  standard deviation (``normalize=True``: one threshold, 0.1 standard
  deviations, fits features of any scale; a constant reference is not
  divided). ``details["distance"]`` keeps the distance in feature units.
- ``domain_classifier`` is multivariate: it needs rows (data frames, or
  numerical samples), never counts.

An empty side (no non-missing values) is a :class:`~corral.errors.DriftInputError`:
there is nothing to compare, and the caller decides whether an all-missing
window is itself an alert (``DriftResult`` carries both missing counts).

Prediction drift is the same comparison on the model's outputs: the
reference profile profiles them (``Profile.outputs``) exactly like features,
so :func:`prediction_drift` is :func:`compare_profiles` over the outputs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from corral.core.profile import FeatureProfile, Profile
from corral.core.schema import FeatureKind, FeatureSpec, Signature
from corral.errors import ConfigurationError, DriftInputError, SchemaError, UnknownDetectorError
from corral.monitoring.distributions import (
    DEFAULT_SAMPLE_BINS,
    Distribution,
    cdfs_on_merged_grid,
    common_counts,
)

PSI_EPSILON = 1e-4
KS_EXACT_MAX_N = 10_000  # scipy's "auto": exact p-values up to this sample size, asymptotic above
ALL_KINDS = frozenset(FeatureKind)
CATEGORY_KINDS = frozenset({FeatureKind.CATEGORICAL, FeatureKind.BOOLEAN})
NUMERICAL_KINDS = frozenset({FeatureKind.NUMERICAL})


@dataclass(frozen=True, slots=True)
class DriftResult:
    """The outcome of one comparison.

    Attributes:
        detector: the detector's registered name.
        statistic: the detector's statistic (PSI, KS D, chi-square, JS distance, Wasserstein, AUC).
        p_value: the test's p-value, ``None`` for detectors that are not tests.
        threshold: the threshold ``drifted`` was decided with.
        drifted: ``p_value < threshold`` for tests (``ks``, ``chi2``),
            ``statistic > threshold`` for distances (``psi``, ``jensenshannon``,
            ``wasserstein``, ``domain_classifier``).
        feature: the feature (or output) compared; ``None`` for multivariate results.
        reference_size: non-missing reference values (rows for multivariate).
        current_size: non-missing current values (rows for multivariate).
        reference_missing: missing reference values.
        current_missing: missing current values.
        binned: whether the comparison used counts rather than raw samples.
        details: extra numbers (e.g. ``dof``, ``distance``, ``scale``, ``auc_std``).
    """

    detector: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    feature: str | None = None
    reference_size: int = 0
    current_size: int = 0
    reference_missing: int = 0
    current_missing: int = 0
    binned: bool = False
    details: Mapping[str, float] = field(default_factory=dict)


class DriftDetector(Protocol):
    """Compares a reference distribution with a current one.

    ``name`` is the registry key, ``kinds`` the feature kinds it accepts,
    ``default_threshold`` the threshold used when none is given, and
    ``multivariate`` whether it compares whole frames rather than one feature.
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[FeatureKind]]
    default_threshold: ClassVar[float]
    multivariate: ClassVar[bool]
    threshold: float

    def compare(self, reference: Distribution, current: Distribution) -> DriftResult: ...


_DETECTORS: dict[str, type[_Detector]] = {}
_D = TypeVar("_D", bound="type[_Detector]")


def register(cls: _D) -> _D:
    """Class decorator: register a detector under its (lowercase, unique) ``name``."""
    name = cls.name
    if name != name.lower() or name in _DETECTORS:
        raise ConfigurationError(f"detector name {name!r} must be lowercase and unique")
    _DETECTORS[name] = cls
    return cls


def detector_names() -> list[str]:
    """The registered detector names, sorted."""
    return sorted(_DETECTORS)


def detector_class(name: str) -> type[DriftDetector]:
    """The detector class registered as ``name``.

    Raises:
        UnknownDetectorError: no detector has that name; the message lists the known ones.
    """
    return _lookup(name)


def _lookup(name: str) -> type[_Detector]:
    try:
        return _DETECTORS[name]
    except KeyError:
        raise UnknownDetectorError(
            f"no drift detector named {name!r}; known detectors: {', '.join(detector_names())}"
        ) from None


def get_detector(name: str, threshold: float | None = None, **options: Any) -> DriftDetector:
    """Build the detector registered as ``name`` (``options`` go to its constructor)."""
    return _lookup(name)(threshold, **options)


class _Detector:
    """Shared plumbing: threshold, kind and emptiness checks, the result."""

    name: ClassVar[str]
    kinds: ClassVar[frozenset[FeatureKind]]
    default_threshold: ClassVar[float]
    multivariate: ClassVar[bool] = False
    is_test: ClassVar[bool] = False  # True: drifted when p < threshold; False: when statistic > threshold

    def __init__(self, threshold: float | None = None) -> None:
        value = self.default_threshold if threshold is None else float(threshold)
        if not math.isfinite(value) or (self.is_test and not 0.0 < value < 1.0):
            raise ConfigurationError(f"{self.name}: threshold {threshold!r} is not usable")
        self.threshold = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"

    def compare(self, reference: Distribution, current: Distribution) -> DriftResult:
        raise NotImplementedError

    def _check(self, reference: Distribution, current: Distribution) -> None:
        for side, dist in (("reference", reference), ("current", current)):
            if dist.kind not in self.kinds:
                allowed = ", ".join(sorted(str(k) for k in self.kinds))
                raise DriftInputError(
                    f"{self.name} compares {allowed} features; {dist._label()} ({side}) is {dist.kind}"
                )
        if reference.kind is not current.kind:
            raise DriftInputError(f"{reference._label()}: reference is {reference.kind} but current is {current.kind}")
        for side, dist in (("reference", reference), ("current", current)):
            if dist.size == 0:
                raise DriftInputError(
                    f"{self.name}: the {side} {dist._label()} has no values "
                    f"({dist.missing} missing); nothing to compare"
                )

    def _result(
        self,
        reference: Distribution,
        current: Distribution,
        statistic: float,
        p_value: float | None = None,
        **details: float,
    ) -> DriftResult:
        drifted = (p_value < self.threshold) if self.is_test and p_value is not None else statistic > self.threshold
        return DriftResult(
            detector=self.name,
            statistic=float(statistic),
            p_value=None if p_value is None else float(p_value),
            threshold=self.threshold,
            drifted=bool(drifted),
            feature=reference.name or current.name or None,
            reference_size=reference.size,
            current_size=current.size,
            reference_missing=reference.missing,
            current_missing=current.missing,
            binned=reference.binned or current.binned,
            details=details,
        )


@register
class PsiDetector(_Detector):
    """Population Stability Index over common bins: ``Σ (c - r) · ln(c / r)`` of bin proportions.

    Proportions are clipped at ``PSI_EPSILON`` (1e-4) so empty bins stay
    finite. Symmetric, non-negative, 0 for identical bins. Rule of thumb:
    below 0.1 stable, 0.1–0.2 moderate, above 0.2 (the default) a shift.
    """

    name = "psi"
    kinds = ALL_KINDS
    default_threshold = 0.2

    def __init__(self, threshold: float | None = None, *, bins: int = DEFAULT_SAMPLE_BINS) -> None:
        super().__init__(threshold)
        self.bins = bins

    def compare(self, reference: Distribution, current: Distribution) -> DriftResult:
        self._check(reference, current)
        ref, cur, _ = common_counts(reference, current, bins=self.bins)
        p = np.maximum(ref / ref.sum(), PSI_EPSILON)
        q = np.maximum(cur / cur.sum(), PSI_EPSILON)
        return self._result(reference, current, float(np.sum((q - p) * np.log(q / p))), bins=float(ref.size))


@register
class KsDetector(_Detector):
    """Two-sample Kolmogorov–Smirnov test (numerical); drifted when p < threshold.

    Exact on samples (same statistic and p-value as ``scipy.stats.ks_2samp``
    with ``method="auto"``); on binned data, an approximation from the binned
    CDFs (see the module docstring).
    """

    name = "ks"
    kinds = NUMERICAL_KINDS
    default_threshold = 0.05
    is_test = True

    def compare(self, reference: Distribution, current: Distribution) -> DriftResult:
        self._check(reference, current)
        if reference.samples is not None and current.samples is not None:
            d, p = _ks_samples(reference.samples, current.samples)
            return self._result(reference, current, d, p)
        ref, cur, _ = common_counts(reference, current)
        gaps = np.abs(np.cumsum(ref) / ref.sum() - np.cumsum(cur) / cur.sum())
        d = float(min(gaps.max(), 1.0))
        return self._result(reference, current, d, _ks_asymptotic_p(d, reference.size, current.size))


def _ks_samples(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    if max(reference.size, current.size) <= KS_EXACT_MAX_N:
        with warnings.catch_warnings():
            # scipy falls back to the asymptotic p-value itself when the exact one fails; that is the answer we want
            warnings.filterwarnings(
                "ignore", message="ks_2samp: Exact calculation unsuccessful", category=RuntimeWarning
            )
            res = stats.ks_2samp(reference, current, method="auto")
        return float(res.statistic), float(res.pvalue)
    _, cdf_ref, cdf_cur = cdfs_on_merged_grid(reference, current)
    d = float(np.max(np.abs(cdf_ref - cdf_cur)))
    return d, _ks_asymptotic_p(d, reference.size, current.size)


def _ks_asymptotic_p(d: float, n1: int, n2: int) -> float:
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0.0, 1.0))


@register
class Chi2Detector(_Detector):
    """Chi-square test of homogeneity on the 2 × k table of reference and current category counts.

    Categories either side never saw are included (with 0 on the other side);
    the statistic and p-value equal ``scipy.stats.chi2_contingency(table,
    correction=False)``. A single common category gives statistic 0, p 1.
    """

    name = "chi2"
    kinds = CATEGORY_KINDS
    default_threshold = 0.05
    is_test = True

    def compare(self, reference: Distribution, current: Distribution) -> DriftResult:
        self._check(reference, current)
        ref, cur, _ = common_counts(reference, current)
        table = np.vstack([ref, cur])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:
            return self._result(reference, current, 0.0, 1.0, dof=0.0)
        res = stats.chi2_contingency(table, correction=False)
        return self._result(reference, current, float(res.statistic), float(res.pvalue), dof=float(res.dof))


@register
class JensenShannonDetector(_Detector):
    """Jensen–Shannon distance (base 2, in [0, 1]) between the common-bin proportions."""

    name = "jensenshannon"
    kinds = ALL_KINDS
    default_threshold = 0.1

    def __init__(self, threshold: float | None = None, *, bins: int = DEFAULT_SAMPLE_BINS) -> None:
        super().__init__(threshold)
        self.bins = bins

    def compare(self, reference: Distribution, current: Distribution) -> DriftResult:
        self._check(reference, current)
        ref, cur, _ = common_counts(reference, current, bins=self.bins)
        distance = float(jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2))
        return self._result(reference, current, distance, bins=float(ref.size))


@register
class WassersteinDetector(_Detector):
    """1-Wasserstein (earth mover's) distance, by default in reference standard deviations.

    ``normalize=False`` gives the distance in feature units (equal to
    ``scipy.stats.wasserstein_distance`` on samples); binned data puts each
    count at its bin midpoint.
    """

    name = "wasserstein"
    kinds = NUMERICAL_KINDS
    default_threshold = 0.1

    def __init__(self, threshold: float | None = None, *, normalize: bool = True) -> None:
        super().__init__(threshold)
        self.normalize = normalize

    def compare(self, reference: Distribution, current: Distribution) -> DriftResult:
        self._check(reference, current)
        if reference.samples is not None and current.samples is not None:
            grid, cdf_ref, cdf_cur = cdfs_on_merged_grid(reference.samples, current.samples)
            distance = float(np.sum(np.abs(cdf_ref[:-1] - cdf_cur[:-1]) * np.diff(grid)))
        else:
            ref, cur, edges = common_counts(reference, current)
            assert edges is not None
            mids = (edges[:-1] + edges[1:]) / 2.0
            distance = float(stats.wasserstein_distance(mids, mids, ref, cur))
        scale = _scale(reference) if self.normalize else 1.0
        return self._result(reference, current, distance / scale, distance=distance, scale=scale)


def _scale(reference: Distribution) -> float:
    std = reference.std
    if std is None and reference.edges is not None and reference.counts is not None and reference.size > 1:
        mids = reference.midpoints
        weights = reference.counts / reference.counts.sum()
        mean = float(np.sum(weights * mids))
        std = math.sqrt(float(np.sum(weights * (mids - mean) ** 2)))
    return std if std is not None and math.isfinite(std) and std > 0 else 1.0


@register
class DomainClassifierDetector(_Detector):
    """Multivariate drift: can a classifier tell reference rows from current rows?

    Samples up to ``max_rows`` rows of each side (seeded), encodes categories
    as ordinal codes (missing stays missing), and scores a small
    ``HistGradientBoostingClassifier`` by ``folds``-fold cross-validated ROC
    AUC. About 0.5 means indistinguishable; drifted when AUC > threshold
    (0.55). Deterministic for a given ``seed``. Needs rows: counts are a
    :class:`~corral.errors.DriftInputError`.
    """

    name = "domain_classifier"
    kinds = ALL_KINDS
    default_threshold = 0.55
    multivariate = True

    def __init__(
        self, threshold: float | None = None, *, max_rows: int = 2000, folds: int = 3, seed: int = 0, max_iter: int = 50
    ) -> None:
        super().__init__(threshold)
        if folds < 2 or max_rows < folds:
            raise ConfigurationError(f"{self.name}: need folds >= 2 and max_rows >= folds")
        self.max_rows, self.folds, self.seed, self.max_iter = max_rows, folds, seed, max_iter

    def compare(self, reference: Distribution | pd.DataFrame, current: Distribution | pd.DataFrame) -> DriftResult:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        ref, cur = self._frame(reference, "reference"), self._frame(current, "current")
        columns = [c for c in ref.columns if c in cur.columns]
        if not columns:
            raise DriftInputError(f"{self.name}: reference and current share no columns")
        rng = np.random.default_rng(self.seed)
        ref, cur = self._sample(ref[columns], rng, "reference"), self._sample(cur[columns], rng, "current")
        features = _encode(pd.concat([ref, cur], ignore_index=True))
        labels = np.r_[np.zeros(len(ref), dtype="int64"), np.ones(len(cur), dtype="int64")]
        model = HistGradientBoostingClassifier(max_iter=self.max_iter, early_stopping=False, random_state=self.seed)
        folds = StratifiedKFold(n_splits=self.folds, shuffle=True, random_state=self.seed)
        aucs = cross_val_score(model, features, labels, cv=folds, scoring="roc_auc", error_score="raise")
        auc = float(np.mean(aucs))
        return DriftResult(
            detector=self.name,
            statistic=auc,
            p_value=None,
            threshold=self.threshold,
            drifted=auc > self.threshold,
            feature=None if len(columns) > 1 else str(columns[0]),
            reference_size=len(ref),
            current_size=len(cur),
            details={"auc_std": float(np.std(aucs)), "columns": float(len(columns))},
        )

    def _frame(self, data: Distribution | pd.DataFrame, side: str) -> pd.DataFrame:
        if isinstance(data, pd.DataFrame):
            return data
        if data.samples is None:
            raise DriftInputError(
                f"{self.name} needs rows (data frames or numerical samples); the {side} {data._label()} is counts"
            )
        return pd.DataFrame({data.name or "value": data.samples})

    def _sample(self, frame: pd.DataFrame, rng: np.random.Generator, side: str) -> pd.DataFrame:
        if len(frame) < self.folds:
            raise DriftInputError(f"{self.name}: the {side} frame has {len(frame)} rows; need at least {self.folds}")
        if len(frame) > self.max_rows:
            frame = frame.iloc[np.sort(rng.choice(len(frame), self.max_rows, replace=False))]
        return frame


def _encode(frame: pd.DataFrame) -> np.ndarray:
    columns = []
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            columns.append(col.to_numpy(dtype="float64", na_value=np.nan))
        else:
            codes = pd.Categorical(col.map(lambda v: v if pd.isna(v) else str(v))).codes.astype("float64")
            codes[codes < 0] = np.nan
            columns.append(codes)
    return np.column_stack(columns)


# --- comparing frames and profiles ---------------------------------------------------------------------------------

DetectorSpec = str | DriftDetector
DetectorChoice = Sequence[DetectorSpec] | Mapping[FeatureKind, Sequence[DetectorSpec]] | None

SAMPLE_DEFAULTS: Mapping[FeatureKind, tuple[str, ...]] = {
    FeatureKind.NUMERICAL: ("ks",),
    FeatureKind.CATEGORICAL: ("chi2",),
    FeatureKind.BOOLEAN: ("chi2",),
}
BINNED_DEFAULTS: Mapping[FeatureKind, tuple[str, ...]] = dict.fromkeys(FeatureKind, ("psi",))


def _resolve(
    choice: DetectorChoice, defaults: Mapping[FeatureKind, tuple[str, ...]]
) -> dict[FeatureKind, list[DriftDetector]]:
    def build(spec: DetectorSpec) -> DriftDetector:
        return get_detector(spec) if isinstance(spec, str) else spec

    if choice is None:
        choice = defaults
    if isinstance(choice, Mapping):
        return {FeatureKind(kind): [build(s) for s in specs] for kind, specs in choice.items()}
    built = [build(s) for s in choice]
    return {kind: [d for d in built if kind in d.kinds] for kind in FeatureKind}


def compare_frames(
    reference: pd.DataFrame, current: pd.DataFrame, signature: Signature, detectors: DetectorChoice = None
) -> list[DriftResult]:
    """Compare every signature feature of two frames (raw samples), one result per feature and detector.

    ``detectors``: ``None`` for the defaults (``ks`` for numbers, ``chi2`` for
    categories and booleans), a list of names or detectors (each applied to the
    features whose kind it accepts), or a ``{kind: [...]}`` mapping. A
    multivariate detector (``domain_classifier``) runs once over all the
    signature's columns (``feature=None``). Each column is sorted once.

    Raises:
        SchemaError: a signature feature is missing from either frame.
        DriftInputError: a feature has no values on one side, or a detector cannot take its kind.
    """
    by_kind = _resolve(detectors, SAMPLE_DEFAULTS)
    for side, frame in (("reference", reference), ("current", current)):
        absent = [c for c in signature.columns if c not in frame.columns]
        if absent:
            raise SchemaError(f"the {side} frame lacks signature features {absent}")
    columns = signature.columns
    pairs = ((spec, reference[spec.name], current[spec.name]) for spec in signature.inputs)
    return _compare_columns(pairs, by_kind, lambda: (reference[columns], current[columns]))


ColumnPair = tuple[FeatureSpec, Any, Any]


def compare_columns(
    columns: Iterable[ColumnPair],
    detectors: DetectorChoice = None,
    *,
    frames: Callable[[], tuple[pd.DataFrame, pd.DataFrame]] | None = None,
) -> list[DriftResult]:
    """:func:`compare_frames`, one feature at a time: for data too large to hold as two whole frames.

    ``columns`` yields ``(spec, reference values, current values)`` per feature
    (array-likes or Series, as a frame's columns would be); it is consumed
    lazily, and each pair is released before the next is asked for, so a
    generator that reads one column of each file at a time keeps at most one
    pair in memory. The results are those of :func:`compare_frames` on frames
    holding the same columns, in the same order. ``frames`` returns the two
    whole frames (all features) and is called only when a multivariate
    detector (``domain_classifier``) is chosen. ``detectors`` as in
    :func:`compare_frames`; they are resolved before the first pair is read.

    Raises:
        DriftInputError: a feature has no values on one side, a detector cannot take its kind,
            or a multivariate detector is chosen without ``frames``.
    """
    return _compare_columns(columns, _resolve(detectors, SAMPLE_DEFAULTS), frames)


def _compare_columns(
    columns: Iterable[ColumnPair],
    by_kind: Mapping[FeatureKind, Sequence[DriftDetector]],
    frames: Callable[[], tuple[pd.DataFrame, pd.DataFrame]] | None,
) -> list[DriftResult]:
    results: list[DriftResult] = []
    multivariate: dict[int, DriftDetector] = {}
    for spec, ref_values, cur_values in columns:
        chosen = by_kind.get(spec.kind, [])
        univariate = [d for d in chosen if not d.multivariate]
        multivariate |= {id(d): d for d in chosen if d.multivariate}
        if univariate:
            ref = Distribution.from_values(ref_values, spec.kind, name=spec.name)
            del ref_values  # the sorted samples (or counts) are all that is needed from here
            cur = Distribution.from_values(cur_values, spec.kind, name=spec.name)
            del cur_values
            results.extend(d.compare(ref, cur) for d in univariate)
            del ref, cur
        else:
            del ref_values, cur_values
    if multivariate:
        if frames is None:
            raise DriftInputError("multivariate detectors need the whole frames; none were given")
        reference, current = frames()
        for detector in multivariate.values():
            results.append(detector.compare(reference, current))
    return results


WindowCounts = Profile | Mapping[str, Distribution | FeatureProfile]


def compare_profiles(
    reference: Profile, current: WindowCounts, detectors: DetectorChoice = None, *, outputs: bool = False
) -> list[DriftResult]:
    """Compare a reference profile with a production window's counts (the streaming path).

    ``current`` is a :class:`Profile` or a ``{feature: Distribution | FeatureProfile}``
    mapping whose numerical counts use the reference profile's bin edges.
    Features the window does not have are skipped. ``detectors`` as in
    :func:`compare_frames`; the default is ``psi`` for every kind. With
    ``outputs=True`` the model's outputs are compared instead (prediction drift).

    Raises:
        DriftInputError: the window shares no feature with the profile, bins that differ, empty sides.
    """
    by_kind = _resolve(detectors, BINNED_DEFAULTS)
    ref_columns = reference.outputs if outputs else reference.features
    if isinstance(current, Profile):
        window: Mapping[str, Distribution | FeatureProfile] = current.outputs if outputs else current.features
    else:
        window = current
    shared = [name for name in ref_columns if name in window]
    if not shared:
        what = "outputs" if outputs else "features"
        raise DriftInputError(f"the window has none of the reference profile's {what}: {sorted(ref_columns)}")
    results: list[DriftResult] = []
    for name in shared:
        ref = Distribution.from_profile(ref_columns[name])
        item = window[name]
        cur = Distribution.from_profile(item) if isinstance(item, FeatureProfile) else item
        results.extend(d.compare(ref, cur) for d in _univariate(by_kind.get(ref.kind, [])))
    return results


def prediction_drift(reference: Profile, current: WindowCounts, detectors: DetectorChoice = None) -> list[DriftResult]:
    """Prediction drift: the same detectors applied to the model outputs' profiles (``Profile.outputs``)."""
    return compare_profiles(reference, current, detectors, outputs=True)


def _univariate(detectors: Sequence[DriftDetector]) -> list[DriftDetector]:
    found = [d for d in detectors if not d.multivariate]
    if len(found) != len(detectors):
        raise DriftInputError("multivariate detectors need rows; profiles only hold counts")
    return found


__all__ = [
    "ALL_KINDS",
    "BINNED_DEFAULTS",
    "KS_EXACT_MAX_N",
    "PSI_EPSILON",
    "SAMPLE_DEFAULTS",
    "Chi2Detector",
    "DomainClassifierDetector",
    "DriftDetector",
    "DriftResult",
    "JensenShannonDetector",
    "KsDetector",
    "PsiDetector",
    "WassersteinDetector",
    "compare_columns",
    "compare_frames",
    "compare_profiles",
    "detector_class",
    "detector_names",
    "get_detector",
    "prediction_drift",
    "register",
]
