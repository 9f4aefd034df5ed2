"""ONNX runtime: skl2onnx-converted models run by onnxruntime.

The converted graphs compute in float32, so they match the scikit-learn
originals only to float32 precision: probabilities (in [0, 1]) to 1e-5
absolute, regression values to 1e-5 relative (float32 has ~7 significant
digits, and a linear model sums a handful of products). Labels must agree
exactly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from models_for_tests import xy
from onnx import ModelProto
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from corral.core.schema import Task
from corral.errors import FlavorError, ModelLoadError, SchemaError
from corral.registry.service import Registry
from corral.runtimes.base import RuntimeSpec
from corral.runtimes.onnx import OnnxRuntime

PROBA_ATOL = 1e-5
VALUE_RTOL = 1e-5


def convert(model: Any, features: pd.DataFrame, **options: Any) -> ModelProto:
    onx: ModelProto = to_onnx(model, features.to_numpy()[:1].astype(np.float32), **options)
    return onx


def assert_same_classifier(model: Any, loaded: Any, features: pd.DataFrame) -> None:
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    proba = loaded.predict_proba(features)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba, model.predict_proba(features), rtol=0, atol=PROBA_ATOL)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=PROBA_ATOL)


@pytest.fixture(scope="module")
def wine_forest(wine: pd.DataFrame) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(*xy(wine))


def test_binary_classifier_with_zipmap_round_trip(cancer: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    features, target = xy(cancer)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(features, target)
    onx = convert(model, features)
    assert onx.graph.output[1].type.HasField("sequence_type")  # the ZipMap output: a list of {class: p}

    rt = round_trip(onx, cancer, name="cancer-onnx")

    assert rt.version.flavor == "onnx"
    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == (0, 1)
    assert rt.loaded.classes == (0, 1)
    assert_same_classifier(model, rt.loaded, rt.features)


@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "no-zipmap"])
def test_multiclass_classifier_round_trip(
    wine: pd.DataFrame, wine_forest: RandomForestClassifier, round_trip: Callable[..., Any], zipmap: bool
) -> None:
    onx = convert(wine_forest, xy(wine)[0], options={"zipmap": zipmap})
    assert onx.graph.output[1].type.HasField("sequence_type") is zipmap

    rt = round_trip(onx, wine, name="wine-onnx")

    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == (0, 1, 2)
    assert rt.loaded.predict_proba(rt.features).shape == (len(wine), 3)
    assert_same_classifier(wine_forest, rt.loaded, rt.features)


def test_regressor_round_trip(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    features, target = xy(diabetes)
    model = LinearRegression().fit(features, target)

    rt = round_trip(convert(model, features), diabetes, name="diabetes-onnx")

    assert rt.version.signature.outputs.task is Task.REGRESSION
    assert rt.version.runtime.classes is None
    values = rt.loaded.predict(rt.features)
    assert values.shape == (len(diabetes),)
    np.testing.assert_allclose(values, model.predict(features), rtol=VALUE_RTOL)


def test_one_input_per_column_graph(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    features, target = xy(diabetes)
    columns = list(features.columns)
    model = make_pipeline(ColumnTransformer([("scale", StandardScaler(), columns)]), LinearRegression())
    model.fit(features, target)
    onx = to_onnx(model, initial_types=[(c, FloatTensorType([None, 1])) for c in columns])
    assert [i.name for i in onx.graph.input] == columns

    rt = round_trip(onx, diabetes, name="diabetes-columns")

    np.testing.assert_allclose(rt.loaded.predict(rt.features), model.predict(features), rtol=VALUE_RTOL)


@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_register_from_onnx_file(
    tmp_path: Path,
    wine: pd.DataFrame,
    wine_forest: RandomForestClassifier,
    round_trip: Callable[..., Any],
    as_str: bool,
) -> None:
    file = tmp_path / "forest.onnx"
    file.write_bytes(convert(wine_forest, xy(wine)[0]).SerializeToString())

    rt = round_trip(str(file) if as_str else file, wine, name="wine-file")

    assert rt.version.flavor == "onnx"
    assert rt.version.runtime.classes == (0, 1, 2)
    assert_same_classifier(wine_forest, rt.loaded, rt.features)


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "empty"),
        (b"definitely not protobuf \x00\xff\xfe", "not a format corral recognises"),
        (b"\x08\x07" * 10, "not a format corral recognises"),  # parses as a ModelProto, but has no graph
    ],
    ids=["empty", "text", "no-graph"],
)
@pytest.mark.parametrize("flavor", [None, "onnx"], ids=["detected", "named"])
def test_garbage_onnx_file_registers_nothing(
    tmp_path: Path, wine: pd.DataFrame, registry: Registry, content: bytes, what: str, flavor: str | None
) -> None:
    file = tmp_path / "broken.onnx"
    file.write_bytes(content)

    with pytest.raises(FlavorError, match=rf"broken\.onnx: not a valid ONNX model: its bytes are {what}"):
        registry.log_model(file, name="broken", training_data=wine, target="target", flavor=flavor)

    assert registry.list_models() == []


def test_truncated_onnx_file_registers_nothing(
    tmp_path: Path, wine: pd.DataFrame, wine_forest: RandomForestClassifier, registry: Registry
) -> None:
    data = convert(wine_forest, xy(wine)[0]).SerializeToString()
    file = tmp_path / "cut.onnx"
    file.write_bytes(data[: len(data) // 2])

    with pytest.raises(FlavorError, match=r"cut\.onnx: not a valid ONNX model: its bytes are not a format corral"):
        registry.log_model(file, name="cut", training_data=wine, target="target")

    assert registry.list_models() == []


def test_missing_onnx_file(tmp_path: Path, wine: pd.DataFrame, registry: Registry) -> None:
    with pytest.raises(FlavorError, match=r"ONNX file '.*gone\.onnx' does not exist"):
        registry.log_model(tmp_path / "gone.onnx", name="gone", training_data=wine, target="target")


def test_classifier_classes_come_from_the_graph(
    wine: pd.DataFrame, registry: Registry, load_version: Callable[..., Any]
) -> None:
    features = xy(wine)[0]
    named = RandomForestClassifier(n_estimators=5, random_state=0).fit(
        features, wine["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    )

    version = registry.log_model(convert(named, features), name="no-target", training_data=features)

    assert version.signature.outputs.task is Task.CLASSIFICATION
    assert version.runtime.classes == ("barbera", "barolo", "grignolino")
    loaded = load_version("no-target/1")
    np.testing.assert_array_equal(loaded.predict(features), named.predict(features))
    np.testing.assert_allclose(loaded.predict_proba(features), named.predict_proba(features), atol=PROBA_ATOL)


@pytest.fixture
def hide_onnx_package(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it (after converting) to be where only onnxruntime is installed: graph labels cannot be read."""

    def hide() -> None:
        monkeypatch.setitem(sys.modules, "onnx", None)

    return hide


def test_without_the_onnx_package_classes_come_from_the_target(
    wine: pd.DataFrame,
    wine_forest: RandomForestClassifier,
    round_trip: Callable[..., Any],
    hide_onnx_package: Callable[[], None],
) -> None:
    data = convert(wine_forest, xy(wine)[0], options={"zipmap": False})
    hide_onnx_package()

    rt = round_trip(data, wine, name="wine-target-classes")

    assert rt.version.runtime.classes == (0, 1, 2)
    assert_same_classifier(wine_forest, rt.loaded, rt.features)


def test_without_the_onnx_package_a_classifier_needs_a_target(
    wine: pd.DataFrame, wine_forest: RandomForestClassifier, registry: Registry, hide_onnx_package: Callable[[], None]
) -> None:
    features = xy(wine)[0]
    data = convert(wine_forest, features)
    hide_onnx_package()

    with pytest.raises(FlavorError, match="an ONNX classifier needs its classes"):
        registry.log_model(data, name="no-classes", training_data=features)

    assert registry.list_models() == []


@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "no-zipmap"])
def test_classifier_whose_classes_differ_from_the_target_is_refused(
    wine: pd.DataFrame, registry: Registry, zipmap: bool
) -> None:
    features, target = xy(wine)
    binary = make_pipeline(StandardScaler(), LogisticRegression()).fit(features, target == 0)
    onx = convert(binary, features, options={"zipmap": zipmap})

    with pytest.raises(FlavorError, match=r"predicts classes \[0, 1\] but the training target has classes \[0, 1, 2\]"):
        registry.log_model(onx, name="mismatch", training_data=wine, target="target")

    assert registry.list_models() == []


def test_without_the_onnx_package_probability_width_is_checked(
    wine: pd.DataFrame, registry: Registry, hide_onnx_package: Callable[[], None]
) -> None:
    features, target = xy(wine)
    binary = make_pipeline(StandardScaler(), LogisticRegression()).fit(features, target == 0)
    onx = convert(binary, features, options={"zipmap": False})
    hide_onnx_package()

    with pytest.raises(FlavorError, match=r"gives 2 probabilities per row but the training target has 3 classes"):
        registry.log_model(onx, name="mismatch", training_data=wine, target="target")

    assert registry.list_models() == []


def test_without_the_onnx_package_zipmap_keys_are_checked(
    wine: pd.DataFrame, registry: Registry, hide_onnx_package: Callable[[], None]
) -> None:
    features, target = xy(wine)
    binary = make_pipeline(StandardScaler(), LogisticRegression()).fit(features, target == 0)
    onx = convert(binary, features)
    hide_onnx_package()

    with pytest.raises(SchemaError, match="the ONNX classifier's probability maps have no class 2"):
        registry.log_model(onx, name="mismatch", training_data=wine, target="target")

    assert registry.list_models() == []


def test_unknown_option_is_refused(diabetes: pd.DataFrame, registry: Registry) -> None:
    features, target = xy(diabetes)
    onx = convert(LinearRegression().fit(features, target), features)

    with pytest.raises(FlavorError, match=r"onnx does not take option\(s\) providers; it takes: none"):
        registry.log_model(onx, name="opt", training_data=diabetes, target="target", options={"providers": ["CUDA"]})


def test_garbage_stored_file_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    spec = RuntimeSpec("onnx", Task.REGRESSION, options={"file": "model.onnx"})

    with pytest.raises(ModelLoadError, match=r"model\.onnx: not a valid ONNX model: its bytes are not a format"):
        OnnxRuntime.load(tmp_path, spec)
