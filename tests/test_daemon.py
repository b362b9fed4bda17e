"""The daemon in this process, with a real journal file and its real control socket."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from gateway import control
from gateway.daemon import Daemon
from gateway.feedback import OutcomeKind, TapOutcome
from tests.support import badges, make_config, run, tap_read, with_daemon


class CommittedCheck:
    """A feedback output that looks, from another connection, for what it is told about."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.seen: list[tuple[TapOutcome, bool]] = []
        self.attempts = 0

    def show(self, outcome: TapOutcome) -> None:
        with sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True) as conn:
            if outcome.registration_id is None or outcome.kind is OutcomeKind.REPEAT:
                self.attempts += 1
                count = conn.execute("SELECT count(*) FROM tap_attempts").fetchone()[0]
                found = count == self.attempts
            else:
                found = (
                    conn.execute(
                        "SELECT count(*) FROM registrations WHERE id = ?",
                        (str(outcome.registration_id),),
                    ).fetchone()[0]
                    == 1
                )
        self.seen.append((outcome, found))


def test_feedback_comes_only_after_the_commit(state: Path) -> None:
    workers = badges(3)
    config = make_config(state, workers, attendance={"debounce_seconds": 5})
    check = CommittedCheck(config.storage.journal)

    async def taps(daemon: Daemon) -> None:
        for worker in workers:
            await daemon.tap(tap_read(worker.uid))
        await daemon.tap(tap_read(workers[0].uid))  # a repeat
        await daemon.tap(tap_read("DEADBEEF"))  # unknown
        # and through the socket, as a technician would
        await asyncio.to_thread(
            control.request, config.control.socket, {"cmd": "tap", "uid": workers[1].uid.lower()}
        )

    run(with_daemon(config, taps, outputs=[check]))
    kinds = [outcome.kind for outcome, _ in check.seen]
    assert kinds == [OutcomeKind.REGISTERED] * 3 + [
        OutcomeKind.REPEAT,
        OutcomeKind.UNKNOWN_BADGE,
        OutcomeKind.REPEAT,
    ]
    assert all(found for _, found in check.seen), check.seen


def test_disk_full_refuses_the_tap_loudly_and_recovers(state: Path) -> None:
    workers = badges(300)
    config = make_config(state, workers, attendance={"debounce_seconds": 0})
    shown: list[TapOutcome] = []

    class Record:
        def show(self, outcome: TapOutcome) -> None:
            shown.append(outcome)

    async def fill_the_disk(daemon: Daemon) -> None:
        journal = daemon.journal
        assert journal is not None
        await daemon.tap(tap_read(workers[0].uid))
        pages = journal.execute("PRAGMA page_count")[0][0]
        journal.limit_pages(pages)
        refused = None
        for worker in workers[1:]:  # until a tap needs a page the disk no longer has
            outcome = await daemon.tap(tap_read(worker.uid))
            if outcome.kind is OutcomeKind.CANNOT_STORE:
                refused = worker
                break
            assert outcome.kind is OutcomeKind.REGISTERED
        assert refused is not None, "the journal never filled up"
        status = await asyncio.to_thread(control.request, config.control.socket, {"cmd": "status"})
        assert "full" in status["status"]["journal"]["storage_error"]
        assert journal.last_registration(refused.niss, "1Y1002V9KLZ6Z") is None
        journal.limit_pages(pages + 1000)  # space comes back
        again = await daemon.tap(tap_read(refused.uid))
        assert again.kind is OutcomeKind.REGISTERED
        stored = journal.last_registration(refused.niss, "1Y1002V9KLZ6Z")
        assert stored is not None and stored.registration.id == again.registration_id

    run(with_daemon(config, fill_the_disk, outputs=[Record()]))
    cannot = [o for o in shown if o.kind is OutcomeKind.CANNOT_STORE]
    assert len(cannot) == 1
    assert cannot[0].message().startswith("ERREUR")


def test_status_reports_readers_queue_clock_and_last_taps(state: Path) -> None:
    workers = badges(2)
    config = make_config(state, workers)
    (state / "synchronized").touch()

    async def status_after_taps(daemon: Daemon) -> Any:
        await daemon.tap(tap_read(workers[0].uid))
        await daemon.tap(tap_read("DEADBEEF"))
        reply = await asyncio.to_thread(control.request, config.control.socket, {"cmd": "status"})
        return reply["status"]

    status = run(with_daemon(config, status_after_taps))
    assert status["clock"]["synced"] is True
    assert status["journal"]["queue_depth"] == 1
    assert status["journal"]["registrations"] == 1
    [recent] = status["recent_registrations"]
    assert recent["niss"] == "********" + workers[0].niss[-3:]
    assert recent["clock_synced"] is True
    assert status["recent_refused_or_repeated"][0]["outcome"] == "unknown-badge"
    assert status["taps"] == {"registered": 1, "unknown-badge": 1}


def test_clock_state_is_stored_with_each_registration(state: Path) -> None:
    workers = badges(2)
    config = make_config(state, workers)
    flag = state / "synchronized"

    async def taps(daemon: Daemon) -> list[bool]:
        await daemon.tap(tap_read(workers[0].uid))
        flag.touch()
        await daemon.tap(tap_read(workers[1].uid))
        assert daemon.journal is not None
        stored = daemon.journal.registrations_since(0)
        return [s.registration.clock.synced for s in stored]

    assert run(with_daemon(config, taps)) == [False, True]


def test_read_only_journal_refuses_the_tap_and_recovers(state: Path) -> None:
    # A file system remounted read-only after an SD card error cannot be staged here; SQLite
    # answers the same way to `query_only`, at the narrowest boundary: its own.
    worker = badges(1)[0]
    config = make_config(state, [worker])

    async def read_only_then_writable(daemon: Daemon) -> list[OutcomeKind]:
        assert daemon.journal is not None
        daemon.journal.execute("PRAGMA query_only=1")
        refused = await daemon.tap(tap_read(worker.uid))
        daemon.journal.execute("PRAGMA query_only=0")
        accepted = await daemon.tap(tap_read(worker.uid))
        return [refused.kind, accepted.kind]

    kinds = run(with_daemon(config, read_only_then_writable))
    assert kinds == [OutcomeKind.CANNOT_STORE, OutcomeKind.REGISTERED]


def test_an_uplink_that_cannot_start_is_shown_misconfigured_and_taps_are_stored(
    state: Path,
) -> None:
    worker = badges(1)[0]
    key = state / "missing-key.pem"
    uplink_section = {"enabled": True, "client_id": "test", "private_key": str(key)}
    config = make_config(state, [worker], uplink=uplink_section)

    async def tap_then_status(daemon: Daemon) -> tuple[TapOutcome, Any]:
        outcome = await daemon.tap(tap_read(worker.uid))
        reply = await asyncio.to_thread(control.request, config.control.socket, {"cmd": "status"})
        return outcome, reply["status"]["uplink"]

    outcome, uplink = run(with_daemon(config, tap_then_status))
    assert outcome.kind is OutcomeKind.REGISTERED
    assert outcome.uplink_online is False  # the worker's display says it is not sent yet
    assert uplink == {
        "enabled": True,
        "service": "ciao",
        "endpoint": config.uplink.base_url,
        "state": "misconfigured",
        "cause": uplink["cause"],
    }
    assert str(key) in uplink["cause"]
