"""XGBoost runtime: scikit-learn wrappers and raw Boosters, saved as UBJSON."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from models_for_tests import xy

from corral.core.schema import Task
from corral.errors import FlavorError, ModelLoadError
from corral.registry.service import Registry
from corral.runtimes.base import RuntimeSpec
from corral.runtimes.xgboost import XGBoostRuntime


@pytest.mark.parametrize(("dataset", "classes"), [("cancer", (0, 1)), ("wine", (0, 1, 2))])
def test_classifier_round_trip(
    request: pytest.FixtureRequest, round_trip: Callable[..., Any], dataset: str, classes: tuple[int, ...]
) -> None:
    frame: pd.DataFrame = request.getfixturevalue(dataset)
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3, random_state=0).fit(*xy(frame))

    rt = round_trip(model, frame, name=f"{dataset}-xgb")

    assert rt.version.flavor == "xgboost"
    assert rt.version.runtime.options == {"estimator": "XGBClassifier", "file": "model.ubj"}
    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == classes
    assert rt.loaded.classes == classes
    np.testing.assert_array_equal(rt.loaded.predict(rt.features), model.predict(rt.features))
    proba = rt.loaded.predict_proba(rt.features)
    assert proba.shape == (len(frame), len(classes))
    np.testing.assert_allclose(proba, model.predict_proba(rt.features), rtol=0, atol=1e-7)


def test_regressor_round_trip(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    model = xgb.XGBRegressor(n_estimators=15, max_depth=3, random_state=0).fit(*xy(diabetes))

    rt = round_trip(model, diabetes, name="diabetes-xgb")

    assert rt.version.signature.outputs.task is Task.REGRESSION
    assert rt.version.runtime.classes is None
    assert rt.version.runtime.options["estimator"] == "XGBRegressor"
    np.testing.assert_array_equal(rt.loaded.predict(rt.features), model.predict(rt.features))


def test_raw_booster_round_trip(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    features, target = xy(diabetes)
    booster = xgb.train({"max_depth": 3, "seed": 0}, xgb.DMatrix(features, target), num_boost_round=15)

    rt = round_trip(booster, diabetes, name="diabetes-booster")

    assert rt.version.flavor == "xgboost"
    assert rt.version.runtime.options["estimator"] == "Booster"
    assert rt.version.signature.outputs.task is Task.REGRESSION
    np.testing.assert_array_equal(rt.loaded.predict(rt.features), booster.predict(xgb.DMatrix(features)))


def test_booster_trained_on_arrays(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    features, target = xy(diabetes)
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(features.to_numpy(), target.to_numpy()), num_boost_round=10)
    assert booster.feature_names is None

    rt = round_trip(booster, diabetes, name="diabetes-array-booster")

    np.testing.assert_array_equal(rt.loaded.predict(rt.features), booster.predict(xgb.DMatrix(features.to_numpy())))


def test_raw_binary_booster_serves_its_raw_outputs(cancer: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    """A Booster carries no class labels: corral serves what it predicts (here probabilities) as values."""
    features, target = xy(cancer)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(features, target), 10)

    rt = round_trip(booster, cancer, name="cancer-booster")

    assert rt.version.signature.outputs.task is Task.REGRESSION
    assert rt.version.runtime.classes is None
    values = rt.loaded.predict(rt.features)
    np.testing.assert_array_equal(values, booster.predict(xgb.DMatrix(features)))
    assert ((values > 0) & (values < 1)).all()


def test_unfitted_model_is_refused(diabetes: pd.DataFrame, registry: Registry) -> None:
    with pytest.raises(FlavorError, match="this XGBRegressor is not fitted"):
        registry.log_model(xgb.XGBRegressor(), name="unfitted", training_data=diabetes, target="target")

    assert registry.list_models() == []


def test_unknown_option_is_refused(diabetes: pd.DataFrame, registry: Registry) -> None:
    model = xgb.XGBRegressor(n_estimators=2).fit(*xy(diabetes))

    with pytest.raises(FlavorError, match=r"xgboost does not take option\(s\) format; it takes: none"):
        registry.log_model(model, name="opt", training_data=diabetes, target="target", options={"format": "json"})

    assert registry.list_models() == []


def test_garbage_model_file_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "model.ubj").write_bytes(b"\x00garbage, not UBJSON")

    for estimator in ("Booster", "XGBClassifier"):
        spec = RuntimeSpec("xgboost", Task.OTHER, options={"estimator": estimator, "file": "model.ubj"})
        with pytest.raises(ModelLoadError, match=r"xgboost could not load model\.ubj"):
            XGBoostRuntime.load(tmp_path, spec)
