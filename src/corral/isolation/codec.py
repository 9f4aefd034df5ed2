"""The wire format between the server and a model worker.

A message is one frame (see :mod:`corral.runtimes.process`): a 4-byte big-endian header length, a JSON
header, then raw buffers whose sizes the header lists. Numeric and boolean columns travel as their numpy
bytes (no per-row encoding); text and other object columns as JSON lists, with ``null`` for missing values.

Requests: ``{"op": "predict", "rows": n, "columns": [...]}``. Answers: ``{"op": "result", ...}`` with the
values, the probability matrix and the classes, or ``{"op": "error", "kind": ..., "message": ...}`` naming
a corral error type, which the server raises again on its side.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from corral import errors
from corral.runtimes.base import Prediction

_LENGTH = struct.Struct(">I")
_BUFFERED = "biuf"  # numpy kinds sent as raw bytes


class CodecError(Exception):
    """A message that does not follow the format."""


def pack(header: dict[str, Any], buffers: Sequence[bytes | memoryview] = ()) -> list[bytes | memoryview]:
    """A message as the parts of one frame (sent without joining them)."""
    raw = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    return [_LENGTH.pack(len(raw)), raw, *buffers]


def unpack(frame: bytes) -> tuple[dict[str, Any], memoryview]:
    """A frame's header and the bytes after it."""
    if len(frame) < _LENGTH.size:
        raise CodecError("a message shorter than its header length")
    (size,) = _LENGTH.unpack_from(frame)
    end = _LENGTH.size + size
    if end > len(frame):
        raise CodecError("a message whose header runs past its end")
    header = json.loads(frame[_LENGTH.size : end])
    if not isinstance(header, dict):
        raise CodecError("a message header that is not an object")
    return header, memoryview(frame)[end:]


def _array_part(array: np.ndarray) -> tuple[dict[str, Any], list[memoryview]]:
    array = np.asarray(array)
    if array.dtype.kind in _BUFFERED:
        data = np.ascontiguousarray(array)
        return {"dtype": data.dtype.str, "shape": list(data.shape), "nbytes": data.nbytes}, [data.data]
    return {"json": [_plain(v) for v in array.reshape(-1).tolist()], "shape": list(array.shape)}, []


def _read_array(spec: dict[str, Any], body: memoryview, offset: int) -> tuple[np.ndarray, int]:
    shape = tuple(spec["shape"])
    if "json" in spec:
        values = np.empty(len(spec["json"]), dtype=object)
        values[:] = spec["json"]
        return values.reshape(shape), offset
    end = offset + int(spec["nbytes"])
    if end > len(body):
        raise CodecError("a message shorter than its buffers")
    array = np.frombuffer(body[offset:end], dtype=np.dtype(spec["dtype"])).reshape(shape)
    return array, end


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value
    return str(value)


def encode_frame(frame: pd.DataFrame) -> list[bytes | memoryview]:
    """A prediction request for ``frame``'s rows: numeric columns of one dtype travel as one 2-D block."""
    groups: dict[str, list[str]] = {}
    objects: list[str] = []
    for name, dtype in frame.dtypes.items():
        if isinstance(dtype, np.dtype) and dtype.kind in _BUFFERED:
            groups.setdefault(dtype.str, []).append(str(name))
        else:
            objects.append(str(name))
    blocks, buffers = [], []
    for dtype, names in groups.items():
        whole = len(groups) == 1 and not objects  # the usual case: no column selection, one copy at most
        block = frame if whole else frame[names]
        spec, parts = _array_part(block.to_numpy(dtype=np.dtype(dtype)))
        blocks.append({"names": names, **spec})
        buffers.extend(parts)
    for name in objects:
        spec, parts = _array_part(frame[name].to_numpy())
        blocks.append({"names": [name], **spec})
    header = {"op": "predict", "rows": len(frame), "order": [str(c) for c in frame.columns], "blocks": blocks}
    return pack(header, buffers)


def decode_frame(header: dict[str, Any], body: memoryview) -> pd.DataFrame:
    offset, parts = 0, []
    index = pd.RangeIndex(int(header["rows"]))
    for spec in header["blocks"]:
        values, offset = _read_array(spec, body, offset)
        if values.ndim == 1:
            values = values.reshape(-1, 1)
        parts.append(pd.DataFrame(values, columns=spec["names"], index=index, copy=False))
    frame = parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)
    order = header["order"]
    return frame if list(frame.columns) == order else frame[order]


def encode_prediction(prediction: Prediction) -> list[bytes | memoryview]:
    values, buffers = _array_part(prediction.values)
    header: dict[str, Any] = {"op": "result", "values": values, "classes": None, "probabilities": None}
    if prediction.probabilities is not None:
        header["probabilities"], parts = _array_part(np.asarray(prediction.probabilities, dtype="float64"))
        buffers += parts
    if prediction.classes is not None:
        header["classes"] = [_plain(c) for c in prediction.classes]
    return pack(header, buffers)


def decode_prediction(header: dict[str, Any], body: memoryview) -> Prediction:
    values, offset = _read_array(header["values"], body, 0)
    probabilities = None
    if header.get("probabilities") is not None:
        probabilities, offset = _read_array(header["probabilities"], body, offset)
    classes = tuple(header["classes"]) if header.get("classes") is not None else None
    # frombuffer arrays are read-only views of the frame: copy so callers own them
    return Prediction(np.array(values), None if probabilities is None else np.array(probabilities), classes)


def encode_error(exc: BaseException) -> list[bytes | memoryview]:
    kind = type(exc).__name__ if isinstance(exc, errors.CorralError) else "ModelError"
    return pack({"op": "error", "kind": kind, "message": str(exc) or type(exc).__name__})


def raise_error(header: dict[str, Any], where: str) -> None:
    """Raise again the error a worker reported: a corral error as its own type, and an exception of the model's
    own code as :class:`ModelFailedError`, as an in-process model's exception would propagate."""
    kind = getattr(errors, str(header.get("kind")), None)
    message = f"{where}: {header.get('message', 'the worker failed')}"
    if isinstance(kind, type) and issubclass(kind, errors.CorralError) and kind is not errors.CorralError:
        try:
            raise kind(message)
        except TypeError:  # an error type with required keyword arguments
            pass
    raise ModelFailedError(message)


class ModelFailedError(RuntimeError):
    """The model itself raised while predicting in its worker (the worker lives on)."""
