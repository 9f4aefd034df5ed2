"""The Open Inference Protocol (KServe V2) REST wire format, with no HTTP in it.

Pure types and codecs that the model server uses; imports nothing from corral
but :mod:`corral.errors`. Every malformed message raises
:class:`~corral.errors.ProtocolError`, naming the tensor at fault.

* ``types``: the V2 messages as pydantic models (``InferenceRequest``,
  ``InferenceResponse``, ``ServerMetadata``, ``ModelMetadata``...), the
  ``DATATYPES`` and their numpy dtypes.
* ``codec``: start here. ``decode_request`` (JSON or binary tensor data
  extension), ``request_to_frame`` (inputs to a tabular frame),
  ``output_tensor``, ``wants_binary`` and ``encode_response``.
* ``tensors``: one tensor's data to and from arrays, JSON lists and bytes; the
  decisions on BYTES that are not UTF-8 and on NaN live there.
* ``frames``: the three input layouts ``request_to_frame`` accepts.
* ``strict_json``: the JSON every request body is read with (UTF-8, no NaN,
  no key twice, numbers within a float's range, bounded nesting).
"""

from corral.protocol.codec import (
    HEADER_LENGTH,
    decode_request,
    encode_response,
    output_tensor,
    parse_header_length,
    request_to_frame,
    to_array,
    wants_binary,
)
from corral.protocol.types import (
    DATATYPES,
    NUMPY_DTYPES,
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    ModelMetadata,
    RequestedOutput,
    ServerMetadata,
    TensorInput,
    TensorOutput,
)

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "NUMPY_DTYPES",
    "ErrorResponse",
    "InferenceRequest",
    "InferenceResponse",
    "MetadataTensor",
    "ModelMetadata",
    "RequestedOutput",
    "ServerMetadata",
    "TensorInput",
    "TensorOutput",
    "decode_request",
    "encode_response",
    "output_tensor",
    "parse_header_length",
    "request_to_frame",
    "to_array",
    "wants_binary",
]
