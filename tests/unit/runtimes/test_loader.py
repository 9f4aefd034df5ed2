"""The flavor registry: every runtime registered, each shaped like the protocol, detection in order."""

from __future__ import annotations

import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

import lightgbm as lgb
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from models_for_tests import LeastSquares, NearestCentroid, xy
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import corral.runtimes
from corral.errors import UnknownFlavorError
from corral.runtimes import loader
from corral.runtimes.base import ModelRuntime

NOT_RUNTIMES = {"base", "loader", "process", "__init__"}  # process: the child-process supervisor runtimes share


# -- the registry of flavors -------------------------------------------------------------


def test_every_runtime_module_is_registered() -> None:
    modules = {info.name for info in pkgutil.iter_modules(corral.runtimes.__path__)} - NOT_RUNTIMES
    registered = {target.partition(":")[0].rsplit(".", 1)[-1] for target in loader.RUNTIMES.values()}

    assert modules, "found no runtime modules at all"
    unregistered = sorted(modules - registered)
    assert not unregistered, f"runtime modules missing from loader.RUNTIMES: {unregistered}"
    assert registered <= modules, f"loader.RUNTIMES names modules that do not exist: {sorted(registered - modules)}"


def test_module_scan_sees_files_on_disk() -> None:
    """Guards the test above: pkgutil must see the same .py files the folder holds."""
    folder = Path(corral.runtimes.__file__).parent
    on_disk = {p.stem for p in folder.glob("*.py")} - NOT_RUNTIMES
    assert on_disk == {info.name for info in pkgutil.iter_modules([str(folder)])} - NOT_RUNTIMES


def test_detection_order_covers_every_flavor_once() -> None:
    assert sorted(loader.DETECTION_ORDER) == loader.known_flavors()
    assert len(set(loader.DETECTION_ORDER)) == len(loader.DETECTION_ORDER)
    order = loader.DETECTION_ORDER
    # frameworks whose models are also scikit-learn estimators come before sklearn; duck typing comes last
    assert order.index("xgboost") < order.index("sklearn")
    assert order.index("lightgbm") < order.index("sklearn")
    assert order[-1] == "python"


@pytest.mark.parametrize("flavor", sorted(loader.RUNTIMES))
def test_registered_class_has_the_protocol_shape(flavor: str) -> None:
    cls = loader.runtime_class(flavor)

    assert cls.flavor == flavor
    assert "flavor" in vars(cls), "flavor must be set on the class itself"
    hints = get_type_hints(cls, include_extras=True)
    assert getattr(hints.get("flavor"), "__origin__", None) is ClassVar
    assert isinstance(cls.requirements, tuple)
    assert cls.requirements
    assert all(isinstance(r, str) and r for r in cls.requirements)
    for name in ("accepts", "save", "load"):
        assert isinstance(inspect.getattr_static(cls, name), classmethod), f"{cls.__name__}.{name} is not a classmethod"
    assert inspect.isfunction(inspect.getattr_static(cls, "predict"))

    save = inspect.signature(cls.save)
    assert list(save.parameters)[:2] == ["model", "path"]
    assert save.parameters["signature"].kind is inspect.Parameter.KEYWORD_ONLY
    assert save.parameters["options"].kind is inspect.Parameter.KEYWORD_ONLY
    load = inspect.signature(cls.load)
    assert list(load.parameters)[:2] == ["path", "spec"]
    assert load.parameters["trusted"].kind is inspect.Parameter.KEYWORD_ONLY
    assert load.parameters["trusted"].default is False
    assert list(inspect.signature(cls.predict).parameters) == ["self", "frame"]
    missing = sorted(name for name in protocol_members() if not hasattr(cls, name))
    assert not missing, f"{cls.__name__} lacks ModelRuntime members {missing}"


def protocol_members() -> set[str]:
    """ModelRuntime's members, read from the protocol itself.

    It has data members (``flavor``, ``requirements``), so ``issubclass`` cannot check it.
    """
    methods = {
        n
        for n, v in vars(ModelRuntime).items()
        if not n.startswith("_") and (callable(v) or isinstance(v, classmethod))
    }
    members = set(ModelRuntime.__annotations__) | methods
    assert {"flavor", "requirements", "accepts", "save", "load", "predict"} <= members
    return members


def test_unknown_flavor_names_the_known_ones() -> None:
    with pytest.raises(UnknownFlavorError) as caught:
        loader.runtime_class("nope")

    message = str(caught.value)
    assert "'nope'" in message
    for flavor in loader.RUNTIMES:
        assert flavor in message
    assert isinstance(caught.value, ValueError)


# -- detection -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(cancer: pd.DataFrame, diabetes: pd.DataFrame) -> dict[str, Any]:
    """One small fitted model of each kind."""
    cx, cy = xy(cancer)
    dx, dy = xy(diabetes)
    return {
        "XGBClassifier": xgb.XGBClassifier(n_estimators=2).fit(cx, cy),
        "XGBRegressor": xgb.XGBRegressor(n_estimators=2).fit(dx, dy),
        "xgboost.Booster": xgb.train({}, xgb.DMatrix(dx, dy), 2),
        "LGBMClassifier": lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(cx.to_numpy(), cy),
        "LGBMRegressor": lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(dx, dy),
        "lightgbm.Booster": lgb.train({"verbose": -1}, lgb.Dataset(dx, dy), 2),
        "LinearRegression": LinearRegression().fit(dx, dy),
        "Pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(cx, cy),
        "ModelProto": to_onnx(LinearRegression().fit(dx, dy), dx.to_numpy()[:1].astype(np.float32)),
        "NearestCentroid": NearestCentroid().fit(cx, cy),
        "LeastSquares": LeastSquares().fit(dx, dy),
    }


@pytest.mark.parametrize(
    ("kind", "flavor"),
    [
        ("XGBClassifier", "xgboost"),
        ("XGBRegressor", "xgboost"),
        ("xgboost.Booster", "xgboost"),
        ("LGBMClassifier", "lightgbm"),
        ("LGBMRegressor", "lightgbm"),
        ("lightgbm.Booster", "lightgbm"),
        ("LinearRegression", "sklearn"),
        ("Pipeline", "sklearn"),
        ("ModelProto", "onnx"),
        ("NearestCentroid", "python"),
        ("LeastSquares", "python"),
    ],
)
def test_detects_objects(models: dict[str, Any], kind: str, flavor: str) -> None:
    assert loader.detect_flavor(models[kind]) == flavor


def test_framework_wrappers_are_also_sklearn_estimators(models: dict[str, Any]) -> None:
    """Why detection order matters: sklearn alone would claim these too."""
    sklearn_runtime = loader.runtime_class("sklearn")
    assert sklearn_runtime.accepts(models["XGBClassifier"])
    assert sklearn_runtime.accepts(models["LGBMRegressor"])


@pytest.fixture(scope="module")
def mlflow_dir(tmp_path_factory: pytest.TempPathFactory, diabetes: pd.DataFrame) -> Path:
    folder = tmp_path_factory.mktemp("mlflow") / "model"
    mlflow.sklearn.save_model(LinearRegression().fit(*xy(diabetes)), str(folder), pip_requirements=["scikit-learn"])
    return folder


@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_detects_paths(tmp_path: Path, mlflow_dir: Path, as_str: bool) -> None:
    convert: Callable[[Path], Any] = str if as_str else Path
    for name in ("m.onnx",):
        assert loader.detect_flavor(convert(tmp_path / name)) == "onnx"
    for name in ("m.skops", "m.pkl", "m.pickle", "m.joblib"):
        assert loader.detect_flavor(convert(tmp_path / name)) == "sklearn"
    assert loader.detect_flavor(convert(mlflow_dir)) == "mlflow"


def test_a_folder_without_mlmodel_is_not_mlflow(tmp_path: Path) -> None:
    with pytest.raises(UnknownFlavorError, match="MLflow model directory"):
        loader.detect_flavor(tmp_path)


@pytest.mark.parametrize("model", [{"weights": [1, 2]}, 42, object()], ids=["dict", "int", "object"])
def test_unsupported_object_gets_a_helpful_error(model: Any) -> None:
    with pytest.raises(UnknownFlavorError) as caught:
        loader.detect_flavor(model)

    message = str(caught.value)
    assert f"{type(model).__module__}.{type(model).__qualname__}" in message
    assert f"pass flavor= one of {', '.join(loader.known_flavors())}" in message
    assert "save/load/predict" in message


def test_unsupported_path_gets_a_helpful_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownFlavorError) as caught:
        loader.detect_flavor(tmp_path / "weights.h5")

    message = str(caught.value)
    assert "weights.h5" in message
    assert ".onnx, .skops, .pkl, .pickle or .joblib" in message


def test_a_model_class_is_not_a_model() -> None:
    with pytest.raises(UnknownFlavorError):
        loader.detect_flavor(NearestCentroid)
