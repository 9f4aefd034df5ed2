"""Privacy of the prediction log: fields stored hashed, redacted or encrypted per deployment, and erasure.

Each deployment may have an :class:`AuditPolicy` (stored by ``AuditStore.set_policy``; a deployment
without one keeps every field as served and the default retention). The policy names input fields and
what happens to them **before the record is chained** (:func:`protect`), so the chain hashes the
protected record and no clear value ever reaches the store, an export or a backup:

``redact``
    the value becomes ``"[redacted]"``.
``hash``
    the value becomes ``{"$hash": HMAC-SHA256(installation secret, canonical JSON of the value)}``. Keyed,
    so a low-entropy value (a name, a birth date) cannot be found by hashing guesses without the secret;
    equal values give equal hashes, so records can still be grouped or looked up by value
    (:func:`field_token`). This is pseudonymisation: it is not undone by :func:`forget`.
``encrypt``
    the value becomes ``{"$enc": base64(nonce || AES-256-GCM ciphertext), "subject": <subject ref>,
    "kid": <key id>}``, encrypted with the data subject's own random 256-bit key. The subject is named by
    the policy's ``subject_field`` (an input field, e.g. ``customer_id``); its ref is an HMAC of its
    value, so the log never holds the identifier in clear. The ciphertext is bound to the prediction id
    and the field name (associated data), so it cannot be moved to another record or field.

**Erasure without breaking the chain** (``corral audit forget SUBJECT``): :func:`forget` destroys the
subject's key (:class:`SubjectKeys`). No stored byte changes, so :func:`~corral.audit.records.verify_chain`
still passes, while every field encrypted for that subject, in the database and in every retention
export, becomes unreadable for good: :func:`reveal` shows it as ``"[erased]"``. A later prediction for
the same subject gets a fresh key (a new ``kid``); the erased records stay erased.

Keys are stored wrapped (AES-GCM under a key derived from the installation secret,
:class:`StoreSubjectKeys`), so a copy of the database alone reveals neither encrypted fields nor which
subject a ref belongs to. Losing the installation secret makes encrypted fields unreadable and hashed
fields unmatchable: keep it like any other production secret.

A record whose subject field is missing or null cannot be given a key: its ``encrypt`` fields are
**redacted** instead (documented fallback: the prediction is still recorded, nothing personal is kept in
clear). Fields a policy names that a record does not carry are left alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from corral.audit.records import PredictionRecord, plain
from corral.errors import ConfigurationError, CorralError, StoreError

if TYPE_CHECKING:
    from corral.audit.ports import AuditStore

Mode = Literal["hash", "redact", "encrypt"]
MODES: tuple[Mode, ...] = ("hash", "redact", "encrypt")
DEFAULT_RETENTION_DAYS = 183
"""About six months: the EU AI Act's minimum for the logs of high-risk systems (Art. 19, Art. 26(6))."""
REDACTED = "[redacted]"
ERASED = "[erased]"
MIN_SECRET_BYTES = 16

_SUBJECT = b"corral-audit-subject:v1:"
_FIELD = b"corral-audit-field:v1:"
_KEK = b"corral-audit-kek:v1"
_KEYS = ("retention_days", "fields", "subject_field", "explain")


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    """What the prediction log keeps of one deployment's predictions, and for how long.

    Attributes:
        retention_days: records older than this may be moved to an export and removed from the log
            (:mod:`corral.audit.retention`); ``None`` keeps them for ever. Default 183 days.
        fields: input field name -> ``"hash"``, ``"redact"`` or ``"encrypt"``.
        subject_field: the input field naming the data subject; required when a field is encrypted, and
            must itself be protected (or erasure would leave the identifier in the log).
        explain: when predictions are explained as they are recorded: ``on_demand`` (default), ``always`` or
            ``sampled:N%`` (see :class:`corral.audit.explain.ExplainPolicy`).

    Raises:
        ConfigurationError: an unknown mode, a bad retention, or a missing / unprotected subject field.
    """

    retention_days: int | None = DEFAULT_RETENTION_DAYS
    fields: Mapping[str, Mode] = field(default_factory=dict)
    subject_field: str | None = None
    explain: str = "on_demand"

    def __post_init__(self) -> None:
        from corral.audit.explain import ExplainPolicy  # shap: imported when a policy is first checked

        try:
            ExplainPolicy.parse(self.explain)
        except CorralError as exc:
            raise ConfigurationError(str(exc)) from None
        days = self.retention_days
        if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
            raise ConfigurationError(f"retention_days must be a whole number of days >= 1 or null, got {days!r}")
        for name, mode in self.fields.items():
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"field names must be non-empty strings, got {name!r}")
            if mode not in MODES:
                raise ConfigurationError(f"field {name!r}: unknown mode {mode!r}; modes are {', '.join(MODES)}")
        if self.subject_field is not None and (not isinstance(self.subject_field, str) or not self.subject_field):
            raise ConfigurationError(f"subject_field must be a non-empty string, got {self.subject_field!r}")
        encrypted = sorted(n for n, m in self.fields.items() if m == "encrypt")
        if encrypted and self.subject_field is None:
            raise ConfigurationError(
                f"fields {encrypted} are encrypted per data subject: name the input field holding the "
                "subject's identifier with subject_field"
            )
        if self.subject_field is not None and self.subject_field not in self.fields:
            raise ConfigurationError(
                f"subject_field {self.subject_field!r} must itself be hashed, redacted or encrypted "
                "(add it to fields), or erasing a subject would leave its identifier in the log"
            )

    @property
    def needs_secret(self) -> bool:
        """Whether protecting a record needs the installation secret (hashing or encrypting)."""
        return any(m in ("hash", "encrypt") for m in self.fields.values())

    @property
    def encrypts(self) -> bool:
        return any(m == "encrypt" for m in self.fields.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "retention_days": self.retention_days,
            "fields": dict(sorted(self.fields.items())),
            "subject_field": self.subject_field,
            "explain": self.explain,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AuditPolicy:
        """A policy from :meth:`to_dict` output or a user's partial one (missing keys keep defaults).

        Raises:
            ConfigurationError: unknown keys or values, named.
        """
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"an audit policy is a mapping of {', '.join(_KEYS)}, got {data!r}")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ConfigurationError(f"unknown audit policy settings {unknown}; known: {', '.join(_KEYS)}")
        fields = data.get("fields") or {}
        if not isinstance(fields, Mapping):
            raise ConfigurationError(f"fields must map field names to {'/'.join(MODES)}, got {fields!r}")
        return cls(
            retention_days=data.get("retention_days", DEFAULT_RETENTION_DAYS),
            fields={str(k): cast(Mode, v) for k, v in fields.items()},
            subject_field=data.get("subject_field"),
            explain=str(data.get("explain", "on_demand")),
        )


class SubjectKeys(Protocol):
    """Each data subject's own 256-bit key, by subject ref (:func:`subject_ref`)."""

    def get_or_create(self, subject_ref: str) -> bytes:
        """The subject's key, created when it has none (or its old one was destroyed)."""
        ...

    def get(self, subject_ref: str) -> bytes | None:
        """The subject's key, or ``None`` when it never had one or it was destroyed."""
        ...

    def destroy(self, subject_ref: str) -> bool:
        """Destroy the subject's key for good; ``False`` when there was no live key."""
        ...


class StoreSubjectKeys:
    """:class:`SubjectKeys` kept in an :class:`~corral.audit.ports.AuditStore`, wrapped under the secret.

    The store only ever sees ``nonce || AES-GCM(KEK, key)`` with the subject ref as associated data,
    where ``KEK = HMAC-SHA256(secret, "corral-audit-kek:v1")``.
    """

    def __init__(self, store: AuditStore, secret: bytes) -> None:
        self.store = store
        self._kek = AESGCM(hmac.new(_check_secret(secret), _KEK, hashlib.sha256).digest())

    def get_or_create(self, subject_ref: str) -> bytes:
        wrapped = self.store.subject_key(subject_ref)
        if wrapped is None:
            nonce = os.urandom(12)
            fresh = nonce + self._kek.encrypt(nonce, AESGCM.generate_key(bit_length=256), subject_ref.encode())
            wrapped = self.store.subject_key(subject_ref, create=fresh)  # another writer may have won
            assert wrapped is not None
        return self._unwrap(subject_ref, wrapped)

    def get(self, subject_ref: str) -> bytes | None:
        wrapped = self.store.subject_key(subject_ref)
        return self._unwrap(subject_ref, wrapped) if wrapped is not None else None

    def destroy(self, subject_ref: str) -> bool:
        return self.store.destroy_subject_key(subject_ref)

    def _unwrap(self, subject_ref: str, wrapped: bytes) -> bytes:
        try:
            return self._kek.decrypt(bytes(wrapped[:12]), bytes(wrapped[12:]), subject_ref.encode())
        except InvalidTag as exc:
            raise ConfigurationError(
                f"the key of subject {subject_ref[:12]}... cannot be unwrapped: the installation secret "
                "differs from the one that created it"
            ) from exc


class MemorySubjectKeys:
    """:class:`SubjectKeys` in a dictionary (tests, notebooks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, bytes | None] = {}

    def get_or_create(self, subject_ref: str) -> bytes:
        with self._lock:
            key = self._keys.get(subject_ref)
            if key is None:
                key = self._keys[subject_ref] = AESGCM.generate_key(bit_length=256)
            return key

    def get(self, subject_ref: str) -> bytes | None:
        with self._lock:
            return self._keys.get(subject_ref)

    def destroy(self, subject_ref: str) -> bool:
        with self._lock:
            live = self._keys.get(subject_ref) is not None
            if subject_ref in self._keys:
                self._keys[subject_ref] = None
            return live


def subject_ref(subject: Any, secret: bytes) -> str:
    """The opaque ref of a data subject: ``HMAC-SHA256(secret, str(subject))`` in hex.

    The subject's identifier is compared as text, so ``42`` in a record and ``"42"`` on the command line
    name the same subject.
    """
    return hmac.new(_check_secret(secret), _SUBJECT + str(plain(subject)).encode(), hashlib.sha256).hexdigest()


def field_token(value: Any, secret: bytes) -> dict[str, str]:
    """What ``hash`` stores for ``value`` (to look records up by a hashed field's value)."""
    digest = hmac.new(_check_secret(secret), _FIELD + _json(value), hashlib.sha256).hexdigest()
    return {"$hash": digest}


def key_id(key: bytes) -> str:
    """A short public id of a subject key (tells a record encrypted under an older, destroyed key)."""
    return hashlib.sha256(b"corral-audit-kid:v1:" + key).hexdigest()[:16]


def protect(
    record: PredictionRecord, policy: AuditPolicy, keys: SubjectKeys | None = None, *, secret: bytes | None = None
) -> PredictionRecord:
    """``record`` with its inputs hashed, redacted and encrypted as ``policy`` says; call before chaining.

    Raises:
        ConfigurationError: the policy hashes or encrypts but no secret (or no key store) was given.
        ValueError: ``record`` is already chained (protecting it would break its hash).
    """
    if not policy.fields:
        return record
    if record.seq or record.hash:
        raise ValueError(f"record {record.prediction_id} is already chained; protect records before appending")
    if policy.needs_secret and secret is None:
        raise ConfigurationError(
            "this deployment's audit policy hashes or encrypts fields: an installation secret is needed "
            "(CORRAL_AUDIT__SECRET)"
        )
    if policy.encrypts and keys is None:
        raise ConfigurationError("this deployment's audit policy encrypts fields: a subject key store is needed")
    inputs = dict(record.inputs)
    subject = plain(inputs.get(policy.subject_field)) if policy.subject_field is not None else None
    subject = None if subject == "" else subject
    ref: str | None = None
    key: bytes | None = None
    for name, mode in policy.fields.items():
        if name not in inputs:
            continue
        value = record.inputs[name]
        if mode == "redact" or (mode == "encrypt" and subject is None):
            inputs[name] = REDACTED
        elif mode == "hash":
            assert secret is not None
            inputs[name] = field_token(value, secret)
        else:
            assert secret is not None
            assert keys is not None
            if key is None:
                ref = subject_ref(subject, secret)
                key = keys.get_or_create(ref)
            nonce = os.urandom(12)
            sealed = AESGCM(key).encrypt(nonce, _json(value), _aad(record.prediction_id, name))
            sealed_text = base64.b64encode(nonce + sealed).decode("ascii")
            inputs[name] = {"$enc": sealed_text, "subject": ref, "kid": key_id(key)}
    return replace(record, inputs=inputs)


def reveal(record: PredictionRecord, keys: SubjectKeys) -> PredictionRecord:
    """``record`` with what can be decrypted decrypted; fields of an erased subject read ``"[erased]"``.

    For display only: the result no longer hashes to ``record.hash`` (verify the stored record).

    Raises:
        StoreError: a ciphertext fails authentication under its live key (it was altered).
    """
    found: dict[str, bytes | None] = {}
    inputs = dict(record.inputs)
    changed = False
    for name, value in record.inputs.items():
        if not (isinstance(value, Mapping) and "$enc" in value):
            continue
        changed = True
        ref = str(value.get("subject"))
        if ref not in found:
            found[ref] = keys.get(ref)
        key = found[ref]
        if key is None or key_id(key) != value.get("kid"):
            inputs[name] = ERASED
            continue
        blob = base64.b64decode(str(value["$enc"]))
        try:
            opened = AESGCM(key).decrypt(blob[:12], blob[12:], _aad(record.prediction_id, name))
        except InvalidTag as exc:
            raise StoreError(
                f"field {name!r} of prediction {record.prediction_id} fails authentication: it was altered"
            ) from exc
        inputs[name] = json.loads(opened)
    return replace(record, inputs=inputs) if changed else record


def forget(subject: Any, keys: SubjectKeys, secret: bytes) -> bool:
    """Erase a data subject: destroy its key; ``False`` when it had no live key (never seen, or erased)."""
    return keys.destroy(subject_ref(subject, secret))


class Protector:
    """Applies each deployment's policy to records on their way into the log (the audit sink's hook).

    Policies are read through ``policy_for`` and kept ``ttl_s`` seconds, so a changed policy applies to
    every server within that time. Call it off the event loop (it may read keys from the database).

    Args:
        policy_for: a deployment's policy (the default :class:`AuditPolicy` when it has none).
        keys: subject keys (needed once a policy encrypts).
        secret: the installation secret (needed once a policy hashes or encrypts).
    """

    def __init__(
        self,
        policy_for: Callable[[str], AuditPolicy],
        keys: SubjectKeys | None = None,
        *,
        secret: bytes | None = None,
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy_for = policy_for
        self.keys = keys
        self.secret = _check_secret(secret) if secret is not None else None
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._policies: dict[str, tuple[float, AuditPolicy]] = {}

    @classmethod
    def from_store(cls, store: AuditStore, *, secret: bytes | None = None, ttl_s: float = 5.0) -> Protector:
        """Policies and (wrapped) subject keys from ``store``."""
        keys = StoreSubjectKeys(store, secret) if secret is not None else None
        return cls(lambda d: AuditPolicy.from_dict(store.get_policy(d)), keys, secret=secret, ttl_s=ttl_s)

    def policy(self, deployment: str) -> AuditPolicy:
        now = self.clock()
        with self._lock:
            cached = self._policies.get(deployment)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        policy = self.policy_for(deployment)
        with self._lock:
            self._policies[deployment] = (now, policy)
        return policy

    def __call__(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        keys = _BatchKeys(self.keys) if self.keys is not None else None
        return [protect(r, self.policy(r.deployment), keys, secret=self.secret) for r in records]


class _BatchKeys:
    """Reads each subject's key once per batch."""

    def __init__(self, keys: SubjectKeys) -> None:
        self.keys = keys
        self._seen: dict[str, bytes] = {}

    def get_or_create(self, subject_ref: str) -> bytes:
        if subject_ref not in self._seen:
            self._seen[subject_ref] = self.keys.get_or_create(subject_ref)
        return self._seen[subject_ref]

    def get(self, subject_ref: str) -> bytes | None:
        return self.keys.get(subject_ref)

    def destroy(self, subject_ref: str) -> bool:
        self._seen.pop(subject_ref, None)
        return self.keys.destroy(subject_ref)


def _json(value: Any) -> bytes:
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _aad(prediction_id: str, name: str) -> bytes:
    return f"corral-audit-enc:v1:{prediction_id}:{name}".encode()


def _check_secret(secret: bytes) -> bytes:
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"the audit installation secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret
