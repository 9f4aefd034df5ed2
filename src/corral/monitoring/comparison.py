"""Every version of a deployment side by side, on the same data: is the challenger really better?

:func:`compare` takes the recorded predictions of one deployment over one
window (:class:`~corral.monitoring.feedback.Outcome` rows, labelled where
feedback arrived) and returns a JSON-able dict with, per version:

- **traffic**: rows, latency p50/p99 (ms), and the error rate with a Wilson
  interval when the caller passes request and error counts (errors never reach
  the prediction log, so they come from elsewhere);
- **outputs**: the share of each class (classification), or quantiles and a
  :data:`HISTOGRAM_BINS`-bin histogram on a range common to every version
  (regression);
- **drift** of its outputs against the champion's in the same window: a chi2
  test of the class counts, or a two-sample KS test (corral's detectors,
  drifted when ``p < alpha``);
- **agreement** with the champion on the *same* prediction ids (a shadow answers
  the champion's requests under the champion's ids): the agreement rate with a
  Wilson interval and the champion x challenger confusion matrix, or the mean
  absolute difference and Pearson correlation. A split version answers other
  requests, so it has ``paired_rows: 0`` and no agreement;
- **quality** on its own labelled rows (:func:`classification_metrics` /
  :func:`regression_metrics`, with intervals), and a **comparison** with the
  champion that says whether a difference is real or noise.

The champion is the version answering as ``"primary"``. When the alias moved
inside the window, several versions have primary rows: the deployment's
current champion (``current_champion=``) when it has primary rows in the window, else
the one with the most primary rows (then the latest), is the champion, and the
others are listed with the role ``"former champion"``.

Paired tests (rows both versions answered, labelled)
    Accuracy: McNemar's exact test, a two-sided binomial test
    (``scipy.stats.binomtest``) of the discordant pairs: ``champion_only``
    (only the champion right) against ``challenger_only``. The difference's
    interval is the Wald interval of a paired difference of proportions.
    ROC AUC (binary, both with probabilities), RMSE and MAE: a paired bootstrap
    that resamples the shared ids (both versions scored on the same resample),
    seeded. The interval is the percentile interval of the resampled
    differences; the two-sided p-value is ``2 · (min(#(d* ≤ 0), #(d* ≥ 0)) + 1)
    / (B + 1)``, capped at 1: the smallest level at which that percentile
    interval leaves out 0, never 0 itself.

Unpaired tests (split versions: no shared ids, each on its own labelled rows)
    Accuracy: the pooled two-proportion z-test, with the Wald interval of the
    difference. ROC AUC, RMSE and MAE: the same bootstrap with the two sides
    resampled independently. Every unpaired comparison says ``paired: false``:
    the two versions saw different requests, so a difference can come from the
    traffic as well as the model.

Every difference is challenger minus champion. A test's verdict is
``"better"`` or ``"worse"`` (in the metric's direction,
:data:`~corral.monitoring.performance.HIGHER_IS_BETTER`) when ``p < alpha``,
else ``"no significant difference"``; the comparison's verdict is its primary
metric's (accuracy, or RMSE). Bad input is a
:class:`~corral.errors.MonitoringError` that names the problem.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from corral.core.schema import FeatureKind
from corral.errors import DriftInputError, MonitoringError
from corral.monitoring.detectors import get_detector
from corral.monitoring.distributions import Distribution
from corral.monitoring.feedback import Outcome
from corral.monitoring.performance import (
    HIGHER_IS_BETTER,
    Metric,
    classification_metrics,
    regression_metrics,
    wilson_interval,
)

TASKS = ("classification", "regression")
PRIMARY = "primary"
FORMER_CHAMPION = "former champion"
BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no significant difference"
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
HISTOGRAM_BINS = 20
PRIMARY_METRIC = {"classification": "accuracy", "regression": "rmse"}
BOOTSTRAP_CHUNK = 2_000_000  # resampled row weights held in memory at once

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
Key = tuple[str, int]
_Statistic = Callable[[FloatArray], FloatArray]  # resampled row counts (resamples, rows) -> one value per resample


# --- input ----------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Version:
    """One version's rows, one per prediction id, with outputs and labels as arrays."""

    key: Key
    role: str
    roles: dict[str, int]
    outcomes: list[Outcome]
    ids: list[str]
    position: dict[str, int]
    pred: npt.NDArray[Any]  # class positions (intp) or numbers (float, NaN when not finite)
    proba: FloatArray | None  # (rows, classes), NaN rows where a row has none; None when no row has any
    labels: npt.NDArray[Any]  # class positions (-1 unlabelled) or numbers (NaN unlabelled)
    labelled: BoolArray

    @property
    def name(self) -> str:
        return f"{self.key[0]}/{self.key[1]}"


class _Encoder:
    """Outputs and labels as class positions (classification) or floats (regression)."""

    def __init__(self, task: str, classes: list[Any] | None) -> None:
        self.task = task
        self.classes = classes or []
        self.index: dict[Any, int] = {}
        self.by_text: dict[str, int] = {}
        for position, cls in enumerate(self.classes):
            try:
                if cls in self.index:
                    raise MonitoringError(f"classes must be distinct, {cls!r} appears more than once")
                self.index[cls] = position
            except TypeError as exc:
                raise MonitoringError(f"classes must be hashable labels, got {cls!r}") from exc
            self.by_text.setdefault(str(cls), position)

    def value(self, value: Any, what: str) -> float:
        if self.task == "regression":
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise MonitoringError(f"{what} is {value!r}, not a number: a regression comparison needs numbers")
            number = float(value)
            return number if math.isfinite(number) else math.nan
        try:
            found = self.index.get(value)
        except TypeError:
            found = None
        if found is None:
            found = self.by_text.get(str(value))
        if found is None:
            raise MonitoringError(f"{what} is {value!r}, which is not among the classes {self.classes!r}")
        return found


def _versions(
    outcomes: Sequence[Outcome], encoder: _Encoder, current: Key | None = None
) -> tuple[Key, dict[Key, _Version]]:
    groups: dict[Key, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome.model, int(outcome.version)), []).append(outcome)
    primary: dict[Key, tuple[int, Any]] = {}
    for key, rows in groups.items():
        answered = [o.timestamp for o in rows if o.role == PRIMARY]
        if answered:
            primary[key] = (len(answered), max(answered))
    if not primary:
        roles = sorted({str(o.role) for o in outcomes})
        raise MonitoringError(
            f"no row has the role 'primary' (roles seen: {', '.join(roles)}): there is no champion to compare against"
        )
    champion = current if current in primary else max(primary, key=lambda k: primary[k])
    versions = {}
    for key, rows in groups.items():
        seen = Counter(str(o.role) for o in rows)
        role = PRIMARY if key == champion else FORMER_CHAMPION if key in primary else seen.most_common(1)[0][0]
        versions[key] = _build(key, role, dict(seen), rows, encoder)
    return champion, versions


def _build(key: Key, role: str, roles: dict[str, int], rows: list[Outcome], encoder: _Encoder) -> _Version:
    unique: dict[str, Outcome] = {}
    for outcome in rows:
        unique.setdefault(outcome.prediction_id, outcome)
    ids = list(unique)
    name = f"{key[0]}/{key[1]}"
    values = [
        encoder.value(o.output, f"the output of {name} for prediction {o.prediction_id}") for o in unique.values()
    ]
    regression = encoder.task == "regression"
    pred: npt.NDArray[Any] = np.asarray(values, dtype=np.float64 if regression else np.intp)
    labels: list[float] = []
    for o in unique.values():
        if o.labelled and o.label is not None:
            labels.append(encoder.value(o.label, f"the label of prediction {o.prediction_id}"))
        else:
            labels.append(math.nan if regression else -1)
    label_array: npt.NDArray[Any] = np.asarray(labels, dtype=np.float64 if regression else np.intp)
    labelled = ~np.isnan(label_array) if regression else label_array >= 0
    return _Version(
        key=key,
        role=role,
        roles=roles,
        outcomes=rows,
        ids=ids,
        position={pid: i for i, pid in enumerate(ids)},
        pred=pred,
        proba=None if regression else _probabilities(list(unique.values()), len(encoder.classes)),
        labels=label_array,
        labelled=np.asarray(labelled, dtype=np.bool_),
    )


def _probabilities(rows: list[Outcome], width: int) -> FloatArray | None:
    matrix = np.full((len(rows), width), np.nan)
    seen = False
    for i, outcome in enumerate(rows):
        probabilities = outcome.probabilities
        if probabilities is not None and len(probabilities) == width:
            matrix[i] = np.asarray(probabilities, dtype=np.float64)
            seen = True
    return matrix if seen else None


def _subset_proba(version: _Version, rows: IntArray) -> FloatArray | None:
    """The probabilities of these rows, or None unless every one of them has finite probabilities."""
    if version.proba is None or rows.size == 0:
        return None
    subset = version.proba[rows]
    return subset if bool(np.isfinite(subset).all()) else None


# --- per version ----------------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _latency(outcomes: list[Outcome]) -> dict[str, float | None]:
    values = [getattr(o, "latency_ms", None) for o in outcomes]
    known = np.asarray([v for v in values if v is not None], dtype=np.float64)
    known = known[np.isfinite(known)]
    if known.size == 0:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(known, [50.0, 99.0])
    return {"p50": float(p50), "p99": float(p99)}


def _error_rate(counts: tuple[int, int] | None, name: str, confidence: float) -> dict[str, Any] | None:
    if counts is None:
        return None
    try:
        requests, errors = (int(v) for v in counts)
    except (TypeError, ValueError) as exc:
        raise MonitoringError(f"errors for {name} must be (requests, errors), got {counts!r}") from exc
    if requests < 0 or errors < 0 or errors > requests:
        raise MonitoringError(f"errors for {name} must be 0 <= errors <= requests, got {requests} requests, {errors}")
    if requests == 0:
        return {"requests": 0, "errors": 0, "rate": None, "lower": None, "upper": None}
    lower, upper = wilson_interval(errors, requests, confidence)
    return {"requests": requests, "errors": errors, "rate": errors / requests, "lower": lower, "upper": upper}


def _output(version: _Version, task: str, classes: list[Any], edges: FloatArray | None) -> dict[str, Any]:
    if task == "classification":
        counts = np.bincount(version.pred, minlength=len(classes))
        total = int(counts.sum())
        return {"counts": counts.tolist(), "shares": (counts / total).tolist() if total else [0.0] * len(classes)}
    values = version.pred[np.isfinite(version.pred)]
    if values.size == 0:
        return {"missing": int(version.pred.size), "mean": None, "std": None, "quantiles": {}, "histogram": []}
    assert edges is not None
    counts, _ = np.histogram(values, bins=edges)
    return {
        "missing": int(version.pred.size - values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {f"{q:g}": float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)},
        "histogram": counts.tolist(),
    }


def _edges(versions: Sequence[_Version]) -> FloatArray | None:
    values = np.concatenate([v.pred[np.isfinite(v.pred)] for v in versions])
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, HISTOGRAM_BINS + 1)


def _drift(champion: _Version, version: _Version, task: str, alpha: float) -> dict[str, Any]:
    try:
        if task == "classification":
            width = int(max(champion.pred.max(initial=0), version.pred.max(initial=0))) + 1

            def counts(v: _Version) -> Distribution:
                bins = np.bincount(v.pred, minlength=width)
                return Distribution.from_counts({str(i): int(n) for i, n in enumerate(bins)}, FeatureKind.CATEGORICAL)

            result = get_detector("chi2", threshold=alpha).compare(counts(champion), counts(version))
        else:
            reference = Distribution.from_values(champion.pred, FeatureKind.NUMERICAL)
            current = Distribution.from_values(version.pred, FeatureKind.NUMERICAL)
            result = get_detector("ks", threshold=alpha).compare(reference, current)
    except DriftInputError as exc:
        return {"detector": "chi2" if task == "classification" else "ks", "reason": str(exc)}
    return {
        "detector": result.detector,
        "statistic": _num(result.statistic),
        "p_value": _num(result.p_value),
        "drifted": bool(result.drifted),
        "reference_size": result.reference_size,
        "current_size": result.current_size,
    }


def _paired_rows(champion: _Version, version: _Version) -> tuple[IntArray, IntArray]:
    pairs = [(i, version.position[pid]) for i, pid in enumerate(champion.ids) if pid in version.position]
    if not pairs:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    ours, theirs = zip(*pairs, strict=True)
    return np.asarray(ours, dtype=np.intp), np.asarray(theirs, dtype=np.intp)


def _agreement(
    champion: _Version, version: _Version, rows: tuple[IntArray, IntArray], options: _Options
) -> dict[str, Any]:
    ours, theirs = rows
    classes = options.classes
    if ours.size == 0:
        return {
            "paired_rows": 0,
            "reason": f"{version.name} answered none of the requests the champion answered (a split answers "
            "other requests), so there is nothing to pair",
        }
    a, b = champion.pred[ours], version.pred[theirs]
    if options.task == "classification":
        agree = int(np.count_nonzero(a == b))
        lower, upper = wilson_interval(agree, a.size, options.confidence)
        confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
        np.add.at(confusion, (a, b), 1)
        return {
            "paired_rows": int(a.size),
            "agreement": agree / a.size,
            "lower": lower,
            "upper": upper,
            "disagreements": int(a.size - agree),
            "confusion": confusion.tolist(),
        }
    finite = np.isfinite(a) & np.isfinite(b)
    a, b = a[finite], b[finite]
    result: dict[str, Any] = {"paired_rows": int(ours.size), "compared_rows": int(a.size)}
    if a.size == 0:
        return result | {"reason": "no paired row has finite outputs from both versions"}
    diff = b - a
    result |= {
        "mean_absolute_difference": float(np.abs(diff).mean()),
        "mean_difference": float(diff.mean()),
        "max_absolute_difference": float(np.abs(diff).max()),
    }
    if a.size < 2 or np.ptp(a) == 0.0 or np.ptp(b) == 0.0:
        return result | {
            "correlation": None,
            "reason": "correlation needs two rows and outputs that vary on both sides",
        }
    return result | {"correlation": float(np.corrcoef(a, b)[0, 1])}


# --- quality --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Options:
    task: str
    classes: list[Any]
    alpha: float
    confidence: float
    bootstrap: int
    seed: int

    @property
    def z(self) -> float:
        return float(stats.norm.ppf(0.5 + self.confidence / 2.0))


def _metrics(
    options: _Options, labels: npt.NDArray[Any], pred: npt.NDArray[Any], proba: FloatArray | None, name: str
) -> dict[str, Metric]:
    try:
        if options.task == "classification":
            names = np.asarray(options.classes, dtype=object)
            return classification_metrics(
                names[labels], names[pred], options.classes, proba, bootstrap=options.bootstrap, seed=options.seed
            )
        return regression_metrics(labels, pred, bootstrap=options.bootstrap, seed=options.seed)
    except MonitoringError as exc:
        raise MonitoringError(f"cannot score {name}: {exc}") from exc


def _own_quality(version: _Version, options: _Options) -> dict[str, Any] | None:
    rows = np.flatnonzero(version.labelled & _finite(version.pred))
    if rows.size == 0:
        return None
    metrics = _metrics(options, version.labels[rows], version.pred[rows], _subset_proba(version, rows), version.name)
    return {"rows": int(rows.size), "metrics": {k: m.to_dict() for k, m in metrics.items()}}


def _finite(values: npt.NDArray[Any]) -> BoolArray:
    return np.isfinite(values) if values.dtype.kind == "f" else np.ones(values.shape, dtype=np.bool_)


def _verdict(metric: str, difference: float | None, p_value: float | None, alpha: float) -> str | None:
    if p_value is None or difference is None:
        return None
    if p_value >= alpha or difference == 0.0:
        return NO_DIFFERENCE
    return BETTER if (difference > 0) == HIGHER_IS_BETTER[metric] else WORSE


def _test(
    metric: str,
    test: str,
    values: tuple[float | None, float | None],
    interval: tuple[float | None, float | None],
    p_value: float | None,
    *,
    alpha: float,
    **details: Any,
) -> dict[str, Any]:
    champion, challenger = values
    difference = None if champion is None or challenger is None else challenger - champion
    return {
        "metric": metric,
        "test": test,
        "champion": champion,
        "challenger": challenger,
        "difference": difference,
        "lower": _num(interval[0]),
        "upper": _num(interval[1]),
        "p_value": _num(p_value),
        "verdict": _verdict(metric, difference, p_value, alpha),
        **details,
    }


def _comparison(champion: _Version, version: _Version, rows: tuple[IntArray, IntArray], options: _Options) -> Any:
    ours, theirs = rows
    if ours.size:
        return _paired(champion, version, ours, theirs, options)
    return _unpaired(champion, version, options)


def _paired(champion: _Version, version: _Version, ours: IntArray, theirs: IntArray, options: _Options) -> Any:
    regression = options.task == "regression"
    labels = np.where(champion.labelled[ours], champion.labels[ours], version.labels[theirs])
    keep = (champion.labelled[ours] | version.labelled[theirs]) & _finite(champion.pred[ours])
    keep &= _finite(version.pred[theirs])
    ours, theirs, y = ours[keep], theirs[keep], labels[keep]
    result: dict[str, Any] = {"paired": True, "rows": int(y.size), "primary_metric": PRIMARY_METRIC[options.task]}
    if y.size == 0:
        return result | {"reason": "no request both versions answered has a label yet", "verdict": None, "tests": []}
    a, b = champion.pred[ours], version.pred[theirs]
    proba_a, proba_b = _subset_proba(champion, ours), _subset_proba(version, theirs)
    metrics_a = _metrics(options, y, a, proba_a, champion.name)
    metrics_b = _metrics(options, y, b, proba_b, version.name)
    tests: list[dict[str, Any]] = []
    if regression:
        errors_a, errors_b = y - a, y - b
        for name, statistic in (("rmse", _rmse), ("mae", _mae)):
            samples = _bootstrap(statistic(errors_a), statistic(errors_b), (y.size, None), options)
            tests.append(_bootstrap_test(name, metrics_a[name], metrics_b[name], samples, options, paired=True))
    else:
        tests.append(_mcnemar(y, a, b, (metrics_a, metrics_b), options))
        if len(options.classes) == 2 and proba_a is not None and proba_b is not None:
            tests.append(_auc_test((y, proba_a, metrics_a), (y, proba_b, metrics_b), options, paired=True))
    return result | _summary(metrics_a, metrics_b, tests, options)


def _unpaired(champion: _Version, version: _Version, options: _Options) -> Any:
    rows_a = np.flatnonzero(champion.labelled & _finite(champion.pred))
    rows_b = np.flatnonzero(version.labelled & _finite(version.pred))
    result: dict[str, Any] = {
        "paired": False,
        "rows": int(rows_b.size),
        "champion_rows": int(rows_a.size),
        "primary_metric": PRIMARY_METRIC[options.task],
    }
    if rows_a.size == 0 or rows_b.size == 0:
        who = "the champion" if rows_a.size == 0 else version.name
        return result | {"reason": f"{who} has no labelled rows yet", "verdict": None, "tests": []}
    y_a, y_b = champion.labels[rows_a], version.labels[rows_b]
    a, b = champion.pred[rows_a], version.pred[rows_b]
    proba_a, proba_b = _subset_proba(champion, rows_a), _subset_proba(version, rows_b)
    metrics_a = _metrics(options, y_a, a, proba_a, champion.name)
    metrics_b = _metrics(options, y_b, b, proba_b, version.name)
    tests: list[dict[str, Any]] = []
    if options.task == "regression":
        for name, statistic in (("rmse", _rmse), ("mae", _mae)):
            samples = _bootstrap(statistic(y_a - a), statistic(y_b - b), (y_a.size, y_b.size), options)
            tests.append(_bootstrap_test(name, metrics_a[name], metrics_b[name], samples, options, paired=False))
    else:
        tests.append(_two_proportions(y_a, a, y_b, b, options))
        if len(options.classes) == 2 and proba_a is not None and proba_b is not None:
            tests.append(_auc_test((y_a, proba_a, metrics_a), (y_b, proba_b, metrics_b), options, paired=False))
    return result | _summary(metrics_a, metrics_b, tests, options)


def _summary(
    metrics_a: dict[str, Metric], metrics_b: dict[str, Metric], tests: list[dict[str, Any]], options: _Options
) -> dict[str, Any]:
    primary = PRIMARY_METRIC[options.task]
    differences: dict[str, float | None] = {}
    for name, before in metrics_a.items():
        after = metrics_b[name].value
        differences[name] = None if before.value is None or after is None else after - before.value
    return {
        "champion": {k: m.to_dict() for k, m in metrics_a.items()},
        "challenger": {k: m.to_dict() for k, m in metrics_b.items()},
        "differences": differences,
        "tests": tests,
        "verdict": next((t["verdict"] for t in tests if t["metric"] == primary), None),
    }


def _mcnemar(
    y: IntArray, a: IntArray, b: IntArray, metrics: tuple[dict[str, Metric], dict[str, Metric]], options: _Options
) -> dict[str, Any]:
    right_a, right_b = a == y, b == y
    champion_only = int(np.count_nonzero(right_a & ~right_b))
    challenger_only = int(np.count_nonzero(right_b & ~right_a))
    discordant = champion_only + challenger_only
    n = y.size
    p_value = float(stats.binomtest(challenger_only, discordant, 0.5).pvalue) if discordant else 1.0
    difference = (challenger_only - champion_only) / n
    se = math.sqrt(max(discordant - (challenger_only - champion_only) ** 2 / n, 0.0)) / n
    interval = (max(-1.0, difference - options.z * se), min(1.0, difference + options.z * se))
    return _test(
        "accuracy",
        "McNemar exact",
        (metrics[0]["accuracy"].value, metrics[1]["accuracy"].value),
        interval,
        p_value,
        alpha=options.alpha,
        champion_only=champion_only,
        challenger_only=challenger_only,
    )


def _two_proportions(y_a: IntArray, a: IntArray, y_b: IntArray, b: IntArray, options: _Options) -> dict[str, Any]:
    n_a, n_b = y_a.size, y_b.size
    right_a, right_b = int(np.count_nonzero(a == y_a)), int(np.count_nonzero(b == y_b))
    p_a, p_b = right_a / n_a, right_b / n_b
    pooled = (right_a + right_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    p_value = float(2.0 * stats.norm.sf(abs(p_b - p_a) / se0)) if se0 > 0 else 1.0
    se = math.sqrt(p_a * (1.0 - p_a) / n_a + p_b * (1.0 - p_b) / n_b)
    difference = p_b - p_a
    interval = (max(-1.0, difference - options.z * se), min(1.0, difference + options.z * se))
    return _test("accuracy", "two-proportion z-test", (p_a, p_b), interval, min(p_value, 1.0), alpha=options.alpha)


# --- bootstrap ------------------------------------------------------------------------------------------------------


def _rmse(errors: FloatArray) -> _Statistic:
    squared = errors * errors

    def statistic(weights: FloatArray) -> FloatArray:
        result: FloatArray = np.sqrt(weights @ squared / errors.size)
        return result

    return statistic


def _mae(errors: FloatArray) -> _Statistic:
    absolute = np.abs(errors)

    def statistic(weights: FloatArray) -> FloatArray:
        result: FloatArray = weights @ absolute / errors.size
        return result

    return statistic


def _auc(y: IntArray, scores: FloatArray) -> _Statistic:
    """Binary ROC AUC (ties one half) for each row of resampled counts; NaN where a resample lacks a class."""
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    positive = (y == 1)[order]

    def statistic(weights: FloatArray) -> FloatArray:
        sorted_weights = weights[:, order]
        positives = np.add.reduceat(sorted_weights * positive, starts, axis=1)
        negatives = np.add.reduceat(sorted_weights * ~positive, starts, axis=1)
        below = np.cumsum(negatives, axis=1) - negatives
        with np.errstate(divide="ignore", invalid="ignore"):
            result: FloatArray = (positives * (below + 0.5 * negatives)).sum(axis=1) / (
                positives.sum(axis=1) * negatives.sum(axis=1)
            )
        return result

    return statistic


def _counts(rng: np.random.Generator, rows: int, size: int) -> FloatArray:
    picks = rng.integers(0, rows, size=(size, rows)) + np.arange(size)[:, None] * rows
    return np.bincount(picks.ravel(), minlength=size * rows).reshape(size, rows).astype(np.float64)


def _bootstrap(champion: _Statistic, challenger: _Statistic, rows: tuple[int, int | None], options: _Options) -> Any:
    """Resampled differences (challenger - champion): the same resample of shared rows (``rows[1]`` None, paired),
    or independent resamples of each side's rows (unpaired)."""
    rng = np.random.default_rng(options.seed)
    rows_a, rows_b = rows
    per_chunk = max(1, BOOTSTRAP_CHUNK // max(rows_a, rows_b or 0))
    parts = []
    done = 0
    while done < options.bootstrap:
        size = min(per_chunk, options.bootstrap - done)
        weights_a = _counts(rng, rows_a, size)
        weights_b = weights_a if rows_b is None else _counts(rng, rows_b, size)
        parts.append(challenger(weights_b) - champion(weights_a))
        done += size
    return np.concatenate(parts) if parts else np.zeros(0)


def _bootstrap_test(
    metric: str, champion: Metric, challenger: Metric, samples: FloatArray, options: _Options, *, paired: bool
) -> dict[str, Any]:
    finite = samples[np.isfinite(samples)]
    test = ("paired" if paired else "unpaired") + " bootstrap"
    if finite.size == 0 or champion.value is None or challenger.value is None:
        return _test(
            metric, test, (champion.value, challenger.value), (None, None), None, alpha=options.alpha, resamples=0
        )
    tail = (1.0 - options.confidence) / 2.0 * 100.0
    lower, upper = np.percentile(finite, [tail, 100.0 - tail])
    below, above = int(np.count_nonzero(finite <= 0.0)), int(np.count_nonzero(finite >= 0.0))
    p_value = min(1.0, 2.0 * (min(below, above) + 1) / (finite.size + 1))
    return _test(
        metric,
        test,
        (champion.value, challenger.value),
        (float(lower), float(upper)),
        p_value,
        alpha=options.alpha,
        resamples=int(finite.size),
    )


def _auc_test(
    champion: tuple[IntArray, FloatArray, dict[str, Metric]],
    challenger: tuple[IntArray, FloatArray, dict[str, Metric]],
    options: _Options,
    *,
    paired: bool,
) -> dict[str, Any]:
    (y_a, proba_a, metrics_a), (y_b, proba_b, metrics_b) = champion, challenger
    sizes: tuple[int, int | None] = (y_a.size, None if paired else y_b.size)
    samples = _bootstrap(_auc(y_a, proba_a[:, 1]), _auc(y_b, proba_b[:, 1]), sizes, options)
    return _bootstrap_test("roc_auc", metrics_a["roc_auc"], metrics_b["roc_auc"], samples, options, paired=paired)


# --- the comparison -------------------------------------------------------------------------------------------------


def _json_label(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def compare(
    outcomes: Sequence[Outcome],
    *,
    task: str,
    classes: Sequence[Any] | None = None,
    errors: Mapping[tuple[str, int], tuple[int, int]] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    confidence: float = 0.95,
    current_champion: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Every version in ``outcomes`` side by side with the champion (see the module docstring); JSON-able.

    Args:
        outcomes: one deployment's recorded predictions over one window, labelled where feedback arrived.
        task: ``"classification"`` or ``"regression"``.
        classes: every class, in the order of the probability columns (classification; binary: ``classes[1]`` is
            the positive class).
        errors: ``(model, version) -> (requests, errors)`` for the error rate; a version not in it has none.
        bootstrap: resamples for every bootstrap interval and test; 0 turns them off (their p-values are then null).
        seed: seeds every bootstrap, so the same call gives the same answer.
        alpha: the significance level of every verdict and drift flag.
        confidence: the level of every interval.
        current_champion: ``(model, version)`` of the deployment's champion now; when it answered in the window,
            every other version is compared with it, even if a former champion answered more of the window.

    Raises:
        MonitoringError: an unknown task, no outcomes, no primary rows, missing or bad classes, outputs or labels
            outside the classes (or not numbers, for regression), bad error counts or options.
    """
    if task not in TASKS:
        raise MonitoringError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "classification":
        if classes is None:
            raise MonitoringError("a classification comparison needs classes (every class, in probability order)")
        class_list = [_json_label(c) for c in classes]
        if len(class_list) < 2:
            raise MonitoringError(f"classes must name at least 2 classes, got {class_list!r}")
    else:
        class_list = []
    if bootstrap < 0:
        raise MonitoringError(f"bootstrap must be 0 (no bootstrap) or a number of resamples, got {bootstrap!r}")
    for name, level in (("alpha", alpha), ("confidence", confidence)):
        if not 0.0 < level < 1.0:
            raise MonitoringError(f"{name} must be strictly between 0 and 1, got {level!r}")
    if not outcomes:
        raise MonitoringError("there are no outcomes in this window: nothing to compare")
    options = _Options(task, class_list, alpha, confidence, bootstrap, seed)
    encoder = _Encoder(task, class_list)
    champion_key, versions = _versions(
        outcomes, encoder, (current_champion[0], int(current_champion[1])) if current_champion else None
    )
    champion = versions[champion_key]
    ordered = [champion, *sorted((v for k, v in versions.items() if k != champion_key), key=lambda v: v.key)]
    edges = _edges(ordered) if task == "regression" else None
    errors = errors or {}
    entries = []
    for version in ordered:
        is_champion = version is champion
        entry: dict[str, Any] = {
            "model": version.key[0],
            "version": version.key[1],
            "role": version.role,
            "champion": is_champion,
            "roles": version.roles,
            "rows": len(version.ids),
            "duplicates": len(version.outcomes) - len(version.ids),
            "labelled": int(np.count_nonzero(version.labelled)),
            "latency_ms": _latency(version.outcomes),
            "errors": _error_rate(errors.get(version.key), version.name, confidence),
            "output": _output(version, task, class_list, edges),
            "quality": _own_quality(version, options),
        }
        if is_champion:
            entry |= {"drift": None, "agreement": None, "comparison": None}
        else:
            rows = _paired_rows(champion, version)
            entry |= {
                "drift": _drift(champion, version, task, alpha),
                "agreement": _agreement(champion, version, rows, options),
                "comparison": _comparison(champion, version, rows, options),
            }
        entries.append(entry)
    times = [o.timestamp for o in outcomes]
    return {
        "task": task,
        "classes": class_list if task == "classification" else None,
        "deployments": sorted({str(o.deployment) for o in outcomes}),
        "window": {"start": min(times).isoformat(), "end": max(times).isoformat()},
        "rows": len(outcomes),
        "champion": {"model": champion.key[0], "version": champion.key[1]},
        "alpha": alpha,
        "confidence": confidence,
        "bootstrap": bootstrap,
        "seed": seed,
        "histogram_edges": None if edges is None else edges.tolist(),
        "versions": entries,
    }


__all__ = [
    "BETTER",
    "FORMER_CHAMPION",
    "HISTOGRAM_BINS",
    "NO_DIFFERENCE",
    "PRIMARY_METRIC",
    "QUANTILES",
    "TASKS",
    "WORSE",
    "compare",
]
