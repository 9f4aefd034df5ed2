from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from tritonclient.utils import triton_to_np_dtype

from corral import protocol
from corral.protocol.types import (
    DATATYPES,
    NUMPY_DTYPES,
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ServerMetadata,
    TensorInput,
    TensorOutput,
)


def test_datatypes_are_the_spec_list_and_match_tritonclient_dtypes() -> None:
    assert DATATYPES == (
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
    assert tuple(NUMPY_DTYPES) == DATATYPES
    for datatype, dtype in NUMPY_DTYPES.items():
        assert dtype == np.dtype(triton_to_np_dtype(datatype)), datatype
        assert dtype.byteorder in "<|="  # little-endian or single byte, as the binary extension sends them


def test_spec_request_example_parses_and_ignores_unknown_fields() -> None:
    body = {
        "id": "42",
        "parameters": {"binary_data_output": True},
        "inputs": [
            {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
            {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True, False, True]},
        ],
        "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
        "something_new": 1,
    }
    request = InferenceRequest.model_validate(body)
    assert request.id == "42"
    assert [t.name for t in request.inputs] == ["input0", "input1"]
    assert request.inputs[0].shape == [2, 2]
    assert request.outputs is not None
    assert request.outputs[0].parameters == {"binary_data": True}
    assert InferenceRequest.model_validate({"inputs": []}).outputs is None


@pytest.mark.parametrize("shape", [[2.0], [2.5], ["3"], [True], [-1], 3])
def test_tensor_shapes_must_be_non_negative_integers(shape: object) -> None:
    with pytest.raises(ValidationError):
        TensorInput.model_validate({"name": "x", "shape": shape, "datatype": "FP32", "data": [1.0]})


def test_array_data_is_kept_and_dumps_as_a_flat_list() -> None:
    tensor = TensorOutput(name="y", shape=[2, 2], datatype="INT64", data=np.arange(4).reshape(2, 2))
    assert isinstance(tensor.data, np.ndarray)
    assert tensor.model_dump(exclude_none=True) == {
        "name": "y",
        "shape": [2, 2],
        "datatype": "INT64",
        "data": [0, 1, 2, 3],
    }
    assert json.loads(tensor.model_dump_json())["data"] == [0, 1, 2, 3]
    listed = TensorInput(name="x", shape=[2], datatype="FP32", data=[1.0, 2.0])
    assert listed.data == [1.0, 2.0]


def test_response_dump_is_spec_json_and_model_fields_do_not_warn() -> None:
    response = InferenceResponse(model_name="fraud", model_version="3", outputs=[])
    assert response.model_dump(exclude_none=True) == {"model_name": "fraud", "model_version": "3", "outputs": []}


def test_json_schemas_can_be_generated_for_openapi() -> None:
    for model in (InferenceRequest, InferenceResponse, ModelMetadata, ServerMetadata, ErrorResponse):
        schema = model.model_json_schema()
        assert schema["type"] == "object"


def test_metadata_models() -> None:
    server = ServerMetadata(name="corral", version="0.1.0", extensions=["binary_tensor_data"])
    assert server.model_dump() == {"name": "corral", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    model = ModelMetadata.model_validate(
        {
            "name": "fraud",
            "versions": ["3"],
            "platform": "sklearn",
            "inputs": [{"name": "amount", "datatype": "FP64", "shape": [-1]}],
            "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
        }
    )
    assert model.inputs[0].shape == [-1]
    assert ModelMetadata(name="m", platform="onnx").versions == []
    assert ErrorResponse(error="boom").model_dump() == {"error": "boom"}


def test_package_exports_are_present() -> None:
    for name in protocol.__all__:
        assert getattr(protocol, name) is not None
