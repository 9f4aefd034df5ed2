"""The one protocol every framework runtime implements.

A runtime knows how to save a fitted model of its framework into a folder,
load it back, and predict on a validated frame. It is synchronous: the server
(a later room) runs it in threads. Everything a runtime needs to load again
goes into :class:`RuntimeSpec`, which the registry stores with the version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

from corral.core.schema import Signature, Task


@dataclass(frozen=True, slots=True)
class RuntimeSpec:
    """How to load a saved model: its flavor, task, classes and flavor options."""

    flavor: str
    task: Task
    classes: tuple[Any, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flavor": self.flavor,
            "task": str(self.task),
            "classes": list(self.classes) if self.classes is not None else None,
            "options": self.options,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuntimeSpec:
        classes = data.get("classes")
        return cls(
            flavor=data["flavor"],
            task=Task(data["task"]),
            classes=tuple(classes) if classes is not None else None,
            options=dict(data.get("options") or {}),
        )


@dataclass(frozen=True, slots=True)
class Prediction:
    """One output shape for every framework.

    Attributes:
        values: one prediction per row (class labels for classifiers).
        probabilities: for classifiers, an ``(n_rows, n_classes)`` array in
            the order of ``classes``; ``None`` otherwise.
        classes: class labels, for classifiers.
    """

    values: np.ndarray
    probabilities: np.ndarray | None = None
    classes: tuple[Any, ...] | None = None

    def __len__(self) -> int:
        return len(self.values)

    def to_frame(self) -> pd.DataFrame:
        """Predictions as a frame: ``prediction`` and one ``proba_<class>`` column per class."""
        out = pd.DataFrame({"prediction": self.values})
        if self.probabilities is not None and self.classes is not None:
            for i, cls in enumerate(self.classes):
                out[f"proba_{cls}"] = self.probabilities[:, i]
        return out


@runtime_checkable
class ModelRuntime(Protocol):
    """A loaded model of one framework. Implementations live one per module."""

    flavor: ClassVar[str]
    requirements: ClassVar[tuple[str, ...]]  # distributions whose versions lineage records

    @classmethod
    def accepts(cls, model: Any) -> bool:
        """Whether ``model`` (an in-memory object or a path) is this framework's."""
        ...

    @classmethod
    def save(
        cls, model: Any, path: Path, *, signature: Signature | None = None, options: Mapping[str, Any] | None = None
    ) -> RuntimeSpec:
        """Write ``model`` into the empty folder ``path`` and say how to load it.

        ``options`` are flavor-specific (e.g. ``serialization`` for scikit-learn);
        an option the runtime does not know is an error.
        """
        ...

    @classmethod
    def load(cls, path: Path, spec: RuntimeSpec, *, trusted: bool = False) -> Self:
        """Load from a folder written by :meth:`save`."""
        ...

    def predict(self, frame: pd.DataFrame) -> Prediction:
        """Predict on a frame already validated against the signature."""
        ...


def check_options(flavor: str, options: Mapping[str, Any] | None, known: set[str]) -> dict[str, Any]:
    """Refuse options a runtime does not understand, naming them."""
    options = dict(options or {})
    unknown = sorted(set(options) - known)
    if unknown:
        from corral.errors import FlavorError

        allowed = ", ".join(sorted(known)) or "none"
        raise FlavorError(f"{flavor} does not take option(s) {', '.join(unknown)}; it takes: {allowed}")
    return options


def from_framework(model: Any, package: str) -> bool:
    """True when ``model``'s class comes from ``package``, checked without importing it."""
    return any(c.__module__.split(".")[0] == package for c in type(model).__mro__)


def classification(values: np.ndarray, probabilities: np.ndarray, classes: tuple[Any, ...]) -> Prediction:
    """Build a classifier's :class:`Prediction`, checking shapes agree."""
    probabilities = np.asarray(probabilities, dtype="float64")
    if probabilities.ndim == 1:
        probabilities = np.column_stack([1.0 - probabilities, probabilities])
    return Prediction(np.asarray(values), probabilities, tuple(classes))


def labels_from_probabilities(probabilities: np.ndarray, classes: tuple[Any, ...]) -> np.ndarray:
    """The most probable class of each row, as labels."""
    labels = np.asarray(classes, dtype=object if any(isinstance(c, str) for c in classes) else None)
    chosen: np.ndarray = labels[np.argmax(probabilities, axis=1)]
    return chosen


def plain_classes(classes: Any) -> tuple[Any, ...]:
    """Class labels as plain Python values (JSON-safe)."""
    return tuple(c.item() if isinstance(c, np.generic) else c for c in list(classes))
