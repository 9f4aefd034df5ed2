"""The first admin token: made on first start, written once to <home>/admin-token with mode 0600, never
re-created while an admin token exists, refused when others can read it; rotation; what clients read."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

import corral
from corral.errors import ConfigurationError
from corral.security.bootstrap import (
    ensure_admin_token,
    local_token,
    read_token_file,
    rotate_admin_token,
    token_path,
)
from corral.security.entities import Role
from corral.security.service import Tokens, hash_secret
from corral.settings import AuthSettings, Settings
from corral.storage.memory import MemoryTokenStore


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(MemoryTokenStore(), actor="ops", cache_seconds=0)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_writes_the_admin_token_once_with_mode_0600(
    tokens: Tokens, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = token_path(tmp_path / "home")
    with caplog.at_level(logging.INFO, logger="corral.security"):
        issued = ensure_admin_token(tokens, path)
    assert issued is not None and issued.token.role is Role.ADMIN and issued.token.name == "admin"
    assert mode(path) == 0o600 and mode(path.parent) & 0o077 == 0
    assert path.read_text() == issued.secret + "\n"
    assert tokens.authenticate(read_token_file(path)) == issued.token
    assert [t.hash for t in tokens.all()] == [hash_secret(issued.secret)]  # the store holds the hash only
    assert str(path) in caplog.text and issued.secret not in caplog.text  # the log names the file, never the token

    before = (path.read_bytes(), path.stat().st_ino, path.stat().st_mtime_ns)
    assert ensure_admin_token(tokens, path) is None  # later starts change nothing
    assert (path.read_bytes(), path.stat().st_ino, path.stat().st_mtime_ns) == before
    assert len(tokens.all()) == 1


def test_the_file_is_not_written_again_while_an_admin_token_exists(tokens: Tokens, tmp_path: Path) -> None:
    tokens.create("root", "admin")
    path = token_path(tmp_path)
    assert ensure_admin_token(tokens, path) is None and not path.exists()


def test_a_file_made_with_a_loose_umask_is_still_0600(tokens: Tokens, tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        ensure_admin_token(tokens, token_path(tmp_path))
    finally:
        os.umask(previous)
    assert mode(token_path(tmp_path)) == 0o600


def test_a_file_others_can_read_is_refused(tokens: Tokens, tmp_path: Path) -> None:
    path = token_path(tmp_path)
    issued = ensure_admin_token(tokens, path)
    assert issued is not None
    for loose in (0o640, 0o604, 0o644):
        path.chmod(loose)
        with pytest.raises(ConfigurationError, match=rf"group or others can read it \(mode 0{loose:o}\).*chmod 600"):
            read_token_file(path)
        with pytest.raises(ConfigurationError):
            local_token(path, environ={})
    path.chmod(0o600)
    assert local_token(path, environ={}) == issued.secret


def test_clients_take_corral_token_first_then_the_file(tokens: Tokens, tmp_path: Path) -> None:
    path = token_path(tmp_path)
    assert local_token(path, environ={}) is None
    issued = ensure_admin_token(tokens, path)
    assert issued is not None
    assert local_token(path, environ={"CORRAL_TOKEN": "corral_from-env"}) == "corral_from-env"
    assert local_token(path, environ={}) == issued.secret


def test_the_sdk_hands_out_the_header(tokens: Tokens, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORRAL_TOKEN", raising=False)
    settings = Settings(home=tmp_path)
    assert corral.auth_headers(settings) == {}
    issued = ensure_admin_token(tokens, settings.resolved_token_file())
    assert issued is not None
    assert corral.auth_headers(settings) == {"Authorization": f"Bearer {issued.secret}"}
    elsewhere = tmp_path / "keys" / "token"
    other = ensure_admin_token(Tokens(MemoryTokenStore(), actor="x"), elsewhere)
    assert other is not None
    moved = Settings(home=tmp_path, auth=AuthSettings(token_file=elsewhere))
    assert corral.auth_headers(moved) == {"Authorization": f"Bearer {other.secret}"}
    monkeypatch.setenv("CORRAL_TOKEN", "corral_env")
    assert corral.auth_headers(settings) == {"Authorization": "Bearer corral_env"}


def test_a_stale_file_from_an_earlier_database_is_replaced(tokens: Tokens, tmp_path: Path) -> None:
    path = token_path(tmp_path)
    path.write_text("corral_stale\n")
    path.chmod(0o644)
    issued = ensure_admin_token(tokens, path)  # this database has no admin token: first start
    assert issued is not None and read_token_file(path) == issued.secret and mode(path) == 0o600


def test_an_expired_admin_token_counts_as_none(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    tokens = Tokens(MemoryTokenStore(), actor="ops", clock=lambda: now[0], cache_seconds=0)
    first = ensure_admin_token(tokens, token_path(tmp_path / "a"))
    assert first is not None
    tokens.store.revoke_token(first.token.id, at=now[0], by="test")
    tokens.create("admin", "admin", expires_in=timedelta(days=1))
    now[0] += timedelta(days=2)
    second = ensure_admin_token(tokens, token_path(tmp_path / "b"))
    assert second is not None and second.token.name.startswith("admin-")  # "admin" is taken by the expired one


def test_a_token_that_cannot_be_written_leaves_no_usable_token(tokens: Tokens, tmp_path: Path) -> None:
    path = token_path(tmp_path)
    path.mkdir()  # a folder where the file should go: the rename fails, as on a read-only or full disk
    with pytest.raises(ConfigurationError, match="cannot write the admin token"):
        ensure_admin_token(tokens, path)
    assert not tokens.has_admin() and [t.state(tokens.now()) for t in tokens.all()] == ["revoked"]
    assert [p.name for p in tmp_path.iterdir()] == ["admin-token"]  # no temporary file left behind


def test_rotation_revokes_the_old_token_and_rewrites_the_file(tokens: Tokens, tmp_path: Path) -> None:
    path = token_path(tmp_path)
    old = ensure_admin_token(tokens, path)
    assert old is not None
    new = rotate_admin_token(tokens, path, by="ops")
    assert new.secret != old.secret and read_token_file(path) == new.secret and mode(path) == 0o600
    assert tokens.authenticate(new.secret).name == "admin"
    assert tokens.store.get_token(old.token.id).revoked_by == "ops"
