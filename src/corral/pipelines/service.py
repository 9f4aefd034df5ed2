"""Pipelines as a service: define them, and turn triggers (a person, a schedule, an alert) into queued runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from corral.core.ids import new_id
from corral.core.refs import validate_name
from corral.errors import ConfigurationError
from corral.pipelines.entities import QUEUED, Pipeline, Run
from corral.pipelines.ports import PipelineStore


class Pipelines:
    """Pipeline definitions and their run queue.

    Args:
        store: pipelines and runs.
        check_deployment: raises when a deployment does not exist.
    """

    def __init__(
        self,
        store: PipelineStore,
        *,
        actor: str,
        check_deployment: Callable[[str], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.actor = actor
        self.check_deployment = check_deployment
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def create(self, pipeline: Pipeline) -> Pipeline:
        """Store a pipeline (replacing one of the same name), once its deployment and schedule check out."""
        from corral.pipelines.schedule import next_run  # croniter: imported when first needed

        validate_name(pipeline.name, what="pipeline name")
        if self.check_deployment is not None:
            self.check_deployment(pipeline.deployment)
        next_run(pipeline.schedule, pipeline.every_seconds, None, self._now())  # a bad expression fails here
        for source in pipeline.data:
            if source.get("kind") not in ("file", "sql", "production"):
                raise ConfigurationError(f"data source kind {source.get('kind')!r} is not file, sql or production")
        stored = replace(pipeline, created_by=pipeline.created_by or self.actor, created_at=self._now())
        return self.store.put_pipeline(stored)

    def next_run_at(self, pipeline: Pipeline) -> str | None:
        """When the schedule or interval queues the next run, as the worker reckons it (a time already past means
        the next worker pass queues it); ``None`` for a disabled pipeline or one without a time trigger."""
        from corral.pipelines.schedule import next_run  # croniter: imported when first needed

        if not pipeline.enabled or (pipeline.schedule is None and pipeline.every_seconds is None):
            return None
        last = self.store.last_run(pipeline.name, trigger="schedule")
        since = last.created_at if last is not None else pipeline.created_at
        due = next_run(pipeline.schedule, pipeline.every_seconds, since, self._now())
        return due.isoformat() if due is not None else None

    def run(self, name: str, *, trigger: str = "manual", reason: str = "") -> Run | None:
        """Queue a run of pipeline ``name``; ``None`` when one is already queued or running."""
        pipeline = self.store.get_pipeline(name)
        if not pipeline.enabled and trigger != "manual":
            return None
        run = Run(new_id(), name, trigger, QUEUED, self._now(), reason or f"{trigger} run")
        return self.store.enqueue(run)

    def queue_due(self) -> list[Run]:
        """Queue a run of every enabled pipeline whose schedule or interval is due."""
        from corral.pipelines.schedule import next_run

        now, queued = self._now(), []
        for pipeline in self.store.list_pipelines():
            if not pipeline.enabled or (pipeline.schedule is None and pipeline.every_seconds is None):
                continue
            last = self.store.last_run(pipeline.name, trigger="schedule")
            since = last.created_at if last is not None else pipeline.created_at
            due = next_run(pipeline.schedule, pipeline.every_seconds, since, now)
            if due is not None and due <= now:
                run = self.run(pipeline.name, trigger="schedule", reason=f"due at {due.isoformat()}")
                if run is not None:
                    queued.append(run)
        return queued

    def on_alert(self, deployment: str, rule: str, metric: str) -> list[Run]:
        """Queue a run of every pipeline of ``deployment`` that listens to this alert (by rule name, metric, or
        the families ``drift`` and ``performance``)."""
        families = {"drift" if "drift" in metric else "", "performance" if _is_performance(metric) else ""} - {""}
        queued = []
        for pipeline in self.store.list_pipelines():
            if pipeline.deployment != deployment or not pipeline.enabled:
                continue
            if {rule, metric.partition(":")[0], *families} & set(pipeline.on_alerts):
                run = self.run(pipeline.name, trigger="alert", reason=f"alert {rule} ({metric}) fired on {deployment}")
                if run is not None:
                    queued.append(run)
        return queued


def _is_performance(metric: str) -> bool:
    names = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "mae", "rmse", "r2")
    return any(name in metric for name in names)
