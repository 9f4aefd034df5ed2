from __future__ import annotations

import inspect
import warnings
import weakref
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from corral.core.profile import Profile, histogram, profile_column, profile_frame
from corral.core.schema import FeatureKind, Signature
from corral.errors import ConfigurationError, DriftInputError, SchemaError, UnknownDetectorError
from corral.monitoring import detectors
from corral.monitoring.detectors import (
    PSI_EPSILON,
    Chi2Detector,
    DomainClassifierDetector,
    DriftDetector,
    JensenShannonDetector,
    KsDetector,
    PsiDetector,
    WassersteinDetector,
    compare_columns,
    compare_frames,
    compare_profiles,
    detector_class,
    detector_names,
    get_detector,
    prediction_drift,
)
from corral.monitoring.distributions import Distribution, common_counts

NUM = FeatureKind.NUMERICAL
CAT = FeatureKind.CATEGORICAL

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=1, max_size=60)
positive_counts = st.lists(st.integers(0, 500), min_size=2, max_size=8).filter(lambda c: sum(c) > 0)


def num(values: object, name: str = "x") -> Distribution:
    return Distribution.from_values(values, NUM, name=name)


def scipy_ks(a: Any, b: Any) -> Any:
    with warnings.catch_warnings():  # scipy's own fallback to the asymptotic p-value, as in the detector
        warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful", category=RuntimeWarning)
        return stats.ks_2samp(a, b)


# --- registry -----------------------------------------------------------------------------------------------------


def test_every_detector_class_in_the_module_is_registered() -> None:
    classes = [
        obj
        for obj in vars(detectors).values()
        if inspect.isclass(obj)
        and obj.__module__ == detectors.__name__
        and hasattr(obj, "compare")
        and not obj.__name__.startswith("_")
        and obj is not DriftDetector
    ]
    assert len(classes) >= 6
    for cls in classes:
        assert cls.name == cls.name.lower()
        assert detector_class(cls.name) is cls, f"{cls.__name__} is not registered"
        assert cls.__name__.endswith("Detector")
    assert detector_names() == sorted(c.name for c in classes)
    assert set(detector_names()) == {"chi2", "domain_classifier", "jensenshannon", "ks", "psi", "wasserstein"}


def test_unknown_detector_names_the_known_ones() -> None:
    with pytest.raises(UnknownDetectorError, match=r"no drift detector named 'kl'.*chi2.*psi.*wasserstein"):
        get_detector("kl")
    with pytest.raises(UnknownDetectorError):
        detector_class("PSI")  # keys are lowercase


def test_thresholds_default_and_validated() -> None:
    assert get_detector("psi").threshold == PsiDetector.default_threshold == 0.2
    assert get_detector("ks", 0.01).threshold == 0.01
    assert get_detector("wasserstein", normalize=False).normalize is False  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError):
        get_detector("ks", 1.5)  # a p-value threshold must be in (0, 1)
    with pytest.raises(ConfigurationError):
        get_detector("psi", float("nan"))


# --- agreement with scipy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n1", "n2", "shift"), [(50, 70, 0.3), (800, 1000, 0.0), (12_000, 11_000, 0.05)])
def test_ks_on_samples_equals_scipy(n1: int, n2: int, shift: float) -> None:
    rng = np.random.default_rng(n1)
    a, b = rng.normal(size=n1), rng.normal(shift, size=n2)
    result = KsDetector().compare(num(a), num(b))
    expected = scipy_ks(a, b)
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-6)
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-6)
    assert result.drifted == (expected.pvalue < 0.05)
    assert not result.binned


@settings(max_examples=40, deadline=None)
@given(samples, samples)
def test_ks_and_wasserstein_match_scipy_with_ties(a: list[float], b: list[float]) -> None:
    a = [round(v) for v in a]  # ties within and across samples
    ks = KsDetector().compare(num(a), num(b))
    expected = scipy_ks(a, b)
    assert ks.statistic == pytest.approx(expected.statistic, abs=1e-6)
    assert ks.p_value == pytest.approx(expected.pvalue, abs=1e-6)
    assert ks.p_value is not None and 0.0 <= ks.p_value <= 1.0
    w = WassersteinDetector(normalize=False).compare(num(a), num(b))
    assert w.statistic == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-6)


def test_wasserstein_normalized_by_reference_std() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 3, 2000), rng.normal(1, 3, 1500)
    result = WassersteinDetector().compare(num(a), num(b))
    raw = stats.wasserstein_distance(a, b)
    assert result.details["distance"] == pytest.approx(raw, abs=1e-6)
    assert result.details["scale"] == pytest.approx(np.std(a, ddof=1))
    assert result.statistic == pytest.approx(raw / np.std(a, ddof=1), abs=1e-9)
    constant = WassersteinDetector().compare(num([2.0, 2.0]), num([3.0]))
    assert constant.details["scale"] == 1.0 and constant.statistic == pytest.approx(1.0)


@settings(max_examples=30, deadline=None)
@given(st.lists(finite, min_size=2, max_size=40), samples, st.floats(1e-3, 1e3))
def test_normalized_wasserstein_is_scale_invariant(a: list[float], b: list[float], factor: float) -> None:
    if np.std(a) < 1e-3:
        return
    plain = WassersteinDetector().compare(num(a), num(b)).statistic
    scaled = WassersteinDetector().compare(num(np.multiply(a, factor)), num(np.multiply(b, factor))).statistic
    assert scaled == pytest.approx(plain, rel=1e-6, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(positive_counts, st.data())
def test_chi2_equals_chi2_contingency(ref_counts: list[int], data: st.DataObject) -> None:
    cur_counts = data.draw(st.lists(st.integers(0, 500), min_size=len(ref_counts), max_size=len(ref_counts)))
    if sum(cur_counts) == 0:
        return
    labels = [f"c{i}" for i in range(len(ref_counts))]
    ref = Distribution.from_counts(dict(zip(labels, ref_counts, strict=True)), CAT)
    cur = Distribution.from_counts(dict(zip(labels, cur_counts, strict=True)), CAT)
    result = Chi2Detector().compare(ref, cur)
    table = np.array([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    assert result.p_value is not None and 0.0 <= result.p_value <= 1.0
    if table.shape[1] < 2:
        assert (result.statistic, result.p_value) == (0.0, 1.0)
        return
    expected = stats.chi2_contingency(table, correction=False)
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-6)
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-6)
    assert result.details["dof"] == expected.dof


def test_chi2_includes_unseen_categories_and_samples() -> None:
    ref = Distribution.from_values(pd.Series(["a"] * 50 + ["b"] * 50 + [None] * 3), CAT, name="colour")
    cur = Distribution.from_values(np.array(["a"] * 40 + ["b"] * 40 + ["new"] * 20, dtype=object), CAT)
    result = Chi2Detector().compare(ref, cur)
    expected = stats.chi2_contingency(np.array([[50, 50, 0], [40, 40, 20]]), correction=False)
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-6)
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-6)
    assert result.drifted and result.feature == "colour"
    assert (result.reference_size, result.reference_missing, result.current_size) == (100, 3, 100)


@settings(max_examples=40, deadline=None)
@given(samples, samples)
def test_jensenshannon_equals_scipy_on_the_same_bins(a: list[float], b: list[float]) -> None:
    ref, cur = num(a), num(b)
    r, c, _ = common_counts(ref, cur)
    result = JensenShannonDetector().compare(ref, cur)
    assert result.statistic == pytest.approx(jensenshannon(r / r.sum(), c / c.sum(), base=2), abs=1e-6)
    assert 0.0 <= result.statistic <= 1.0 + 1e-12


def test_psi_formula_and_epsilon() -> None:
    ref = Distribution.from_counts([50, 50, 0], NUM, edges=[0, 1, 2, 3])
    cur = Distribution.from_counts([25, 50, 25], NUM, edges=[0, 1, 2, 3])
    p = np.array([0.5, 0.5, PSI_EPSILON])
    q = np.array([0.25, 0.5, 0.25])
    result = PsiDetector().compare(ref, cur)
    assert result.statistic == pytest.approx(np.sum((q - p) * np.log(q / p)), abs=1e-12)
    assert np.isfinite(result.statistic) and result.drifted and result.p_value is None


# --- invariants ---------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(samples)
def test_identical_distributions_show_no_drift(a: list[float]) -> None:
    for name in ("psi", "jensenshannon", "wasserstein", "ks"):
        result = get_detector(name).compare(num(a), num(list(reversed(a))))
        assert not result.drifted
        if result.p_value is None:
            assert result.statistic == pytest.approx(0.0, abs=1e-12)
        else:
            assert result.statistic == 0.0 and result.p_value == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(samples, samples)
def test_symmetric_statistics_are_symmetric_and_non_negative(a: list[float], b: list[float]) -> None:
    for name in ("ks", "wasserstein", "jensenshannon", "psi"):
        detector = get_detector(name, normalize=False) if name == "wasserstein" else get_detector(name)
        ab = detector.compare(num(a), num(b))
        assert ab.statistic >= 0.0
        if name in ("ks", "wasserstein"):  # binned ones use the reference's bins, so only these swap exactly
            ba = detector.compare(num(b), num(a))
            assert ab.statistic == pytest.approx(ba.statistic, abs=1e-9)
            assert ab.p_value == pytest.approx(ba.p_value, abs=1e-9) if ab.p_value is not None else True


@settings(max_examples=40, deadline=None)
@given(positive_counts, positive_counts)
def test_binned_psi_and_js_are_symmetric(r: list[int], c: list[int]) -> None:
    size = min(len(r), len(c))
    if sum(r[:size]) == 0 or sum(c[:size]) == 0:
        return
    edges = list(range(size + 1))
    ref = Distribution.from_counts(r[:size], NUM, edges=edges)
    cur = Distribution.from_counts(c[:size], NUM, edges=edges)
    for name in ("psi", "jensenshannon"):
        assert get_detector(name).compare(ref, cur).statistic == pytest.approx(
            get_detector(name).compare(cur, ref).statistic, abs=1e-9
        )


# --- detection at default thresholds ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["psi", "ks", "jensenshannon", "wasserstein"])
def test_shift_is_detected_and_same_distribution_is_not(name: str) -> None:
    rng = np.random.default_rng(7)
    ref = num(rng.normal(10, 2, 20_000))
    same = num(rng.normal(10, 2, 20_000))
    shifted = num(rng.normal(11.5, 2, 20_000))
    detector = get_detector(name)
    assert not detector.compare(ref, same).drifted
    assert detector.compare(ref, shifted).drifted


@pytest.mark.parametrize("name", ["psi", "chi2", "jensenshannon"])
def test_categorical_shift_is_detected(name: str) -> None:
    rng = np.random.default_rng(3)
    ref = Distribution.from_values(rng.choice(["a", "b", "c"], 20_000, p=[0.5, 0.3, 0.2]), CAT)
    same = Distribution.from_values(rng.choice(["a", "b", "c"], 20_000, p=[0.5, 0.3, 0.2]), CAT)
    shifted = Distribution.from_values(rng.choice(["a", "b", "c"], 20_000, p=[0.2, 0.3, 0.5]), CAT)
    assert not get_detector(name).compare(ref, same).drifted
    assert get_detector(name).compare(ref, shifted).drifted


# --- missing values, empty sides, kinds ---------------------------------------------------------------------------


def test_nan_is_ignored_and_counted() -> None:
    values = pd.Series([1.0, np.nan, 2.0, np.inf, 3.0, None], dtype="float64")
    dist = num(values)
    assert dist.size == 3 and dist.missing == 3
    assert dist.samples is not None and dist.samples.tolist() == [1.0, 2.0, 3.0]
    nullable = num(pd.Series([1, None, 3], dtype="Int64"))
    assert (nullable.size, nullable.missing) == (2, 1)
    result = KsDetector().compare(num([1.0, 2.0, 3.0, np.nan]), dist)
    assert result.statistic == 0.0 and result.current_missing == 3 and result.reference_missing == 1
    assert result.current_size == 3


def test_empty_or_all_missing_side_is_a_clear_error() -> None:
    for name in ("psi", "ks", "wasserstein", "jensenshannon"):
        with pytest.raises(DriftInputError, match=r"current feature 'x' has no values \(2 missing\)"):
            get_detector(name).compare(num([1.0, 2.0]), num([np.nan, np.nan]))
    with pytest.raises(DriftInputError, match="reference"):
        KsDetector().compare(num([]), num([1.0]))
    with pytest.raises(DriftInputError, match="no values"):
        Chi2Detector().compare(Distribution.from_values(["a"], CAT), Distribution.from_values([None], CAT))


def test_kinds_are_enforced() -> None:
    cats = Distribution.from_values(["a", "b"], CAT, name="colour")
    with pytest.raises(DriftInputError, match="chi2 compares boolean, categorical features; feature 'x'"):
        Chi2Detector().compare(num([1.0, 2.0]), num([1.0]))
    with pytest.raises(DriftInputError, match="ks compares numerical"):
        KsDetector().compare(cats, cats)
    with pytest.raises(DriftInputError, match="wasserstein"):
        WassersteinDetector().compare(cats, cats)
    with pytest.raises(DriftInputError, match="reference is numerical but current is categorical"):
        PsiDetector().compare(num([1.0]), Distribution.from_values(["a"], CAT, name="x"))
    with pytest.raises(DriftInputError, match="not numbers"):
        num(["a", "b"])


def test_bad_counts_are_rejected() -> None:
    with pytest.raises(DriftInputError, match="one fewer"):
        Distribution.from_counts([1, 2], NUM, edges=[0, 1])
    with pytest.raises(DriftInputError, match="edges"):
        Distribution.from_counts([1, 2], NUM)
    with pytest.raises(DriftInputError, match="non-negative"):
        Distribution.from_counts({"a": -1}, CAT)
    with pytest.raises(DriftInputError, match="different edges"):
        PsiDetector().compare(
            Distribution.from_counts([1, 1], NUM, edges=[0, 1, 2]),
            Distribution.from_counts([1, 1], NUM, edges=[0, 1, 3]),
        )


# --- binned data (the streaming path) -----------------------------------------------------------------------------


def test_binned_matches_samples_binned_on_the_same_edges() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=5000), rng.normal(0.6, size=4000)
    prof = profile_column("x", pd.Series(a), NUM, bins=20)
    ref = Distribution.from_profile(prof)
    cur_counts = Distribution.from_counts(histogram(b, prof.bin_edges), NUM, edges=prof.bin_edges, name="x")
    cur_samples = num(b)
    for name in ("psi", "jensenshannon", "ks", "wasserstein"):
        binned = get_detector(name).compare(ref, cur_counts)
        mixed = get_detector(name).compare(ref, cur_samples)  # samples are binned on the reference's edges
        assert binned.binned and mixed.binned
        assert binned.statistic == pytest.approx(mixed.statistic, abs=1e-12)
        assert binned.drifted


def test_binned_ks_and_wasserstein_approximations() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    ref = Distribution.from_counts([10, 20, 70], NUM, edges=edges)
    cur = Distribution.from_counts([30, 30, 40], NUM, edges=edges)
    ks = KsDetector().compare(ref, cur)
    assert ks.statistic == pytest.approx(0.3)  # max |0.1-0.3|, |0.3-0.6|, |1-1|
    m, n = 100.0, 100.0
    assert ks.p_value == pytest.approx(stats.kstwo.sf(0.3, round(m * n / (m + n))), abs=1e-9)
    w = WassersteinDetector(normalize=False).compare(ref, cur)
    mids = np.array([0.5, 1.5, 2.5])
    assert w.statistic == pytest.approx(stats.wasserstein_distance(mids, mids, [10, 20, 70], [30, 30, 40]))


def test_categories_with_other_bucket_are_aligned() -> None:
    ref = Distribution.from_counts({"a": 50, "b": 30}, CAT, other=20)
    cur = Distribution.from_counts({"a": 50, "b": 30, "rare1": 10, "rare2": 10}, CAT)
    r, c, _ = common_counts(ref, cur)
    assert r.tolist() == [50, 30, 20] and c.tolist() == [50, 30, 20]  # rare labels may hide in "other"
    assert PsiDetector().compare(ref, cur).statistic == 0.0


def test_compare_profiles_and_prediction_drift() -> None:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"x": rng.normal(size=3000), "colour": rng.choice(["r", "g"], 3000)})
    signature = Signature.infer(frame)
    features = profile_frame(frame, signature)
    outputs = {"label": profile_column("label", pd.Series(rng.choice(["yes", "no"], 3000, p=[0.2, 0.8])), CAT)}
    reference = Profile(rows=3000, features=features, outputs=outputs)
    edges = features["x"].bin_edges
    window = {
        "x": Distribution.from_counts(histogram(rng.normal(2, 1, 1000), edges), NUM, edges=edges),
        "colour": profile_column("colour", pd.Series(rng.choice(["r", "g"], 1000)), CAT),
    }
    results = {r.feature: r for r in compare_profiles(reference, window)}
    assert set(results) == {"x", "colour"}
    assert all(r.detector == "psi" and r.binned for r in results.values())
    assert results["x"].drifted and not results["colour"].drifted

    flipped = {"label": profile_column("label", pd.Series(rng.choice(["yes", "no"], 1000, p=[0.8, 0.2])), CAT)}
    steady = Profile(rows=1000, features={}, outputs={"label": outputs["label"]})
    [drift] = prediction_drift(reference, flipped, ["chi2", "jensenshannon"])[:1]
    assert drift.feature == "label" and drift.detector == "chi2" and drift.drifted
    assert not any(r.drifted for r in prediction_drift(reference, steady))
    with pytest.raises(DriftInputError, match="none of the reference profile's features"):
        compare_profiles(reference, {"other": window["x"]})
    with pytest.raises(DriftInputError, match="multivariate"):
        compare_profiles(reference, window, ["domain_classifier"])


# --- frames and the domain classifier -----------------------------------------------------------------------------


def _frames(shift: float, n: int = 1500, *, holes: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, Signature]:
    rng = np.random.default_rng(21)
    ref = pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(size=n), "c": rng.choice(["u", "v", "w"], n)})
    cur = pd.DataFrame({"a": rng.normal(shift, size=n), "b": rng.uniform(size=n), "c": rng.choice(["u", "v", "w"], n)})
    if holes:
        cur.loc[::10, "b"] = np.nan
    return ref, cur, Signature.infer(ref)


def test_compare_frames_defaults_per_kind() -> None:
    ref, cur, signature = _frames(1.0)
    results = compare_frames(ref, cur, signature)
    assert [(r.feature, r.detector) for r in results] == [("a", "ks"), ("b", "ks"), ("c", "chi2")]
    drifted = {r.feature: r.drifted for r in results}
    assert drifted == {"a": True, "b": False, "c": False}
    assert results[1].current_missing == 150


def test_compare_frames_with_chosen_detectors() -> None:
    ref, cur, signature = _frames(1.0)
    results = compare_frames(ref, cur, signature, ["wasserstein", "psi", "domain_classifier"])
    pairs = [(r.feature, r.detector) for r in results]
    expected = [("a", "wasserstein"), ("a", "psi"), ("b", "wasserstein"), ("b", "psi"), ("c", "psi")]
    assert pairs == [*expected, (None, "domain_classifier")]
    by_kind = compare_frames(ref, cur, signature, {CAT: ["jensenshannon"]})
    assert [(r.feature, r.detector) for r in by_kind] == [("c", "jensenshannon")]
    with pytest.raises(SchemaError, match=r"current frame lacks signature features \['c'\]"):
        compare_frames(ref, cur.drop(columns="c"), signature)


def test_domain_classifier_detects_shift_deterministically() -> None:
    ref, shifted, _ = _frames(1.0, n=600)
    _, same, _ = _frames(0.0, n=600, holes=False)  # missing values alone are a difference it would learn
    detector = DomainClassifierDetector(max_rows=500, max_iter=20)
    drift = detector.compare(ref, shifted)
    assert drift.drifted and drift.statistic > 0.6 and drift.p_value is None
    assert drift == DomainClassifierDetector(max_rows=500, max_iter=20).compare(ref, shifted)
    assert not detector.compare(ref, same).drifted
    one_feature = detector.compare(num(ref["a"], "a"), num(shifted["a"], "a"))
    assert one_feature.feature == "a" and one_feature.drifted


def test_domain_classifier_rejects_binned_data() -> None:
    counts = Distribution.from_counts([5, 5], NUM, edges=[0, 1, 2], name="x")
    with pytest.raises(DriftInputError, match="needs rows"):
        DomainClassifierDetector().compare(counts, counts)
    with pytest.raises(DriftInputError, match="at least 3"):
        DomainClassifierDetector().compare(pd.DataFrame({"a": [1.0, 2.0, 3.0]}), pd.DataFrame({"a": [1.0]}))


def test_compare_columns_equals_compare_frames_one_pair_at_a_time() -> None:
    ref, cur, signature = _frames(1.0)
    previous: list[weakref.ref[np.ndarray]] = []

    def pairs() -> Any:
        for spec in signature.inputs:
            # the pair handed out before was compared and let go before the next one is read
            assert all(alive() is None for alive in previous)
            ref_values, cur_values = ref[spec.name].to_numpy(copy=True), cur[spec.name].to_numpy(copy=True)
            previous[:] = [weakref.ref(ref_values), weakref.ref(cur_values)]
            yield spec, ref_values, cur_values
            del ref_values, cur_values

    for choice in (None, ["wasserstein", "psi"], {CAT: ["jensenshannon"]}):
        assert compare_columns(pairs(), choice) == compare_frames(ref, cur, signature, choice)
    frames_asked: list[int] = []

    def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
        frames_asked.append(1)
        return ref[signature.columns], cur[signature.columns]

    chosen: list[str | DriftDetector] = ["ks", DomainClassifierDetector(max_rows=300, max_iter=10)]
    assert compare_columns(pairs(), chosen, frames=frames) == compare_frames(ref, cur, signature, chosen)
    assert frames_asked == [1]
    assert compare_columns(pairs(), None, frames=frames) == compare_frames(ref, cur, signature)
    assert frames_asked == [1]  # only a multivariate detector needs the whole frames
    with pytest.raises(DriftInputError, match="multivariate detectors need the whole frames"):
        compare_columns(pairs(), ["domain_classifier"])


def test_compare_columns_resolves_detectors_before_reading() -> None:
    def pairs() -> Any:
        raise AssertionError("no column should be read for an unknown detector")
        yield  # pragma: no cover

    with pytest.raises(UnknownDetectorError):
        compare_columns(pairs(), ["nope"])
