"""The Open Inference Protocol (KServe V2) messages as pydantic models.

Field names follow the V2 REST spec, so ``model_validate`` on a parsed request
body and ``model_dump(exclude_none=True)`` on a response give spec JSON. The
models only check structure (names are strings, shapes are lists of
non-negative integers); datatypes and data are checked by
:mod:`corral.protocol.codec`, which raises :class:`~corral.errors.ProtocolError`.

A tensor's ``data`` is either the JSON list the spec describes (flat or nested,
row-major) or a numpy array: :func:`~corral.protocol.codec.decode_request`
replaces every input's data with an array of its declared shape and dtype, and
:func:`~corral.protocol.codec.output_tensor` keeps the model's array, so large
tensors are never turned into Python lists unless they are sent as JSON.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_serializer

DATATYPES: tuple[str, ...] = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)
"""The V2 tensor datatypes, in the spec's order."""

NUMPY_DTYPES: MappingProxyType[str, np.dtype[Any]] = MappingProxyType(
    {
        "BOOL": np.dtype(np.bool_),
        "UINT8": np.dtype("<u1"),
        "UINT16": np.dtype("<u2"),
        "UINT32": np.dtype("<u4"),
        "UINT64": np.dtype("<u8"),
        "INT8": np.dtype("<i1"),
        "INT16": np.dtype("<i2"),
        "INT32": np.dtype("<i4"),
        "INT64": np.dtype("<i8"),
        "FP16": np.dtype("<f2"),
        "FP32": np.dtype("<f4"),
        "FP64": np.dtype("<f8"),
        "BYTES": np.dtype(object),
    }
)
"""Each V2 datatype's numpy dtype (little-endian, as the binary extension sends them).

``BYTES`` tensors are object arrays of ``str`` (or ``bytes`` for values that
are not UTF-8 text).
"""

Dimension = Annotated[int, Field(strict=True, ge=0)]
"""One dimension of a concrete tensor shape: a non-negative integer, never a bool or float."""

Parameters = dict[str, Any]
"""The V2 ``$parameters`` object: names to booleans, numbers or strings."""

TensorData = Annotated[
    npt.NDArray[Any] | list[Any] | None,
    WithJsonSchema({"type": "array", "items": {}}),
]
"""A tensor's data: the spec's JSON list, or a numpy array of the tensor's shape."""


class _Message(BaseModel):
    """Shared settings: numpy arrays allowed as data, unknown JSON fields ignored."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="ignore", protected_namespaces=())


class _Tensor(_Message):
    """Fields common to request inputs and response outputs."""

    name: str
    shape: list[Dimension]
    datatype: str
    parameters: Parameters | None = None
    data: TensorData = None

    @field_serializer("data")
    def _serialize_data(self, data: npt.NDArray[Any] | list[Any] | None) -> list[Any] | None:
        """Arrays dump as flat row-major lists (for logging and ``model_dump_json``)."""
        if isinstance(data, np.ndarray):
            return list(data.ravel().tolist())
        return data


class TensorInput(_Tensor):
    """One ``$request_input``: a named tensor with shape, datatype and data.

    Attributes:
        name: the input's name.
        shape: the tensor's dimensions.
        datatype: one of :data:`DATATYPES`.
        parameters: optional; ``binary_data_size`` marks data sent after the JSON header.
        data: the JSON data (flat or nested), or a numpy array once decoded.
    """


class RequestedOutput(_Message):
    """One ``$request_output``: an output the client wants, with options.

    Attributes:
        name: the output's name.
        parameters: optional; ``binary_data: true`` asks for it as binary data.
    """

    name: str
    parameters: Parameters | None = None


class InferenceRequest(_Message):
    """An ``$inference_request``: the body of ``POST /v2/models/{name}/infer``.

    Attributes:
        id: optional request id, echoed in the response.
        parameters: optional; tritonclient sends ``binary_data_output`` here.
        inputs: the input tensors.
        outputs: the outputs asked for; ``None`` means all, with default options.
    """

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[TensorInput]
    outputs: list[RequestedOutput] | None = None


class TensorOutput(_Tensor):
    """One ``$response_output``: a named result tensor.

    Attributes:
        name: the output's name.
        shape: the tensor's dimensions.
        datatype: one of :data:`DATATYPES`.
        parameters: optional; the codec sets ``binary_data_size`` for binary outputs.
        data: a numpy array (see :func:`~corral.protocol.codec.output_tensor`) or a JSON list.
    """


class InferenceResponse(_Message):
    """An ``$inference_response``.

    Attributes:
        model_name: the model that answered.
        model_version: the version that answered, as a string.
        id: the request's id, if it had one.
        parameters: optional response parameters.
        outputs: the result tensors.
    """

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[TensorOutput]


class MetadataTensor(_Message):
    """A ``$metadata_tensor``: name, datatype and shape of a model input or output.

    Attributes:
        name: the tensor's name.
        datatype: one of :data:`DATATYPES`.
        shape: the dimensions; ``-1`` marks a variable one (such as the batch).
    """

    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(_Message):
    """``GET /v2``: the server's name, version and supported extensions.

    Attributes:
        name: the server's name.
        version: the server's version.
        extensions: protocol extensions, such as ``binary_tensor_data``.
    """

    name: str
    version: str
    extensions: list[str] = Field(default_factory=list)


class ModelMetadata(_Message):
    """``GET /v2/models/{name}[/versions/{v}]``: what a model takes and returns.

    Attributes:
        name: the model's name.
        versions: the versions that can be asked for, as strings.
        platform: the framework, such as ``sklearn``.
        inputs: the input tensors.
        outputs: the output tensors.
    """

    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str
    inputs: list[MetadataTensor] = Field(default_factory=list)
    outputs: list[MetadataTensor] = Field(default_factory=list)


class ErrorResponse(_Message):
    """The body of every failed V2 call: ``{"error": "..."}`` (tritonclient reads ``error``).

    Attributes:
        error: what went wrong.
    """

    error: str


__all__ = [
    "DATATYPES",
    "NUMPY_DTYPES",
    "Dimension",
    "ErrorResponse",
    "InferenceRequest",
    "InferenceResponse",
    "MetadataTensor",
    "ModelMetadata",
    "Parameters",
    "RequestedOutput",
    "ServerMetadata",
    "TensorData",
    "TensorInput",
    "TensorOutput",
]
