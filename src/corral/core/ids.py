"""Time-ordered identifiers (UUID version 7, RFC 9562) for predictions and requests.

Python 3.11 has no ``uuid.uuid7``; this is the RFC's layout: 48 bits of Unix
milliseconds, the version, 12 bits of a per-process counter seeded at random
(so ids minted in the same millisecond still sort in order), the variant and
62 random bits.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    """A new UUIDv7; ids from one process sort in the order they were made."""
    global _last_ms, _counter
    with _lock:
        now = time.time_ns() // 1_000_000
        if now > _last_ms:
            _last_ms, _counter = now, int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:  # same millisecond (or the clock stepped back): keep counting from the last one
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
            now = _last_ms
        rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        value = (now << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62) | rand
    return uuid.UUID(int=value)


def new_id() -> str:
    """A UUIDv7 as its canonical 36-character string."""
    return str(uuid7())
