"""The RegistryStore contract, run against every implementation (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from registry_factories import CEST, SHA_A, SHA_B, T0, DraftFactory, make_profile

from corral.errors import (
    AliasNotFoundError,
    ConflictError,
    ModelNotFoundError,
    NotFoundError,
    VersionArchivedError,
    VersionInUseError,
    VersionNotFoundError,
)
from corral.registry.entities import (
    AliasAction,
    AliasEvent,
    ArtifactSignature,
    ModelVersion,
    VersionStatus,
    VersionTrust,
)
from corral.registry.ports import ANY, RegistryStore
from corral.storage.sql.registry_store import SqlRegistryStore
from corral.storage.sql.tables import reference_profiles


def _move(
    store: RegistryStore,
    name: str,
    alias: str,
    to: int | None,
    *,
    expected: object = ANY,
    action: AliasAction | None = None,
    actor: str = "ada",
    reason: str = "",
    at: datetime = T0,
) -> AliasEvent:
    if action is None:
        action = AliasAction.SET if to is not None else AliasAction.REMOVE
    return store.move_alias(name, alias, to, expected=expected, action=action, actor=actor, reason=reason, at=at)


def _utc(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


# -- version numbers ------------------------------------------------------------


def test_versions_are_numbered_one_two_three(registry_store: RegistryStore, draft: DraftFactory) -> None:
    numbers = [registry_store.create_version(draft("fraud"), None).version for _ in range(3)]

    assert numbers == [1, 2, 3]
    assert [v.version for v in registry_store.list_versions("fraud")] == [1, 2, 3]
    assert registry_store.get_model("fraud").latest_version == 3


def test_version_numbers_are_independent_across_models(registry_store: RegistryStore, draft: DraftFactory) -> None:
    got = [(name, registry_store.create_version(draft(name), None).version) for name in ["a", "b", "a", "b", "a"]]

    assert got == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)]
    assert [v.version for v in registry_store.list_versions("b")] == [1, 2]
    assert {v.name for v in registry_store.list_versions("a")} == {"a"}


def test_the_drafts_version_and_status_are_ignored(registry_store: RegistryStore, draft: DraftFactory) -> None:
    stored = registry_store.create_version(
        replace(draft("fraud"), version=42, status=VersionStatus.ARCHIVED, status_reason="stale"), None
    )

    assert stored.version == 1
    assert stored.status is VersionStatus.READY
    assert stored.status_reason is None
    assert registry_store.get_version("fraud", 1) == stored


# -- round trips ------------------------------------------------------------------


def test_every_field_of_a_version_round_trips(registry_store: RegistryStore, draft: DraftFactory) -> None:
    original = draft("fraud")

    stored = registry_store.create_version(original, None)
    fetched = registry_store.get_version("fraud", 1)

    expected = replace(original, version=1)
    assert stored == expected
    assert fetched == expected
    assert registry_store.list_versions("fraud") == [expected]
    # spelled out, so a failure names the field
    assert fetched.signature == original.signature
    assert fetched.signature.outputs.classes == (0, 1)
    assert fetched.signature.inputs[2].categories == ("Köln", "Zürich", "東京")
    assert fetched.runtime == original.runtime
    assert fetched.lineage == original.lineage
    assert fetched.lineage.data is not None
    assert fetched.lineage.data.sha256 == "d" * 64
    assert fetched.lineage.data.source == "s3://bucket/train.parquet"
    assert fetched.lineage.metrics["loss"] == 0.1 + 0.2
    assert fetched.tags == {"team": "risk", "stage": "ünïcode ✓"}
    assert fetched.description == "détecte la fraude — 不正検出 🐄"
    assert fetched.created_at == T0
    assert _utc(fetched.created_at)
    assert fetched.ref.version == 1


def test_minimal_lineage_and_empty_tags_round_trip(registry_store: RegistryStore, draft: DraftFactory) -> None:
    from corral.registry.entities import Lineage

    original = draft("bare", lineage=Lineage(), tags={}, description="")

    registry_store.create_version(original, None)

    fetched = registry_store.get_version("bare", 1)
    assert fetched == replace(original, version=1)
    assert fetched.lineage.data is None
    assert fetched.tags == {}


def test_created_at_in_another_zone_comes_back_as_the_same_instant_in_utc(
    registry_store: RegistryStore, draft: DraftFactory
) -> None:
    local = datetime(2026, 3, 1, 14, 30, 15, 123456, tzinfo=CEST)  # == T0

    stored = registry_store.create_version(draft("fraud", created_at=local), None)
    fetched = registry_store.get_version("fraud", 1)
    model = registry_store.get_model("fraud")

    for moment in (stored.created_at, fetched.created_at, model.created_at):
        assert moment == T0
        assert _utc(moment)


def test_models_are_got_and_listed_by_name(registry_store: RegistryStore, draft: DraftFactory) -> None:
    assert registry_store.list_models() == []
    registry_store.create_version(draft("zebra", created_by="zed"), None)
    registry_store.create_version(draft("aardvark", description="first", created_at=T0), None)
    registry_store.create_version(draft("aardvark", description="second", created_at=T0 + timedelta(days=1)), None)

    model = registry_store.get_model("aardvark")

    assert model.name == "aardvark"
    assert model.latest_version == 2
    assert model.aliases == {}
    assert model.description == "first"  # the model keeps its first description
    assert model.created_at == T0
    assert _utc(model.created_at)
    assert model.created_by == "ada"
    assert [(m.name, m.latest_version, m.created_by) for m in registry_store.list_models()] == [
        ("aardvark", 2, "ada"),
        ("zebra", 1, "zed"),
    ]


def test_list_models_shows_each_models_aliases(registry_store: RegistryStore, draft: DraftFactory) -> None:
    for name in ("a", "a", "b"):
        registry_store.create_version(draft(name), None)
    _move(registry_store, "a", "champion", 2)
    _move(registry_store, "a", "challenger", 1)
    _move(registry_store, "b", "champion", 1)

    listed = {m.name: m.aliases for m in registry_store.list_models()}

    assert listed == {"a": {"challenger": 1, "champion": 2}, "b": {"champion": 1}}
    assert registry_store.get_model("a").aliases == {"challenger": 1, "champion": 2}


# -- not found ----------------------------------------------------------------------


def test_missing_models_and_versions_raise_errors_naming_them(
    registry_store: RegistryStore, draft: DraftFactory
) -> None:
    registry_store.create_version(draft("fraud"), None)

    with pytest.raises(ModelNotFoundError, match="ghost"):
        registry_store.get_model("ghost")
    with pytest.raises(ModelNotFoundError, match="ghost"):
        registry_store.get_version("ghost", 1)
    with pytest.raises(ModelNotFoundError, match="ghost"):
        registry_store.list_versions("ghost")
    with pytest.raises(ModelNotFoundError, match="ghost"):
        registry_store.get_profile("ghost", 1)
    with pytest.raises(ModelNotFoundError, match="ghost"):
        registry_store.alias_events("ghost")
    with pytest.raises(ModelNotFoundError, match="ghost"):
        _move(registry_store, "ghost", "champion", 1)
    with pytest.raises(ModelNotFoundError, match="ghost"):
        registry_store.set_status("ghost", 1, VersionStatus.ARCHIVED, reason=None)
    with pytest.raises(ModelNotFoundError, match="ghost"):
        registry_store.delete_version("ghost", 1)
    with pytest.raises(VersionNotFoundError, match=r"fraud.*\b7\b"):
        registry_store.get_version("fraud", 7)
    with pytest.raises(VersionNotFoundError, match="fraud"):
        registry_store.get_profile("fraud", 7)
    with pytest.raises(VersionNotFoundError, match="fraud"):
        _move(registry_store, "fraud", "champion", 7)
    with pytest.raises(VersionNotFoundError, match="fraud"):
        registry_store.set_status("fraud", 7, VersionStatus.ARCHIVED, reason=None)
    with pytest.raises(VersionNotFoundError, match="fraud"):
        registry_store.delete_version("fraud", 7)


def test_not_found_errors_are_lookup_errors(registry_store: RegistryStore) -> None:
    with pytest.raises(NotFoundError):
        registry_store.get_model("ghost")
    with pytest.raises(LookupError):
        registry_store.get_version("ghost", 1)


# -- profiles ---------------------------------------------------------------------------


def test_profiles_are_stored_per_version_and_returned_equal(registry_store: RegistryStore, draft: DraftFactory) -> None:
    profile = make_profile()
    registry_store.create_version(draft("fraud"), profile)
    registry_store.create_version(draft("fraud"), None)

    assert registry_store.get_profile("fraud", 1) == profile
    assert registry_store.get_profile("fraud", 2) is None
    assert registry_store.get_profile("fraud", 1).to_dict() == profile.to_dict()  # type: ignore[union-attr]


# -- aliases ------------------------------------------------------------------------------


def test_alias_set_move_and_remove_are_recorded_oldest_first(
    registry_store: RegistryStore, draft: DraftFactory
) -> None:
    for _ in range(3):
        registry_store.create_version(draft("fraud"), None)
    t1, t2, t3 = T0 + timedelta(hours=1), T0 + timedelta(hours=2), T0 + timedelta(hours=3)

    first = _move(registry_store, "fraud", "champion", 1, expected=None, actor="ada", reason="launch", at=t1)
    assert registry_store.get_model("fraud").aliases == {"champion": 1}
    second = _move(registry_store, "fraud", "champion", 3, expected=1, actor="bob", reason="better auc", at=t2)
    assert registry_store.get_model("fraud").aliases == {"champion": 3}
    third = _move(registry_store, "fraud", "champion", None, expected=3, actor="cy", reason="incident", at=t3)
    assert registry_store.get_model("fraud").aliases == {}

    assert (first.from_version, first.to_version, first.action, first.actor, first.reason, first.at) == (
        None,
        1,
        AliasAction.SET,
        "ada",
        "launch",
        t1,
    )
    assert (second.from_version, second.to_version, second.actor, second.reason) == (1, 3, "bob", "better auc")
    assert (third.from_version, third.to_version, third.action, third.actor) == (3, None, AliasAction.REMOVE, "cy")
    history = registry_store.alias_events("fraud", "champion")
    assert history == [first, second, third]
    assert [e.at for e in history] == [t1, t2, t3]
    assert all(_utc(e.at) for e in history)
    assert history[0].id < history[1].id < history[2].id
    assert {(e.name, e.alias) for e in history} == {("fraud", "champion")}


def test_alias_events_filter_by_alias_and_model(registry_store: RegistryStore, draft: DraftFactory) -> None:
    for name in ("fraud", "fraud", "churn"):
        registry_store.create_version(draft(name), None)
    a = _move(registry_store, "fraud", "champion", 1)
    b = _move(registry_store, "fraud", "challenger", 2)
    c = _move(registry_store, "churn", "champion", 1)
    d = _move(registry_store, "fraud", "champion", 2, action=AliasAction.ROLLBACK)

    assert registry_store.alias_events("fraud") == [a, b, d]
    assert registry_store.alias_events("fraud", "champion") == [a, d]
    assert registry_store.alias_events("fraud", "challenger") == [b]
    assert registry_store.alias_events("fraud", "nothing") == []
    assert registry_store.alias_events("churn") == [c]
    assert d.action is AliasAction.ROLLBACK


def test_event_times_in_another_zone_come_back_as_the_same_instant_in_utc(
    registry_store: RegistryStore, draft: DraftFactory
) -> None:
    registry_store.create_version(draft("fraud"), None)
    local = datetime(2026, 3, 1, 14, 30, 15, 123456, tzinfo=CEST)

    event = _move(registry_store, "fraud", "champion", 1, at=local)

    (stored,) = registry_store.alias_events("fraud")
    for moment in (event.at, stored.at):
        assert moment == T0
        assert _utc(moment)


def test_a_stale_expected_version_is_a_conflict_and_changes_nothing(
    registry_store: RegistryStore, draft: DraftFactory
) -> None:
    for _ in range(3):
        registry_store.create_version(draft("fraud"), None)
    _move(registry_store, "fraud", "champion", 1, expected=None)

    with pytest.raises(ConflictError, match="champion"):
        _move(registry_store, "fraud", "champion", 3, expected=2)
    with pytest.raises(ConflictError):
        _move(registry_store, "fraud", "champion", 3, expected=None)  # someone set it meanwhile
    with pytest.raises(ConflictError):
        _move(registry_store, "fraud", "champion", None, expected=2)

    assert registry_store.get_model("fraud").aliases == {"champion": 1}
    assert len(registry_store.alias_events("fraud")) == 1


def test_expected_any_skips_the_check(registry_store: RegistryStore, draft: DraftFactory) -> None:
    for _ in range(2):
        registry_store.create_version(draft("fraud"), None)
    _move(registry_store, "fraud", "champion", 1)

    event = _move(registry_store, "fraud", "champion", 2, expected=ANY)

    assert (event.from_version, event.to_version) == (1, 2)


def test_an_archived_version_cannot_take_an_alias(registry_store: RegistryStore, draft: DraftFactory) -> None:
    registry_store.create_version(draft("fraud"), None)
    registry_store.set_status("fraud", 1, VersionStatus.ARCHIVED, reason="leaky feature")

    with pytest.raises(VersionArchivedError, match="fraud"):
        _move(registry_store, "fraud", "champion", 1, expected=None)

    assert registry_store.get_model("fraud").aliases == {}
    assert registry_store.alias_events("fraud") == []
    registry_store.set_status("fraud", 1, VersionStatus.READY, reason=None)
    assert _move(registry_store, "fraud", "champion", 1).to_version == 1


def test_removing_a_missing_alias_is_an_error(registry_store: RegistryStore, draft: DraftFactory) -> None:
    registry_store.create_version(draft("fraud"), None)

    with pytest.raises(AliasNotFoundError, match="champion"):
        _move(registry_store, "fraud", "champion", None)

    assert registry_store.alias_events("fraud") == []


# -- lifecycle --------------------------------------------------------------------------------


def test_archive_and_restore(registry_store: RegistryStore, draft: DraftFactory) -> None:
    created = registry_store.create_version(draft("fraud"), make_profile())

    archived = registry_store.set_status("fraud", 1, VersionStatus.ARCHIVED, reason="leaky feature")

    assert (archived.status, archived.status_reason) == (VersionStatus.ARCHIVED, "leaky feature")
    assert registry_store.get_version("fraud", 1) == archived
    assert replace(archived, status=VersionStatus.READY, status_reason=None) == created
    assert registry_store.get_profile("fraud", 1) == make_profile()

    restored = registry_store.set_status("fraud", 1, VersionStatus.READY, reason=None)

    assert restored == created
    assert registry_store.get_version("fraud", 1) == created


def test_an_aliased_version_cannot_be_archived(registry_store: RegistryStore, draft: DraftFactory) -> None:
    registry_store.create_version(draft("fraud"), None)
    _move(registry_store, "fraud", "champion", 1)

    with pytest.raises(VersionInUseError, match="champion"):
        registry_store.set_status("fraud", 1, VersionStatus.ARCHIVED, reason=None)

    assert registry_store.get_version("fraud", 1).status is VersionStatus.READY


def test_an_aliased_version_cannot_be_deleted(registry_store: RegistryStore, draft: DraftFactory) -> None:
    for _ in range(2):
        registry_store.create_version(draft("fraud"), make_profile())
    _move(registry_store, "fraud", "champion", 1)

    with pytest.raises(VersionInUseError, match="champion"):
        registry_store.delete_version("fraud", 1)

    assert registry_store.get_version("fraud", 1).version == 1
    assert registry_store.get_profile("fraud", 1) == make_profile()
    _move(registry_store, "fraud", "champion", 2)
    registry_store.delete_version("fraud", 1)
    assert [v.version for v in registry_store.list_versions("fraud")] == [2]


def test_delete_removes_the_version_and_its_profile(registry_store: RegistryStore, draft: DraftFactory) -> None:
    for _ in range(3):
        registry_store.create_version(draft("fraud"), make_profile())

    registry_store.delete_version("fraud", 2)

    assert [v.version for v in registry_store.list_versions("fraud")] == [1, 3]
    with pytest.raises(VersionNotFoundError):
        registry_store.get_version("fraud", 2)
    with pytest.raises(VersionNotFoundError):
        registry_store.get_profile("fraud", 2)
    assert registry_store.get_profile("fraud", 1) == make_profile()
    if isinstance(registry_store, SqlRegistryStore):
        with registry_store.engine.connect() as conn:
            left = conn.execute(
                sa.select(sa.func.count()).where(
                    reference_profiles.c.name == "fraud", reference_profiles.c.version == 2
                )
            ).scalar_one()
        assert left == 0


def test_version_numbers_are_never_reused_after_delete(registry_store: RegistryStore, draft: DraftFactory) -> None:
    for _ in range(3):
        registry_store.create_version(draft("fraud"), None)
    registry_store.delete_version("fraud", 3)
    registry_store.delete_version("fraud", 2)

    assert registry_store.get_model("fraud").latest_version == 3
    assert registry_store.create_version(draft("fraud"), None).version == 4
    registry_store.delete_version("fraud", 1)
    registry_store.delete_version("fraud", 4)
    assert registry_store.list_versions("fraud") == []
    assert registry_store.get_model("fraud").latest_version == 4  # the model outlives its versions
    assert registry_store.create_version(draft("fraud"), None).version == 5


def test_alias_history_survives_deleting_a_version_it_mentions(
    registry_store: RegistryStore, draft: DraftFactory
) -> None:
    for _ in range(2):
        registry_store.create_version(draft("fraud"), None)
    first = _move(registry_store, "fraud", "champion", 1)
    second = _move(registry_store, "fraud", "champion", 2)

    registry_store.delete_version("fraud", 1)

    assert registry_store.alias_events("fraud") == [first, second]


def test_artifact_in_use_follows_the_versions_that_refer_to_it(
    registry_store: RegistryStore, draft: DraftFactory
) -> None:
    assert not registry_store.artifact_in_use(SHA_A)
    registry_store.create_version(draft("fraud", artifact_sha256=SHA_A), None)
    registry_store.create_version(draft("churn", artifact_sha256=SHA_A), None)
    registry_store.create_version(draft("fraud", artifact_sha256=SHA_B), None)

    assert registry_store.artifact_in_use(SHA_A)
    assert registry_store.artifact_in_use(SHA_B)
    assert not registry_store.artifact_in_use("c" * 64)

    registry_store.delete_version("fraud", 1)
    assert registry_store.artifact_in_use(SHA_A)  # churn/1 still has it
    registry_store.delete_version("churn", 1)
    assert not registry_store.artifact_in_use(SHA_A)
    registry_store.set_status("fraud", 2, VersionStatus.ARCHIVED, reason=None)
    assert registry_store.artifact_in_use(SHA_B)  # archived versions keep their artifact


def test_returned_versions_are_model_versions(registry_store: RegistryStore, draft: DraftFactory) -> None:
    registry_store.create_version(draft("fraud"), None)

    assert all(isinstance(v, ModelVersion) for v in registry_store.list_versions("fraud"))
    assert registry_store.get_version("fraud", 1).created_at.tzinfo is not None
    assert registry_store.get_version("fraud", 1).created_at.astimezone(UTC) == T0


# -- trust and artifact signatures ------------------------------------------------------


def test_trust_round_trips_in_utc_and_can_be_revoked(registry_store: RegistryStore, draft: DraftFactory) -> None:
    registry_store.create_version(draft("fraud"), None)
    registry_store.create_version(draft("fraud"), None)
    at = datetime(2026, 3, 2, 9, 0, 0, 250000, tzinfo=CEST)

    trusted = registry_store.set_trust("fraud", 1, VersionTrust("root", at, "built by CI from abc123 — reviewed ✓"))

    assert trusted.trust == VersionTrust("root", at, "built by CI from abc123 — reviewed ✓")
    assert trusted.trust is not None and _utc(trusted.trust.at)
    assert registry_store.get_version("fraud", 1) == trusted
    assert [v.trust is not None for v in registry_store.list_versions("fraud")] == [True, False]
    revoked = registry_store.set_trust("fraud", 1, None)
    assert revoked.trust is None
    assert replace(trusted, trust=None) == revoked  # nothing else changed
    assert registry_store.get_version("fraud", 1).trust is None


def test_trust_of_a_missing_version_is_not_found(registry_store: RegistryStore, draft: DraftFactory) -> None:
    registry_store.create_version(draft("fraud"), None)

    with pytest.raises(VersionNotFoundError):
        registry_store.set_trust("fraud", 2, VersionTrust("root", T0, "why"))
    with pytest.raises(ModelNotFoundError):
        registry_store.set_trust("nope", 1, None)
    with pytest.raises(VersionNotFoundError):
        registry_store.set_signature("fraud", 2, ArtifactSignature("ed25519", "k" * 16, "ab"))


def test_a_drafts_trust_and_signature_are_ignored(registry_store: RegistryStore, draft: DraftFactory) -> None:
    forged = replace(
        draft("fraud"),
        trust=VersionTrust("mallory", T0, "trust me"),
        artifact_signature=ArtifactSignature("ed25519", "0" * 16, "00" * 64),
    )

    stored = registry_store.create_version(forged, None)

    assert stored.trust is None and stored.artifact_signature is None
    assert registry_store.get_version("fraud", 1).trust is None


def test_the_seal_signs_the_numbered_version_in_the_same_call(
    registry_store: RegistryStore, draft: DraftFactory
) -> None:
    seen: list[tuple[str, int, str]] = []

    def seal(version: ModelVersion) -> ArtifactSignature:
        seen.append((version.name, version.version, version.artifact_sha256))
        return ArtifactSignature("ed25519", "a1" * 8, f"{version.version:02x}" * 64)

    first = registry_store.create_version(draft("fraud", artifact_sha256=SHA_A), None, seal=seal)
    second = registry_store.create_version(draft("fraud", artifact_sha256=SHA_B), make_profile(), seal=seal)
    unsigned = registry_store.create_version(draft("fraud"), None, seal=lambda v: None)

    assert seen == [("fraud", 1, SHA_A), ("fraud", 2, SHA_B)]
    assert first.artifact_signature == ArtifactSignature("ed25519", "a1" * 8, "01" * 64)
    assert registry_store.get_version("fraud", 2).artifact_signature == ArtifactSignature(
        "ed25519", "a1" * 8, "02" * 64
    )
    assert second == registry_store.get_version("fraud", 2)
    assert unsigned.artifact_signature is None


def test_a_failing_seal_stores_nothing(registry_store: RegistryStore, draft: DraftFactory) -> None:
    registry_store.create_version(draft("fraud"), None)

    def seal(version: ModelVersion) -> ArtifactSignature:
        raise RuntimeError("the key is gone")

    with pytest.raises(RuntimeError, match="the key is gone"):
        registry_store.create_version(draft("fraud"), make_profile(), seal=seal)
    with pytest.raises(RuntimeError):
        registry_store.create_version(draft("churn"), None, seal=seal)

    assert [v.version for v in registry_store.list_versions("fraud")] == [1]
    assert registry_store.get_model("fraud").latest_version == 1
    with pytest.raises(ModelNotFoundError):
        registry_store.get_model("churn")
    assert registry_store.create_version(draft("fraud"), None).version == 2  # no number was used up


def test_a_signature_can_be_added_later(registry_store: RegistryStore, draft: DraftFactory) -> None:
    registry_store.create_version(draft("fraud"), None)
    registry_store.set_status("fraud", 1, VersionStatus.ARCHIVED, reason="old")
    signature = ArtifactSignature("ed25519", "b2" * 8, "ff" * 64)

    signed = registry_store.set_signature("fraud", 1, signature)

    assert signed.artifact_signature == signature
    assert (signed.status, signed.status_reason) == (VersionStatus.ARCHIVED, "old")
    assert registry_store.get_version("fraud", 1) == signed


def test_requirements_can_be_edited_and_nothing_else_changes(
    registry_store: RegistryStore, draft: DraftFactory
) -> None:
    created = registry_store.create_version(draft("fraud"), None)

    edited = registry_store.set_requirements("fraud", 1, {"scikit-learn": "1.2.2", "numpy": "1.26.4"})

    assert edited.lineage.requirements == {"numpy": "1.26.4", "scikit-learn": "1.2.2"}
    assert edited.lineage.params == created.lineage.params and edited.artifact_sha256 == created.artifact_sha256
    assert registry_store.get_version("fraud", 1) == edited
    with pytest.raises(VersionNotFoundError):
        registry_store.set_requirements("fraud", 2, {})
    with pytest.raises(ModelNotFoundError):
        registry_store.set_requirements("nope", 1, {})
