from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.app import build_audit, build_monitoring, build_server, build_services
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
    services.registry.log_model(model, name="cancer", training_data=data, target="target", metrics={"accuracy": 0.9})
    services.registry.promote("cancer", 1)
    services.deployments.create("api", model="cancer")
    services.close()
    return data


def feed(frame: pd.DataFrame) -> None:
    services = build_services(Settings())
    try:
        aggregator = Aggregator((3600,))
        profile = services.registry.get_profile("cancer", 1)
        assert profile is not None
        aggregator.track("api", "cancer", 1, profile)
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
    assert "┃ issues" in out and "Performance" not in out  # no prediction log behind these windows
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


def serve(frame: pd.DataFrame, chunk: int = 50) -> None:
    """Answer ``frame`` through the model server, as `corral serve` does: audit log and monitoring windows."""
    services = build_services(Settings())
    audit, monitoring = build_audit(services), build_monitoring(services)
    assert audit is not None and monitoring is not None
    server = build_server(services, sinks=[audit, monitoring])

    async def scenario() -> None:
        await monitoring.start()
        await server.start()
        try:
            for start in range(0, len(frame), chunk):
                await server.predict("api", frame.iloc[start : start + chunk])
        finally:
            await server.stop()
            await monitoring.stop()
            await audit.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        services.close()


def labels_file(path: Path, data: pd.DataFrame) -> Path:
    """A CSV of the recorded predictions' ids and their true labels (the audit log keeps the inputs)."""
    services = build_services(Settings())
    try:
        records = services.database.audit.search(deployment="api", limit=10_000)
    finally:
        services.close()
    truth = {tuple(row[c] for c in COLUMNS): int(row["target"]) for row in data.to_dict("records")}
    frame = pd.DataFrame(
        {
            "id": [r.prediction_id for r in records],
            "truth": [truth[tuple(r.inputs[c] for c in COLUMNS)] for r in records],
        }
    )
    frame.to_csv(path, index=False)
    return path


def test_feedback_from_a_file_shows_performance_in_monitor(
    home: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = home.head(200)
    serve(served[COLUMNS])
    assert main(["monitor", "api", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["window"]["rows"] == 200 and before["alerts"] == []
    assert before["performance"]["rows"] == 200 and before["performance"]["labelled"] == 0
    assert "accuracy" in before["performance"]["estimated"]  # CBPE needs no labels

    path = labels_file(tmp_path / "labels.csv", served)
    assert main(["feedback", str(path), "--id-column", "id", "--label-column", "truth"]) == 0
    assert "200 recorded, 0 unchanged (of 200 labels)" in capsys.readouterr().out
    assert main(["feedback", str(path), "--id-column", "id", "--label-column", "truth"]) == 0
    assert "0 recorded, 200 unchanged" in capsys.readouterr().out

    assert main(["monitor", "api", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)["performance"]
    assert after["labelled"] == 200 and after["registered"] == {"accuracy": 0.9}
    accuracy = after["realized"]["accuracy"]
    assert 0.5 < accuracy["value"] <= 1 and accuracy["lower"] <= accuracy["value"] <= accuracy["upper"]
    assert after["compared_to_registered"]["accuracy"]["change"] == pytest.approx(accuracy["value"] - 0.9)

    assert main(["monitor", "api"]) == 0
    out = capsys.readouterr().out
    assert "Performance: 200 labelled of 200 rows" in out and "estimated (CBPE)" in out
    line = next(line for line in out.splitlines() if "│ accuracy" in line)
    assert f"{accuracy['value']:.4g} [" in line and "0.9 " in line and f"{accuracy['value'] - 0.9:+.4g}" in line


def test_feedback_refuses_bad_files(home: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serve(home[COLUMNS].head(5))
    empty = tmp_path / "empty.csv"
    empty.write_text("prediction_id,label\n")
    assert main(["feedback", str(empty)]) == 1
    assert "no rows: nothing to send" in capsys.readouterr().err
    path = labels_file(tmp_path / "labels.csv", home)
    assert main(["feedback", str(path)]) == 1
    err = capsys.readouterr().err
    assert "no column 'prediction_id' or 'label'" in err and "its columns: id, truth" in err
    assert main(["feedback", str(path), "--id-column", "id"]) == 1
    assert "no column 'label'" in capsys.readouterr().err
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("prediction_id,label\nno-such-id,1\n")
    assert main(["feedback", str(unknown)]) == 1
    assert "no recorded prediction has id no-such-id" in capsys.readouterr().err
    wrong = tmp_path / "wrong.csv"
    pd.read_csv(path).assign(truth="maybe").to_csv(wrong, index=False)
    assert main(["feedback", str(wrong), "--id-column", "id", "--label-column", "truth"]) == 1
    assert "not one of the model's classes" in capsys.readouterr().err
    assert main(["feedback", str(tmp_path / "labels.txt")]) == 1
    assert "unknown file type '.txt'" in capsys.readouterr().err


def test_feedback_reads_json_lines_from_stdin(
    home: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(home[COLUMNS].head(3))
    ids = pd.read_csv(labels_file(tmp_path / "labels.csv", home))["id"].tolist()
    lines = "".join(json.dumps({"prediction_id": i, "label": 1}) + "\n" for i in ids) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    assert main(["feedback", "-"]) == 0
    assert "3 recorded, 0 unchanged" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("{not json\n"))
    assert main(["feedback", "-"]) == 1
    assert "stdin line 1 is not JSON" in capsys.readouterr().err


def test_monitor_config_shows_changes_and_resets(home: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor-config", "api", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["detectors"]["numerical"] == ["psi"]
    args = ["monitor-config", "api", "--detector", "numerical=ks,psi", "--threshold", "ks=0.01", "--quality"]
    assert main([*args, "min_rows=50"]) == 0
    out = capsys.readouterr().out
    assert "ks, psi" in out and "ks=0.01" in out and "min_rows=50" in out
    shifted = home[COLUMNS].assign(**{"mean texture": home["mean texture"] + 8})
    feed(shifted)
    assert main(["monitor", "api", "--json"]) == 0
    texture = next(f for f in json.loads(capsys.readouterr().out)["features"] if f["name"] == "mean texture")
    assert {d["detector"] for d in texture["drift"]["all"]} == {"ks", "psi"}
    for bad, message in (
        (["--detector", "numerical=nope"], "no drift detector named 'nope'"),
        (["--threshold", "ks=high"], "must be a number"),
        (["--quality", "bogus=1"], "unknown quality thresholds ['bogus']"),
        (["--detector", "numerical"], "takes KEY=VALUE"),
    ):
        assert main(["monitor-config", "api", *bad]) == 1
        assert message in capsys.readouterr().err
    assert main(["monitor-config", "api", "--reset", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["thresholds"] == {}
    assert main(["monitor-config", "ghost"]) == 1
