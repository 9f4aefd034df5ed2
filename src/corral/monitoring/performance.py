"""Model quality: realized metrics once labels arrive, estimated metrics before they do.

Realized metrics
    :func:`classification_metrics` and :func:`regression_metrics` score
    predictions against ground truth with scikit-learn's metric functions.
    Binary problems (two ``classes``) treat ``classes[1]`` as the positive
    class; multiclass problems macro-average precision, recall and F1 (a class
    never predicted, or never seen, counts 0 for that class, like scikit-learn's
    ``zero_division=0``) and use one-vs-rest macro ROC AUC. Labels are compared
    as given: ``"1"`` is not ``1``, and a label outside ``classes`` is an error.

    A metric that is undefined on the data (ROC AUC on a window with one class,
    binary precision when nothing was predicted positive, R² on one row) has
    ``value=None`` and a ``reason``; no scikit-learn warning escapes.

    Intervals: accuracy uses the Wilson score interval of a binomial
    proportion (closed form, always given). Every other metric uses a
    percentile bootstrap over rows, drawn from a seeded
    :class:`numpy.random.Generator` so that the same call gives the same
    interval. Metrics that depend only on the confusion matrix resample the
    confusion matrix itself (a multinomial draw over its cells is the same
    distribution as resampling rows, and costs nothing per row); ROC AUC, log
    loss and the regression metrics resample rows as counts (a weighted
    metric per resample, vectorised over resamples). ``bootstrap=0`` turns
    the bootstrap off.

Estimated metrics (CBPE)
    :func:`estimate_classification` is confidence-based performance
    estimation, as NannyML describes it. **Assumption: the scores are
    calibrated**, i.e. among rows scored ``p`` a fraction ``p`` really is
    positive. Then every row is a Bernoulli(``p``) draw and the confusion
    matrix has an expected value that follows from the scores alone. For a
    binary model predicting ``yhat = p >= threshold``::

        E[TP] = Σ p·yhat        E[FP] = Σ (1-p)·yhat
        E[FN] = Σ p·(1-yhat)    E[TN] = Σ (1-p)·(1-yhat)

    and accuracy, precision, recall and F1 are computed from these expected
    counts. Expected ROC AUC counts every row once as a positive with weight
    ``p`` and once as a negative with weight ``1-p``. Multiclass models
    predict the most likely class: expected accuracy is the mean of the
    predicted class's probability (the mean max-probability), and precision,
    recall, F1 and ROC AUC are one-vs-rest per class, macro-averaged.

    Intervals of estimates are normal approximations (``value ± z·se``,
    clipped to [0, 1]) of where the *realized* metric should land if the
    scores are calibrated: the realized counts are sums of independent
    Bernoullis, whose variance is ``Σ p(1-p)``. Accuracy and precision are
    such a sum over a fixed number of rows; recall and F1 are ratios and use
    the delta method; ROC AUC uses Hanley and McNeil's standard error with
    the expected class counts; macro averages treat the classes as
    independent. They say nothing about miscalibration: when the scores are
    not calibrated the estimate is biased, and a :class:`Calibrator` fitted
    where labels exist (isotonic regression per class) corrects the scores
    first. The model's decisions always come from the raw scores; the
    calibrator only changes how confident each decision is taken to be.

:func:`compare_to_registered` sets current metrics against the ones stored
with the registered model version and says, using :data:`HIGHER_IS_BETTER`,
which got worse.

Bad input (mismatched lengths, nothing to score, probabilities of the wrong
shape, outside [0, 1] or with rows not summing to 1 within
:data:`PROBABILITY_TOLERANCE`, missing labels, labels outside ``classes``) is
a :class:`~corral.errors.FeedbackError` that names the problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from corral.errors import FeedbackError

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION = ("mae", "rmse", "r2")
ESTIMATED = ("accuracy", "precision", "recall", "f1", "roc_auc")
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "mae": False,
    "rmse": False,
    "r2": True,
}
PROBABILITY_TOLERANCE = 1e-3  # how far a row of probabilities may sum from 1
BOOTSTRAP_CHUNK = 2_000_000  # resampled row weights held in memory at once
_NAMED = 5  # how many offending values an error message names

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric's value on one window.

    Attributes:
        name: the metric (one of :data:`CLASSIFICATION` or :data:`REGRESSION`).
        value: the metric, ``None`` when it is undefined on this data.
        lower: lower end of the confidence interval, ``None`` when there is none.
        upper: upper end of the confidence interval, ``None`` when there is none.
        reason: why ``value`` is ``None``.
    """

    name: str
    value: float | None
    lower: float | None = None
    upper: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with every field."""
        return {"name": self.name, "value": self.value, "lower": self.lower, "upper": self.upper, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metric:
        """The metric :meth:`to_dict` wrote."""
        return cls(
            name=str(data["name"]),
            value=_optional_float(data.get("value")),
            lower=_optional_float(data.get("lower")),
            upper=_optional_float(data.get("upper")),
            reason=data.get("reason"),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _undefined(name: str, reason: str) -> Metric:
    return Metric(name, None, reason=reason)


def _metric(name: str, value: float, interval: tuple[float | None, float | None] = (None, None)) -> Metric:
    lower, upper = interval
    return Metric(name, float(value), _optional_float(lower), _optional_float(upper))


# --- validation -----------------------------------------------------------------------------------------------------


def _check_options(confidence: float, bootstrap: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise FeedbackError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    if bootstrap < 0:
        raise FeedbackError(f"bootstrap must be 0 (no intervals) or a number of resamples, got {bootstrap!r}")


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def _named(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:_NAMED])
    return shown + (f" and {len(values) - _NAMED} more" if len(values) > _NAMED else "")


def _class_index(classes: Sequence[Any]) -> dict[Any, int]:
    listed = list(classes)
    if len(listed) < 2:
        raise FeedbackError(f"classes must name at least 2 classes, got {listed!r}")
    missing = [c for c in listed if _is_missing(c)]
    if missing:
        raise FeedbackError(f"classes must not contain missing values, got {_named(missing)}")
    try:
        index: dict[Any, int] = {}
        for position, label in enumerate(listed):
            if label in index:
                raise FeedbackError(f"classes must be distinct, {label!r} appears more than once")
            index[label] = position
    except TypeError as exc:
        raise FeedbackError(f"classes must be hashable labels: {exc}") from exc
    return index


def _is_missing(value: Any) -> bool:
    return bool(pd.isna(value)) if np.ndim(value) == 0 else False


def _labels(values: npt.ArrayLike, name: str) -> npt.NDArray[np.object_]:
    array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise FeedbackError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise FeedbackError(f"{name} is empty: there is nothing to score")
    missing = np.flatnonzero(pd.isna(array))
    if missing.size:
        raise FeedbackError(f"{name} has {missing.size} missing labels (None/NaN), at rows {_named(missing.tolist())}")
    return array


def _encode(values: npt.ArrayLike, index: Mapping[Any, int], name: str) -> IntArray:
    """Labels as positions in ``classes``, compared as given (``"1"`` is not ``1``)."""
    array = _labels(values, name)
    try:
        codes = np.fromiter((index.get(v, -1) for v in array.tolist()), dtype=np.intp, count=array.size)
    except TypeError as exc:
        raise FeedbackError(f"{name} holds labels that are not hashable: {exc}") from exc
    unknown = array[codes < 0]
    if unknown.size:
        distinct = sorted({repr(v) for v in unknown.tolist()})
        raise FeedbackError(
            f"{name} has labels that are not among the classes {list(index)!r}: {', '.join(distinct[:_NAMED])}"
            + (f" and {len(distinct) - _NAMED} more" if len(distinct) > _NAMED else "")
        )
    return codes


def _numbers(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values)
    if array.dtype.kind in "USa" or (
        array.dtype.kind == "O" and any(isinstance(v, str | bytes) for v in array.ravel().tolist())
    ):
        raise FeedbackError(f"{name} must be numbers, got text")
    try:
        numbers = array.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise FeedbackError(f"{name} must be numbers: {exc}") from exc
    if numbers.ndim != 1:
        raise FeedbackError(f"{name} must be one-dimensional, got shape {numbers.shape}")
    if numbers.size == 0:
        raise FeedbackError(f"{name} is empty: there is nothing to score")
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        raise FeedbackError(f"{name} has {bad.size} missing or infinite values, at rows {_named(bad.tolist())}")
    return numbers


def _same_length(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if y_true.size != y_pred.size:
        raise FeedbackError(f"y_true and y_pred differ in length: {y_true.size} labels, {y_pred.size} predictions")


def _probabilities(probabilities: npt.ArrayLike, rows: int | None, width: int) -> FloatArray:
    """Validated probabilities: shape (rows, width), finite, in [0, 1], rows summing to 1 within the tolerance."""
    try:
        array = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FeedbackError(f"probabilities must be numbers: {exc}") from exc
    expected = f"({'n' if rows is None else rows}, {width})"
    if array.ndim != 2 or array.shape[1] != width or (rows is not None and array.shape[0] != rows):
        raise FeedbackError(
            f"probabilities must have shape (rows, len(classes)) = {expected}, one column per class, got {array.shape}"
        )
    if array.shape[0] == 0:
        raise FeedbackError("probabilities are empty: there is nothing to score")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise FeedbackError(f"probabilities have missing or infinite values, at rows {_named(bad.tolist())}")
    bad = np.flatnonzero(((array < 0.0) | (array > 1.0)).any(axis=1))
    if bad.size:
        raise FeedbackError(f"probabilities must lie in [0, 1]; rows {_named(bad.tolist())} do not")
    sums = array.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > PROBABILITY_TOLERANCE)
    if bad.size:
        first = int(bad[0])
        raise FeedbackError(
            f"probabilities must sum to 1 in every row (within {PROBABILITY_TOLERANCE}); {bad.size} rows do not, "
            f"e.g. row {first} sums to {sums[first]:.6g}"
        )
    return array


def _normalized(probabilities: FloatArray) -> FloatArray:
    result: FloatArray = probabilities / probabilities.sum(axis=1, keepdims=True)
    return result


# --- bootstrap ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bootstrap:
    """How to draw intervals: the confidence level, the number of resamples (0: none) and the seed."""

    confidence: float
    resamples: int
    seed: int

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def weights(self, rows: int) -> Iterator[FloatArray]:
        return _bootstrap_weights(rows, self.resamples, self.seed)


def _bootstrap_weights(rows: int, resamples: int, seed: int) -> Iterator[FloatArray]:
    """Row counts of ``resamples`` bootstrap resamples, in chunks of shape (chunk, rows), from a seeded generator."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, BOOTSTRAP_CHUNK // rows)
    done = 0
    while done < resamples:
        size = min(per_chunk, resamples - done)
        picks = rng.integers(0, rows, size=(size, rows)) + np.arange(size)[:, None] * rows
        yield np.bincount(picks.ravel(), minlength=size * rows).reshape(size, rows).astype(np.float64)
        done += size


def _percentile_interval(samples: FloatArray, confidence: float) -> tuple[float | None, float | None]:
    """The percentile interval of the resampled values that are defined (NaN marks an undefined resample)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None, None
    tail = (1.0 - confidence) / 2.0 * 100.0
    lower, upper = np.percentile(finite, [tail, 100.0 - tail])
    return float(lower), float(upper)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (equal to scipy's ``proportion_ci(method="wilson")``)."""
    z = _z(confidence)
    share = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (share + z * z / (2.0 * trials)) / denominator
    half = z / denominator * math.sqrt(share * (1.0 - share) / trials + z * z / (4.0 * trials * trials))
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == trials else min(1.0, centre + half)
    return lower, upper


# --- realized classification ----------------------------------------------------------------------------------------


def classification_metrics(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    classes: Sequence[Any],
    probabilities: npt.ArrayLike | None = None,
    *,
    confidence: float = 0.95,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Metric]:
    """Realized classification metrics, keyed (and ordered) as :data:`CLASSIFICATION`.

    Args:
        y_true: the true labels.
        y_pred: the predicted labels.
        classes: every class, in the order of the probability columns; binary: ``classes[1]`` is positive.
        probabilities: (rows, len(classes)) class probabilities; without them ROC AUC and log loss are undefined.
        confidence: the intervals' confidence level.
        bootstrap: bootstrap resamples for every interval but accuracy's (Wilson); 0 gives no bootstrap intervals.
        seed: seeds the bootstrap.

    Raises:
        FeedbackError: bad input; the message names what is wrong.
    """
    _check_options(confidence, bootstrap)
    index = _class_index(classes)
    true = _encode(y_true, index, "y_true")
    pred = _encode(y_pred, index, "y_pred")
    _same_length(true, pred)
    proba = None if probabilities is None else _probabilities(probabilities, true.size, len(index))
    labels = list(classes)
    counts = skm.confusion_matrix(true, pred, labels=np.arange(len(labels)))
    boot = _Bootstrap(confidence, bootstrap if true.size > 1 else 0, seed)
    result = {"accuracy": _accuracy(true, pred, confidence)}
    result.update(_confusion_metrics(true, pred, counts, labels, boot))
    result["roc_auc"] = _roc_auc(true, proba, labels, boot)
    result["log_loss"] = _log_loss(true, proba, boot)
    return result


def _accuracy(true: IntArray, pred: IntArray, confidence: float) -> Metric:
    correct = int(np.count_nonzero(true == pred))
    return _metric("accuracy", skm.accuracy_score(true, pred), wilson_interval(correct, true.size, confidence))


def _confusion_metrics(
    true: IntArray,
    pred: IntArray,
    counts: npt.NDArray[np.int64],
    classes: list[Any],
    boot: _Bootstrap,
) -> dict[str, Metric]:
    """Precision, recall and F1: scikit-learn's values, bootstrap intervals from resampled confusion matrices."""
    binary = len(classes) == 2
    values: dict[str, float | str]
    if binary:
        values = _binary_confusion_values(true, pred, counts, classes[1])
    else:
        labels = np.arange(len(classes))
        options: dict[str, Any] = {"labels": labels, "average": "macro", "zero_division": 0.0}
        values = {
            "precision": float(skm.precision_score(true, pred, **options)),
            "recall": float(skm.recall_score(true, pred, **options)),
            "f1": float(skm.f1_score(true, pred, **options)),
        }
    intervals: dict[str, tuple[float | None, float | None]] = {}
    if boot.resamples:
        cells = counts.ravel() / counts.sum()
        drawn = boot.rng().multinomial(int(counts.sum()), cells, size=boot.resamples)
        drawn = drawn.reshape(boot.resamples, *counts.shape)
        intervals = {
            name: _percentile_interval(s, boot.confidence) for name, s in _confusion_scores(drawn, binary).items()
        }
    return {
        name: _undefined(name, value)
        if isinstance(value, str)
        else _metric(name, value, intervals.get(name, (None, None)))
        for name, value in values.items()
    }


def _binary_confusion_values(
    true: IntArray, pred: IntArray, counts: npt.NDArray[np.int64], positive: Any
) -> dict[str, float | str]:
    """Binary precision, recall and F1 of the positive class, or the reason each is undefined."""
    options: dict[str, Any] = {"labels": [0, 1], "pos_label": 1, "average": "binary", "zero_division": 0.0}
    predicted, actual = int(counts[:, 1].sum()), int(counts[1, :].sum())
    return {
        "precision": float(skm.precision_score(true, pred, **options))
        if predicted
        else f"no row was predicted as the positive class {positive!r}",
        "recall": float(skm.recall_score(true, pred, **options))
        if actual
        else f"y_true has no row of the positive class {positive!r}",
        "f1": float(skm.f1_score(true, pred, **options))
        if predicted + actual
        else f"the positive class {positive!r} was neither predicted nor observed",
    }


def _confusion_scores(counts: npt.NDArray[np.int64], binary: bool) -> dict[str, FloatArray]:
    """Precision, recall and F1 of a stack of confusion matrices (…, true, predicted); NaN where undefined."""
    hits = np.diagonal(counts, axis1=-2, axis2=-1).astype(np.float64)
    predicted = counts.sum(axis=-2)
    actual = counts.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = {"precision": hits / predicted, "recall": hits / actual, "f1": 2.0 * hits / (predicted + actual)}
    if binary:
        return {name: per_class[..., 1] for name, per_class in scores.items()}
    return {name: np.nan_to_num(per_class, nan=0.0).mean(axis=-1) for name, per_class in scores.items()}


def _roc_auc(true: IntArray, proba: FloatArray | None, classes: list[Any], boot: _Bootstrap) -> Metric:
    """Binary ROC AUC of the positive column, or one-vs-rest macro ROC AUC over every class."""
    if proba is None:
        return _undefined("roc_auc", "no probabilities were given")
    present = np.bincount(true, minlength=len(classes)) > 0
    if present.sum() < 2:
        only = classes[int(np.flatnonzero(present)[0])]
        return _undefined("roc_auc", f"y_true has only one class ({only!r}); ROC AUC needs at least two")
    if not present.all():
        absent = [classes[i] for i in np.flatnonzero(~present)]
        return _undefined("roc_auc", f"one-vs-rest ROC AUC needs every class in y_true; absent: {_named(absent)}")
    columns = [1] if len(classes) == 2 else list(range(len(classes)))
    value = float(np.mean([skm.roc_auc_score(true == j, proba[:, j]) for j in columns]))
    interval: tuple[float | None, float | None] = (None, None)
    if boot.resamples:
        rankings = [_Ranking.of(proba[:, j], true == j) for j in columns]
        samples = [np.mean([r.auc(weights) for r in rankings], axis=0) for weights in boot.weights(true.size)]
        interval = _percentile_interval(np.concatenate(samples), boot.confidence)
    return _metric("roc_auc", value, interval)


@dataclass(frozen=True, slots=True)
class _Ranking:
    """Rows sorted by score once, so that ROC AUC under many row weightings is a few vectorised sums."""

    order: IntArray
    starts: IntArray  # where each group of tied scores begins, in sorted order
    positive: BoolArray  # in sorted order

    @classmethod
    def of(cls, scores: FloatArray, positive: BoolArray) -> _Ranking:
        order = np.argsort(scores, kind="stable")
        ranked = scores[order]
        return cls(order, np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]]), positive[order])

    def auc(self, weights: FloatArray) -> FloatArray:
        """ROC AUC for each row of ``weights`` (shape (resamples, rows)); ties count one half; NaN if a class has no
        weight."""
        sorted_weights = weights[:, self.order]
        positives = np.add.reduceat(sorted_weights * self.positive, self.starts, axis=1)
        negatives = np.add.reduceat(sorted_weights * ~self.positive, self.starts, axis=1)
        below = np.cumsum(negatives, axis=1) - negatives
        with np.errstate(divide="ignore", invalid="ignore"):
            result: FloatArray = (positives * (below + 0.5 * negatives)).sum(axis=1) / (
                positives.sum(axis=1) * negatives.sum(axis=1)
            )
        return result


def _log_loss(true: IntArray, proba: FloatArray | None, boot: _Bootstrap) -> Metric:
    """Log loss over the probabilities, each row rescaled to sum to exactly 1."""
    if proba is None:
        return _undefined("log_loss", "no probabilities were given")
    normalized = _normalized(proba)
    value = float(skm.log_loss(true, normalized, labels=np.arange(proba.shape[1])))
    interval: tuple[float | None, float | None] = (None, None)
    if boot.resamples:
        eps = np.finfo(np.float64).eps
        losses = -np.log(np.clip(normalized[np.arange(true.size), true], eps, 1.0 - eps))
        samples = [weights @ losses / true.size for weights in boot.weights(true.size)]
        interval = _percentile_interval(np.concatenate(samples), boot.confidence)
    return _metric("log_loss", value, interval)


# --- realized regression --------------------------------------------------------------------------------------------


def regression_metrics(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    confidence: float = 0.95,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Metric]:
    """Realized regression metrics (MAE, RMSE, R²), keyed and ordered as :data:`REGRESSION`.

    R² is undefined (``None`` with a reason) on fewer than 2 rows or a constant ``y_true``. Intervals are percentile
    bootstrap intervals (none on a single row, or with ``bootstrap=0``).

    Raises:
        FeedbackError: bad input; the message names what is wrong.
    """
    _check_options(confidence, bootstrap)
    true = _numbers(y_true, "y_true")
    pred = _numbers(y_pred, "y_pred")
    _same_length(true, pred)
    values: dict[str, float | str] = {
        "mae": float(skm.mean_absolute_error(true, pred)),
        "rmse": float(skm.root_mean_squared_error(true, pred)),
        "r2": _r2(true, pred),
    }
    intervals: dict[str, tuple[float | None, float | None]] = {}
    if bootstrap and true.size > 1:
        samples = [
            _regression_scores(true, pred, weights) for weights in _bootstrap_weights(true.size, bootstrap, seed)
        ]
        intervals = {
            name: _percentile_interval(np.concatenate([s[name] for s in samples]), confidence) for name in REGRESSION
        }
    return {
        name: _undefined(name, value)
        if isinstance(value, str)
        else _metric(name, value, intervals.get(name, (None, None)))
        for name, value in values.items()
    }


def _r2(true: FloatArray, pred: FloatArray) -> float | str:
    if true.size < 2:
        return f"R² needs at least 2 rows, got {true.size}"
    if np.ptp(true) == 0.0:
        return "y_true is constant, so R² (1 - residual / total variance) is undefined"
    return float(skm.r2_score(true, pred))


def _regression_scores(true: FloatArray, pred: FloatArray, weights: FloatArray) -> dict[str, FloatArray]:
    """MAE, RMSE and R² for each row of ``weights`` (resampled row counts); NaN R² where the resample is constant."""
    rows = true.size
    errors = true - pred
    squared = weights @ (errors * errors)
    centred = true - true.mean()
    total = weights @ (centred * centred) - (weights @ centred) ** 2 / rows
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(total > 1e-12 * max(1.0, float(centred @ centred)), 1.0 - squared / total, np.nan)
    return {"mae": weights @ np.abs(errors) / rows, "rmse": np.sqrt(squared / rows), "r2": r2}


# --- estimated classification (CBPE) --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Calibrator:
    """Isotonic calibration of class scores, fitted where labels exist and applied where they do not.

    Binary: one increasing step-wise linear map of the positive class's score (the negative's is ``1 - p``).
    Multiclass: one map per class, then every row rescaled to sum to 1 (a row the maps send to all zeros keeps
    its raw scores). The maps are scikit-learn ``IsotonicRegression(out_of_bounds="clip")`` fits, kept as their
    thresholds so that the calibrator stores as JSON (:meth:`to_dict`) and applies without scikit-learn.

    Attributes:
        classes: the classes, in the order of the probability columns.
        curves: per calibrated column (the positive class, or every class), the (x, y) thresholds.
    """

    classes: tuple[Any, ...]
    curves: tuple[tuple[FloatArray, FloatArray], ...]

    @classmethod
    def fit(cls, probabilities: npt.ArrayLike, y_true: npt.ArrayLike, classes: Sequence[Any]) -> Calibrator:
        """Fit on labelled rows: ``probabilities`` (rows, len(classes)) and their true labels."""
        index = _class_index(classes)
        true = _encode(y_true, index, "y_true")
        proba = _probabilities(probabilities, true.size, len(index))
        curves = []
        for column in _calibrated_columns(len(index)):
            isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            isotonic.fit(proba[:, column], (true == column).astype(np.float64))
            curves.append(
                (
                    np.asarray(isotonic.X_thresholds_, dtype=np.float64).copy(),
                    np.asarray(isotonic.y_thresholds_, dtype=np.float64).copy(),
                )
            )
        return cls(tuple(classes), tuple(curves))

    def apply(self, probabilities: npt.ArrayLike) -> FloatArray:
        """Calibrated probabilities, same shape as ``probabilities``, rows summing to 1."""
        proba = _probabilities(probabilities, None, len(self.classes))
        mapped = [
            np.interp(proba[:, column], x, y)
            for column, (x, y) in zip(_calibrated_columns(len(self.classes)), self.curves, strict=True)
        ]
        if len(self.classes) == 2:
            positive = mapped[0]
            return np.column_stack([1.0 - positive, positive])
        calibrated = np.column_stack(mapped)
        sums = calibrated.sum(axis=1, keepdims=True)
        result: FloatArray = np.where(sums > 0.0, calibrated / np.where(sums > 0.0, sums, 1.0), proba)
        return result

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (thresholds as lists) that :meth:`from_dict` reads back."""
        return {
            "kind": "isotonic",
            "classes": [c.item() if isinstance(c, np.generic) else c for c in self.classes],
            "curves": [{"x": x.tolist(), "y": y.tolist()} for x, y in self.curves],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        """The calibrator :meth:`to_dict` wrote.

        Raises:
            FeedbackError: the dict is not a stored calibrator.
        """
        try:
            if data["kind"] != "isotonic":
                raise FeedbackError(f"unknown calibrator kind {data['kind']!r}; expected 'isotonic'")
            classes = tuple(data["classes"])
            curves = tuple(
                (np.asarray(c["x"], dtype=np.float64), np.asarray(c["y"], dtype=np.float64)) for c in data["curves"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FeedbackError(f"not a stored calibrator: {exc!r}") from exc
        _class_index(classes)
        if len(curves) != len(_calibrated_columns(len(classes))):
            raise FeedbackError(
                f"a calibrator for {len(classes)} classes needs {len(_calibrated_columns(len(classes)))} curves, "
                f"got {len(curves)}"
            )
        for x, y in curves:
            if x.ndim != 1 or x.shape != y.shape or x.size == 0 or np.any(np.diff(x) < 0):
                raise FeedbackError("calibrator curves need equally long, non-empty x and y with x increasing")
        return cls(classes, curves)


def _calibrated_columns(width: int) -> list[int]:
    return [1] if width == 2 else list(range(width))


def estimate_classification(
    probabilities: npt.ArrayLike,
    classes: Sequence[Any],
    *,
    threshold: float = 0.5,
    calibrator: Calibrator | None = None,
    confidence: float = 0.95,
) -> dict[str, Metric]:
    """Expected accuracy, precision, recall, F1 and ROC AUC from the scores alone (CBPE), keyed as :data:`ESTIMATED`.

    Args:
        probabilities: (rows, len(classes)) class probabilities, columns in the order of ``classes``.
        classes: the classes; binary: ``classes[1]`` is positive.
        threshold: binary models predict positive when the positive score is ``>= threshold``; multiclass models
            predict the most likely class (``threshold`` is not used).
        calibrator: maps the scores to calibrated ones before the expectations (decisions keep the raw scores).
        confidence: the level of the normal-approximation intervals (see the module docstring).

    Raises:
        FeedbackError: bad input; the message names what is wrong.
    """
    _check_options(confidence, 0)
    index = _class_index(classes)
    raw = _probabilities(probabilities, None, len(index))
    if not 0.0 <= threshold <= 1.0:
        raise FeedbackError(f"threshold must lie in [0, 1], got {threshold!r}")
    if calibrator is not None and list(calibrator.classes) != list(classes):
        raise FeedbackError(
            f"the calibrator was fitted for classes {list(calibrator.classes)!r}, not {list(classes)!r}"
        )
    scores = raw if calibrator is None else calibrator.apply(raw)
    if len(index) == 2:
        predicted = (raw[:, 1] >= threshold).astype(np.intp)
        positive = scores[:, 1]
        scores = np.column_stack([1.0 - positive, positive])
    else:
        predicted = raw.argmax(axis=1)
        scores = _normalized(scores)
    return _expected_metrics(scores, predicted, list(classes), _z(confidence))


def _expected_metrics(scores: FloatArray, predicted: IntArray, classes: list[Any], z: float) -> dict[str, Metric]:
    rows, width = scores.shape
    right = scores[np.arange(rows), predicted]  # the probability that each decision is right
    accuracy = _estimate("accuracy", float(right.mean()), math.sqrt(float(right @ (1.0 - right))) / rows, z)
    columns = _calibrated_columns(width)
    counts = _ExpectedCounts.of(scores, predicted, columns)
    if width == 2:
        result = {"accuracy": accuracy}
        result.update(_binary_estimates(counts, classes[1], z))
        result["roc_auc"] = _expected_auc(scores, columns, classes, z)
        return result
    result = {"accuracy": accuracy}
    for name, (per_class, errors) in counts.rates().items():
        # like the realized macro averages (zero_division=0): a class never predicted or never expected counts 0
        value = float(np.nan_to_num(per_class, nan=0.0).mean())
        spread = np.nan_to_num(errors, nan=0.0)
        result[name] = _estimate(name, value, math.sqrt(float(spread @ spread)) / width, z)
    result["roc_auc"] = _expected_auc(scores, columns, classes, z)
    return result


@dataclass(frozen=True, slots=True)
class _ExpectedCounts:
    """Per class (one-vs-rest): E[TP], E[FN], the rows predicted as the class, and the Bernoulli variances of the
    true positives among the rows predicted as the class (``inside``) and among the others (``outside``)."""

    tp: FloatArray
    fn: FloatArray
    predicted: FloatArray
    inside: FloatArray
    outside: FloatArray

    @classmethod
    def of(cls, scores: FloatArray, predicted: IntArray, columns: list[int]) -> _ExpectedCounts:
        chosen = predicted[:, None] == np.asarray(columns)[None, :]
        p = scores[:, columns]
        variance = p * (1.0 - p)
        return cls(
            tp=(p * chosen).sum(axis=0),
            fn=(p * ~chosen).sum(axis=0),
            predicted=chosen.sum(axis=0).astype(np.float64),
            inside=(variance * chosen).sum(axis=0),
            outside=(variance * ~chosen).sum(axis=0),
        )

    def rates(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        """Expected precision, recall and F1 per class with their delta-method standard errors; NaN where undefined.

        precision = TP / m (m, the rows predicted as the class, is fixed), recall = TP / (TP + FN),
        F1 = 2 TP / (m + TP + FN).
        """
        tp, fn, m = self.tp, self.fn, self.predicted
        with np.errstate(divide="ignore", invalid="ignore"):
            positives = tp + fn
            f1_base = m + tp + fn
            return {
                "precision": (tp / m, np.sqrt(self.inside) / m),
                "recall": (
                    tp / positives,
                    np.sqrt(fn**2 * self.inside + tp**2 * self.outside) / positives**2,
                ),
                "f1": (
                    2.0 * tp / f1_base,
                    2.0 * np.sqrt((m + fn) ** 2 * self.inside + tp**2 * self.outside) / f1_base**2,
                ),
            }


def _binary_estimates(counts: _ExpectedCounts, positive: Any, z: float) -> dict[str, Metric]:
    reasons = {
        "precision": f"no row is predicted as the positive class {positive!r}",
        "recall": f"the scores expect no row of the positive class {positive!r}",
        "f1": f"the positive class {positive!r} is neither predicted nor expected",
    }
    result = {}
    for name, (values, errors) in counts.rates().items():
        value = float(values[0])
        result[name] = (
            _estimate(name, value, float(errors[0]), z) if math.isfinite(value) else _undefined(name, reasons[name])
        )
    return result


def _expected_auc(scores: FloatArray, columns: list[int], classes: list[Any], z: float) -> Metric:
    """Expected ROC AUC: every row counts as a positive with weight p and as a negative with weight 1 - p.

    scikit-learn scores the duplicated rows. That also pairs each row with itself (a tie, worth one half, of
    weight p(1 - p)), which a realized AUC never does, so those self-pairs are taken back out of both the weighted
    pair count and the total pair weight: the result is the expected number of correctly ordered (positive, negative)
    pairs of distinct rows over the expected number of such pairs.
    """
    values, variances = [], []
    for column in columns:
        p = scores[:, column]
        positives, negatives = float(p.sum()), float((1.0 - p).sum())
        if positives <= 0.0 or negatives <= 0.0:
            which = "no" if positives <= 0.0 else "only"
            return _undefined("roc_auc", f"the scores expect {which} rows of class {classes[column]!r}")
        self_pairs = float(p @ (1.0 - p))
        pairs = positives * negatives - self_pairs
        if pairs <= 1e-12 * positives * negatives:
            return _undefined("roc_auc", "ROC AUC needs two rows that can differ in class; these scores have none")
        labels = np.r_[np.ones(p.size), np.zeros(p.size)]
        duplicated = float(skm.roc_auc_score(labels, np.r_[p, p], sample_weight=np.r_[p, 1.0 - p]))
        auc = min(1.0, max(0.0, (duplicated * positives * negatives - 0.5 * self_pairs) / pairs))
        values.append(auc)
        variances.append(_hanley_mcneil(auc, positives, negatives) ** 2)
    return _estimate("roc_auc", float(np.mean(values)), math.sqrt(sum(variances)) / len(columns), z)


def _hanley_mcneil(auc: float, positives: float, negatives: float) -> float:
    """Hanley and McNeil's (1982) standard error of a ROC AUC from the class counts."""
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    variance = (auc * (1.0 - auc) + (positives - 1.0) * (q1 - auc * auc) + (negatives - 1.0) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


def _estimate(name: str, value: float, error: float, z: float) -> Metric:
    return Metric(name, value, max(0.0, value - z * error), min(1.0, value + z * error))


# --- comparison -----------------------------------------------------------------------------------------------------


def compare_to_registered(
    realized: Mapping[str, Metric], registered: Mapping[str, float], *, tolerance: float = 0.0
) -> dict[str, dict[str, float | None]]:
    """Current metrics against the registered version's, for each metric in both with a known direction.

    Each entry is ``{"registered": r, "current": c, "change": c - r, "degraded": bool}``; ``degraded`` is true
    when the metric moved the wrong way (:data:`HIGHER_IS_BETTER`) by more than ``tolerance``. A metric undefined
    now has ``current`` and ``change`` ``None`` and is not marked degraded.
    """
    comparison: dict[str, dict[str, float | None]] = {}
    for name, metric in realized.items():
        if name not in registered or name not in HIGHER_IS_BETTER:
            continue
        before = float(registered[name])
        if metric.value is None:
            comparison[name] = {"registered": before, "current": None, "change": None, "degraded": False}
            continue
        change = metric.value - before
        degraded = change < -tolerance if HIGHER_IS_BETTER[name] else change > tolerance
        comparison[name] = {"registered": before, "current": metric.value, "change": change, "degraded": degraded}
    return comparison


__all__ = [
    "CLASSIFICATION",
    "ESTIMATED",
    "HIGHER_IS_BETTER",
    "PROBABILITY_TOLERANCE",
    "REGRESSION",
    "Calibrator",
    "Metric",
    "classification_metrics",
    "compare_to_registered",
    "estimate_classification",
    "regression_metrics",
    "wilson_interval",
]
