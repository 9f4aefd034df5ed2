"""What the pipelines room needs from storage: pipelines and their runs (jobs)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from corral.pipelines.entities import Pipeline, Run


class PipelineStore(Protocol):
    """Persistence of pipelines and runs. Every method is one atomic operation."""

    def put_pipeline(self, pipeline: Pipeline) -> Pipeline:
        """Create or replace a pipeline by name."""
        ...

    def get_pipeline(self, name: str) -> Pipeline:
        """Raises NotFoundError."""
        ...

    def list_pipelines(self) -> list[Pipeline]:
        """Every pipeline, by name."""
        ...

    def delete_pipeline(self, name: str) -> None:
        """Raises NotFoundError; refuses (ConflictError) while a run of it is queued or running."""
        ...

    def enqueue(self, run: Run) -> Run | None:
        """Store a queued run, unless the pipeline already has one queued or running (then ``None``)."""
        ...

    def claim(self, worker: str, now: datetime, lease_seconds: float) -> Run | None:
        """The oldest queued run, now running for ``worker`` with a lease; never the same run to two workers
        (row locks with SKIP LOCKED on PostgreSQL; the write lock on SQLite)."""
        ...

    def renew(self, run_id: str, worker: str, lease_until: datetime, log: str | None = None) -> bool:
        """Extend a running run's lease (and replace its log so far); ``False`` if the worker lost it."""
        ...

    def finish(
        self, run_id: str, worker: str, *, state: str, at: datetime, reason: str, result: Mapping[str, Any], log: str
    ) -> bool:
        """Record a run's end; ``False`` if ``worker`` no longer holds it."""
        ...

    def expire(self, now: datetime) -> list[Run]:
        """Mark running runs whose lease lapsed as failed (their worker died); returns them."""
        ...

    def get_run(self, run_id: str) -> Run:
        """Raises NotFoundError."""
        ...

    def list_runs(self, *, pipeline: str | None = None, limit: int = 50) -> list[Run]:
        """Runs, newest first."""
        ...

    def last_run(self, pipeline: str, *, trigger: str | None = None) -> Run | None:
        """The newest run of a pipeline (by one trigger)."""
        ...

    def close(self) -> None: ...
