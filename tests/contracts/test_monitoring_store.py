"""The MonitoringStore contract, for every implementation (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

from corral.core.profile import Profile, profile_column
from corral.core.schema import FeatureKind
from corral.monitoring.aggregator import (
    Aggregator,
    DeploymentWindow,
    WindowKey,
    WindowLayout,
    merge,
    merge_all,
    output_columns,
)
from corral.monitoring.ports import MonitoringStore
from corral.registry.ports import RegistryStore
from corral.storage.memory import MemoryMonitoringStore, MemoryRegistryStore
from corral.storage.sql.engine import create_engine
from corral.storage.sql.monitoring_store import SqlMonitoringStore
from corral.storage.sql.registry_store import SqlRegistryStore

HOUR, DAY = 3600, 86400
T0 = 1_777_593_600  # 2026-05-01 00:00 UTC, a multiple of a day
RNG = np.random.default_rng(11)
TRAIN = pd.DataFrame(
    {
        "x": RNG.normal(size=200),
        "c": RNG.choice(["a", "b"], size=200),
        "flag": RNG.choice([True, False], size=200),
    }
)
PROFILE = Profile(
    200,
    {
        "x": profile_column("x", TRAIN["x"], FeatureKind.NUMERICAL, bins=6),
        "c": profile_column("c", TRAIN["c"], FeatureKind.CATEGORICAL),
        "flag": profile_column("flag", TRAIN["flag"], FeatureKind.BOOLEAN),
    },
    {"prediction": profile_column("prediction", pd.Series([0, 1, 1, 0]), FeatureKind.CATEGORICAL)},
)
LAYOUT = WindowLayout.from_profile(PROFILE)


@pytest.fixture
def make_store(registry_store: RegistryStore) -> Iterator[Callable[[], MonitoringStore]]:
    """``make_store()``: a monitoring store on the registry store's database (a new engine each call for SQL)."""
    if isinstance(registry_store, MemoryRegistryStore):
        memory = MemoryMonitoringStore()
        yield lambda: memory
        return
    assert isinstance(registry_store, SqlRegistryStore)
    opened: list[SqlMonitoringStore] = []

    def make() -> MonitoringStore:
        store = SqlMonitoringStore(create_engine(registry_store.engine.url.render_as_string(hide_password=False)))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(registry_store: RegistryStore) -> MonitoringStore:
    if isinstance(registry_store, MemoryRegistryStore):
        return MemoryMonitoringStore()
    assert isinstance(registry_store, SqlRegistryStore)
    return SqlMonitoringStore(registry_store.engine)


def frame(rows: int, *, c: str = "a") -> pd.DataFrame:
    values = RNG.normal(size=rows)
    values[0] = np.nan
    return pd.DataFrame({"x": values, "c": [c] * (rows - 1) + ["unseen"], "flag": [True] * rows})


def window(
    rows: int = 10,
    *,
    deployment: str = "fraud-api",
    model: str = "fraud",
    version: int = 1,
    length: int = HOUR,
    start: int = T0,
) -> DeploymentWindow:
    out = DeploymentWindow(WindowKey(deployment, model, version, length, start), LAYOUT)
    out.update(frame(rows), output_columns(np.array([0, 1] * (rows // 2) + [1] * (rows % 2))))
    return out


def counts(w: DeploymentWindow) -> dict[str, int]:
    return {name: fw.count + fw.missing for name, fw in {**w.features, **w.outputs}.items()}


def test_add_then_get_round_trips_every_field(store: MonitoringStore) -> None:
    aggregator = Aggregator((HOUR, DAY), clock=lambda: T0 + 90)
    aggregator.track("fraud-api", "fraud", 3, PROFILE)
    aggregator.update("fraud-api", "fraud", 3, frame(25, c="b"), output_columns(np.array([1] * 25)))
    drained = aggregator.drain()
    store.add_windows(drained)

    for length in (HOUR, DAY):
        [got] = store.get_windows("fraud-api", length=length)
        [sent] = [w for w in drained if w.key.length == length]
        assert got == sent and got.to_dict() == sent.to_dict()
        assert got.key == WindowKey("fraud-api", "fraud", 3, length, T0) and got.rows == 25
        assert got.features["c"].unseen == sent.features["c"].unseen and got.features["x"].missing == 1
        assert got.layout == sent.layout and got.max_unseen == sent.max_unseen


def test_merge_on_write_equals_merge_of_the_parts(store: MonitoringStore) -> None:
    parts = [window(7), window(12), window(3)]
    store.add_windows(parts[:1])
    store.add_windows(parts[1:])

    [got] = store.get_windows("fraud-api", length=HOUR)
    expected = merge(merge(parts[0], parts[1]), parts[2])
    assert got.rows == 22 and counts(got) == counts(expected)
    assert got.features["x"].hist.tolist() == expected.features["x"].hist.tolist()
    assert got.features["x"].mean == pytest.approx(expected.features["x"].mean, rel=1e-12)
    assert got.features["x"].m2 == pytest.approx(expected.features["x"].m2, rel=1e-12)
    assert got.features["c"].known.tolist() == expected.features["c"].known.tolist()


def test_one_call_may_hold_the_same_key_twice(store: MonitoringStore) -> None:
    a, b = window(4), window(6)
    store.add_windows([a, b])
    [got] = store.get_windows("fraud-api", length=HOUR)
    assert counts(got) == counts(merge_all([a, b])[a.key])


def test_a_failed_flush_writes_nothing(store: MonitoringStore) -> None:
    store.add_windows([window(5)])
    other_layout = WindowLayout(LAYOUT.features[:1])  # the same key with other columns cannot merge
    bad = DeploymentWindow(WindowKey("fraud-api", "fraud", 1, HOUR, T0), other_layout)
    fresh = window(5, start=T0 + HOUR)
    with pytest.raises(ValueError, match="columns differ"):
        store.add_windows([fresh, bad])
    [got] = store.get_windows("fraud-api", length=HOUR)
    assert got.key.start == T0 and got.rows == 5


def test_get_windows_filters_and_orders(store: MonitoringStore) -> None:
    store.add_windows(
        [
            window(start=T0 + 2 * HOUR),
            window(start=T0),
            window(start=T0 + HOUR, version=2),
            window(start=T0 + HOUR),
            window(start=T0 + HOUR, model="other"),
            window(start=T0, length=DAY),
            window(start=T0, deployment="elsewhere"),
        ]
    )

    def keys(**filters: object) -> list[tuple[str, int, int]]:
        found = store.get_windows("fraud-api", **filters)  # type: ignore[arg-type]
        return [(w.key.model, w.key.version, w.key.start - T0) for w in found]

    assert keys(length=HOUR) == [
        ("fraud", 1, 0),
        ("fraud", 1, HOUR),
        ("fraud", 2, HOUR),
        ("other", 1, HOUR),
        ("fraud", 1, 2 * HOUR),
    ]
    assert keys(length=DAY) == [("fraud", 1, 0)]
    assert keys(length=HOUR, since=T0 + HOUR) == [
        ("fraud", 1, HOUR),
        ("fraud", 2, HOUR),
        ("other", 1, HOUR),
        ("fraud", 1, 2 * HOUR),
    ]
    assert keys(length=HOUR, model="fraud", version=1) == [("fraud", 1, 0), ("fraud", 1, HOUR), ("fraud", 1, 2 * HOUR)]
    assert keys(length=HOUR, version=2) == [("fraud", 2, HOUR)]
    assert keys(length=HOUR, model="other") == [("other", 1, HOUR)]
    assert store.get_windows("nobody", length=HOUR) == []


def test_delete_before(store: MonitoringStore) -> None:
    store.add_windows(
        [window(start=T0), window(start=T0 + HOUR), window(start=T0, length=DAY), window(start=T0 + 2 * HOUR)]
    )
    assert store.delete_before(T0 + HOUR) == 2
    assert [w.key.start - T0 for w in store.get_windows("fraud-api", length=HOUR)] == [HOUR, 2 * HOUR]
    assert store.get_windows("fraud-api", length=DAY) == []
    assert store.delete_before(T0) == 0
    store.add_windows([])  # nothing to do


def test_concurrent_flushes_of_one_key_all_count(make_store: Callable[[], MonitoringStore]) -> None:
    rounds, rows = 15, 4
    stores = [make_store(), make_store()]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def flush(store: MonitoringStore) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                store.add_windows([window(rows), window(1, start=T0 + (i % 3) * HOUR)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=flush, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    got = {w.key.start - T0: w for w in stores[0].get_windows("fraud-api", length=HOUR)}
    assert sorted(got) == [0, HOUR, 2 * HOUR]
    assert got[0].rows == len(stores) * rounds * rows + len(stores) * 5  # rounds 0, 3, 6, 9, 12 also land at T0
    assert got[HOUR].rows == got[2 * HOUR].rows == len(stores) * 5
    assert got[0].features["flag"].count == got[0].rows


def test_configs_are_stored_per_deployment_and_removable(store: MonitoringStore) -> None:
    assert store.get_config("fraud-api") is None
    config = {"detectors": {"numerical": ["ks"]}, "thresholds": {"ks": 0.01}, "quality": {"min_rows": 50}}
    store.set_config("fraud-api", config)
    store.set_config("other", {"thresholds": {}})
    assert store.get_config("fraud-api") == config
    store.set_config("fraud-api", {"thresholds": {"psi": 0.3}})
    assert store.get_config("fraud-api") == {"thresholds": {"psi": 0.3}}
    store.set_config("fraud-api", None)
    assert store.get_config("fraud-api") is None and store.get_config("other") == {"thresholds": {}}
