"""Prediction records: canonical bytes, the hash chain and what verification catches."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from corral.audit.records import GENESIS, PredictionRecord, canonical, plain, verify_chain

T = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)


def record(i: int) -> PredictionRecord:
    return PredictionRecord(f"p{i}", T, "d", "m", 1, {"x": float(i), "c": "a"}, i % 2, (0.5, 0.5))


def chain(n: int) -> list[PredictionRecord]:
    out, prev = [], GENESIS
    for i in range(1, n + 1):
        placed = record(i).chained(i, prev)
        out.append(placed)
        prev = placed.hash
    return out


def test_canonical_bytes_are_stable_and_sorted() -> None:
    a = PredictionRecord("p", T, "d", "m", 1, {"b": 1, "a": 2}, 1)
    b = PredictionRecord("p", T, "d", "m", 1, {"a": 2, "b": 1}, 1)
    assert canonical(a) == canonical(b)
    assert canonical(a).startswith(b'{"anomaly_flagged":false')
    assert b" " not in canonical(a)


def test_plain_turns_numpy_pandas_and_non_finite_values_into_json() -> None:
    value = {"n": np.int64(3), "f": np.float32(0.5), "nan": float("nan"), "t": pd.Timestamp("2026-01-01"), "l": (1,)}
    assert plain(value) == {"n": 3, "f": 0.5, "nan": None, "t": "2026-01-01T00:00:00+00:00", "l": [1]}


def test_every_field_is_covered_by_the_hash() -> None:
    [placed] = chain(1)
    for change in ({"output": 0}, {"inputs": {"x": 2.0, "c": "a"}}, {"version": 2}, {"timestamp": T.replace(hour=9)}):
        assert replace(placed, **change).chained(1, GENESIS).hash != placed.hash  # type: ignore[arg-type]


def test_a_record_round_trips_through_its_dict() -> None:
    [placed] = chain(1)
    again = PredictionRecord.from_dict(placed.to_dict())
    assert again == placed and again.hash == placed.hash


@pytest.mark.parametrize(
    ("damage", "first_bad", "reason"),
    [
        (lambda rs: rs[:2] + rs[3:], 3, "missing"),
        (lambda rs: [rs[0], rs[2], rs[1], *rs[3:]], 2, "missing"),
        (lambda rs: [*rs[:2], replace(rs[2], output=5), *rs[3:]], 3, "altered"),
        (lambda rs: [*rs[:2], replace(rs[2], prev_hash="f" * 64), *rs[3:]], 3, "link"),
    ],
)
def test_verification_names_the_first_bad_record(damage, first_bad, reason) -> None:  # type: ignore[no-untyped-def]
    records = chain(5)
    assert verify_chain(records).ok
    check = verify_chain(damage(records))
    assert not check.ok and check.first_bad_seq == first_bad and reason in (check.reason or "")
    assert check.to_dict()["first_bad_seq"] == first_bad


def test_verification_can_resume_from_a_checkpoint() -> None:
    records = chain(6)
    check = verify_chain(records[3:], after_seq=3, after_hash=records[2].hash)
    assert check.ok and check.checked == 3 and check.head_seq == 6
