"""``corral alerts ...``: evaluation on demand, listing, acknowledgement and rules, on a real SQLite database."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_monitor_cli import COLUMNS, feed, home

from corral.alerts.entities import METRICS, default_rules
from corral.cli.main import main

__all__ = ["home"]  # the fixture, shared with test_monitor_cli


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def drifted(data: pd.DataFrame) -> pd.DataFrame:
    return data[COLUMNS].assign(**{"mean texture": data["mean texture"] + 8})


def test_evaluate_opens_alerts_that_list_show_and_ack(
    home: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "alerts", "evaluate", "api")
    assert code == 0 and "no value" in out and "No alert opened or resolved." in out and "No notifications due." in out
    assert run(capsys, "alerts", "list")[1].strip() == "No alerts."

    feed(drifted(home))
    code, out, _ = run(capsys, "alerts", "evaluate", "api", "--json")
    report = json.loads(out)
    opened = {c["rule"]: c["alert_id"] for c in report["changes"] if c["action"] == "opened"}
    assert code == 0 and "feature-drift" in opened
    verdicts = {r["rule"]: r["verdict"] for r in report["rules"]}
    assert verdicts["feature-drift"] == "breached" and verdicts["accuracy-drop"] == "no value"
    assert {(d["alert_id"], d["channel"], d["status"]) for d in report["deliveries"]} == {
        (alert, "log", "delivered") for alert in opened.values()
    }
    alert_id = opened["feature-drift"]

    code, out, _ = run(capsys, "alerts", "list", "--json")
    listed = {a["id"]: a for a in json.loads(out)}
    assert set(listed) == set(opened.values())
    assert listed[alert_id]["state"] == "firing" and listed[alert_id]["value"] == 1
    code, out, _ = run(capsys, "alerts", "list", "--state", "firing", "--deployment", "api", "--limit", "10")
    assert code == 0 and alert_id in out and "feature-drift" in out and "acked by" in out
    assert run(capsys, "alerts", "list", "--deployment", "other", "--json")[1].strip() == "[]"
    code, _, err = run(capsys, "alerts", "list", "--state", "open")
    assert code == 1 and "--state must be firing or resolved, got 'open'" in err

    code, out, _ = run(capsys, "alerts", "show", alert_id, "--json")
    shown = json.loads(out)
    assert shown["rule"] == "feature-drift" and "drifted_features is 1" in shown["message"]
    assert [(d["channel"], d["state"], d["status"], d["attempts"]) for d in shown["deliveries"]] == [
        ("log", "firing", "delivered", 1)
    ]
    code, out, _ = run(capsys, "alerts", "show", alert_id)
    assert code == 0 and "Notifications" in out and "delivered" in out and "drifted_features is 1" in out

    code, out, _ = run(capsys, "alerts", "ack", alert_id, "--by", "alice")
    assert code == 0 and f"alert {alert_id} (api: feature-drift, firing) acknowledged by alice" in out
    monkeypatch.setenv("CORRAL_USER", "oncall-bob")
    other = next(a for r, a in opened.items() if r != "feature-drift") if len(opened) > 1 else alert_id
    assert "acknowledged by oncall-bob" in run(capsys, "alerts", "ack", other)[1]
    code, out, _ = run(capsys, "alerts", "list")
    assert "alice" in out
    for unknown in (["show", "no-such-alert"], ["ack", "no-such-alert"]):
        code, _, err = run(capsys, "alerts", *unknown)
        assert code == 1 and "no alert has id 'no-such-alert'" in err

    code, out, _ = run(capsys, "monitor", "api", "--json")
    assert alert_id in [a["id"] for a in json.loads(out)["alerts"]]
    assert "Firing alerts" in run(capsys, "monitor", "api")[1]

    # evaluating again changes nothing (duplicates are suppressed) and has nothing left to send
    code, out, _ = run(capsys, "alerts", "evaluate")
    assert code == 0 and "No alert opened or resolved." in out and "No notifications due." in out

    # a looser rule no longer breaches: the firing alert resolves and a resolved notification goes out
    code, _, _ = run(
        capsys, "alerts", "set-rule", "api", "feature-drift", "--metric", "drifted_features", "--op", ">=",
        "--threshold", "5",
    )  # fmt: skip
    assert code == 0
    code, out, _ = run(capsys, "alerts", "evaluate", "api", "--window", "3600", "--json")
    report = json.loads(out)
    assert {"rule": "feature-drift", "action": "resolved", "alert_id": alert_id, "value": 1.0}.items() <= next(
        c for c in report["changes"] if c["rule"] == "feature-drift"
    ).items()
    assert [(d["alert_id"], d["state"], d["status"]) for d in report["deliveries"]] == [
        (alert_id, "resolved", "delivered")
    ]
    code, out, _ = run(capsys, "alerts", "list", "--state", "resolved", "--json")
    resolved = json.loads(out)
    assert [a["id"] for a in resolved] == [alert_id] and resolved[0]["acked_by"] == "alice"
    code, out, _ = run(capsys, "alerts", "show", alert_id, "--json")
    assert [d["state"] for d in json.loads(out)["deliveries"]] == ["resolved", "firing"]


def test_rules_defaults_set_delete_and_metrics(home: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    defaults = default_rules("api")
    code, out, _ = run(capsys, "alerts", "rules", "api")
    assert code == 0 and "(defaults)" in out and all(r.name in out for r in defaults)
    assert json.loads(run(capsys, "alerts", "rules", "api", "--json")[1]) == [r.to_dict() for r in defaults]

    code, out, _ = run(
        capsys, "alerts", "set-rule", "api", "busy", "--metric", "rows", "--op", ">", "--threshold", "0",
        "--min-samples", "1", "--severity", "info", "--cooldown", "0", "--channel", "log",
    )  # fmt: skip
    assert code == 0 and out.strip() == "rule busy of api: rows > 0 over 3600s, info"
    code, out, _ = run(capsys, "alerts", "rules", "api")
    assert code == 0 and "(defaults)" not in out and "busy" in out and "> 0" in out
    rules = {r["name"]: r for r in json.loads(run(capsys, "alerts", "rules", "api", "--json")[1])}
    assert set(rules) == {"busy", *(r.name for r in defaults)}  # the defaults were copied in
    assert rules["busy"]["channels"] == ["log"] and rules["busy"]["severity"] == "info"

    code, _, err = run(capsys, "alerts", "set-rule", "api", "x", "--metric", "nope", "--op", ">", "--threshold", "1")
    assert code == 1 and "unknown metric 'nope'" in err
    code, _, err = run(
        capsys, "alerts", "set-rule", "api", "x", "--metric", "rows", "--op", ">", "--threshold", "1",
        "--channel", "pager",
    )  # fmt: skip
    assert code == 1 and "unknown channels ['pager']" in err
    code, _, err = run(capsys, "alerts", "set-rule", "api", "x", "--metric", "rows", "--op", "!=", "--threshold", "1")
    assert code == 1 and "operator '!='" in err
    code, _, err = run(capsys, "alerts", "set-rule", "nope", "x", "--metric", "rows", "--op", ">", "--threshold", "1")
    assert code == 1 and "no deployment named 'nope'" in err
    code, out, err = run(
        capsys, "alerts", "set-rule", "api", "minute", "--metric", "rows", "--op", ">", "--threshold", "1",
        "--window", "60",
    )  # fmt: skip
    assert code == 1 and "window 60 s is not one monitoring keeps" in err
    code, out, err = run(
        capsys, "alerts", "set-rule", "api", "minute", "--metric", "rows", "--op", ">", "--threshold", "1",
        "--disable",
    )  # fmt: skip
    assert code == 0 and "(disabled)" in out

    # the rows rule fires on the first traffic; disabled rules are left alone
    feed(home[COLUMNS].head(5))
    code, out, _ = run(capsys, "alerts", "evaluate", "--json")
    report = json.loads(out)
    assert [(c["rule"], c["action"]) for c in report["changes"]] == [("busy", "opened")]
    assert "minute" not in {r["rule"] for r in report["rules"]}
    assert [d["channel"] for d in report["deliveries"]] == ["log"]
    code, out, _ = run(capsys, "alerts", "list")
    assert code == 0 and "busy" in out and "info" in out

    assert run(capsys, "alerts", "delete-rule", "api", "busy")[1].strip() == "rule busy of api deleted"
    assert "busy" not in {r["name"] for r in json.loads(run(capsys, "alerts", "rules", "api", "--json")[1])}
    code, _, err = run(capsys, "alerts", "delete-rule", "api", "busy")
    assert code == 1 and "has no alert rule named 'busy'" in err
    code, _, err = run(capsys, "alerts", "rules", "nope")
    assert code == 1 and "no deployment named 'nope'" in err

    code, out, _ = run(capsys, "alerts", "metrics")
    assert code == 0 and "drift_score:<feature>" in out and "rows served in the window" in out
    listed = json.loads(run(capsys, "alerts", "metrics", "--json")[1])
    assert [m["name"] for m in listed] == list(METRICS)

    for bad, message in ((["nope"], "no deployment named 'nope'"), (["--window", "60"], "--window must be one of")):
        code, _, err = run(capsys, "alerts", "evaluate", *bad)
        assert code == 1 and message in err
