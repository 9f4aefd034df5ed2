from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from corral.core.profile import Profile, histogram, profile_column, profile_frame
from corral.core.schema import FeatureKind, Signature


def test_numerical_profile_matches_numpy(cancer: pd.DataFrame) -> None:
    column = cancer["mean radius"]
    prof = profile_column("mean radius", column, FeatureKind.NUMERICAL, bins=10)
    values = column.to_numpy()
    assert prof.count == len(values) and prof.missing == 0
    assert prof.min == values.min() and prof.max == values.max()
    assert np.isclose(prof.mean, values.mean()) and np.isclose(prof.std, values.std(ddof=1))
    assert np.isclose(prof.quantiles["0.5"], np.median(values))
    assert sum(prof.bin_counts) == len(values)
    assert len(prof.bin_edges) == len(prof.bin_counts) + 1
    assert prof.bin_edges[0] == values.min() and prof.bin_edges[-1] == values.max()
    # quantile bins hold roughly equal shares of the training data
    assert max(prof.bin_counts) - min(prof.bin_counts) <= len(values) * 0.05


def test_missing_and_categories() -> None:
    column = pd.Series(["a", "b", "a", None, "c", "a"])
    prof = profile_column("c", column, FeatureKind.CATEGORICAL, max_categories=2)
    assert (prof.count, prof.missing) == (5, 1)
    assert prof.categories == {"a": 3, "b": 1}
    assert prof.other == 1
    assert np.isclose(prof.missing_rate, 1 / 6)


def test_constant_and_all_missing_columns() -> None:
    constant = profile_column("k", pd.Series([2.0] * 5), FeatureKind.NUMERICAL)
    assert constant.bin_counts == (5,) and constant.std == 0.0
    empty = profile_column("e", pd.Series([np.nan, np.nan]), FeatureKind.NUMERICAL)
    assert (empty.count, empty.missing, empty.bin_counts) == (0, 2, ())


def test_profile_round_trips_through_dict(cancer: pd.DataFrame) -> None:
    features = cancer.drop(columns="target")
    sig = Signature.infer(features)
    prof = Profile(rows=len(features), features=profile_frame(features, sig))
    again = Profile.from_dict(prof.to_dict())
    assert again == prof


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200), st.lists(st.floats(-2e6, 2e6), max_size=50))
def test_histogram_puts_every_value_in_some_bin(train: list[float], production: list[float]) -> None:
    prof = profile_column("x", pd.Series(train), FeatureKind.NUMERICAL, bins=8)
    counts = histogram(np.asarray(production), prof.bin_edges)
    assert counts.sum() == len(production)
    assert len(counts) == len(prof.bin_counts)
    # training data falls in the same bins as when the profile was made
    assert histogram(np.asarray(train), prof.bin_edges).tolist() == list(prof.bin_counts)
