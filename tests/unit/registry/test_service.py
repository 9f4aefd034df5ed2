from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from registry_test_models import Forgetful, Threshold
from sklearn.linear_model import LinearRegression, LogisticRegression

from corral.core.fingerprint import fingerprint_frame
from corral.core.schema import FeatureKind, Task
from corral.errors import (
    AliasNotFoundError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    InvalidNameError,
    InvalidReferenceError,
    ModelNotFoundError,
    RegistrationError,
    RollbackError,
    SchemaError,
    SignatureMismatchError,
    UnknownFlavorError,
    VersionArchivedError,
    VersionInUseError,
    VersionNotFoundError,
)
from corral.registry.entities import AliasAction, VersionStatus
from corral.registry.service import Registry


@pytest.fixture(scope="module")
def small(cancer: pd.DataFrame) -> pd.DataFrame:
    return cancer[["mean radius", "mean texture", "mean smoothness", "target"]].iloc[:200].copy()


@pytest.fixture(scope="module")
def logistic(small: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(small.drop(columns="target"), small["target"])


def _blobs(registry: Registry) -> list[Path]:
    return [p for p in Path(registry.artifacts.url).rglob("*") if p.is_file()]


def _register(registry: Registry, model: object, data: pd.DataFrame, name: str = "cancer", **kw: object) -> object:
    return registry.log_model(model, name=name, training_data=data, target="target", **kw)


# -- registration -------------------------------------------------------------------


def test_log_model_records_everything_lineage_needs(registry: Registry, small: pd.DataFrame, logistic) -> None:
    v = registry.log_model(
        logistic,
        name="cancer",
        training_data=small,
        target="target",
        params={"C": 1.0, "solver": "lbfgs"},
        metrics={"auc": np.float64(0.97)},
        tags={"team": "risk"},
        source="s3://lake/cancer.parquet",
        description="baseline",
        code_commit="abc123",
    )
    assert (v.name, v.version, v.flavor, v.status) == ("cancer", 1, "sklearn", VersionStatus.READY)
    assert v.signature.columns == ["mean radius", "mean texture", "mean smoothness"]
    assert v.signature.outputs.task is Task.CLASSIFICATION and v.signature.outputs.classes == (0, 1)
    feature = v.signature.feature("mean radius")
    assert (feature.min, feature.max) == (small["mean radius"].min(), small["mean radius"].max())
    assert v.lineage.data == fingerprint_frame(small, source="s3://lake/cancer.parquet")
    assert (v.lineage.data.rows, v.lineage.data.columns) == (200, 4)
    assert v.lineage.params == {"C": 1.0, "solver": "lbfgs"} and v.lineage.metrics == {"auc": 0.97}
    assert v.lineage.code_commit == "abc123"
    assert {"scikit-learn", "numpy", "pandas", "skops", "corral"} <= set(v.lineage.requirements)
    assert v.lineage.python and v.created_by == "tester" and v.created_at.tzinfo is not None
    assert v.tags == {"team": "risk"} and v.description == "baseline"
    assert registry.artifacts.exists(v.artifact_sha256)
    assert registry.get_version("cancer", 1) == v


def test_reference_profile_covers_features_and_outputs(registry: Registry, small: pd.DataFrame, logistic) -> None:
    _register(registry, logistic, small)
    profile = registry.get_profile("cancer", 1)
    assert profile is not None and profile.rows == 200
    assert set(profile.features) == {"mean radius", "mean texture", "mean smoothness"}
    assert profile.features["mean radius"].kind is FeatureKind.NUMERICAL
    labels = profile.outputs["prediction"]
    assert labels.kind is FeatureKind.CATEGORICAL and sum(labels.categories.values()) == 200
    assert set(profile.outputs) == {"prediction", "proba_0", "proba_1"}


def test_versions_increment_and_load_returns_the_right_one(registry: Registry, small: pd.DataFrame) -> None:
    x, y = small.drop(columns="target"), small["target"]
    weak = LogisticRegression(C=1e-4, max_iter=1000).fit(x, y)
    strong = LogisticRegression(C=10.0, max_iter=1000).fit(x, y)
    assert _register(registry, weak, small).version == 1
    assert _register(registry, strong, small).version == 2
    np.testing.assert_allclose(registry.load("cancer/1").predict_proba(x), weak.predict_proba(x), rtol=1e-12)
    np.testing.assert_allclose(registry.load("cancer@latest").predict_proba(x), strong.predict_proba(x), rtol=1e-12)
    assert [v.version for v in registry.list_versions("cancer")] == [1, 2]
    assert registry.get_model("cancer").latest_version == 2


def test_columns_in_another_order_than_the_model_are_aligned(registry: Registry, small: pd.DataFrame, logistic) -> None:
    shuffled = small[["target", "mean smoothness", "mean radius", "mean texture"]]
    v = _register(registry, logistic, shuffled)
    assert v.signature.columns == ["mean radius", "mean texture", "mean smoothness"]
    x = small.drop(columns="target")
    np.testing.assert_array_equal(registry.load(v.ref).predict(x[::-1]), logistic.predict(x[::-1]))


def test_regressor_and_custom_model(registry: Registry, diabetes: pd.DataFrame) -> None:
    reg = LinearRegression().fit(diabetes.drop(columns="target"), diabetes["target"])
    v = registry.log_model(reg, name="diabetes", training_data=diabetes, target="target")
    assert v.signature.outputs.task is Task.REGRESSION
    assert registry.get_profile("diabetes", 1).outputs["prediction"].kind is FeatureKind.NUMERICAL
    custom = registry.log_model(Threshold("bmi", 0.0), name="bmi-rule", training_data=diabetes, target="target")
    assert custom.flavor == "python"
    loaded = registry.load("bmi-rule/1")
    np.testing.assert_array_equal(loaded.predict(diabetes.drop(columns="target")), (diabetes["bmi"] > 0).astype(int))


def test_git_commit_of_the_training_code_is_detected(
    registry: Registry, small: pd.DataFrame, logistic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@e.st", "-c", "user.name=t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "train.py").write_text("print('train')\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "train"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    clean = _register(registry, logistic, small)
    assert (clean.lineage.code_commit, clean.lineage.code_dirty) == (head, False)
    (repo / "train.py").write_text("print('changed')\n")
    assert _register(registry, logistic, small).lineage.code_dirty is True
    monkeypatch.chdir(tmp_path)
    outside = _register(registry, logistic, small)
    assert (outside.lineage.code_commit, outside.lineage.code_dirty) == (None, None)


# -- registration refuses bad input and writes nothing ------------------------------


@pytest.mark.parametrize("name", ["../x", "", "x" * 300, "a/b", "white space"])
def test_invalid_names_register_nothing(registry: Registry, small: pd.DataFrame, logistic, name: str) -> None:
    with pytest.raises(InvalidNameError):
        _register(registry, logistic, small, name=name)
    assert registry.list_models() == [] and _blobs(registry) == []


@pytest.mark.parametrize(
    ("mutate", "error", "fragment"),
    [
        (lambda d: d.drop(columns="mean texture"), SignatureMismatchError, r"missing \['mean texture'\]"),
        (lambda d: d.assign(colour="red"), SignatureMismatchError, r"unexpected \['colour'\]"),
        (lambda d: d.rename(columns={"mean radius": "radius"}), SignatureMismatchError, "missing"),
        (lambda d: d.drop(columns="target"), SignatureMismatchError, "target column 'target' is not in training_data"),
        (lambda d: d.to_numpy(), RegistrationError, "must be a pandas DataFrame"),
    ],
)
def test_training_data_that_does_not_fit_the_model(
    registry: Registry, small: pd.DataFrame, logistic, mutate, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        _register(registry, logistic, mutate(small))
    assert registry.list_models() == [] and _blobs(registry) == []


def test_forgotten_target_is_pointed_out(registry: Registry, small: pd.DataFrame, logistic) -> None:
    with pytest.raises(SignatureMismatchError, match="did you forget target="):
        registry.log_model(logistic, name="cancer", training_data=small)


def test_unnamed_model_with_wrong_column_count(registry: Registry, small: pd.DataFrame) -> None:
    x = small.drop(columns="target")
    numpy_fitted = LogisticRegression(max_iter=1000).fit(x.to_numpy(), small["target"])
    with pytest.raises(SignatureMismatchError, match="fitted on 3 features but training data has 2"):
        _register(registry, numpy_fitted, small.drop(columns="mean texture"))
    v = _register(registry, numpy_fitted, small)  # right count, no names: fine
    np.testing.assert_array_equal(registry.load(v.ref).predict(x), numpy_fitted.predict(x.to_numpy()))


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        (
            {"flavor": "tensorflow"},
            UnknownFlavorError,
            "unknown flavor 'tensorflow'; known flavors: external, lightgbm",
        ),
        ({"params": {"fn": print}}, RegistrationError, r"params\['fn'\].*not a JSON value"),
        ({"metrics": {"auc": float("nan")}}, RegistrationError, "metric 'auc' must be finite"),
        ({"metrics": {"auc": "high"}}, RegistrationError, "metric 'auc' must be a number"),
        ({"tags": {"team": 3}}, RegistrationError, "tags are strings"),
        ({"options": {"compress": True}}, Exception, "does not take option"),
    ],
)
def test_bad_arguments_register_nothing(
    registry: Registry, small: pd.DataFrame, logistic, kwargs: dict, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        _register(registry, logistic, small, **kwargs)
    assert registry.list_models() == []


def test_unknown_model_object(registry: Registry, small: pd.DataFrame) -> None:
    with pytest.raises(UnknownFlavorError, match=r"does not know how to save a builtins\.dict"):
        _register(registry, {"weights": [1, 2]}, small)


def test_without_training_data_a_signature_is_required(registry: Registry, logistic) -> None:
    with pytest.raises(RegistrationError, match="needs training_data"):
        registry.log_model(logistic, name="cancer")


def test_model_that_does_not_survive_saving_is_refused(registry: Registry, diabetes: pd.DataFrame) -> None:
    with pytest.raises(RegistrationError, match="does not reproduce the original's predictions"):
        registry.log_model(Forgetful("bmi", 0.0), name="rule", training_data=diabetes, target="target")
    assert registry.list_models() == []


# -- aliases --------------------------------------------------------------------------


@pytest.fixture
def three(registry: Registry, small: pd.DataFrame, logistic) -> Registry:
    for _ in range(3):
        _register(registry, logistic, small)
    return registry


def test_promote_resolve_and_history(three: Registry) -> None:
    three.promote("cancer", 1, reason="first")
    three.promote("cancer", 3, reason="better auc", actor="alice")
    three.set_alias("cancer", "challenger", 2)
    assert three.get_model("cancer").aliases == {"challenger": 2, "champion": 3}
    assert three.resolve("cancer@champion").version == 3
    history = three.alias_history("cancer", "champion")
    assert [(e.from_version, e.to_version, e.actor, e.reason) for e in history] == [
        (None, 1, "tester", "first"),
        (1, 3, "alice", "better auc"),
    ]
    assert all(e.action is AliasAction.SET and e.at.tzinfo is not None for e in history)


def test_promoting_to_the_current_version_records_nothing(three: Registry) -> None:
    first = three.promote("cancer", 2)
    assert three.promote("cancer", 2) == first
    assert len(three.alias_history("cancer")) == 1


def test_rollback_walks_back_through_the_history(three: Registry) -> None:
    for version in (1, 2, 3):
        three.promote("cancer", version)
    event = three.rollback("cancer", reason="latency regression")
    assert (event.from_version, event.to_version, event.action) == (3, 2, AliasAction.ROLLBACK)
    assert three.rollback("cancer").to_version == 1
    with pytest.raises(RollbackError, match="no earlier version to roll back to"):
        three.rollback("cancer")
    assert three.resolve("cancer@champion").version == 1


def test_rollback_needs_history(three: Registry) -> None:
    with pytest.raises(RollbackError, match="is not set"):
        three.rollback("cancer")
    three.promote("cancer", 1)
    with pytest.raises(RollbackError, match="it is cancer/1"):
        three.rollback("cancer")


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda r: r.promote("cancer", 9), VersionNotFoundError, "model 'cancer' has no version 9"),
        (lambda r: r.promote("nobody", 1), ModelNotFoundError, "no model named 'nobody'"),
        (lambda r: r.promote("cancer", 1, alias="Bad Alias"), InvalidNameError, "invalid alias"),
        (lambda r: r.resolve("cancer@shadow"), AliasNotFoundError, r"no alias 'shadow' \(aliases: none yet\)"),
        (lambda r: r.resolve("cancer"), InvalidReferenceError, "write name/VERSION"),
        (lambda r: r.remove_alias("cancer", "champion"), AliasNotFoundError, "no alias 'champion'"),
    ],
)
def test_alias_mistakes(three: Registry, call, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        call(three)
    assert three.get_model("cancer").aliases == {}


# -- archive and delete ---------------------------------------------------------------


def test_archived_versions_are_kept_but_never_aliased_or_latest(three: Registry) -> None:
    archived = three.archive("cancer", 3, reason="leaks a future feature")
    assert (archived.status, archived.status_reason) == (VersionStatus.ARCHIVED, "leaks a future feature")
    with pytest.raises(VersionArchivedError, match="cancer/3 is archived"):
        three.promote("cancer", 3)
    assert three.resolve("cancer@latest").version == 2
    assert [v.version for v in three.list_versions("cancer", include_archived=False)] == [1, 2]
    rows = three.get_version("cancer", 1).signature.inputs
    sample = {f.name: [f.min] for f in rows}
    assert len(three.load("cancer/3").predict(sample)) == 1  # still loadable and usable for audit and replay
    three.restore("cancer", 3)
    assert three.promote("cancer", 3).to_version == 3


def test_aliased_version_cannot_be_archived_or_deleted(three: Registry) -> None:
    three.promote("cancer", 2)
    with pytest.raises(VersionInUseError, match="alias champion points at it"):
        three.archive("cancer", 2)
    with pytest.raises(VersionInUseError, match="alias champion points at it"):
        three.delete_version("cancer", 2)
    assert three.get_version("cancer", 2).status is VersionStatus.READY


def test_guard_blocks_deletion_of_versions_predictions_reference(three: Registry) -> None:
    three.guards.append(lambda name, version: "412 stored predictions reference it" if version == 1 else None)
    with pytest.raises(VersionInUseError, match="cancer/1: 412 stored predictions reference it; archive it instead"):
        three.delete_version("cancer", 1)
    three.delete_version("cancer", 2)
    assert [v.version for v in three.list_versions("cancer")] == [1, 3]


def test_delete_removes_an_artifact_only_when_unshared(registry: Registry, diabetes: pd.DataFrame) -> None:
    rule = Threshold("bmi", 0.0)
    a = registry.log_model(rule, name="rule", training_data=diabetes, target="target")
    b = registry.log_model(rule, name="rule", training_data=diabetes, target="target")
    assert a.artifact_sha256 == b.artifact_sha256  # deterministic archives: same files, same bytes
    registry.delete_version("rule", 1)
    assert registry.artifacts.exists(b.artifact_sha256)
    registry.delete_version("rule", 2)
    assert not registry.artifacts.exists(b.artifact_sha256)
    assert registry.log_model(rule, name="rule", training_data=diabetes, target="target").version == 3  # never reused


# -- loading ----------------------------------------------------------------------------


def test_tampered_artifact_is_refused_naming_version_and_hashes(
    registry: Registry, small: pd.DataFrame, logistic
) -> None:
    v = _register(registry, logistic, small)
    (blob,) = _blobs(registry)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(
        ArtifactIntegrityError, match=f"artifact of cancer/1 is corrupt: expected sha256 {v.artifact_sha256}"
    ):
        registry.load("cancer/1")
    blob.write_bytes(bytes(data[:100]))
    with pytest.raises(ArtifactIntegrityError) as info:
        registry.load("cancer/1")
    assert info.value.expected == v.artifact_sha256 and info.value.actual in str(info.value)
    blob.unlink()
    with pytest.raises(ArtifactNotFoundError, match=v.artifact_sha256):
        registry.load("cancer/1")


def test_loaded_model_validates_input(registry: Registry, small: pd.DataFrame, logistic, diabetes) -> None:
    _register(registry, logistic, small)
    model = registry.load("cancer/1")
    with pytest.raises(SchemaError, match="missing columns: mean smoothness"):
        model.predict(small[["mean radius", "mean texture"]])
    rows = small.drop(columns="target").head(3).to_dict(orient="records")
    frame = model.predict_frame(rows)
    assert list(frame.columns) == ["prediction", "proba_0", "proba_1"]
    assert model.classes == (0, 1) and "cancer/1" in repr(model)
    reg = registry.log_model(
        LinearRegression().fit(diabetes.drop(columns="target"), diabetes["target"]),
        name="diabetes",
        training_data=diabetes,
        target="target",
    )
    with pytest.raises(SchemaError, match="not a classifier"):
        registry.load(reg.ref).predict_proba(diabetes.drop(columns="target"))


def test_a_versions_requirements_are_edited_by_name_and_checked(registry: Registry, cancer: pd.DataFrame) -> None:
    from sklearn.linear_model import LogisticRegression

    from corral.errors import ConfigurationError

    data = cancer[["mean radius", "mean texture", "target"]]
    model = LogisticRegression(max_iter=1000).fit(data[["mean radius", "mean texture"]], data["target"])
    version = registry.log_model(model, name="reqs", training_data=data, target="target")
    assert "scikit-learn" in version.lineage.requirements

    edited = registry.set_requirements("reqs", 1, {"scikit-learn": "1.2.2", "skops": None})
    assert edited.lineage.requirements["scikit-learn"] == "1.2.2" and "skops" not in edited.lineage.requirements
    assert registry.get_version("reqs", 1).lineage.requirements == edited.lineage.requirements

    assert registry.set_requirements("reqs", 1, {"numpy": "2.0.0"}, replace_all=True).lineage.requirements == {
        "numpy": "2.0.0"
    }
    with pytest.raises(ConfigurationError, match="records no requirement 'torch' to drop"):
        registry.set_requirements("reqs", 1, {"torch": None})
    with pytest.raises(ConfigurationError, match="is not a release number"):
        registry.set_requirements("reqs", 1, {"numpy": "2.0 --index-url http://evil"})
    assert registry.get_version("reqs", 1).lineage.requirements == {"numpy": "2.0.0"}  # nothing half-written
