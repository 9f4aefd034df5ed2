"""Audit privacy: fields hashed, redacted or encrypted before chaining; erasure that keeps the chain verifying."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from corral.audit.privacy import (
    ERASED,
    REDACTED,
    AuditPolicy,
    MemorySubjectKeys,
    Protector,
    StoreSubjectKeys,
    field_token,
    forget,
    protect,
    reveal,
    subject_ref,
)
from corral.audit.records import PredictionRecord, verify_chain
from corral.errors import ConfigurationError, StoreError
from corral.storage.memory import MemoryAuditStore

SECRET = b"s" * 32
T = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
POLICY = AuditPolicy(
    fields={"name": "encrypt", "email": "hash", "notes": "redact", "customer_id": "hash"}, subject_field="customer_id"
)


def record(i: int, customer: Any = "C-1", **inputs: Any) -> PredictionRecord:
    values = {"customer_id": customer, "name": f"Ann {i}", "email": "ann@example.com", "notes": "VIP", "x": float(i)}
    return PredictionRecord(f"p{i}", T, "loans", "m", 1, {**values, **inputs}, i % 2, (0.5, 0.5))


def test_protect_redacts_hashes_and_encrypts_named_fields_only() -> None:
    keys = MemorySubjectKeys()
    out = protect(record(1), POLICY, keys, secret=SECRET)

    assert out.inputs["notes"] == REDACTED
    assert out.inputs["x"] == 1.0  # not named: kept as served
    assert out.inputs["email"] == field_token("ann@example.com", SECRET)
    assert out.inputs["customer_id"] == field_token("C-1", SECRET)
    sealed = out.inputs["name"]
    assert set(sealed) == {"$enc", "subject", "kid"}
    assert sealed["subject"] == subject_ref("C-1", SECRET)
    assert "Ann" not in str(out.to_dict()) and "C-1" not in str(out.to_dict())
    assert keys.get(subject_ref("C-1", SECRET)) is not None


def test_hashes_are_keyed_stable_and_typed() -> None:
    token = field_token("ann@example.com", SECRET)["$hash"]
    assert token == field_token("ann@example.com", SECRET)["$hash"]
    assert token != field_token("ann@example.com", b"t" * 32)["$hash"]  # another installation
    assert token != hashlib.sha256(b"ann@example.com").hexdigest()  # not guessable without the secret
    assert field_token(1, SECRET) != field_token("1", SECRET)
    assert subject_ref(42, SECRET) == subject_ref("42", SECRET)  # the command line gives text


def test_encryption_is_randomised_and_reveal_gives_the_values_back() -> None:
    keys = MemorySubjectKeys()
    a = protect(record(1), POLICY, keys, secret=SECRET)
    b = protect(record(1), POLICY, keys, secret=SECRET)
    assert a.inputs["name"]["$enc"] != b.inputs["name"]["$enc"]

    shown = reveal(a, keys)
    assert shown.inputs["name"] == "Ann 1"
    assert shown.inputs["email"] == a.inputs["email"]  # hashes are one-way
    assert shown.inputs["notes"] == REDACTED


def test_forget_erases_encrypted_fields_and_the_chain_still_verifies() -> None:
    store = MemoryAuditStore()
    keys = StoreSubjectKeys(store, SECRET)
    protected = [protect(record(i, customer="C-1" if i % 2 else "C-2"), POLICY, keys, secret=SECRET) for i in range(6)]
    stored = store.append(protected)
    before = [r.to_dict() for r in store.scan()]

    assert forget("C-1", keys, SECRET) is True
    assert forget("C-1", keys, SECRET) is False  # already erased
    assert forget("nobody", keys, SECRET) is False

    after = list(store.scan())
    assert [r.to_dict() for r in after] == before  # no stored byte changed
    check = verify_chain(after)
    assert check.ok and check.checked == 6 and check.head_hash == stored[-1].hash
    shown = {r.prediction_id: reveal(r, keys).inputs["name"] for r in after}
    assert shown == {"p0": "Ann 0", "p1": ERASED, "p2": "Ann 2", "p3": ERASED, "p4": "Ann 4", "p5": ERASED}


def test_a_subject_seen_again_after_erasure_gets_a_new_key() -> None:
    keys = MemorySubjectKeys()
    old = protect(record(1), POLICY, keys, secret=SECRET)
    forget("C-1", keys, SECRET)
    new = protect(record(2), POLICY, keys, secret=SECRET)

    assert new.inputs["name"]["kid"] != old.inputs["name"]["kid"]
    assert reveal(old, keys).inputs["name"] == ERASED
    assert reveal(new, keys).inputs["name"] == "Ann 2"


def test_a_record_without_its_subject_has_encrypted_fields_redacted() -> None:
    keys = MemorySubjectKeys()
    for missing in (None, "", float("nan")):
        out = protect(record(1, customer=missing), POLICY, keys, secret=SECRET)
        assert out.inputs["name"] == REDACTED
    no_field = replace(record(1), inputs={"name": "Ann", "x": 1.0})
    out = protect(no_field, POLICY, keys, secret=SECRET)
    assert out.inputs == {"name": REDACTED, "x": 1.0}
    assert keys._keys == {}  # no key was made up for nobody


def test_a_ciphertext_moved_to_another_record_fails_authentication() -> None:
    keys = MemorySubjectKeys()
    a = protect(record(1), POLICY, keys, secret=SECRET)
    b = protect(record(2), POLICY, keys, secret=SECRET)
    moved = replace(b, inputs={**b.inputs, "name": a.inputs["name"]})
    with pytest.raises(StoreError, match="fails authentication"):
        reveal(moved, keys)


def test_protect_refuses_chained_records_and_missing_secrets() -> None:
    keys = MemorySubjectKeys()
    with pytest.raises(ValueError, match="already chained"):
        protect(record(1).chained(1, "0" * 64), POLICY, keys, secret=SECRET)
    with pytest.raises(ConfigurationError, match="installation secret"):
        protect(record(1), POLICY, keys)
    with pytest.raises(ConfigurationError, match="subject key store"):
        protect(record(1), POLICY, None, secret=SECRET)
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        protect(record(1), POLICY, keys, secret=b"short")
    redact_only = AuditPolicy(fields={"notes": "redact"})
    assert protect(record(1), redact_only).inputs["notes"] == REDACTED  # no secret needed
    assert protect(record(1), AuditPolicy()) == record(1)


def test_keys_are_stored_wrapped_under_the_installation_secret() -> None:
    store = MemoryAuditStore()
    keys = StoreSubjectKeys(store, SECRET)
    ref = subject_ref("C-1", SECRET)
    key = keys.get_or_create(ref)
    assert len(key) == 32 and keys.get_or_create(ref) == key
    wrapped = store.subject_key(ref)
    assert wrapped is not None and key not in wrapped
    with pytest.raises(ConfigurationError, match="installation secret differs"):
        StoreSubjectKeys(store, b"t" * 32).get(ref)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fields": {"name": "scramble"}}, "field 'name': unknown mode 'scramble'"),
        ({"retention": 30}, r"unknown audit policy settings \['retention'\]"),
        ({"fields": {"name": "encrypt"}}, r"fields \['name'\] are encrypted .* subject_field"),
        ({"fields": {"name": "encrypt"}, "subject_field": "customer_id"}, "subject_field 'customer_id' must itself"),
        ({"retention_days": 0}, "retention_days must be"),
        ({"retention_days": True}, "retention_days must be"),
        ({"retention_days": 30.5}, "retention_days must be"),
        ({"fields": ["name"]}, "fields must map"),
    ],
)
def test_bad_policies_are_refused_by_name(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AuditPolicy.from_dict(data)


def test_policies_round_trip_and_default_to_six_months() -> None:
    assert AuditPolicy.from_dict(None) == AuditPolicy() and AuditPolicy().retention_days == 183
    assert AuditPolicy.from_dict(POLICY.to_dict()) == POLICY
    assert AuditPolicy.from_dict({"retention_days": None}).retention_days is None
    assert POLICY.to_dict()["fields"] == {"customer_id": "hash", "email": "hash", "name": "encrypt", "notes": "redact"}


def test_the_protector_applies_each_deployments_stored_policy_and_caches_it() -> None:
    store = MemoryAuditStore()
    store.set_policy("loans", POLICY.to_dict())
    now = [0.0]
    protector = Protector.from_store(store, secret=SECRET, ttl_s=5.0)
    protector.clock = lambda: now[0]
    other = replace(record(2), deployment="other")

    out = protector([record(1), other])
    assert out[0].inputs["notes"] == REDACTED and out[1].inputs["notes"] == "VIP"

    store.set_policy("other", {"fields": {"notes": "redact"}})
    assert protector([other])[0].inputs["notes"] == "VIP"  # cached
    now[0] = 6.0
    assert protector([other])[0].inputs["notes"] == REDACTED
    stored = store.append(protector([record(3)]))
    assert reveal(stored[0], StoreSubjectKeys(store, SECRET)).inputs["name"] == "Ann 3"


def test_a_protector_without_secret_refuses_policies_that_need_it() -> None:
    store = MemoryAuditStore()
    store.set_policy("loans", POLICY.to_dict())
    with pytest.raises(ConfigurationError, match="CORRAL_AUDIT__SECRET"):
        Protector.from_store(store)([record(1)])
