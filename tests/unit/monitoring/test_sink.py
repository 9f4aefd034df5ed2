from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from corral.errors import SchemaError
from corral.monitoring.aggregator import DeploymentWindow
from corral.monitoring.sink import MonitoringSink
from corral.registry.service import Registry
from corral.serving.deployments import Deployments
from corral.serving.server import ModelServer
from corral.storage.artifacts import FsspecArtifactStore
from corral.storage.memory import MemoryDeploymentStore, MemoryMonitoringStore, MemoryRegistryStore

COLUMNS = ["mean radius", "mean texture"]


class FlakyStore(MemoryMonitoringStore):
    """Refuses the first write, as a briefly unreachable database would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def add_windows(self, windows: Sequence[DeploymentWindow]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database is restarting")
        super().add_windows(windows)


@pytest.fixture
def setup(tmp_path: Path, cancer: pd.DataFrame) -> dict[str, Any]:
    store = MemoryRegistryStore()
    registry = Registry(store, FsspecArtifactStore(str(tmp_path / "a")), actor="t")
    data = cancer[[*COLUMNS, "target"]]
    registry.log_model(
        LogisticRegression(max_iter=1000).fit(data[COLUMNS], data["target"]),
        name="cancer",
        training_data=data,
        target="target",
    )
    registry.promote("cancer", 1)
    deployments = Deployments(MemoryDeploymentStore(store), actor="t")
    deployments.create("api", model="cancer")

    def describe(model: str, version: int) -> Any:
        return registry.get_profile(model, version), registry.get_version(model, version).signature.outputs.classes

    return {"registry": registry, "deployments": deployments, "describe": describe, "x": data[COLUMNS]}


def serve(setup: dict[str, Any], sink: MonitoringSink, batches: list[pd.DataFrame]) -> None:
    server = ModelServer(setup["deployments"].store, setup["registry"], refresh_seconds=60, sinks=[sink])

    async def scenario() -> None:
        await server.start()
        try:
            for batch in batches:
                await server.predict("api", batch)
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_served_rows_reach_the_store_as_windows(setup: dict[str, Any]) -> None:
    store = MemoryMonitoringStore()
    sink = MonitoringSink(store, setup["describe"], lengths=[3600, 86400])
    x = setup["x"]
    serve(setup, sink, [x.iloc[i : i + 10] for i in range(0, 100, 10)])
    assert sink.process() == 100
    assert sink.flush() == 2  # one hour window, one day window
    hour = store.get_windows("api", length=3600)
    assert len(hour) == 1 and hour[0].rows == 100
    radius = hour[0].features["mean radius"]
    assert radius.count == 100 and radius.missing == 0
    assert sum(hour[0].outputs["prediction"].categories().values()) == 100
    assert store.get_windows("api", length=86400)[0].rows == 100


def test_a_failed_flush_keeps_the_windows_for_the_next_one(setup: dict[str, Any]) -> None:
    store = FlakyStore()
    sink = MonitoringSink(store, setup["describe"], lengths=[3600])
    serve(setup, sink, [setup["x"].head(30)])
    sink.process()
    with pytest.raises(ConnectionError):
        sink.flush()
    serve(setup, sink, [setup["x"].iloc[30:50]])
    sink.process()
    sink.flush()
    assert store.get_windows("api", length=3600)[0].rows == 50  # nothing lost, nothing counted twice


def test_a_full_buffer_drops_and_counts_instead_of_slowing_serving(setup: dict[str, Any]) -> None:
    sink = MonitoringSink(MemoryMonitoringStore(), setup["describe"], lengths=[3600], max_buffer=25)
    serve(setup, sink, [setup["x"].iloc[i : i + 10] for i in range(0, 40, 10)])
    assert sink.dropped == 20 and sink.process() == 20


def test_versions_without_a_profile_are_skipped(setup: dict[str, Any]) -> None:
    store = MemoryMonitoringStore()
    sink = MonitoringSink(store, lambda model, version: (None, None), lengths=[3600])
    serve(setup, sink, [setup["x"].head(5)])
    sink.process()
    assert sink.flush() == 0 and store.get_windows("api", length=3600) == []


def test_windows_past_the_retention_period_are_deleted(setup: dict[str, Any]) -> None:
    import time

    from corral.monitoring.aggregator import Aggregator

    store = MemoryMonitoringStore()
    profile, _ = setup["describe"]("cancer", 1)
    ten_hours_ago = Aggregator((3600,), clock=lambda: time.time() - 10 * 3600)
    ten_hours_ago.track("api", "cancer", 1, profile)
    ten_hours_ago.update("api", "cancer", 1, setup["x"].head(3))
    store.add_windows(ten_hours_ago.drain())
    sink = MonitoringSink(store, setup["describe"], lengths=[3600], retention_seconds=2 * 3600)
    serve(setup, sink, [setup["x"].head(5)])
    sink.process()
    sink.flush()
    windows = store.get_windows("api", length=3600)
    assert [w.rows for w in windows] == [5]  # the ten-hour-old window is gone, today's is kept


def test_requests_refused_for_a_feature_count_as_its_type_violations(setup: dict[str, Any]) -> None:
    store = MemoryMonitoringStore()
    sink = MonitoringSink(store, setup["describe"], lengths=(3600,))
    server = ModelServer(setup["deployments"].store, setup["registry"], refresh_seconds=60, sinks=[sink])
    bad = setup["x"].head(3).astype(object)
    bad.loc[bad.index[1], "mean texture"] = "seventeen"

    async def scenario() -> None:
        await server.start()
        try:
            await server.predict("api", setup["x"].head(5))
            with pytest.raises(SchemaError, match="mean texture") as refused:
                await server.predict("api", bad)
            assert refused.value.field == "mean texture"
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    sink.process()
    sink.flush()
    [window] = store.get_windows("api", length=3600)
    assert window.features["mean texture"].invalid == 3 and window.features["mean radius"].invalid == 0
    assert window.rows == 5  # the refused rows never reached the model or the value counts
