"""The worker: claims queued runs one at a time, keeps their lease alive while they run, records the end.

Several workers may share one database: a run is claimed by exactly one (see
:meth:`~corral.pipelines.ports.PipelineStore.claim`). While a run goes on, the worker renews its lease (and
saves the log so far) every third of the lease; a worker killed mid-run stops renewing, so once the lease
lapses the next worker's :meth:`PipelineStore.expire` marks the run failed with its log — never left
"running" for ever, never run twice at once. Each pass also queues the runs that schedules make due.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.pipelines.entities import FAILED, SUCCEEDED, Pipeline, Run
from corral.pipelines.ports import PipelineStore
from corral.pipelines.service import Pipelines

log = logging.getLogger("corral.pipelines")


@dataclass
class RunLog:
    """A run's log: lines with their time, readable while the run goes on."""

    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: str = ""  # what a step still going (training in a child) has logged so far

    def write(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        with self.lock:
            self.lines.extend(f"{stamp} {line}" for line in str(message).splitlines() or [""])

    def child(self, text: str) -> None:
        """The log so far of a step still going; saved with the lease, replaced by its final log at the end."""
        with self.lock:
            self.running = text

    def text(self) -> str:
        with self.lock:
            return "\n".join([*self.lines, *([self.running] if self.running else [])])


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended: ``succeeded``, ``failed`` or ``rejected`` (the gate refused the candidate)."""

    state: str
    reason: str
    result: Mapping[str, Any] = field(default_factory=dict)


Execute = Callable[[Run, Pipeline, RunLog], Outcome]
"""Carries out one run (train, register, gate, roll out); raising fails the run with the traceback."""


class Worker:
    """Runs queued pipeline runs.

    Args:
        pipelines: the service (its store holds the queue; it queues due schedules).
        execute: what a run does.
        lease_seconds: how long a claim lasts without renewal.
        poll_seconds: how long to wait when the queue is empty.
        between_runs: called on a pass that found nothing to run (staged rollouts advance there).
    """

    def __init__(
        self,
        pipelines: Pipelines,
        execute: Execute,
        *,
        name: str | None = None,
        lease_seconds: float = 60.0,
        poll_seconds: float = 2.0,
        between_runs: Callable[[], object] | None = None,
    ) -> None:
        self.pipelines = pipelines
        self.store: PipelineStore = pipelines.store
        self.execute = execute
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.between_runs = between_runs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Run | None:
        """Expire dead claims, queue due schedules, then claim and carry out one run; returns it finished."""
        now = datetime.now(UTC)
        for expired in self.store.expire(now):
            log.warning("pipeline run %s of %s failed: %s", expired.id, expired.pipeline, expired.reason)
        self.pipelines.queue_due()
        run = self.store.claim(self.name, now, self.lease_seconds)
        if run is None:
            if self.between_runs is not None:
                self.between_runs()  # e.g. move staged rollouts on
            return None
        return self._carry_out(run)

    def _carry_out(self, run: Run) -> Run:
        run_log = RunLog()
        run_log.write(f"run {run.id} of {run.pipeline} ({run.trigger}: {run.reason}) on worker {self.name}")
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(run, run_log, done), daemon=True)
        renewer.start()
        started = time.monotonic()
        try:
            pipeline = self.store.get_pipeline(run.pipeline)
            outcome = self.execute(run, pipeline, run_log)
        except Exception as exc:
            run_log.write("".join(traceback.format_exception(exc)).rstrip())
            outcome = Outcome(FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            done.set()
            renewer.join()
        run_log.write(f"{outcome.state} after {time.monotonic() - started:.1f} s: {outcome.reason}")
        finished = self.store.finish(
            run.id,
            self.name,
            state=outcome.state,
            at=datetime.now(UTC),
            reason=outcome.reason,
            result=outcome.result,
            log=run_log.text(),
        )
        if not finished:
            log.error("pipeline run %s: this worker lost its claim before the end; its result is dropped", run.id)
        level = logging.INFO if outcome.state == SUCCEEDED else logging.WARNING
        log.log(level, "pipeline run %s of %s: %s (%s)", run.id, run.pipeline, outcome.state, outcome.reason)
        return self.store.get_run(run.id)

    def _renew(self, run: Run, run_log: RunLog, done: threading.Event) -> None:
        while not done.wait(self.lease_seconds / 3):
            until = datetime.now(UTC) + timedelta(seconds=self.lease_seconds)
            if not self.store.renew(run.id, self.name, until, run_log.text()):
                log.error("pipeline run %s: the lease was lost (another worker expired it?)", run.id)
                return

    def start(self) -> None:
        """Work in a background thread until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="corral-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current run (its lease lapses if the process dies first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def serve_forever(self) -> None:
        """Work in this thread until interrupted."""
        self._loop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # the store may be briefly unreachable
                log.exception("pipeline worker: a pass failed; trying again")
                ran = None
            if ran is None:
                self._stop.wait(self.poll_seconds)
