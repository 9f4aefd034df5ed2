"""MLflow model directories (a folder with an ``MLmodel`` file).

corral reads the ``MLmodel`` file itself and loads the first flavor it knows,
in this order: sklearn, xgboost, lightgbm, onnx, then python_function (which
needs MLflow installed and ``trusted=True``, since pyfunc models unpickle
code). skops files are loaded with the types the ``MLmodel`` file declares,
but only those from the frameworks' own packages; anything else must be named
in ``options={"trusted_types": [...]}``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import yaml

from corral.core.schema import Signature, Task
from corral.errors import FlavorError, ModelLoadError, UntrustedArtifactError
from corral.runtimes.base import ModelRuntime, Prediction, RuntimeSpec, check_options

_DIR = "mlflow"
_PREFERENCE = ("sklearn", "xgboost", "lightgbm", "onnx", "python_function")
# Types an MLmodel file may declare for its skops file and have trusted without
# the user naming them: the frameworks' own packages, and OrderedDict (LightGBM
# models hold one). Never ``builtins.`` or the rest of ``collections.``: skops
# lists functions such as ``builtins.exec`` as types, and a file must not be able
# to vouch for those itself.
_SAFE_PREFIXES = ("sklearn.", "xgboost.", "lightgbm.", "numpy.", "scipy.")
_SAFE_TYPES = frozenset({"collections.OrderedDict"})


def read_mlmodel(folder: Path) -> dict[str, Any]:
    """Parse ``MLmodel``; a clear error when it is missing or not YAML."""
    file = folder / "MLmodel"
    if not file.is_file():
        raise FlavorError(f"{str(folder)!r} is not an MLflow model directory: it has no MLmodel file")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise FlavorError(f"MLmodel in {str(folder)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise FlavorError(f"MLmodel in {str(folder)!r} has no 'flavors' section")
    return data


def _data_file(folder: Path, flavor: str, name: Any) -> str:
    """The data file an MLmodel flavor names, checked to be a file inside the model directory."""
    if not isinstance(name, str) or not name:
        raise FlavorError(f"the MLmodel {flavor} flavor names no data file")
    target = (folder / name).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise FlavorError(f"the MLmodel {flavor} flavor names {name!r}, which is outside the model directory")
    if not target.is_file():
        raise FlavorError(f"the MLmodel {flavor} flavor names {name!r}, which is not a file in the model directory")
    return name


def _declared_safe(types: Any) -> list[str]:
    return [t for t in types or [] if isinstance(t, str) and (t.startswith(_SAFE_PREFIXES) or t in _SAFE_TYPES)]


def _inner_spec(folder: Path, trusted_types: list[str], signature: Signature | None) -> tuple[str, RuntimeSpec]:
    flavors = read_mlmodel(folder)["flavors"]
    for name in _PREFERENCE:
        conf = flavors.get(name)
        if conf is None:
            continue
        if not isinstance(conf, dict):
            raise FlavorError(f"the MLmodel {name} flavor is not a mapping")
        if name == "lightgbm" and conf.get("model_class", "lightgbm.basic.Booster") == "lightgbm.basic.Booster":
            # Boosters are always saved in LightGBM's own text format; MLflow 3 still
            # writes serialization_format (for the scikit-learn API objects) next to them.
            file = _data_file(folder, name, conf.get("data"))
            return name, RuntimeSpec("lightgbm", Task.REGRESSION, options={"estimator": "Booster", "file": file})
        if name in ("sklearn", "lightgbm"):
            # scikit-learn API objects (LGBMClassifier too) stored by skops or pickle
            options = {
                "format": "skops" if conf.get("serialization_format", "cloudpickle") == "skops" else "pickle",
                "file": _data_file(folder, name, conf.get("pickled_model") or conf.get("data")),
                "trusted_types": sorted({*_declared_safe(conf.get("skops_trusted_types")), *trusted_types}),
            }
            return name, RuntimeSpec("sklearn", Task.OTHER, options=options)
        if name == "xgboost":
            # MLflow before 1.22 saved only Boosters and wrote no model_class
            estimator = str(conf.get("model_class", "xgboost.core.Booster")).rsplit(".", 1)[-1]
            file = _data_file(folder, name, conf.get("data"))
            return name, RuntimeSpec("xgboost", Task.OTHER, options={"estimator": estimator, "file": file})
        if name == "onnx":
            from corral.runtimes.onnx import OnnxRuntime

            return name, OnnxRuntime.describe(folder, _data_file(folder, name, conf.get("data")), signature)
        return name, RuntimeSpec("pyfunc", Task.OTHER)
    raise FlavorError(f"the MLflow model declares flavors {sorted(flavors)}; corral reads {list(_PREFERENCE)}")


class _PyfuncModel:
    """An MLflow pyfunc model: only values, no probabilities."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, frame: pd.DataFrame) -> Prediction:
        out = self.model.predict(frame)
        values = out.to_numpy() if isinstance(out, pd.Series | pd.DataFrame) else np.asarray(out)
        return Prediction(values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values)


def _load_inner(folder: Path, spec: RuntimeSpec, trusted: bool) -> Any:
    if spec.flavor == "pyfunc":
        if not trusted:
            raise UntrustedArtifactError(
                "this MLflow model only has the python_function flavor, which unpickles code when loaded; "
                "pass trusted=True if you trust where it came from"
            )
        try:
            import mlflow.pyfunc
        except ImportError as exc:
            raise ModelLoadError("loading an MLflow python_function model needs MLflow: pip install mlflow") from exc
        return _PyfuncModel(mlflow.pyfunc.load_model(str(folder)))
    from corral.runtimes.loader import runtime_class

    return runtime_class(spec.flavor).load(folder, spec, trusted=trusted)


def _settle(runtime: Any, spec: RuntimeSpec) -> RuntimeSpec:
    """Fill in task and classes once the inner model is loaded."""
    if spec.flavor == "sklearn":
        from corral.runtimes.sklearn import SklearnRuntime

        return SklearnRuntime._spec(runtime.model, dict(spec.options))
    if spec.flavor == "xgboost":
        model = runtime.model
        if hasattr(model, "classes_"):
            return RuntimeSpec("xgboost", Task.CLASSIFICATION, tuple(np.asarray(model.classes_).tolist()), spec.options)
        return RuntimeSpec("xgboost", Task.REGRESSION, options=spec.options)
    return spec


class MlflowRuntime:
    """Runtime for MLflow model directories; delegates to the flavor's own runtime."""

    flavor: ClassVar[str] = "mlflow"
    requirements: ClassVar[tuple[str, ...]] = ("mlflow-skinny", "mlflow", "pyyaml")

    def __init__(self, inner: Any, spec: RuntimeSpec) -> None:
        self.inner = inner
        self.spec = spec

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return isinstance(model, str | Path) and (Path(model) / "MLmodel").is_file()

    @classmethod
    def save(
        cls, model: Any, path: Path, *, signature: Signature | None = None, options: Mapping[str, Any] | None = None
    ) -> RuntimeSpec:
        opts = check_options(cls.flavor, options, {"trusted", "trusted_types"})
        trusted_types = opts.get("trusted_types", [])
        if not isinstance(trusted_types, list | tuple) or not all(isinstance(t, str) for t in trusted_types):
            raise FlavorError(f"trusted_types must be a list of type names, got {trusted_types!r}")
        if not isinstance(model, str | Path) or not Path(model).is_dir():
            raise FlavorError(
                f"the mlflow flavor takes the path of an MLflow model directory, not {type(model).__name__}"
            )
        folder = path / _DIR
        shutil.copytree(model, folder)
        name, inner = _inner_spec(folder, list(trusted_types), signature)
        inner = _settle(_load_inner(folder, inner, bool(opts.get("trusted"))), inner)
        return RuntimeSpec(
            cls.flavor, inner.task, inner.classes, {"dir": _DIR, "mlflow_flavor": name, "inner": inner.to_dict()}
        )

    @classmethod
    def load(cls, path: Path, spec: RuntimeSpec, *, trusted: bool = False) -> Self:
        inner = RuntimeSpec.from_dict(spec.options["inner"])
        return cls(_load_inner(path / spec.options["dir"], inner, trusted), spec)

    def predict(self, frame: pd.DataFrame) -> Prediction:
        prediction: Prediction = self.inner.predict(frame)
        return prediction


_: type[ModelRuntime] = MlflowRuntime
