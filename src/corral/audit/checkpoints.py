"""Signed checkpoints of the prediction log, kept in the database and outside it.

A checkpoint is a signed statement "the chain's record ``seq`` has hash
``hash``" (:class:`~corral.audit.records.Checkpoint`, Ed25519 over its
``message()``). The hash chain alone shows that records were edited, removed,
inserted or reordered *unless* someone rewrites every hash from the edit on;
a checkpoint's signature cannot be recomputed without the private key, and a copy
of every checkpoint written outside the database (a folder or any fsspec URL:
``<url>/<seq:016d>.json``) cannot be removed by someone who only holds the
database. ``corral audit verify`` compares the walked chain with both.

When: :meth:`Checkpointer.after_commit` runs after each group commit (the audit
sink's ``on_commit`` hook, in its worker thread) and checkpoints the newest
committed record once ``every`` records were committed or ``seconds`` passed
since the last checkpoint; :meth:`Checkpointer.checkpoint_now` checkpoints the
head at once (``corral audit checkpoint``, and a server's shutdown).

Failures never fail a request: a failing checkpoint is logged; a failing write to
the external location is logged and that checkpoint is written again with the
next one. A process that dies between storing a checkpoint and writing it out
leaves it in the database only; the next server publishes it when it starts
(:meth:`Checkpointer.publish_missing`, also run before a checkpointer's first
checkpoint and at its flush), so ``verify`` finds it in both places again.

Several server processes share one database and so one chain (appends are
serialised on the ``audit_head`` row). Each process's checkpointer signs
records of that one chain at its own pace, with the same key (the key file is
shared through ``CORRAL_HOME``, or each process has its own and the verifier is
given every public key). A checkpoint is only a fact about the shared chain,
``(seq, hash)``, so two processes checkpointing the same ``seq`` agree on the
hash; the store keeps the first and the external copy is whichever came last.
Nothing needs coordinating between processes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec

from corral.audit.keys import Signer
from corral.audit.ports import AuditStore
from corral.audit.records import Checkpoint, PredictionRecord
from corral.errors import ConfigurationError

log = logging.getLogger("corral.audit")

CHECKPOINT_FOLDER = "checkpoints"
"""The external location's default folder name in the audit folder."""

_MAX_UNWRITTEN = 10_000


def default_checkpoint_url(folder: Path | str) -> str:
    """The default external location: ``<audit folder>/checkpoints`` (an absolute local path)."""
    return str((Path(folder) / CHECKPOINT_FOLDER).resolve())


def checkpoint_name(seq: int) -> str:
    return f"{seq:016d}.json"


class Checkpointer:
    """Signs the chain's head now and then, and keeps each checkpoint in the store and at ``external_url``.

    Args:
        store: the prediction log.
        signer: the signing key.
        external_url: a folder or fsspec URL outside the database, or ``None`` for the database only.
        every: checkpoint once this many records were committed since the last checkpoint.
        seconds: checkpoint at the first commit this long after the last checkpoint.
        clock: monotonic seconds (tests pass a fake).
        now: the wall-clock time written into checkpoints.
    """

    def __init__(
        self,
        store: AuditStore,
        signer: Signer,
        external_url: str | None,
        *,
        every: int = 1000,
        seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if every < 1:
            raise ConfigurationError(f"checkpoint every must be at least 1 record, got {every}")
        if seconds <= 0:
            raise ConfigurationError(f"checkpoint seconds must be positive, got {seconds}")
        self.store = store
        self.signer = signer
        self.external_url = external_url
        self.every = every
        self.seconds = seconds
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._since = 0
        self._last_time = clock()
        self._last_seq = 0
        self._unwritten: list[Checkpoint] = []
        self.made = 0
        self.external_failures = 0
        self._reconciled = False

    def after_commit(self, records: Sequence[PredictionRecord]) -> None:
        """Count committed ``records``; checkpoint the newest when due. Never raises (failures are logged)."""
        if not records:
            return
        newest = max(records, key=lambda r: r.seq)
        with self._lock:
            self._since += len(records)
            due = self._since >= self.every or self._clock() - self._last_time >= self.seconds
        if not due:
            return
        try:
            self._make(newest.seq, newest.hash)
        except Exception as exc:  # a checkpoint must never fail the commit it follows
            log.error("audit: checkpoint of record %d failed: %s", newest.seq, exc)

    def checkpoint_now(self) -> Checkpoint | None:
        """Checkpoint the chain's head now; ``None`` when the log is empty.

        Raises:
            StoreError: the database failed (a failing external write is only logged and retried later).
        """
        seq, head = self.store.head()
        if seq == 0:
            return None
        return self._make(seq, head)

    def publish_missing(self) -> int:
        """Write to the external location every stored checkpoint that is not there yet, and return how many.

        A process killed between storing a checkpoint and writing it out leaves one in the database only
        (``verify`` reports it as unpublished). Only checkpoints carrying a valid signature by this
        checkpointer's key are published: a row someone added to the database is never vouched for. Never
        raises (failures are logged; the next call tries again).
        """
        with self._lock:
            self._reconciled = True
        if self.external_url is None:
            return 0
        try:
            published = {c.seq for c in external_checkpoints(self.external_url)}
            verifier = self.signer.verifier()
            missing = [c for c in self.store.checkpoints() if c.seq not in published and verifier.verify(c)]
            for checkpoint in missing:
                write_external(self.external_url, checkpoint)
        except Exception as exc:
            with self._lock:
                self._reconciled = False
            log.error("audit: could not publish the checkpoints missing from %s: %s", self.external_url, exc)
            return 0
        if missing:
            log.warning(
                "audit: wrote %d checkpoints (records %s) to %s that an earlier process stored but did not write out",
                len(missing),
                ", ".join(str(c.seq) for c in missing[:10]),
                self.external_url,
            )
        return len(missing)

    def flush(self) -> Checkpoint | None:
        """Checkpoint the head when records were committed since the last checkpoint (at shutdown). Never raises."""
        if not self._reconciled:
            self.publish_missing()
        with self._lock:
            pending = self._since > 0 or bool(self._unwritten)
        if not pending:
            return None
        try:
            return self.checkpoint_now()
        except Exception as exc:
            log.error("audit: final checkpoint failed: %s", exc)
            return None

    def _make(self, seq: int, hash_: str) -> Checkpoint:
        if not self._reconciled:
            self.publish_missing()
        created = self._now()
        unsigned = Checkpoint(seq, hash_, created, self.signer.key_id, "")
        checkpoint = Checkpoint(seq, hash_, created, self.signer.key_id, self.signer.sign(unsigned.message()))
        self.store.add_checkpoint(checkpoint)
        with self._lock:
            self._since = 0
            self._last_time = self._clock()
            self._last_seq = max(self._last_seq, seq)
            self.made += 1
            self._unwritten.append(checkpoint)
            del self._unwritten[:-_MAX_UNWRITTEN]
            todo = list(self._unwritten)
        if self.external_url is None:
            with self._lock:
                self._unwritten.clear()
            return checkpoint
        written: list[Checkpoint] = []
        try:
            for item in todo:
                write_external(self.external_url, item)
                written.append(item)
        except Exception as exc:
            self.external_failures += 1
            log.error(
                "audit: could not write checkpoint %d to %s (%d waiting; retried with the next checkpoint): %s",
                seq,
                self.external_url,
                len(todo) - len(written),
                exc,
            )
        with self._lock:
            done = {id(c) for c in written}
            self._unwritten = [c for c in self._unwritten if id(c) not in done]
        return checkpoint

    @property
    def unwritten(self) -> int:
        """Checkpoints not yet written to the external location."""
        with self._lock:
            return len(self._unwritten)


def _fs(url: str) -> tuple[Any, str, bool]:
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as exc:
        raise ConfigurationError(f"cannot open audit checkpoint location {url!r}: {exc}") from exc
    local = "file" in fs.protocol or "local" in fs.protocol
    return fs, str(root).rstrip("/"), local


def write_external(url: str, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` as JSON to ``<url>/<seq:016d>.json`` (atomically on a local disk).

    Raises:
        OSError: the location cannot be written.
    """
    fs, root, local = _fs(url)
    data = (json.dumps(checkpoint.to_dict(), sort_keys=True, indent=1) + "\n").encode()
    path = f"{root}/{checkpoint_name(checkpoint.seq)}"
    if local:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(path, data)  # object stores replace a whole object in one request


def read_external(url: str) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints at ``url`` in ``seq`` order, and a line per file that is not a valid checkpoint.

    A missing location holds no checkpoints.
    """
    fs, root, _ = _fs(url)
    try:
        names = sorted(str(p) for p in fs.glob(f"{root}/*.json"))
    except FileNotFoundError:
        return [], []
    found: dict[int, Checkpoint] = {}
    problems: list[str] = []
    for path in names:
        name = path.rsplit("/", 1)[-1]
        try:
            checkpoint = Checkpoint.from_dict(json.loads(fs.cat_file(path)))
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{name} is not a checkpoint: {exc}")
            continue
        if name != checkpoint_name(checkpoint.seq):
            problems.append(f"{name} holds the checkpoint of record {checkpoint.seq}: the file was renamed")
            continue
        found[checkpoint.seq] = checkpoint
    return [found[s] for s in sorted(found)], problems


def external_checkpoints(url: str) -> list[Checkpoint]:
    """The checkpoints written to ``url``, in ``seq`` order (files that do not parse are left out)."""
    return read_external(url)[0]
