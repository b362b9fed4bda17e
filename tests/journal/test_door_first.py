"""The journal's lock lets a waiting tap in before any other writer (DoorFirstLock)."""

from __future__ import annotations

import threading
import time

from gateway.journal.writer import DOOR_FIRST_MAX_WAIT, DoorFirstLock


def _started(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_waiting_tap_goes_before_a_writer_that_came_after_it() -> None:
    lock = DoorFirstLock()
    order: list[str] = []
    release_first = threading.Event()
    held = threading.Event()
    tap_waiting = threading.Event()

    def uplink_holding() -> None:
        with lock:
            held.set()
            release_first.wait(5)

    def tap() -> None:
        tap_waiting.set()
        with lock.for_the_door():
            order.append("tap")

    def uplink_again() -> None:
        with lock:
            order.append("uplink")

    first = _started(uplink_holding)
    held.wait(5)
    door = _started(tap)
    tap_waiting.wait(5)
    time.sleep(0.05)  # the tap waits for the lock
    later = _started(uplink_again)
    time.sleep(0.01)  # ... and so does the next writer, at the door's gate
    release_first.set()
    for thread in (first, door, later):
        thread.join(5)
    assert order == ["tap", "uplink"]


def test_another_writer_waits_for_the_door_a_bounded_time_only() -> None:
    lock = DoorFirstLock()
    inside = threading.Event()
    leave = threading.Event()

    def long_tap() -> None:
        with lock.for_the_door():
            inside.set()
            leave.wait(5)

    tap = _started(long_tap)
    inside.wait(5)
    waited = time.monotonic()
    took: list[float] = []

    def writer() -> None:
        with lock:
            took.append(time.monotonic() - waited)

    other = _started(writer)
    time.sleep(DOOR_FIRST_MAX_WAIT * 3)
    assert not took  # the tap still holds the lock itself
    leave.set()
    for thread in (tap, other):
        thread.join(5)
    assert took and took[0] >= DOOR_FIRST_MAX_WAIT * 3


def test_the_lock_is_reentrant_for_its_holder_without_waiting_at_the_gate() -> None:
    lock = DoorFirstLock()
    with lock.for_the_door():
        started = time.monotonic()
        with lock, lock:  # the writer's own statements, inside the tap's hold
            pass
        assert time.monotonic() - started < DOOR_FIRST_MAX_WAIT
