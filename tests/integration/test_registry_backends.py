"""The whole registry story on each real database: register, alias, roll back, archive, load."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from corral.errors import ArtifactIntegrityError, VersionInUseError
from corral.registry.service import Registry
from corral.storage import open_artifact_store, open_registry_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    return str(request.getfixturevalue("postgres_url"))


def test_registry_end_to_end(database_url: str, tmp_path: Path, wine: pd.DataFrame) -> None:
    name = f"wine-{uuid.uuid4().hex[:8]}"
    registry = Registry(open_registry_store(database_url), open_artifact_store(str(tmp_path / "a")), actor="ops")
    x, y = wine.drop(columns="target"), wine["target"]
    models = [HistGradientBoostingClassifier(max_iter=n, random_state=0).fit(x, y) for n in (5, 20)]
    for model in models:
        registry.log_model(model, name=name, training_data=wine, target="target", metrics={"n": 1})
    registry.promote(name, 1, reason="first")
    registry.promote(name, 2, reason="more trees")
    assert registry.rollback(name, reason="regression").to_version == 1

    # a second process would see the same state: reopen everything from the URL
    reopened = Registry(open_registry_store(database_url), open_artifact_store(str(tmp_path / "a")), actor="ops")
    assert reopened.get_model(name).aliases == {"champion": 1}
    assert [e.action for e in reopened.alias_history(name)] == ["set", "set", "rollback"]
    champion = reopened.load(f"{name}@champion")
    np.testing.assert_array_equal(champion.predict(x), models[0].predict(x))
    np.testing.assert_allclose(reopened.load(f"{name}/2").predict_proba(x), models[1].predict_proba(x), rtol=1e-12)
    profile = reopened.get_profile(name, 2)
    assert profile is not None and set(profile.features) == set(x.columns)
    assert profile.outputs["prediction"].categories.keys() <= {"0", "1", "2"}

    with pytest.raises(VersionInUseError):
        reopened.archive(name, 1)
    reopened.archive(name, 2, reason="superseded")
    assert reopened.resolve(f"{name}@latest").version == 1

    version = reopened.get_version(name, 1)
    blob = next(p for p in (tmp_path / "a").rglob(version.artifact_sha256))
    blob.write_bytes(blob.read_bytes()[:-10])
    with pytest.raises(ArtifactIntegrityError, match=f"artifact of {name}/1 is corrupt"):
        reopened.load(f"{name}@champion")
