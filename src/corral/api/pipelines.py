"""Retraining pipelines over HTTP: their definitions and next scheduled run, manual runs, and each run's state,
gate result, rollout and log."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from corral.api.responses import errors
from corral.app import Services
from corral.errors import ConfigurationError, ConflictError
from corral.pipelines.entities import QUEUED, RUNNING, STATES, Run
from corral.pipelines.ports import PipelineStore
from corral.retraining import describe_pipeline, rollout_of

RECENT_RUNS = 20


class RunBody(BaseModel):
    reason: str = Field("run by hand", min_length=1, max_length=1000)


def router(services: Services) -> APIRouter:
    api = APIRouter(tags=["pipelines"])
    store = services.pipelines.store

    @api.get("/v1/pipelines")
    async def list_pipelines() -> list[dict[str, Any]]:
        """Every pipeline, by name, with its next scheduled run and its last run."""
        return await asyncio.to_thread(lambda: [describe_pipeline(services, p, runs=0) for p in store.list_pipelines()])

    @api.get("/v1/pipelines/{name}")
    async def get_pipeline(name: str) -> dict[str, Any]:
        """One pipeline's definition, its next scheduled run, and its last runs, newest first."""
        pipeline = await asyncio.to_thread(store.get_pipeline, name)
        return await asyncio.to_thread(describe_pipeline, services, pipeline, runs=RECENT_RUNS)

    @api.post("/v1/pipelines/{name}/runs", status_code=202, responses=errors(409))
    async def run(name: str, response: Response, body: RunBody | None = None) -> dict[str, Any]:
        """Queue a run now, as ``corral pipelines run NAME`` does; a worker carries it out. Refused (409) while
        the pipeline has a run queued or running."""
        reason = body.reason if body is not None else RunBody().reason
        queued = await asyncio.to_thread(services.pipelines.run, name, reason=reason)
        if queued is None:
            active = await asyncio.to_thread(store.last_run, name)
            which = f" ({active.state}: {active.id})" if active is not None else ""
            raise ConflictError(f"pipeline {name} already has a run queued or running{which}")
        response.headers["Location"] = f"/v1/runs/{queued.id}"
        return queued.to_dict()

    @api.get("/v1/runs", responses=errors(404))
    async def list_runs(
        pipeline: str | None = None, state: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> list[dict[str, Any]]:
        """Runs, newest first, of one pipeline (``pipeline=``) and in one state (``state=``) if asked."""
        if state is not None and state not in STATES:
            raise ConfigurationError(f"state must be one of {', '.join(STATES)}; got {state!r}")
        if pipeline is not None:
            await asyncio.to_thread(store.get_pipeline, pipeline)
        found = await asyncio.to_thread(runs_of, store, pipeline=pipeline, state=state, limit=limit)
        return [r.to_dict() for r in found]

    @api.get("/v1/runs/{run_id}")
    async def get_run(run_id: str) -> dict[str, Any]:
        """One run: state, times, the candidate, the gate's result, the rollout so far, the error, and the log."""
        found = await asyncio.to_thread(store.get_run, run_id)
        rollout = await asyncio.to_thread(rollout_of, services, found)
        return {**found.to_dict(), "rollout": rollout, "log": found.log}

    @api.get("/v1/runs/{run_id}/logs")
    async def logs(run_id: str, offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        """The run's log lines from line ``offset`` on (saved while it runs, every third of its lease): poll
        with ``offset=next_offset`` while ``done`` is false to follow it, as ``corral runs logs -f`` does."""
        found = await asyncio.to_thread(store.get_run, run_id)
        lines = found.log.splitlines()
        return {
            "id": found.id,
            "pipeline": found.pipeline,
            "state": found.state,
            "done": found.state not in (QUEUED, RUNNING),
            "offset": offset,
            "next_offset": max(offset, len(lines)),
            "lines": lines[offset:],
        }

    return api


def runs_of(store: PipelineStore, *, pipeline: str | None, state: str | None, limit: int) -> list[Run]:
    """Up to ``limit`` runs, newest first; with ``state``, the store is asked for more until enough match."""
    if state is None:
        return store.list_runs(pipeline=pipeline, limit=limit)
    asked = limit
    while True:
        found = store.list_runs(pipeline=pipeline, limit=asked)
        matching = [r for r in found if r.state == state]
        if len(matching) >= limit or len(found) < asked:
            return matching[:limit]
        asked *= 4
