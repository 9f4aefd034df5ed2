"""corral.protocol.strict_json: RFC 8259 and nothing more, within limits, and the same values as json reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.errors import InvalidJSONError, ProtocolError
from corral.protocol.strict_json import DEFAULT_MAX_DEPTH, loads

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None)
@given(value=JSON)
def test_reads_what_json_writes_as_json_reads_it(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False), json.dumps(value, indent=2)):
        assert loads(text.encode()) == json.loads(text)


@settings(max_examples=100, deadline=None)
@given(value=st.dictionaries(st.text(max_size=6), JSON, min_size=1, max_size=5), data=st.data())
def test_any_repeated_key_is_found(value: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(value)))
    text = json.dumps(value)
    repeated = text[:-1] + ", " + json.dumps(key) + ": " + json.dumps(data.draw(JSON)) + "}"
    with pytest.raises(InvalidJSONError, match="twice in one object"):
        loads(repeated.encode())


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "is empty"),
        (b" \n\t", "is empty"),
        (b"{", "not valid JSON"),
        (b"[1, 2,]", "not valid JSON"),
        (b"{} {}", "not valid JSON"),
        (b"[NaN]", "NaN and Infinity are not JSON"),
        (b'{"a": -Infinity}', "NaN and Infinity are not JSON"),
        (b"[\n  1,\n  Infinity]", "NaN and Infinity are not JSON"),
        (b"[1e309]", "too large for a 64-bit float"),
        (b"[-1e400, 1]", "too large for a 64-bit float"),
        (b"1e309", "too large for a 64-bit float"),
        (b"[" + b"9" * 400 + b"]", "beyond a 64-bit float's range"),
        (b"[1.5, -" + b"9" * 400 + b"]", "beyond a 64-bit float's range"),
        (b"[" + b"9" * 5000 + b"]", "out of range"),
        (b'{"a": 1, "a": 1}', "the key 'a' twice"),
        (b'{"a": {"b": 1, "b": 2}}', "the key 'b' twice"),
        (b'[{"x": "12:00", "x": "13:00"}]', "the key 'x' twice"),  # colons in strings do not hide it
        (b'{"\\u0061": 1, "a": 2}', "the key 'a' twice"),  # nor escapes
        (b'{"a": "\\u003a", "a": 1, "b": 2}', "the key 'a' twice"),  # nor an escaped colon
        (b"\xef\xbb\xbf{}", "byte-order mark"),
        (b'["\xff"]', "not UTF-8 (byte 0xff at offset 2)"),
        (b'["\\ud800"]', "lone surrogate"),
        (b"[" * 33 + b"]" * 33, "deeper than 32 levels"),
        (b"[" * 100_000, "deeper than 32 levels"),
        (b'{"a": ' * 40 + b"1" + b"}" * 40, "deeper than 32 levels"),
    ],
)
def test_refusals_name_the_rule(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidJSONError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as caught:
        loads(body)
    assert isinstance(caught.value, ProtocolError)  # a SchemaError: every caller already answers 400


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEFAULT_MAX_DEPTH + b"]" * DEFAULT_MAX_DEPTH,
        b'{"a": "x:y", "b": "::", "c:d": 1}',
        b'{"a": "\\u00e9\\n\\"", "b": [1, 2.5, true, null]}',
        b"[1e308, 1e308, -1e308, 1.7976931348623157e308]",  # a sum that overflows is no overflowing number
        b"[" + b"9" * 308 + b"]",
        b'"\\ud83d\\ude00"',
        b"0",
        b"null",
    ],
)
def test_valid_documents_read_as_json_reads_them(body: bytes) -> None:
    assert loads(body) == json.loads(body)


def test_depth_is_configurable_and_what_names_the_body() -> None:
    assert loads(b"[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(InvalidJSONError, match=r"request JSON header .12 bytes. nests .* deeper than 2 levels"):
        loads(b"[[[1]]]", max_depth=2, what="request JSON header (12 bytes)")


def test_nan_and_infinity_when_allowed() -> None:
    assert loads(b"[NaN, Infinity, -Infinity, 1e309]", allow_nan=True)[1:] == [
        float("inf"),
        float("-inf"),
        float("inf"),
    ]
    with pytest.raises(InvalidJSONError, match="twice"):
        loads(b'{"a": NaN, "a": 1}', allow_nan=True)


@pytest.mark.parametrize(
    "body", [b"[" * 5_000_000, b'{"a":' * 1_000_000, b"[" + b"1," * 1_000_000 + b"1e309]"], ids=["[", "{", "long"]
)
def test_hostile_bodies_are_refused_without_recursing(body: bytes) -> None:
    with pytest.raises(InvalidJSONError):  # a parser that recursed in Python would raise RecursionError here
        loads(body)
