"""The model server: deployments loaded in memory, kept in step with the store.

Read :meth:`ModelServer.predict` for the request path, a straight pipeline::

    route (the champion, or a split or canary by its share, sticky per routing
    key) → validate (that version's signature) → batch (AdaptiveBatcher) →
    predict (runtime) → record (sinks; an awaitable sink, such as the durable
    audit log, is awaited before the response goes out) → offer a copy to
    each shadow (a bounded queue; never waited on)

No step touches the database. A background task (:meth:`ModelServer.refresh`,
every ``refresh_seconds``) reads deployments and aliases from the store, loads
and warms a new version off the request path, then swaps it in with one
assignment: requests already holding the old version finish on it; a version
that fails to load or warm never takes traffic and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from corral.core.anomaly import AnomalyScorer
from corral.core.events import PredictionEvent, PredictionSink
from corral.core.ids import new_id
from corral.core.schema import FeatureKind, Signature
from corral.errors import (
    ConflictError,
    CorralError,
    DeploymentNotFoundError,
    LimitExceededError,
    ModelTimeoutError,
    NotReadyError,
    OverloadedError,
    SchemaError,
    UntrustedArtifactError,
    VersionArchivedError,
    VersionNotFoundError,
)
from corral.isolation.environments import Environments
from corral.isolation.host import load_isolated, needs_isolation, requires_trusted_worker
from corral.registry.entities import ModelVersion, VersionStatus
from corral.registry.loaded import LoadedModel
from corral.registry.service import Registry
from corral.runtimes.base import Prediction
from corral.serving.batching import AdaptiveBatcher, BatchStats
from corral.serving.entities import SHADOW, Deployment, ExecutionPolicy, Member
from corral.serving.ports import DeploymentStore
from corral.serving.routing import choose
from corral.serving.shadows import MemberStats, ShadowJob, ShadowRunner, judge

log = logging.getLogger("corral.serving")


class ServingObserver(Protocol):
    """Hears what the server does (the API implements it with Prometheus metrics)."""

    def request(self, deployment: str, model: str, version: int, rows: int, seconds: float) -> None: ...

    def batch(self, deployment: str, model: str, version: int, stats: BatchStats) -> None: ...

    def loaded(self, deployment: str, model: str, version: int, loaded: bool) -> None: ...

    def shadow_dropped(self, deployment: str, model: str, version: int, count: int) -> None: ...


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """What one request got back."""

    deployment: str
    model: str
    version: int
    prediction_ids: list[str]
    prediction: Prediction
    out_of_range: list[tuple[str, ...]]
    batch_size: int
    anomaly_scores: np.ndarray | None = None
    anomaly_flagged: np.ndarray | None = None
    role: str = "primary"


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """A deployment as this process sees it (the repository index)."""

    name: str
    model: str
    alias: str
    state: str  # READY, LOADING, UNAVAILABLE, FAILED
    version: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Loaded:
    """A version loaded and warmed, with its anomaly scorer (from the reference profile)."""

    model: LoadedModel
    scorer: AnomalyScorer | None
    execution: ExecutionPolicy = field(default_factory=ExecutionPolicy)
    isolated: bool = False


class _Gate:
    """At most ``limit`` requests inside a model at once, at most ``queue`` more waiting; the rest refused."""

    def __init__(self, name: str, limit: int, queue: int) -> None:
        self.name = name
        self.limit = limit
        self.queue = queue
        self.waiting = 0
        self._free = asyncio.Semaphore(limit)

    async def __aenter__(self) -> None:
        if self._free.locked():
            if self.waiting >= self.queue:
                raise OverloadedError(
                    f"deployment {self.name!r} is at its limit of {self.limit} concurrent requests with "
                    f"{self.waiting} waiting; retry shortly",
                    retry_after=1.0,
                )
            self.waiting += 1
            try:
                await self._free.acquire()
            finally:
                self.waiting -= 1
        else:
            await self._free.acquire()

    async def __aexit__(self, *_exc: object) -> None:
        self._free.release()


@dataclass
class _Live:
    deployment: Deployment
    version: ModelVersion
    model: LoadedModel
    executor: ThreadPoolExecutor
    batcher: AdaptiveBatcher | None
    scorer: AnomalyScorer | None = None
    execution: ExecutionPolicy = field(default_factory=ExecutionPolicy)  # what it was loaded with
    isolated: bool = False
    gate: _Gate | None = None
    loaded_at: float = field(default_factory=time.monotonic)
    in_flight: int = 0  # requests holding this version, which may cross an await before reaching the model

    async def close(self) -> None:
        while self.in_flight:  # requests that took this version before a swap are answered by it
            await asyncio.sleep(0.001)
        if self.batcher is not None:
            await self.batcher.close()
        self.executor.shutdown(wait=True)
        close = getattr(self.model.runtime, "close", None)  # a worker process or an external program
        if callable(close):
            await asyncio.to_thread(close)


def warm_frame(signature: Signature) -> pd.DataFrame:
    """One plausible row from the training ranges, to warm a model before it takes traffic."""
    row: dict[str, Any] = {}
    for spec in signature.inputs:
        if spec.kind is FeatureKind.NUMERICAL:
            lo, hi = spec.min or 0.0, spec.max if spec.max is not None else 0.0
            row[spec.name] = (lo + hi) / 2 if spec.dtype != "int64" else int(lo)
        elif spec.kind is FeatureKind.BOOLEAN:
            row[spec.name] = False
        else:
            row[spec.name] = spec.categories[0] if spec.categories else "x"
    return signature.validate([row])


class ModelServer:
    """Serves every enabled deployment from memory.

    Args:
        deployments: the deployment store (read only by :meth:`refresh`).
        registry: loads versions (hash-verified) and resolves aliases.
        refresh_seconds: how often to look for alias and deployment changes.
        max_rows: most rows one request may carry.
        sinks: receive a :class:`PredictionEvent` per answered row.
        observer: hears requests, batches and loads (metrics).
        pinned_cache: how many explicitly requested other versions stay loaded.
        shadow_capacity: requests each shadow may have queued; beyond it copies are dropped and counted.
        shadow_max_wait: seconds a shadow waits after a copy arrives for more to score in the same call.
        on_guard: told ``(deployment, member, reason)`` when a guard rule removes a member (to raise an alert).
        environments: where isolated versions' environments are built; without it, a deployment that needs
            isolation fails to load with a message saying so.
    """

    def __init__(
        self,
        deployments: DeploymentStore,
        registry: Registry,
        *,
        refresh_seconds: float = 1.0,
        max_rows: int = 10_000,
        max_body_bytes: int = 16 * 1024 * 1024,
        sinks: Sequence[PredictionSink] = (),
        observer: ServingObserver | None = None,
        pinned_cache: int = 4,
        shadow_capacity: int = 1000,
        shadow_max_wait: float = 0.1,
        on_guard: Callable[[str, Member, str], None] | None = None,
        environments: Environments | None = None,
    ) -> None:
        self.store = deployments
        self.registry = registry
        self.refresh_seconds = refresh_seconds
        self.max_rows = max_rows
        self.max_body_bytes = max_body_bytes
        self.sinks = list(sinks)
        self.observer = observer
        self.pinned_cache = pinned_cache
        self._live: dict[str, _Live] = {}
        self._status: dict[str, DeploymentStatus] = {}
        self._failed: dict[tuple[str, str, int], str] = {}
        self._untrusted: set[tuple[str, str, int]] = set()  # failed for want of an admin's trust (a pickle)
        self._pinned: OrderedDict[tuple[str, int], _Live] = OrderedDict()
        self._members: dict[str, dict[tuple[str, int], _Live]] = {}
        self._runners: dict[tuple[str, str, int], ShadowRunner] = {}
        self.stats: dict[tuple[str, str, int], MemberStats] = {}
        self.shadow_capacity = shadow_capacity
        self.shadow_max_wait = shadow_max_wait
        self.on_guard = on_guard
        self.environments = environments
        self._pin_lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._refresh_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._threads = max(2, min(8, os.cpu_count() or 2))
        self.started = False

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Load every enabled deployment, then keep following the store."""
        await self.refresh()
        # Models and frameworks leave hundreds of thousands of long-lived objects; a full garbage
        # collection scanning them all stops the event loop for ~100 ms under load. Freeze them once.
        gc.collect()
        gc.freeze()
        self.started = True
        self._refresher = asyncio.get_running_loop().create_task(self._follow(), name="corral-refresh")

    async def stop(self) -> None:
        """Stop following the store and finish what is in flight."""
        self.started = False
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        for runner in self._runners.values():
            await runner.close()
        self._runners.clear()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        members = [live for loaded in self._members.values() for live in loaded.values()]
        for live in [*self._live.values(), *self._pinned.values(), *members]:
            await live.close()
        self._live.clear()
        self._pinned.clear()
        self._members.clear()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
                if await self.guard():
                    await self.refresh()
            except Exception:  # the store may be briefly unreachable: keep serving what is loaded
                log.exception("refreshing deployments failed; serving what is loaded")

    async def guard(self) -> list[tuple[str, Member, str]]:
        """Take every member that its deployment's guard rules judge faulty off the traffic (in the store, so
        every process follows); returns ``(deployment, member, reason)`` for each."""
        removed = []
        for name in list(self._members):
            live = self._live.get(name)
            if live is None or not live.deployment.guard.enabled:
                continue
            champion = self.stats.get((name, live.version.name, live.version.version))
            for member in live.deployment.members:
                stats = self.stats.get((name, *member.key))
                reason = judge(live.deployment.guard, stats, champion) if stats is not None else None
                if reason is not None and await asyncio.to_thread(self._remove, name, member):
                    log.warning("deployment %s: %s %s removed: %s", name, member.role, member.ref, reason)
                    self.stats.pop((name, *member.key), None)
                    removed.append((name, member, reason))
                    if self.on_guard is not None:
                        await asyncio.to_thread(self.on_guard, name, member, reason)
        return removed

    def _remove(self, name: str, member: Member) -> bool:
        for _ in range(10):  # compare-and-set: a concurrent change (a pipeline adding a candidate) is kept
            current = self.store.get(name)
            kept = tuple(m for m in current.members if m.key != member.key)
            if len(kept) == len(current.members):
                return False  # another process removed it first
            stamp = max(datetime.now(UTC), current.updated_at + timedelta(microseconds=1))
            try:
                self.store.update(replace(current, members=kept, updated_at=stamp), expected=current.updated_at)
                return True
            except ConflictError:
                continue
        return False

    # -- following the store ------------------------------------------------------

    async def refresh(self) -> None:
        """One pass: load new targets, swap them in, drop removed deployments."""
        async with self._refresh_lock:
            stored = await asyncio.to_thread(self.store.list)
            wanted = [d for d in stored if d.enabled]
            names = {d.name for d in wanted}
            for deployment in wanted:
                await self._follow_one(deployment)
                await self._follow_members(deployment)
            for name in [n for n in self._live if n not in names]:
                self._retire(self._live.pop(name), unloaded=True)
            for name in [n for n in self._members if n not in names]:
                await self._drop_members(name, keep=())
            for key in [k for k in self._pinned if k[0] not in names]:
                self._retire(self._pinned.pop(key), unloaded=True)
            for key, pinned in list(self._pinned.items()):  # archived or deleted since it was loaded: stop serving it
                if not await asyncio.to_thread(self._servable, pinned.version) and self._pinned.get(key) is pinned:
                    self._retire(self._pinned.pop(key), unloaded=True)
            for deployment in stored:
                if not deployment.enabled:
                    self._set_status(deployment, "UNAVAILABLE", None, "unloaded: the deployment is disabled")
            for name in [n for n in self._status if n not in {d.name for d in stored}]:
                del self._status[name]

    async def _follow_one(self, deployment: Deployment) -> None:
        current = self._live.get(deployment.name)
        try:
            target = await asyncio.to_thread(self.registry.resolve, deployment.target)
        except CorralError as exc:
            reason = f"{deployment.target} does not resolve: {exc}"
            self._set_status(deployment, "READY" if current else "UNAVAILABLE", current, reason)
            return
        same_version = current is not None and (current.version.name, current.version.version) == (
            target.name,
            target.version,
        )
        if current is not None and same_version and target.trust is None and self.registry.needs_trust(target):
            self._retire(self._live.pop(deployment.name), unloaded=True)  # an admin revoked its trust: stop now
            log.warning("deployment %s: the trust in %s was revoked; it no longer serves", deployment.name, target.ref)
            current, same_version = None, False
        self._forget_if_trusted(deployment.name, target)
        if current is not None and same_version and current.execution != deployment.execution:
            self._failed.pop((deployment.name, target.name, target.version), None)  # new limits: load again
        elif current is not None and same_version:
            if current.deployment.batching != deployment.batching:
                same = Loaded(current.model, current.scorer, current.execution, current.isolated)
                self._swap(deployment, self._live_for(deployment, current.version, same))
            else:
                current.deployment = deployment
            self._set_status(deployment, "READY", current)
            return
        key = (deployment.name, target.name, target.version)
        if key in self._failed:
            self._set_status(deployment, "READY" if current else "FAILED", current, self._failed[key])
            return
        self._set_status(deployment, "READY" if current else "LOADING", current, f"loading {target.ref}")
        try:
            loaded = await asyncio.to_thread(self._load_and_warm, target, deployment)
        except Exception as exc:  # never let a bad version take traffic
            reason = f"{target.ref} failed to load: {type(exc).__name__}: {exc}"
            log.error("deployment %s: %s; %s", deployment.name, reason, "old version keeps serving" if current else "")
            self._failed[key] = reason
            if isinstance(exc, UntrustedArtifactError) and target.trust is None:
                self._untrusted.add(key)
            self._set_status(deployment, "READY" if current else "FAILED", current, reason)
            return
        self._swap(deployment, self._live_for(deployment, target, loaded))
        log.info("deployment %s now serves %s", deployment.name, target.ref)

    async def _follow_members(self, deployment: Deployment) -> None:
        """Load the deployment's shadows, splits and canaries; retire the ones it no longer lists."""
        current = self._live.get(deployment.name)
        if current is not None and current.deployment.members != deployment.members:
            # routing reads the members from the champion's snapshot: refresh them even when the alias
            # did not resolve this time (the rest of the snapshot changes with a swap)
            current.deployment = replace(current.deployment, members=deployment.members, guard=deployment.guard)
        await self._drop_members(deployment.name, keep={m.key for m in deployment.members})
        loaded = self._members.setdefault(deployment.name, {})
        for member in deployment.members:
            live = loaded.get(member.key)
            if live is not None:
                live.deployment = deployment
            else:
                live = await self._load_member(deployment, member)
                if live is None:
                    continue
                loaded[member.key] = live
                log.info("deployment %s: %s %s loaded", deployment.name, member.role, member.ref)
            runner_key = (deployment.name, *member.key)
            if member.role == SHADOW and runner_key not in self._runners:
                self._runners[runner_key] = ShadowRunner(
                    f"{deployment.name}:{member.ref}",
                    self._shadow_scorer(deployment.name, member.key),
                    self._stats_for(runner_key),
                    capacity=self.shadow_capacity,
                    max_wait=self.shadow_max_wait,
                    on_drop=self._drop_observer(runner_key),
                )
            elif member.role != SHADOW and runner_key in self._runners:
                await self._runners.pop(runner_key).close()

    async def _load_member(self, deployment: Deployment, member: Member) -> _Live | None:
        key = (deployment.name, *member.key)
        if key in self._untrusted:  # refused for want of trust: look again whether an admin has trusted it since
            with contextlib.suppress(CorralError):
                found = await asyncio.to_thread(self.registry.get_version, member.model, member.version)
                self._forget_if_trusted(deployment.name, found)
        if key in self._failed:
            return None
        version: ModelVersion | None = None
        try:
            version = await asyncio.to_thread(self.registry.get_version, member.model, member.version)
            if version.status is VersionStatus.ARCHIVED:
                raise VersionArchivedError(f"{version.ref} is archived")
            loaded = await asyncio.to_thread(self._load_and_warm, version, deployment)
        except Exception as exc:  # a member that cannot load never takes traffic; the champion is untouched
            self._failed[key] = f"{member.ref} failed to load: {type(exc).__name__}: {exc}"
            if isinstance(exc, UntrustedArtifactError) and version is not None and version.trust is None:
                self._untrusted.add(key)
            log.error("deployment %s: %s %s", deployment.name, member.role, self._failed[key])
            return None
        return self._live_for(deployment, version, loaded)

    def _forget_if_trusted(self, name: str, version: ModelVersion) -> None:
        """A version refused for want of trust is loaded again once an admin trusts it."""
        key = (name, version.name, version.version)
        if key in self._untrusted and version.trust is not None:
            self._untrusted.discard(key)
            self._failed.pop(key, None)

    async def _drop_members(self, name: str, keep: Any) -> None:
        loaded = self._members.get(name, {})
        for key in [k for k in loaded if k not in keep]:
            self._retire(loaded.pop(key), unloaded=True)
        for runner_key in [k for k in self._runners if k[0] == name and k[1:] not in keep]:
            await self._runners.pop(runner_key).close()
        if not loaded:
            self._members.pop(name, None)

    def _stats_for(self, key: tuple[str, str, int]) -> MemberStats:
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = MemberStats()
        return stats

    def member_stats(self, name: str) -> dict[tuple[str, int], MemberStats]:
        """What this process saw of every version on deployment ``name``: ``(model, version) -> stats``."""
        return {key[1:]: stats for key, stats in self.stats.items() if key[0] == name}

    def _servable(self, version: ModelVersion) -> bool:
        """Whether a loaded version may go on serving: it was neither archived nor deleted since."""
        try:
            return self.registry.get_version(version.name, version.version).status is not VersionStatus.ARCHIVED
        except VersionNotFoundError:
            return False

    def _drop_observer(self, key: tuple[str, str, int]) -> Callable[[int], None] | None:
        observer = self.observer
        if observer is None:
            return None
        return lambda count: observer.shadow_dropped(*key, count)

    def _load_and_warm(self, version: ModelVersion, deployment: Deployment) -> Loaded:
        """Load ``version`` as ``deployment``'s execution policy says (in process or in its own worker), then
        warm it with one plausible row; a version that cannot do both never takes traffic.

        A version whose artifact runs code when loaded (a pickle) is refused unless an admin trusted it, and a
        trusted one is always loaded in a worker process, whatever the policy says: never in this process."""
        execution = deployment.execution
        isolated = execution.isolation == "isolated"
        trusted = requires_trusted_worker(version)
        if trusted:
            isolated = True
            log.info("deployment %s: %s is a trusted pickle: it runs in a worker process", deployment.name, version.ref)
        elif execution.isolation == "auto":
            differ = needs_isolation(version.lineage.requirements, version.flavor)
            isolated = bool(differ)
            if differ:
                log.info(
                    "deployment %s: %s runs isolated: it needs %s", deployment.name, version.ref, ", ".join(differ)
                )
        if isolated:
            if self.environments is None:
                raise NotReadyError(f"{version.ref} needs its own environment but this server has none configured")
            runtime = load_isolated(
                self.registry,
                version,
                self.environments,
                name=f"deployment {deployment.name!r} ({version.ref})",
                timeout=execution.timeout_seconds,
                max_memory_mb=execution.max_memory_mb,
                device=execution.device,
                trusted=trusted,  # an admin-trusted pickle, unpickled only in the worker
            )
            model = LoadedModel(version, runtime)
        else:
            model = self.registry.load(version.ref, device=execution.device)
        try:
            model.runtime.predict(warm_frame(version.signature))
        except BaseException:
            close = getattr(model.runtime, "close", None)
            if callable(close):
                close()
            raise
        profile = self.registry.get_profile(version.name, version.version)
        scorer = AnomalyScorer.from_profile(profile, version.signature) if profile is not None else None
        return Loaded(model, scorer, execution, isolated)

    def _live_for(self, deployment: Deployment, version: ModelVersion, loaded: Loaded) -> _Live:
        model = loaded.model
        policy = deployment.batching
        executor = ThreadPoolExecutor(
            1 if policy.enabled else self._threads, thread_name_prefix=f"corral-{deployment.name}"
        )
        batcher = None
        if policy.enabled:
            batcher = AdaptiveBatcher(
                model.runtime.predict,
                executor,
                max_batch_size=policy.max_batch_size,
                max_wait=policy.max_wait_ms / 1000,
                on_batch=self._batch_observer(deployment.name, version),
            )
        execution = loaded.execution
        gate = None
        if execution.max_concurrency is not None:
            gate = _Gate(deployment.name, execution.max_concurrency, execution.max_queue)
        return _Live(deployment, version, model, executor, batcher, loaded.scorer, execution, loaded.isolated, gate)

    def _batch_observer(self, name: str, version: ModelVersion) -> Any:
        def observe(stats: BatchStats) -> None:
            if self.observer is not None:
                self.observer.batch(name, version.name, version.version, stats)

        return observe

    def _swap(self, deployment: Deployment, live: _Live) -> None:
        old = self._live.get(deployment.name)
        self._live[deployment.name] = live  # one assignment: the next request sees the new version
        self._set_status(deployment, "READY", live)
        if self.observer is not None:
            self.observer.loaded(deployment.name, live.version.name, live.version.version, True)
        if old is not None:
            self._retire(old, unloaded=False)
        gc.freeze()  # the new version's objects join the frozen ones (no collect: traffic is flowing)

    def _retire(self, live: _Live, *, unloaded: bool) -> None:
        if self.observer is not None and (unloaded or live.version.version != self._current_version(live)):
            self.observer.loaded(live.deployment.name, live.version.name, live.version.version, False)
        task = asyncio.get_running_loop().create_task(live.close())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _current_version(self, live: _Live) -> int | None:
        current = self._live.get(live.deployment.name)
        return current.version.version if current is not None else None

    def _set_status(self, deployment: Deployment, state: str, live: _Live | None, reason: str = "") -> None:
        self._status[deployment.name] = DeploymentStatus(
            deployment.name, deployment.model, deployment.alias, state, live.version.version if live else None, reason
        )

    # -- reading state ------------------------------------------------------------

    def status(self) -> list[DeploymentStatus]:
        return [self._status[n] for n in sorted(self._status)]

    def deployment_status(self, name: str) -> DeploymentStatus:
        status = self._status.get(name)
        if status is None:
            raise DeploymentNotFoundError(f"no deployment named {name!r}")
        return status

    def version_record(self, name: str, version: int | None = None) -> ModelVersion:
        """The live version of ``name``, or another version of the same model by number."""
        live = self._get(name).version
        if version is None or version == live.version:
            return live
        pinned = self._pinned.get((name, version))
        if pinned is not None:
            return pinned.version
        try:
            return self.registry.get_version(live.name, version)
        except VersionNotFoundError:
            raise VersionNotFoundError(
                f"deployment {name!r} serves model {live.name!r}, which has no version {version}"
            ) from None

    async def set_enabled(self, name: str, enabled: bool) -> None:
        """Load or unload a deployment everywhere (it is stored), starting with this process."""
        deployment = await asyncio.to_thread(self.store.get, name)
        if deployment.enabled != enabled:
            changed = replace(deployment, enabled=enabled, updated_at=datetime.now(UTC))
            await asyncio.to_thread(self.store.update, changed)
        await self.refresh()

    def ready(self, name: str) -> bool:
        return name in self._live

    def _get(self, name: str) -> _Live:
        live = self._live.get(name)
        if live is not None:
            return live
        status = self._status.get(name)
        if status is None:
            raise DeploymentNotFoundError(f"no deployment named {name!r}")
        raise NotReadyError(f"deployment {name!r} is not ready: {status.reason or status.state.lower()}")

    async def _pinned_version(self, name: str, version: int) -> _Live:
        live = self._get(name)
        if live.version.version == version:
            return live
        key = (name, version)
        async with self._pin_lock:
            pinned = self._pinned.get(key)
            if pinned is None:
                try:
                    target = await asyncio.to_thread(self.registry.get_version, live.version.name, version)
                except VersionNotFoundError:
                    raise VersionNotFoundError(
                        f"deployment {name!r} serves model {live.version.name!r}, which has no version {version}"
                    ) from None
                if target.status is VersionStatus.ARCHIVED:
                    raise VersionArchivedError(f"{target.ref} is archived and cannot be served; restore it first")
                loaded = await asyncio.to_thread(self._load_and_warm, target, live.deployment)
                pinned = self._live_for(live.deployment, target, loaded)
                self._pinned[key] = pinned
                while len(self._pinned) > self.pinned_cache:
                    self._retire(self._pinned.popitem(last=False)[1], unloaded=True)
            self._pinned.move_to_end(key)
            return pinned

    # -- the request path -----------------------------------------------------------

    async def predict(
        self,
        name: str,
        data: Any,
        *,
        version: int | None = None,
        request_id: str | None = None,
        caller: str | None = None,
        routing_key: str | None = None,
    ) -> InferenceResult:
        """Route, validate, batch, predict and record one request to deployment ``name``; then offer a copy
        to each of its shadows.

        ``routing_key`` (a customer id, say) keeps a caller on one version while splits are in place.

        Raises:
            DeploymentNotFoundError: unknown deployment.
            NotReadyError: no version loaded yet (or it failed to load).
            SchemaError: the rows do not fit the signature (nothing reached the model).
            LimitExceededError: more rows than ``max_rows``.
        """
        started = time.perf_counter()
        live, role = (
            self._route(name, routing_key)
            if version is None
            else (await self._pinned_version(name, version), "primary")
        )
        try:
            result = await self._counted(name, live, role, data, started, request_id=request_id, caller=caller)
        except Exception as exc:
            if role == "primary" or isinstance(exc, LimitExceededError):
                raise
            # a failing split or canary must not fail its share of clients: the champion answers instead
            log.debug("deployment %s: %s %s failed (%s); the champion answers", name, role, live.version.ref, exc)
            champion = self._get(name)
            result = await self._counted(name, champion, "primary", data, started, request_id=request_id, caller=caller)
        if version is None:
            for key, runner in self._runners.items():
                if key[0] == name:
                    runner.offer(ShadowJob(data, result.prediction_ids, request_id, caller))
        return result

    async def _counted(
        self,
        name: str,
        live: _Live,
        role: str,
        data: Any,
        started: float,
        *,
        request_id: str | None,
        caller: str | None,
    ) -> InferenceResult:
        """:meth:`_answer`, counted in the version's stats (a client's bad input is not the model's error)."""
        stats = self._stats_for((name, live.version.name, live.version.version))
        live.in_flight += 1  # a swap retires this version only once this request is answered
        try:
            result = await self._answer(name, live, role, data, started, request_id=request_id, caller=caller)
        except CorralError as exc:
            if not isinstance(exc, (SchemaError, LimitExceededError)):
                stats.record(None)
            raise
        except Exception:
            stats.record(None)
            raise
        finally:
            live.in_flight -= 1
        stats.record(time.perf_counter() - started)
        return result

    def _route(self, name: str, routing_key: str | None) -> tuple[_Live, str]:
        live = self._get(name)
        members = self._members.get(name)
        if not members:
            return live, "primary"
        chosen = choose(live.deployment.answering, routing_key)
        member = members.get(chosen.key) if chosen is not None else None
        if chosen is None or member is None:
            return live, "primary"
        return member, chosen.role

    async def _answer(
        self,
        name: str,
        live: _Live,
        role: str,
        data: Any,
        started: float,
        *,
        request_id: str | None,
        caller: str | None,
        ids: list[str] | None = None,
        durable: bool = True,
    ) -> InferenceResult:
        rows = len(data)
        if rows > self.max_rows:
            raise LimitExceededError(f"{rows} rows is over this server's limit of {self.max_rows} rows per request")
        if rows == 0:
            raise LimitExceededError("the request has no rows to score")
        signature = live.version.signature
        try:
            frame = signature.validate(data) if rows <= 256 else await asyncio.to_thread(signature.validate, data)
        except SchemaError as exc:
            if exc.field is not None and role != SHADOW:
                for sink in self.sinks:
                    sink.reject(name, live.version.name, live.version.version, exc.field, rows)
            raise
        prediction, batch_size = await self._call_model(name, live, frame)
        if len(prediction) != len(frame):
            raise CorralError(f"{live.version.ref} returned {len(prediction)} predictions for {len(frame)} rows")
        ids = ids if ids is not None else [new_id() for _ in range(len(frame))]
        flags = signature.out_of_range(frame)
        scores, flagged = live.scorer.score(frame) if live.scorer is not None else (None, None)
        seconds = time.perf_counter() - started
        if self.observer is not None and role != SHADOW:
            self.observer.request(name, live.version.name, live.version.version, len(frame), seconds)
        if self.sinks:
            await self._record(
                live,
                frame,
                prediction,
                ids=ids,
                flags=flags,
                seconds=seconds,
                request_id=request_id,
                caller=caller,
                anomaly=(scores, flagged),
                role=role,
                durable=durable,
            )
        return InferenceResult(
            name, live.version.name, live.version.version, ids, prediction, flags, batch_size, scores, flagged, role
        )

    async def _call_model(self, name: str, live: _Live, frame: pd.DataFrame) -> tuple[Prediction, int]:
        """The model call, within the deployment's concurrency limit and request timeout."""
        execution = live.execution
        async with live.gate if live.gate is not None else contextlib.nullcontext():
            if live.batcher is not None:
                call: Any = live.batcher.submit(frame)
            else:
                call = asyncio.get_running_loop().run_in_executor(live.executor, self._rows_predict(live), frame)
            if execution.timeout_seconds is None:
                result: tuple[Prediction, int] = await call
                return result
            # an isolated worker is killed at its own deadline; this one also bounds the time spent queued
            limit = execution.timeout_seconds + (0.5 if live.isolated else 0.0)
            try:
                async with asyncio.timeout(limit):
                    result = await call
            except TimeoutError:
                raise ModelTimeoutError(
                    f"deployment {name!r}: {live.version.ref} did not answer within {execution.timeout_seconds:g} s"
                ) from None
            return result

    @staticmethod
    def _rows_predict(live: _Live) -> Callable[[pd.DataFrame], tuple[Prediction, int]]:
        def predict(frame: pd.DataFrame) -> tuple[Prediction, int]:
            return live.model.runtime.predict(frame), len(frame)

        return predict

    def _shadow_scorer(self, name: str, key: tuple[str, int]) -> Any:
        async def score(jobs: list[ShadowJob]) -> None:
            live = self._members.get(name, {}).get(key)
            if live is None:  # removed since the jobs were queued
                return
            stats = self._stats_for((name, *key))
            started = time.perf_counter()
            same = len({(j.request_id, j.caller) for j in jobs}) == 1
            live.in_flight += 1
            try:
                await self._answer(
                    name, live, SHADOW, _concat([j.data for j in jobs]), started,
                    request_id=jobs[0].request_id if same else None, caller=jobs[0].caller if same else None,
                    ids=[pid for j in jobs for pid in j.prediction_ids], durable=False,
                )  # fmt: skip
            except Exception:
                if len(jobs) == 1:  # a failed batch is retried job by job (ShadowRunner); count only those
                    stats.record(None)
                raise
            finally:
                live.in_flight -= 1
            seconds = time.perf_counter() - started
            for _ in jobs:
                stats.record(seconds)

        return score

    async def drain_shadows(self, name: str | None = None) -> None:
        """Wait until every shadow (of deployment ``name``) has scored what was offered to it."""
        for key, runner in list(self._runners.items()):
            if name is None or key[0] == name:
                await runner.drain()

    async def _record(
        self,
        live: _Live,
        frame: pd.DataFrame,
        prediction: Prediction,
        *,
        ids: list[str],
        flags: list[tuple[str, ...]],
        seconds: float,
        request_id: str | None,
        caller: str | None,
        anomaly: tuple[np.ndarray | None, np.ndarray | None],
        role: str = "primary",
        durable: bool = True,
    ) -> None:
        now = datetime.now(UTC)
        columns = [str(c) for c in frame.columns]  # DataFrame.to_dict is ~1.7 ms a row here: build the dicts directly
        records = [dict(zip(columns, row, strict=True)) for row in frame.to_numpy(dtype=object).tolist()]
        probabilities = prediction.probabilities
        events = [
            PredictionEvent(
                prediction_id=pid,
                timestamp=now,
                deployment=live.deployment.name,
                model=live.version.name,
                version=live.version.version,
                inputs=records[i],
                output=_plain(prediction.values[i]),
                probabilities=tuple(float(p) for p in probabilities[i]) if probabilities is not None else None,
                latency_ms=seconds * 1000,
                request_id=request_id,
                out_of_range=flags[i],
                anomaly_score=float(anomaly[0][i]) if anomaly[0] is not None else None,
                anomaly_flagged=bool(anomaly[1][i]) if anomaly[1] is not None else False,
                caller=caller,
                role=role,
            )
            for i, pid in enumerate(ids)
        ]
        waits = []
        for sink in self.sinks:
            outcome = sink.submit(events)
            if outcome is not None:
                waits.append(outcome)  # a sink that must be durable before the response (audit) is awaited
        if durable:
            for outcome in waits:
                await outcome
        else:  # a shadow's rows: nobody waits on them, but a failed commit is still logged
            for outcome in waits:
                asyncio.ensure_future(outcome).add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a shadow's records were not stored: %s", future.exception())


def _concat(parts: list[Any]) -> Any:
    """Several requests' rows as one input: lists of rows joined, frames concatenated, columns appended."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, list) for p in parts):
        return [row for p in parts for row in p]
    frames = [p if isinstance(p, pd.DataFrame) else pd.DataFrame(p) for p in parts]
    return pd.concat(frames, ignore_index=True)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
