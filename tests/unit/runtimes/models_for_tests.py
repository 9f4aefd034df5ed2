"""Model classes the runtime tests register.

Custom (``python`` flavor) models are recorded as ``module:QualifiedName`` and
imported again on load, so they must live in an importable module like this
one, never inside a test function.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd


class NearestCentroid:
    """A nearest-centroid classifier with the custom-model contract and probabilities."""

    def __init__(self, centroids: dict[Any, list[float]] | None = None) -> None:
        self.centroids = centroids or {}

    @property
    def classes_(self) -> list[Any]:
        return sorted(self.centroids)

    def fit(self, features: pd.DataFrame, target: pd.Series) -> NearestCentroid:
        scale = features.std(ddof=0).replace(0.0, 1.0)
        self.scale = scale.to_list()
        self.centroids = {
            label.item() if isinstance(label, np.generic) else label: (group / scale).mean().to_list()
            for label, group in features.groupby(target)
        }
        return self

    def _distances(self, frame: pd.DataFrame) -> np.ndarray:
        points = frame.to_numpy(dtype="float64") / np.asarray(self.scale)
        centres = np.asarray([self.centroids[c] for c in self.classes_])
        distances: np.ndarray = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=2)
        return distances

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        weights = np.exp(-self._distances(frame))
        proba: np.ndarray = weights / weights.sum(axis=1, keepdims=True)
        return proba

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        labels: np.ndarray = np.asarray(self.classes_)[np.argmin(self._distances(frame), axis=1)]
        return labels

    def save(self, path: Path) -> None:
        data = {"scale": self.scale, "centroids": [[c, v] for c, v in self.centroids.items()]}
        (path / "centroids.json").write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> NearestCentroid:
        data = json.loads((path / "centroids.json").read_text())
        model = cls(dict(data["centroids"]))
        model.scale = data["scale"]
        return model


class LeastSquares:
    """A linear regressor (numpy least squares) with the custom-model contract, no classes."""

    def __init__(self, coef: np.ndarray | None = None) -> None:
        self.coef = coef

    def fit(self, features: pd.DataFrame, target: pd.Series) -> LeastSquares:
        design = np.column_stack([np.ones(len(features)), features.to_numpy(dtype="float64")])
        self.coef, *_ = np.linalg.lstsq(design, target.to_numpy(dtype="float64"), rcond=None)
        return self

    def predict(self, frame: pd.DataFrame) -> pd.Series:
        assert self.coef is not None
        values = self.coef[0] + frame.to_numpy(dtype="float64") @ self.coef[1:]
        return pd.Series(values, index=frame.index)

    def save(self, path: Path) -> None:
        assert self.coef is not None
        np.save(path / "coef.npy", self.coef, allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> LeastSquares:
        return cls(np.load(path / "coef.npy", allow_pickle=False))


class MajorityLabel:
    """A classifier with ``classes_`` but no ``predict_proba``: always the most frequent label."""

    def __init__(self, classes: list[Any] | None = None, label: Any = None) -> None:
        self.classes_ = classes or []
        self.label = label

    def fit(self, features: pd.DataFrame, target: pd.Series) -> MajorityLabel:
        self.classes_ = sorted(v.item() for v in target.unique())
        self.label = target.mode().iloc[0].item()
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.full(len(frame), self.label)

    def save(self, path: Path) -> None:
        (path / "label.json").write_text(json.dumps({"classes": self.classes_, "label": self.label}))

    @classmethod
    def load(cls, path: Path) -> MajorityLabel:
        data = json.loads((path / "label.json").read_text())
        return cls(data["classes"], data["label"])


class BrokenLoad(LeastSquares):
    """Saves fine; its ``load`` raises, like a model whose files went missing."""

    @classmethod
    def load(cls, path: Path) -> BrokenLoad:
        raise RuntimeError(f"weights missing from {path.name}")


class BrokenSave(LeastSquares):
    """Its ``save`` raises, like a model that cannot serialize itself."""

    def save(self, path: Path) -> None:
        raise OSError("disk full")


class Tripwire:
    """Unpickling this creates ``marker`` (a folder): proof that the pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (str(self.marker),))


class DoublingPyfunc(mlflow.pyfunc.PythonModel):
    """An MLflow python_function model: twice the first column."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.Series:
        return model_input.iloc[:, 0] * 2.0


def xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Features and the ``target`` column of a bundled dataset frame."""
    return frame.drop(columns="target"), frame["target"]
