from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.core.schema import FeatureKind, OutputSpec, Signature, Task, infer_output
from corral.errors import SchemaError


def _training() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [10.5, 99.0, 3.2, np.nan],
            "count": [1, 2, 3, 4],
            "country": ["NO", "SE", "NO", "DK"],
            "is_new": [True, False, True, False],
        }
    )


def test_infer_records_kinds_ranges_categories_and_missingness() -> None:
    sig = Signature.infer(_training(), pd.Series(["fraud", "ok", "ok", "fraud"]))
    amount, count, country, is_new = sig.inputs
    assert (amount.kind, amount.dtype, amount.min, amount.max, amount.nullable) == (
        FeatureKind.NUMERICAL,
        "float64",
        3.2,
        99.0,
        True,
    )
    assert (count.dtype, count.min, count.max, count.nullable) == ("int64", 1.0, 4.0, False)
    assert (country.kind, country.categories) == (FeatureKind.CATEGORICAL, ("DK", "NO", "SE"))
    assert is_new.kind is FeatureKind.BOOLEAN
    assert sig.outputs == OutputSpec(Task.CLASSIFICATION, "string", ("fraud", "ok"), probabilities=True)


def test_signature_dict_round_trip() -> None:
    sig = Signature.infer(_training(), pd.Series([0.1, 0.2, 0.3, 0.4]))
    assert Signature.from_dict(sig.to_dict()) == sig
    assert sig.outputs.task is Task.REGRESSION


@pytest.mark.parametrize(
    ("target", "task"),
    [
        (pd.Series([0, 1, 1, 0]), Task.CLASSIFICATION),
        (pd.Series([True, False, True, True]), Task.CLASSIFICATION),
        (pd.Series(np.linspace(0, 1, 100)), Task.REGRESSION),
        (pd.Series(range(100)), Task.REGRESSION),
    ],
)
def test_infer_output_task(target: pd.Series, task: Task) -> None:
    assert infer_output(target).task is task


def test_validate_coerces_and_orders_columns() -> None:
    sig = Signature.infer(_training())
    given = pd.DataFrame({"is_new": ["true", "0"], "country": ["NO", 7], "count": ["3", 4], "amount": ["1.5", None]})
    out = sig.validate(given)
    assert list(out.columns) == ["amount", "count", "country", "is_new"]
    assert out["amount"].tolist()[0] == 1.5 and np.isnan(out["amount"].tolist()[1])
    assert out["count"].dtype == "int64"
    assert out["country"].tolist() == ["NO", "7"]
    assert out["is_new"].tolist() == [True, False]


def test_validate_accepts_rows_and_column_mappings() -> None:
    sig = Signature.infer(_training())
    row = {"amount": 1.0, "count": 2, "country": "NO", "is_new": False}
    assert len(sig.validate([row, row])) == 2
    assert len(sig.validate({k: [v] for k, v in row.items()})) == 1


def test_validate_names_every_missing_and_unexpected_column() -> None:
    sig = Signature.infer(_training())
    with pytest.raises(SchemaError, match="missing columns: count, is_new; unexpected columns: colour"):
        sig.validate(pd.DataFrame({"amount": [1.0], "country": ["NO"], "colour": ["red"]}))
    relaxed = sig.validate(
        pd.DataFrame({"amount": [1.0], "count": [1], "country": ["NO"], "is_new": [True], "colour": ["red"]}),
        extra="ignore",
    )
    assert "colour" not in relaxed.columns


def test_validate_names_the_column_and_value_that_is_not_a_number() -> None:
    sig = Signature.infer(_training())
    bad = pd.DataFrame({"amount": ["12", "twelve"], "count": [1, 2], "country": ["NO", "NO"], "is_new": [True, True]})
    with pytest.raises(
        SchemaError, match=r"column 'amount' expects numbers \(float64\); 1 value\(s\) are not, e.g. 'twelve'"
    ):
        sig.validate(bad)


def test_validate_refuses_booleans_for_numbers_and_junk_for_booleans() -> None:
    sig = Signature.infer(_training())
    with pytest.raises(SchemaError, match="'count' expects numbers"):
        sig.validate(pd.DataFrame({"amount": [1.0], "count": [True], "country": ["NO"], "is_new": [True]}))
    with pytest.raises(SchemaError, match="'is_new' expects booleans, got 'maybe'"):
        sig.validate(pd.DataFrame({"amount": [1.0], "count": [1], "country": ["NO"], "is_new": ["maybe"]}))


def test_validate_refuses_other_containers() -> None:
    sig = Signature.infer(_training())
    with pytest.raises(SchemaError, match="expected a DataFrame"):
        sig.validate("amount=1")
    with pytest.raises(SchemaError, match="same length"):
        sig.validate({"amount": [1.0, 2.0], "count": [1], "country": ["NO"], "is_new": [True]})


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (pd.DataFrame(), "no feature columns"),
        (pd.DataFrame({"a": pd.Series([], dtype=float)}), "no rows"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "duplicate columns: \\['a'\\]"),
        (pd.DataFrame({0: [1.0]}), "names must be strings"),
        (pd.DataFrame({"when": pd.to_datetime(["2026-01-01"])}), "encode dates as numbers"),
    ],
)
def test_infer_refuses_unusable_training_frames(frame: pd.DataFrame, fragment: str) -> None:
    with pytest.raises(SchemaError, match=fragment):
        Signature.infer(frame)


def test_category_dtype_is_restored_with_training_categories() -> None:
    frame = pd.DataFrame({"colour": pd.Categorical(["red", "blue", "red"])})
    sig = Signature.infer(frame)
    out = sig.validate(pd.DataFrame({"colour": ["blue", "green"]}))
    assert isinstance(out["colour"].dtype, pd.CategoricalDtype)
    assert list(out["colour"].cat.categories) == ["blue", "red"]
    assert out["colour"].isna().tolist() == [False, True]


def test_missing_values_only_where_training_had_them() -> None:
    sig = Signature.infer(_training())  # amount had a NaN, the others none
    ok = sig.validate(pd.DataFrame({"amount": [None], "count": [1], "country": ["NO"], "is_new": [True]}))
    assert np.isnan(ok["amount"].iloc[0])
    with pytest.raises(
        SchemaError, match=r"column 'count' is missing a value \(row 1\); the training data had no missing values there"
    ):
        sig.validate(
            pd.DataFrame({"amount": [1.0, 2.0], "count": [1, None], "country": ["NO"] * 2, "is_new": [True] * 2})
        )
    with pytest.raises(SchemaError, match="column 'country' is missing a value"):
        sig.validate(pd.DataFrame({"amount": [1.0], "count": [1], "country": [None], "is_new": [True]}))


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), "inf"])
def test_infinite_numbers_are_refused(value: object) -> None:
    sig = Signature.infer(_training())
    with pytest.raises(SchemaError, match="column 'amount' holds an infinite value"):
        sig.validate(pd.DataFrame({"amount": [value], "count": [1], "country": ["NO"], "is_new": [True]}))


def test_out_of_range_flags_numbers_beyond_training_and_unseen_categories() -> None:
    sig = Signature.infer(_training())
    frame = sig.validate(
        pd.DataFrame(
            {"amount": [50.0, 1000.0, 1.0], "count": [2, 3, 9], "country": ["NO", "NO", "FI"], "is_new": [True] * 3}
        )
    )
    assert sig.out_of_range(frame) == [(), ("amount",), ("amount", "count", "country")]


@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.floats(-1e9, 1e9)), st.integers(-(2**31), 2**31), st.floats(-5, 5)),
        min_size=1,
        max_size=30,
    )
)
def test_numeric_fast_path_agrees_with_the_general_path(rows: list[tuple[float | None, int, float]]) -> None:
    training = pd.DataFrame({"a": [1.0, np.nan], "b": [1, 2], "c": [0.5, 0.25]})
    sig = Signature.infer(training)
    frame = pd.DataFrame(rows, columns=["a", "b", "c"]).astype({"a": "float64"})
    fast = sig.validate(frame)  # columns in signature order, all numeric: the fast path
    general = sig.validate(frame[["c", "b", "a"]])  # another order: the general path
    pd.testing.assert_frame_equal(fast, general)
    assert sig.out_of_range(fast) == sig.out_of_range(general)


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([{"x": "seventeen", "c": "a", "b": True}], "x"),
        ([{"x": float("inf"), "c": "a", "b": True}], "x"),
        ([{"x": 1.0, "c": "a", "b": "perhaps"}], "b"),
        ([{"x": 1.0, "c": "a"}], None),  # a missing column is not one feature's values
    ],
)
def test_a_refusal_names_the_feature_at_fault(rows: list[dict[str, object]], field: str | None) -> None:
    signature = Signature.infer(pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"], "b": [True, False]}))
    with pytest.raises(SchemaError) as refused:
        signature.validate(rows)
    assert refused.value.field == field
