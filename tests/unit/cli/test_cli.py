from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.app import build_services
from corral.cli.main import main
from corral.registry.service import Registry
from corral.settings import Settings
from corral.storage.sql.engine import head_revision


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CORRAL_USER", "cli-tester")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path, cancer: pd.DataFrame) -> Registry:
    registry = build_services(Settings()).registry
    data = cancer[["mean radius", "mean texture", "target"]]
    model = LogisticRegression(max_iter=1000).fit(data.drop(columns="target"), data["target"])
    for _ in range(2):
        registry.log_model(model, name="cancer", training_data=data, target="target", metrics={"auc": 0.9})
    return registry


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_list_show_versions(registry: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "cancer" in out and "latest" in out
    code, out, _ = run(capsys, "models", "list", "--json")
    assert json.loads(out)[0]["name"] == "cancer" and json.loads(out)[0]["latest_version"] == 2
    code, out, _ = run(capsys, "models", "show", "cancer")
    assert code == 0 and "Versions" in out and "auc=0.9" in out
    code, out, _ = run(capsys, "models", "versions", "cancer", "--json")
    versions = json.loads(out)
    assert [v["version"] for v in versions] == [1, 2] and versions[0]["created_by"] == "cli-tester"


def test_promote_rollback_history(registry: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "models", "promote", "cancer", "1")[1].strip() == "cancer@champion → version 1"
    code, out, _ = run(capsys, "models", "promote", "cancer", "2", "--reason", "higher recall")
    assert code == 0 and "(was 1)" in out
    code, out, _ = run(capsys, "models", "rollback", "cancer", "-r", "alert storm")
    assert code == 0 and "version 2 → 1" in out
    code, out, _ = run(capsys, "models", "promote", "cancer", "2", "--json")
    assert json.loads(out)["from_version"] == 1 and json.loads(out)["to_version"] == 2
    code, out, _ = run(capsys, "models", "rollback", "cancer", "--json")
    assert json.loads(out)["action"] == "rollback" and json.loads(out)["to_version"] == 1
    code, out, _ = run(capsys, "models", "history", "cancer", "--json")
    events = json.loads(out)
    assert [(e["action"], e["to_version"], e["actor"]) for e in events] == [
        ("set", 1, "cli-tester"),
        ("set", 2, "cli-tester"),
        ("rollback", 1, "cli-tester"),
        ("set", 2, "cli-tester"),
        ("rollback", 1, "cli-tester"),
    ]
    assert events[1]["reason"] == "higher recall"
    code, out, _ = run(capsys, "models", "history", "cancer")
    assert "alert storm" in out
    assert registry.resolve("cancer@champion").version == 1


def test_archive_restore_delete(registry: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "archive", "cancer", "2", "--reason", "bad data", "--json")
    assert code == 0 and json.loads(out)["status"] == "archived" and json.loads(out)["status_reason"] == "bad data"
    code, out, _ = run(capsys, "models", "versions", "cancer", "--ready", "--json")
    assert [v["version"] for v in json.loads(out)] == [1]
    assert run(capsys, "models", "restore", "cancer", "2")[0] == 0
    run(capsys, "models", "promote", "cancer", "2")
    code, _, err = run(capsys, "models", "delete", "cancer", "2", "--yes")
    assert code == 1 and "alias champion points at it" in err
    code, out, _ = run(capsys, "models", "delete", "cancer", "1", "--yes")
    assert code == 0 and "deleted" in out


def test_lineage_table_and_json(registry: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "models", "promote", "cancer", "2")
    code, out, _ = run(capsys, "lineage", "cancer", "champion")
    assert code == 0 and "Lineage of cancer/2" in out and "training data sha256" in out and "mean radius" in out
    code, out, _ = run(capsys, "lineage", "cancer", "1", "--json")
    data = json.loads(out)
    assert data["lineage"]["data"]["rows"] == 569 and data["profile"]["rows"] == 569
    assert data["signature"]["inputs"][0]["name"] == "mean radius"


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["models", "show", "nobody"], 1, "error: no model named 'nobody'"),
        (["models", "promote", "cancer", "7"], 1, "model 'cancer' has no version 7"),
        (["models", "promote", "../etc", "1"], 1, "invalid model name"),
        (["models", "rollback", "cancer"], 1, "is not set, so there is nothing to roll back"),
        (["lineage", "cancer", "shadow"], 1, "no alias 'shadow'"),
        (["models", "promote", "cancer", "one"], 2, "Invalid value for 'version'"),
        (["models", "frobnicate"], 2, "No such command 'frobnicate'"),
    ],
)
def test_errors_are_one_clear_line_and_an_exit_code(
    registry: Registry, capsys: pytest.CaptureFixture[str], args: list[str], code: int, fragment: str
) -> None:
    got, out, err = run(capsys, *args)
    assert got == code
    assert fragment in err.replace("\n", " ") or fragment in out
    assert "Traceback" not in err


def test_empty_store_explains_what_to_do(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "No models yet" in out


def test_db_commands(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "db", "upgrade")
    head = head_revision()
    assert code == 0 and f"empty → {head}" in out
    code, out, _ = run(capsys, "db", "current")
    assert code == 0 and f"database: {head}; this corral: {head}" in out


def test_bad_database_url_is_a_clear_error(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("CORRAL_DATABASE_URL", "mysql://x@localhost/db")
    code, _, err = run(capsys, "models", "list")
    assert code == 1 and "unsupported database URL 'mysql://x@localhost/db'" in err


@pytest.mark.slow
def test_demo_registers_two_versions_and_promotes_the_better(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo")
    assert code == 0 and "Next, look at" in out
    registry = build_services(Settings()).registry
    versions = registry.list_versions("breast-cancer")
    assert len(versions) == 2
    champion = registry.resolve("breast-cancer@champion")
    challenger = registry.resolve("breast-cancer@challenger")
    assert champion.lineage.metrics["roc_auc"] >= challenger.lineage.metrics["roc_auc"]
    assert {champion.version, challenger.version} == {1, 2}
    assert build_services(Settings()).deployments.get("breast-cancer").alias == "champion"
    # the monitoring part: drift found in the car-loan traffic, an alert raised and delivered to the webhook
    assert "alert rule feature-drift: opened" in out and "the webhook receiver got 1 notification(s)" in out
    assert "firing warning: car-loan: drifted_features is 1, >= 1 (4000 samples): car_value" in out
    services = build_services(Settings())
    [alert] = services.alerts.list_alerts(deployment="car-loan", state="firing")
    assert {d.status for d in services.alerts.store.list_deliveries(alert_id=alert.id)} == {"delivered"}
    labelled = services.monitor.snapshot("car-loan", "car-loan", 1, window=3600)["performance"]["labelled"]
    assert labelled >= 4000  # the first 4,000 requests, and its share of the rollout traffic after them
    # the logistic-regression shadow scored every request and is compared on the same labelled ones
    assert "car-loan: champion and shadow on the same requests" in out
    shadow = [r for r in services.database.audit.search(deployment="car-loan", limit=10_000) if r.role == "shadow"]
    assert len(shadow) >= 4000 and 2 in {r.version for r in shadow}
    # the drift alert triggered the retraining pipeline: its candidate passed the gate and was rolled out to
    # champion in stages; the careless candidate was stopped at the gate
    assert "car-loan@champion is now version 3" in out
    runs = {r.pipeline: r for r in services.pipelines.store.list_runs()}
    assert runs["car-loan-retrain"].state == "succeeded" and runs["car-loan-retrain"].trigger == "alert"
    assert runs["car-loan-careless"].state == "rejected" and "significantly worse" in runs["car-loan-careless"].reason
    stages = [e.reason for e in services.registry.alias_history("car-loan") if e.actor.startswith("pipeline:")]
    assert "rollout of car-loan: shadow" in stages and "rollout of car-loan: canary 25%" in stages
    # the slow candidate passed the gate, shadowed, was taken off by the guard's latency rule and rolled back
    assert runs["car-loan-hotfix"].state == "succeeded" and runs["car-loan-hotfix"].candidate == "car-loan/4"
    assert "rollout of car-loan:4 on car-loan rolled back" in out and "p99 latency" in out
    [guarded] = [a for a in services.alerts.list_alerts(deployment="car-loan") if a.rule == "guard:car-loan:4"]
    assert "p99 latency" in guarded.message
    rolled = [e for e in services.registry.alias_history("car-loan", "candidate") if e.from_version == 4]
    assert rolled[-1].action == "remove" and rolled[-1].reason.startswith("rolled back from car-loan")
    assert services.registry.resolve("car-loan@champion").version == 3


def test_console_script_is_installed() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("corral")), "version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("corral ")


def test_a_bad_setting_is_one_line_naming_the_variable(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("CORRAL_SERVING__MAX_BODY_BYTES", "10")
    code, _, err = run(capsys, "models", "list")
    assert code == 2
    assert "invalid setting CORRAL_SERVING__MAX_BODY_BYTES: Input should be greater than or equal to 1024" in err
    assert "Traceback" not in err
