"""The daemon's reads (status, reports, queue views) never wait for the journal's lock: a
tap may be waiting for it, and a count over a large backlog takes milliseconds."""

from __future__ import annotations

import threading
import time

from gateway.journal import Journal
from gateway.models import DeliveryState, UplinkState
from tests.support import a_registration

HOLD_S = 2.0


def test_status_reads_answer_while_a_writer_holds_the_lock(journal: Journal) -> None:
    for _ in range(3):
        journal.append_registration(a_registration())
    holding, release = threading.Event(), threading.Event()

    def uplink_transaction() -> None:  # a settle under way, its last statement not committed
        with journal._writer.transaction() as conn:
            conn.execute("UPDATE registrations SET delivery = 'rejected'")
            holding.set()
            release.wait(HOLD_S)

    writer = threading.Thread(target=uplink_transaction, daemon=True)
    writer.start()
    try:
        assert holding.wait(5)
        started = time.monotonic()
        stats = journal.stats()
        pending = journal.deliveries(DeliveryState.PENDING)
        recent = journal.recent_registrations(10)
        transitions = journal.uplink_transitions()
        took = time.monotonic() - started
    finally:
        release.set()
        writer.join(5)
    assert took < HOLD_S / 2, f"the reads waited {took:.2f} s for the writer"
    assert stats.registrations == 3
    assert stats.pending == 3  # what was committed: the open transaction is not seen
    assert len(pending) == 3
    assert len(recent) == 3
    assert transitions == []
    assert journal.stats().pending == 0  # committed now


def test_an_uplink_transition_counts_the_backlog_outside_the_lock(journal: Journal) -> None:
    for _ in range(5):
        journal.append_registration(a_registration())
    on_the_writer: list[str] = []
    journal._writer.conn.set_trace_callback(on_the_writer.append)
    try:
        journal.record_transition(UplinkState.OFFLINE, "timeout", None, a_registration().clock)
    finally:
        journal._writer.conn.set_trace_callback(None)
    assert on_the_writer, "the transition was written"
    assert not [sql for sql in on_the_writer if "count(" in sql.lower()]
    [transition] = journal.uplink_transitions()
    assert transition["pending"] == 5
