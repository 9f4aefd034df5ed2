"""LightGBM runtime: scikit-learn wrappers and raw Boosters, saved as LightGBM text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from models_for_tests import xy

from corral.core.schema import Task
from corral.errors import FlavorError, ModelLoadError
from corral.registry.service import Registry
from corral.runtimes.base import RuntimeSpec
from corral.runtimes.lightgbm import LightGBMRuntime

PARAMS: dict[str, Any] = {"n_estimators": 15, "num_leaves": 7, "random_state": 0, "verbose": -1}


def no_spaces(frame: pd.DataFrame) -> pd.DataFrame:
    """Column names without spaces, as LightGBM itself spells them."""
    return frame.rename(columns=lambda c: c.replace(" ", "_"))


def assert_same_classifier(model: Any, loaded: Any, features: pd.DataFrame) -> None:
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    np.testing.assert_allclose(loaded.predict_proba(features), model.predict_proba(features), rtol=0, atol=1e-12)


def test_binary_classifier_round_trip(cancer: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    frame = no_spaces(cancer)
    model = lgb.LGBMClassifier(**PARAMS).fit(*xy(frame))

    rt = round_trip(model, frame, name="cancer-lgbm")

    assert rt.version.flavor == "lightgbm"
    assert rt.version.runtime.options == {"estimator": "LGBMClassifier", "file": "model.txt"}
    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == (0, 1)
    assert rt.loaded.classes == (0, 1)
    assert rt.loaded.predict_proba(rt.features).shape == (len(frame), 2)
    assert_same_classifier(model, rt.loaded, rt.features)


def test_binary_classifier_on_columns_with_spaces(cancer: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    model = lgb.LGBMClassifier(**PARAMS).fit(*xy(cancer))

    rt = round_trip(model, cancer, name="cancer-lgbm-spaces")

    assert_same_classifier(model, rt.loaded, rt.features)


def test_multiclass_classifier_round_trip(wine: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    model = lgb.LGBMClassifier(**PARAMS).fit(*xy(wine))

    rt = round_trip(model, wine, name="wine-lgbm")

    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == (0, 1, 2)
    assert_same_classifier(model, rt.loaded, rt.features)


def test_string_labels_round_trip(wine: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    named = wine.assign(target=wine["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"}))
    model = lgb.LGBMClassifier(**PARAMS).fit(*xy(named))

    rt = round_trip(model, named, name="wine-lgbm-named")

    assert rt.version.runtime.classes == ("barbera", "barolo", "grignolino")
    labels = rt.loaded.predict(rt.features)
    assert set(labels) <= {"barbera", "barolo", "grignolino"}
    assert_same_classifier(model, rt.loaded, rt.features)


def test_regressor_round_trip(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    model = lgb.LGBMRegressor(**PARAMS).fit(*xy(diabetes))

    rt = round_trip(model, diabetes, name="diabetes-lgbm")

    assert rt.version.signature.outputs.task is Task.REGRESSION
    assert rt.version.runtime.classes is None
    assert rt.version.runtime.options["estimator"] == "LGBMRegressor"
    np.testing.assert_array_equal(rt.loaded.predict(rt.features), model.predict(rt.features))


def test_raw_booster_round_trip(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    features, target = xy(diabetes)
    booster = lgb.train({"num_leaves": 7, "verbose": -1, "seed": 0}, lgb.Dataset(features, target), 15)

    rt = round_trip(booster, diabetes, name="diabetes-booster")

    assert rt.version.flavor == "lightgbm"
    assert rt.version.runtime.options["estimator"] == "Booster"
    assert rt.version.signature.outputs.task is Task.REGRESSION
    np.testing.assert_array_equal(rt.loaded.predict(rt.features), booster.predict(features))


def test_booster_on_columns_with_spaces_and_shuffled(cancer: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    features, target = xy(cancer)
    booster = lgb.train({"num_leaves": 7, "verbose": -1, "seed": 0}, lgb.Dataset(features, target), 10)

    shuffled = cancer[["target", *reversed(features.columns)]]
    rt = round_trip(booster, shuffled, name="cancer-booster-spaces")

    assert rt.version.signature.columns == list(features.columns)
    np.testing.assert_array_equal(rt.loaded.predict(features), booster.predict(features))


def test_booster_trained_on_arrays(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    features, target = xy(diabetes)
    booster = lgb.train({"num_leaves": 7, "verbose": -1}, lgb.Dataset(features.to_numpy(), target.to_numpy()), 10)

    rt = round_trip(booster, diabetes, name="diabetes-array-booster")

    np.testing.assert_array_equal(rt.loaded.predict(rt.features), booster.predict(features.to_numpy()))


def test_unfitted_model_is_refused(diabetes: pd.DataFrame, registry: Registry) -> None:
    with pytest.raises(FlavorError, match="this LGBMRegressor is not fitted"):
        registry.log_model(lgb.LGBMRegressor(), name="unfitted", training_data=diabetes, target="target")

    assert registry.list_models() == []


def test_unknown_option_is_refused(diabetes: pd.DataFrame, registry: Registry) -> None:
    model = lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(*xy(diabetes))

    with pytest.raises(FlavorError, match=r"lightgbm does not take option\(s\) num_iteration; it takes: none"):
        registry.log_model(model, name="opt", training_data=diabetes, target="target", options={"num_iteration": 1})

    assert registry.list_models() == []


@pytest.mark.parametrize("content", [b"", b"tree\nversion=v4\nnot really a model\n"])
def test_garbage_model_file_is_a_load_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "model.txt").write_bytes(content)
    spec = RuntimeSpec("lightgbm", Task.REGRESSION, options={"estimator": "Booster", "file": "model.txt"})

    with pytest.raises(ModelLoadError, match=r"lightgbm could not load model\.txt"):
        LightGBMRuntime.load(tmp_path, spec)
