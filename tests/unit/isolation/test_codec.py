"""The server <-> worker wire format: frames and predictions survive the trip with their types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from corral.errors import ModelTimeoutError, SchemaError
from corral.isolation import codec
from corral.runtimes.base import Prediction


def _trip(parts: list[bytes | memoryview]) -> tuple[dict, memoryview]:
    return codec.unpack(b"".join(bytes(memoryview(p).cast("B")) for p in parts))


def test_a_frame_keeps_its_columns_types_and_missing_values() -> None:
    frame = pd.DataFrame(
        {
            "amount": [1.5, np.nan, 3.0],
            "count": np.array([1, 2, 3], dtype="int64"),
            "flag": [True, False, True],
            "city": ["Lyon", None, "Zürich"],
        }
    )

    header, body = _trip(codec.encode_frame(frame))
    back = codec.decode_frame(header, body)

    assert list(back.columns) == ["amount", "count", "flag", "city"]
    np.testing.assert_array_equal(back["amount"].to_numpy(), frame["amount"].to_numpy())
    assert back["count"].dtype == np.int64 and back["flag"].dtype == bool
    assert back["city"].iloc[0] == "Lyon" and pd.isna(back["city"].iloc[1]) and back["city"].iloc[2] == "Zürich"


def test_numeric_columns_travel_as_buffers_not_json() -> None:
    frame = pd.DataFrame({"x": np.arange(10_000, dtype="float64")})
    wide = pd.DataFrame(np.ones((5, 30)), columns=[f"f{i}" for i in range(30)])
    header, _ = _trip(codec.encode_frame(wide))
    assert len(header["blocks"]) == 1  # one 2-D block for all float64 columns, not one buffer each

    parts = codec.encode_frame(frame)
    header, _ = _trip(parts)

    assert "json" not in header["blocks"][0]
    assert sum(memoryview(p).nbytes for p in parts) < 80_000 + 500  # 8 bytes a row plus a small header


@pytest.mark.parametrize(
    "prediction",
    [
        Prediction(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]), (0, 1)),
        Prediction(np.array(["no", "yes"], dtype=object), np.array([[0.7, 0.3], [0.1, 0.9]]), ("no", "yes")),
        Prediction(np.array([1.25, -3.5])),
    ],
)
def test_predictions_come_back_equal_and_writable(prediction: Prediction) -> None:
    header, body = _trip(codec.encode_prediction(prediction))
    back = codec.decode_prediction(header, body)

    np.testing.assert_array_equal(back.values, prediction.values)
    assert back.classes == prediction.classes
    if prediction.probabilities is not None:
        np.testing.assert_allclose(back.probabilities, prediction.probabilities)
    back.values[0] = back.values[1]  # the caller owns the arrays


def test_errors_come_back_as_their_own_corral_type_and_model_errors_as_model_failures() -> None:
    header, _ = _trip(codec.encode_error(SchemaError("column 'x' is missing")))
    with pytest.raises(SchemaError, match="worker 1: column 'x' is missing"):
        codec.raise_error(header, "worker 1")

    header, _ = _trip(codec.encode_error(ZeroDivisionError("division by zero")))
    with pytest.raises(codec.ModelFailedError, match="division by zero"):
        codec.raise_error(header, "worker 1")

    header, _ = _trip(codec.pack({"op": "error", "kind": "ModelTimeoutError", "message": "slow"}))
    with pytest.raises(ModelTimeoutError):
        codec.raise_error(header, "w")


@pytest.mark.parametrize("frame", [b"", b"\x00\x00\x00\x09{}", b"\x00\x00\x00\x02[]"])
def test_malformed_messages_are_refused(frame: bytes) -> None:
    with pytest.raises(codec.CodecError):
        codec.unpack(frame)
