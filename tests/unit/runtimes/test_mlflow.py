"""MLflow model directories, written by MLflow itself and read by corral without MLflow's loaders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow.lightgbm
import mlflow.onnx
import mlflow.pyfunc
import mlflow.sklearn
import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import yaml
from models_for_tests import DoublingPyfunc, xy
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from corral.core.schema import Task
from corral.errors import FlavorError, UntrustedArtifactError
from corral.registry.service import Registry

TREE = "sklearn.tree._tree.Tree"


# Naming the requirements skips MLflow's inference of them, which loads the model
# in a subprocess and takes seconds.
_REQUIREMENTS = ["corral-test-requirements-not-inferred"]


def save_sklearn(model: Any, path: str, **kwargs: Any) -> None:
    mlflow.sklearn.save_model(model, path, pip_requirements=_REQUIREMENTS, **kwargs)


def save_xgboost(model: Any, path: str, **kwargs: Any) -> None:
    mlflow.xgboost.save_model(model, path, pip_requirements=_REQUIREMENTS, **kwargs)


def save_lightgbm(model: Any, path: str, **kwargs: Any) -> None:
    mlflow.lightgbm.save_model(model, path, pip_requirements=_REQUIREMENTS, **kwargs)


def save_onnx(model: Any, path: str, **kwargs: Any) -> None:
    mlflow.onnx.save_model(model, path, pip_requirements=_REQUIREMENTS, **kwargs)


def edit_mlmodel(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    file = folder / "MLmodel"
    data = yaml.safe_load(file.read_text())
    edit(data)
    file.write_text(yaml.safe_dump(data))


def assert_same_classifier(model: Any, loaded: Any, features: pd.DataFrame, atol: float = 1e-12) -> None:
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    np.testing.assert_allclose(loaded.predict_proba(features), model.predict_proba(features), rtol=0, atol=atol)


@pytest.fixture(scope="module")
def wine_forest(wine: pd.DataFrame) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(*xy(wine))


# -- scikit-learn ------------------------------------------------------------------------


def test_sklearn_skops_directory_round_trip(
    tmp_path: Path, wine: pd.DataFrame, wine_forest: RandomForestClassifier, round_trip: Callable[..., Any]
) -> None:
    folder = tmp_path / "forest"
    save_sklearn(wine_forest, str(folder), skops_trusted_types=[TREE])

    rt = round_trip(folder, wine, name="wine-mlflow")

    assert rt.version.flavor == "mlflow"
    assert rt.version.runtime.options["mlflow_flavor"] == "sklearn"
    assert rt.version.runtime.options["inner"]["options"]["format"] == "skops"
    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == (0, 1, 2)
    assert rt.loaded.classes == (0, 1, 2)
    assert_same_classifier(wine_forest, rt.loaded, rt.features)


def test_sklearn_binary_pipeline_directory_as_str(
    tmp_path: Path, cancer: pd.DataFrame, round_trip: Callable[..., Any]
) -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(*xy(cancer))
    folder = tmp_path / "lr"
    save_sklearn(model, str(folder))

    rt = round_trip(str(folder), cancer, name="cancer-mlflow")

    assert rt.version.runtime.classes == (0, 1)
    assert_same_classifier(model, rt.loaded, rt.features)


@pytest.fixture
def pickled_forest_dir(tmp_path: Path, wine_forest: RandomForestClassifier) -> Path:
    folder = tmp_path / "pickled"
    save_sklearn(wine_forest, str(folder), serialization_format="cloudpickle")
    assert yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["sklearn"]["serialization_format"] == (
        "cloudpickle"
    )
    return folder


def test_pickle_format_sklearn_directory_is_refused_without_trust(
    pickled_forest_dir: Path, wine: pd.DataFrame, registry: Registry
) -> None:
    with pytest.raises(UntrustedArtifactError, match="unpickling can run arbitrary code"):
        registry.log_model(pickled_forest_dir, name="wine-pickled", training_data=wine, target="target")

    assert registry.list_models() == []


def test_pickle_format_sklearn_directory_loads_when_trusted(
    pickled_forest_dir: Path,
    wine: pd.DataFrame,
    wine_forest: RandomForestClassifier,
    registry: Registry,
    load_version: Callable[..., Any],
) -> None:
    version = registry.log_model(
        pickled_forest_dir, name="wine-pickled", training_data=wine, target="target", trusted=True
    )

    assert version.flavor == "mlflow"
    assert version.runtime.options["inner"]["options"]["format"] == "pickle"
    assert version.runtime.classes == (0, 1, 2)
    with pytest.raises(UntrustedArtifactError):
        registry.load("wine-pickled/1")
    assert_same_classifier(wine_forest, load_version("wine-pickled/1", trusted=True), xy(wine)[0])


def test_types_an_mlmodel_declares_outside_the_frameworks_need_naming(
    tmp_path: Path, diabetes: pd.DataFrame, registry: Registry, load_version: Callable[..., Any]
) -> None:
    """skops lists functions as types; the file must not vouch for ``builtins.*`` itself."""
    features, target = xy(diabetes)
    model = make_pipeline(FunctionTransformer(abs), LinearRegression()).fit(features, target)
    folder = tmp_path / "abs"
    save_sklearn(model, str(folder), skops_trusted_types=["builtins.abs"])
    declared = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["sklearn"]["skops_trusted_types"]
    assert declared == ["builtins.abs"]

    with pytest.raises(UntrustedArtifactError, match=r"types nobody trusted: builtins\.abs"):
        registry.log_model(folder, name="abs", training_data=diabetes, target="target")
    assert registry.list_models() == []

    registry.log_model(
        folder, name="abs", training_data=diabetes, target="target", options={"trusted_types": ["builtins.abs"]}
    )
    np.testing.assert_allclose(load_version("abs/1").predict(features), model.predict(features), rtol=1e-12)


# -- xgboost and lightgbm -----------------------------------------------------------------


def test_xgboost_classifier_directory_round_trip(
    tmp_path: Path, cancer: pd.DataFrame, round_trip: Callable[..., Any]
) -> None:
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(*xy(cancer))
    folder = tmp_path / "xgb"
    save_xgboost(model, str(folder))

    rt = round_trip(folder, cancer, name="cancer-xgb")

    assert rt.version.runtime.options["mlflow_flavor"] == "xgboost"
    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == (0, 1)
    assert_same_classifier(model, rt.loaded, rt.features)


def test_xgboost_regressor_directory_round_trip(
    tmp_path: Path, diabetes: pd.DataFrame, round_trip: Callable[..., Any]
) -> None:
    model = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(*xy(diabetes))
    folder = tmp_path / "xgb"
    save_xgboost(model, str(folder))

    rt = round_trip(folder, diabetes, name="diabetes-xgb")

    assert rt.version.signature.outputs.task is Task.REGRESSION
    assert rt.version.runtime.classes is None
    np.testing.assert_array_equal(rt.loaded.predict(rt.features), model.predict(rt.features))


def test_old_xgboost_directory_without_model_class_is_a_booster(
    tmp_path: Path, diabetes: pd.DataFrame, round_trip: Callable[..., Any]
) -> None:
    """MLflow before 1.22 saved only Boosters and wrote no ``model_class``."""
    features, target = xy(diabetes)
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(features, target), 10)
    folder = tmp_path / "old-xgb"
    save_xgboost(booster, str(folder))
    edit_mlmodel(folder, lambda data: data["flavors"]["xgboost"].pop("model_class"))

    rt = round_trip(folder, diabetes, name="diabetes-old-xgb")

    assert rt.version.runtime.options["inner"]["options"]["estimator"] == "Booster"
    np.testing.assert_array_equal(rt.loaded.predict(rt.features), booster.predict(xgb.DMatrix(features)))


def test_lightgbm_classifier_directory_round_trip(
    tmp_path: Path, wine: pd.DataFrame, round_trip: Callable[..., Any]
) -> None:
    model = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1).fit(*xy(wine))
    folder = tmp_path / "lgbm"
    save_lightgbm(model, str(folder))

    rt = round_trip(folder, wine, name="wine-lgbm")

    assert rt.version.runtime.options["mlflow_flavor"] == "lightgbm"
    assert rt.version.runtime.classes == (0, 1, 2)
    assert_same_classifier(model, rt.loaded, rt.features)


def test_lightgbm_booster_directory_round_trip(
    tmp_path: Path, diabetes: pd.DataFrame, round_trip: Callable[..., Any]
) -> None:
    features, target = xy(diabetes)
    booster = lgb.train({"num_leaves": 7, "verbose": -1}, lgb.Dataset(features, target), 10)
    folder = tmp_path / "booster"
    save_lightgbm(booster, str(folder))
    # MLflow 3 writes serialization_format even for a Booster, which it saves as LightGBM text
    conf = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["lightgbm"]
    assert conf["model_class"] == "lightgbm.basic.Booster"

    rt = round_trip(folder, diabetes, name="diabetes-lgb-booster")

    assert rt.version.runtime.options["inner"]["flavor"] == "lightgbm"
    assert rt.version.signature.outputs.task is Task.REGRESSION
    np.testing.assert_array_equal(rt.loaded.predict(rt.features), booster.predict(features))


# -- onnx ---------------------------------------------------------------------------------


def test_onnx_classifier_directory_round_trip(
    tmp_path: Path, wine: pd.DataFrame, wine_forest: RandomForestClassifier, round_trip: Callable[..., Any]
) -> None:
    features = xy(wine)[0]
    folder = tmp_path / "onnx"
    save_onnx(to_onnx(wine_forest, features.to_numpy()[:1].astype(np.float32)), str(folder))

    rt = round_trip(folder, wine, name="wine-onnx")

    assert rt.version.runtime.options["mlflow_flavor"] == "onnx"
    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == (0, 1, 2)
    assert_same_classifier(wine_forest, rt.loaded, rt.features, atol=1e-5)  # float32 graph


def test_onnx_regressor_on_an_integer_target_is_a_regressor(
    tmp_path: Path, wine: pd.DataFrame, round_trip: Callable[..., Any]
) -> None:
    """The graph says what it is: a regressor stays one even when the target looks like classes."""
    features, target = xy(wine)
    model = LinearRegression().fit(features, target)
    folder = tmp_path / "onnx-reg"
    save_onnx(to_onnx(model, features.to_numpy()[:1].astype(np.float32)), str(folder))

    rt = round_trip(folder, wine, name="wine-onnx-reg")

    assert rt.version.signature.outputs.task is Task.REGRESSION
    assert rt.version.runtime.classes is None
    np.testing.assert_allclose(rt.loaded.predict(rt.features), model.predict(features), rtol=1e-5, atol=1e-5)


# -- python_function ------------------------------------------------------------------------


def test_pyfunc_only_directory_needs_trust(
    tmp_path: Path, diabetes: pd.DataFrame, registry: Registry, load_version: Callable[..., Any]
) -> None:
    folder = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(str(folder), python_model=DoublingPyfunc(), pip_requirements=_REQUIREMENTS)
    features = xy(diabetes)[0]

    with pytest.raises(UntrustedArtifactError, match="only has the python_function flavor"):
        registry.log_model(folder, name="doubling", training_data=diabetes, target="target")
    assert registry.list_models() == []

    version = registry.log_model(folder, name="doubling", training_data=diabetes, target="target", trusted=True)

    assert version.runtime.options["mlflow_flavor"] == "python_function"
    with pytest.raises(UntrustedArtifactError):
        registry.load("doubling/1")
    loaded = load_version("doubling/1", trusted=True)
    np.testing.assert_array_equal(loaded.predict(features), features.iloc[:, 0].to_numpy() * 2.0)


# -- bad directories ------------------------------------------------------------------------


def test_directory_without_mlmodel(tmp_path: Path, wine: pd.DataFrame, registry: Registry) -> None:
    with pytest.raises(FlavorError, match="is not an MLflow model directory: it has no MLmodel file"):
        registry.log_model(tmp_path, name="empty", flavor="mlflow", training_data=wine, target="target")


def test_path_that_is_not_a_directory(tmp_path: Path, wine: pd.DataFrame, registry: Registry) -> None:
    file = tmp_path / "model.txt"
    file.write_text("hello")

    with pytest.raises(FlavorError, match="takes the path of an MLflow model directory"):
        registry.log_model(file, name="file", flavor="mlflow", training_data=wine, target="target")


@pytest.mark.parametrize(
    ("mlmodel", "message"),
    [
        ("flavors: [unclosed", "is not valid YAML"),
        ("artifact_path: model\n", "has no 'flavors' section"),
        ("flavors:\n  pytorch:\n    pytorch_version: 2.0\n", r"declares flavors \['pytorch'\]; corral reads"),
    ],
)
def test_unusable_mlmodel_file(
    tmp_path: Path, wine: pd.DataFrame, registry: Registry, mlmodel: str, message: str
) -> None:
    (tmp_path / "MLmodel").write_text(mlmodel)

    with pytest.raises(FlavorError, match=message):
        registry.log_model(tmp_path, name="bad", training_data=wine, target="target")

    assert registry.list_models() == []


@pytest.mark.parametrize(
    ("data", "message"),
    [("../outside.ubj", "outside the model directory"), ("missing.ubj", "not a file in the model directory")],
)
def test_data_file_must_be_inside_the_directory(
    tmp_path: Path, diabetes: pd.DataFrame, registry: Registry, data: str, message: str
) -> None:
    model = xgb.XGBRegressor(n_estimators=2).fit(*xy(diabetes))
    folder = tmp_path / "xgb"
    save_xgboost(model, str(folder))
    model.save_model(tmp_path / "outside.ubj")

    def point_elsewhere(mlmodel: dict[str, Any]) -> None:
        mlmodel["flavors"]["xgboost"]["data"] = data

    edit_mlmodel(folder, point_elsewhere)

    with pytest.raises(FlavorError, match=message):
        registry.log_model(folder, name="escape", training_data=diabetes, target="target")

    assert registry.list_models() == []


def test_truncated_model_file_registers_nothing(
    tmp_path: Path, wine: pd.DataFrame, wine_forest: RandomForestClassifier, registry: Registry
) -> None:
    folder = tmp_path / "forest"
    save_sklearn(wine_forest, str(folder), skops_trusted_types=[TREE])
    skops_file = folder / "model.skops"
    skops_file.write_bytes(skops_file.read_bytes()[:300])

    with pytest.raises(FlavorError, match="not a readable skops file"):
        registry.log_model(folder, name="cut", training_data=wine, target="target")

    assert registry.list_models() == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"serialization": "skops"}, "mlflow does not take option(s) serialization; it takes: trusted, trusted_types"),
        ({"trusted_types": "builtins.abs"}, "trusted_types must be a list of type names"),
    ],
)
def test_bad_options_are_refused(
    tmp_path: Path,
    wine: pd.DataFrame,
    wine_forest: RandomForestClassifier,
    registry: Registry,
    options: dict[str, Any],
    message: str,
) -> None:
    folder = tmp_path / "forest"
    save_sklearn(wine_forest, str(folder), skops_trusted_types=[TREE])

    with pytest.raises(FlavorError) as caught:
        registry.log_model(folder, name="opts", training_data=wine, target="target", options=options)

    assert message in str(caught.value)
