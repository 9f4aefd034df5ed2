"""Custom Python models: any importable class with save, load and predict."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from models_for_tests import BrokenLoad, BrokenSave, LeastSquares, MajorityLabel, NearestCentroid, xy

from corral.core.schema import Task
from corral.errors import FlavorError, ModelLoadError, SchemaError, UnknownFlavorError
from corral.registry.service import Registry
from corral.runtimes.base import RuntimeSpec
from corral.runtimes.custom import CustomRuntime
from corral.runtimes.loader import detect_flavor


@pytest.mark.parametrize(("dataset", "classes"), [("cancer", (0, 1)), ("wine", (0, 1, 2))])
def test_classifier_round_trip(
    request: pytest.FixtureRequest, round_trip: Callable[..., Any], dataset: str, classes: tuple[int, ...]
) -> None:
    frame: pd.DataFrame = request.getfixturevalue(dataset)
    model = NearestCentroid().fit(*xy(frame))

    rt = round_trip(model, frame, name=f"{dataset}-centroid")

    assert rt.version.flavor == "python"
    assert rt.version.runtime.options["class"] == "models_for_tests:NearestCentroid"
    assert rt.version.runtime.options["probabilities"] is True
    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == classes
    assert rt.loaded.classes == classes
    np.testing.assert_array_equal(rt.loaded.predict(rt.features), model.predict(rt.features))
    np.testing.assert_allclose(
        rt.loaded.predict_proba(rt.features), model.predict_proba(rt.features), rtol=0, atol=1e-12
    )
    # the loaded runtime holds a fresh instance made by NearestCentroid.load, not the original
    assert isinstance(rt.loaded.runtime.model, NearestCentroid)
    assert rt.loaded.runtime.model is not model


def test_regressor_round_trip(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    model = LeastSquares().fit(*xy(diabetes))

    rt = round_trip(model, diabetes, name="diabetes-lstsq")

    assert rt.version.signature.outputs.task is Task.REGRESSION
    assert rt.version.runtime.classes is None
    assert rt.version.runtime.options["probabilities"] is False
    values = rt.loaded.predict(rt.features)
    assert values.shape == (len(diabetes),)
    np.testing.assert_allclose(values, model.predict(rt.features).to_numpy(), rtol=1e-12, atol=0)
    with pytest.raises(SchemaError, match="not a classifier with probabilities"):
        rt.loaded.predict_proba(rt.features)


def test_classifier_without_predict_proba_keeps_its_classes(wine: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    model = MajorityLabel().fit(*xy(wine))

    rt = round_trip(model, wine, name="wine-majority")

    assert rt.version.runtime.classes == (0, 1, 2)
    assert rt.version.runtime.options["probabilities"] is False
    prediction = rt.loaded.infer(rt.features)
    np.testing.assert_array_equal(prediction.values, model.predict(rt.features))
    assert prediction.classes == (0, 1, 2)
    assert prediction.probabilities is None


# -- refusals and failures -------------------------------------------------------------


def test_class_defined_in_a_function_is_refused(diabetes: pd.DataFrame, registry: Registry) -> None:
    class Local(LeastSquares):
        pass

    model = Local().fit(*xy(diabetes))

    with pytest.raises(FlavorError, match=r"Local is defined in .*; move it to an importable module"):
        registry.log_model(model, name="local", training_data=diabetes, target="target")

    assert registry.list_models() == []


def test_class_defined_in_main_is_refused(diabetes: pd.DataFrame, registry: Registry) -> None:
    script_class = type("ScriptModel", (LeastSquares,), {"__module__": "__main__"})
    model = script_class().fit(*xy(diabetes))

    with pytest.raises(FlavorError, match="ScriptModel is defined in __main__; move it to an importable module"):
        registry.log_model(model, name="script", training_data=diabetes, target="target")

    assert registry.list_models() == []


def test_load_that_raises_is_a_load_error_and_registers_nothing(diabetes: pd.DataFrame, registry: Registry) -> None:
    model = BrokenLoad().fit(*xy(diabetes))

    with pytest.raises(ModelLoadError, match=r"BrokenLoad\.load failed: RuntimeError: weights missing from model"):
        registry.log_model(model, name="broken-load", training_data=diabetes, target="target")

    assert registry.list_models() == []


def test_save_that_raises_is_a_flavor_error(diabetes: pd.DataFrame, registry: Registry) -> None:
    model = BrokenSave().fit(*xy(diabetes))

    with pytest.raises(FlavorError, match=r"BrokenSave\.save failed: OSError: disk full"):
        registry.log_model(model, name="broken-save", training_data=diabetes, target="target")

    assert registry.list_models() == []


def test_class_that_can_no_longer_be_imported_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    for target, problem in [
        ("models_for_tests:Vanished", "has no attribute 'Vanished'"),
        ("no_such_package.models:Model", "No module named 'no_such_package'"),
    ]:
        spec = RuntimeSpec("python", Task.REGRESSION, options={"class": target, "dir": "model"})
        with pytest.raises(ModelLoadError, match=f"cannot import the model class {target}: .*{problem}"):
            CustomRuntime.load(tmp_path, spec)


def test_a_class_is_not_a_model(diabetes: pd.DataFrame, registry: Registry) -> None:
    assert not CustomRuntime.accepts(LeastSquares)
    with pytest.raises(UnknownFlavorError):
        detect_flavor(LeastSquares)
    with pytest.raises(FlavorError, match="register an instance of LeastSquares, not the class itself"):
        registry.log_model(LeastSquares, name="cls", flavor="python", training_data=diabetes, target="target")


def test_object_missing_part_of_the_contract_is_refused(diabetes: pd.DataFrame, registry: Registry) -> None:
    class_without_load = type("NoLoad", (), {"__module__": __name__, "save": None, "predict": lambda self, f: f})

    with pytest.raises(FlavorError, match=r"needs save\(path\), a load\(path\) classmethod and predict\(frame\)"):
        registry.log_model(
            class_without_load(), name="noload", flavor="python", training_data=diabetes, target="target"
        )


def test_unknown_option_is_refused(diabetes: pd.DataFrame, registry: Registry) -> None:
    model = LeastSquares().fit(*xy(diabetes))

    with pytest.raises(FlavorError, match=r"python does not take option\(s\) serialization; it takes: code_paths"):
        registry.log_model(
            model, name="opt", training_data=diabetes, target="target", options={"serialization": "pickle"}
        )

    assert registry.list_models() == []
