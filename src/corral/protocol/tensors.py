"""One tensor at a time: JSON data and binary bytes to numpy arrays and back.

Every function takes ``what`` (``"input 'age'"``, ``"output 'predict'"``) and
puts it at the start of any :class:`~corral.errors.ProtocolError` it raises,
so a client learns which tensor was wrong.

Decisions:

* ``BYTES`` elements become ``str`` (UTF-8 decoded) in an object array; an
  element that is not valid UTF-8 stays ``bytes``, so binary payloads survive
  unchanged (:func:`~corral.protocol.codec.request_to_frame` refuses them).
* JSON ``FP*`` data may hold ``null`` (and the ``NaN``/``Infinity`` tokens
  tritonclient writes, which the request decoder reads): both become
  NaN/inf. Other datatypes refuse ``null``.
* On the way out, non-finite ``FP*`` values are written to JSON as ``null``,
  because JSON has no NaN; tritonclient reads ``null`` back as NaN. Binary
  outputs keep NaN and ±inf exactly.
* JSON data may be flat or nested; only the element count must match the shape.
  Integers must be JSON integers (``1.0`` is refused for ``INT*``) within the
  datatype's range; booleans must be JSON ``true``/``false``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from corral.errors import ProtocolError
from corral.protocol.types import DATATYPES, NUMPY_DTYPES

Array = npt.NDArray[Any]

_LENGTH = struct.Struct("<I")


def dtype_of(datatype: str, what: str) -> np.dtype[Any]:
    """The numpy dtype for a V2 datatype.

    Args:
        datatype: the tensor's declared datatype.
        what: the tensor, for error messages.

    Raises:
        ProtocolError: for a datatype that is not one of :data:`DATATYPES`.
    """
    try:
        return NUMPY_DTYPES[datatype]
    except KeyError:
        raise ProtocolError(f"{what}: unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}") from None


def as_array(data: Array | list[Any] | None, datatype: str, shape: Sequence[int], what: str) -> Array:
    """Check tensor data against its datatype and shape and return it as an array.

    Args:
        data: a JSON list (flat or nested, row-major) or a numpy array.
        datatype: the declared datatype.
        shape: the declared shape.
        what: the tensor, for error messages.

    Returns:
        An array of exactly ``shape`` and the datatype's dtype. An array that
        already fits is returned as it is, not copied.

    Raises:
        ProtocolError: naming the tensor, for missing data, a wrong element
            count, or values the datatype cannot hold.
    """
    dtype = dtype_of(datatype, what)
    shape = tuple(shape)
    if data is None:
        raise ProtocolError(f"{what} has no data")
    if datatype == "FP64" and type(data) is list and all(type(v) is float for v in data):
        # the common case (a flat list of JSON floats, e.g. one value per column): no checks can fail but the count
        _check_count(len(data), math.prod(shape), shape, what)
        return np.array(data, dtype=np.float64).reshape(shape)
    if isinstance(data, np.ndarray) and data.dtype == dtype and data.shape == shape:
        return data
    count = math.prod(shape)
    if datatype == "BYTES":
        items = data.ravel().tolist() if isinstance(data, np.ndarray) else _flatten(data)
        _check_count(len(items), count, shape, what)
        return _object_array([_text_element(item, what) for item in items], shape)
    if isinstance(data, np.ndarray):
        array = data
    else:
        try:
            array = np.asarray(data)
        except ValueError:
            raise ProtocolError(
                f"{what}: nested data is ragged; every list at one depth must have the same length"
            ) from None
    _check_count(array.size, count, shape, what)
    if count == 0:
        return np.empty(shape, dtype=dtype)
    if datatype == "BOOL":
        return _bools(array, what).reshape(shape)
    if dtype.kind in "iu":
        return _integers(array, data, datatype, dtype, what).reshape(shape)
    return _floats(array, datatype, dtype, what).reshape(shape)


def from_binary(chunk: memoryview | bytes, datatype: str, shape: Sequence[int], what: str) -> Array:
    """Decode one tensor's binary data (little-endian, row-major, no padding).

    Args:
        chunk: exactly this tensor's bytes.
        datatype: the declared datatype.
        shape: the declared shape.
        what: the tensor, for error messages.

    Returns:
        An array of ``shape``. Fixed-size types share ``chunk``'s memory.

    Raises:
        ProtocolError: when the byte count does not fit the shape, a BOOL byte
            is not 0 or 1, or a BYTES element runs past the end.
    """
    dtype = dtype_of(datatype, what)
    shape = tuple(shape)
    count = math.prod(shape)
    if datatype == "BYTES":
        return _object_array(_split_bytes(memoryview(chunk), count, shape, what), shape)
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise ProtocolError(
            f"{what}: binary_data_size is {len(chunk)} bytes but shape {list(shape)} of {datatype} "
            f"needs {expected} ({count} x {dtype.itemsize})"
        )
    if datatype == "BOOL" and count and int(np.frombuffer(chunk, dtype=np.uint8).max()) > 1:
        raise ProtocolError(f"{what}: BOOL binary data must hold only bytes 0 and 1")
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def to_binary(array: Array, datatype: str, what: str) -> bytes:
    """Encode a checked array (from :func:`as_array`) as binary tensor data.

    Raises:
        ProtocolError: for an unknown datatype.
    """
    dtype = dtype_of(datatype, what)
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.ravel().tolist():
            raw = _element_bytes(item)
            parts.append(_LENGTH.pack(len(raw)))
            parts.append(raw)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def to_json_data(array: Array, datatype: str, what: str) -> list[Any]:
    """A checked array as a flat row-major JSON list.

    Non-finite floats become ``None`` (JSON ``null``); BYTES elements become
    strings.

    Raises:
        ProtocolError: for a BYTES element that is not UTF-8 text, which JSON
            cannot carry (ask for the output in binary instead).
    """
    flat = array.ravel()
    if datatype == "BYTES":
        return [_json_text(item, what) for item in flat.tolist()]
    if flat.dtype.kind == "f":
        finite = np.isfinite(flat)
        if not finite.all():
            boxed = flat.astype(object)
            boxed[~finite] = None
            return list(boxed.tolist())
    return list(flat.tolist())


def infer_datatype(array: Array, what: str) -> tuple[Array, str]:
    """Pick the V2 datatype for a model's output array.

    Booleans give BOOL, integers INT64 (UINT64 for ``uint64``, which INT64
    cannot hold), floats FP64, and strings or other objects BYTES. An object
    array holding only numbers or booleans is treated as those.

    Returns:
        The array converted to the datatype's dtype, and the datatype.

    Raises:
        ProtocolError: for arrays no V2 datatype can carry (complex, dates).
    """
    kind = array.dtype.kind
    if kind == "b":
        return array, "BOOL"
    if kind == "u" and array.dtype.itemsize == 8:
        return array.astype(NUMPY_DTYPES["UINT64"], copy=False), "UINT64"
    if kind in "iu":
        return array.astype(NUMPY_DTYPES["INT64"], copy=False), "INT64"
    if kind == "f":
        return array.astype(NUMPY_DTYPES["FP64"], copy=False), "FP64"
    if kind in "US":
        return array.astype(object), "BYTES"
    if kind == "O":
        if array.size and not any(isinstance(item, str | bytes) for item in array.flat):
            try:
                values = np.array(array.tolist())
            except ValueError:
                values = array
            if values.dtype.kind in "biuf" and values.shape == array.shape:
                return infer_datatype(values, what)
        return array, "BYTES"
    raise ProtocolError(f"{what}: values of dtype {array.dtype} have no Open Inference Protocol datatype")


# -- checks -------------------------------------------------------------------------------------------------------


def _check_count(size: int, count: int, shape: tuple[int, ...], what: str) -> None:
    if size != count:
        raise ProtocolError(f"{what}: shape {list(shape)} holds {count} elements but the data has {size}")


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list | tuple):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list | tuple):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _first(items: list[Any], bad: Any) -> Any:
    return next((item for item in items if bad(item)), None)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bools(array: Array, what: str) -> Array:
    if array.dtype.kind == "b":
        return array
    items = _flatten(array.tolist())
    first = _first(items, lambda v: not isinstance(v, bool | np.bool_))
    raise ProtocolError(f"{what}: BOOL data must be true or false, got {_describe(first)}")


def _integers(array: Array, data: Any, datatype: str, dtype: np.dtype[Any], what: str) -> Array:
    if array.dtype.kind not in "iu":
        # slow path: find the offending value, or accept Python ints numpy could not type (e.g. beyond int64)
        items = _flatten(data.tolist() if isinstance(data, np.ndarray) else data)
        first = _first(items, lambda v: isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer))
        if first is not None or any(v is None for v in items):
            raise ProtocolError(f"{what}: {datatype} data must be integers, got {_describe(first)}")
        lo, hi = min(int(v) for v in items), max(int(v) for v in items)
    else:
        lo, hi = int(array.min()), int(array.max())
    info = np.iinfo(dtype)
    if lo < info.min or hi > info.max:
        value = lo if lo < info.min else hi
        raise ProtocolError(f"{what}: value {value} is out of range for {datatype} ({info.min}..{info.max})")
    if array.dtype.kind not in "iu":
        return np.array(items, dtype=object).astype(dtype)
    return array.astype(dtype, copy=False)


def _floats(array: Array, datatype: str, dtype: np.dtype[Any], what: str) -> Array:
    kind = array.dtype.kind
    if kind not in "iuf":
        items = _flatten(array.tolist())
        first = _first(
            items,
            lambda v: v is not None and (isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.number)),
        )
        if first is not None:
            raise ProtocolError(f"{what}: {datatype} data must be numbers, got {_describe(first)}")
        try:
            array = np.array(items, dtype=object).astype(np.float64)
        except OverflowError:
            raise ProtocolError(f"{what}: a value is out of range for {datatype}") from None
    with np.errstate(over="ignore"):
        converted = array.astype(dtype, copy=False)
    if converted.dtype != array.dtype:
        overflow = np.isinf(converted) & ~np.isinf(array)
        if overflow.any():
            value = array.ravel()[int(np.argmax(overflow.ravel()))].item()
            raise ProtocolError(f"{what}: value {value!r} is out of range for {datatype}")
    return converted


# -- BYTES --------------------------------------------------------------------------------------------------------


def _object_array(items: list[Any], shape: tuple[int, ...]) -> Array:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def _text_element(item: Any, what: str) -> str | bytes:
    if isinstance(item, str):
        return item
    if isinstance(item, bytes | bytearray | memoryview | np.bytes_):
        return _decode(bytes(item))
    raise ProtocolError(f"{what}: BYTES data must be strings, got {_describe(item)}")


def _decode(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _split_bytes(view: memoryview, count: int, shape: tuple[int, ...], what: str) -> list[str | bytes]:
    items: list[str | bytes] = []
    offset, end = 0, len(view)
    while offset < end:
        if offset + 4 > end:
            raise ProtocolError(f"{what}: BYTES element {len(items)} has a truncated 4-byte length prefix")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            raise ProtocolError(
                f"{what}: BYTES element {len(items)} claims {length} bytes but only {end - offset} remain"
            )
        items.append(_decode(bytes(view[offset : offset + length])))
        offset += length
    _check_count(len(items), count, shape, what)
    return items


def _element_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    return str(item).encode("utf-8")


def _json_text(item: Any, what: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(
                f"{what} holds bytes that are not UTF-8 text; JSON cannot carry them, ask for it as binary data"
            ) from None
    return str(item)


__all__ = ["as_array", "dtype_of", "from_binary", "infer_datatype", "to_binary", "to_json_data"]
