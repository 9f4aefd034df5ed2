from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd

from corral.core.fingerprint import fingerprint_frame


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31, 45, 27],
            "income": [1.5, np.nan, 3.25],
            "city": ["Oslo", None, "Bergen"],
            "ok": [True, False, True],
        }
    )


def test_same_data_same_fingerprint_and_counts() -> None:
    first = fingerprint_frame(_frame(), source="s3://bucket/train.parquet")
    assert first == fingerprint_frame(_frame(), source="s3://bucket/train.parquet")
    assert (first.rows, first.columns, first.source) == (3, 4, "s3://bucket/train.parquet")
    assert len(first.sha256) == 64


def test_column_order_and_incidental_dtypes_do_not_matter() -> None:
    frame = _frame()
    shuffled = frame[["ok", "city", "income", "age"]]
    widened = frame.astype({"age": "float64"})
    narrowed = frame.astype({"age": "int32"})
    as_category = frame.astype({"city": "category"})
    digests = {fingerprint_frame(f).sha256 for f in (frame, shuffled, widened, narrowed, as_category)}
    assert len(digests) == 1


def test_any_change_of_value_row_order_or_name_changes_it() -> None:
    base = fingerprint_frame(_frame()).sha256
    changed = _frame()
    changed.loc[1, "age"] = 46
    missing_filled = _frame().fillna({"income": 0.0})
    renamed = _frame().rename(columns={"age": "years"})
    reordered = _frame().iloc[[1, 0, 2]].reset_index(drop=True)
    empty_vs_missing = _frame()
    empty_vs_missing.loc[1, "city"] = ""
    for other in (changed, missing_filled, renamed, reordered, empty_vs_missing):
        assert fingerprint_frame(other).sha256 != base


def test_nan_forms_and_negative_zero_are_canonical() -> None:
    a = pd.DataFrame({"x": [np.nan, 0.0]})
    b = pd.DataFrame({"x": [float("nan"), -0.0]})
    c = pd.DataFrame({"x": pd.array([None, 0.0], dtype="Float64")})
    assert fingerprint_frame(a) == fingerprint_frame(b) == fingerprint_frame(c)


@given(
    hpd.data_frames(
        [
            hpd.column("a", dtype=float, elements=st.floats(allow_nan=True, allow_infinity=False, width=64)),
            hpd.column("b", elements=st.text(max_size=5)),
        ],
        index=hpd.range_indexes(min_size=1, max_size=20),
    )
)
def test_fingerprint_is_deterministic_and_index_free(frame: pd.DataFrame) -> None:
    reindexed = frame.set_axis(range(100, 100 + len(frame)))
    assert fingerprint_frame(frame) == fingerprint_frame(reindexed.copy())
