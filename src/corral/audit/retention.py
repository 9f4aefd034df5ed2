"""Retention: records past their deployment's retention move to an export, and the chain still verifies.

**Only a prefix is ever pruned.** :func:`prune` finds the largest ``S`` such that every record with
``seq <= S`` is older than its own deployment's retention (:attr:`AuditPolicy.retention_days
<corral.audit.privacy.AuditPolicy.retention_days>`; 183 days for a deployment without a policy, never for
one whose retention is null). A record still inside its retention holds back every record after it, so
a record is kept *longer* than its retention when an older one must stay, and never removed while the
chain still needs it. The records are pruned in batches; for each batch ``a+1..S`` (``a`` the previous
anchor, 0 at first):

1. the batch is checked to chain from the previous anchor (a broken chain is refused: pruning would
   destroy the evidence), and against every stored signed checkpoint it covers;
2. it is written to ``<exporter_url>/audit-<a+1>-<S>.jsonl`` (one record per line, as
   :meth:`~corral.audit.records.PredictionRecord.to_dict` gives it, so protected fields stay protected)
   and ``audit-<a+1>-<S>.manifest.json`` (first and last ``seq``, the anchor hash it continues from, the
   last record's hash, the count and the SHA-256 of the export file), and both are read back and checked;
3. only then, in one transaction, the records ``seq <= S`` are deleted (with their labels and
   explanations) and the **anchor** ``(S, hash of record S, export URL)`` is stored
   (``AuditStore.delete_through``, a compare-and-set on the previous anchor, so two pruners cannot both
   delete). An export that fails deletes nothing; a crash after the export and before the deletion leaves
   an export that the next run writes again.

**How verification works across retention.**

* The live log (:func:`verify_log`): :func:`~corral.audit.records.verify_chain` starts from the newest
  anchor (``after_seq=S, after_hash=H``) instead of genesis. The first kept record's ``prev_hash`` must
  equal ``H``. Where a signed checkpoint exists at ``S`` its hash must equal the anchor's. A signed
  checkpoint *after* ``S`` also vouches for the anchor: its hash depends on ``H`` through every record
  between them, so a forged anchor cannot be made to verify without re-signing.
* An export on its own (:func:`verify_export`): its SHA-256 must match the manifest, and its records must
  chain from the manifest's ``after_hash`` (the previous anchor, genesis for the first) to its
  ``last_hash``. Signed checkpoints inside its range can be checked against its records' hashes.
* The whole history (:func:`verify_history`): every anchor's export verifies from the anchor before it and
  ends at that anchor's hash, then the live log verifies from the newest anchor. That is the same proof as
  an unpruned chain from genesis, as long as the exports are kept.

Erasure (:func:`corral.audit.privacy.forget`) reaches exports too: they hold the same ciphertexts, whose
keys live only in the database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import fsspec

from corral.audit.privacy import AuditPolicy
from corral.audit.records import GENESIS, ChainCheck, PredictionRecord, plain, verify_chain
from corral.errors import StoreError

if TYPE_CHECKING:
    from corral.audit.ports import AuditStore

MANIFEST_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where the pruned chain resumes: record ``seq`` had ``hash``; records up to it are in ``export_url``."""

    seq: int
    hash: str
    created_at: datetime
    export_url: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "created_at": plain(self.created_at), "export_url": self.export_url}


@dataclass(frozen=True, slots=True)
class ExportManifest:
    """What one export file holds: records ``first_seq..last_seq``, chained from ``after_hash``."""

    url: str
    first_seq: int
    last_seq: int
    count: int
    after_hash: str
    last_hash: str
    sha256: str
    created_at: datetime
    deployments: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "file": self.url.rsplit("/", 1)[-1],
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "count": self.count,
            "after_hash": self.after_hash,
            "last_hash": self.last_hash,
            "sha256": self.sha256,
            "created_at": plain(self.created_at),
            "deployments": dict(sorted(self.deployments.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], url: str) -> ExportManifest:
        return cls(
            url=url,
            first_seq=int(data["first_seq"]),
            last_seq=int(data["last_seq"]),
            count=int(data["count"]),
            after_hash=str(data["after_hash"]),
            last_hash=str(data["last_hash"]),
            sha256=str(data["sha256"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            deployments={str(k): int(v) for k, v in (data.get("deployments") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What :func:`prune` did: records moved out, their exports, the newest anchor, and what holds the rest."""

    pruned: int
    exports: tuple[ExportManifest, ...]
    anchor: Anchor | None
    kept_from: int | None = None
    kept_because: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pruned": self.pruned,
            "exports": [e.to_dict() | {"url": e.url} for e in self.exports],
            "anchor": self.anchor.to_dict() if self.anchor is not None else None,
            "kept_from": self.kept_from,
            "kept_because": self.kept_because,
        }


def load_policies(store: AuditStore) -> dict[str, AuditPolicy]:
    """Every stored deployment policy."""
    return {name: AuditPolicy.from_dict(data) for name, data in store.policies().items()}


def expires_at(record: PredictionRecord, policy: AuditPolicy) -> datetime | None:
    """When ``record`` passes its retention (``None``: never)."""
    if policy.retention_days is None:
        return None
    return record.timestamp + timedelta(days=policy.retention_days)


def export_name(first_seq: int, last_seq: int) -> str:
    return f"audit-{first_seq}-{last_seq}"


def manifest_url(export_url: str) -> str:
    """The manifest beside an export file."""
    return export_url.removesuffix(".jsonl") + ".manifest.json"


def prune(
    store: AuditStore,
    exporter_url: str,
    policies: Mapping[str, AuditPolicy],
    now: datetime,
    *,
    default: AuditPolicy | None = None,
    batch: int = 50_000,
) -> PruneResult:
    """Move the prefix of the log past retention to exports under ``exporter_url``, then delete it.

    Args:
        store: the prediction log.
        exporter_url: a folder or fsspec URL for the exports (e.g. ``s3://bucket/corral-audit``).
        policies: policies by deployment; others use ``default`` (183 days).
        now: the time retention is measured from (timezone-aware).
        batch: most records in one export file.

    Raises:
        StoreError: the chain does not verify from the newest anchor, a signed checkpoint disagrees with
            the log, or the export could not be written and read back (nothing is deleted).
        ConflictError: another prune moved the anchor meanwhile (nothing more is deleted).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    fallback = default or AuditPolicy()
    anchors = store.anchors()
    anchor = anchors[-1] if anchors else None
    exports: list[ExportManifest] = []
    pruned = 0
    kept_from: int | None = None
    kept_because: str | None = None
    while True:
        after_seq, after_hash = (anchor.seq, anchor.hash) if anchor is not None else (0, GENESIS)
        records: list[PredictionRecord] = []
        for record in store.scan(after_seq=after_seq, chunk=min(batch, 5000)):
            until = expires_at(record, policies.get(record.deployment, fallback))
            if until is None or until > now:
                kept_from = record.seq
                kept_because = f"record {record.seq} ({record.deployment}) is kept " + (
                    "for ever" if until is None else f"until {until.isoformat()}"
                )
                break
            records.append(record)
            if len(records) >= batch:
                break
        if not records:
            break
        _check_before_pruning(store, records, after_seq, after_hash)
        manifest = write_export(records, exporter_url, after_hash=after_hash, now=now)
        pruned += store.delete_through(
            records[-1].seq, hash=records[-1].hash, export_url=manifest.url, after_seq=after_seq
        )
        exports.append(manifest)
        anchor = Anchor(records[-1].seq, records[-1].hash, now, manifest.url)
        if kept_from is not None or len(records) < batch:
            break
    return PruneResult(pruned, tuple(exports), anchor, kept_from, kept_because)


def _check_before_pruning(store: AuditStore, records: Sequence[PredictionRecord], after_seq: int, after: str) -> None:
    check = verify_chain(records, after_seq=after_seq, after_hash=after)
    if not check.ok:
        raise StoreError(f"refusing to prune: the chain breaks at record {check.first_bad_seq}: {check.reason}")
    hashes = {r.seq: r.hash for r in records}
    for checkpoint in store.checkpoints(after_seq=after_seq):
        if checkpoint.seq > records[-1].seq:
            break
        if hashes.get(checkpoint.seq) != checkpoint.hash:
            raise StoreError(
                f"refusing to prune: the signed checkpoint at record {checkpoint.seq} names hash "
                f"{checkpoint.hash}, the log holds {hashes.get(checkpoint.seq)}"
            )


def write_export(
    records: Sequence[PredictionRecord], exporter_url: str, *, after_hash: str, now: datetime
) -> ExportManifest:
    """Write ``records`` and their manifest under ``exporter_url``, read both back and check them.

    Raises:
        StoreError: writing or reading back failed, or the bytes read back differ.
    """
    if not records:
        raise ValueError("nothing to export")
    data = b"".join(_line(r) for r in records)
    digest = hashlib.sha256(data).hexdigest()
    name = export_name(records[0].seq, records[-1].seq)
    root = exporter_url.rstrip("/")
    url = f"{root}/{name}.jsonl"
    deployments: dict[str, int] = {}
    for record in records:
        deployments[record.deployment] = deployments.get(record.deployment, 0) + 1
    manifest = ExportManifest(
        url=url,
        first_seq=records[0].seq,
        last_seq=records[-1].seq,
        count=len(records),
        after_hash=after_hash,
        last_hash=records[-1].hash,
        sha256=digest,
        created_at=now,
        deployments=deployments,
    )
    meta = json.dumps(manifest.to_dict(), indent=2, sort_keys=True).encode() + b"\n"
    try:
        fs, folder = fsspec.core.url_to_fs(root)
        fs.makedirs(folder, exist_ok=True)
        path, meta_path = f"{folder.rstrip('/')}/{name}.jsonl", f"{folder.rstrip('/')}/{name}.manifest.json"
        fs.pipe_file(path, data)
        fs.pipe_file(meta_path, meta)
        intact = hashlib.sha256(fs.cat_file(path)).hexdigest() == digest and fs.cat_file(meta_path) == meta
    except (OSError, ValueError, ImportError) as exc:
        raise StoreError(f"could not write the audit export {url}: {exc}; nothing was deleted") from exc
    if not intact:
        raise StoreError(f"the audit export {url} reads back differently from what was written; nothing was deleted")
    return manifest


def read_export(export_url: str) -> tuple[ExportManifest, list[PredictionRecord]]:
    """An export's manifest and records.

    Raises:
        StoreError: the file or its manifest is missing or unreadable, or its SHA-256 differs.
    """
    try:
        fs, path = fsspec.core.url_to_fs(export_url)
        manifest = ExportManifest.from_dict(json.loads(fs.cat_file(manifest_url(path))), export_url)
        data = fs.cat_file(path)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
        raise StoreError(f"cannot read the audit export {export_url}: {exc!r}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.sha256:
        raise StoreError(f"the audit export {export_url} has SHA-256 {digest}, its manifest says {manifest.sha256}")
    records = [PredictionRecord.from_dict(json.loads(line)) for line in data.splitlines() if line.strip()]
    return manifest, records


def verify_export(export_url: str, *, after_hash: str | None = None) -> ChainCheck:
    """Check one export on its own: its SHA-256, count, and chain from ``after_hash`` (default: its manifest's)."""
    try:
        manifest, records = read_export(export_url)
    except StoreError as exc:
        return ChainCheck(0, False, 0, after_hash or "", None, str(exc))
    start = manifest.after_hash if after_hash is None else after_hash
    check = verify_chain(records, after_seq=manifest.first_seq - 1, after_hash=start)
    if not check.ok:
        return check
    if (check.head_seq, check.head_hash) != (manifest.last_seq, manifest.last_hash) or check.checked != manifest.count:
        why = (
            f"the export ends at record {check.head_seq} ({check.checked} records), its manifest says "
            f"{manifest.last_seq} ({manifest.count} records) with hash {manifest.last_hash}"
        )
        return ChainCheck(check.checked, False, check.head_seq, check.head_hash, check.head_seq + 1, why)
    return check


def verify_log(store: AuditStore, *, chunk: int = 5000) -> ChainCheck:
    """Verify the live log from its newest anchor (genesis when nothing was pruned)."""
    anchors = store.anchors()
    seq, start = (anchors[-1].seq, anchors[-1].hash) if anchors else (0, GENESIS)
    if seq:
        signed = [c for c in store.checkpoints(after_seq=seq - 1) if c.seq == seq]
        if signed and signed[0].hash != start:
            why = f"the anchor at record {seq} has hash {start}, the signed checkpoint there says {signed[0].hash}"
            return ChainCheck(0, False, seq, start, seq, why)
    return verify_chain(store.scan(after_seq=seq, chunk=chunk), after_seq=seq, after_hash=start)


def verify_history(store: AuditStore, *, chunk: int = 5000) -> ChainCheck:
    """Verify the chain from genesis: every anchor's export from the anchor before it, then the live log."""
    seq, prev, checked = 0, GENESIS, 0
    for anchor in store.anchors():
        check = verify_export(anchor.export_url, after_hash=prev)
        if check.ok and (check.head_seq, check.head_hash) != (anchor.seq, anchor.hash):
            why = f"the export {anchor.export_url} ends at record {check.head_seq}, its anchor is record {anchor.seq}"
            check = ChainCheck(check.checked, False, check.head_seq, check.head_hash, anchor.seq, why)
        elif check.ok and check.head_seq - check.checked != seq:
            why = f"the export {anchor.export_url} does not start right after record {seq}"
            check = ChainCheck(check.checked, False, seq, prev, seq + 1, why)
        if not check.ok:
            total = checked + check.checked
            return ChainCheck(total, False, check.head_seq, check.head_hash, check.first_bad_seq, check.reason)
        seq, prev, checked = anchor.seq, anchor.hash, checked + check.checked
    live = verify_log(store, chunk=chunk)
    return ChainCheck(checked + live.checked, live.ok, live.head_seq, live.head_hash, live.first_bad_seq, live.reason)


def _line(record: PredictionRecord) -> bytes:
    return json.dumps(record.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


__all__ = [
    "Anchor",
    "ExportManifest",
    "PruneResult",
    "expires_at",
    "load_policies",
    "prune",
    "read_export",
    "verify_export",
    "verify_history",
    "verify_log",
    "write_export",
]
