from __future__ import annotations

import time
import uuid

from corral.core.ids import new_id, uuid7


def test_uuid7_layout_and_order() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids, key=lambda u: u.int)  # same-millisecond ids keep their order
    assert len(set(ids)) == len(ids)
    millis = ids[0].int >> 80
    assert abs(millis - time.time_ns() // 1_000_000) < 60_000


def test_new_id_is_canonical_text() -> None:
    text = new_id()
    assert len(text) == 36 and uuid.UUID(text).version == 7
