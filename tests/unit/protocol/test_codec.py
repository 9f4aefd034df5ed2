from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corral.errors import ProtocolError, SchemaError
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
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    TensorInput,
    TensorOutput,
)

Client = triton.InferenceServerClient
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
TEXT = st.text(st.characters(codec="utf-8"), max_size=6)


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    """A datatype and an array of it; floats include NaN and ±inf, BYTES any UTF-8 text."""
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(SHAPES)
    if datatype == "BYTES":
        items = draw(st.lists(TEXT, min_size=math.prod(shape), max_size=math.prod(shape)))
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return datatype, array.reshape(shape)
    return datatype, draw(hnp.arrays(NUMPY_DTYPES[datatype], shape))


def _request_body(
    arrays: dict[str, tuple[str, np.ndarray]], binary: dict[str, bool], **kwargs: Any
) -> tuple[bytes, int | None]:
    inputs = []
    for name, (datatype, array) in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary[name])
        inputs.append(tensor)
    body, header_length = Client.generate_request_body(inputs, **kwargs)
    return body, header_length


def _assert_same(actual: np.ndarray, expected: np.ndarray, datatype: str) -> None:
    assert actual.shape == expected.shape
    if datatype != "BYTES":
        assert actual.dtype == NUMPY_DTYPES[datatype]
    np.testing.assert_array_equal(actual, expected)


# -- round trips with the real tritonclient -------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(tensors=st.lists(tensors(), min_size=1, max_size=3), binary=st.lists(st.booleans(), min_size=3, max_size=3))
def test_tritonclient_requests_decode_to_the_same_arrays(
    tensors: list[tuple[str, np.ndarray]], binary: list[bool]
) -> None:
    arrays = {f"in{i}": tensor for i, tensor in enumerate(tensors)}
    flags = {name: binary[i] for i, name in enumerate(arrays)}
    body, header_length = _request_body(arrays, flags)
    request = decode_request(body, header_length)
    assert [t.name for t in request.inputs] == list(arrays)
    for tensor in request.inputs:
        datatype, expected = arrays[tensor.name]
        assert tensor.datatype == datatype
        _assert_same(to_array(tensor), expected, datatype)


@settings(max_examples=150, deadline=None)
@given(tensors=st.lists(tensors(), min_size=1, max_size=3), binary=st.lists(st.booleans(), min_size=3, max_size=3))
def test_encoded_responses_parse_in_tritonclient(tensors: list[tuple[str, np.ndarray]], binary: list[bool]) -> None:
    outputs = [
        TensorOutput(name=f"out{i}", shape=list(array.shape), datatype=datatype, data=array)
        for i, (datatype, array) in enumerate(tensors)
    ]
    wanted = {out.name for out, flag in zip(outputs, binary, strict=False) if flag}
    body, headers = encode_response(InferenceResponse(model_name="m", id="r1", outputs=outputs), binary_outputs=wanted)
    length = headers.get(HEADER_LENGTH)
    assert headers["Content-Type"] == ("application/octet-stream" if wanted else "application/json")
    result = Client.parse_response_body(body, header_length=int(length) if length else None)
    assert result.get_response()["id"] == "r1"
    for out, (datatype, array) in zip(outputs, tensors, strict=True):
        expected = array
        if out.name in wanted and datatype == "BYTES":
            expected = np.array([s.encode() for s in array.ravel()] or [], dtype=object).reshape(array.shape)
        if out.name not in wanted and datatype.startswith("FP"):
            expected = np.where(np.isfinite(array), array, np.nan).astype(array.dtype)  # JSON: null, read as NaN
        _assert_same(result.as_numpy(out.name), expected, datatype)


def test_json_data_may_be_nested_row_major() -> None:
    body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "INT32", "data": [[1, 2, 3], [4, 5, 6]]}]}
    request = decode_request(json.dumps(body).encode(), None)
    np.testing.assert_array_equal(to_array(request.inputs[0]), np.arange(1, 7, dtype=np.int32).reshape(2, 3))
    by_hand = TensorInput(name="s", shape=[1, 2], datatype="BYTES", data=[["a", "b"]])
    assert to_array(by_hand).tolist() == [["a", "b"]]


def test_json_fp_data_accepts_null_as_nan_and_big_integers_work() -> None:
    body = {
        "inputs": [
            {"name": "f", "shape": [3], "datatype": "FP32", "data": [1.5, None, 2]},
            {"name": "u", "shape": [2], "datatype": "UINT64", "data": [2**64 - 1, 0]},
            {"name": "i", "shape": [2], "datatype": "INT64", "data": [-(2**63), 2**63 - 1]},
        ]
    }
    f, u, i = (to_array(t) for t in decode_request(json.dumps(body).encode()).inputs)
    np.testing.assert_array_equal(f, np.array([1.5, np.nan, 2.0], dtype=np.float32))
    assert u.tolist() == [2**64 - 1, 0]
    assert i.tolist() == [-(2**63), 2**63 - 1]


def test_binary_bytes_that_are_not_utf8_stay_bytes() -> None:
    array = np.array([b"\xff\xfe", b"ok"], dtype=object)
    body, header_length = _request_body({"s": ("BYTES", array)}, {"s": True})
    assert to_array(decode_request(body, header_length).inputs[0]).tolist() == [b"\xff\xfe", "ok"]


def test_binary_inputs_are_writable_arrays() -> None:
    body, header_length = _request_body({"x": ("FP32", np.ones(3, dtype=np.float32))}, {"x": True})
    array = to_array(decode_request(body, header_length).inputs[0])
    array[0] = 2.0
    assert array.tolist() == [2.0, 1.0, 1.0]


# -- what the client asked for ------------------------------------------------------------------------------------


def test_wants_binary_follows_tritonclient_defaults() -> None:
    arrays = {"x": ("FP64", np.zeros(2))}
    flags = {"x": False}
    body, _ = _request_body(arrays, flags)  # no outputs named: tritonclient sets binary_data_output
    assert wants_binary(decode_request(body)) is True
    outputs = [triton.InferRequestedOutput("a"), triton.InferRequestedOutput("b", binary_data=False)]
    body, _ = _request_body(arrays, flags, outputs=outputs)
    assert wants_binary(decode_request(body)) == {"a"}


def test_wants_binary_per_output_overrides_request_default() -> None:
    tensor = TensorInput(name="x", shape=[0], datatype="FP64", data=[])
    plain = InferenceRequest(inputs=[tensor])
    assert wants_binary(plain) is False
    request = InferenceRequest(
        parameters={"binary_data_output": True},
        inputs=[tensor],
        outputs=[RequestedOutput(name="a"), RequestedOutput(name="b", parameters={"binary_data": False})],
    )
    assert wants_binary(request) == {"a"}


# -- outputs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "datatype", "dtype"),
    [
        (np.array([1, 2], dtype=np.int32), "INT64", np.int64),
        (np.array([1, 2], dtype=np.uint8), "INT64", np.int64),
        (np.array([1, 2], dtype=np.uint64), "UINT64", np.uint64),
        (np.array([0.5], dtype=np.float32), "FP64", np.float64),
        (np.array([True]), "BOOL", np.bool_),
        (["a", "b\x00"], "BYTES", object),
        (np.array(["x", "yz"]), "BYTES", object),
        (np.array([1, 2], dtype=object), "INT64", np.int64),
        (np.array([1, 2.5], dtype=object), "FP64", np.float64),
        (np.array(["a", 1], dtype=object), "BYTES", object),
        ([[1.0, 2.0], [3.0, 4.0]], "FP64", np.float64),
    ],
)
def test_output_tensor_infers_datatype_and_shape(values: Any, datatype: str, dtype: Any) -> None:
    tensor = output_tensor("y", values)
    assert tensor.datatype == datatype
    assert isinstance(tensor.data, np.ndarray)
    assert tensor.data.dtype == np.dtype(dtype)
    assert tensor.shape == list(np.shape(values))
    assert tensor.data.tolist() == np.asarray(values, dtype=object).tolist()


def test_output_tensor_refuses_complex_values() -> None:
    with pytest.raises(ProtocolError, match="output 'y'"):
        output_tensor("y", np.array([1j]))


def test_non_finite_floats_become_null_in_json_and_stay_exact_in_binary() -> None:
    values = np.array([1.0, np.nan, np.inf, -np.inf])
    response = InferenceResponse(model_name="m", outputs=[output_tensor("y", values)])
    body, headers = encode_response(response)
    assert headers == {"Content-Type": "application/json"}

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    assert json.loads(body, parse_constant=refuse)["outputs"][0]["data"] == [1.0, None, None, None]
    np.testing.assert_array_equal(Client.parse_response_body(body).as_numpy("y"), [1.0, np.nan, np.nan, np.nan])
    body, headers = encode_response(response, binary_outputs=True)
    result = Client.parse_response_body(body, header_length=int(headers[HEADER_LENGTH]))
    np.testing.assert_array_equal(result.as_numpy("y"), values)


def test_binary_response_layout() -> None:
    response = InferenceResponse(
        model_name="m",
        model_version="2",
        outputs=[output_tensor("a", np.array([1, 2], dtype=np.int64)), output_tensor("s", ["hi"])],
    )
    body, headers = encode_response(response, binary_outputs={"a", "s", "absent"})
    length = int(headers[HEADER_LENGTH])
    header = json.loads(body[:length])
    assert header["model_version"] == "2"
    assert [o["parameters"] for o in header["outputs"]] == [{"binary_data_size": 16}, {"binary_data_size": 6}]
    assert all("data" not in o for o in header["outputs"])
    assert body[length:] == np.array([1, 2], dtype="<i8").tobytes() + struct.pack("<I", 2) + b"hi"


def test_json_response_refuses_bytes_that_are_not_text() -> None:
    response = InferenceResponse(model_name="m", outputs=[output_tensor("y", np.array([b"\xff"], dtype=object))])
    with pytest.raises(ProtocolError, match=r"output 'y'.*binary"):
        encode_response(response)
    body, headers = encode_response(response, binary_outputs={"y"})
    assert Client.parse_response_body(body, header_length=int(headers[HEADER_LENGTH])).as_numpy("y").tolist() == [
        b"\xff"
    ]


def test_output_data_that_does_not_fit_is_named() -> None:
    bad = TensorOutput(name="y", shape=[3], datatype="FP32", data=[1.0])
    with pytest.raises(ProtocolError, match=r"output 'y': shape \[3\] holds 3 elements but the data has 1"):
        encode_response(InferenceResponse(model_name="m", outputs=[bad]))


# -- malformed requests -------------------------------------------------------------------------------------------


def _json(*inputs: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **fields}).encode()


def _input(name: str = "x", shape: Any = (2,), datatype: str = "FP32", data: Any = (1.0, 2.0), **extra: Any) -> dict:
    tensor = {"name": name, "shape": list(shape) if isinstance(shape, tuple) else shape, "datatype": datatype}
    if data is not None:
        tensor["data"] = list(data) if isinstance(data, tuple) else data
    return {**tensor, **extra}


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"\xff\xfe", None, "not valid JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b'{"inputs": []}', 20, "Inference-Header-Content-Length is 20 but the body has only 14 bytes"),
        (b'{"inputs": []}', -1, "non-negative"),
        (b'{"id": 1, "inputs": []}', None, "id: Input should be a valid string"),
        (b'{"outputs": []}', None, "inputs: Field required"),
    ],
)
def test_malformed_bodies(body: bytes, header_length: int | None, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_request(body, header_length)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (_input(datatype="FLOAT"), "input 'x': unknown datatype 'FLOAT'; expected one of BOOL,"),
        (_input(shape=(3,)), r"input 'x': shape \[3\] holds 3 elements but the data has 2"),
        (_input(data=[[1.0], [2.0, 3.0]]), "input 'x': nested data is ragged"),
        (_input(data=["1.5", "2"]), "input 'x': FP32 data must be numbers, got '1.5'"),
        (_input(data=[True, False]), "input 'x': FP32 data must be numbers, got True"),
        (_input(data=[1e39, 1.0]), "input 'x': value 1e\\+39 is out of range for FP32"),
        (_input(datatype="INT32", data=[1, 2.5]), "input 'x': INT32 data must be integers, got 2.5"),
        (_input(datatype="INT64", data=[1, None]), "input 'x': INT64 data must be integers"),
        (_input(datatype="UINT8", data=[1, 300]), r"input 'x': value 300 is out of range for UINT8 \(0..255\)"),
        (_input(datatype="UINT64", data=[-1, 2**63]), "input 'x': value -1 is out of range for UINT64"),
        (_input(datatype="INT64", data=[1, 2**64]), "input 'x': value 18446744073709551616 is out of range"),
        (_input(datatype="BOOL", data=[1, 0]), "input 'x': BOOL data must be true or false, got 1"),
        (_input(datatype="BYTES", data=["a", 1]), "input 'x': BYTES data must be strings, got 1"),
        (_input(datatype="INT8", data=[{"a": 1}, 2]), "input 'x': INT8 data must be integers, got {'a': 1}"),
        (_input(shape=[2.5]), r"input 'x': shape\[0\]: Input should be a valid integer \(got 2.5\)"),
        (_input(shape=[-1, 2]), r"input 'x': shape\[0\]: Input should be greater than or equal to 0"),
        (_input(shape=["2"]), r"input 'x': shape\[0\]: Input should be a valid integer"),
        (_input(shape=[True, 2]), r"input 'x': shape\[0\]: Input should be a valid integer"),
        (_input(data=None), "input 'x' has no data"),
        (_input(parameters={"shared_memory_region": "r"}), "input 'x': the shared-memory extension is not supported"),
        (
            _input(data=None, parameters={"binary_data_size": 8}),
            "input 'x' has binary_data_size but the request has no",
        ),
        ({"name": "x", "shape": [1]}, "input 'x': datatype: Field required"),
    ],
)
def test_bad_inputs_are_named(tensor: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        decode_request(_json(tensor))
    assert isinstance(caught.value, SchemaError)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ProtocolError, match="duplicate input names: 'x'"):
        decode_request(_json(_input(), _input(), _input("y")))
    with pytest.raises(ProtocolError, match="duplicate requested output names: 'p'"):
        decode_request(_json(_input(), outputs=[{"name": "p"}, {"name": "p"}]))


def _binary_body() -> tuple[bytes, int]:
    arrays = {"a": ("FP32", np.arange(2, dtype=np.float32)), "b": ("INT64", np.arange(3))}
    body, header_length = _request_body(arrays, {"a": True, "b": True})
    assert header_length is not None
    return body, header_length


def test_binary_sizes_must_add_up_to_the_body() -> None:
    body, header_length = _binary_body()
    with pytest.raises(ProtocolError, match="add up to 32 bytes but 35 bytes follow the"):
        decode_request(body + b"xyz", header_length)
    with pytest.raises(ProtocolError, match="input 'b': binary_data_size 24 at offset 8 runs past the end"):
        decode_request(body[:-1], header_length)
    header = json.loads(body[:header_length])
    header["inputs"][0]["parameters"]["binary_data_size"] = 6
    header["inputs"][1]["parameters"]["binary_data_size"] = 26
    text = json.dumps(header).encode()
    with pytest.raises(ProtocolError, match=r"input 'a': binary_data_size is 6 bytes but shape \[2\] of FP32 needs 8"):
        decode_request(text + body[header_length:], len(text))


@pytest.mark.parametrize(
    ("datatype", "raw", "message"),
    [
        ("BYTES", b"\x05\x00\x00\x00ab", "input 'x': BYTES element 0 claims 5 bytes but only 2 remain"),
        ("BYTES", b"\x01\x00\x00\x00a\x01\x00", "input 'x': BYTES element 1 has a truncated 4-byte length prefix"),
        ("BYTES", b"\x01\x00\x00\x00a", r"input 'x': shape \[2\] holds 2 elements but the data has 1"),
        ("BOOL", b"\x01\x02", "input 'x': BOOL binary data must hold only bytes 0 and 1"),
        ("UINT8", b"\x01", r"input 'x': binary_data_size is 1 bytes but shape \[2\] of UINT8 needs 2"),
        ("FP8", b"\x01\x02", "input 'x': unknown datatype 'FP8'"),
    ],
)
def test_bad_binary_data_is_named(datatype: str, raw: bytes, message: str) -> None:
    header = _json(_input(datatype=datatype, data=None, parameters={"binary_data_size": len(raw)}))
    with pytest.raises(ProtocolError, match=message):
        decode_request(header + raw, len(header))


def test_binary_and_json_data_together_are_refused() -> None:
    header = _json(_input(parameters={"binary_data_size": 8}))
    with pytest.raises(ProtocolError, match="input 'x' has both JSON data and binary_data_size"):
        decode_request(header + bytes(8), len(header))


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("0", 0), (" 120 ", 120)])
def test_parse_header_length(value: str | None, expected: int | None) -> None:
    assert parse_header_length(value) == expected


@pytest.mark.parametrize("value", ["", "-1", "1.5", "abc", "١٢"])
def test_parse_header_length_refuses_garbage(value: str) -> None:
    with pytest.raises(ProtocolError, match=HEADER_LENGTH):
        parse_header_length(value)


# -- tabular frames -----------------------------------------------------------------------------------------------

COLUMNS = ["age", "country", "member"]


def _request(*inputs: TensorInput) -> InferenceRequest:
    return decode_request(InferenceRequest(inputs=list(inputs)).model_dump_json(exclude_none=True).encode())


def test_frame_from_one_input_per_column_in_any_order() -> None:
    request = _request(
        TensorInput(name="member", shape=[2], datatype="BOOL", data=[True, False]),
        TensorInput(name="country", shape=[2, 1], datatype="BYTES", data=[["NO"], ["SE"]]),
        TensorInput(name="age", shape=[2], datatype="INT32", data=[31, 45]),
    )
    frame = request_to_frame(request, COLUMNS)
    assert list(frame.columns) == COLUMNS
    assert frame["age"].dtype == np.int32
    assert frame["member"].dtype == np.bool_
    assert frame.to_dict("list") == {"age": [31, 45], "country": ["NO", "SE"], "member": [True, False]}


def test_frame_from_one_matrix_input() -> None:
    request = _request(TensorInput(name="input-0", shape=[2, 3], datatype="FP32", data=[1, 2, 3, 4, 5, 6]))
    frame = request_to_frame(request, ["a", "b", "c"])
    assert frame.to_dict("list") == {"a": [1.0, 4.0], "b": [2.0, 5.0], "c": [3.0, 6.0]}
    strings = _request(TensorInput(name="x", shape=[1, 2], datatype="BYTES", data=["p", "q"]))
    assert request_to_frame(strings, ["a", "b"]).to_dict("list") == {"a": ["p"], "b": ["q"]}


def test_frame_from_a_single_row() -> None:
    request = _request(TensorInput(name="row", shape=[3], datatype="FP64", data=[1.5, 2.5, np.nan]))
    frame = request_to_frame(request, ["a", "b", "c"])
    assert len(frame) == 1
    assert frame.iloc[0].tolist()[:2] == [1.5, 2.5]
    assert math.isnan(frame.iloc[0, 2])


def test_frames_feed_signature_validation() -> None:
    from corral.core.schema import Signature

    training = pd.DataFrame({"age": [20, 30], "country": ["NO", "SE"], "member": [True, False]})
    request = _request(
        TensorInput(name="age", shape=[1], datatype="INT32", data=[41]),
        TensorInput(name="country", shape=[1], datatype="BYTES", data=["NO"]),
        TensorInput(name="member", shape=[1], datatype="BOOL", data=[False]),
    )
    frame = Signature.infer(training).validate(request_to_frame(request, COLUMNS))
    assert frame.to_dict("list") == {"age": [41], "country": ["NO"], "member": [False]}


def test_frame_names_missing_and_unexpected_inputs_at_once() -> None:
    request = _request(
        TensorInput(name="age", shape=[1], datatype="INT64", data=[1]),
        TensorInput(name="colour", shape=[1], datatype="BYTES", data=["red"]),
    )
    with pytest.raises(ProtocolError, match="missing inputs: country, member; unexpected inputs: colour"):
        request_to_frame(request, COLUMNS)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "the request has no inputs"),
        (
            [TensorInput(name="a", shape=[2], datatype="FP64", data=[1, 2])],
            "missing inputs: b",
        ),
        (
            [TensorInput(name="x", shape=[3], datatype="FP64", data=[1, 2, 3])],
            r"unexpected inputs: x\).*one input of shape \[N, 2\]",
        ),
        (
            [
                TensorInput(name="a", shape=[2], datatype="FP64", data=[1, 2]),
                TensorInput(name="b", shape=[3], datatype="FP64", data=[1, 2, 3]),
            ],
            "column inputs must all have the same length, got a=2, b=3",
        ),
        (
            [
                TensorInput(name="a", shape=[1, 2], datatype="FP64", data=[1, 2]),
                TensorInput(name="b", shape=[1], datatype="FP64", data=[1]),
            ],
            r"input 'a' has shape \[1, 2\]; a column input must have shape \[N\] or \[N, 1\]",
        ),
        (
            [
                TensorInput(name="a", shape=[1], datatype="FP64", data=[1]),
                TensorInput(name="b", shape=[1], datatype="BYTES", data=np.array([b"\xff"], dtype=object)),
            ],
            "input 'b' holds BYTES that are not UTF-8 text",
        ),
        (
            [
                TensorInput(name="a", shape=[1], datatype="FP64", data=[1]),
                TensorInput(name="a", shape=[1], datatype="FP64", data=[1]),
                TensorInput(name="b", shape=[1], datatype="FP64", data=[1]),
            ],
            "duplicate inputs: a",
        ),
        (
            [
                TensorInput(name="a", shape=[2], datatype="FP64", data=["x", "y"]),
                TensorInput(name="b", shape=[2], datatype="FP64", data=[1, 2]),
            ],
            "input 'a': FP64 data must be numbers, got 'x'",
        ),
    ],
)
def test_frame_errors(inputs: list[TensorInput], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        request_to_frame(InferenceRequest(inputs=inputs), ["a", "b"])
