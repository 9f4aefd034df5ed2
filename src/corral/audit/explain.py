"""Per-prediction explanations: SHAP feature attributions that add up to the model's output.

:meth:`Explainer.for_model` picks the explainer from the model's native object:

- **tree models** (scikit-learn forests, extra trees, decision trees, gradient boosting and
  HistGradientBoosting; XGBoost; LightGBM): ``shap.TreeExplainer``, exact. For classifiers it first
  explains the **probability** (interventional perturbation over the background sample); where shap
  cannot do that exactly (multi-class boosting, or HistGradientBoosting, whose interventional values
  do not add up in shap 0.51) it explains the **raw margin** with the tree-path-dependent algorithm:
  the log-odds of a binary classifier, or each class's softmax margin.
- **linear models** (``sklearn.linear_model``, ``LinearSVC``/``LinearSVR``): ``shap.LinearExplainer``
  (interventional, over the background), exact. Classifiers are explained in **log-odds** (the
  decision function): the probability is not linear in the features.
- **everything else**, pipelines with preprocessing included: ``shap.KernelExplainer`` on the whole
  model (so attributions are per *input* column, before any preprocessing), explaining the
  probabilities of a classifier or a regressor's prediction, over ``background_rows`` rows of the
  sample (seeded). Non-numeric columns are coded as integers for shap and decoded before the model
  sees them. Kernel SHAP's attributions are estimates; its additivity is enforced by its constraint.

Every candidate explainer is checked on rows of the sample before it is used: its base value plus
its attributions must give the model's own output (through the logistic or softmax link for margins)
within :data:`EXACT_TOLERANCE`; a candidate that does not is skipped for the next one, and the
model-agnostic explainer comes last.

What each output means is in its name: ``proba_<class>`` (a probability), ``logit_<class>`` (the
log-odds of that class: logistic of it is the class's probability), ``margin_<class>`` (softmax over
all classes' margins gives the probabilities), ``prediction`` (a regressor's value). A binary
classifier always gets both classes' outputs (the other class's attributions are the negation).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

from corral.audit.ports import AuditStore
from corral.audit.records import Explanation
from corral.core.profile import Profile
from corral.errors import FlavorError, SchemaError

EXACT_TOLERANCE = 1e-6
"""Exact explainers (tree, linear): ``|base + sum - output| <= 1e-6 * (1 + |output|)``.

The relative part is for models that compute in float32 (XGBoost) and have outputs far from 1.
"""

SAMPLED_TOLERANCE = 1e-4
"""The model-agnostic (Kernel SHAP) explainer: its attributions are sampled estimates. Its sum is
constrained to the output, but the weighted least squares over thousands of evaluations is allowed
this much float error (in practice it meets :data:`EXACT_TOLERANCE` too)."""

BACKGROUND_ROWS = 50
KERNEL_EVALUATIONS = 1000

_TREE_SKLEARN = frozenset(
    {
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
        "GradientBoostingClassifier",
        "GradientBoostingRegressor",
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    }
)
_TREE_FRAMEWORKS = frozenset({"xgboost", "lightgbm", "catboost"})
_LINEAR_SVM = frozenset({"LinearSVC", "LinearSVR"})
_SEED_LOCK = threading.Lock()


class PredictionLike(Protocol):
    """What a runtime's ``predict`` returns (:class:`corral.runtimes.base.Prediction`)."""

    @property
    def values(self) -> np.ndarray: ...

    @property
    def probabilities(self) -> np.ndarray | None: ...


class Predicts(Protocol):
    """A model runtime: ``predict`` on a frame already validated against the signature."""

    def predict(self, frame: pd.DataFrame, /) -> Any: ...


class LoadedLike(Protocol):
    """A loaded version (:class:`corral.registry.loaded.LoadedModel`): its runtime, classes and signature."""

    @property
    def runtime(self) -> Any: ...

    @property
    def classes(self) -> tuple[Any, ...] | None: ...

    @property
    def signature(self) -> Any: ...


def native_model(runtime: Any) -> Any:
    """The framework's own model object inside a runtime.

    ``runtime.native`` when the runtime defines it, else ``runtime.model`` (scikit-learn, XGBoost)
    or ``runtime.booster`` (LightGBM); ``None`` when it holds none (ONNX, custom): such models get
    the model-agnostic explainer.
    """
    for name in ("native", "model", "booster"):
        value = getattr(runtime, name, None)
        if value is not None:
            return value
    return None


@dataclass(frozen=True, slots=True)
class Attribution:
    """One row's explanation: ``base_values[k] + sum(contributions[f][k] for f) = output k``."""

    method: str
    outputs: tuple[str, ...]
    base_values: tuple[float, ...]
    contributions: Mapping[str, tuple[float, ...]]

    def totals(self) -> tuple[float, ...]:
        """Base value plus every contribution, per output."""
        return totals(self.base_values, self.contributions)

    def to_explanation(self, prediction_id: str, created_at: datetime | None = None) -> Explanation:
        return Explanation(
            prediction_id=prediction_id,
            method=self.method,
            outputs=self.outputs,
            base_values=self.base_values,
            contributions=dict(self.contributions),
            created_at=created_at or datetime.now(UTC),
        )


def totals(base_values: Sequence[float], contributions: Mapping[str, Sequence[float]]) -> tuple[float, ...]:
    """``base + sum of contributions`` per output (``math.fsum``, so the order of features does not matter)."""
    return tuple(
        math.fsum([base, *(float(c[k]) for c in contributions.values())]) for k, base in enumerate(base_values)
    )


def top_contributions(
    explanation: Explanation | Attribution, *, output: int | None = None, top: int = 10
) -> list[tuple[str, float]]:
    """The ``top`` features by absolute contribution to one output (by default the last: the positive class)."""
    k = len(explanation.outputs) - 1 if output is None else output
    items = [(name, float(values[k])) for name, values in explanation.contributions.items()]
    items.sort(key=lambda item: (-abs(item[1]), item[0]))
    return items[:top]


def output_index(explanation: Explanation | Attribution, recorded_output: Any) -> int:
    """Which output to show first: the recorded class's, else the last one."""
    for k, name in enumerate(explanation.outputs):
        if name.partition("_")[2] == str(recorded_output):
            return k
    return len(explanation.outputs) - 1


@dataclass(frozen=True, slots=True)
class SumCheck:
    """Does one output's base value plus its attributions give what the model answered?

    ``link`` is how the total maps to ``expected``: ``identity`` (probabilities, predictions),
    ``logistic`` (log-odds) or ``softmax`` (margins). ``linked`` is the total through the link.
    """

    output: str
    base_value: float
    total: float
    linked: float
    link: str
    expected: float | None
    ok: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "base_value": self.base_value,
            "total": self.total,
            "link": self.link,
            "linked": self.linked,
            "expected": self.expected,
            "ok": self.ok,
        }


def check_sums(
    explanation: Explanation | Attribution,
    *,
    probabilities: Sequence[float] | None,
    output: Any,
    tolerance: float = EXACT_TOLERANCE,
) -> list[SumCheck]:
    """Compare each output's base value plus attributions with the recorded answer.

    Probabilities are compared with the recorded ``probabilities`` (in class order), log-odds and
    margins after the logistic or softmax link, a ``prediction`` with the recorded ``output``.
    ``ok`` is ``None`` when there is nothing recorded to compare with.
    """
    sums = np.asarray(totals(explanation.base_values, explanation.contributions), dtype="float64")
    kinds = {name.partition("_")[0] for name in explanation.outputs}
    if kinds == {"margin"}:
        link, linked = "softmax", _softmax(sums[None, :])[0]
    elif kinds == {"logit"}:
        link, linked = "logistic", _sigmoid(sums)
    else:
        link, linked = "identity", sums
    if kinds <= {"proba", "logit", "margin"}:
        expected: list[float | None] = (
            [float(p) for p in probabilities]
            if probabilities is not None and len(probabilities) == len(sums)
            else [None] * len(sums)
        )
    else:
        value = _number(output)
        expected = [value] * len(sums)
    return [
        SumCheck(
            output=name,
            base_value=float(explanation.base_values[k]),
            total=float(sums[k]),
            linked=float(linked[k]),
            link=link,
            expected=expected[k],
            ok=None if expected[k] is None else _close(float(linked[k]), expected[k], tolerance),  # type: ignore[arg-type]
        )
        for k, name in enumerate(explanation.outputs)
    ]


class Explainer:
    """Explains rows of one model version; build it with :meth:`for_model` or :meth:`for_loaded`.

    Attributes:
        method: the algorithm and what it explains, e.g. ``tree-interventional:probability``.
        outputs: the name of each explained output (``proba_1``, ``logit_1``, ``margin_2``, ``prediction``).
        columns: the input columns attributions are given for, in signature order.
        tolerance: the additivity tolerance this method meets (:data:`EXACT_TOLERANCE` or
            :data:`SAMPLED_TOLERANCE`).
    """

    def __init__(
        self,
        method: str,
        outputs: tuple[str, ...],
        columns: list[str],
        tolerance: float,
        compute: Any,
    ) -> None:
        self.method = method
        self.outputs = outputs
        self.columns = columns
        self.tolerance = tolerance
        self._compute = compute

    def __repr__(self) -> str:
        return f"<Explainer {self.method} outputs={list(self.outputs)}>"

    @classmethod
    def for_loaded(cls, loaded: LoadedLike, frame_sample: Any, **options: Any) -> Explainer:
        """An explainer for a loaded version; ``frame_sample`` (rows of its inputs) is validated first."""
        sample = loaded.signature.validate(frame_sample, extra="ignore")
        return cls.for_model(loaded.runtime, sample, classes=loaded.classes, **options)

    @classmethod
    def for_model(
        cls,
        model: Predicts,
        frame_sample: pd.DataFrame,
        *,
        classes: Sequence[Any] | None,
        native: Any = None,
        background_rows: int = BACKGROUND_ROWS,
        evaluations: int = KERNEL_EVALUATIONS,
        seed: int = 0,
    ) -> Explainer:
        """Choose and check the explainer for ``model``.

        Args:
            model: the runtime: ``predict(frame)`` on validated frames, answering values and, for
                classifiers, probabilities in the order of ``classes``.
            frame_sample: validated input rows (training rows or recorded production inputs); at
                most ``background_rows`` of them, drawn with ``seed``, are the background that
                base values are the average model output over.
            classes: the classifier's classes, ``None`` for a regressor.
            native: the framework's model object; by default :func:`native_model` of ``model``.
            evaluations: coalitions Kernel SHAP evaluates per explained row (times the background rows).

        Raises:
            SchemaError: the sample has no rows.
            FlavorError: the model answers labels only (no probabilities, no numbers): nothing to attribute.
        """
        if not isinstance(frame_sample, pd.DataFrame) or len(frame_sample) == 0:
            raise SchemaError("explaining needs background rows (a non-empty frame of validated inputs)")
        columns = [str(c) for c in frame_sample.columns]
        background = _draw(frame_sample, background_rows, seed)
        native = native_model(model) if native is None else native
        check_rows = background.iloc[: min(5, len(background))]
        reference = model.predict(check_rows)
        probabilities = _probabilities(reference)
        is_classifier = classes is not None
        if is_classifier and probabilities is None:
            raise FlavorError(
                "this classifier answers labels without probabilities: there is no number to attribute; "
                "register it with probabilities to explain its predictions"
            )
        if not is_classifier and not np.issubdtype(np.asarray(reference.values).dtype, np.number):
            raise FlavorError("this model's outputs are not numbers: there is nothing to attribute")
        labels = tuple(str(c) for c in classes) if classes is not None else ()
        numeric = all(np.issubdtype(dt, np.number) for dt in frame_sample.dtypes)
        family = _family(native) if numeric else "other"
        for candidate in _candidates(family, native, background, is_classifier):
            with contextlib.suppress(Exception):  # shap refuses models it cannot do: try the next
                method, shap_fn = candidate
                values, base = shap_fn(_native_input(native, check_rows))
                space = _interpret(values, base, probabilities, reference.values, is_classifier)
                if space is not None:
                    return cls(
                        f"{method}:{space.rstrip('1')}",
                        _names(space, labels, values.shape[2]),
                        columns,
                        EXACT_TOLERANCE,
                        _exact(shap_fn, native, columns, space),
                    )
        return cls._kernel(
            model=model,
            background=background,
            columns=columns,
            labels=labels,
            is_classifier=is_classifier,
            evaluations=evaluations,
            seed=seed,
        )

    @classmethod
    def _kernel(
        cls,
        *,
        model: Predicts,
        background: pd.DataFrame,
        columns: list[str],
        labels: tuple[str, ...],
        is_classifier: bool,
        evaluations: int,
        seed: int,
    ) -> Explainer:
        import shap

        codec = _Codec(background)

        def f(coded: np.ndarray) -> np.ndarray:
            prediction = model.predict(codec.decode(coded))
            if is_classifier:
                return np.asarray(_probabilities(prediction), dtype="float64")
            return np.asarray(prediction.values, dtype="float64").reshape(-1, 1)

        def compute(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
            local = codec.extended(frame)
            explainer = shap.KernelExplainer(f, local.encode(background), link="identity")
            nsamples = max(2 * len(columns) + 2, min(evaluations, 2 * len(columns) + 2048))
            with _seeded(seed):
                raw = explainer.shap_values(local.encode(frame), nsamples=nsamples, l1_reg=False, silent=True)
            values = _as_3d(np.asarray(raw, dtype="float64"), len(frame), len(columns))
            base = np.broadcast_to(
                np.asarray(explainer.expected_value, dtype="float64").reshape(1, -1), (len(frame), values.shape[2])
            )
            return values, np.array(base)

        space = "probability" if is_classifier else "raw"
        outputs = _names(space, labels, len(labels) if is_classifier else 1)
        return cls("kernel:" + space, outputs, columns, SAMPLED_TOLERANCE, _attributions(compute, columns, space))

    def explain(self, frame: pd.DataFrame) -> list[Attribution]:
        """One :class:`Attribution` per row of ``frame`` (validated inputs, the sample's columns)."""
        if len(frame) == 0:
            return []
        values, base = self._compute(frame[self.columns])
        return [
            Attribution(
                self.method,
                self.outputs,
                tuple(float(b) for b in base[i]),
                {c: tuple(float(v) for v in values[i, j]) for j, c in enumerate(self.columns)},
            )
            for i in range(len(frame))
        ]


# -- the exact explainers -------------------------------------------------------------------------------


def _candidates(family: str, native: Any, background: pd.DataFrame, is_classifier: bool) -> Iterator[tuple[str, Any]]:
    import shap

    data = _native_input(native, background)
    if family == "tree":
        if is_classifier:
            yield (
                "tree-interventional",
                _shap_call(
                    lambda: shap.TreeExplainer(
                        native, data=data, feature_perturbation="interventional", model_output="probability"
                    )
                ),
            )
        else:
            yield (
                "tree-interventional",
                _shap_call(lambda: shap.TreeExplainer(native, data=data, feature_perturbation="interventional")),
            )
        yield (
            "tree-path-dependent",
            _shap_call(lambda: shap.TreeExplainer(native, feature_perturbation="tree_path_dependent")),
        )
    elif family == "linear":
        yield "linear", _shap_call(lambda: shap.LinearExplainer(native, np.asarray(data, dtype="float64")))


def _shap_call(build: Any) -> Any:
    """``rows -> (values (n, features, outputs), base (n, outputs))`` with the explainer built once, lazily."""
    built: list[Any] = []

    def call(rows: Any) -> tuple[np.ndarray, np.ndarray]:
        if not built:
            built.append(build())
        result = built[0](rows)
        n, m = np.shape(rows)
        values = _as_3d(np.asarray(result.values, dtype="float64"), n, m)
        base = np.asarray(result.base_values, dtype="float64").reshape(n, -1)
        if base.shape[1] != values.shape[2]:
            base = np.broadcast_to(base[:, :1], (n, values.shape[2])).copy()
        return values, base

    return call


def _exact(shap_fn: Any, native: Any, columns: list[str], space: str) -> Any:
    def compute(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        values, base = shap_fn(_native_input(native, frame))
        return _expand(values, base, space)

    return compute


def _attributions(compute: Any, columns: list[str], space: str) -> Any:
    def run(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        values, base = compute(frame)
        return _expand(values, base, space)

    return run


def _expand(values: np.ndarray, base: np.ndarray, space: str) -> tuple[np.ndarray, np.ndarray]:
    """A binary classifier explained through one output gets the other class's too (its negation)."""
    if values.shape[2] != 1 or space not in ("probability1", "log-odds"):
        return values, base
    if space == "probability1":
        return np.concatenate([-values, values], axis=2), np.concatenate([1.0 - base, base], axis=1)
    return np.concatenate([-values, values], axis=2), np.concatenate([-base, base], axis=1)


def _interpret(
    values: np.ndarray, base: np.ndarray, probabilities: np.ndarray | None, answers: Any, is_classifier: bool
) -> str | None:
    """What the explained outputs are, judged by whether they add up to the model's own answers."""
    sums = base + values.sum(axis=1)
    k = sums.shape[1]
    if not is_classifier:
        expected = np.asarray(answers, dtype="float64").reshape(-1, 1)
        return "raw" if k == 1 and _all_close(sums, expected) else None
    assert probabilities is not None
    classes = probabilities.shape[1]
    if k == classes and _all_close(sums, probabilities):
        return "probability"
    if k == 1 and classes == 2 and _all_close(sums[:, 0], probabilities[:, 1]):
        return "probability1"
    if k == 1 and classes == 2 and _all_close(_sigmoid(sums[:, 0]), probabilities[:, 1]):
        return "log-odds"
    if k == classes and _all_close(_softmax(sums), probabilities):
        return "margin"
    return None


def _names(space: str, labels: tuple[str, ...], k: int) -> tuple[str, ...]:
    if space in ("probability", "probability1"):
        return tuple(f"proba_{c}" for c in labels)
    if space == "log-odds":
        return tuple(f"logit_{c}" for c in labels)
    if space == "margin":
        return tuple(f"margin_{c}" for c in labels)
    return ("prediction",) if k == 1 else tuple(f"output_{i}" for i in range(k))


def _family(native: Any) -> str:
    if native is None:
        return "other"
    kind = type(native)
    root = kind.__module__.split(".")[0]
    if root in _TREE_FRAMEWORKS:
        return "tree"
    if root == "sklearn":
        if kind.__name__ in _TREE_SKLEARN:
            return "tree"
        if kind.__module__.startswith("sklearn.linear_model") or kind.__name__ in _LINEAR_SVM:
            return "linear" if hasattr(native, "coef_") else "other"
    return "other"


def _native_input(native: Any, frame: pd.DataFrame) -> Any:
    """The rows as the native model takes them (how the runtimes call it): named frames or arrays."""
    root = type(native).__module__.split(".")[0]
    if root in _TREE_FRAMEWORKS or hasattr(native, "feature_names_in_"):
        return frame
    return frame.to_numpy(dtype="float64")


# -- the model-agnostic explainer's coding of non-numeric columns ----------------------------------------


class _Codec:
    """Columns as float codes for shap: numbers as they are, anything else as an index into its values."""

    def __init__(self, sample: pd.DataFrame, categories: dict[str, list[Any]] | None = None) -> None:
        self.columns = list(sample.columns)
        self.dtypes = sample.dtypes
        self.categories = categories or {
            c: _unique(sample[c]) for c in self.columns if not np.issubdtype(sample[c].dtype, np.number)
        }

    def extended(self, frame: pd.DataFrame) -> _Codec:
        """A codec that also knows ``frame``'s values (codes of the sample's values do not change)."""
        categories = {
            c: [*values, *(v for v in _unique(frame[c]) if not _contains(values, v))]
            for c, values in self.categories.items()
        }
        codec = _Codec.__new__(_Codec)
        codec.columns, codec.dtypes, codec.categories = self.columns, self.dtypes, categories
        return codec

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)), dtype="float64")
        for j, c in enumerate(self.columns):
            if c in self.categories:
                index = self.categories[c]
                out[:, j] = [_position(index, v) for v in frame[c]]
            else:
                out[:, j] = frame[c].to_numpy(dtype="float64", na_value=np.nan)
        return out

    def decode(self, coded: np.ndarray) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for j, c in enumerate(self.columns):
            column = coded[:, j]
            if c in self.categories:
                values = np.asarray(self.categories[c], dtype=object)[column.astype("int64")]
                data[c] = pd.Series(values).astype(self.dtypes[c])
            else:
                data[c] = pd.Series(column).astype(self.dtypes[c])
        return pd.DataFrame(data)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT


def _unique(column: pd.Series) -> list[Any]:
    seen: list[Any] = []
    for value in column.tolist():
        if not _contains(seen, value):
            seen.append(value)
    return seen


def _contains(values: list[Any], value: Any) -> bool:
    return _position(values, value, strict=False) >= 0


def _position(values: list[Any], value: Any, *, strict: bool = True) -> int:
    for i, known in enumerate(values):
        if (_missing(known) and _missing(value)) or (not _missing(known) and not _missing(value) and known == value):
            return i
    if strict:
        raise SchemaError(f"value {value!r} was not seen when the explainer was built")
    return -1


# -- background rows --------------------------------------------------------------------------------------


def _draw(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    chosen = np.sort(np.random.default_rng(seed).choice(len(frame), size=rows, replace=False))
    return frame.iloc[chosen].reset_index(drop=True)


def profile_sample(
    profile: Profile, columns: Sequence[str], *, rows: int = BACKGROUND_ROWS, seed: int = 0
) -> pd.DataFrame:
    """Synthetic rows drawn from a reference profile, feature by feature (independently).

    Numbers are drawn from the profile's histogram (a bin by its count, then uniformly inside it),
    categories by their counts. For a background when no real rows are at hand; validate them with
    the version's signature before use.
    """
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for name in columns:
        feature = profile.features.get(name)
        if feature is None:
            raise SchemaError(f"the reference profile has no feature {name!r}")
        if feature.categories:
            labels = list(feature.categories)
            weights = np.asarray(list(feature.categories.values()), dtype="float64")
            data[name] = [labels[i] for i in rng.choice(len(labels), size=rows, p=weights / weights.sum())]
        elif feature.bin_counts and sum(feature.bin_counts) > 0:
            edges = np.asarray(feature.bin_edges, dtype="float64")
            counts = np.asarray(feature.bin_counts, dtype="float64")
            bins = rng.choice(len(counts), size=rows, p=counts / counts.sum())
            data[name] = rng.uniform(edges[bins], edges[bins + 1])
        else:
            data[name] = [feature.mean if feature.mean is not None else np.nan] * rows
    return pd.DataFrame(data)


# -- numbers ----------------------------------------------------------------------------------------------


def _probabilities(prediction: Any) -> np.ndarray | None:
    probabilities = getattr(prediction, "probabilities", None)
    return None if probabilities is None else np.asarray(probabilities, dtype="float64")


def _as_3d(values: np.ndarray, n: int, m: int) -> np.ndarray:
    """shap's values as ``(rows, features, outputs)``, whichever of its layouts it gave."""
    if values.ndim == 2:
        return values.reshape(n, m, 1)
    if values.ndim == 3 and values.shape[:2] == (n, m):
        return values
    if values.ndim == 3 and values.shape[1:] == (n, m):  # a list per output
        return np.moveaxis(values, 0, 2)
    raise ValueError(f"unexpected shap values of shape {values.shape} for {n} rows of {m} features")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype="float64")))
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    out: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return out


def _close(actual: float, expected: float, tolerance: float) -> bool:
    return abs(actual - expected) <= tolerance * (1.0 + abs(expected))


def _all_close(actual: np.ndarray, expected: np.ndarray) -> bool:
    actual, expected = np.asarray(actual, dtype="float64"), np.asarray(expected, dtype="float64")
    return actual.shape == expected.shape and bool(
        np.all(np.abs(actual - expected) <= EXACT_TOLERANCE * (1.0 + np.abs(expected)))
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Kernel SHAP draws coalitions from numpy's global generator: seed it, and put it back after."""
    with _SEED_LOCK:
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


# -- a recorded prediction ---------------------------------------------------------------------------------

Load = Callable[[str, int], LoadedLike]
"""``(model, version) -> the loaded version`` (e.g. ``lambda m, v: registry.load(f"{m}/{v}")``)."""

BACKGROUND_SEARCH = 200
MIN_LOGGED_BACKGROUND = 10


def explain_recorded(
    store: AuditStore,
    load: Load,
    prediction_id: str,
    *,
    profile: Callable[[str, int], Profile | None] | None = None,
    recompute: bool = False,
) -> tuple[Explanation, bool]:
    """A recorded prediction's explanation: the stored one, else computed now and stored.

    The background is the inputs the same version recorded (up to :data:`BACKGROUND_SEARCH` rows of
    the log, :data:`BACKGROUND_ROWS` of them drawn); with fewer than :data:`MIN_LOGGED_BACKGROUND`
    logged rows, rows drawn from the version's reference profile (``profile(model, version)``) are
    added, since the registry keeps no training rows.

    Returns:
        ``(explanation, computed)``; ``computed`` is ``False`` when it was read from the store.

    Raises:
        PredictionNotFoundError: no prediction has this id.
    """
    record = store.get(prediction_id)
    if not recompute:
        stored = store.get_explanation(prediction_id)
        if stored is not None:
            return stored, False
    loaded = load(record.model, record.version)
    rows = [dict(r.inputs) for r in store.search(model=record.model, version=record.version, limit=BACKGROUND_SEARCH)]
    sample = loaded.signature.validate(rows or [dict(record.inputs)], extra="ignore")
    reference = profile(record.model, record.version) if profile is not None else None
    if len(sample) < MIN_LOGGED_BACKGROUND and reference is not None:
        with contextlib.suppress(SchemaError):
            synthetic = profile_sample(reference, loaded.signature.columns)
            sample = pd.concat([sample, loaded.signature.validate(synthetic)], ignore_index=True)
    explainer = Explainer.for_loaded(loaded, sample)
    row = loaded.signature.validate([dict(record.inputs)], extra="ignore")
    explanation = explainer.explain(row)[0].to_explanation(prediction_id)
    store.put_explanation(explanation)
    return explanation, True


# -- policy -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExplainPolicy:
    """When a deployment explains its predictions inline.

    ``always``: every prediction; ``on_demand``: only when the request asks (or later, from the log);
    ``sampled:N%``: a deterministic N% of predictions, chosen by a hash of the prediction id, so
    every process agrees which ones.
    """

    mode: str
    rate: float = 0.0

    @classmethod
    def parse(cls, text: str) -> ExplainPolicy:
        """``"always"``, ``"on_demand"`` or ``"sampled:N%"`` (0 < N <= 100).

        Raises:
            SchemaError: anything else, with what is accepted.
        """
        if not isinstance(text, str):
            raise SchemaError(f"explain policy must be text, got {type(text).__name__}")
        value = text.strip().lower().replace("-", "_")
        if value in ("always", "on_demand"):
            return cls(value, 1.0 if value == "always" else 0.0)
        mode, _, amount = value.partition(":")
        if mode == "sampled" and amount.endswith("%"):
            with contextlib.suppress(ValueError):
                percent = float(amount[:-1])
                if 0.0 < percent <= 100.0:
                    return cls("sampled", percent / 100.0)
        raise SchemaError(
            f"explain policy {text!r} is not one of: always, on_demand, sampled:N% (N a percentage above 0, "
            "at most 100, e.g. sampled:10%)"
        )

    def should_explain(self, prediction_id: str, *, requested: bool = False) -> bool:
        """Whether this prediction is explained inline (a request that asks always is)."""
        if requested or self.mode == "always":
            return True
        if self.mode == "on_demand":
            return False
        digest = hashlib.sha256(prediction_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") < self.rate * 2**64

    def __str__(self) -> str:
        return f"sampled:{self.rate * 100:g}%" if self.mode == "sampled" else self.mode
