"""Flavor names to runtime classes, imported lazily.

The frameworks are heavy to import; a runtime module is imported only when
its flavor is used. ``tests/unit/runtimes/test_loader.py`` fails when a
runtime module exists that is not listed here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from corral.errors import UnknownFlavorError
from corral.runtimes.base import ModelRuntime

RUNTIMES: dict[str, str] = {
    "sklearn": "corral.runtimes.sklearn:SklearnRuntime",
    "xgboost": "corral.runtimes.xgboost:XGBoostRuntime",
    "lightgbm": "corral.runtimes.lightgbm:LightGBMRuntime",
    "onnx": "corral.runtimes.onnx:OnnxRuntime",
    "python": "corral.runtimes.custom:CustomRuntime",
    "mlflow": "corral.runtimes.mlflow:MlflowRuntime",
}

# Most specific first: XGBoost and LightGBM models are also scikit-learn
# estimators, and anything with save/load/predict passes as a custom model.
DETECTION_ORDER = ("mlflow", "xgboost", "lightgbm", "onnx", "sklearn", "python")


def known_flavors() -> list[str]:
    return sorted(RUNTIMES)


def runtime_class(flavor: str) -> type[ModelRuntime]:
    """The runtime class for ``flavor``.

    Raises:
        UnknownFlavorError: naming the flavor and the known ones.
    """
    target = RUNTIMES.get(flavor)
    if target is None:
        raise UnknownFlavorError(f"unknown flavor {flavor!r}; known flavors: {', '.join(known_flavors())}")
    module, _, name = target.partition(":")
    cls: type[ModelRuntime] = getattr(importlib.import_module(module), name)
    return cls


def detect_flavor(model: Any) -> str:
    """Which flavor handles ``model`` (an object or a path).

    Raises:
        UnknownFlavorError: when no runtime accepts it.
    """
    for flavor in DETECTION_ORDER:
        if runtime_class(flavor).accepts(model):
            return flavor
    if isinstance(model, str | Path):
        raise UnknownFlavorError(
            f"corral does not know how to load the model path {str(model)!r}: it takes an MLflow model "
            "directory (with an MLmodel file) or a .onnx, .skops, .pkl, .pickle or .joblib file; "
            f"pass flavor= one of {', '.join(known_flavors())} if the name misleads"
        )
    raise UnknownFlavorError(
        f"corral does not know how to save a {type(model).__module__}.{type(model).__qualname__}; "
        f"pass flavor= one of {', '.join(known_flavors())}, or wrap it in a class with save/load/predict"
    )
