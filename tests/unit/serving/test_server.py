from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.core.events import PredictionEvent
from corral.errors import (
    DeploymentNotFoundError,
    LimitExceededError,
    NotReadyError,
    SchemaError,
    VersionNotFoundError,
)
from corral.registry.service import Registry
from corral.serving.deployments import Deployments
from corral.serving.entities import BatchingPolicy
from corral.serving.server import ModelServer
from corral.storage.artifacts import FsspecArtifactStore
from corral.storage.memory import MemoryDeploymentStore, MemoryRegistryStore

COLUMNS = ["mean radius", "mean texture"]


class Sink:
    def __init__(self) -> None:
        self.events: list[PredictionEvent] = []

    async def submit(self, events: Sequence[PredictionEvent]) -> None:
        self.events.extend(events)


@pytest.fixture
def world(tmp_path: Path, cancer: pd.DataFrame) -> dict[str, Any]:
    store = MemoryRegistryStore()
    registry = Registry(store, FsspecArtifactStore(str(tmp_path / "a")), actor="t")
    data = cancer[[*COLUMNS, "target"]]
    models = []
    for c in (1e-4, 10.0):  # two versions that disagree on some rows
        model = LogisticRegression(C=c, max_iter=2000).fit(data[COLUMNS], data["target"])
        registry.log_model(model, name="cancer", training_data=data, target="target")
        models.append(model)
    registry.promote("cancer", 1)
    deployments = Deployments(MemoryDeploymentStore(store), actor="t")
    deployments.create("api", model="cancer")
    sink = Sink()
    server = ModelServer(deployments.store, registry, refresh_seconds=60, max_rows=500, sinks=[sink])
    return {
        "registry": registry,
        "deployments": deployments,
        "server": server,
        "models": models,
        "x": data[COLUMNS],
        "sink": sink,
        "tmp": tmp_path,
    }


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_predict_answers_with_ids_version_and_records_events(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    x = world["x"]

    async def scenario() -> Any:
        await server.start()
        try:
            return await server.predict("api", x.head(3), request_id="req-1")
        finally:
            await server.stop()

    result = run(scenario())
    assert (result.deployment, result.model, result.version) == ("api", "cancer", 1)
    np.testing.assert_array_equal(result.prediction.values, world["models"][0].predict(x.head(3)))
    np.testing.assert_allclose(result.prediction.probabilities, world["models"][0].predict_proba(x.head(3)))
    assert len(set(result.prediction_ids)) == 3
    events = world["sink"].events
    assert [e.prediction_id for e in events] == result.prediction_ids
    assert events[0].request_id == "req-1" and events[0].version == 1 and set(events[0].inputs) == set(COLUMNS)
    assert events[0].probabilities is not None and len(events[0].probabilities) == 2
    assert result.anomaly_scores is not None and len(result.anomaly_scores) == 3
    assert [e.anomaly_score for e in events] == pytest.approx(list(result.anomaly_scores))
    assert not any(e.anomaly_flagged for e in events)


def test_unknown_bad_and_oversized_requests(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]

    async def scenario() -> None:
        await server.start()
        try:
            with pytest.raises(DeploymentNotFoundError, match="no deployment named 'nope'"):
                await server.predict("nope", world["x"].head(1))
            with pytest.raises(SchemaError, match="missing columns: mean texture"):
                await server.predict("api", world["x"][["mean radius"]].head(1))
            with pytest.raises(LimitExceededError, match="501 rows is over this server's limit of 500"):
                await server.predict("api", pd.concat([world["x"]] * 2).head(501))
            with pytest.raises(LimitExceededError, match="no rows"):
                await server.predict("api", world["x"].head(0))
        finally:
            await server.stop()

    run(scenario())
    assert world["sink"].events == []


def test_promote_swaps_after_refresh_and_in_flight_requests_finish(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    x = world["x"]

    async def scenario() -> tuple[list[int], list[int]]:
        await server.start()
        try:
            before = [asyncio.create_task(server.predict("api", x.iloc[[i]])) for i in range(50)]
            world["registry"].promote("cancer", 2)
            await server.refresh()
            after = [asyncio.create_task(server.predict("api", x.iloc[[i]])) for i in range(50)]
            return [r.version for r in await asyncio.gather(*before)], [r.version for r in await asyncio.gather(*after)]
        finally:
            await server.stop()

    before, after = run(scenario())
    assert set(before) <= {1, 2} and set(after) == {2}


def test_a_version_that_fails_to_load_never_takes_traffic(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    registry: Registry = world["registry"]
    broken = registry.get_version("cancer", 2)
    blob = next((world["tmp"] / "a").rglob(broken.artifact_sha256))
    blob.write_bytes(b"corrupted")

    async def scenario() -> Any:
        await server.start()
        try:
            registry.promote("cancer", 2)
            await server.refresh()
            await server.refresh()  # a failed version is not retried until the alias moves again
            status = server.deployment_status("api")
            result = await server.predict("api", world["x"].head(1))
            return status, result
        finally:
            await server.stop()

    status, result = run(scenario())
    assert result.version == 1
    assert status.state == "READY" and status.version == 1
    assert "cancer/2 failed to load" in status.reason and "corrupt" in status.reason


def test_not_ready_until_the_alias_exists_and_after_disable(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    world["deployments"].create("shadowy", model="cancer", alias="challenger")

    async def scenario() -> None:
        await server.start()
        try:
            with pytest.raises(
                NotReadyError, match="deployment 'shadowy' is not ready: cancer@challenger does not resolve"
            ):
                await server.predict("shadowy", world["x"].head(1))
            world["registry"].set_alias("cancer", "challenger", 2)
            await server.refresh()
            assert (await server.predict("shadowy", world["x"].head(1))).version == 2
            await server.set_enabled("shadowy", False)
            with pytest.raises(NotReadyError, match="disabled"):
                await server.predict("shadowy", world["x"].head(1))
            await server.set_enabled("shadowy", True)
            assert server.ready("shadowy")
            world["deployments"].delete("shadowy")
            await server.refresh()
            with pytest.raises(DeploymentNotFoundError):
                await server.predict("shadowy", world["x"].head(1))
        finally:
            await server.stop()

    run(scenario())


def test_pinned_versions_and_batching_changes(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    x = world["x"]

    async def scenario() -> None:
        await server.start()
        try:
            world["registry"].promote("cancer", 2)
            await server.refresh()
            old = await server.predict("api", x.head(5), version=1)
            assert old.version == 1
            np.testing.assert_array_equal(old.prediction.values, world["models"][0].predict(x.head(5)))
            with pytest.raises(VersionNotFoundError, match="serves model 'cancer', which has no version 9"):
                await server.predict("api", x.head(1), version=9)
            world["deployments"].update("api", batching=BatchingPolicy(enabled=False))
            await server.refresh()
            results = await asyncio.gather(*(server.predict("api", x.iloc[[i]]) for i in range(20)))
            assert {r.batch_size for r in results} == {1} and {r.version for r in results} == {2}
        finally:
            await server.stop()

    run(scenario())


def test_out_of_range_rows_are_served_and_flagged(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    rows = [{"mean radius": 100.0, "mean texture": 20.0}, {"mean radius": 14.0, "mean texture": 20.0}]

    async def scenario() -> Any:
        await server.start()
        try:
            return await server.predict("api", rows)
        finally:
            await server.stop()

    result = run(scenario())
    assert result.out_of_range == [("mean radius",), ()]
    assert world["sink"].events[0].out_of_range == ("mean radius",)


def test_a_request_held_across_a_swap_is_answered_by_the_version_it_took(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from corral.core.schema import Signature

    server: ModelServer = world["server"]
    entered, release = threading.Event(), threading.Event()
    original = Signature.validate

    def slow_validate(self: Signature, data: Any, **kw: Any) -> pd.DataFrame:
        if len(data) > 256:  # big requests are validated off the event loop: hold this one there
            entered.set()
            assert release.wait(10)
        return original(self, data, **kw)

    monkeypatch.setattr(Signature, "validate", slow_validate)
    big = pd.concat([world["x"]] * 2).head(400)

    async def scenario() -> tuple[Any, Any]:
        await server.start()
        try:
            held = asyncio.create_task(server.predict("api", big))
            await asyncio.to_thread(entered.wait, 10)
            world["registry"].promote("cancer", 2)
            await server.refresh()  # swaps to version 2 while the request still holds version 1
            after = await server.predict("api", world["x"].head(1))
            release.set()
            return await held, after
        finally:
            release.set()
            await server.stop()

    held, after = run(scenario())
    assert held.version == 1 and after.version == 2
    np.testing.assert_array_equal(held.prediction.values, world["models"][0].predict(big))
