"""Which version answers a request: the champion, or a split or canary by its share.

A request with a routing key (a customer id, say) lands in a fixed bucket in [0, 100): the first 8 bytes
of SHA-256 of the key, scaled. Buckets [0, p1) go to the first answering member, [p1, p1 + p2) to the
second, and so on; the rest to the champion. The same key lands in the same bucket in every process and
after every restart, so one customer sees one model for as long as the shares stay put. Requests without a
key are spread at random with the same shares.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from corral.serving.entities import Member

_SCALE = 100.0 / 2**64


def bucket(key: str) -> float:
    """The fixed position of ``key`` in [0, 100)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") * _SCALE


def choose(answering: Sequence[Member], key: str | None, rng: random.Random | None = None) -> Member | None:
    """The split or canary that answers this request, or ``None`` for the champion."""
    if not answering:
        return None
    point = bucket(key) if key is not None else (rng or random).random() * 100.0
    edge = 0.0
    for member in answering:
        edge += member.percent
        if point < edge:
            return member
    return None
