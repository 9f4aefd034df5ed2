from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from corral.errors import FeedbackError
from corral.monitoring import performance
from corral.monitoring.performance import (
    CLASSIFICATION,
    ESTIMATED,
    HIGHER_IS_BETTER,
    REGRESSION,
    Calibrator,
    Metric,
    classification_metrics,
    compare_to_registered,
    estimate_classification,
    regression_metrics,
    wilson_interval,
)

TOL = 1e-12


def binary_data(n: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """String labels ("no" / "yes"), noisy predictions and probabilities whose columns follow ("no", "yes")."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    y = np.where(rng.uniform(0, 1, n) < p, "yes", "no")
    pred = np.where(p >= 0.5, "yes", "no")
    return y, pred, np.column_stack([1 - p, p])


def multiclass_data(n: int = 600, k: int = 3, seed: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(k), size=n)
    y = np.array([rng.choice(k, p=row) for row in proba])
    return y, proba.argmax(axis=1), proba


def values(result: dict[str, Metric]) -> dict[str, float | None]:
    return {name: m.value for name, m in result.items()}


# --- realized metrics equal scikit-learn's --------------------------------------------------------------------------


def test_binary_metrics_equal_sklearn_with_string_labels() -> None:
    y, pred, proba = binary_data()
    result = classification_metrics(y, pred, ["no", "yes"], proba)
    assert tuple(result) == CLASSIFICATION
    options: dict[str, Any] = {"pos_label": "yes"}
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, **options),
        "recall": skm.recall_score(y, pred, **options),
        "f1": skm.f1_score(y, pred, **options),
        "roc_auc": skm.roc_auc_score(y == "yes", proba[:, 1]),
        "log_loss": skm.log_loss(y, proba, labels=["no", "yes"]),
    }
    for name, value in expected.items():
        assert result[name].value == pytest.approx(value, abs=TOL), name
        assert result[name].reason is None


def test_binary_positive_class_is_the_second_class() -> None:
    y, pred, proba = binary_data()
    flipped = classification_metrics(y, pred, ["yes", "no"], proba[:, ::-1])
    assert flipped["precision"].value == pytest.approx(skm.precision_score(y, pred, pos_label="no"), abs=TOL)
    assert flipped["roc_auc"].value == pytest.approx(skm.roc_auc_score(y == "no", proba[:, 0]), abs=TOL)


def test_multiclass_metrics_equal_sklearn_macro_and_ovr() -> None:
    y, pred, proba = multiclass_data()
    result = classification_metrics(y, pred, [0, 1, 2], proba)
    macro: dict[str, Any] = {"average": "macro", "zero_division": 0.0}
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, **macro),
        "recall": skm.recall_score(y, pred, **macro),
        "f1": skm.f1_score(y, pred, **macro),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"),
        "log_loss": skm.log_loss(y, proba, labels=[0, 1, 2]),
    }
    for name, value in expected.items():
        assert result[name].value == pytest.approx(value, abs=TOL), name


def test_multiclass_class_never_predicted_counts_zero_like_sklearn() -> None:
    y = np.array(["a", "b", "c", "a", "b", "c"])
    pred = np.array(["a", "b", "a", "a", "b", "b"])  # "c" never predicted
    result = classification_metrics(y, pred, ["a", "b", "c"])
    labels = ["a", "b", "c"]
    assert result["precision"].value == pytest.approx(
        skm.precision_score(y, pred, labels=labels, average="macro", zero_division=0.0), abs=TOL
    )
    assert result["f1"].value == pytest.approx(
        skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0.0), abs=TOL
    )


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(10, 3, 500)
    pred = y + rng.normal(0, 1, 500)
    result = regression_metrics(y, pred)
    assert tuple(result) == REGRESSION
    assert result["mae"].value == pytest.approx(skm.mean_absolute_error(y, pred), abs=TOL)
    assert result["rmse"].value == pytest.approx(skm.root_mean_squared_error(y, pred), abs=TOL)
    assert result["r2"].value == pytest.approx(skm.r2_score(y, pred), abs=TOL)


# --- intervals ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("successes", "trials"), [(0, 10), (3, 10), (10, 10), (1, 1), (517, 1000), (999, 1000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_interval_matches_scipy(successes: int, trials: int, confidence: float) -> None:
    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    lower, upper = wilson_interval(successes, trials, confidence)
    assert lower == pytest.approx(ci.low, abs=TOL)
    assert upper == pytest.approx(ci.high, abs=TOL)


def test_accuracy_interval_is_wilson_even_without_bootstrap() -> None:
    y, pred, _ = binary_data()
    accuracy = classification_metrics(y, pred, ["no", "yes"], bootstrap=0)["accuracy"]
    ci = stats.binomtest(int((y == pred).sum()), len(y)).proportion_ci(method="wilson")
    assert (accuracy.lower, accuracy.upper) == (pytest.approx(ci.low, abs=TOL), pytest.approx(ci.high, abs=TOL))


def test_bootstrap_intervals_contain_the_value_and_repeat_with_the_seed() -> None:
    y, pred, proba = binary_data()
    first = classification_metrics(y, pred, ["no", "yes"], proba, seed=7)
    again = classification_metrics(y, pred, ["no", "yes"], proba, seed=7)
    other = classification_metrics(y, pred, ["no", "yes"], proba, seed=8)
    assert first == again
    assert first["roc_auc"] != other["roc_auc"]
    for metric in first.values():
        assert metric.lower is not None and metric.upper is not None, metric.name
        assert metric.value is not None
        assert metric.lower <= metric.value <= metric.upper, metric.name
        assert metric.lower < metric.upper, metric.name


def test_multiclass_and_regression_bootstrap_intervals_contain_the_value() -> None:
    y, pred, proba = multiclass_data()
    rng = np.random.default_rng(4)
    truth = rng.normal(size=300)
    results = [
        classification_metrics(y, pred, [0, 1, 2], proba, bootstrap=300, seed=1),
        regression_metrics(truth, truth + rng.normal(0, 0.5, 300), bootstrap=300, seed=1),
    ]
    for result in results:
        for metric in result.values():
            assert metric.lower is not None and metric.upper is not None, metric.name
            assert metric.lower <= metric.value <= metric.upper, metric.name  # type: ignore[operator]


def test_bootstrap_interval_width_shrinks_with_more_rows() -> None:
    small = regression_metrics(*_regression_sample(100), seed=0)["mae"]
    large = regression_metrics(*_regression_sample(10_000), seed=0)["mae"]
    assert (large.upper - large.lower) < (small.upper - small.lower) / 5  # type: ignore[operator]


def _regression_sample(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    y = rng.normal(size=n)
    return y, y + rng.normal(size=n)


def test_bootstrap_zero_gives_no_bootstrap_intervals() -> None:
    y, pred, proba = binary_data()
    result = classification_metrics(y, pred, ["no", "yes"], proba, bootstrap=0)
    assert all(result[name].lower is None and result[name].upper is None for name in CLASSIFICATION[1:])
    assert all(m.lower is None for m in regression_metrics([1.0, 2.0, 3.0], [1.0, 2.5, 2.0], bootstrap=0).values())


def test_vectorised_weighted_auc_equals_sklearn_with_sample_weights() -> None:
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 20, 200) / 20  # many ties
    positive = rng.uniform(size=200) < 0.4
    weights = rng.integers(0, 4, size=(6, 200)).astype(float)
    got = performance._Ranking.of(scores, positive).auc(weights)
    expected = [skm.roc_auc_score(positive, scores, sample_weight=w) for w in weights]
    np.testing.assert_allclose(got, expected, atol=TOL)


def test_bootstrap_chunks_do_not_change_the_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    y, pred, proba = binary_data(n=300)
    whole = classification_metrics(y, pred, ["no", "yes"], proba, bootstrap=50)
    monkeypatch.setattr(performance, "BOOTSTRAP_CHUNK", 900)  # three resamples per chunk
    chunked = classification_metrics(y, pred, ["no", "yes"], proba, bootstrap=50)
    for name, metric in chunked.items():  # the same resamples; sums may differ in the last bit
        assert (metric.lower, metric.upper) == pytest.approx((whole[name].lower, whole[name].upper), abs=TOL)


# --- undefined metrics ----------------------------------------------------------------------------------------------


def test_one_class_in_y_true_gives_no_roc_auc_and_no_warning() -> None:
    y = np.array([0, 0, 0, 0])
    pred = np.array([0, 1, 0, 0])
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.8, 0.2], [0.6, 0.4]])
    result = classification_metrics(y, pred, [0, 1], proba)
    assert result["roc_auc"].value is None
    assert "only one class" in (result["roc_auc"].reason or "")
    assert result["recall"].value is None
    assert "no row of the positive class" in (result["recall"].reason or "")
    assert result["precision"].value == 0.0
    assert result["log_loss"].value == pytest.approx(skm.log_loss(y, proba, labels=[0, 1]), abs=TOL)


def test_nothing_predicted_positive_gives_no_precision() -> None:
    result = classification_metrics(["a", "b", "b"], ["a", "a", "a"], ["a", "b"])
    assert result["precision"].value is None
    assert "predicted as the positive class 'b'" in (result["precision"].reason or "")
    assert result["recall"].value == 0.0
    assert result["f1"].value == 0.0


def test_all_true_negatives_gives_no_f1() -> None:
    result = classification_metrics([0, 0], [0, 0], [0, 1])
    assert result["f1"].value is None and result["f1"].reason
    assert result["accuracy"].value == 1.0


def test_no_probabilities_gives_no_roc_auc_or_log_loss() -> None:
    y, pred, _ = binary_data()
    result = classification_metrics(y, pred, ["no", "yes"])
    for name in ("roc_auc", "log_loss"):
        assert result[name].value is None
        assert result[name].reason == "no probabilities were given"


def test_multiclass_roc_auc_needs_every_class() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    result = classification_metrics([0, 1, 0], [0, 1, 0], [0, 1, 2], proba)
    assert result["roc_auc"].value is None
    assert "absent: 2" in (result["roc_auc"].reason or "")


def test_one_row_gives_values_without_bootstrap_intervals() -> None:
    result = classification_metrics(["yes"], ["yes"], ["no", "yes"], [[0.2, 0.8]])
    assert result["accuracy"].value == 1.0
    assert result["precision"].value == 1.0 and result["precision"].lower is None
    assert result["roc_auc"].value is None
    regression = regression_metrics([2.0], [3.0])
    assert regression["mae"].value == 1.0 and regression["mae"].lower is None
    assert regression["r2"].value is None
    assert "at least 2 rows" in (regression["r2"].reason or "")


def test_constant_y_true_gives_no_r2() -> None:
    result = regression_metrics([1.0, 1.0, 1.0], [1.0, 2.0, 0.5])
    assert result["r2"].value is None
    assert "constant" in (result["r2"].reason or "")
    assert result["rmse"].value == pytest.approx(skm.root_mean_squared_error([1.0] * 3, [1.0, 2.0, 0.5]), abs=TOL)


# --- estimated metrics (CBPE) ---------------------------------------------------------------------------------------


def realized(y: np.ndarray, yhat: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": skm.accuracy_score(y, yhat),
        "precision": skm.precision_score(y, yhat),
        "recall": skm.recall_score(y, yhat),
        "f1": skm.f1_score(y, yhat),
        "roc_auc": skm.roc_auc_score(y, p),
    }


def test_cbpe_binary_matches_realized_metrics_on_calibrated_scores() -> None:
    rng = np.random.default_rng(11)
    p = rng.beta(2, 3, 200_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    estimate = estimate_classification(np.column_stack([1 - p, p]), [0, 1])
    assert tuple(estimate) == ESTIMATED
    actual = realized(y, (p >= 0.5).astype(int), p)
    for name, value in actual.items():
        metric = estimate[name]
        assert metric.value == pytest.approx(value, abs=0.01), name
        assert metric.lower is not None and metric.upper is not None
        assert metric.lower < metric.value < metric.upper
        assert metric.upper - metric.lower < 0.02, name


def test_cbpe_binary_closed_form_by_hand() -> None:
    p = np.array([0.9, 0.6, 0.4, 0.1, 0.2])  # predicted positive: the first two
    estimate = estimate_classification(np.column_stack([1 - p, p]), ["neg", "pos"], threshold=0.5)
    tp, fp, fn, tn = 0.9 + 0.6, 0.1 + 0.4, 0.4 + 0.1 + 0.2, 0.6 + 0.9 + 0.8
    assert estimate["accuracy"].value == pytest.approx((tp + tn) / 5, abs=TOL)
    assert estimate["precision"].value == pytest.approx(tp / (tp + fp), abs=TOL)
    assert estimate["recall"].value == pytest.approx(tp / (tp + fn), abs=TOL)
    assert estimate["f1"].value == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=TOL)
    # every row is a positive with weight p and a negative with weight 1 - p; pairs of distinct rows
    ordered = sum(p[i] * (1 - p[j]) * (p[i] > p[j]) for i in range(5) for j in range(5) if i != j)
    pairs = sum(p[i] * (1 - p[j]) for i in range(5) for j in range(5) if i != j)
    assert estimate["roc_auc"].value == pytest.approx(ordered / pairs, abs=TOL)
    # accuracy's interval: a sum of independent Bernoullis, standard error sqrt(sum p(1-p)) / n
    half = 1.959963984540054 * math.sqrt(float((p * (1 - p)).sum())) / 5
    assert estimate["accuracy"].lower == pytest.approx(0.76 - half, abs=1e-9)
    assert estimate["accuracy"].upper == pytest.approx(min(1.0, 0.76 + half), abs=1e-9)
    # precision: the true positives among the two rows predicted positive; the upper end is clipped at 1
    assert estimate["precision"].value - estimate["precision"].lower == pytest.approx(  # type: ignore[operator]
        1.959963984540054 * math.sqrt(0.9 * 0.1 + 0.6 * 0.4) / 2, abs=1e-9
    )
    assert estimate["precision"].upper == 1.0


def test_cbpe_threshold_decides_the_predictions() -> None:
    p = np.array([0.9, 0.6, 0.4, 0.1])
    proba = np.column_stack([1 - p, p])
    assert estimate_classification(proba, [0, 1], threshold=0.5)["precision"].value == pytest.approx(0.75)
    assert estimate_classification(proba, [0, 1], threshold=0.95)["precision"].value is None
    assert estimate_classification(proba, [0, 1], threshold=0.95)["accuracy"].value == pytest.approx(2.0 / 4)


def test_cbpe_roc_auc_needs_two_rows() -> None:
    assert estimate_classification([[0.4, 0.6]], [0, 1])["roc_auc"].value is None
    two = estimate_classification([[0.4, 0.6], [0.9, 0.1]], [0, 1])["roc_auc"]
    # (row 0 positive, row 1 negative) is ordered right with weight 0.6 * 0.9, the reverse wrong with 0.1 * 0.4
    assert two.value == pytest.approx(0.54 / (0.54 + 0.04), abs=TOL)


def test_cbpe_roc_auc_undefined_when_no_positive_is_expected() -> None:
    estimate = estimate_classification([[1.0, 0.0], [1.0, 0.0]], [0, 1])
    assert estimate["roc_auc"].value is None and estimate["roc_auc"].reason
    assert estimate["recall"].value is None and estimate["recall"].reason
    assert estimate["accuracy"].value == 1.0


def test_cbpe_multiclass_accuracy_is_mean_max_probability() -> None:
    proba = np.random.default_rng(12).dirichlet([1, 2, 3, 1], size=1000)
    estimate = estimate_classification(proba, ["a", "b", "c", "d"])
    assert estimate["accuracy"].value == pytest.approx(proba.max(axis=1).mean(), abs=TOL)


def test_cbpe_multiclass_matches_realized_metrics() -> None:
    rng = np.random.default_rng(13)
    proba = rng.dirichlet([0.5, 0.5, 0.5], size=200_000)
    cumulative = proba.cumsum(axis=1)
    y = (rng.uniform(size=(proba.shape[0], 1)) > cumulative).sum(axis=1).clip(max=2)
    yhat = proba.argmax(axis=1)
    estimate = estimate_classification(proba, [0, 1, 2])
    macro: dict[str, Any] = {"average": "macro", "zero_division": 0.0}
    actual = {
        "accuracy": skm.accuracy_score(y, yhat),
        "precision": skm.precision_score(y, yhat, **macro),
        "recall": skm.recall_score(y, yhat, **macro),
        "f1": skm.f1_score(y, yhat, **macro),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr"),
    }
    for name, value in actual.items():
        assert estimate[name].value == pytest.approx(value, abs=0.01), name


def test_calibrator_corrects_miscalibrated_scores() -> None:
    rng = np.random.default_rng(14)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        p = rng.uniform(size=n)
        y = (rng.uniform(size=n) < p).astype(int)
        score = p**3  # the model is overconfident about negatives
        return np.column_stack([1 - score, score]), y

    reference, reference_y = sample(50_000)
    current, current_y = sample(100_000)
    calibrator = Calibrator.fit(reference, reference_y, [0, 1])
    actual = realized(current_y, (current[:, 1] >= 0.5).astype(int), current[:, 1])
    raw = estimate_classification(current, [0, 1])
    calibrated = estimate_classification(current, [0, 1], calibrator=calibrator)
    assert abs(raw["accuracy"].value - actual["accuracy"]) > 0.05  # type: ignore[operator]
    for name, value in actual.items():
        assert calibrated[name].value == pytest.approx(value, abs=0.02), name


def test_calibrator_applies_like_isotonic_regression_and_round_trips() -> None:
    rng = np.random.default_rng(15)
    score = rng.uniform(size=2000)
    y = np.where(rng.uniform(size=2000) < score**2, "p", "n")
    proba = np.column_stack([1 - score, score])
    calibrator = Calibrator.fit(proba, y, ["n", "p"])
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(score, y == "p")
    outside = np.array([0.0, 0.3, 0.5, 1.0])
    probe = np.column_stack([1 - outside, outside])
    np.testing.assert_allclose(calibrator.apply(probe)[:, 1], isotonic.predict(outside), atol=TOL)
    np.testing.assert_allclose(calibrator.apply(probe).sum(axis=1), 1.0)
    stored = json.loads(json.dumps(calibrator.to_dict()))
    restored = Calibrator.from_dict(stored)
    assert restored.classes == ("n", "p")
    assert restored.to_dict() == calibrator.to_dict()
    np.testing.assert_array_equal(restored.apply(proba), calibrator.apply(proba))


def test_multiclass_calibrator_renormalises_and_round_trips() -> None:
    y, _, proba = multiclass_data(n=900)
    calibrator = Calibrator.fit(proba, np.asarray(y, dtype=np.int64), [np.int64(0), np.int64(1), np.int64(2)])
    calibrated = calibrator.apply(proba)
    assert calibrated.shape == proba.shape
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, atol=TOL)
    stored = json.loads(json.dumps(calibrator.to_dict()))
    assert stored["classes"] == [0, 1, 2]
    np.testing.assert_array_equal(Calibrator.from_dict(stored).apply(proba), calibrated)
    assert estimate_classification(proba, [0, 1, 2], calibrator=calibrator)["accuracy"].value is not None


def test_calibrator_errors() -> None:
    calibrator = Calibrator.fit([[0.8, 0.2], [0.3, 0.7]], [0, 1], [0, 1])
    with pytest.raises(FeedbackError, match="fitted for classes"):
        estimate_classification([[0.8, 0.2]], ["a", "b"], calibrator=calibrator)
    with pytest.raises(FeedbackError, match="kind"):
        Calibrator.from_dict({"kind": "platt", "classes": [0, 1], "curves": []})
    with pytest.raises(FeedbackError, match="needs 1 curves"):
        Calibrator.from_dict({"kind": "isotonic", "classes": [0, 1], "curves": []})
    with pytest.raises(FeedbackError, match="not a stored calibrator"):
        Calibrator.from_dict({"classes": [0, 1]})


# --- comparison -----------------------------------------------------------------------------------------------------


def test_compare_to_registered_marks_degradation_by_direction() -> None:
    current = {
        "accuracy": Metric("accuracy", 0.80),
        "f1": Metric("f1", 0.75),
        "rmse": Metric("rmse", 2.5),
        "mae": Metric("mae", 1.0),
        "roc_auc": Metric("roc_auc", None, reason="one class"),
        "recall": Metric("recall", 0.5),
    }
    registered = {"accuracy": 0.90, "f1": 0.70, "rmse": 2.0, "mae": 1.5, "roc_auc": 0.8, "train_seconds": 3.0}
    comparison = compare_to_registered(current, registered)
    assert set(comparison) == {"accuracy", "f1", "rmse", "mae", "roc_auc"}
    assert comparison["accuracy"] == {
        "registered": 0.90,
        "current": 0.80,
        "change": pytest.approx(-0.10),
        "degraded": True,
    }
    assert comparison["f1"]["degraded"] is False
    assert comparison["rmse"]["degraded"] is True
    assert comparison["rmse"]["change"] == pytest.approx(0.5)
    assert comparison["mae"]["degraded"] is False
    assert comparison["roc_auc"] == {"registered": 0.8, "current": None, "change": None, "degraded": False}
    assert compare_to_registered(current, registered, tolerance=0.2)["accuracy"]["degraded"] is False


def test_higher_is_better_covers_every_metric() -> None:
    assert set(HIGHER_IS_BETTER) == set(CLASSIFICATION) | set(REGRESSION)
    assert not HIGHER_IS_BETTER["log_loss"] and HIGHER_IS_BETTER["r2"]


def test_metric_round_trips_through_json() -> None:
    y, pred, proba = binary_data()
    for metric in classification_metrics(y, pred, ["no", "yes"], proba).values():
        assert Metric.from_dict(json.loads(json.dumps(metric.to_dict()))) == metric
    undefined = Metric("r2", None, reason="constant")
    assert Metric.from_dict(undefined.to_dict()) == undefined


# --- bad input ------------------------------------------------------------------------------------------------------

GOOD_PROBA = [[0.8, 0.2], [0.4, 0.6]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: classification_metrics([0, 1, 1], [0, 1], [0, 1]), "differ in length"),
        (lambda: classification_metrics([], [], [0, 1]), "y_true is empty"),
        (lambda: classification_metrics(["0", "1"], ["0", "1"], [0, 1]), "not among the classes.*'0', '1'"),
        (lambda: classification_metrics([0, 1], [0, 7], [0, 1]), "y_pred has labels.*7"),
        (lambda: classification_metrics([0, float("nan")], [0, 1], [0, 1]), "y_true has 1 missing labels"),
        (lambda: classification_metrics([0, None], [0, 1], [0, 1]), "missing labels"),
        (lambda: classification_metrics([0, 1], [0, 1], [0]), "at least 2 classes"),
        (lambda: classification_metrics([0, 1], [0, 1], [0, 1, 1]), "distinct"),
        (lambda: classification_metrics([0, 1], [0, 1], [0, 1], [[0.5, 0.5]]), r"shape .* \(2, 2\)"),
        (lambda: classification_metrics([0, 1], [0, 1], [0, 1], [0.5, 0.5]), "shape"),
        (lambda: classification_metrics([0, 1], [0, 1], [0, 1], [[0.5, 0.6], [0.5, 0.5]]), "sum to 1.*row 0"),
        (lambda: classification_metrics([0, 1], [0, 1], [0, 1], [[1.2, -0.2], [0.5, 0.5]]), r"\[0, 1\]"),
        (lambda: classification_metrics([0, 1], [0, 1], [0, 1], [[np.nan, 1], [0.5, 0.5]]), "missing or infinite"),
        (lambda: classification_metrics([0, 1], [0, 1], [0, 1], confidence=1.0), "confidence"),
        (lambda: classification_metrics([0, 1], [0, 1], [0, 1], bootstrap=-1), "bootstrap"),
        (lambda: classification_metrics([[0, 1]], [[0, 1]], [0, 1]), "one-dimensional"),
        (lambda: regression_metrics([1.0, 2.0], [1.0]), "differ in length"),
        (lambda: regression_metrics([], []), "empty"),
        (lambda: regression_metrics([1.0, np.nan], [1.0, 2.0]), "y_true has 1 missing or infinite"),
        (lambda: regression_metrics(["a", "b"], [1.0, 2.0]), "must be numbers"),
        (lambda: estimate_classification([[0.5, 0.4]], [0, 1]), "sum to 1"),
        (lambda: estimate_classification(np.empty((0, 2)), [0, 1]), "empty"),
        (lambda: estimate_classification([[0.5, 0.5]], [0, 1, 2]), "shape"),
        (lambda: estimate_classification(GOOD_PROBA, [0, 1], threshold=1.5), "threshold"),
        (lambda: Calibrator.fit(GOOD_PROBA, [0, 2], [0, 1]), "not among the classes"),
    ],
)
def test_bad_input_raises_naming_the_problem(call: Any, message: str) -> None:
    with pytest.raises(FeedbackError, match=message):
        call()


def test_probabilities_within_tolerance_are_accepted() -> None:
    proba = [[0.7005, 0.3], [0.2, 0.8]]  # a row summing to 1.0005
    result = classification_metrics([0, 1], [0, 1], [0, 1], proba)
    assert result["log_loss"].value == pytest.approx(
        skm.log_loss([0, 1], np.array(proba) / np.array(proba).sum(axis=1, keepdims=True)), abs=TOL
    )
    assert estimate_classification(proba, [0, 1])["accuracy"].value is not None
