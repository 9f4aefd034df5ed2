"""LightGBM models (the scikit-learn wrappers and raw Boosters), saved as LightGBM text."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from corral.core.schema import Signature, Task
from corral.errors import FlavorError, ModelLoadError
from corral.runtimes.base import (
    Prediction,
    RuntimeSpec,
    check_options,
    classification,
    from_framework,
    labels_from_probabilities,
    plain_classes,
)

_FILE = "model.txt"


class LightGBMRuntime:
    """Runtime for LightGBM. Loads the Booster alone: no pickle, no wrapper state needed."""

    flavor: ClassVar[str] = "lightgbm"
    requirements: ClassVar[tuple[str, ...]] = ("lightgbm", "numpy", "scipy")

    def __init__(self, booster: Any, spec: RuntimeSpec) -> None:
        self.booster = booster
        self.spec = spec

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return from_framework(model, "lightgbm")

    @classmethod
    def save(
        cls, model: Any, path: Path, *, signature: Signature | None = None, options: Mapping[str, Any] | None = None
    ) -> RuntimeSpec:
        check_options(cls.flavor, options, set())
        estimator = type(model).__name__
        if estimator == "Booster":
            booster, task, classes = model, Task.REGRESSION, None
        elif estimator in ("LGBMClassifier", "LGBMRegressor", "LGBMRanker"):
            if not hasattr(model, "booster_"):
                raise FlavorError(f"this {estimator} is not fitted")
            booster = model.booster_
            task = Task.CLASSIFICATION if estimator == "LGBMClassifier" else Task.REGRESSION
            classes = plain_classes(model.classes_) if task is Task.CLASSIFICATION else None
        else:
            raise FlavorError(
                f"lightgbm runtime supports LGBMClassifier, LGBMRegressor, LGBMRanker and Booster, not {estimator}"
            )
        booster.save_model(str(path / _FILE))
        return RuntimeSpec(cls.flavor, task, classes, {"estimator": estimator, "file": _FILE})

    @classmethod
    def load(cls, path: Path, spec: RuntimeSpec, *, trusted: bool = False) -> Self:
        import lightgbm

        try:
            booster = lightgbm.Booster(model_file=str(path / spec.options["file"]))
        except lightgbm.basic.LightGBMError as exc:
            raise ModelLoadError(f"lightgbm could not load {spec.options['file']}: {exc}") from exc
        return cls(booster, spec)

    def predict(self, frame: pd.DataFrame) -> Prediction:
        raw = np.asarray(self.booster.predict(frame))
        if self.spec.task is Task.CLASSIFICATION and self.spec.classes is not None:
            proba = raw if raw.ndim == 2 else np.column_stack([1.0 - raw, raw])
            return classification(labels_from_probabilities(proba, self.spec.classes), proba, self.spec.classes)
        return Prediction(raw)
