from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.app import build_services
from corral.cli.main import main
from corral.monitoring.aggregator import Aggregator, output_columns
from corral.settings import Settings

COLUMNS = ["mean radius", "mean texture"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cancer: pd.DataFrame) -> pd.DataFrame:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    services = build_services(Settings())
    data = cancer[[*COLUMNS, "target"]]
    model = LogisticRegression(max_iter=1000).fit(data[COLUMNS], data["target"])
    services.registry.log_model(model, name="cancer", training_data=data, target="target")
    services.registry.promote("cancer", 1)
    services.deployments.create("api", model="cancer")
    services.close()
    return data


def feed(frame: pd.DataFrame) -> None:
    services = build_services(Settings())
    try:
        aggregator = Aggregator((3600,))
        aggregator.track("api", "cancer", 1, services.registry.get_profile("cancer", 1))
        aggregator.update("api", "cancer", 1, frame, output_columns((frame["mean radius"] > 14).astype(int).to_numpy()))
        services.database.monitoring.add_windows(aggregator.drain())
    finally:
        services.close()


def test_monitor_shows_features_sorted_by_drift(home: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "api"]) == 0
    assert "no traffic recorded yet" in capsys.readouterr().out
    shifted = home[COLUMNS].assign(**{"mean texture": home["mean texture"] + 8})
    feed(shifted)
    assert main(["monitor", "api"]) == 0
    out = capsys.readouterr().out
    assert "569 rows" in out and "1 of 2 features drifted: mean texture" in out
    assert out.index("mean texture") < out.index("mean radius")
    assert main(["monitor", "api", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["drifted_features"] == ["mean texture"] and report["window"]["rows"] == 569


def test_monitor_refuses_unknown_windows_and_deployments(
    home: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitor", "api", "--window", "60"]) == 1
    assert "--window must be one of [3600, 86400] seconds, got 60" in capsys.readouterr().err
    assert main(["monitor", "nope"]) == 1
    assert "no deployment named 'nope'" in capsys.readouterr().err
