"""Several versions on one deployment: splits answer their share (sticky per key), shadows score a copy of
every request off the response path, members follow the store and a broken one never hurts the champion."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faulty_models
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.api.metrics import ServingMetrics
from corral.core.events import PredictionEvent
from corral.errors import ConfigurationError, NotFoundError
from corral.registry.service import Registry
from corral.serving.deployments import Deployments
from corral.serving.entities import GuardPolicy, Member
from corral.serving.routing import bucket, choose
from corral.serving.server import ModelServer
from corral.serving.shadows import MemberStats, judge
from corral.storage.artifacts import FsspecArtifactStore
from corral.storage.memory import MemoryDeploymentStore, MemoryRegistryStore

COLUMNS = ["mean radius", "mean texture"]


class Sink:
    def __init__(self) -> None:
        self.events: list[PredictionEvent] = []

    async def submit(self, events: Sequence[PredictionEvent]) -> None:
        self.events.extend(events)

    def reject(self, deployment: str, model: str, version: int, feature: str, rows: int) -> None:
        pass


@pytest.fixture
def world(tmp_path: Path, cancer: pd.DataFrame) -> dict[str, Any]:
    store = MemoryRegistryStore()
    registry = Registry(store, FsspecArtifactStore(str(tmp_path / "a")), actor="t")
    data = cancer[[*COLUMNS, "target"]]
    for c in (1e-4, 10.0, 1.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(data[COLUMNS], data["target"])
        registry.log_model(model, name="cancer", training_data=data, target="target")
    registry.promote("cancer", 1)
    deployments = Deployments(MemoryDeploymentStore(store), actor="t")
    deployments.create("api", model="cancer")
    sink = Sink()
    server = ModelServer(deployments.store, registry, refresh_seconds=60, sinks=[sink], shadow_capacity=50)
    return {"registry": registry, "deployments": deployments, "server": server, "x": data[COLUMNS], "sink": sink}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_routing_buckets_are_stable_and_follow_the_shares() -> None:
    assert bucket("customer-17") == bucket("customer-17") and 0 <= bucket("x") < 100
    members = [Member("m", 2, "split", 20.0), Member("m", 3, "canary", 5.0)]
    picks = Counter((c.version if (c := choose(members, f"customer-{i}")) is not None else 1) for i in range(20_000))
    assert abs(picks[2] / 20_000 - 0.20) < 0.02 and abs(picks[3] / 20_000 - 0.05) < 0.01
    assert choose([], "k") is None and choose(members, None) in (None, *members)


def test_bad_member_lists_are_refused(world: dict[str, Any]) -> None:
    deployments: Deployments = world["deployments"]
    with pytest.raises(ConfigurationError, match="role 'spy' is not one of"):
        Member("cancer", 2, "spy")
    with pytest.raises(ConfigurationError, match="cannot have a share"):
        Member("cancer", 2, "shadow", 10)
    with pytest.raises(ConfigurationError, match="between 0 and 100"):
        Member("cancer", 2, "split", 0)
    with pytest.raises(ConfigurationError, match="listed twice"):
        deployments.set_members("api", [Member("cancer", 2, "shadow"), Member("cancer", 2, "split", 5)])
    with pytest.raises(ConfigurationError, match="take 100 % of the traffic"):
        deployments.set_members("api", [Member("cancer", 2, "split", 60), Member("cancer", 3, "canary", 40)])
    with pytest.raises(NotFoundError, match="no member cancer/9"):
        deployments.remove_member("api", "cancer", 9)
    assert deployments.get("api").members == ()


def test_splits_answer_their_share_and_stick_to_a_key(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    world["deployments"].set_members("api", [Member("cancer", 2, "split", 30.0)])
    x = world["x"]

    async def scenario() -> tuple[Counter[tuple[int, str]], set[int]]:
        await server.start()
        try:
            seen: Counter[tuple[int, str]] = Counter()
            for i in range(300):
                result = await server.predict("api", x.iloc[[i % 50]], routing_key=f"customer-{i}")
                seen[(result.version, result.role)] += 1
            sticky = {(await server.predict("api", x.head(1), routing_key="customer-7")).version for _ in range(20)}
            return seen, sticky
        finally:
            await server.stop()

    seen, sticky = run(scenario())
    assert set(seen) == {(1, "primary"), (2, "split")} and 60 <= seen[(2, "split")] <= 120
    assert len(sticky) == 1
    roles = Counter(e.role for e in world["sink"].events)
    assert roles == Counter(
        {"primary": seen[(1, "primary")] + 20 * (sticky == {1}), "split": seen[(2, "split")] + 20 * (sticky == {2})}
    )


def test_shadows_record_every_request_with_the_same_ids_and_never_answer(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    world["deployments"].set_members("api", [Member("cancer", 2, "shadow"), Member("cancer", 3, "shadow")])
    x = world["x"]

    async def scenario() -> list[Any]:
        await server.start()
        try:
            results = [await server.predict("api", x.iloc[i : i + 3]) for i in range(0, 30, 3)]
            await server.drain_shadows("api")
            return results
        finally:
            await server.stop()

    results = run(scenario())
    assert all(r.version == 1 and r.role == "primary" for r in results)
    events = world["sink"].events
    returned = [pid for r in results for pid in r.prediction_ids]
    by_role = {role: [e for e in events if e.role == role] for role in ("primary", "shadow")}
    assert [e.prediction_id for e in by_role["primary"]] == returned
    for version in (2, 3):
        shadow_ids = [e.prediction_id for e in by_role["shadow"] if e.version == version]
        assert sorted(shadow_ids) == sorted(returned)  # one shadow record per request row and shadow
    stats = server.member_stats("api")
    assert stats[("cancer", 2)].requests == 10 and stats[("cancer", 2)].errors == 0


def test_a_broken_shadow_never_fails_or_slows_the_champion(
    world: dict[str, Any], cancer: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry: Registry = world["registry"]
    data = cancer[[*COLUMNS, "target"]]
    registry.log_model(faulty_models.Faulty("raise"), name="broken", training_data=data, target="target")
    registry.log_model(faulty_models.Faulty("slow"), name="slow", training_data=data, target="target")
    world["deployments"].set_members("api", [Member("broken", 1, "shadow"), Member("slow", 1, "shadow")])
    server: ModelServer = world["server"]
    server.observer = metrics = ServingMetrics()
    x = world["x"]

    async def scenario() -> float:
        await server.start()
        monkeypatch.setattr(faulty_models, "ARMED", True)
        try:
            started = time.perf_counter()
            for i in range(100):
                await server.predict("api", x.iloc[[i]])
            elapsed = time.perf_counter() - started
            await asyncio.sleep(3 * server.shadow_max_wait)  # the shadows' wait for company passes: they score
            return elapsed
        finally:
            await server.stop()

    run(scenario())
    stats = server.member_stats("api")
    assert stats[("cancer", 1)].requests == 100 and stats[("cancer", 1)].errors == 0
    assert stats[("broken", 1)].errors == stats[("broken", 1)].requests > 0
    slow = stats[("slow", 1)]
    assert slow.requests + slow.dropped == 100  # every copy scored or dropped and counted; none waited on
    labels = {"deployment": "api", "model": "slow", "version": "1"}
    assert (metrics.registry.get_sample_value("corral_shadow_dropped_total", labels) or 0) == slow.dropped


def test_members_follow_the_store_without_failing_requests(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    deployments: Deployments = world["deployments"]
    x = world["x"]

    async def scenario() -> list[tuple[int, str]]:
        await server.start()
        try:
            deployments.set_members("api", [Member("cancer", 2, "split", 50.0)])
            await server.refresh()
            before = {(await server.predict("api", x.head(1), routing_key=f"k{i}")).version for i in range(40)}
            deployments.remove_member("api", "cancer", 2)
            await server.refresh()
            after = {(await server.predict("api", x.head(1), routing_key=f"k{i}")).version for i in range(40)}
            return [before, after]
        finally:
            await server.stop()

    before, after = run(scenario())
    assert before == {1, 2} and after == {1}


def test_a_failing_split_is_answered_by_the_champion_and_removed_by_its_guard(
    world: dict[str, Any], cancer: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry: Registry = world["registry"]
    data = cancer[[*COLUMNS, "target"]]
    registry.log_model(faulty_models.Faulty("raise"), name="broken", training_data=data, target="target")
    deployments: Deployments = world["deployments"]
    deployments.set_members("api", [Member("broken", 1, "split", 40.0), Member("cancer", 2, "shadow")])
    deployments.set_guard("api", GuardPolicy(min_requests=20))
    removed: list[tuple[str, Member, str]] = []
    server = ModelServer(
        deployments.store, registry, refresh_seconds=60, sinks=[world["sink"]], on_guard=lambda *a: removed.append(a)
    )
    x = world["x"]

    async def scenario() -> list[Any]:
        await server.start()
        monkeypatch.setattr(faulty_models, "ARMED", True)
        try:
            answered = [await server.predict("api", x.iloc[[i]], routing_key=f"c{i}") for i in range(120)]
            assert await server.guard() != []
            await server.refresh()
            answered += [await server.predict("api", x.iloc[[i]], routing_key=f"c{i}") for i in range(40)]
            return answered
        finally:
            await server.stop()

    answered = run(scenario())
    assert all(r.version == 1 and r.model == "cancer" for r in answered)  # no client saw an error
    [(name, member, reason)] = removed
    assert (name, member.model, member.role) == ("api", "broken", "split") and "error rate 100.0%" in reason
    assert [m.key for m in deployments.get("api").members] == [("cancer", 2)]  # the shadow stays


def test_guard_rules_judge_error_rates_and_latency() -> None:
    policy = GuardPolicy(min_requests=10, max_error_rate_increase=0.05, max_latency_ratio=3.0, min_latency_ms=10)
    champion, member = MemberStats(), MemberStats()
    for _ in range(100):
        champion.record(0.002)
    for i in range(9):
        member.record(None if i % 2 else 0.002)
    assert judge(policy, member, champion) is None  # too few requests yet
    member.record(None)
    assert "error rate 50.0%" in (judge(policy, member, champion) or "")
    slow = MemberStats()
    for _ in range(20):
        slow.record(0.005)
    assert judge(policy, slow, champion) is None  # 2.5x, and under 10 ms: noise
    for _ in range(20):
        slow.record(0.2)
    assert "p99 latency" in (judge(policy, slow, champion) or "")
    with pytest.raises(ConfigurationError, match="max_latency_ratio"):
        GuardPolicy(max_latency_ratio=0.5)


def test_a_full_shadow_queue_drops_and_counts_instead_of_waiting() -> None:
    from corral.serving.shadows import ShadowJob, ShadowRunner

    async def scenario() -> tuple[list[bool], MemberStats]:
        gate = asyncio.Event()
        scored: list[int] = []

        async def score(jobs: list[ShadowJob]) -> None:
            await gate.wait()  # a shadow stuck on its first job
            scored.append(len(jobs))

        stats = MemberStats()
        runner = ShadowRunner("stuck", score, stats, capacity=2, max_wait=0)
        job = ShadowJob([{"x": 1}], ["p"], None, None)
        offered = [runner.offer(job)]
        await asyncio.sleep(0)  # the worker takes the first job and blocks
        offered += [runner.offer(job) for _ in range(4)]
        gate.set()
        await runner.drain()
        await runner.close()
        assert scored == [1, 2]  # the two queued copies were scored together, in one call
        return offered, stats

    offered, stats = run(scenario())
    assert offered == [True, True, True, False, False] and stats.dropped == 2


def test_a_shadow_waits_for_more_copies_and_scores_them_in_one_call() -> None:
    """Copies arriving one at a time (a client at concurrency 1) share one model call once the shadow has
    waited ``max_wait`` after the first; a shadow closed while it waits counts the copies it held as dropped."""
    from corral.serving.shadows import ShadowJob, ShadowRunner

    async def scenario() -> tuple[list[int], list[int], MemberStats]:
        scored: list[int] = []

        async def score(jobs: list[ShadowJob]) -> None:
            scored.append(sum(len(j.prediction_ids) for j in jobs))

        runner = ShadowRunner("lingers", score, MemberStats(), max_wait=0.2, max_rows=8)
        for i in range(5):  # five requests 10 ms apart, well within the wait
            assert runner.offer(ShadowJob([{"x": i}], [f"p{i}"], None, None))
            await asyncio.sleep(0.01)
        await runner.drain()
        for i in range(10):  # ten at once: the first call stops at max_rows, the rest make the next
            runner.offer(ShadowJob([{"x": i}], [f"q{i}"], None, None))
        await runner.drain()
        await runner.close()

        dropped: list[int] = []
        closing = ShadowRunner("closing", score, MemberStats(), max_wait=5, on_drop=dropped.append)
        closing.offer(ShadowJob([{"x": 1}], ["r"], None, None))
        closing.offer(ShadowJob([{"x": 2}], ["s"], None, None))
        await asyncio.sleep(0.01)  # the first is taken and waited on, the second queued
        await closing.close()
        return scored, dropped, closing.stats

    scored, dropped, stats = run(scenario())
    assert scored == [5, 8, 2]
    assert dropped == [2] and stats.dropped == 2
