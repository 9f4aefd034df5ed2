"""Signatures: what a model takes in and gives back.

An input signature lists the feature columns in order with their dtype, kind
and what training saw (numeric range, category set). It is inferred from the
training frame at registration and used to validate every frame a model is
given, so a wrong column name or type fails with a message that names it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from corral.errors import SchemaError

MAX_CATEGORIES = 1000  # beyond this a column's category set is not kept


class FeatureKind(StrEnum):
    """How a feature is treated by profiles, drift tests and validation."""

    NUMERICAL = "numerical"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"


class Task(StrEnum):
    """What a model's output means."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One input column.

    Attributes:
        name: column name.
        dtype: ``float64``, ``int64``, ``bool``, ``string`` or ``category``.
        kind: numerical, categorical or boolean.
        nullable: whether training data had missing values.
        min: smallest training value (numerical only).
        max: largest training value (numerical only).
        categories: the training category set, sorted (categorical only,
            ``None`` when there were more than ``MAX_CATEGORIES``).
    """

    name: str
    dtype: str
    kind: FeatureKind
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "kind": str(self.kind)}
        out["nullable"] = self.nullable
        if self.min is not None:
            out["min"] = self.min
            out["max"] = self.max
        if self.categories is not None:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        cats = data.get("categories")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            kind=FeatureKind(data["kind"]),
            nullable=bool(data.get("nullable", False)),
            min=data.get("min"),
            max=data.get("max"),
            categories=tuple(cats) if cats is not None else None,
        )


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """What a model returns: its task, output dtype and, for classifiers, the classes."""

    task: Task
    dtype: str
    classes: tuple[Any, ...] | None = None
    probabilities: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": str(self.task),
            "dtype": self.dtype,
            "classes": list(self.classes) if self.classes is not None else None,
            "probabilities": self.probabilities,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputSpec:
        classes = data.get("classes")
        return cls(
            task=Task(data["task"]),
            dtype=str(data["dtype"]),
            classes=tuple(classes) if classes is not None else None,
            probabilities=bool(data.get("probabilities", False)),
        )


@dataclass(frozen=True, slots=True)
class Signature:
    """Inputs (ordered feature specs) and outputs of a model version."""

    inputs: tuple[FeatureSpec, ...]
    outputs: OutputSpec = field(default_factory=lambda: OutputSpec(Task.OTHER, "float64"))

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.inputs]

    def feature(self, name: str) -> FeatureSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise SchemaError(f"no feature named {name!r}; features are {self.columns}")

    def with_outputs(self, outputs: OutputSpec) -> Signature:
        return replace(self, outputs=outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [f.to_dict() for f in self.inputs], "outputs": self.outputs.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            inputs=tuple(FeatureSpec.from_dict(f) for f in data["inputs"]),
            outputs=OutputSpec.from_dict(data["outputs"]),
        )

    @classmethod
    def infer(cls, features: pd.DataFrame, target: pd.Series | None = None) -> Signature:
        """Infer a signature from training features and, optionally, the target.

        Raises:
            SchemaError: when the frame is empty, has duplicate or non-string
                column names, or a column of a type corral cannot serve.
        """
        if not isinstance(features, pd.DataFrame):
            raise SchemaError(f"training features must be a pandas DataFrame, got {type(features).__name__}")
        if features.shape[1] == 0:
            raise SchemaError("training data has no feature columns")
        if len(features) == 0:
            raise SchemaError("training data has no rows")
        names = list(features.columns)
        if any(not isinstance(n, str) for n in names):
            bad = [n for n in names if not isinstance(n, str)]
            raise SchemaError(f"feature column names must be strings; got {bad[:5]!r}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"training data has duplicate columns: {dupes}")
        inputs = tuple(_infer_feature(name, features[name]) for name in names)
        outputs = infer_output(target) if target is not None else OutputSpec(Task.OTHER, "float64")
        return cls(inputs=inputs, outputs=outputs)

    def validate(self, data: Any, *, extra: str = "error") -> pd.DataFrame:
        """Check ``data`` against the inputs and return a frame in signature order.

        Accepts a DataFrame, a mapping of column to values, or a list of row
        mappings. Values are coerced to the training dtypes; values that cannot
        be coerced are an error naming the column and the first bad value.

        Args:
            data: the rows to check.
            extra: ``"error"`` to refuse unknown columns, ``"ignore"`` to drop them.

        Raises:
            SchemaError: naming every missing or unexpected column, or the
                first column whose values do not fit.
        """
        frame = _as_frame(data)
        columns = self.columns
        present = [str(c) for c in frame.columns]
        if present == columns:
            fast = self._validate_numeric(frame)
            if fast is not None:
                return fast
        known = set(columns)
        missing = [c for c in columns if c not in set(present)]
        unexpected = [c for c in present if c not in known]
        problems = []
        if missing:
            problems.append(f"missing columns: {', '.join(missing)}")
        if unexpected and extra == "error":
            problems.append(f"unexpected columns: {', '.join(unexpected)}")
        if problems:
            raise SchemaError(f"input does not match the signature ({'; '.join(problems)})")
        return pd.DataFrame({spec.name: _checked(spec, frame[spec.name]) for spec in self.inputs}, index=frame.index)

    def _validate_numeric(self, frame: pd.DataFrame) -> pd.DataFrame | None:
        """The fast path for all-numeric signatures given plain numeric columns: one array, no per-column work.

        Gives the same result and the same errors as the general path; ``None``
        when it does not apply.
        """
        if not all(spec.kind is FeatureKind.NUMERICAL for spec in self.inputs):
            return None
        if not all(isinstance(dt, np.dtype) and dt.kind in "fiu" for dt in frame.dtypes):
            return None
        values = frame.to_numpy(dtype="float64", copy=True)
        if np.isinf(values).any():
            column = int(np.flatnonzero(np.isinf(values).any(axis=0))[0])
            name = self.inputs[column].name
            raise SchemaError(f"column {name!r} holds an infinite value; only finite numbers can be scored", field=name)
        missing = np.isnan(values)
        if missing.any():
            for j, spec in enumerate(self.inputs):
                if not spec.nullable and missing[:, j].any():
                    row = int(np.flatnonzero(missing[:, j])[0])
                    raise SchemaError(
                        f"column {spec.name!r} is missing a value (row {row}); "
                        "the training data had no missing values there",
                        field=spec.name,
                    )
        out = pd.DataFrame(values, columns=self.columns, index=frame.index)
        for j, spec in enumerate(self.inputs):
            if spec.dtype == "int64" and not missing[:, j].any():
                column = values[:, j]
                if np.array_equal(column, np.round(column)):
                    out[spec.name] = column.astype("int64")
        return out

    def out_of_range(self, frame: pd.DataFrame) -> list[tuple[str, ...]]:
        """Per row of a validated frame, the features outside what training saw.

        Numbers below the training minimum or above its maximum, and categories
        training never saw. They are served, but flagged for monitoring.
        """
        numeric = [
            s for s in self.inputs if s.kind is FeatureKind.NUMERICAL and s.min is not None and s.max is not None
        ]
        if len(numeric) == len(self.inputs):  # one vectorized comparison
            ordered = frame if list(frame.columns) == self.columns else frame[self.columns]
            values = ordered.to_numpy(dtype="float64")
            lo = np.array([s.min for s in numeric], dtype="float64")
            hi = np.array([s.max for s in numeric], dtype="float64")
            flagged = (values < lo) | (values > hi)
            if not flagged.any():
                return [() for _ in range(len(frame))]
            return [tuple(self.columns[j] for j in np.flatnonzero(row)) for row in flagged]
        flagged = np.zeros((len(frame), len(self.inputs)), dtype=bool)
        for i, spec in enumerate(self.inputs):
            column = frame[spec.name]
            if spec.kind is FeatureKind.NUMERICAL and spec.min is not None and spec.max is not None:
                values = column.to_numpy(dtype="float64", na_value=np.nan)
                flagged[:, i] = (values < spec.min) | (values > spec.max)
            elif spec.kind is FeatureKind.CATEGORICAL and spec.categories is not None:
                flagged[:, i] = column.notna().to_numpy() & ~column.astype(object).isin(spec.categories).to_numpy()
        if not flagged.any():
            return [() for _ in range(len(frame))]
        names = self.columns
        return [tuple(names[j] for j in np.flatnonzero(row)) for row in flagged]


def infer_output(target: pd.Series) -> OutputSpec:
    """Infer the output spec from a training target column."""
    values = target.dropna()
    if _is_bool(target) or not pd.api.types.is_numeric_dtype(target):
        classes = tuple(sorted(_plain(v) for v in pd.unique(values)))
        return OutputSpec(Task.CLASSIFICATION, _dtype_name(target), classes, probabilities=True)
    if pd.api.types.is_integer_dtype(target) and values.nunique() <= 50:
        classes = tuple(sorted(int(v) for v in pd.unique(values)))
        return OutputSpec(Task.CLASSIFICATION, "int64", classes, probabilities=True)
    return OutputSpec(Task.REGRESSION, "float64")


def _is_bool(series: pd.Series) -> bool:
    return bool(pd.api.types.is_bool_dtype(series))


def _dtype_name(series: pd.Series) -> str:
    if _is_bool(series):
        return "bool"
    if isinstance(series.dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_integer_dtype(series):
        return "int64"
    if pd.api.types.is_float_dtype(series):
        return "float64"
    if pd.api.types.is_numeric_dtype(series):
        return "float64"
    return "string"


def _infer_feature(name: str, series: pd.Series) -> FeatureSpec:
    dtype = _dtype_name(series)
    nullable = bool(series.isna().any())
    if dtype == "bool":
        return FeatureSpec(name, dtype, FeatureKind.BOOLEAN, nullable)
    if dtype in ("int64", "float64"):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        finite = values[np.isfinite(values)]
        lo = float(finite.min()) if finite.size else None
        hi = float(finite.max()) if finite.size else None
        return FeatureSpec(name, dtype, FeatureKind.NUMERICAL, nullable, lo, hi)
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        raise SchemaError(f"column {name!r} holds {series.dtype}; encode dates as numbers before training")
    uniques = {str(v) for v in series.dropna().unique()}
    categories = tuple(sorted(uniques)) if len(uniques) <= MAX_CATEGORIES else None
    return FeatureSpec(name, dtype, FeatureKind.CATEGORICAL, nullable, categories=categories)


def _as_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame({k: np.atleast_1d(v) if np.ndim(v) == 0 else v for k, v in data.items()})
        except ValueError as exc:
            raise SchemaError(f"columns must all have the same length: {exc}") from None
    if isinstance(data, Sequence) and not isinstance(data, str | bytes) and all(isinstance(r, Mapping) for r in data):
        return pd.DataFrame(list(data))
    raise SchemaError(
        f"expected a DataFrame, a mapping of columns or a list of row mappings, got {type(data).__name__}"
    )


def _checked(spec: FeatureSpec, column: pd.Series) -> pd.Series:
    """:func:`_coerce`, with the failing feature named on the error."""
    try:
        return _coerce(spec, column)
    except SchemaError as exc:
        exc.field = spec.name
        raise


def _coerce(spec: FeatureSpec, column: pd.Series) -> pd.Series:
    if spec.kind is FeatureKind.NUMERICAL:
        return _coerce_numeric(spec, column)
    if spec.kind is FeatureKind.BOOLEAN:
        return _coerce_bool(spec, column)
    values = column.astype(object).where(column.notna(), None)
    if not spec.nullable and column.isna().any():
        row = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise SchemaError(
            f"column {spec.name!r} is missing a value (row {row}); the training data had no missing values there"
        )
    if column.notna().any():
        bad = values.dropna().map(lambda v: isinstance(v, float | np.floating) and not math.isfinite(v))
        if bad.any():
            raise SchemaError(f"column {spec.name!r} is categorical but holds a non-finite number")
    strings = values.map(lambda v: v if v is None or isinstance(v, str) else str(_plain(v)))
    if spec.dtype == "category":
        known = list(spec.categories or ())
        strings = strings.where(strings.isin(known), None)  # unseen categories become missing, as in training
        return pd.Series(
            pd.Categorical(strings, categories=list(spec.categories or ())), index=column.index, name=spec.name
        )
    return strings.astype(object)


def _coerce_numeric(spec: FeatureSpec, column: pd.Series) -> pd.Series:
    numbers = _numbers(spec, column)
    values = numbers.to_numpy()
    if np.isinf(values).any():
        raise SchemaError(f"column {spec.name!r} holds an infinite value; only finite numbers can be scored")
    if not spec.nullable and np.isnan(values).any():
        row = int(np.flatnonzero(np.isnan(values))[0])
        raise SchemaError(
            f"column {spec.name!r} is missing a value (row {row}); the training data had no missing values there"
        )
    if spec.dtype == "int64" and not numbers.isna().any():
        as_int = numbers.astype("int64")
        if (as_int == numbers).all():
            return as_int
    return numbers


def _numbers(spec: FeatureSpec, column: pd.Series) -> pd.Series:
    if _is_bool(column):
        raise SchemaError(f"column {spec.name!r} expects numbers ({spec.dtype}), got booleans")
    if pd.api.types.is_numeric_dtype(column):
        numbers = column.astype("float64")
    else:
        numbers = pd.to_numeric(column, errors="coerce")
        failed = numbers.isna() & column.notna()
        if failed.any():
            first = column[failed].iloc[0]
            raise SchemaError(
                f"column {spec.name!r} expects numbers ({spec.dtype}); "
                f"{int(failed.sum())} value(s) are not, e.g. {first!r}"
            )
        numbers = numbers.astype("float64")
    return numbers


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _coerce_bool(spec: FeatureSpec, column: pd.Series) -> pd.Series:
    if _is_bool(column):
        return column.astype(bool) if not column.isna().any() else column.astype(object)

    def convert(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise SchemaError(f"column {spec.name!r} expects booleans, got {value!r}")

    converted = column.map(convert)
    return converted.astype(bool) if converted.notna().all() else converted.astype(object)


def _plain(value: Any) -> Any:
    """numpy scalars to plain Python, for JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value
