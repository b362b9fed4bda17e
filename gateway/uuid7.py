"""UUIDv7 (RFC 9562): time-ordered ids, generated on the box, reused by every retry.

Python 3.11 has no uuid.uuid7. Within one process the ids are strictly increasing even
when several are made in the same millisecond or the wall clock steps back (RFC 9562
section 6.2, method 3: the last timestamp is reused and rand_a serves as a counter).
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
    global _last_ms, _counter
    random = int.from_bytes(os.urandom(10))  # 62 bits for rand_b, 11 to seed the counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, random >> 69
        else:
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    rand_b = random & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)
