"""The DeploymentStore contract, for every implementation (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from registry_factories import make_draft

from corral.errors import AlreadyExistsError, ConflictError, DeploymentNotFoundError, ModelNotFoundError
from corral.registry.ports import RegistryStore
from corral.serving.entities import BatchingPolicy, Deployment, ExecutionPolicy, Member
from corral.serving.ports import DeploymentStore
from corral.storage.memory import MemoryDeploymentStore, MemoryRegistryStore
from corral.storage.sql.deployment_store import SqlDeploymentStore
from corral.storage.sql.registry_store import SqlRegistryStore

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(registry_store: RegistryStore) -> Iterator[DeploymentStore]:
    registry_store.create_version(make_draft("fraud"), None)
    if isinstance(registry_store, MemoryRegistryStore):
        yield MemoryDeploymentStore(registry_store)
    else:
        assert isinstance(registry_store, SqlRegistryStore)
        yield SqlDeploymentStore(registry_store.engine)


def deployment(name: str = "fraud-api", **fields: Any) -> Deployment:
    base = Deployment(name=name, model="fraud", alias="champion", created_by="ops", created_at=T0, updated_at=T0)
    return replace(base, **fields)


def test_create_get_list_round_trip(store: DeploymentStore) -> None:
    created = store.create(deployment(batching=BatchingPolicy(False, 8, 2.5), description="scoring for cards"))
    assert created == store.get("fraud-api")
    assert created.batching == BatchingPolicy(False, 8, 2.5)
    assert created.created_at == T0 and created.created_at.tzinfo is not None
    store.create(deployment("another"))
    assert [d.name for d in store.list()] == ["another", "fraud-api"]


def test_names_are_unique_and_models_must_exist(store: DeploymentStore) -> None:
    store.create(deployment())
    with pytest.raises(AlreadyExistsError, match="'fraud-api' already exists"):
        store.create(deployment())
    with pytest.raises(ModelNotFoundError, match="no model named 'ghost' to deploy"):
        store.create(deployment("x", model="ghost"))


def test_update_changes_alias_batching_enabled_but_not_identity(store: DeploymentStore) -> None:
    store.create(deployment())
    later = T0 + timedelta(hours=1)
    updated = store.update(
        deployment(alias="challenger", enabled=False, batching=BatchingPolicy(True, 128, 0.0), updated_at=later)
    )
    assert (updated.alias, updated.enabled, updated.batching.max_batch_size) == ("challenger", False, 128)
    assert updated.updated_at == later and updated.created_at == T0 and updated.model == "fraud"


def test_missing_deployments(store: DeploymentStore) -> None:
    for call in (lambda: store.get("nope"), lambda: store.update(deployment("nope")), lambda: store.delete("nope")):
        with pytest.raises(DeploymentNotFoundError, match="no deployment named 'nope'"):
            call()


def test_delete(store: DeploymentStore) -> None:
    store.create(deployment())
    store.delete("fraud-api")
    assert store.list() == []


def test_members_are_stored_with_their_roles_and_shares(store: DeploymentStore) -> None:
    created = store.create(deployment())
    assert created.members == ()
    members = (Member("fraud", 2, "shadow"), Member("fraud", 3, "split", 12.5), Member("other", 1, "canary", 5.0))
    updated = store.update(replace(created, members=members))
    assert updated.members == members and store.get("fraud-api").members == members
    assert store.list()[0].members == members
    assert store.update(replace(updated, members=())).members == ()


def test_a_compare_and_set_update_refuses_a_stale_read(store: DeploymentStore) -> None:
    created = store.create(deployment())
    later = created.updated_at + timedelta(seconds=1)
    first = store.update(replace(created, members=(Member("fraud", 2, "shadow"),), updated_at=later),
                         expected=created.updated_at)  # fmt: skip
    with pytest.raises(ConflictError, match="changed meanwhile"):
        store.update(replace(created, members=(Member("fraud", 3, "shadow"),)), expected=created.updated_at)
    assert store.get("fraud-api").members == first.members


def test_the_execution_policy_is_stored_and_updated(store: DeploymentStore) -> None:
    policy = ExecutionPolicy(isolation="isolated", device="cuda:1", timeout_seconds=2.5, max_concurrency=4, max_queue=8)
    store.create(deployment(execution=policy))

    assert store.get("fraud-api").execution == policy
    assert deployment().execution == ExecutionPolicy()  # in process when the libraries match, 30 s, no caps

    changed = replace(
        store.get("fraud-api"), execution=ExecutionPolicy(max_memory_mb=512), updated_at=T0 + timedelta(1)
    )
    store.update(changed)
    assert store.get("fraud-api").execution == ExecutionPolicy(max_memory_mb=512)
