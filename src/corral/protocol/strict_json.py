"""Strict JSON for request bodies: RFC 8259 and nothing more, within limits.

:func:`loads` is what every request body the server reads goes through (the JSON API, the Open Inference
Protocol's JSON and its binary extension's JSON header, operator bodies). Beyond syntax, it refuses what
different parsers read differently, or what would fail later, deeper and less clearly:

* bytes that are not UTF-8, a byte-order mark, lone surrogate escapes (``"\\ud800"``);
* ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON; send ``null`` for a missing value);
* numbers beyond a 64-bit float's range: ``1e309`` (which would read as infinity) and integers past about
  ``1.8e308`` (up to Python's 4300-digit conversion limit, which would otherwise be a ``ValueError``);
* an object with the same key twice (``{"a": 1, "a": 2}``: some parsers keep the first, most the last);
* nesting deeper than ``max_depth`` (32 by default): the parser stops at 200 levels whatever happens, without
  recursing in Python, so ``[[[[...`` a hundred thousand deep costs nothing.

Parsing is pydantic-core's (jiter), several times faster than :mod:`json`, which cannot report a repeated key.
Repeats are found by counting instead: unless a key repeats, the body holds exactly one ``:`` per key of the
parsed objects plus those inside its keys and strings. Only a body whose count is off (or that writes a colon as
``\\u003a``, which the count cannot see) is parsed a second time, by :mod:`json`, to name the key.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

import pydantic_core

from corral.errors import InvalidJSONError

DEFAULT_MAX_DEPTH = 32
"""How deeply arrays and objects may nest, counting the outermost as 1."""

PARSER_DEPTH_LIMIT = 200
"""pydantic-core's own limit: no setting can allow deeper nesting than this."""

_FLOAT_MAX = int(sys.float_info.max)
_CONSTANT = re.compile(rb"-?(?:NaN|Infinity)")
_POSITION = re.compile(r"at line (\d+) column (\d+)")
_BOM = b"\xef\xbb\xbf"
_ESCAPED_COLON = re.compile(rb"\\u003[aA]")


def loads(
    data: bytes | bytearray | memoryview | str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    what: str = "",
    allow_nan: bool = False,
) -> Any:
    """Parse ``data`` as strict JSON (see the module's docstring for what is refused).

    Args:
        data: the body (or the JSON header of a binary request), UTF-8.
        max_depth: deepest nesting allowed, the outermost array or object counting as 1.
        what: names the body in messages ("request body" by default).
        allow_nan: read ``NaN``, ``Infinity`` and ``-Infinity`` (and so let numbers past a float's range read
            as infinity), as tritonclient writes non-finite floats in JSON tensor data; the Open Inference
            Protocol's decoder allows them, and the model's input checks then refuse what it cannot score.

    Returns:
        The parsed value: dicts, lists, str, int, float, bool and None.

    Raises:
        InvalidJSONError: naming what is wrong and, where it can, where.
    """
    what = what or "request body"
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if not raw.strip():
        raise InvalidJSONError(f"{what} is empty: send a JSON object")
    try:
        value = pydantic_core.from_json(raw, allow_inf_nan=allow_nan)
    except ValueError as exc:
        raise InvalidJSONError(f"{what} is not valid JSON: {_explain(raw, str(exc), max_depth)}") from None
    if raw.count(b":") != _check(value, max_depth, what, finite=not allow_nan) or _ESCAPED_COLON.search(raw):
        _refuse_duplicates(raw, what)  # a key given twice, or a colon the count cannot see: find out
    return value


def _check(value: Any, max_depth: int, what: str, *, finite: bool) -> int:
    """Walk the containers (never recursing): depth, numbers in range. Returns how many ``:`` the body would
    hold were no key repeated: one per object key, plus those inside keys and strings."""
    stack: list[tuple[Any, int]] = [([value], 0)]
    colons = 0
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise InvalidJSONError(
                f"{what} nests arrays and objects deeper than {max_depth} levels (CORRAL_SERVING__MAX_JSON_DEPTH)"
            )
        if type(node) is dict:
            colons += len(node) + "".join(node).count(":")
            items = list(node.values())
        else:
            items = node
        if not items or _plain_numbers(items, what):
            continue
        kinds = set(map(type, items))
        if finite and float in kinds and (math.inf in items or -math.inf in items):  # and NaN, the parser refused
            raise InvalidJSONError(
                f"{what} holds a number too large for a 64-bit float (such as 1e309, which would read as infinity)"
            )
        if int in kinds:
            _check_ints([item for item in items if type(item) is int], what)
        if str in kinds:
            colons += "".join(items if len(kinds) == 1 else [item for item in items if type(item) is str]).count(":")
        if list in kinds or dict in kinds:
            stack.extend((item, depth + 1) for item in items if type(item) in (list, dict))
    return colons


def _plain_numbers(items: list[Any], what: str) -> bool:
    """The fast path for arrays of numbers (tensor data): whether ``items`` are all numbers, and fine."""
    try:
        total = sum(items)  # TypeError: not all numbers; OverflowError: an int past a float's range among floats
    except (TypeError, OverflowError):
        return False
    if type(total) is int:  # integers (or booleans) only
        _check_ints(items, what)
        return True
    return type(total) is float and math.isfinite(total)  # else look closer: an infinity, or a sum that overflowed


def _check_ints(ints: list[int], what: str) -> None:
    if max(ints) > _FLOAT_MAX or min(ints) < -_FLOAT_MAX:
        raise InvalidJSONError(f"{what} holds an integer beyond a 64-bit float's range (about 1.8e308)")


def _refuse_duplicates(raw: bytes, what: str) -> None:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        if len(found) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise InvalidJSONError(f"{what} has the key {_short(key)} twice in one object; send each key once")
                seen.add(key)
        return found

    json.loads(raw, object_pairs_hook=unique)  # nesting is bounded: the first parse stopped at 200 levels


def _explain(raw: bytes, message: str, max_depth: int) -> str:
    """A clearer reason than the parser's for the refusals clients meet most."""
    if "recursion limit" in message:
        return f"arrays and objects nest deeper than {max_depth} levels (CORRAL_SERVING__MAX_JSON_DEPTH)"
    if raw.startswith(_BOM):
        return "it starts with a byte-order mark; send UTF-8 without one"
    if "number out of range" in message:
        return f"a number is out of range ({message}); numbers must fit a 64-bit float"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"it is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
    offset = _offset(raw, message)
    if offset is not None and any(_CONSTANT.match(raw, at) for at in (max(offset - 1, 0), offset)):
        return f"NaN and Infinity are not JSON; send null for a missing value ({message})"
    if "surrogate" in message or "hex escape" in message:
        return f"a string holds an invalid \\u escape (a lone surrogate?) ({message})"
    return message


def _offset(raw: bytes, message: str) -> int | None:
    found = _POSITION.search(message)
    if found is None:
        return None
    line, column = int(found.group(1)), int(found.group(2))
    lines = raw.split(b"\n", line - 1)
    if len(lines) < line:
        return None
    return sum(len(part) + 1 for part in lines[: line - 1]) + max(column - 1, 0)


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["DEFAULT_MAX_DEPTH", "PARSER_DEPTH_LIMIT", "loads"]
