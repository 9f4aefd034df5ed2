"""Explanations computed as predictions are recorded, for deployments whose audit policy asks for them.

The audit sink calls :meth:`ExplainWorker.after_commit` with every committed batch (in its worker thread).
The answering records of deployments whose policy says ``always``, or ``sampled:N%`` and whose id falls in
the sample, are queued; one background thread explains them (:func:`corral.audit.explain.explain_recorded`)
and stores the result beside the record. The queue is bounded: under overload ids are dropped and
counted (they can still be explained on demand later), so explaining never slows serving.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from corral.audit.explain import ExplainPolicy, explain_recorded
from corral.audit.ports import AuditStore
from corral.audit.privacy import AuditPolicy
from corral.audit.records import PredictionRecord
from corral.core.profile import Profile

log = logging.getLogger("corral.audit")


class ExplainWorker:
    """Explains sampled predictions in a background thread.

    Args:
        store: the prediction log (explanations are stored there).
        load: ``(model, version) -> loaded model`` (cached by the caller).
        profile: ``(model, version) -> reference profile`` for the background sample.
        capacity: most ids waiting; beyond it new ones are dropped and counted.
        ttl_s: how long a deployment's policy is cached.
    """

    def __init__(
        self,
        store: AuditStore,
        load: Callable[[str, int], Any],
        profile: Callable[[str, int], Profile | None] | None = None,
        *,
        capacity: int = 10_000,
        ttl_s: float = 5.0,
    ) -> None:
        self.store = store
        self.load = load
        self.profile = profile
        self.ttl_s = ttl_s
        self.queue: queue.Queue[str | None] = queue.Queue(maxsize=capacity)
        self.dropped = 0
        self.explained = 0
        self.failed = 0
        self._policies: dict[str, tuple[float, ExplainPolicy]] = {}
        self._thread: threading.Thread | None = None

    def policy(self, deployment: str) -> ExplainPolicy:
        cached = self._policies.get(deployment)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        stored = self.store.get_policy(deployment)
        policy = ExplainPolicy.parse(AuditPolicy.from_dict(stored).explain if stored else "on_demand")
        self._policies[deployment] = (now, policy)
        return policy

    def after_commit(self, records: Sequence[PredictionRecord]) -> None:
        """Queue the committed records that their deployment's policy explains."""
        for record in records:
            if record.role == "shadow" or not self.policy(record.deployment).should_explain(record.prediction_id):
                continue
            try:
                self.queue.put_nowait(record.prediction_id)
            except queue.Full:
                self.dropped += 1
        if self._thread is None and not self.queue.empty():
            self.start()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="corral-explain", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued explanations (within ``timeout``), then stop the thread."""
        if self._thread is None:
            return
        self.queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def drain(self) -> None:
        """Wait until every queued id was explained."""
        self.queue.join()

    def _run(self) -> None:
        while True:
            prediction_id = self.queue.get()
            try:
                if prediction_id is None:
                    return
                explain_recorded(self.store, self.load, prediction_id, profile=self.profile)
                self.explained += 1
            except Exception as exc:  # an explainer failing on one model must not stop the others
                self.failed += 1
                log.warning("audit: explaining %s failed: %s: %s", prediction_id, type(exc).__name__, exc)
            finally:
                self.queue.task_done()
