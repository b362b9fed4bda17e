"""UUIDv7 ids (RFC 9562): version 7, increasing, carrying their time in milliseconds."""

from __future__ import annotations

import time
import uuid

from gateway.uuid7 import uuid7


def test_uuid7_ids_are_version_7_increasing_and_carry_the_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    assert all(isinstance(i, uuid.UUID) and i.version == 7 for i in ids)
    assert all(i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert before <= ids[0].int >> 80 <= ids[-1].int >> 80 <= after + 1
