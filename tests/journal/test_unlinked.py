"""The journal's file deleted or replaced while the daemon runs (issue 14, point 9).

SQLite keeps writing to the file it opened: a tap would be answered "registered" and be
gone after a restart. The writer looks at the path after every commit and, once it names
another file or nothing, refuses every write ("cannot store") until restarted.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway import control
from gateway.daemon import Daemon
from gateway.errors import StorageError
from gateway.feedback import OutcomeKind
from gateway.journal import Journal, TapAttempt, backup
from gateway.journal.rows import INSERT_ATTEMPT, attempt_row
from gateway.journal.writer import Writer
from gateway.models import ClockSample
from tests.support import (
    DECLARATION,
    a_registration,
    badges,
    clock_at,
    make_config,
    run,
    tap_read,
    with_daemon,
)


def lost_logs(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["log_level"] == "critical"]


DELETED = "deleted or moved away while the daemon ran"
CLOCK: ClockSample = clock_at("2026-11-22T07:05")


def an_attempt() -> TapAttempt:
    return TapAttempt("unknown-badge", "DEADBEEF", "entrance", CLOCK)


def test_a_deleted_journal_refuses_every_write_and_says_so_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    try:
        journal.append_registration(a_registration())
        path.unlink()
        with capture_logs() as logs:
            for _ in range(3):
                with pytest.raises(StorageError, match=DELETED):
                    journal.append_registration(a_registration())
            with pytest.raises(StorageError, match=DELETED):
                journal.append_attempt(an_attempt())
            with pytest.raises(StorageError):
                journal.mark_in_flight([1])  # the uplink sends nothing it cannot record
        [lost] = lost_logs(logs)
        assert lost["journal"] == str(path)
        assert "restarted" in str(lost["event"])
    finally:
        journal.close()

    restarted = Journal(path)  # a new journal: the taps refused are in neither file
    try:
        assert restarted.stats().registrations == 0
        restarted.append_registration(a_registration())
        assert restarted.stats().registrations == 1
    finally:
        restarted.close()


def test_a_journal_replaced_by_another_file_refuses_taps_until_restarted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    copy, original = tmp_path / "copy.db", tmp_path / "original.db"
    journal = Journal(path)
    try:
        journal.append_registration(a_registration())
        backup(path, copy)
        os.link(path, original)
        os.replace(copy, path)  # "restored from last night's backup", under the daemon
        with pytest.raises(StorageError, match="replaced by another file"):
            journal.append_registration(a_registration())
        os.replace(original, path)  # the very file is back: refused all the same, until a restart
        with pytest.raises(StorageError, match="replaced by another file"):
            journal.append_attempt(an_attempt())
    finally:
        journal.close()
    restarted = Journal(path)
    try:
        restarted.append_attempt(an_attempt())
        assert restarted.stats().registrations == 1  # the refused tap was written nowhere
    finally:
        restarted.close()


def test_a_journal_deleted_during_the_commit_refuses_that_very_write(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    writer = Writer(path, max_size_mb=None, clock=lambda: CLOCK)
    deleted: list[Path] = []

    def delete_mid_statement() -> int:  # SQLite calls it while the INSERT runs
        if not deleted:
            path.unlink()
            deleted.append(path)
        return 0  # carry on: the commit lands in the file that is now nameless

    try:
        writer.insert(INSERT_ATTEMPT, attempt_row(an_attempt()))
        writer.conn.set_progress_handler(delete_mid_statement, 1)
        with pytest.raises(StorageError, match=DELETED):
            writer.insert(INSERT_ATTEMPT, attempt_row(an_attempt()))
        writer.conn.set_progress_handler(None, 1)
        assert deleted == [path]
    finally:
        writer.close()


def test_a_journal_left_alone_is_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    try:
        with capture_logs() as logs:
            for _ in range(20):
                journal.append_registration(a_registration())
            journal.append_attempt(an_attempt())
        assert lost_logs(logs) == []
        assert journal.stats().registrations == 20
    finally:
        journal.close()


def test_the_daemon_answers_cannot_store_once_its_journal_is_deleted(state: Path) -> None:
    workers = badges(3)
    config = make_config(state, workers, attendance={"debounce_seconds": 0})
    journal = config.storage.journal

    async def delete_the_journal(daemon: Daemon) -> tuple[list[OutcomeKind], dict[str, object]]:
        kinds = [(await daemon.tap(tap_read(workers[0].uid))).kind]
        journal.unlink()  # a technician "cleaning up"
        for worker in workers:
            kinds.append((await daemon.tap(tap_read(worker.uid))).kind)
        kinds.append((await daemon.tap(tap_read("DEADBEEF"))).kind)
        reply = await asyncio.to_thread(control.request, config.control.socket, {"cmd": "status"})
        return kinds, reply["status"]["journal"]

    with capture_logs() as logs:
        kinds, status = run(with_daemon(config, delete_the_journal))
    assert kinds == [OutcomeKind.REGISTERED] + [OutcomeKind.CANNOT_STORE] * 4
    assert DELETED in str(status["storage_error"])
    assert len(lost_logs(logs)) == 1

    async def tap_again(daemon: Daemon) -> OutcomeKind:
        return (await daemon.tap(tap_read(workers[1].uid))).kind

    assert run(with_daemon(config, tap_again)) is OutcomeKind.REGISTERED  # restarted
    reopened = Journal(journal)
    try:
        [stored] = reopened.registrations_since(0)
        assert stored.registration.worker.niss == workers[1].niss
        assert reopened.last_registration(workers[2].niss, DECLARATION) is None
    finally:
        reopened.close()


def test_the_daemon_answers_cannot_store_once_its_journal_is_replaced(state: Path) -> None:
    workers = badges(2)
    config = make_config(state, workers, attendance={"debounce_seconds": 0})
    journal = config.storage.journal
    copy = state / "restored.db"

    async def replace_the_journal(daemon: Daemon) -> list[OutcomeKind]:
        kinds = [(await daemon.tap(tap_read(workers[0].uid))).kind]
        await asyncio.to_thread(backup, journal, copy)
        os.replace(copy, journal)
        kinds.append((await daemon.tap(tap_read(workers[1].uid))).kind)
        kinds.append((await daemon.tap(tap_read(workers[0].uid))).kind)
        return kinds

    kinds = run(with_daemon(config, replace_the_journal))
    assert kinds == [OutcomeKind.REGISTERED, OutcomeKind.CANNOT_STORE, OutcomeKind.CANNOT_STORE]

    async def tap_again(daemon: Daemon) -> OutcomeKind:
        return (await daemon.tap(tap_read(workers[1].uid))).kind

    assert run(with_daemon(config, tap_again)) is OutcomeKind.REGISTERED  # on the restored file
    reopened = Journal(journal)
    try:
        niss = [stored.registration.worker.niss for stored in reopened.registrations_since(0)]
        assert niss == [workers[0].niss, workers[1].niss]
    finally:
        reopened.close()
