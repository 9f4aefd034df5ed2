"""The token service: tokens are random, shown once, stored as their SHA-256 only, compared in constant time,
refused when forged, mistyped, expired or revoked; roles are checked against the permission table."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

import pytest

from corral.errors import (
    AlreadyExistsError,
    AuthenticationError,
    ConfigurationError,
    InvalidNameError,
    PermissionDeniedError,
    TokenNotFoundError,
)
from corral.security.entities import Role
from corral.security.permissions import Permission
from corral.security.service import PREFIX, Tokens, hash_secret, new_secret, parse_duration
from corral.storage.memory import MemoryTokenStore

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(clock: Clock) -> Tokens:
    return Tokens(MemoryTokenStore(), actor="alice", clock=clock, cache_seconds=0)


def test_a_new_token_is_256_random_bits_with_a_recognisable_prefix() -> None:
    secrets = {new_secret() for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        assert re.fullmatch(r"corral_[A-Za-z0-9_-]{43}", secret)  # 32 bytes, URL-safe base64 without padding
    assert hash_secret("corral_x") == hashlib.sha256(b"corral_x").hexdigest()


def test_the_secret_is_returned_once_and_only_its_hash_is_kept(tokens: Tokens) -> None:
    issued = tokens.create("ci", "viewer", created_by="bob")
    token = issued.token
    assert issued.secret.startswith(PREFIX) and issued.secret not in repr(issued)
    assert (token.name, token.role, token.created_by, token.created_at, token.expires_at) == (
        "ci",
        Role.VIEWER,
        "bob",
        T0,
        None,
    )
    assert token.hash == hash_secret(issued.secret) and token.hash not in repr(token)
    stored = tokens.store.get_token(token.id)
    assert issued.secret not in repr(vars(tokens.store)) and stored.hash == token.hash
    assert "hash" not in token.to_dict() and issued.secret not in str(token.to_dict())
    assert tokens.authenticate(issued.secret) == token


def test_names_roles_and_lifetimes_are_checked(tokens: Tokens) -> None:
    with pytest.raises(InvalidNameError):
        tokens.create("../x", "viewer")
    with pytest.raises(ConfigurationError, match="unknown role 'root': use one of viewer, predictor"):
        tokens.create("x", "root")
    with pytest.raises(ConfigurationError, match="positive"):
        tokens.create("x", "viewer", expires_in=timedelta(0))
    tokens.create("x", Role.DEPLOYER)
    with pytest.raises(AlreadyExistsError, match="a token named 'x' exists"):
        tokens.create("x", "viewer")
    tokens.revoke("x")
    assert tokens.create("x", "viewer").token.role is Role.VIEWER  # a revoked token's name is free again


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("3600s", 3600), ("2w", 14 * 86400), ("1d12h", 129600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "d", "3 days", "-1d", "0d", "1y"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_duration(text)


def test_missing_forged_and_mistyped_tokens_are_refused(tokens: Tokens) -> None:
    real = tokens.create("ci", "viewer").secret
    cases = {
        None: "unauthenticated",
        "": "unauthenticated",
        real.replace(PREFIX, "cora1_"): "invalid_token",  # wrong prefix
        real[len(PREFIX) :]: "invalid_token",  # no prefix
        real[:-1]: "invalid_token",  # truncated
        real + "A": "invalid_token",
        new_secret(): "invalid_token",  # well formed, never issued
        real[:-1] + ("A" if real[-1] != "A" else "B"): "invalid_token",  # one character changed
        real.upper(): "invalid_token",
    }
    for secret, code in cases.items():
        with pytest.raises(AuthenticationError) as refused:
            tokens.authenticate(secret)
        assert refused.value.code == code, secret
    assert tokens.authenticate(real).name == "ci"


def test_the_stored_hash_is_compared_in_constant_time(tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tokens.create("ci", "viewer").secret
    compared: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    tokens.authenticate(secret)
    assert compared == [(hash_secret(secret), hash_secret(secret))]


def test_expiry(tokens: Tokens, clock: Clock) -> None:
    issued = tokens.create("short", "predictor", expires_in=parse_duration("1h"))
    assert issued.token.expires_at == T0 + timedelta(hours=1)
    clock.now = T0 + timedelta(minutes=59)
    assert tokens.authenticate(issued.secret).state(clock.now) == "active"
    clock.now = T0 + timedelta(hours=1)
    with pytest.raises(AuthenticationError, match="token 'short' expired at 2026-11-01T13:00:00") as refused:
        tokens.authenticate(issued.secret)
    assert refused.value.code == "token_expired"
    assert tokens.all()[0].state(clock.now) == "expired"


def test_revocation_by_name_or_id(tokens: Tokens, clock: Clock) -> None:
    first = tokens.create("ci", "viewer")
    second = tokens.create("ops", "deployer")
    clock.now = T0 + timedelta(minutes=5)
    revoked = tokens.revoke("ci", by="carol")
    assert (revoked.revoked_at, revoked.revoked_by) == (clock.now, "carol")
    assert tokens.revoke(second.token.id).name == "ops"
    for secret, name in ((first.secret, "ci"), (second.secret, "ops")):
        with pytest.raises(AuthenticationError, match=f"token '{name}' was revoked") as refused:
            tokens.authenticate(secret)
        assert refused.value.code == "token_revoked"
    assert tokens.revoke("ci").revoked_by == "carol"  # revoking again changes nothing
    with pytest.raises(TokenNotFoundError, match="no token has the name or id 'nobody'"):
        tokens.revoke("nobody")
    assert [t.name for t in tokens.all(include_revoked=False)] == []


def test_a_revocation_reaches_other_servers_within_the_cache_time(clock: Clock) -> None:
    store = MemoryTokenStore()
    here = Tokens(store, actor="a", clock=clock, cache_seconds=60)
    there = Tokens(store, actor="b", clock=clock, cache_seconds=0)  # another process, no cache
    issued = here.create("ci", "viewer")
    assert here.authenticate(issued.secret) and not here.needs_store(issued.secret)
    assert there.needs_store(issued.secret)
    there.revoke("ci")
    assert here.authenticate(issued.secret)  # still trusted from the cache...
    here.revoke("ci")  # ...until this process revokes it (or the cache time passes)
    with pytest.raises(AuthenticationError):
        here.authenticate(issued.secret)


def test_roles_are_checked_against_the_permission_table(tokens: Tokens) -> None:
    viewer = tokens.create("v", "viewer").token
    tokens.authorize(viewer, Permission.READ)
    with pytest.raises(PermissionDeniedError) as refused:
        tokens.authorize(viewer, Permission.DEPLOY, action="POST /v1/deployments")
    error = refused.value
    assert (error.permission, error.roles) == ("deploy", ("deployer", "admin"))
    assert str(error) == (
        "token 'v' has the role viewer, which may not POST /v1/deployments: that needs the deploy permission, "
        "held by the roles deployer, admin"
    )
    admin = tokens.create("root", "admin").token
    for permission in Permission:
        tokens.authorize(admin, permission)
