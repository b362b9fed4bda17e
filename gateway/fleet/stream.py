"""The evidence, off the box: every entry published in order at QoS 1, and a watermark in
the journal that advances only over entries the broker acknowledged (PUBACK).

After any outage, of the broker or of the box, the stream starts again from the watermark:
the entries after it are published again, the archive keeps each seq once. Nothing is
lost and nothing waits in memory but the window of entries in flight.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable

from gateway.evidence import Entry
from gateway.journal import FleetLog

WATERMARK = "evidence_published_seq"
WINDOW = 100  # entries published and not yet acknowledged, at most
# The watermark's write takes the journal's lock, which a tap may then wait for: seldom. A
# watermark lost (a crash, a power cut) only makes the link publish those entries again.
SAVE_EVERY_S = 10.0

Publish = Callable[[bytes], int]  # publishes one entry's JSON; returns the message id


class EvidenceStream:
    def __init__(self, journal: FleetLog, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._journal = journal
        self._clock = clock
        self.acknowledged = int(journal.fleet_value(WATERMARK) or 0)
        self._saved = self.acknowledged
        self._saved_at = clock()
        self._sent: deque[int] = deque()  # seqs in flight, in order
        self._by_mid: dict[int, int] = {}
        self._acked: set[int] = set()
        self._next_after = self.acknowledged
        self.published = 0  # entries published since start, republications included
        self.behind = False

    def restart(self) -> None:
        """A new connection: what was in flight is published again from the watermark."""
        self.behind = True  # until a read finds less than the window
        self._sent.clear()
        self._by_mid.clear()
        self._acked.clear()
        self._next_after = self.acknowledged

    def pump(self, publish: Publish) -> list[Entry]:
        """Publish the entries that fit in the window; returns them (for the events)."""
        room = WINDOW - len(self._sent)
        if room <= 0 or (self.behind and room < WINDOW // 2):
            return []  # catching up: a read for half a window at least, not one by one
        entries = self._journal.evidence_after(self._next_after, room)
        self.behind = len(entries) == room  # the window was the limit: more are waiting
        for entry in entries:
            mid = publish(json.dumps(entry.as_json(), separators=(",", ":")).encode())
            self._by_mid[mid] = entry.seq
            self._sent.append(entry.seq)
            self._next_after = entry.seq
        self.published += len(entries)
        return entries

    def acknowledge(self, mid: int) -> None:
        """The broker's PUBACK for a message; one of an earlier connection is ignored."""
        seq = self._by_mid.pop(mid, None)
        if seq is None:
            return
        self._acked.add(seq)
        while self._sent and self._sent[0] in self._acked:
            self._acked.discard(self._sent[0])
            self.acknowledged = self._sent.popleft()

    def save(self, *, now: bool = False) -> None:
        """Keep the watermark in the journal, at most every SAVE_EVERY_S unless `now`."""
        if self.acknowledged == self._saved:
            return
        if not now and self._clock() - self._saved_at < SAVE_EVERY_S:
            return
        self._journal.set_fleet_value(WATERMARK, str(self.acknowledged))
        self._saved, self._saved_at = self.acknowledged, self._clock()

    @property
    def in_flight(self) -> int:
        return len(self._sent)
