"""A registered version loaded into memory, ready to predict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from corral.errors import SchemaError
from corral.registry.entities import ModelVersion
from corral.runtimes.base import ModelRuntime, Prediction


class LoadedModel:
    """What :func:`corral.load_model` returns.

    Every call validates its input against the version's signature first, so
    a wrong column or type fails with a message naming it.

    Attributes:
        version: the registered version (name, number, lineage, signature).
        runtime: the framework runtime doing the work.
    """

    def __init__(self, version: ModelVersion, runtime: ModelRuntime) -> None:
        self.version = version
        self.runtime = runtime

    @property
    def signature(self) -> Any:
        return self.version.signature

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return self.version.runtime.classes

    def infer(self, data: Any) -> Prediction:
        """Validate ``data`` and predict: labels or values, plus probabilities for classifiers."""
        frame = self.version.signature.validate(data)
        prediction = self.runtime.predict(frame)
        if len(prediction) != len(frame):
            raise SchemaError(f"{self.version.ref} returned {len(prediction)} predictions for {len(frame)} rows")
        return prediction

    def predict(self, data: Any) -> np.ndarray:
        """One prediction per row (class labels for classifiers), like scikit-learn's ``predict``."""
        return self.infer(data).values

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities, columns in the order of :attr:`classes`."""
        prediction = self.infer(data)
        if prediction.probabilities is None:
            raise SchemaError(f"{self.version.ref} is not a classifier with probabilities")
        return prediction.probabilities

    def predict_frame(self, data: Any) -> pd.DataFrame:
        """Predictions (and probabilities) as a frame with the input's index."""
        frame = self.version.signature.validate(data)
        out = self.runtime.predict(frame).to_frame()
        out.index = frame.index
        return out

    def __repr__(self) -> str:
        return f"<LoadedModel {self.version.ref} flavor={self.version.flavor}>"
