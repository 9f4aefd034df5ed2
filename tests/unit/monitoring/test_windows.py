from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.profile import FeatureProfile, Profile, histogram, profile_column
from corral.core.schema import FeatureKind
from corral.monitoring.aggregator import (
    Aggregator,
    DeploymentWindow,
    WindowKey,
    WindowLayout,
    merge,
    merge_all,
    output_columns,
    window_start,
)
from corral.monitoring.windows import DAY, HOUR, FeatureLayout, FeatureWindow

RNG = np.random.default_rng(7)
TRAIN = pd.DataFrame(
    {
        "x": RNG.normal(size=400),
        "y": RNG.uniform(10, 20, size=400),
        "c": RNG.choice(["a", "b", "c"], size=400),
        "flag": RNG.choice([True, False], size=400),
    }
)


def _profile() -> Profile:
    features = {
        "x": profile_column("x", TRAIN["x"], FeatureKind.NUMERICAL, bins=8),
        "y": profile_column("y", TRAIN["y"], FeatureKind.NUMERICAL, bins=5),
        "c": profile_column("c", TRAIN["c"], FeatureKind.CATEGORICAL),
        "flag": profile_column("flag", TRAIN["flag"], FeatureKind.BOOLEAN),
    }
    outputs = {
        "prediction": profile_column("prediction", pd.Series([0, 1, 1, 0]), FeatureKind.CATEGORICAL),
        "proba_1": profile_column("proba_1", pd.Series(RNG.random(50)), FeatureKind.NUMERICAL, bins=4),
    }
    return Profile(400, features, outputs)


PROFILE = _profile()
LAYOUT = WindowLayout.from_profile(PROFILE)


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Window dicts equal: every count exactly, mean and m2 to 1e-9 relative."""
    assert a.keys() == b.keys()
    for key, value in a.items():
        if key in ("mean", "m2"):
            assert math.isclose(value, b[key], rel_tol=1e-9, abs_tol=1e-9), (key, value, b[key])
        elif isinstance(value, dict):
            _assert_same(value, b[key])
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            assert len(value) == len(b[key])
            for x, y in zip(value, b[key], strict=True):
                _assert_same(x, y)
        else:
            assert value == b[key], (key, value, b[key])


# -- one feature -------------------------------------------------------------------------------


def test_numerical_feature_matches_numpy_and_the_reference_histogram() -> None:
    window = FeatureWindow.from_profile(PROFILE.features["x"])
    values = np.concatenate([RNG.normal(scale=2, size=500), [np.nan] * 7, [np.inf]])
    window.update(values[:200])
    window.update(pd.Series(values[200:]))
    finite = values[np.isfinite(values)]
    assert (window.count, window.missing) == (finite.size, 8)
    assert window.min == finite.min() and window.max == finite.max()
    assert math.isclose(window.mean, finite.mean(), rel_tol=1e-12)
    assert math.isclose(window.variance, finite.var(ddof=1), rel_tol=1e-12)
    assert window.hist.tolist() == histogram(finite, PROFILE.features["x"].bin_edges).tolist()
    prof = PROFILE.features["x"]
    assert window.below == int((finite < prof.min).sum()) and window.above == int((finite > prof.max).sum())
    assert window.out_of_range_rate == pytest.approx(window.out_of_range / finite.size)
    assert window.missing_rate == pytest.approx(8 / values.size)


def test_values_on_edges_fall_right_closed_like_the_training_bins() -> None:
    edges = PROFILE.features["y"].bin_edges
    window = FeatureWindow.from_profile(PROFILE.features["y"])
    window.update(np.array(edges))
    assert window.hist.tolist() == histogram(np.array(edges), edges).tolist()
    assert window.below == window.above == 0  # the training min and max are in range


def test_all_missing_feature() -> None:
    window = FeatureWindow.from_profile(PROFILE.features["x"])
    window.update([None, None, float("nan")])
    assert (window.count, window.missing, window.min, window.max) == (0, 3, None, None)
    assert window.mean == 0.0 and window.variance == 0.0 and window.hist.sum() == 0
    assert window.missing_rate == 1.0 and window.out_of_range_rate == 0.0
    cat = FeatureWindow.from_profile(PROFILE.features["c"])
    cat.update(pd.Series([None, np.nan, None], dtype=object))
    assert (cat.count, cat.missing, cat.unseen_total) == (0, 3, 0)
    assert FeatureWindow.from_dict(json.loads(json.dumps(window.to_dict()))) == window


def test_reference_that_was_all_missing_gets_one_open_bin() -> None:
    empty = profile_column("e", pd.Series([np.nan, np.nan]), FeatureKind.NUMERICAL)
    window = FeatureWindow.from_profile(empty)
    window.update([1.0, None, -5.0])
    assert window.hist.tolist() == [2] and (window.count, window.missing) == (2, 1)
    assert window.out_of_range == 0  # no training range to leave


def test_categorical_known_unseen_and_missing() -> None:
    window = FeatureWindow.from_profile(PROFILE.features["c"])
    window.update(pd.Series(["a", "a", None, "zz", "b", np.nan, "zz", "q"], dtype=object))
    assert window.categories() == {"a": 2, "b": 1, "c": 0}
    assert window.unseen == {"zz": 2, "q": 1} and window.overflow == 0
    assert (window.count, window.missing, window.unseen_total) == (6, 2, 3)
    assert window.unseen_rate == pytest.approx(0.5)


def test_booleans_and_numbers_are_named_as_the_profile_names_them() -> None:
    flag = FeatureWindow.from_profile(PROFILE.features["flag"])
    flag.update(pd.Series([True, None, False, True], dtype=object))
    flag.update(pd.Series([True, False]))
    assert flag.categories() == {"True": 3, "False": 2} and flag.missing == 1 and not flag.unseen
    labels = FeatureWindow.from_profile(PROFILE.outputs["prediction"])
    labels.update(np.array([0, 1, 1, 2, 2, 2]))
    labels.update(pd.Series([1, "1", 3], dtype=object))  # 1 and "1" are one category
    assert labels.categories() == {"0": 1, "1": 4} and labels.unseen == {"2": 3, "3": 1}


def test_unseen_category_cap_keeps_the_most_frequent_and_an_exact_total() -> None:
    window = FeatureWindow.from_profile(PROFILE.features["c"], max_unseen=3)
    window.update(["u1"] * 5 + ["u2"] * 4 + ["u3"] * 3 + ["u4"] * 2 + ["a"])
    assert window.unseen == {"u1": 5, "u2": 4, "u3": 3} and window.overflow == 2
    window.update(["u9"] * 10 + ["u1"])
    assert window.unseen == {"u9": 10, "u1": 6, "u2": 4} and window.overflow == 5
    assert window.unseen_total == 25 and window.categories()["a"] == 1
    zero = FeatureWindow.from_profile(PROFILE.features["c"], max_unseen=0)
    zero.update(["x", "y", "a"])
    assert zero.unseen == {} and zero.overflow == 2


def test_merge_below_the_cap_is_exact_and_above_it_keeps_totals() -> None:
    a = FeatureWindow.from_profile(PROFILE.features["c"], max_unseen=2)
    b = FeatureWindow.from_profile(PROFILE.features["c"], max_unseen=2)
    a.update(["p", "p", "a"])
    b.update(["p", "q", "b"])
    assert a.merge(b).unseen == {"p": 3, "q": 1} == b.merge(a).unseen
    c = FeatureWindow.from_profile(PROFILE.features["c"], max_unseen=2)
    c.update(["r", "r", "s"])
    for merged in (a.merge(b).merge(c), a.merge(b.merge(c)), c.merge(a).merge(b)):
        assert merged.unseen_total == 7 and len(merged.unseen) <= 2
        assert merged.count == 9 and merged.categories() == {"a": 1, "b": 1, "c": 0}


def test_memory_is_bounded_by_the_cap_after_a_million_distinct_values() -> None:
    window = FeatureWindow.from_profile(PROFILE.features["c"], max_unseen=50)
    for start in range(0, 1_000_000, 100_000):
        window.update(pd.Series(np.arange(start, start + 100_000)))
        assert len(window.unseen) <= 50
    assert window.unseen_total == 1_000_000 and window.count == 1_000_000
    assert len(json.dumps(window.to_dict())) < 5_000


def test_merging_different_layouts_is_refused() -> None:
    a = FeatureWindow.from_profile(PROFILE.features["x"])
    b = FeatureWindow.from_profile(PROFILE.features["y"])
    with pytest.raises(ValueError, match="layouts differ"):
        a.merge(b)


def test_layout_round_trip() -> None:
    for prof in [*PROFILE.features.values(), *PROFILE.outputs.values()]:
        layout = FeatureLayout.from_profile(prof)
        assert FeatureLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout


# -- values rejected for their type -------------------------------------------------------------


def test_invalid_values_merge_by_addition_and_survive_json() -> None:
    a = FeatureWindow.from_profile(PROFILE.features["x"])
    b = FeatureWindow.from_profile(PROFILE.features["x"])
    a.update([1.0, 2.0, None])
    a.add_invalid(2)
    b.add_invalid()
    b.add_invalid(np.int64(4))
    merged = a.merge(b)
    assert (merged.invalid, merged.count, merged.missing, merged.total) == (7, 2, 1, 3)
    assert (
        merged.invalid_rate == pytest.approx(7 / 10)
        and FeatureWindow.from_profile(PROFILE.features["x"]).invalid_rate == 0
    )
    assert b.merge(a) == merged and a.invalid == 2  # merge changes neither side
    back = FeatureWindow.from_dict(json.loads(json.dumps(merged.to_dict())))
    assert back == merged and back.invalid == 7
    one_more = merged.copy()
    one_more.add_invalid()
    assert one_more != merged  # equality sees invalid
    cat = FeatureWindow.from_profile(PROFILE.features["c"])
    cat.add_invalid(3)
    assert FeatureWindow.from_dict(cat.to_dict()).invalid == 3 and cat.copy().invalid == 3
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="'x'"):
            a.add_invalid(bad)  # type: ignore[arg-type]


def _without_invalid(data: Any) -> Any:
    """A window dict as the code before ``invalid`` wrote it."""
    if isinstance(data, dict):
        return {k: _without_invalid(v) for k, v in data.items() if k != "invalid"}
    if isinstance(data, list):
        return [_without_invalid(v) for v in data]
    return data


def test_windows_stored_before_invalid_existed_still_load_and_merge() -> None:
    window = DeploymentWindow(WindowKey("d", "m", 1, HOUR, 0), LAYOUT)
    window.update(_frame(20, RNG), {"prediction": RNG.integers(0, 3, 20), "proba_1": RNG.random(20)})
    old = _without_invalid(json.loads(json.dumps(window.to_dict())))
    assert "invalid" not in json.dumps(old)
    stored = DeploymentWindow.from_dict(old)
    assert stored == window and all(w.invalid == 0 for w in stored.features.values())
    fresh = DeploymentWindow(WindowKey("d", "m", 1, HOUR, 0), LAYOUT)
    assert fresh.reject("y", 5) and not fresh.reject("nope", 5) and not fresh.reject("prediction")
    merged = DeploymentWindow.from_dict(old).merge(fresh)  # what the store does on write
    assert merged.features["y"].invalid == 5 and merged.rows == 20
    assert DeploymentWindow.from_dict(json.loads(json.dumps(merged.to_dict()))) == merged


def test_aggregator_reject_counts_in_every_length_and_ignores_the_unknown() -> None:
    agg = Aggregator((HOUR, DAY), clock=lambda: 7200.0)
    assert not agg.reject("dep", "m", 1, "x")  # untracked: ignored, not raised
    assert agg.pending == 0
    agg.track("dep", "m", 1, PROFILE)
    assert not agg.reject("dep", "m", 1, "not-a-feature", 3)
    assert not agg.reject("dep", "m", 2, "x", 3)
    assert not agg.reject("other", "m", 1, "x", 3)
    assert agg.pending == 0
    assert agg.reject("dep", "m", 1, "x")
    assert agg.reject("dep", "m", 1, "c", 4, at=datetime(1970, 1, 1, 2, 30, tzinfo=UTC))
    agg.update("dep", "m", 1, _frame(6, RNG))
    assert agg.reject("dep", "m", 1, "x", 2, at=HOUR * 30)  # the next day
    with pytest.raises(ValueError, match="'x'"):
        agg.reject("dep", "m", 1, "x", -1)
    windows = {(w.key.length, w.key.start): w for w in agg.drain()}
    assert set(windows) == {(HOUR, 7200), (DAY, 0), (HOUR, HOUR * 30), (DAY, DAY)}
    for key in ((HOUR, 7200), (DAY, 0)):
        assert windows[key].features["x"].invalid == 1 and windows[key].features["c"].invalid == 4
        assert windows[key].rows == 6 and windows[key].features["y"].invalid == 0
    assert windows[(DAY, DAY)].features["x"].invalid == 2 and windows[(DAY, DAY)].rows == 0


# -- windows and the aggregator ------------------------------------------------------------------


def test_window_start_is_a_utc_multiple_of_the_length() -> None:
    at = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
    assert window_start(at, HOUR) == datetime(2026, 3, 14, 15, tzinfo=UTC).timestamp()
    assert window_start(at, DAY) == datetime(2026, 3, 14, tzinfo=UTC).timestamp()
    assert window_start(at.timestamp(), 900) == datetime(2026, 3, 14, 15, tzinfo=UTC).timestamp()
    with pytest.raises(ValueError, match="positive"):
        window_start(at, 0)


def _frame(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "y": rng.uniform(5, 25, size=rows),
            "c": rng.choice(["a", "b", "new"], size=rows),
            "flag": rng.choice([True, False], size=rows),
        }
    )


def test_windows_roll_over_at_utc_boundaries() -> None:
    now = [datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC).timestamp()]
    agg = Aggregator((HOUR, DAY), clock=lambda: now[0])
    agg.track("dep", "m", 3, PROFILE)
    agg.update("dep", "m", 3, _frame(2, RNG))
    now[0] += 1  # midnight: a new hour and a new day
    agg.update("dep", "m", 3, _frame(3, RNG))
    agg.update("dep", "m", 3, _frame(4, RNG), at=datetime(2026, 1, 2, 0, 59, 59, tzinfo=UTC))
    windows = {(w.key.length, w.key.start_time): w.rows for w in agg.drain()}
    assert windows == {
        (HOUR, datetime(2026, 1, 1, 23, tzinfo=UTC)): 2,
        (DAY, datetime(2026, 1, 1, tzinfo=UTC)): 2,
        (HOUR, datetime(2026, 1, 2, 0, tzinfo=UTC)): 7,
        (DAY, datetime(2026, 1, 2, tzinfo=UTC)): 7,
    }
    assert agg.pending == 0 and agg.drain() == []


def test_aggregator_refuses_untracked_versions_and_forgets_drained_windows() -> None:
    agg = Aggregator((HOUR,), clock=lambda: 0.0)
    with pytest.raises(KeyError, match="does not track"):
        agg.update("dep", "m", 1, _frame(1, RNG))
    agg.track("dep", "m", 1, PROFILE)
    for _ in range(50):
        agg.update("dep", "m", 1, _frame(10, RNG))
    assert agg.pending == 1
    (window,) = agg.drain()
    assert window.rows == 500 and agg.pending == 0
    agg.untrack("dep", "m", 1)
    assert not agg.tracking("dep", "m", 1)
    with pytest.raises(ValueError, match="lengths"):
        Aggregator((0,))


def test_outputs_are_aggregated_against_the_output_profile() -> None:
    window = DeploymentWindow(WindowKey("d", "m", 1, HOUR, 0), LAYOUT)
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    window.update(_frame(3, RNG), output_columns(np.array([0, 1, 1]), probabilities, (0, 1)))
    assert window.outputs["prediction"].categories() == {"0": 1, "1": 2}
    proba = window.outputs["proba_1"]
    assert proba.count == 3 and proba.hist.sum() == 3 and proba.max == 0.8
    assert "proba_0" not in window.outputs  # not in the reference profile: ignored
    window.update(_frame(2, RNG))  # no outputs: only features move
    assert window.features["x"].count == 5 and window.outputs["prediction"].count == 3


def test_partial_frames_and_object_columns() -> None:
    window = DeploymentWindow(WindowKey("d", "m", 1, HOUR, 0), LAYOUT)
    window.update(pd.DataFrame({"x": pd.Series([1.0, None], dtype=object), "c": ["a", None]}))
    assert (window.features["x"].count, window.features["x"].missing) == (1, 1)
    assert window.features["y"].total == 0 and window.features["c"].missing == 1


def test_deployment_window_round_trip_through_json() -> None:
    window = DeploymentWindow(WindowKey("d", "m", 2, DAY, 86400), LAYOUT, max_unseen=5)
    window.update(_frame(20, RNG), {"prediction": RNG.integers(0, 3, 20), "proba_1": RNG.random(20)})
    data = json.loads(json.dumps(window.to_dict(), allow_nan=False))
    back = DeploymentWindow.from_dict(data)
    assert back == window and back.to_dict() == window.to_dict()
    assert back.key == window.key and back.rows == 20
    back.update(_frame(1, RNG))  # a restored window keeps aggregating
    assert back.rows == 21


def test_merging_windows_of_different_keys_is_refused() -> None:
    a = DeploymentWindow(WindowKey("d", "m", 1, HOUR, 0), LAYOUT)
    b = DeploymentWindow(WindowKey("d", "m", 1, HOUR, HOUR), LAYOUT)
    with pytest.raises(ValueError, match="cannot merge"):
        merge(a, b)


# -- the property: any split over processes, batches and drains adds up to the same numbers ----------

_CATEGORIES = ["a", "b", "c", "u1", "u2", "u3", None]
_row = st.tuples(
    st.one_of(st.none(), st.floats(-50, 50, allow_nan=False, allow_infinity=False)),
    st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False, allow_infinity=False)),
    st.sampled_from(_CATEGORIES),
    st.sampled_from([True, False, None]),
    st.integers(0, 3),
    st.floats(0, 1),
    st.integers(0, 4 * HOUR),  # when the row was answered
    st.integers(0, 3),  # which process answered it
    st.booleans(),  # whether a batch ends after it
    st.booleans(),  # whether its process drains after it
    st.integers(0, 2),  # values of "x" rejected for their type around it
)


def _batch(rows: list[tuple[Any, ...]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    frame = pd.DataFrame(
        {
            "x": pd.Series([r[0] for r in rows], dtype="float64"),
            "y": pd.Series([r[1] for r in rows], dtype="float64"),
            "c": pd.Series([r[2] for r in rows], dtype=object),
            "flag": pd.Series([r[3] for r in rows], dtype=object),
        }
    )
    outputs = {"prediction": np.array([r[4] for r in rows]), "proba_1": np.array([r[5] for r in rows])}
    return frame, outputs


@settings(max_examples=60, deadline=None)
@given(st.lists(_row, min_size=1, max_size=60), st.integers(0, 6))
def test_split_across_processes_batches_and_drains_equals_one_process(rows: list[tuple[Any, ...]], cap: int) -> None:
    # unseen categories (u1..u3, labels 2 and 3) stay within the cap unless cap is small; totals are exact either way
    rows = sorted(rows, key=lambda r: r[6])
    lengths = (HOUR, DAY)
    single = Aggregator(lengths, clock=lambda: 0.0, max_unseen=cap)
    single.track("d", "m", 1, PROFILE)
    for t in sorted({r[6] for r in rows}):
        frame, outputs = _batch([r for r in rows if r[6] == t])
        single.update("d", "m", 1, frame, outputs, at=t)
        assert single.reject("d", "m", 1, "x", sum(r[10] for r in rows if r[6] == t), at=t)
    expected = merge_all(single.drain())

    processes = [Aggregator(lengths, clock=lambda: 0.0, max_unseen=cap) for _ in range(4)]
    for agg in processes:
        agg.track("d", "m", 1, PROFILE)
    flushed: list[DeploymentWindow] = []
    pending: dict[int, list[tuple[Any, ...]]] = {i: [] for i in range(4)}

    def flush_batch(process: int) -> None:
        if pending[process]:
            frame, outputs = _batch(pending[process])
            processes[process].update("d", "m", 1, frame, outputs, at=pending[process][0][6])
            pending[process] = []

    for row in rows:
        process = row[7]
        if pending[process] and pending[process][0][6] != row[6]:  # a batch is answered at one time
            flush_batch(process)
        pending[process].append(row)
        processes[process].reject("d", "m", 1, "x", row[10], at=row[6])
        if row[8]:
            flush_batch(process)
        if row[9]:
            flush_batch(process)
            flushed.extend(json_trip(w) for w in processes[process].drain())
    for process, agg in enumerate(processes):
        flush_batch(process)
        flushed.extend(json_trip(w) for w in agg.drain())
    flushed.reverse()  # the store may add deltas up in any order
    actual = merge_all(flushed)

    assert actual.keys() == expected.keys()
    distinct_unseen = len({r[2] for r in rows if r[2] in ("u1", "u2", "u3")})
    distinct_labels = len({r[4] for r in rows if r[4] > 1})
    for key, want in expected.items():
        got = actual[key]
        if max(distinct_unseen, distinct_labels) <= cap:
            _assert_same(got.to_dict(), want.to_dict())  # exactly the same numbers
        for group in ("features", "outputs"):
            for name, w in getattr(want, group).items():
                g = getattr(got, group)[name]
                assert (g.count, g.missing, g.invalid, g.min, g.max, g.below, g.above) == (
                    w.count,
                    w.missing,
                    w.invalid,
                    w.min,
                    w.max,
                    w.below,
                    w.above,
                )
                assert g.hist.tolist() == w.hist.tolist() and g.known.tolist() == w.known.tolist()
                assert g.unseen_total == w.unseen_total and len(g.unseen) <= cap
                assert math.isclose(g.mean, w.mean, rel_tol=1e-9, abs_tol=1e-9)
                assert math.isclose(g.m2, w.m2, rel_tol=1e-9, abs_tol=1e-6)


def json_trip(window: DeploymentWindow) -> DeploymentWindow:
    return DeploymentWindow.from_dict(json.loads(json.dumps(window.to_dict(), allow_nan=False)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_CATEGORIES), max_size=8), min_size=3, max_size=3))
def test_merge_is_associative_and_commutative_below_the_cap(parts: list[list[Any]]) -> None:
    windows = []
    for part in parts:
        window = DeploymentWindow(WindowKey("d", "m", 1, HOUR, 0), LAYOUT, max_unseen=3)
        window.update(pd.DataFrame({"c": pd.Series(part, dtype=object), "x": RNG.normal(size=len(part))}))
        window.reject("c", part.count(None))
        windows.append(window)
    a, b, c = windows
    left, right, swapped = merge(merge(a, b), c), merge(a, merge(b, c)), merge(c, merge(b, a))
    _assert_same(left.to_dict(), right.to_dict())
    _assert_same(left.to_dict(), swapped.to_dict())
    assert left.features["c"].invalid == sum(part.count(None) for part in parts)


def test_feature_profile_without_categories_counts_everything_unseen() -> None:
    prof = FeatureProfile("z", FeatureKind.CATEGORICAL, 0, 3)
    window = FeatureWindow.from_profile(prof)
    window.update(["q", "q", None])
    assert window.unseen == {"q": 2} and window.missing == 1 and window.categories() == {}


def test_category_dtype_columns_skip_unused_categories() -> None:
    window = FeatureWindow.from_profile(PROFILE.features["c"])
    window.update(pd.Series(pd.Categorical(["a", None, "a", "zz"], categories=["a", "b", "zz", "never"])))
    assert window.categories() == {"a": 2, "b": 0, "c": 0} and window.unseen == {"zz": 1} and window.missing == 1
