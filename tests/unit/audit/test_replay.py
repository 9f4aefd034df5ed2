"""Replay: the archived version re-runs a recorded input and says whether the answer is the same."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from corral.audit.records import PredictionRecord
from corral.audit.replay import replay, replay_recorded
from corral.errors import PredictionNotFoundError, SchemaError
from corral.registry.loaded import LoadedModel
from corral.registry.service import Registry
from corral.storage import open_database

T = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
FEATURES = ["mean radius", "mean texture", "worst area"]


def recorded(loaded: LoadedModel, rows: pd.DataFrame, prefix: str = "p") -> list[PredictionRecord]:
    prediction = loaded.infer(rows)
    probabilities = prediction.probabilities
    return [
        PredictionRecord(
            f"{prefix}{i}",
            T,
            "d",
            loaded.version.name,
            loaded.version.version,
            rows.iloc[i].to_dict(),
            prediction.values[i].item(),
            None if probabilities is None else tuple(float(p) for p in probabilities[i]),
            artifact_sha256=loaded.version.artifact_sha256,
        )
        for i in range(len(rows))
    ]


def test_a_recorded_prediction_replays_identically_and_an_altered_one_does_not(
    registry: Registry, cancer: pd.DataFrame, tmp_path: Path
) -> None:
    data = cancer[[*FEATURES, "target"]]
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(data[FEATURES], data["target"])
    registry.log_model(model, name="rf", training_data=data, target="target")
    store = open_database(f"sqlite:///{tmp_path}/c.db").audit
    [stored] = store.append(recorded(registry.load("rf/1"), data[FEATURES].iloc[[5]]))

    def load(name: str, version: int) -> LoadedModel:
        return registry.load(f"{name}/{version}")

    result = replay_recorded(store, load, "p0")  # read back from SQLite: JSON values, as the log keeps them
    assert result.identical and result.artifact_matches is True
    assert result.recorded_output == result.replayed_output == stored.output
    assert result.replayed_probabilities == pytest.approx(stored.probabilities, abs=1e-12)
    assert result.max_abs_difference == 0.0
    assert result.to_dict()["identical"] is True

    flipped = replace(stored, output=1 - stored.output)
    different = replay(flipped, load("rf", 1))
    assert not different.identical and different.replayed_output == stored.output
    assert different.recorded_output == 1 - stored.output

    nudged = replace(stored, probabilities=(stored.probabilities[0] - 1e-9, stored.probabilities[1] + 1e-9))
    result = replay(nudged, load("rf", 1), artifact_sha256="0" * 64)
    assert not result.identical and result.max_abs_difference == pytest.approx(1e-9, rel=1e-3)
    assert result.artifact_matches is False

    with pytest.raises(PredictionNotFoundError):
        replay_recorded(store, load, "nope")
    with pytest.raises(SchemaError, match="missing columns"):
        replay(replace(stored, inputs={"mean radius": 1.0}), load("rf", 1))


def test_a_regressor_replays_its_value(registry: Registry, diabetes: pd.DataFrame) -> None:
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(
        diabetes.drop(columns="target"), diabetes["target"]
    )
    registry.log_model(model, name="reg", training_data=diabetes, target="target")
    loaded = registry.load("reg/1")
    [record] = recorded(loaded, diabetes.drop(columns="target").iloc[[3]])
    same = replay(record, loaded)
    assert same.identical and same.recorded_probabilities is None and same.replayed_probabilities is None
    off = replay(replace(record, output=record.output + 1e-6), loaded)
    assert not off.identical and off.max_abs_difference == pytest.approx(1e-6, rel=1e-3)
