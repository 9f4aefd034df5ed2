"""XGBoost models (the scikit-learn wrappers and raw Boosters), saved as UBJSON."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from corral.core.schema import Signature, Task
from corral.errors import FlavorError, ModelLoadError
from corral.runtimes.base import Prediction, RuntimeSpec, check_options, from_framework, plain_classes

_FILE = "model.ubj"
_ESTIMATORS = ("XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor", "XGBRanker", "Booster")


class XGBoostRuntime:
    """Runtime for XGBoost."""

    flavor: ClassVar[str] = "xgboost"
    requirements: ClassVar[tuple[str, ...]] = ("xgboost", "xgboost-cpu", "numpy", "scipy")

    def __init__(self, model: Any, spec: RuntimeSpec) -> None:
        self.model = model
        self.spec = spec

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return from_framework(model, "xgboost")

    @classmethod
    def save(
        cls, model: Any, path: Path, *, signature: Signature | None = None, options: Mapping[str, Any] | None = None
    ) -> RuntimeSpec:
        check_options(cls.flavor, options, set())
        estimator = type(model).__name__
        if estimator not in _ESTIMATORS:
            raise FlavorError(f"xgboost runtime supports {', '.join(_ESTIMATORS)}, not {estimator}")
        if estimator != "Booster" and not model.__sklearn_is_fitted__():
            raise FlavorError(f"this {estimator} is not fitted")
        model.save_model(path / _FILE)
        if estimator == "Booster":
            task = signature.outputs.task if signature is not None else Task.OTHER
            return RuntimeSpec(
                cls.flavor,
                Task.REGRESSION if task is Task.CLASSIFICATION else task,
                options={"estimator": estimator, "file": _FILE},
            )
        if "Classifier" in estimator:
            return RuntimeSpec(
                cls.flavor, Task.CLASSIFICATION, plain_classes(model.classes_), {"estimator": estimator, "file": _FILE}
            )
        return RuntimeSpec(cls.flavor, Task.REGRESSION, options={"estimator": estimator, "file": _FILE})

    @classmethod
    def load(cls, path: Path, spec: RuntimeSpec, *, trusted: bool = False) -> Self:
        import xgboost

        estimator = spec.options["estimator"]
        try:
            if estimator == "Booster":
                model: Any = xgboost.Booster(model_file=str(path / spec.options["file"]))
            else:
                model = getattr(xgboost, estimator)()
                model.load_model(path / spec.options["file"])
        except xgboost.core.XGBoostError as exc:
            raise ModelLoadError(f"xgboost could not load {spec.options['file']}: {exc}") from exc
        return cls(model, spec)

    def predict(self, frame: pd.DataFrame) -> Prediction:
        if self.spec.options["estimator"] == "Booster":
            import xgboost

            return Prediction(np.asarray(self.model.predict(xgboost.DMatrix(frame))))
        if self.spec.task is Task.CLASSIFICATION:
            # XGBClassifier.predict is the argmax of these probabilities (0.5 ties go to class 0 both ways)
            proba = np.asarray(self.model.predict_proba(frame), dtype="float64")
            return Prediction(np.asarray(self.model.classes_).take(np.argmax(proba, axis=1)), proba, self.spec.classes)
        return Prediction(np.asarray(self.model.predict(frame)))
