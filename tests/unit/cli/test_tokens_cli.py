"""``corral tokens ...`` on the database, and ``corral serve``'s refusal to listen widely without authentication."""

from __future__ import annotations

import json
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.app import build_services
from corral.cli.main import main
from corral.security.service import hash_secret
from corral.settings import Settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CORRAL_USER", "cli-tester")
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("CORRAL_AUTH__ENABLED", "CORRAL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_revoke(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "tokens", "create", "grafana", "--role", "viewer", "--expires", "30d")
    secret = out.strip()
    assert code == 0 and secret.startswith("corral_") and "shown once" in err and "role viewer" in err
    code, out, _ = run(capsys, "tokens", "create", "ci", "-r", "deployer", "--json")
    made = json.loads(out)
    assert made["role"] == "deployer" and made["token"].startswith("corral_") and made["created_by"] == "cli-tester"

    code, out, _ = run(capsys, "tokens", "list")
    assert code == 0 and "grafana" in out and "viewer" in out and "active" in out and secret not in out
    code, out, _ = run(capsys, "tokens", "list", "--json")
    listed = json.loads(out)
    assert [t["name"] for t in listed] == ["grafana", "ci"] and all(
        "hash" not in t and "token" not in t for t in listed
    )
    assert listed[0]["expires_at"] is not None and listed[1]["expires_at"] is None

    code, out, _ = run(capsys, "tokens", "revoke", "grafana")
    assert code == 0 and "revoked token grafana" in out
    code, out, _ = run(capsys, "tokens", "revoke", made["id"], "--json")
    assert json.loads(out)["state"] == "revoked"
    code, out, _ = run(capsys, "tokens", "list", "--active")
    assert "No tokens." in out
    tokens = build_services(Settings()).tokens
    assert [t.hash for t in tokens.all()] == [hash_secret(secret), hash_secret(made["token"])]


def test_refusals_are_one_line_errors(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "tokens", "create", "x", "--role", "root")
    assert code == 1 and "unknown role 'root': use one of viewer, predictor, publisher, deployer, auditor, admin" in err
    code, _, err = run(capsys, "tokens", "create", "x", "--role", "viewer", "--expires", "soon")
    assert code == 1 and "not a duration: 'soon'" in err
    run(capsys, "tokens", "create", "x", "--role", "viewer")
    code, _, err = run(capsys, "tokens", "create", "x", "--role", "viewer")
    assert code == 1 and "a token named 'x' exists" in err
    code, _, err = run(capsys, "tokens", "revoke", "ghost")
    assert code == 1 and "no token has the name or id 'ghost'" in err
    assert run(capsys, "tokens", "create", "y")[0] == 2  # --role is required


def test_rotate_admin_rewrites_the_token_file(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "tokens", "rotate-admin", "--json")
    first = json.loads(out)
    path = Path(first["file"])
    assert code == 0 and path == (home / "admin-token").resolve() and stat.S_IMODE(path.stat().st_mode) == 0o600
    old = path.read_text()
    code, out, _ = run(capsys, "tokens", "rotate-admin")
    assert code == 0 and "the old one is revoked" in out and path.read_text() != old
    states = {t["id"]: t["state"] for t in json.loads(run(capsys, "tokens", "list", "--json")[1])}
    assert states[first["id"]] == "revoked" and sorted(states.values()) == ["active", "revoked"]


def test_denials_are_listed(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime

    from corral.security.entities import Denial

    assert "No refused requests." in run(capsys, "tokens", "denials")[1]
    tokens = build_services(Settings()).tokens
    tokens.record_denial(
        Denial(datetime.now(UTC), "POST", "/v1/deployments", "/v1/deployments", 403, "viewer may not", "10.1.2.3")
    )
    code, out, _ = run(capsys, "tokens", "denials")
    assert code == 0 and "/v1/deployments" in out and "10.1.2.3" in out
    code, out, _ = run(capsys, "tokens", "denials", "--json", "--since", "2000-01-01T00:00:00+00:00")
    assert json.loads(out)[0]["reason"] == "viewer may not"
    assert run(capsys, "tokens", "denials", "--since", "yesterday")[0] == 1


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """``corral serve`` up to the point where uvicorn would start (its call is recorded instead)."""
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("CORRAL_AUTH__BIND_HOST", "unset")  # serve sets it; restored after the test
    previous = signal.getsignal(signal.SIGTERM)
    yield calls
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "10.0.0.5", "example.com"])
def test_serve_refuses_to_listen_widely_with_authentication_off(
    home: Path, host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list
) -> None:
    monkeypatch.setenv("CORRAL_AUTH__ENABLED", "false")
    code, _, err = run(capsys, "serve", "--host", host)
    assert code == 1 and f"refusing to listen on {host} with authentication disabled" in err
    assert uvicorn_calls == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_serve_with_authentication_off_stays_on_loopback_and_warns(
    home: Path, host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, uvicorn_calls: list
) -> None:
    monkeypatch.setenv("CORRAL_AUTH__ENABLED", "false")
    code, _, err = run(capsys, "serve", "--host", host)
    assert code == 0 and json.loads(err)["level"] == "warning" and "authentication is disabled" in err
    assert [c["host"] for c in uvicorn_calls] == [host] and not (home / "admin-token").exists()


def test_serve_makes_the_admin_token_before_its_workers_start(
    home: Path, capsys: pytest.CaptureFixture[str], uvicorn_calls: list
) -> None:
    code, _, err = run(capsys, "serve", "--host", "0.0.0.0", "--workers", "2")
    token_file = home / "admin-token"
    assert code == 0 and f"the admin token is in {token_file.resolve()}" in err
    assert [c["host"] for c in uvicorn_calls] == ["0.0.0.0"] and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert Settings().auth.bind_host == "0.0.0.0"  # the workers accept this machine's names
    before = token_file.read_text()
    code, _, err = run(capsys, "serve")  # a second start: nothing made, nothing printed
    assert code == 0 and "admin token" not in err and token_file.read_text() == before
    assert uvicorn_calls[-1]["host"] == "127.0.0.1"
