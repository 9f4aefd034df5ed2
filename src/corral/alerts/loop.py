"""The alert loop every server process runs: evaluate rules every so often, deliver notifications sooner.

Evaluation reads each deployment's latest windows (through ``read``, wired by
the composition root, so this room does not know where readings come from)
and hands them to :meth:`Alerts.evaluate`; delivery works off the outbox.
Both run in worker threads and never touch the request path; an error is
logged and the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence

from corral.alerts.service import Alerts, Change
from corral.core.readings import Reading

log = logging.getLogger("corral.alerts")

Read = Callable[[str, int], Mapping[str, Reading]]
"""``(deployment, window seconds) -> readings`` of the version the deployment serves now."""


class AlertLoop:
    """Periodic evaluation and delivery.

    Args:
        alerts: the rules, alerts and outbox.
        deployments: names of the deployments to watch.
        read: a deployment's readings over one window length.
        windows: the window lengths kept (rules on other lengths never match).
        hooks: other periodic checks run after each evaluation (each raising its own alerts).
        on_change: told ``(deployment, change)`` for every alert opened or resolved.
    """

    def __init__(
        self,
        alerts: Alerts,
        deployments: Callable[[], Sequence[str]],
        read: Read,
        *,
        windows: Sequence[int],
        evaluate_seconds: float = 60.0,
        dispatch_seconds: float = 5.0,
        hooks: Sequence[Callable[[], object]] = (),
        on_change: Callable[[str, Change], object] | None = None,
    ) -> None:
        self.alerts = alerts
        self.deployments = deployments
        self.read = read
        self.windows = tuple(windows)
        self.evaluate_seconds = evaluate_seconds
        self.dispatch_seconds = dispatch_seconds
        self.hooks = list(hooks)
        self.on_change = on_change
        self._tasks: list[asyncio.Task[None]] = []

    def evaluate_all(self) -> list[Change]:
        """Evaluate every deployment's rules on each window length now (blocking)."""
        changes = []
        for name in self.deployments():
            lengths = {r.window for r in self.alerts.rules(name) if r.enabled and r.window in self.windows}
            for length in sorted(lengths):
                try:
                    found = self.alerts.evaluate(name, self.read(name, length), window=length)
                except Exception:
                    log.exception("alerts: evaluating %s over %d s failed", name, length)
                    continue
                changes.extend(found)
                react = self.on_change
                if react is None:
                    continue
                for change in found:
                    try:
                        react(name, change)  # e.g. a retraining pipeline listening to this alert
                    except Exception:
                        log.exception("alerts: reacting to %s on %s failed", change.rule, name)
        for hook in self.hooks:  # judgements that raise their own alerts (e.g. quality guards)
            try:
                hook()
            except Exception:
                log.exception("alerts: a periodic check failed")
        return changes

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(self.evaluate_seconds, self.evaluate_all), name="corral-alerts-evaluate"),
            loop.create_task(self._every(self.dispatch_seconds, self.alerts.dispatch), name="corral-alerts-dispatch"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _every(self, seconds: float, work: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await asyncio.to_thread(work)
            except Exception:  # the store may be briefly unreachable: try again next time
                log.exception("alerts: %s failed; will retry", getattr(work, "__name__", "work"))
