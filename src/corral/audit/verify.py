"""Re-walk the prediction log and check it against its signed checkpoints (``corral audit verify``).

What is caught, and how:

- **altered** record: its content no longer hashes to its stored hash (or, when the attacker also
  recomputed its hash, the next record no longer links to it);
- **missing** (deleted) records: a gap in the sequence numbers, or the log ends before its head row /
  a signed checkpoint says it should;
- **inserted** records: the record after them links to the record before them, or they lie past the head;
- **reordered** records: a record sits where another belongs (found by its link and a look ahead);
- **rewritten** chain: every hash was recomputed consistently after an edit (someone with write access
  to the database); a signed checkpoint, in the database or (out of the attacker's reach) in the external
  location, then disagrees with the hash the log now holds at that record. The last checkpoint that still
  matches bounds where the rewrite began.

Checkpoints are checked too: a bad signature, a checkpoint in the database that is missing from the
external location (or the other way round), and an external file that does not parse are reported.
The report is ``ok`` only when nothing was found.

The walk starts from the newest validly signed checkpoint before ``from_seq`` (trusting its hash), or from
the newest retention anchor (records up to it were pruned into an export, see :mod:`corral.audit.retention`;
a signed checkpoint at the anchor must agree with it), or from the genesis, and reads the log in chunks;
memory stays bounded however long the log is.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from corral.audit.checkpoints import read_external
from corral.audit.keys import Verifier
from corral.audit.ports import AuditStore
from corral.audit.records import GENESIS, Checkpoint, PredictionRecord, record_hash
from corral.errors import SchemaError

LOOKAHEAD = 10_000
"""How many records past a broken link are searched for the record that belongs there."""

_RECENT = 4096


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that does not match: what (``kind``), where (``seq``, ``prediction_id``) and why."""

    kind: str
    message: str
    seq: int | None = None
    prediction_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "prediction_id": self.prediction_id, "message": self.message}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of :func:`verify`; ``problems`` are ordered, the chain's first problem first."""

    from_seq: int
    to_seq: int | None
    pruned_through: int
    started_after: int
    checked: int
    last_seq: int
    head_seq: int
    head_hash: str
    checkpoints: int
    external_checkpoints: int
    checkpoints_matched: int
    external_url: str | None
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "pruned_through": self.pruned_through,
            "started_after": self.started_after,
            "checked": self.checked,
            "last_seq": self.last_seq,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "checkpoints": self.checkpoints,
            "external_checkpoints": self.external_checkpoints,
            "checkpoints_matched": self.checkpoints_matched,
            "external_url": self.external_url,
            "first_problem": self.first.to_dict() if self.first else None,
            "problems": [p.to_dict() for p in self.problems],
        }


class _Walk:
    """Walks records in order from an anchor, remembering what checkpoints need and the last few hashes."""

    def __init__(self, after_seq: int, after_hash: str, watched: set[int]) -> None:
        self.expected = after_seq + 1
        self.prev = after_hash
        self.prev_id: str | None = None
        self.checked = 0
        self.problem: Problem | None = None
        self.watched = watched
        self.at: dict[int, tuple[str, str]] = {}  # seq -> (hash, id), for checkpointed seqs
        self._hashes: OrderedDict[str, int] = OrderedDict()
        self._ids: OrderedDict[int, str] = OrderedDict()

    @property
    def last(self) -> int:
        return self.expected - 1

    def run(self, records: Iterator[PredictionRecord], stop: int | None) -> None:
        for record in records:
            if stop is not None and record.seq > stop:
                return
            self.problem = self._check(record, records)
            if self.problem is not None:
                return
            self._accept(record)

    def _accept(self, record: PredictionRecord) -> None:
        if record.seq in self.watched:
            self.at[record.seq] = (record.hash, record.prediction_id)
        self._hashes[record.hash] = record.seq
        self._ids[record.seq] = record.prediction_id
        if len(self._ids) > _RECENT:
            self._hashes.popitem(last=False)
            self._ids.popitem(last=False)
        self.prev, self.prev_id = record.hash, record.prediction_id
        self.expected += 1
        self.checked += 1

    def _after(self) -> str:
        return f"record {self.last} ({self.prev_id})" if self.prev_id else f"record {self.last}"

    def _check(self, record: PredictionRecord, rest: Iterator[PredictionRecord]) -> Problem | None:
        s, rid = self.expected, record.prediction_id
        if record.seq > s:
            gap = f"record {s} is" if record.seq == s + 1 else f"records {s} to {record.seq - 1} are"
            return Problem(
                "missing",
                f"{gap} missing (deleted): record {record.seq} ({rid}) comes right after {self._after()}",
                s,
                rid,
            )
        if record.seq < s:
            return Problem("reordered", f"record {record.seq} ({rid}) appears again after {self._after()}", s, rid)
        if record.prev_hash == self.prev:
            if record_hash(record) != record.hash:
                return Problem(
                    "altered", f"record {s} ({rid}) was altered: its content no longer matches its hash", s, rid
                )
            return None
        origin = self._hashes.get(record.prev_hash)
        if origin is not None and origin < s - 1:
            first = origin + 1
            count = s - 1 - origin
            return Problem(
                "inserted",
                f"{'a record was' if count == 1 else f'{count} records were'} inserted at {first}: "
                f"record {first} ({self._ids.get(first)}) is not in the original chain; record {s} ({rid}) "
                f"still links to record {origin}",
                first,
                self._ids.get(first),
            )
        if record_hash(record) == record.hash and self.prev_id is not None:
            return Problem(
                "altered",
                f"record {s - 1} ({self.prev_id}) was altered or replaced and its hash recomputed: record {s} ({rid}) "
                f"still links to its original hash",
                s - 1,
                self.prev_id,
            )
        for moved in itertools.islice(rest, LOOKAHEAD):
            if moved.prev_hash == self.prev:
                return Problem(
                    "reordered",
                    f"records were reordered: record {s} holds {rid}, but the record that belongs after "
                    f"{self._after()} is {moved.prediction_id}, now at {moved.seq}",
                    s,
                    rid,
                )
        return Problem(
            "link broken",
            f"record {s} ({rid}) does not link to {self._after()}: a record before it was deleted or it was moved",
            s,
            rid,
        )


def verify(
    store: AuditStore,
    *,
    verifier: Verifier,
    external_url: str | None = None,
    from_seq: int = 1,
    to_seq: int | None = None,
) -> VerifyReport:
    """Walk records ``from_seq`` to ``to_seq`` (default: the head) and check them and every checkpoint.

    Raises:
        SchemaError: ``from_seq`` / ``to_seq`` do not make a range.
        StoreError: the database failed.
    """
    if from_seq < 1:
        raise SchemaError(f"--from must be at least 1, got {from_seq}")
    if to_seq is not None and to_seq < from_seq:
        raise SchemaError(f"--to ({to_seq}) must not be before --from ({from_seq})")
    stored = store.checkpoints()  # read before the walk: every record they sign is already committed
    external: list[Checkpoint] = []
    unreadable: list[str] = []
    if external_url is not None:
        external, unreadable = read_external(external_url)

    valid, marks = _signatures(verifier, stored, external)
    marks.extend(Problem("unreadable", f"in {external_url}: {line}") for line in unreadable)
    if external_url is not None:
        marks.extend(_publication(stored, external, external_url))

    pruned = store.anchors()  # retention removed records up to the newest anchor (they live in its export)
    floor_seq, floor_hash = (pruned[-1].seq, pruned[-1].hash) if pruned else (0, GENESIS)
    anchor_seq = max((seq for seq in valid if floor_seq <= seq < from_seq), default=floor_seq)
    anchor_hash = _trusted(valid[anchor_seq]).hash if anchor_seq in valid else floor_hash
    start: list[Problem] = []
    if floor_seq and floor_seq in valid and _trusted(valid[floor_seq]).hash != floor_hash:
        signed = _trusted(valid[floor_seq]).hash
        start.append(
            Problem(
                "rewritten",
                f"the retention anchor at record {floor_seq} holds hash {floor_hash[:16]}…, the signed checkpoint "
                f"of record {floor_seq} says {signed[:16]}…",
                floor_seq,
            )
        )
    walk = _Walk(anchor_seq, anchor_hash, set(valid))
    walk.run(store.scan(after_seq=anchor_seq), to_seq)
    head_seq, head_hash = store.head()
    if walk.problem is None and walk.last < head_seq and (to_seq is None or walk.last < to_seq):
        # appended while we walked: every record up to the head row read now is committed
        walk.run(store.scan(after_seq=walk.last), head_seq if to_seq is None else min(to_seq, head_seq))
    problems = start + ([walk.problem] if walk.problem is not None else _ends(store, walk, head_seq, head_hash, to_seq))
    matched = _compare(valid, walk, anchor_seq, problems, check_tail=to_seq is None)
    return VerifyReport(
        from_seq=from_seq,
        to_seq=to_seq,
        pruned_through=floor_seq,
        started_after=anchor_seq,
        checked=walk.checked,
        last_seq=walk.last,
        head_seq=head_seq,
        head_hash=head_hash,
        checkpoints=len(stored),
        external_checkpoints=len(external),
        checkpoints_matched=matched,
        external_url=external_url,
        problems=tuple(problems + marks),
    )


Valid = dict[int, list[tuple[str, Checkpoint]]]


def _signatures(
    verifier: Verifier, stored: list[Checkpoint], external: list[Checkpoint]
) -> tuple[Valid, list[Problem]]:
    """Validly signed checkpoints by ``seq`` (with where each came from), and a problem per bad signature."""
    valid: Valid = {}
    marks: list[Problem] = []
    for where, checkpoints in (("database", stored), ("external", external)):
        for checkpoint in checkpoints:
            if verifier.verify(checkpoint):
                valid.setdefault(checkpoint.seq, []).append((where, checkpoint))
                continue
            why = (
                "its signature is not valid"
                if verifier.knows(checkpoint.key_id)
                else f"it is signed by key {checkpoint.key_id}, not by {', '.join(verifier.key_ids)}"
            )
            seq = checkpoint.seq
            marks.append(Problem("bad signature", f"the {where} checkpoint of record {seq}: {why}", seq))
    return valid, marks


def _publication(stored: list[Checkpoint], external: list[Checkpoint], url: str) -> list[Problem]:
    """Checkpoints in the database but not outside it (not yet written), and outside but no longer inside."""
    outside = {c.seq for c in external}
    inside = {c.seq for c in stored}
    marks = [
        Problem("unpublished", f"checkpoint {seq} is in the database but not in {url}", seq)
        for seq in sorted(inside - outside)
    ]
    marks.extend(
        Problem("checkpoint deleted", f"checkpoint {seq} is in {url} but no longer in the database", seq)
        for seq in sorted(outside - inside)
    )
    return marks


def _compare(valid: Valid, walk: _Walk, anchor_seq: int, problems: list[Problem], *, check_tail: bool) -> int:
    """Compare the walked chain with every validly signed checkpoint after the anchor; returns how many matched.

    Adds to ``problems`` the first checkpoint the chain disagrees with (a rewrite), or one signing a record
    past the end of a clean walk (deleted from the end).
    """
    matched = 0
    last_match = anchor_seq
    rewritten = False
    for seq in sorted(valid):
        if seq <= anchor_seq:
            continue
        if seq not in walk.at:
            if check_tail and not problems and seq > walk.last:
                problems.append(
                    Problem(
                        "missing",
                        f"checkpoint {seq} signs record {seq}, but the log ends at record {walk.last}: "
                        "records were deleted from the end",
                        walk.last + 1,
                    )
                )
            continue
        have, pid = walk.at[seq]
        wrong = [(where, c) for where, c in valid[seq] if c.hash != have]
        if not wrong:
            matched += len(valid[seq])
            last_match = last_match if rewritten else seq
            continue
        if rewritten:
            continue  # the first disagreeing checkpoint says where; later ones only repeat it
        rewritten = True
        where, checkpoint = wrong[0]
        since = f"checkpoint {last_match}" if last_match else "the genesis"
        problems.append(
            Problem(
                "rewritten",
                f"the chain was rewritten after {since}: the {where} checkpoint of record {seq} ({pid}) signed hash "
                f"{checkpoint.hash[:16]}…, the log now holds {have[:16]}…",
                seq,
                pid,
            )
        )
    return matched


def _trusted(candidates: list[tuple[str, Checkpoint]]) -> Checkpoint:
    """The external copy when there is one (out of a database attacker's reach), else the database's."""
    for where, checkpoint in candidates:
        if where == "external":
            return checkpoint
    return candidates[0][1]


def _ends(store: AuditStore, walk: _Walk, head_seq: int, head_hash: str, to_seq: int | None) -> list[Problem]:
    """Problems at the end of a clean walk: records past the head row, or missing before it."""
    if walk.last > head_seq:
        extra = next(store.scan(after_seq=head_seq, chunk=1), None)
        pid = extra.prediction_id if extra is not None else None
        return [
            Problem(
                "inserted",
                f"record {head_seq + 1} ({pid}) lies past the log's head (record {head_seq}): it was inserted",
                head_seq + 1,
                pid,
            )
        ]
    target = head_seq if to_seq is None else min(to_seq, head_seq)
    if walk.last < target:
        return [
            Problem(
                "missing",
                f"records {walk.last + 1} to {target} are missing (deleted): the log's head is record {head_seq}",
                walk.last + 1,
            )
        ]
    if walk.last == head_seq and head_seq > 0 and walk.prev != head_hash:
        return [
            Problem(
                "altered",
                f"record {head_seq} ({walk.prev_id}) was replaced: the log's head row holds another hash for it",
                head_seq,
                walk.prev_id,
            )
        ]
    return []
