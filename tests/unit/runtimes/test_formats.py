"""Model files are what their bytes say, whatever their names: detection, registration and loading.

Each attack is a file whose name lies: a pickle dressed as a skops file or an ONNX model, a zip dressed as a
joblib file. The pickles carry a :class:`Tripwire`, so a test also proves nothing was unpickled.
"""

from __future__ import annotations

import gzip
import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from models_for_tests import Tripwire, xy
from skl2onnx import to_onnx
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from corral.core.schema import Task
from corral.errors import FlavorError, UnknownFlavorError, UnsafeArtifactError, UntrustedArtifactError
from corral.registry.service import Registry
from corral.runtimes import loader
from corral.runtimes.base import RuntimeSpec
from corral.runtimes.onnx import OnnxRuntime
from corral.runtimes.sklearn import SklearnRuntime


@pytest.fixture(scope="module")
def logistic(wine: pd.DataFrame) -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(*xy(wine))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def tripwire_pickle(path: Path, marker: Path, protocol: int = 5) -> Path:
    path.write_bytes(pickle.dumps(Tripwire(marker), protocol=protocol))
    return path


# -- sniff: the bytes, never the name ---------------------------------------------------------


def test_sniff_names_every_format(tmp_path: Path, logistic: object, diabetes: pd.DataFrame) -> None:
    def file(name: str, data: bytes) -> Path:
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    sio.dump(logistic, tmp_path / "real.skops")
    joblib.dump(logistic, tmp_path / "real.gz", compress=3)
    features, target = xy(diabetes)
    onnx_bytes = to_onnx(LinearRegression().fit(features, target), features.to_numpy()[:1].astype(np.float32))
    plain_zip = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")

    assert loader.sniff(file("a.onnx", pickle.dumps([1], protocol=2))) == loader.PICKLE
    assert loader.sniff(file("b.onnx", pickle.dumps([1], protocol=0))) == loader.PICKLE  # no header: parsed
    assert loader.sniff(file("c.pkl", pickle.dumps([1], protocol=1))) == loader.PICKLE
    assert loader.sniff(tmp_path / "real.gz") == loader.COMPRESSED
    assert loader.sniff(file("d.pkl", gzip.compress(b"anything"))) == loader.COMPRESSED
    assert loader.sniff(tmp_path / "real.skops") == loader.SKOPS
    assert loader.sniff(file("e.pkl", (tmp_path / "real.skops").read_bytes())) == loader.SKOPS
    assert loader.sniff(plain_zip) == loader.ZIP
    assert loader.sniff(file("f.skops", (tmp_path / "real.skops").read_bytes()[:200])) == loader.BROKEN_ZIP
    assert loader.sniff(file("g.bin", onnx_bytes.SerializeToString())) == loader.ONNX
    assert loader.sniff(file("h.onnx", b"")) == loader.EMPTY
    assert loader.sniff(file("i.onnx", b"\x08\x07" * 10)) == loader.UNKNOWN  # a ModelProto with no graph
    assert loader.sniff(file("j.pkl", b"this is not a pickle")) == loader.UNKNOWN


@pytest.mark.parametrize(
    ("name", "flavor"),
    [("model.pkl", "sklearn"), ("model.onnx", "sklearn"), ("model.skops", "sklearn"), ("model.bin", "sklearn")],
)
def test_a_pickle_is_detected_as_a_pickle_whatever_its_name(
    tmp_path: Path, marker: Path, name: str, flavor: str
) -> None:
    assert loader.detect_flavor(tripwire_pickle(tmp_path / name, marker)) == flavor
    assert not marker.exists()


def test_detection_names_what_unknown_bytes_are(tmp_path: Path) -> None:
    file = tmp_path / "weights.bin"
    file.write_bytes(b"\x00\x01garbage")

    with pytest.raises(UnknownFlavorError, match=r"weights\.bin: its bytes are not a format corral recognises"):
        loader.detect_flavor(file)


# -- registration: the name never decides how a file is read --------------------------------


def test_a_pkl_that_is_really_a_skops_zip_loads_as_skops_without_trust(
    tmp_path: Path, wine: pd.DataFrame, logistic: object, registry: Registry
) -> None:
    file = tmp_path / "model.pkl"
    sio.dump(logistic, file)

    version = registry.log_model(file, name="disguised", training_data=wine, target="target")

    assert version.runtime.options["format"] == "skops"
    loaded = registry.load("disguised/1")  # no trust: nothing is unpickled
    np.testing.assert_array_equal(loaded.predict(xy(wine)[0]), logistic.predict(xy(wine)[0]))  # type: ignore[attr-defined]


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_skops_file_that_is_really_a_pickle_needs_trust_like_any_pickle(
    tmp_path: Path, wine: pd.DataFrame, registry: Registry, marker: Path, protocol: int
) -> None:
    file = tripwire_pickle(tmp_path / "model.skops", marker, protocol)

    with pytest.raises(UntrustedArtifactError, match=r"refusing to load model\.skops: it is a pickle") as caught:
        registry.log_model(file, name="liar", training_data=wine, target="target")

    assert "unpickling can run arbitrary code" in str(caught.value)
    assert not marker.exists()
    assert registry.list_models() == []


def test_a_onnx_file_that_is_really_a_pickle_is_refused_unread(
    tmp_path: Path, wine: pd.DataFrame, registry: Registry, marker: Path
) -> None:
    file = tripwire_pickle(tmp_path / "model.onnx", marker)

    with pytest.raises(UntrustedArtifactError, match=r"model\.onnx: it is a pickle"):
        registry.log_model(file, name="liar", training_data=wine, target="target")
    with pytest.raises(FlavorError, match=r"model\.onnx: not a valid ONNX model: its bytes are a pickle"):
        registry.log_model(file, name="liar", training_data=wine, target="target", flavor="onnx")

    assert not marker.exists()
    assert registry.list_models() == []


def test_a_compressed_joblib_named_onnx_is_a_pickle(
    tmp_path: Path, wine: pd.DataFrame, registry: Registry, logistic: object
) -> None:
    file = tmp_path / "model.onnx"
    joblib.dump(logistic, file, compress=("gzip", 3))

    with pytest.raises(UntrustedArtifactError, match=r"model\.onnx: it is a compressed stream, as joblib writes"):
        registry.log_model(file, name="gz", training_data=wine, target="target")
    with pytest.raises(FlavorError, match=r"its bytes are a compressed stream"):
        registry.log_model(file, name="gz", training_data=wine, target="target", flavor="onnx")
    assert registry.list_models() == []


def test_a_garbage_onnx_file_is_refused_naming_its_bytes(
    tmp_path: Path, wine: pd.DataFrame, registry: Registry
) -> None:
    file = tmp_path / "model.onnx"
    file.write_bytes(b"GIF89a\x00\x00 not a model")

    with pytest.raises(FlavorError, match=r"model\.onnx: not a valid ONNX model: its bytes are not a format corral"):
        registry.log_model(file, name="junk", training_data=wine, target="target")
    assert registry.list_models() == []


def test_a_joblib_file_that_is_really_a_zip_is_refused_naming_it(
    tmp_path: Path, wine: pd.DataFrame, registry: Registry
) -> None:
    file = tmp_path / "model.joblib"
    with zipfile.ZipFile(file, "w") as archive:
        archive.writestr("model/weights.npy", b"\x93NUMPY")

    for trusted in (False, True):
        with pytest.raises(
            UnsafeArtifactError, match=r"model\.joblib: not a scikit-learn model file: its bytes are a zip archive"
        ):
            registry.log_model(file, name="zip", training_data=wine, target="target", trusted=trusted)
    assert registry.list_models() == []


def test_an_onnx_model_named_pkl_is_read_as_onnx(tmp_path: Path, diabetes: pd.DataFrame, registry: Registry) -> None:
    features, target = xy(diabetes)
    model = LinearRegression().fit(features, target)
    file = tmp_path / "model.pkl"
    file.write_bytes(to_onnx(model, features.to_numpy()[:1].astype(np.float32)).SerializeToString())

    version = registry.log_model(file, name="onnx-pkl", training_data=diabetes, target="target")

    assert version.flavor == "onnx"
    np.testing.assert_allclose(registry.load("onnx-pkl/1").predict(features), model.predict(features), rtol=1e-4)


# -- loading: the stored file is checked again -------------------------------------------------


def test_a_stored_file_recorded_as_skops_that_is_a_pickle_is_never_unpickled(tmp_path: Path, marker: Path) -> None:
    tripwire_pickle(tmp_path / "model.skops", marker)
    spec = RuntimeSpec("sklearn", Task.CLASSIFICATION, (0, 1), {"format": "skops", "file": "model.skops"})

    with pytest.raises(UntrustedArtifactError, match=r"model\.skops: it is a pickle"):
        SklearnRuntime.load(tmp_path, spec)
    with pytest.raises(UnsafeArtifactError, match=r"model\.skops is not a readable skops file: its bytes are a pickle"):
        SklearnRuntime.load(tmp_path, spec, trusted=True)  # a spec that lies about its file: refused even trusted
    assert not marker.exists()


def test_a_stored_file_recorded_as_pickle_that_is_not_one_is_refused(tmp_path: Path, logistic: object) -> None:
    sio.dump(logistic, tmp_path / "model.pkl")
    spec = RuntimeSpec("sklearn", Task.CLASSIFICATION, (0, 1, 2), {"format": "pickle", "file": "model.pkl"})

    with pytest.raises(UnsafeArtifactError, match=r"model\.pkl should be a pickle but its bytes are a skops file"):
        SklearnRuntime.load(tmp_path, spec, trusted=True)


def test_a_stored_onnx_file_that_is_a_pickle_is_refused(tmp_path: Path, marker: Path) -> None:
    tripwire_pickle(tmp_path / "model.onnx", marker)
    spec = RuntimeSpec("onnx", Task.REGRESSION, options={"file": "model.onnx"})

    with pytest.raises(UnsafeArtifactError, match=r"model\.onnx: not a valid ONNX model: its bytes are a pickle"):
        OnnxRuntime.load(tmp_path, spec, trusted=True)
    assert not marker.exists()


# -- skops: the refusal lists every type nobody trusted ---------------------------------------


def test_the_skops_refusal_lists_every_untrusted_type(tmp_path: Path, wine: pd.DataFrame, registry: Registry) -> None:
    voting = VotingClassifier(
        [("tree", DecisionTreeClassifier(max_depth=2)), ("hist", HistGradientBoostingClassifier(max_iter=3))],
        voting="soft",
    )
    model = make_pipeline(FunctionTransformer(np.log1p), voting).fit(*xy(wine))
    file = tmp_path / "many.skops"
    sio.dump(model, file)
    untrusted = sio.get_untrusted_types(file=file)
    assert len(untrusted) >= 3

    with pytest.raises(UntrustedArtifactError) as caught:
        registry.log_model(file, name="many", training_data=wine, target="target")

    assert f"types nobody trusted: {', '.join(sorted(untrusted))}." in str(caught.value)
    assert registry.list_models() == []
    # naming all but one still refuses, listing the one left
    with pytest.raises(UntrustedArtifactError, match=rf"types nobody trusted: {sorted(untrusted)[-1]}\."):
        registry.log_model(
            file, name="many", training_data=wine, target="target", options={"trusted_types": sorted(untrusted)[:-1]}
        )
    version = registry.log_model(
        file, name="many", training_data=wine, target="target", options={"trusted_types": untrusted}
    )
    assert version.runtime.options["trusted_types"] == sorted(untrusted)


def test_a_forest_dumped_by_corral_records_its_types_and_loads_without_options(
    wine: pd.DataFrame, registry: Registry
) -> None:
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(*xy(wine))

    version = registry.log_model(forest, name="forest", training_data=wine, target="target")

    assert version.runtime.options["trusted_types"] == ["sklearn.tree._tree.Tree"]
    assert registry.load("forest/1").predict(xy(wine)[0]).tolist() == forest.predict(xy(wine)[0]).tolist()
