"""One recorded prediction, its canonical bytes and the hash chain that links the log.

Each :class:`PredictionRecord` is stored with a gap-free sequence number
``seq`` and ``hash = SHA-256(prev_hash || canonical bytes)``, where the
canonical bytes are the record's fields (``seq`` included, ``hash`` excluded)
as JSON with sorted keys, no spaces, UTF-8, NaN and infinities written as
``null``. Changing, removing, inserting or reordering any record breaks every
hash after it, so :func:`verify_chain` finds the first record that no longer
matches. The first record's ``prev_hash`` is :data:`GENESIS`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

GENESIS = "0" * 64
RECORD_FORMAT = 1


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One answered row as the audit log keeps it.

    ``seq``, ``prev_hash`` and ``hash`` are given by the store when the record
    is appended; a record built from a served event has ``seq=0`` and empty
    hashes until then.
    """

    prediction_id: str
    timestamp: datetime
    deployment: str
    model: str
    version: int
    inputs: Mapping[str, Any]
    output: Any
    probabilities: tuple[float, ...] | None = None
    role: str = "primary"
    artifact_sha256: str = ""
    data_sha256: str | None = None
    latency_ms: float = 0.0
    request_id: str | None = None
    caller: str | None = None
    anomaly_score: float | None = None
    anomaly_flagged: bool = False
    out_of_range: tuple[str, ...] = ()
    seq: int = 0
    prev_hash: str = ""
    hash: str = field(default="", compare=False)

    def content(self) -> dict[str, Any]:
        """The hashed fields as plain JSON values (``hash`` excluded)."""
        return {
            "prediction_id": self.prediction_id,
            "timestamp": plain(self.timestamp),
            "deployment": self.deployment,
            "model": self.model,
            "version": self.version,
            "inputs": _plain_mapping(self.inputs),
            "output": plain(self.output),
            "probabilities": [_finite(p) for p in self.probabilities] if self.probabilities is not None else None,
            "role": self.role,
            "artifact_sha256": self.artifact_sha256,
            "data_sha256": self.data_sha256,
            "latency_ms": _finite(self.latency_ms),
            "request_id": self.request_id,
            "caller": self.caller,
            "anomaly_score": _finite(self.anomaly_score),
            "anomaly_flagged": self.anomaly_flagged,
            "out_of_range": list(self.out_of_range),
            "seq": self.seq,
            "prev_hash": self.prev_hash,
            "format": RECORD_FORMAT,
        }

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON values, ``hash`` included."""
        return {**self.content(), "hash": self.hash}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PredictionRecord:
        """A record from :meth:`to_dict` (what a store or a client got)."""
        probabilities = data.get("probabilities")
        return cls(
            prediction_id=str(data["prediction_id"]),
            timestamp=datetime.fromisoformat(data["timestamp"]),
            deployment=str(data["deployment"]),
            model=str(data["model"]),
            version=int(data["version"]),
            inputs=dict(data["inputs"]),
            output=data.get("output"),
            probabilities=tuple(probabilities) if probabilities is not None else None,
            role=str(data.get("role", "primary")),
            artifact_sha256=str(data.get("artifact_sha256", "")),
            data_sha256=data.get("data_sha256"),
            latency_ms=float(data.get("latency_ms", 0.0)),
            request_id=data.get("request_id"),
            caller=data.get("caller"),
            anomaly_score=data.get("anomaly_score"),
            anomaly_flagged=bool(data.get("anomaly_flagged", False)),
            out_of_range=tuple(data.get("out_of_range", ())),
            seq=int(data.get("seq", 0)),
            prev_hash=str(data.get("prev_hash", "")),
            hash=str(data.get("hash", "")),
        )

    def chained(self, seq: int, prev_hash: str) -> PredictionRecord:
        """This record placed at ``seq`` after a record whose hash is ``prev_hash``."""
        return chain_one(self, seq, prev_hash)[0]


def canonical(record: PredictionRecord) -> bytes:
    """The bytes the chain hashes: sorted-key compact JSON of :meth:`PredictionRecord.content`."""
    return _canonical(record.content())


def _canonical(content: Mapping[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: PredictionRecord) -> str:
    """SHA-256 over the previous hash and this record's canonical bytes."""
    return _hash(record.prev_hash, record.content())


def _hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(_canonical(content))
    return digest.hexdigest()


def chain_one(record: PredictionRecord, seq: int, prev_hash: str) -> tuple[PredictionRecord, dict[str, Any]]:
    """``record`` placed at ``seq`` after ``prev_hash``, and its content (plain JSON values, ``hash`` included):
    what a store writes, computed once."""
    content = record.content()
    content["seq"] = seq
    content["prev_hash"] = prev_hash
    digest = _hash(prev_hash, content)
    content["hash"] = digest
    return replace(record, seq=seq, prev_hash=prev_hash, hash=digest), content


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


_SCALARS = (str, int, bool, type(None))


def _plain_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`plain` of a flat mapping, with the common cases (str, int, bool, None, finite float) inline."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        kind = type(value)
        if kind is float:
            out[str(key)] = value if math.isfinite(value) else None
        elif kind in _SCALARS:
            out[str(key)] = value
        else:
            out[str(key)] = plain(value)
    return out


def plain(value: Any) -> Any:
    """``value`` as JSON-able Python: NaN/inf as ``None``, times as ISO strings, tuples as lists."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return plain(item())
    isoformat = getattr(value, "isoformat", None)  # pandas Timestamp
    if callable(isoformat):
        return isoformat()
    return str(value)


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The result of walking the chain: how many records matched and, if any, the first that did not."""

    checked: int
    ok: bool
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
        }


def verify_chain(records: Iterable[PredictionRecord], *, after_seq: int = 0, after_hash: str = GENESIS) -> ChainCheck:
    """Walk ``records`` in ``seq`` order from the record after ``after_seq`` and recompute every hash."""
    expected_seq, prev, checked = after_seq + 1, after_hash, 0
    for record in records:
        if record.seq != expected_seq:
            return ChainCheck(checked, False, expected_seq - 1, prev, expected_seq, f"record {expected_seq} is missing")
        if record.prev_hash != prev:
            return ChainCheck(checked, False, expected_seq - 1, prev, record.seq, "previous-hash link is broken")
        if record_hash(record) != record.hash:
            why = f"record {record.seq} ({record.prediction_id}) was altered: its hash does not match its content"
            return ChainCheck(checked, False, expected_seq - 1, prev, record.seq, why)
        prev, expected_seq, checked = record.hash, expected_seq + 1, checked + 1
    return ChainCheck(checked, True, expected_seq - 1, prev)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the chain's record ``seq`` has hash ``hash`` (Ed25519 over :meth:`message`)."""

    seq: int
    hash: str
    created_at: datetime
    key_id: str
    signature: str

    def message(self) -> bytes:
        """The signed bytes: ``corral-audit-checkpoint:v1:<seq>:<hash>:<created_at ISO>``."""
        when = (self.created_at if self.created_at.tzinfo else self.created_at.replace(tzinfo=UTC)).isoformat()
        return f"corral-audit-checkpoint:v1:{self.seq}:{self.hash}:{when}".encode()

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "created_at": plain(self.created_at),
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(
            seq=int(data["seq"]),
            hash=str(data["hash"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            key_id=str(data["key_id"]),
            signature=str(data["signature"]),
        )


@dataclass(frozen=True, slots=True)
class Explanation:
    """Feature attributions of one prediction: ``base_values[k] + sum(contributions[f][k]) = output k``.

    ``outputs`` names what each position explains (e.g. ``proba_1`` or ``prediction``).
    """

    prediction_id: str
    method: str
    outputs: tuple[str, ...]
    base_values: tuple[float, ...]
    contributions: Mapping[str, tuple[float, ...]]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "method": self.method,
            "outputs": list(self.outputs),
            "base_values": list(self.base_values),
            "contributions": {k: list(v) for k, v in self.contributions.items()},
            "created_at": plain(self.created_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Explanation:
        return cls(
            prediction_id=str(data["prediction_id"]),
            method=str(data["method"]),
            outputs=tuple(data["outputs"]),
            base_values=tuple(float(v) for v in data["base_values"]),
            contributions={str(k): tuple(float(x) for x in v) for k, v in data["contributions"].items()},
            created_at=datetime.fromisoformat(data["created_at"]),
        )
