"""The monitoring sink: served predictions feed production windows, off the response path.

The model server calls :meth:`MonitoringSink.submit` with every answered batch.
``submit`` only appends the events to a bounded buffer (it returns ``None``, so
the server does not wait on it; past ``max_buffer`` pending rows new events are
dropped and counted, never slowing serving). A background task takes the
buffer every ``process_seconds`` and, in a worker thread, turns each deployment version's rows into one
frame (so the window update's fixed cost is paid per batch, not per row), and
every ``flush_seconds`` drains the aggregator's partial windows into the
:class:`~corral.monitoring.ports.MonitoringStore`, which adds them to what
other processes flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from corral.core.events import PredictionEvent
from corral.core.profile import Profile
from corral.monitoring.aggregator import Aggregator, output_columns
from corral.monitoring.ports import MonitoringStore
from corral.monitoring.windows import DAY, HOUR

log = logging.getLogger("corral.monitoring")
RETENTION_EVERY = 3600.0  # seconds between deletions of windows past the retention period

Rejection = tuple[str, str, int, str, int, float]
"""``(deployment, model, version, feature, rows, time)`` of a request refused for one feature's values."""

Describe = Callable[[str, int], tuple[Profile | None, tuple[Any, ...] | None]]
"""``(model, version) -> (reference profile, classes)``: what a version's windows are laid out by."""


class MonitoringSink:
    """A :class:`~corral.core.events.PredictionSink` that keeps production windows.

    Args:
        store: where window deltas are flushed.
        describe: gives a version's reference profile and classes (read once per version).
        lengths: window lengths in seconds.
        process_seconds: how often buffered rows are aggregated.
        flush_seconds: how often partial windows are written to the store.
        max_buffer: most rows waiting to be aggregated; beyond it new rows are dropped and counted.
        retention_seconds: windows that started longer ago than this are deleted (hourly, after a
            flush); ``None`` keeps them all.
    """

    def __init__(
        self,
        store: MonitoringStore,
        describe: Describe,
        *,
        lengths: Sequence[int] = (HOUR, DAY),
        process_seconds: float = 0.5,
        flush_seconds: float = 5.0,
        max_buffer: int = 100_000,
        retention_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.describe = describe
        self.aggregator = Aggregator(tuple(lengths), clock=clock)
        self.process_seconds = process_seconds
        self.flush_seconds = flush_seconds
        self.max_buffer = max_buffer
        self.retention_seconds = retention_seconds
        self._last_retention = float("-inf")
        self.clock = clock
        self.dropped = 0
        self._buffer: list[PredictionEvent] = []
        self._rejected: list[Rejection] = []
        self._classes: dict[tuple[str, int], tuple[Any, ...] | None] = {}
        self._untracked: set[tuple[str, int]] = set()
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._last_flush = clock()

    def submit(self, events: Sequence[PredictionEvent]) -> None:
        """Buffer events; never blocks and never waits on the store."""
        if len(self._buffer) + len(events) > self.max_buffer:
            self.dropped += len(events)
            return
        self._buffer.extend(events)

    def reject(self, deployment: str, model: str, version: int, feature: str, rows: int) -> None:
        """Count a request refused for ``feature``'s values as ``rows`` type violations of that feature."""
        if len(self._rejected) < self.max_buffer:
            self._rejected.append((deployment, model, version, feature, rows, self.clock()))

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="corral-monitoring")

    async def stop(self) -> None:
        """Aggregate and flush what is left, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.process()
        await asyncio.to_thread(self.flush)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.process_seconds)
            try:
                events, rejected = self._take()  # on the event loop, where submit() appends: no lost rows
                if events or rejected:
                    await asyncio.to_thread(self._aggregate, events, rejected)
                if self.clock() - self._last_flush >= self.flush_seconds:
                    await asyncio.to_thread(self.flush)
            except Exception:  # the store may be briefly unreachable: keep the windows, try again
                log.exception("monitoring: aggregating or flushing windows failed; will retry")

    def process(self) -> int:
        """Aggregate the buffered rows now, one frame per deployment version; returns the rows taken."""
        events, rejected = self._take()
        self._aggregate(events, rejected)
        return len(events)

    def _take(self) -> tuple[list[PredictionEvent], list[Rejection]]:
        events, self._buffer = self._buffer, []
        rejected, self._rejected = self._rejected, []
        return events, rejected

    def _aggregate(self, events: list[PredictionEvent], rejected: list[Rejection]) -> None:
        with self._lock:  # a cancelled background pass may still be running in its thread
            self._aggregate_locked(events, rejected)

    def _aggregate_locked(self, events: list[PredictionEvent], rejected: list[Rejection]) -> None:
        for deployment, model, version, feature, rows, at in rejected:
            if self._ensure_tracked(deployment, model, version):
                self.aggregator.reject(deployment, model, version, feature, rows, at=at)
        groups: dict[tuple[str, str, int], list[PredictionEvent]] = defaultdict(list)
        for event in events:
            groups[(event.deployment, event.model, event.version)].append(event)
        for (deployment, model, version), group in groups.items():
            if not self._ensure_tracked(deployment, model, version):
                continue
            frame = pd.DataFrame([e.inputs for e in group])
            values = np.asarray([e.output for e in group])
            probabilities = None
            if group[0].probabilities is not None and all(e.probabilities is not None for e in group):
                probabilities = np.asarray([e.probabilities for e in group], dtype="float64")
            outputs = output_columns(values, probabilities, self._classes.get((model, version)))
            self.aggregator.update(deployment, model, version, frame, outputs, at=group[-1].timestamp.timestamp())

    def flush(self) -> int:
        """Write the partial windows to the store; on failure they stay here for the next flush."""
        with self._lock:
            windows = self.aggregator.drain()
        self._last_flush = self.clock()
        if not windows:
            return 0
        try:
            self.store.add_windows(windows)
        except Exception:
            with self._lock:
                for window in windows:  # put them back: the next flush adds them up again
                    self.aggregator.restore(window)
            raise
        if self.retention_seconds is not None and self.clock() - self._last_retention >= RETENTION_EVERY:
            self._last_retention = self.clock()
            self.store.delete_before(int(self.clock() - self.retention_seconds))
        return len(windows)

    def _ensure_tracked(self, deployment: str, model: str, version: int) -> bool:
        if self.aggregator.tracking(deployment, model, version):
            return True
        if (model, version) in self._untracked:
            return False
        profile, classes = self.describe(model, version)
        if profile is None:  # registered without training data: nothing to lay windows out by
            self._untracked.add((model, version))
            return False
        self._classes[(model, version)] = classes
        self.aggregator.track(deployment, model, version, profile)
        return True
