"""scikit-learn runtime: skops by default, pickle/joblib only when trusted."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from models_for_tests import Tripwire, xy
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from corral.core.schema import Task
from corral.errors import FlavorError, ModelLoadError, SchemaError, UntrustedArtifactError
from corral.registry.service import Registry
from corral.runtimes.base import RuntimeSpec
from corral.runtimes.sklearn import SklearnRuntime

TREE = "sklearn.tree._tree.Tree"  # the one type skops does not trust by default for tree models


@pytest.fixture(scope="module")
def wine_forest(wine: pd.DataFrame) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=10, random_state=0).fit(*xy(wine))


def assert_same_classifier(model: Any, loaded: Any, features: pd.DataFrame, data: Any = None) -> None:
    data = features if data is None else data
    np.testing.assert_array_equal(loaded.predict(features), model.predict(data))
    np.testing.assert_allclose(loaded.predict_proba(features), model.predict_proba(data), rtol=0, atol=1e-9)


def assert_same_values(restored: np.ndarray, original: np.ndarray) -> None:
    """Regression values: equal up to float64 rounding.

    Linear models compute ``X @ coef`` with BLAS, whose summation order follows
    the memory layout of ``X``; the validated frame a loaded model predicts on
    is laid out differently from the training frame, so results can differ in
    the last bit (~1e-16 relative). Anything a serializer could get wrong is
    far larger than 1e-12.
    """
    assert restored.shape == original.shape
    np.testing.assert_allclose(restored, original, rtol=1e-12, atol=0)


# -- round trips ---------------------------------------------------------------


def test_binary_pipeline_round_trip(cancer: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(*xy(cancer))

    rt = round_trip(model, cancer, name="cancer-lr")

    assert rt.version.flavor == "sklearn"
    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.runtime.classes == (0, 1)
    assert rt.loaded.classes == (0, 1)
    assert rt.version.runtime.options["format"] == "skops"
    assert rt.version.runtime.options["trusted_types"] == []
    assert_same_classifier(model, rt.loaded, rt.features)
    assert rt.loaded.predict_proba(rt.features).shape == (len(cancer), 2)


def test_multiclass_forest_round_trip_records_its_skops_types(
    wine: pd.DataFrame, wine_forest: RandomForestClassifier, round_trip: Callable[..., Any]
) -> None:
    rt = round_trip(wine_forest, wine, name="wine-rf")

    assert rt.version.signature.outputs.task is Task.CLASSIFICATION
    assert rt.version.signature.outputs.classes == (0, 1, 2)
    assert rt.version.runtime.classes == (0, 1, 2)
    # corral dumped the estimator itself, so the types it needs are recorded and trusted on load
    assert rt.version.runtime.options["trusted_types"] == [TREE]
    assert_same_classifier(wine_forest, rt.loaded, rt.features)
    frame = rt.loaded.predict_frame(rt.features.head(3))
    assert list(frame.columns) == ["prediction", "proba_0", "proba_1", "proba_2"]


def test_regression_round_trip(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(*xy(diabetes))

    rt = round_trip(model, diabetes, name="diabetes-rf")

    assert rt.version.signature.outputs.task is Task.REGRESSION
    assert rt.version.runtime.classes is None
    assert_same_values(rt.loaded.predict(rt.features), model.predict(rt.features))
    with pytest.raises(SchemaError, match="not a classifier with probabilities"):
        rt.loaded.predict_proba(rt.features)


def test_string_labels_round_trip(wine: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    named = wine.assign(target=wine["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"}))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(*xy(named))

    rt = round_trip(model, named, name="wine-named")

    assert rt.version.runtime.classes == ("barbera", "barolo", "grignolino")
    assert rt.version.signature.outputs.dtype == "string"
    assert_same_classifier(model, rt.loaded, rt.features)


def test_model_fitted_on_arrays_gets_arrays(diabetes: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    features, target = xy(diabetes)
    model = Ridge().fit(features.to_numpy(), target.to_numpy())

    rt = round_trip(model, diabetes, name="diabetes-ridge")

    assert_same_values(rt.loaded.predict(rt.features), model.predict(features.to_numpy()))


def test_classifier_without_predict_proba_keeps_its_classes(wine: pd.DataFrame, round_trip: Callable[..., Any]) -> None:
    model = make_pipeline(StandardScaler(), RidgeClassifier()).fit(*xy(wine))

    rt = round_trip(model, wine, name="wine-ridge")

    assert rt.version.runtime.options["probabilities"] is False
    prediction = rt.loaded.infer(rt.features)
    np.testing.assert_array_equal(prediction.values, model.predict(rt.features))
    assert prediction.classes == (0, 1, 2)
    assert prediction.probabilities is None
    with pytest.raises(SchemaError, match="not a classifier with probabilities"):
        rt.loaded.predict_proba(rt.features)


# -- pickle and joblib need trust -------------------------------------------------


@pytest.mark.parametrize(("suffix", "dump"), [(".pkl", pickle.dump), (".joblib", joblib.dump)])
def test_pickle_file_is_refused_without_trust(
    tmp_path: Path, wine: pd.DataFrame, wine_forest: RandomForestClassifier, registry: Registry, suffix: str, dump: Any
) -> None:
    file = tmp_path / f"model{suffix}"
    with open(file, "wb") as fh:
        dump(wine_forest, fh)

    with pytest.raises(UntrustedArtifactError, match="unpickling can run arbitrary code") as caught:
        registry.log_model(str(file), name="wine-pkl", flavor="sklearn", training_data=wine, target="target")

    assert "trusted=True" in str(caught.value)
    assert registry.list_models() == []


def test_refused_pickle_never_runs(tmp_path: Path, wine: pd.DataFrame, registry: Registry) -> None:
    marker = tmp_path / "pwned"
    file = tmp_path / "model.pkl"
    file.write_bytes(pickle.dumps(Tripwire(marker)))

    with pytest.raises(UntrustedArtifactError):
        registry.log_model(file, name="tripwire", training_data=wine, target="target")

    assert not marker.exists()
    assert registry.list_models() == []


def test_trusted_pickle_file_round_trip_needs_trust_again_on_load(
    tmp_path: Path,
    wine: pd.DataFrame,
    wine_forest: RandomForestClassifier,
    registry: Registry,
    load_version: Callable[..., Any],
) -> None:
    file = tmp_path / "model.pkl"
    file.write_bytes(pickle.dumps(wine_forest))

    kept = registry.log_model(
        str(file),
        name="wine-pkl",
        flavor="sklearn",
        training_data=wine,
        target="target",
        trusted=True,
        options={"serialization": "pickle"},
    )

    assert kept.flavor == "sklearn"
    assert kept.runtime.options["format"] == "pickle"
    assert kept.runtime.classes == (0, 1, 2)
    with pytest.raises(UntrustedArtifactError, match="arbitrary code"):
        registry.load("wine-pkl/1")
    loaded = load_version("wine-pkl/1", trusted=True)
    assert_same_classifier(wine_forest, loaded, xy(wine)[0])


def test_a_trusted_pickle_file_is_stored_with_skops_so_loading_never_runs_code(
    tmp_path: Path, wine: pd.DataFrame, wine_forest: RandomForestClassifier, registry: Registry
) -> None:
    file = tmp_path / "model.pkl"
    file.write_bytes(pickle.dumps(wine_forest))

    version = registry.log_model(str(file), name="wine-pkl", training_data=wine, target="target", trusted=True)

    assert version.runtime.options["format"] == "skops"
    assert_same_classifier(wine_forest, registry.load("wine-pkl/1"), xy(wine)[0])  # no trust needed


def test_joblib_path_is_detected_and_loads_when_trusted(
    tmp_path: Path,
    diabetes: pd.DataFrame,
    registry: Registry,
    load_version: Callable[..., Any],
) -> None:
    features, target = xy(diabetes)
    model = Ridge().fit(features, target)
    file = tmp_path / "ridge.joblib"
    joblib.dump(model, file)

    version = registry.log_model(file, name="ridge", training_data=diabetes, target="target", trusted=True)

    assert version.flavor == "sklearn"
    assert version.signature.outputs.task is Task.REGRESSION
    assert_same_values(load_version("ridge/1", trusted=True).predict(features), model.predict(features))


def test_pickle_serialization_option_needs_trust(
    wine: pd.DataFrame,
    wine_forest: RandomForestClassifier,
    registry: Registry,
    load_version: Callable[..., Any],
) -> None:
    with pytest.raises(UntrustedArtifactError, match="unpickling can run arbitrary code"):
        registry.log_model(
            wine_forest, name="wine-p", training_data=wine, target="target", options={"serialization": "pickle"}
        )
    assert registry.list_models() == []

    version = registry.log_model(
        wine_forest,
        name="wine-p",
        training_data=wine,
        target="target",
        options={"serialization": "pickle"},
        trusted=True,
    )

    assert version.runtime.options["format"] == "pickle"
    with pytest.raises(UntrustedArtifactError):
        registry.load("wine-p/1")
    assert_same_classifier(wine_forest, load_version("wine-p/1", trusted=True), xy(wine)[0])


# -- skops files from elsewhere ------------------------------------------------------


def test_external_skops_file_with_untrusted_types_is_refused_listing_them(
    tmp_path: Path, wine: pd.DataFrame, wine_forest: RandomForestClassifier, registry: Registry
) -> None:
    file = tmp_path / "forest.skops"
    sio.dump(wine_forest, file)

    with pytest.raises(UntrustedArtifactError, match=r"types nobody trusted: sklearn\.tree\._tree\.Tree") as caught:
        registry.log_model(file, name="wine-skops", training_data=wine, target="target")

    assert "trusted_types" in str(caught.value)
    assert registry.list_models() == []


def test_external_skops_file_loads_with_named_trusted_types(
    tmp_path: Path,
    wine: pd.DataFrame,
    wine_forest: RandomForestClassifier,
    registry: Registry,
    load_version: Callable[..., Any],
) -> None:
    file = tmp_path / "forest.skops"
    sio.dump(wine_forest, file)

    version = registry.log_model(
        str(file), name="wine-skops", training_data=wine, target="target", options={"trusted_types": [TREE]}
    )

    assert version.flavor == "sklearn"
    assert version.runtime.options["trusted_types"] == [TREE]
    assert version.runtime.classes == (0, 1, 2)
    # the reviewed types are recorded with the version: loading needs no trust flag
    assert_same_classifier(wine_forest, load_version("wine-skops/1"), xy(wine)[0])


def test_external_skops_file_without_extra_types_needs_no_options(
    tmp_path: Path, cancer: pd.DataFrame, round_trip: Callable[..., Any]
) -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(*xy(cancer))
    file = tmp_path / "lr.skops"
    sio.dump(model, file)
    assert sio.get_untrusted_types(file=file) == []

    rt = round_trip(file, cancer, name="cancer-skops")

    assert rt.version.runtime.classes == (0, 1)
    assert_same_classifier(model, rt.loaded, rt.features)


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_truncated_skops_file_registers_nothing(
    tmp_path: Path, wine: pd.DataFrame, wine_forest: RandomForestClassifier, registry: Registry, keep: float
) -> None:
    whole = tmp_path / "whole.skops"
    sio.dump(wine_forest, whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.skops"
    cut.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])

    what = "empty" if keep == 0 else "a damaged or truncated zip archive"
    with pytest.raises(ModelLoadError, match=f"cut.skops: not a scikit-learn model file: its bytes are {what}"):
        registry.log_model(cut, name="cut", training_data=wine, target="target", options={"trusted_types": [TREE]})

    assert registry.list_models() == []


def test_unreadable_skops_file_is_a_load_error(tmp_path: Path, wine: pd.DataFrame, registry: Registry) -> None:
    import zipfile

    file = tmp_path / "odd.skops"
    with zipfile.ZipFile(file, "w") as archive:
        archive.writestr("schema.json", "{not json")

    with pytest.raises(ModelLoadError, match="not a readable skops file"):
        registry.log_model(file, name="odd", training_data=wine, target="target")

    assert registry.list_models() == []


def test_garbage_pickle_file_is_refused_naming_its_bytes(
    tmp_path: Path, wine: pd.DataFrame, registry: Registry
) -> None:
    file = tmp_path / "model.pkl"
    file.write_bytes(b"this is not a pickle")

    with pytest.raises(ModelLoadError, match=r"model\.pkl: not a scikit-learn model file: its bytes are not a format"):
        registry.log_model(file, name="junk", training_data=wine, target="target", trusted=True)

    assert registry.list_models() == []


def test_a_pickle_that_cannot_be_unpickled_is_a_load_error(
    tmp_path: Path, wine: pd.DataFrame, registry: Registry
) -> None:
    file = tmp_path / "model.pkl"
    file.write_bytes(pickle.dumps([1, 2, 3])[:-3] + b".")  # the PROTO header, then a stream cut short

    with pytest.raises(ModelLoadError, match="could not be unpickled"):
        registry.log_model(file, name="junk", training_data=wine, target="target", trusted=True)

    assert registry.list_models() == []


def test_pickle_of_something_that_is_not_a_model_is_refused(
    tmp_path: Path, wine: pd.DataFrame, registry: Registry
) -> None:
    file = tmp_path / "model.pkl"
    file.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))

    with pytest.raises(FlavorError, match=r"holds a builtins\.dict, not a model with a predict method"):
        registry.log_model(file, name="junk", training_data=wine, target="target", trusted=True)

    assert registry.list_models() == []


def test_missing_file_is_named(tmp_path: Path, wine: pd.DataFrame, registry: Registry) -> None:
    with pytest.raises(FlavorError, match=r"nope\.skops' does not exist"):
        registry.log_model(tmp_path / "nope.skops", name="gone", training_data=wine, target="target")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compress": 3}, "sklearn does not take option(s) compress; it takes: serialization, trusted, trusted_types"),
        ({"serialization": "json"}, "serialization must be 'skops' or 'pickle', got 'json'"),
        ({"trusted_types": TREE}, "trusted_types must be a list of type names"),
    ],
)
def test_bad_options_are_refused_by_name(
    wine: pd.DataFrame,
    wine_forest: RandomForestClassifier,
    registry: Registry,
    options: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(FlavorError) as caught:
        registry.log_model(wine_forest, name="wine", training_data=wine, target="target", options=options)

    assert message in str(caught.value)
    assert registry.list_models() == []


def test_load_refuses_pickle_even_when_called_directly(tmp_path: Path, wine_forest: RandomForestClassifier) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(wine_forest))
    spec = RuntimeSpec("sklearn", Task.CLASSIFICATION, (0, 1, 2), {"format": "pickle", "file": "model.pkl"})

    with pytest.raises(UntrustedArtifactError):
        SklearnRuntime.load(tmp_path, spec)
    assert SklearnRuntime.load(tmp_path, spec, trusted=True).model.n_estimators == 10


def test_stored_skops_types_are_checked_again_on_load(tmp_path: Path, wine_forest: RandomForestClassifier) -> None:
    sio.dump(wine_forest, tmp_path / "model.skops")
    spec = RuntimeSpec("sklearn", Task.CLASSIFICATION, (0, 1, 2), {"format": "skops", "file": "model.skops"})

    with pytest.raises(UntrustedArtifactError, match=r"sklearn\.tree\._tree\.Tree"):
        SklearnRuntime.load(tmp_path, spec)


def test_signature_does_not_promise_probabilities_a_classifier_lacks(wine: pd.DataFrame, registry: Registry) -> None:
    model = make_pipeline(StandardScaler(), RidgeClassifier()).fit(*xy(wine))

    version = registry.log_model(model, name="wine-ridge", training_data=wine, target="target")

    assert version.runtime.options["probabilities"] is False
    assert version.signature.outputs.probabilities is False


def test_labels_come_from_the_probabilities_only_where_sklearn_does_the_same(
    cancer: pd.DataFrame, registry: Registry
) -> None:
    from sklearn.linear_model import SGDClassifier

    x, y = xy(cancer)
    forest = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=10, random_state=0)).fit(x, y)
    svc = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)).fit(x, y)
    fast = registry.log_model(forest, name="forest", training_data=cancer, target="target")
    slow = registry.log_model(svc, name="svc", training_data=cancer, target="target")
    assert fast.runtime.options["labels_from_proba"] is True
    assert slow.runtime.options["labels_from_proba"] is False  # not on the list: predict() is called
    np.testing.assert_array_equal(registry.load(fast.ref).predict(x), forest.predict(x))
    np.testing.assert_array_equal(registry.load(slow.ref).predict(x), svc.predict(x))
