"""The audit sink: every answered row is in the log before its response goes out (group commit).

In the default ``sync`` mode :meth:`AuditSink.submit` returns an awaitable
that the model server awaits before it answers. One writer task takes every
batch waiting at that moment and appends them in **one** transaction (in a
worker thread, so the event loop keeps serving), then wakes all their
requests: under load one commit serves many requests, and a request is only
answered once its rows are durable. If the append fails, every request in
that commit fails (the server answers 503) and nothing is retried: a client
never holds a prediction id that is not in the log.

The ``async`` mode is for users who accept a bounded loss window: ``submit``
returns at once and the writer appends in the background; rows accepted but
not yet committed (at most ``max_pending``) are lost if the process dies, or
if the log stops after an I/O error. A commit that fails for another reason
(the database is down, the disk is full) keeps them and tries again, backing
off up to ``retry_max`` seconds; past ``max_pending`` waiting rows, ``async``
mode waits like ``sync`` (and so refuses, 503, while the store is down) rather
than dropping records. A retried commit that finds its rows already stored
(the first try committed, but its answer was lost with the connection) keeps
the stored ones and does not write them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from corral.audit.ports import AuditStore
from corral.audit.records import PredictionRecord
from corral.core.events import PredictionEvent
from corral.errors import AlreadyExistsError, StoreError

log = logging.getLogger("corral.audit")

Describe = Callable[[str, int], tuple[str, str | None]]
"""``(model, version) -> (artifact SHA-256, training-data SHA-256)``, read once per version."""

Mode = Literal["sync", "async"]


class AuditSink:
    """A :class:`~corral.core.events.PredictionSink` that appends every event to an :class:`AuditStore`.

    Args:
        store: the append-only log.
        describe: a version's artifact and training-data hashes (cached here).
        mode: ``"sync"`` (answered implies recorded) or ``"async"`` (bounded loss window).
        max_batch: most records one commit takes.
        max_pending: in ``async`` mode, rows waiting beyond which submitters wait for the commit.
        commit_delay: when requests kept arriving during the last commit, the writer waits this long before
            the next one so that it serves more of them (PostgreSQL's ``commit_delay``, in spirit); an idle or
            single-client server never waits.
        protect: applied to each batch before it is chained (hashing, redacting or encrypting personal fields
            by the deployment's audit policy); if it fails, the batch's requests fail and nothing is stored
        on_commit: called with the stored records after each successful commit, in the worker thread
            (e.g. :meth:`corral.audit.checkpoints.Checkpointer.after_commit`); its failures are logged only.
        retry_max: in ``async`` mode, the longest pause between two tries of rows whose commit failed.
        on_lost: called with the number of answered rows (``async`` mode) given up unrecorded, when it happens
            (the server counts them in ``corral_audit_unrecorded_rows_total``); also summed in ``lost``.
    """

    def __init__(
        self,
        store: AuditStore,
        describe: Describe,
        *,
        mode: Mode = "sync",
        max_batch: int = 10_000,
        max_pending: int = 50_000,
        commit_delay: float = 0.001,
        on_commit: Callable[[list[PredictionRecord]], None] | None = None,
        protect: Callable[[Sequence[PredictionRecord]], list[PredictionRecord]] | None = None,
        retry_max: float = 2.0,
        on_lost: Callable[[int], None] | None = None,
    ) -> None:
        if mode not in ("sync", "async"):
            raise ValueError(f"audit mode must be 'sync' or 'async', got {mode!r}")
        self.store = store
        self.describe = describe
        self.mode = mode
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.commit_delay = commit_delay
        self.on_commit = on_commit
        self.protect = protect
        self.retry_max = retry_max
        self.on_lost = on_lost
        self.commits = 0
        self.lost = 0  # answered rows (async mode) that could not be recorded: the log stopped, or the server did
        self.committed = 0
        self._hashes: dict[tuple[str, int], tuple[str, str | None]] = {}
        # each entry: one submitter's records and the future it waits on (None: async, answered already)
        self._pending: deque[tuple[list[PredictionRecord], asyncio.Future[None] | None]] = deque()
        self._retried: set[int] = set()  # ids of record lists whose earlier commit failed (async mode)
        self._pending_rows = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._arrivals = 0
        self.failed: BaseException | None = None

    def submit(self, events: Sequence[PredictionEvent]) -> Awaitable[None] | None:
        """Queue ``events`` for the next commit; in ``sync`` mode the result resolves once they are durable."""
        if self.failed is not None:
            raise StoreError(
                f"the prediction log stopped after an I/O error during a commit ({self.failed}); no prediction "
                "is answered until the server is restarted with a healthy disk"
            )
        if self._task is None or self._task.done():
            self._start()
        assert self._wake is not None
        records = [self._record(e) for e in events]
        wait = self.mode == "sync" or self._pending_rows + len(records) > self.max_pending
        future: asyncio.Future[None] | None = asyncio.get_running_loop().create_future() if wait else None
        self._pending.append((records, future))
        self._pending_rows += len(records)
        self._arrivals += 1
        self._wake.set()
        return future

    def reject(self, deployment: str, model: str, version: int, feature: str, rows: int) -> None:
        """Refused requests were never answered, so the prediction log has nothing to record."""

    def _record(self, event: PredictionEvent) -> PredictionRecord:
        key = (event.model, event.version)
        hashes = self._hashes.get(key)
        if hashes is None:
            hashes = self._hashes[key] = self.describe(event.model, event.version)
        return PredictionRecord(
            prediction_id=event.prediction_id,
            timestamp=event.timestamp,
            deployment=event.deployment,
            model=event.model,
            version=event.version,
            inputs=event.inputs,
            output=event.output,
            probabilities=event.probabilities,
            role=event.role,
            artifact_sha256=hashes[0],
            data_sha256=hashes[1],
            latency_ms=event.latency_ms,
            request_id=event.request_id,
            caller=event.caller,
            anomaly_score=event.anomaly_score,
            anomaly_flagged=event.anomaly_flagged,
            out_of_range=event.out_of_range,
        )

    def _start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="corral-audit")

    async def start(self) -> None:
        """Start the writer (``submit`` also starts it on first use)."""
        self._start()

    async def stop(self) -> None:
        """Let the writer finish its commit in flight and everything still waiting, then stop it.

        The writer is asked to stop, never cancelled mid-commit: a commit in flight still answers its requests.
        """
        if self._task is None or self._task.done():
            while self._pending:  # no writer (never started, or it died): commit here
                if await self._commit_next() == "kept":
                    self._drop_pending("the prediction log was stopped while its store failed")
            self._task = None
            return
        assert self._wake is not None
        self._stopping = True
        self._wake.set()
        await self._task
        self._task = None
        self._stopping = False

    async def _run(self) -> None:
        assert self._wake is not None
        busy = False
        pause = 0.0  # after a failed commit whose answered rows were kept: wait before trying them again
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if pause:
                    await asyncio.sleep(pause)
                elif busy and self.commit_delay and self._pending_rows < self.max_batch and not self._stopping:
                    # requests kept arriving while the last commit ran: gather a few more into this one
                    await asyncio.sleep(self.commit_delay)
                arrived = self._arrivals
                outcome = await self._commit_next()
                if outcome == "kept" and self._stopping:
                    self._drop_pending("the server stopped while the prediction log's store failed")
                pause = min(self.retry_max, max(0.05, 2 * pause)) if outcome == "kept" else 0.0
                busy = self._arrivals - arrived >= 2
            if self._stopping:
                return

    def _fail_pending(self, exc: BaseException) -> None:
        answered = 0
        while self._pending:
            records, future = self._pending.popleft()
            if future is None:
                answered += len(records)
            elif not future.done():
                future.set_exception(exc)
        self._pending_rows = 0
        self._retried.clear()
        if answered:
            self.lost += answered
            log.error("audit: %d answered rows (async mode) are not recorded: %s", answered, exc)
            if self.on_lost is not None:
                try:
                    self.on_lost(answered)
                except Exception:  # a broken counter must not stop the log
                    log.exception("audit: the on_lost hook failed")

    def _drop_pending(self, reason: str) -> None:
        self._fail_pending(StoreError(reason))

    def _append(self, batch: list[PredictionRecord]) -> None:
        stored = self.store.append(self.protect(batch) if self.protect is not None else batch)
        if self.on_commit is not None:
            try:
                self.on_commit(stored)
            except Exception as exc:  # the rows are durable: a failing hook must not fail their requests
                log.error("audit: the commit hook failed after %d records were stored: %s", len(stored), exc)

    async def _commit_next(self) -> Literal["done", "failed", "kept"]:
        """Commit what waits (up to ``max_batch`` rows): ``done``; or it failed and its waiters were failed
        (``failed``), keeping the answered rows of async mode for the next try (``kept``)."""
        taken: list[tuple[list[PredictionRecord], asyncio.Future[None] | None]] = []
        rows = 0
        while self._pending and (not taken or rows + len(self._pending[0][0]) <= self.max_batch):
            taken.append(self._pending.popleft())
            rows += len(taken[-1][0])
        self._pending_rows -= rows
        retried = [id(records) for records, _ in taken if id(records) in self._retried]
        try:
            if retried:
                await asyncio.to_thread(self._append_again, taken)
            else:
                await asyncio.to_thread(self._append, [r for records, _ in taken for r in records])
        except Exception as failure:
            # whatever failed (the store, the policy that protects the rows, a bug), the rows are not recorded,
            # so their requests are refused as the store's failures are: 503, never an answer or another status
            exc = failure if isinstance(failure, StoreError) else _not_written(failure)
            log.error("audit: a commit of %d records failed; their requests fail: %s", rows, failure)
            for _records, future in taken:
                if future is not None and not future.done():
                    future.set_exception(exc)
            kept = [(records, None) for records, future in taken if future is None]
            if getattr(exc, "fatal", False):  # an fsync/I/O error: never retried, the log stops
                self.failed = exc
                self._pending.extendleft(reversed(kept))
                self._fail_pending(exc)
                return "failed"
            if not kept:
                return "failed"
            # async mode: these were answered already; they wait at the front for the store to come back. The
            # submitters queued behind them (past max_pending) would only be tried after them: refused now
            for records, future in self._pending:
                if future is not None:
                    self._pending_rows -= len(records)
                    if not future.done():
                        future.set_exception(exc)
            self._pending = deque([*kept, *((r, f) for r, f in self._pending if f is None)])
            self._pending_rows += sum(len(records) for records, _ in kept)
            self._retried.update(id(records) for records, _ in kept)
            return "kept"
        self._retried.difference_update(retried)
        self.commits += 1
        self.committed += rows
        for _records, future in taken:
            if future is not None and not future.done():
                future.set_result(None)
        return "done"

    def _append_again(self, taken: list[tuple[list[PredictionRecord], asyncio.Future[None] | None]]) -> None:
        """Rows of a failed commit, tried again: if the first try did commit (its answer lost with the
        connection), its rows are there already; each submitter's rows are then written, or found, alone."""
        try:
            self._append([r for records, _ in taken for r in records])
            return
        except AlreadyExistsError:
            pass
        for records, _future in taken:
            with contextlib.suppress(AlreadyExistsError):  # all of them were stored by that first commit
                self._append(records)


def _not_written(failure: Exception) -> StoreError:
    error = StoreError(f"the prediction log could not be written: {type(failure).__name__}: {failure}")
    error.__cause__ = failure
    return error
