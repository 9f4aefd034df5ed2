"""``corral audit``: verify (and find tampering), public key, checkpoint, show, search and export."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.app import build_services
from corral.audit.records import PredictionRecord
from corral.cli import audit as audit_cli
from corral.cli import main as cli_main
from corral.cli.main import main
from corral.settings import Settings

if not any(group.name == "audit" for group in cli_main.app.registered_groups):  # until main.py wires it
    cli_main.app.add_typer(audit_cli.app, name="audit")

COLUMNS = ["mean radius", "mean texture"]
T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, cancer: pd.DataFrame) -> Path:
    """A registered, promoted model and 30 recorded predictions for customers C-0..C-2 (built once)."""
    folder = tmp_path_factory.mktemp("audit-cli") / "home"
    services = build_services(Settings(home=folder, user="alice"))
    data = cancer[[*COLUMNS, "target"]]
    model = LogisticRegression(max_iter=1000).fit(data[COLUMNS], data["target"])
    version = services.registry.log_model(model, name="cancer", training_data=data, target="target", params={"C": 1.0})
    services.registry.promote("cancer", 1, reason="best on holdout")
    services.database.audit.append(
        [
            PredictionRecord(
                prediction_id=f"p{i}",
                timestamp=T0 + timedelta(minutes=i),
                deployment="api" if i % 3 else "batch",
                model="cancer",
                version=1,
                inputs={"mean radius": 10.0 + i, "mean texture": 20.0, "customer_id": f"C-{i % 3}"},
                output=i % 2,
                probabilities=(0.4, 0.6),
                artifact_sha256=version.artifact_sha256,
                data_sha256=version.lineage.data.sha256 if version.lineage.data else None,
            )
            for i in range(30)
        ]
    )
    services.close()
    return folder


@pytest.fixture
def home(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the template's CORRAL_HOME."""
    folder = tmp_path / "home"
    shutil.copytree(template, folder)
    monkeypatch.setenv("CORRAL_HOME", str(folder))
    monkeypatch.setenv("CORRAL_USER", "alice")
    monkeypatch.setenv("COLUMNS", "200")
    return folder


def test_verify_passes_then_finds_an_edited_row_by_id(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "checkpoint"]) == 0
    assert "Checkpoint of record 30" in capsys.readouterr().out
    assert (home / "audit" / "checkpoints" / f"{30:016d}.json").exists()
    assert main(["audit", "verify"]) == 0
    assert "OK: 30 records match" in capsys.readouterr().out
    conn = sqlite3.connect(home / "corral.db")
    with conn:
        conn.execute("UPDATE predictions SET output = '0' WHERE prediction_id = 'p11'")
    conn.close()
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert "error: the prediction log does not verify" in err
    assert "altered at record 12 (prediction p11): record 12 (p11) was altered" in err
    assert main(["audit", "verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["first_problem"]["prediction_id"] == "p11"
    assert main(["audit", "verify", "--from", "20", "--to", "25"]) == 1  # no checkpoint before 20: from genesis
    assert main(["audit", "verify", "--from", "5", "--to", "4"]) == 1
    assert "must not be before" in capsys.readouterr().err


def test_public_key_is_pem_and_stable(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "public-key"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("-----BEGIN PUBLIC KEY-----") and first.rstrip().endswith("-----END PUBLIC KEY-----")
    assert main(["audit", "public-key"]) == 0
    assert capsys.readouterr().out == first


def test_show_prints_the_record_and_the_versions_lineage(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", "p4"]) == 0
    out = capsys.readouterr().out
    assert "Prediction p4" in out and "customer_id=C-1" in out
    assert "training data sha256" in out and "params                C=1" in out
    assert "champion" in out and "alice" in out and "best on holdout" in out
    assert main(["audit", "show", "p4", "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["record"]["prediction_id"] == "p4" and detail["record"]["seq"] == 5
    version = detail["version"]
    assert version["lineage"]["params"] == {"C": 1.0} and version["lineage"]["data"]["rows"] == 569
    assert version["artifact_matches_record"] is True
    [move] = version["aliases"]
    assert (move["alias"], move["to_version"], move["actor"]) == ("champion", 1, "alice")
    assert main(["audit", "show", "nope-123"]) == 1
    assert "nope-123" in capsys.readouterr().err


def test_search_filters_and_pages(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "search", "--field", "customer_id=C-1", "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert [r["prediction_id"] for r in page["records"]] == [f"p{i}" for i in range(1, 30, 3)]
    assert page["next_after"] is None
    args = ["audit", "search", "--deployment", "api", "--output", "1", "--limit", "3", "--json"]
    first = json.loads(capsys.readouterr().out or "{}") if main(args) == 0 else None
    assert first is not None and [r["prediction_id"] for r in first["records"]] == ["p1", "p5", "p7"]
    assert first["next_after"] == 8
    assert main([*args, "--after", "8"]) == 0
    assert [r["prediction_id"] for r in json.loads(capsys.readouterr().out)["records"]] == ["p11", "p13", "p17"]
    since, until = (T0 + timedelta(minutes=10)).isoformat(), "2024-05-01T12:12:00"
    assert main(["audit", "search", "--since", since, "--until", until, "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "p10" in out and "p11" in out and "p12" not in out and "More:" not in out
    assert main(["audit", "search", "--model", "cancer", "--limit", "2"]) == 0
    assert "More: add --after 2" in capsys.readouterr().out
    assert main(["audit", "search", "--field", "customer_id"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["audit", "search", "--since", "yesterday"]) == 2
    assert main(["audit", "search", "--deployment", "none"]) == 0
    assert "No recorded predictions match" in capsys.readouterr().out


def test_export_writes_csv_parquet_and_jsonl(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "export", str(tmp_path / "out.csv"), "--field", "customer_id=C-2"]) == 0
    assert "Exported 10 predictions" in capsys.readouterr().out
    frame = pd.read_csv(tmp_path / "out.csv")
    assert len(frame) == 10 and {"input.customer_id", "input.mean radius", "prediction_id", "hash"} <= set(frame)
    assert set(frame["input.customer_id"]) == {"C-2"}
    assert main(["audit", "export", str(tmp_path / "all.parquet")]) == 0
    table = pd.read_parquet(tmp_path / "all.parquet")
    assert len(table) == 30 and list(table["seq"]) == list(range(1, 31))
    assert main(["audit", "export", str(tmp_path / "sub" / "api.jsonl"), "--deployment", "api"]) == 0
    lines = (tmp_path / "sub" / "api.jsonl").read_text().splitlines()
    assert len(lines) == 20 and json.loads(lines[0])["inputs"]["customer_id"] == "C-1"
    assert main(["audit", "export", str(tmp_path / "out.xlsx")]) == 1
    assert "must end in .csv, .parquet, .jsonl" in capsys.readouterr().err


def test_checkpoint_on_an_empty_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "empty"))
    assert main(["audit", "checkpoint"]) == 0
    assert "nothing to checkpoint" in capsys.readouterr().out
    assert main(["audit", "verify"]) == 0
