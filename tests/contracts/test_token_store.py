"""The TokenStore contract, for every implementation (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from corral.errors import AlreadyExistsError, TokenNotFoundError
from corral.registry.ports import RegistryStore
from corral.security.entities import Denial, Role, Token
from corral.security.ports import TokenStore
from corral.security.service import Tokens, hash_secret
from corral.storage.memory import MemoryRegistryStore, MemoryTokenStore
from corral.storage.sql.engine import create_engine
from corral.storage.sql.registry_store import SqlRegistryStore
from corral.storage.sql.tables import api_tokens
from corral.storage.sql.token_store import SqlTokenStore

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def store(registry_store: RegistryStore) -> TokenStore:
    if isinstance(registry_store, MemoryRegistryStore):
        return MemoryTokenStore()
    assert isinstance(registry_store, SqlRegistryStore)
    return SqlTokenStore(registry_store.engine)


@pytest.fixture
def other_stores(store: TokenStore) -> Iterator[Callable[[], TokenStore]]:
    """Another handle on the same data, as a second process would have (its own engine for SQL)."""
    made: list[SqlTokenStore] = []

    def make() -> TokenStore:
        if not isinstance(store, SqlTokenStore):
            return store
        other = SqlTokenStore(create_engine(store.engine.url.render_as_string(hide_password=False)))
        made.append(other)
        return other

    yield make
    for other in made:
        other.engine.dispose()


def token(name: str = "ci", *, id: str = "a1b2c3d4e5f6", role: Role = Role.VIEWER, **fields: object) -> Token:
    base = Token(
        id=id,
        name=name,
        role=role,
        hash=hash_secret(f"corral_{id}"),
        created_by="alice",
        created_at=T0,
        expires_at=T0 + timedelta(days=30),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_tokens_are_added_found_by_hash_listed_and_kept_in_utc(store: TokenStore) -> None:
    first = token()
    assert store.add_token(first) == first
    local = timezone(timedelta(hours=2))
    later = (T0 + timedelta(minutes=1)).astimezone(local)
    second = token("ops", id="0000000000ff", role=Role.DEPLOYER, created_at=later, expires_at=None)
    stored = store.add_token(second)
    assert stored.created_at == later and stored.created_at.tzinfo == UTC and stored.expires_at is None
    assert store.get_token("a1b2c3d4e5f6") == first
    assert store.find_token(first.hash) == first and store.find_token("0" * 64) is None
    assert [t.name for t in store.list_tokens()] == ["ci", "ops"]
    with pytest.raises(TokenNotFoundError, match="no token has the id 'nope'"):
        store.get_token("nope")


def test_names_are_unique_among_tokens_not_revoked(store: TokenStore) -> None:
    store.add_token(token())
    with pytest.raises(AlreadyExistsError, match="a token named 'ci' exists"):
        store.add_token(token(id="111111111111"))
    with pytest.raises(AlreadyExistsError):
        store.add_token(token("other"))  # the same id (and secret)
    revoked = store.revoke_token("a1b2c3d4e5f6", at=T0 + timedelta(hours=1), by="bob")
    assert (revoked.revoked_at, revoked.revoked_by) == (T0 + timedelta(hours=1), "bob")
    again = store.add_token(token(id="111111111111"))
    listed = {t.id: t.revoked_at is None for t in store.list_tokens()}
    assert again.name == "ci" and listed == {"111111111111": True, "a1b2c3d4e5f6": False}
    assert store.revoke_token("a1b2c3d4e5f6", at=T0 + timedelta(days=1), by="eve") == revoked  # no change
    with pytest.raises(TokenNotFoundError):
        store.revoke_token("nope", at=T0, by="bob")


def test_one_name_taken_by_two_processes_at_once_makes_one_token(
    store: TokenStore, other_stores: Callable[[], TokenStore]
) -> None:
    handles = [other_stores() for _ in range(4)]
    barrier = threading.Barrier(len(handles))
    outcomes: list[str] = []

    def make(i: int) -> None:
        barrier.wait()
        try:
            handles[i].add_token(token(id=f"{i:012d}"))
            outcomes.append("made")
        except AlreadyExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=make, args=(i,)) for i in range(len(handles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["made", "refused", "refused", "refused"]
    assert len(store.list_tokens()) == 1


def test_only_the_hash_is_stored(store: TokenStore) -> None:
    tokens = Tokens(store, actor="alice")
    issued = tokens.create("ci", "auditor")
    assert store.find_token(hash_secret(issued.secret)) == issued.token
    if isinstance(store, SqlTokenStore):  # the row itself: the hash, never the token
        with store.engine.connect() as conn:
            [row] = conn.execute(sa.select(api_tokens)).mappings().all()
        assert row["hash"] == hash_secret(issued.secret)
        assert all(issued.secret not in str(value) for value in row.values())
        assert all(issued.secret[len("corral_") :][:16] not in str(value) for value in row.values())
    else:
        assert issued.secret not in repr(vars(store))


def test_denials_are_kept_newest_first(store: TokenStore) -> None:
    for minute in range(3):
        store.add_denial(
            Denial(
                at=T0 + timedelta(minutes=minute),
                method="POST",
                route="/v1/deployments",
                path="/v1/deployments",
                status=403 if minute else 401,
                reason=f"refused {minute}",
                client="10.0.0.7",
                token_id="a1b2c3d4e5f6" if minute else None,
                token_name="ci" if minute else None,
            )
        )
    found = store.denials()
    assert [d.reason for d in found] == ["refused 2", "refused 1", "refused 0"]
    assert found[0].id is not None and found[0].at == T0 + timedelta(minutes=2) and found[0].at.tzinfo == UTC
    assert (found[-1].status, found[-1].token_name, found[-1].client) == (401, None, "10.0.0.7")
    assert [d.reason for d in store.denials(limit=1)] == ["refused 2"]
    assert [d.reason for d in store.denials(since=T0 + timedelta(minutes=1))] == ["refused 2", "refused 1"]
