"""Bounds on numbers and identifiers taken from requests, so that what a client sends fits what stores hold.

A number past a database column's range is a client's mistake, answered 400 by the parameter's validation,
never an overflow deep in a driver (a 500). Versions are 32-bit (``INTEGER``), log sequence numbers 64-bit
(``BIGINT``).
"""

from __future__ import annotations

import unicodedata

from corral.errors import SchemaError

MAX_VERSION = 2**31 - 1
"""The largest model version a store can hold (a 32-bit ``INTEGER``)."""

MAX_SEQ = 2**63 - 1
"""The largest audit log sequence number (a 64-bit ``BIGINT``)."""

MAX_WINDOW_SECONDS = 10 * 366 * 86400
"""The longest look-back window a request may ask for (ten years)."""

MAX_REQUEST_ID = 256
"""Most characters in a client's request id (``X-Request-Id``, a V2 request's ``id``)."""


def request_id(value: str | None, what: str = "X-Request-Id", *, header: bool = True) -> str | None:
    """A client's request id, checked: it is logged and recorded with every prediction, so it must be short and
    printable. A header (``X-Request-Id``) must be printable ASCII, as header values are read as Latin-1; an id
    from a JSON body may be any text without control characters (newlines, ANSI escapes) or lone surrogates.

    Raises:
        SchemaError: naming the rule broken.
    """
    if value is None or value == "":
        return None
    if len(value) > MAX_REQUEST_ID:
        raise SchemaError(f"{what} is {len(value)} characters long; at most {MAX_REQUEST_ID} are accepted")
    if header:
        if not (value.isascii() and value.isprintable()):
            raise SchemaError(f"{what} must be printable ASCII (no control characters)")
    elif any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise SchemaError(f"{what} holds a control character; send printable characters only")
    return value
