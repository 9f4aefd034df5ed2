"""Shadows: a copy of every answered request, scored by another version off the response path.

Each shadow member of a deployment has a :class:`ShadowRunner`: a bounded queue and one worker task.
The request path only *offers* a job (never waits): when the queue is full the job is dropped and
counted, so an overloaded or slow shadow never slows the champion. The worker validates the request
against the shadow's own signature, scores it and records the rows with the champion's prediction ids
and role ``shadow`` (awaiting durable sinks itself, not the client).

:class:`MemberStats` keeps what a process saw of one version on one deployment (requests, errors,
latencies): the guard rules compare members with the champion on these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("corral.serving")


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One answered request, to be scored again by a shadow."""

    data: Any
    prediction_ids: list[str]
    request_id: str | None
    caller: str | None


@dataclass
class MemberStats:
    """Requests, errors and recent latencies (seconds) of one version on one deployment, in this process."""

    requests: int = 0
    errors: int = 0
    dropped: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=2000))

    def record(self, seconds: float | None) -> None:
        self.requests += 1
        if seconds is None:
            self.errors += 1
        else:
            self.latencies.append(seconds)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency(self, quantile: float) -> float | None:
        return float(np.quantile(np.fromiter(self.latencies, float), quantile)) if self.latencies else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "dropped": self.dropped,
            "error_rate": self.error_rate,
            "latency_p50_ms": _ms(self.latency(0.5)),
            "latency_p99_ms": _ms(self.latency(0.99)),
        }


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 3) if seconds is not None else None


class ShadowRunner:
    """A bounded queue of jobs and the worker that scores them with ``score``: once a job arrives it waits
    ``max_wait`` seconds, then scores every job waiting by then (up to ``max_rows`` rows) in one call. A shadow
    is off the response path, so it can afford to wait: one model call and one batch of records for many
    requests leaves the CPU to the champion, even when requests come one at a time."""

    def __init__(
        self,
        label: str,
        score: Callable[[list[ShadowJob]], Awaitable[None]],
        stats: MemberStats,
        *,
        capacity: int = 1000,
        max_rows: int = 1024,
        max_wait: float = 0.1,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.label = label
        self.on_drop = on_drop
        self.score = score
        self.stats = stats
        self.queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=capacity)
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._busy = 0
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"corral-shadow-{label}")

    def offer(self, job: ShadowJob) -> bool:
        """Queue ``job``; when full, drop it and count it (never wait)."""
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self._dropped(1)
            return False
        return True

    def _dropped(self, count: int) -> None:
        if count:
            self.stats.dropped += count
            if self.on_drop is not None:
                self.on_drop(count)

    async def _run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            rows = len(jobs[0].prediction_ids)
            if self.max_wait > 0 and rows < self.max_rows:
                self._busy = 1  # taken from the queue: close() counts it as dropped
                await asyncio.sleep(self.max_wait)  # let the next requests' copies join this call
            while not self.queue.empty() and rows < self.max_rows:
                job = self.queue.get_nowait()
                jobs.append(job)
                rows += len(job.prediction_ids)
            self._busy = len(jobs)
            try:
                await self._score(jobs)
            finally:
                self._busy = 0
                for _ in jobs:
                    self.queue.task_done()

    async def _score(self, jobs: list[ShadowJob]) -> None:
        try:
            await self.score(jobs)
        except Exception as exc:  # a failing shadow is counted, never raised into serving
            if len(jobs) == 1:
                log.debug("shadow %s failed: %s: %s", self.label, type(exc).__name__, exc)
                return
            for job in jobs:  # one bad request must not count against the others: score them one by one
                await self._score([job])

    async def drain(self) -> None:
        """Wait until every queued job was scored."""
        await self.queue.join()

    async def close(self) -> None:
        """Stop the worker (jobs still queued, and one being scored, are dropped and counted)."""
        self._dropped(self.queue.qsize() + self._busy)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def judge(policy: Any, member: MemberStats, champion: MemberStats | None) -> str | None:
    """Why a member should leave the traffic under ``policy`` (a :class:`GuardPolicy`), or ``None``."""
    if member.requests < policy.min_requests:
        return None
    base_errors = champion.error_rate if champion is not None else 0.0
    if member.error_rate - base_errors > policy.max_error_rate_increase:
        return (
            f"error rate {member.error_rate:.1%} over {member.requests} requests against the champion's "
            f"{base_errors:.1%} (allowed: +{policy.max_error_rate_increase:.1%})"
        )
    p99 = member.latency(0.99)
    base = champion.latency(0.99) if champion is not None else None
    if p99 is not None and base is not None:
        limit = max(policy.max_latency_ratio * base, policy.min_latency_ms / 1000)
        if p99 > limit:
            return (
                f"p99 latency {p99 * 1000:.1f} ms against the champion's {base * 1000:.1f} ms "
                f"(allowed: {policy.max_latency_ratio:g}x, at least {policy.min_latency_ms:g} ms)"
            )
    return None
