"""Request bodies in, response bodies out: the V2 REST wire format.

Start with :func:`decode_request` (bytes and the ``Inference-Header-Content-Length``
header to a checked :class:`~corral.protocol.types.InferenceRequest`),
:func:`request_to_frame` (inputs to a pandas frame for a tabular model),
:func:`output_tensor` (a model's array to a response output), :func:`wants_binary`
and :func:`encode_response` (response to bytes and headers).

The binary tensor data extension: a body may be a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw data of every
tensor whose ``parameters.binary_data_size`` is set, in tensor order, with no
padding. Numbers are little-endian; BOOL is one byte; each BYTES element is a
4-byte little-endian length and its bytes. How values are checked, and what
happens to BYTES that are not UTF-8 and to NaN, is described in
:mod:`corral.protocol.tensors`.

Every malformed request raises :class:`~corral.errors.ProtocolError` (a
:class:`~corral.errors.SchemaError`) whose message names the input and what was
wrong.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from corral.errors import ProtocolError
from corral.protocol import strict_json
from corral.protocol.frames import request_to_frame
from corral.protocol.tensors import as_array, from_binary, infer_datatype, to_binary, to_json_data
from corral.protocol.types import InferenceRequest, InferenceResponse, TensorInput, TensorOutput

HEADER_LENGTH = "Inference-Header-Content-Length"
"""The HTTP header giving the JSON header's length when binary tensor data follows it."""

JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"


def parse_header_length(value: str | None) -> int | None:
    """Read the ``Inference-Header-Content-Length`` header value.

    Args:
        value: the header as received, or ``None`` when absent.

    Returns:
        The length, or ``None`` when the header was absent.

    Raises:
        ProtocolError: for anything but a non-negative decimal integer.
    """
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        raise ProtocolError(f"{HEADER_LENGTH} must be a non-negative integer, got {value!r}")
    return int(text)


def decode_request(
    body: bytes, header_length: int | None = None, *, max_depth: int = strict_json.DEFAULT_MAX_DEPTH
) -> InferenceRequest:
    """Parse and check an inference request body.

    Args:
        body: the HTTP request body (already decompressed).
        header_length: the ``Inference-Header-Content-Length`` header as an
            int (see :func:`parse_header_length`); ``None`` when the body is
            all JSON.
        max_depth: deepest nesting of arrays and objects in the JSON, which
            is read strictly (:func:`corral.protocol.strict_json.loads`: no
            key twice, integers within a float's range), except that the
            ``NaN`` and ``Infinity`` tritonclient writes for non-finite
            floats are read (a number past a float's range reads as
            infinity; a deployment refuses infinities before its model runs).

    Returns:
        The request, with every input's ``data`` replaced by a numpy array of
        its declared shape and dtype (see :func:`to_array`). Binary inputs
        keep their ``binary_data_size`` parameter.

    Raises:
        ProtocolError: for invalid JSON (:class:`~corral.errors.InvalidJSONError`), a header length beyond the body,
            binary sizes that do not add up to the rest of the body, unknown
            datatypes, data that does not fit its shape or datatype, bad
            shapes, duplicate names, or inputs without data.
    """
    if header_length is None:
        header, rest = body, memoryview(b"")
    else:
        if isinstance(header_length, bool) or not isinstance(header_length, int) or header_length < 0:
            raise ProtocolError(f"{HEADER_LENGTH} must be a non-negative integer, got {header_length!r}")
        if header_length > len(body):
            raise ProtocolError(f"{HEADER_LENGTH} is {header_length} but the body has only {len(body)} bytes")
        header = body[:header_length]
        # one writable copy of the binary part; the arrays decoded from it share it
        rest = memoryview(bytearray(body[header_length:]))
    where = "request body" if header_length is None else f"request JSON header ({header_length} bytes)"
    raw = strict_json.loads(header, max_depth=max_depth, what=where, allow_nan=True)
    if not isinstance(raw, dict):
        raise ProtocolError(f"an inference request must be a JSON object, got {type(raw).__name__}")
    request = _validate(raw)
    _check_unique("input", (t.name for t in request.inputs))
    _check_unique("requested output", (o.name for o in request.outputs or ()))
    chunks = _binary_chunks(request.inputs, rest, header_length)
    for tensor in request.inputs:
        what = f"input {tensor.name!r}"
        chunk = chunks.get(tensor.name)
        if chunk is not None:
            tensor.data = from_binary(chunk, tensor.datatype, tensor.shape, what)
        else:
            tensor.data = as_array(tensor.data, tensor.datatype, tensor.shape, what)
    return request


def to_array(tensor: TensorInput) -> npt.NDArray[Any]:
    """An input's data as a numpy array of its declared shape and dtype.

    JSON data may be flat or nested (row-major). BYTES give an object array of
    ``str``, or ``bytes`` for elements that are not UTF-8. After
    :func:`decode_request` this returns the already decoded array.

    Raises:
        ProtocolError: naming the input, when the data is missing or does not
            fit the datatype or shape.
    """
    return as_array(tensor.data, tensor.datatype, tensor.shape, f"input {tensor.name!r}")


def output_tensor(name: str, values: npt.NDArray[Any] | list[Any]) -> TensorOutput:
    """Wrap a model's result as a response output, inferring datatype and shape.

    Booleans give BOOL, integers INT64 (UINT64 for ``uint64``), floats FP64,
    strings and other objects BYTES. The array is kept as the output's data
    and only turned into JSON or bytes by :func:`encode_response`.

    Raises:
        ProtocolError: for values no V2 datatype can carry (complex, dates).
    """
    what = f"output {name!r}"
    if isinstance(values, np.ndarray):
        array = values
    else:
        array = np.asarray(values)
        if array.dtype.kind in "US":  # keep the exact strings (numpy pads and strips NULs)
            array = np.empty(array.shape, dtype=object)
            array[...] = values
    array, datatype = infer_datatype(array, what)
    return TensorOutput(name=name, shape=list(array.shape), datatype=datatype, data=array)


def wants_binary(request: InferenceRequest) -> set[str] | bool:
    """Which outputs the client asked to receive as binary data.

    Follows tritonclient: a request-level ``parameters.binary_data_output``
    sets the default, and each requested output's ``parameters.binary_data``
    overrides it.

    Returns:
        ``True`` or ``False`` for all outputs when the request names none;
        otherwise the set of requested output names wanted in binary.
    """
    default = _flag(request.parameters, "binary_data_output", default=False)
    if not request.outputs:
        return default
    return {out.name for out in request.outputs if _flag(out.parameters, "binary_data", default=default)}


def encode_response(
    response: InferenceResponse, *, binary_outputs: set[str] | bool = False
) -> tuple[bytes, dict[str, str]]:
    """Serialize a response, with the named outputs as binary tensor data.

    Args:
        response: the response; outputs' data may be arrays or JSON lists.
        binary_outputs: output names to send as binary data, or ``True`` for
            all (usually :func:`wants_binary` of the request).

    Returns:
        The body and the headers to send with it: ``Content-Type``
        ``application/json``, or, when any output is binary,
        ``application/octet-stream`` and ``Inference-Header-Content-Length``.
        Binary outputs carry ``parameters.binary_data_size`` and no ``data``.
        Non-finite floats in JSON outputs are written as ``null``.

    Raises:
        ProtocolError: naming the output, when its data does not fit its
            datatype or shape, or BYTES that are not UTF-8 are to go in JSON.
    """
    header: dict[str, Any] = {"model_name": response.model_name}
    for key in ("model_version", "id", "parameters"):
        value = getattr(response, key)
        if value is not None:
            header[key] = value
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    any_binary = False
    for output in response.outputs:
        what = f"output {output.name!r}"
        array = as_array(output.data, output.datatype, output.shape, what)
        entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
        parameters = dict(output.parameters or {})
        parameters.pop("binary_data_size", None)
        binary = binary_outputs is True or (not isinstance(binary_outputs, bool) and output.name in binary_outputs)
        if binary:
            chunk = to_binary(array, output.datatype, what)
            parameters["binary_data_size"] = len(chunk)
            chunks.append(chunk)
            any_binary = True
        else:
            entry["data"] = to_json_data(array, output.datatype, what)
        if parameters:
            entry["parameters"] = parameters
        outputs.append(entry)
    header["outputs"] = outputs
    try:
        text = json.dumps(header, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"the response cannot be written as JSON: {exc}") from None
    encoded = text.encode("utf-8")
    if not any_binary:
        return encoded, {"Content-Type": JSON_CONTENT_TYPE}
    headers = {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(encoded))}
    return b"".join([encoded, *chunks]), headers


# -- helpers ------------------------------------------------------------------------------------------------------


def _validate(raw: dict[str, Any]) -> InferenceRequest:
    try:
        return InferenceRequest.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem(error, raw) for error in exc.errors()[:5]]
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise ProtocolError(f"invalid inference request: {'; '.join(problems)}{more}") from None


def _problem(error: Any, raw: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    got = "" if error["type"] == "missing" else f" (got {_short(error['input'])})"
    if len(loc) >= 2 and loc[0] in ("inputs", "outputs") and isinstance(loc[1], int):
        kind = "input" if loc[0] == "inputs" else "requested output"
        items = raw.get(loc[0])
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        where = f"{kind} {name!r}" if isinstance(name, str) else f"{kind} #{loc[1]}"
        field = _path(loc[2:])
        return f"{where}: {field + ': ' if field else ''}{error['msg']}{got}"
    return f"{_path(loc) or 'request'}: {error['msg']}{got}"


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_unique(kind: str, names: Iterable[str]) -> None:
    repeated = [name for name, n in Counter(names).items() if n > 1]
    if repeated:
        raise ProtocolError(f"duplicate {kind} names: {', '.join(repr(n) for n in repeated)}")


def _binary_chunks(inputs: list[TensorInput], rest: memoryview, header_length: int | None) -> dict[str, memoryview]:
    chunks: dict[str, memoryview] = {}
    offset = 0
    for tensor in inputs:
        parameters = tensor.parameters or {}
        what = f"input {tensor.name!r}"
        if "shared_memory_region" in parameters:
            raise ProtocolError(f"{what}: the shared-memory extension is not supported; send the data in the body")
        if "binary_data_size" not in parameters:
            continue
        size = parameters["binary_data_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError(f"{what}: binary_data_size must be a non-negative integer, got {size!r}")
        if tensor.data is not None:
            raise ProtocolError(f"{what} has both JSON data and binary_data_size; send one or the other")
        if header_length is None:
            raise ProtocolError(f"{what} has binary_data_size but the request has no {HEADER_LENGTH} header")
        if offset + size > len(rest):
            raise ProtocolError(
                f"{what}: binary_data_size {size} at offset {offset} runs past the end of the binary data "
                f"({len(rest)} bytes after the {header_length}-byte JSON header)"
            )
        chunks[tensor.name] = rest[offset : offset + size]
        offset += size
    if offset != len(rest):
        raise ProtocolError(
            f"binary_data_size values add up to {offset} bytes but {len(rest)} bytes follow the "
            f"{header_length}-byte JSON header"
        )
    return chunks


def _flag(parameters: dict[str, Any] | None, key: str, *, default: bool) -> bool:
    value = (parameters or {}).get(key)
    return value if isinstance(value, bool) else default


__all__ = [
    "BINARY_CONTENT_TYPE",
    "HEADER_LENGTH",
    "JSON_CONTENT_TYPE",
    "decode_request",
    "encode_response",
    "output_tensor",
    "parse_header_length",
    "request_to_frame",
    "to_array",
    "wants_binary",
]
