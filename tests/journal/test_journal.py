"""The journal on a real SQLite file: schema, durability, privacy, one writer, full disk."""

from __future__ import annotations

import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from gateway.attendance import AttendanceRules
from gateway.errors import (
    JournalLockedError,
    JournalMigrationError,
    JournalVersionError,
    StorageError,
)
from gateway.journal.file import MIGRATIONS, PAGE_SIZE, connect, migrate, statements
from gateway.journal.rows import TapAttempt
from gateway.journal.store import Journal, JournalReader
from gateway.journal.writer import CHECKPOINT_EVERY
from gateway.models import ClockSample, DeliveryState, Direction
from tests.support import (
    REPO,
    SITE,
    WORKER,
    a_registration,
    clock_at,
    insert_before_version_8,
    read,
    registered,
)


def test_fresh_journal_is_wal_full_and_at_the_latest_schema(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    assert journal.execute("PRAGMA journal_mode")[0][0] == "wal"
    assert journal.execute("PRAGMA synchronous")[0][0] == 2  # FULL
    assert journal.execute("PRAGMA page_size")[0][0] == PAGE_SIZE
    assert journal.execute("PRAGMA user_version")[0][0] == len(MIGRATIONS)
    journal.close()


def test_version_3_in_flight_marks_move_to_their_table(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    conn = _journal_at_version(path, 3)
    reg = a_registration()
    insert_before_version_8(conn, reg)
    conn.execute("UPDATE registrations SET in_flight = 1")  # sent, then the box stopped
    conn.close()
    journal = Journal(path)
    assert journal.recover_in_flight() == [str(reg.id)]  # flagged possibly duplicated
    columns = [row[1] for row in journal.execute("PRAGMA table_info(registrations)")]
    assert "in_flight" not in columns
    assert journal.deliveries()[0].possibly_duplicated
    assert journal.recover_in_flight() == []  # the flag cleared the mark
    journal.close()


def test_version_4_acknowledgements_move_to_their_table(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    conn = _journal_at_version(path, 4)
    delivered, rejected, pending = a_registration(), a_registration(), a_registration()
    for reg in (delivered, rejected, pending):
        insert_before_version_8(conn, reg)
    conn.execute(
        "UPDATE registrations SET delivery = 'delivered', onss_id = 77, onss_validity = 'valid',"
        " onss_remarks = '[\"LATE REGISTRATION\"]', delivered_wall_ns = 5, late = 1,"
        " sent_registration_date = '2026-01-01T00:00:00Z' WHERE id = ?",
        (str(delivered.id),),
    )
    conn.execute(
        "UPDATE registrations SET delivery = 'rejected', rejection = '{}' WHERE id = ?",
        (str(rejected.id),),
    )
    conn.close()
    journal = Journal(path)
    records = {record.stored.registration.id: record for record in journal.deliveries()}
    acked = records[delivered.id]
    assert acked.stored.registration.delivery is DeliveryState.DELIVERED
    assert (acked.onss_id, acked.onss_validity, acked.onss_remarks) == (
        77,
        "valid",
        ("LATE REGISTRATION",),
    )
    assert (acked.delivered_wall_ns, acked.late) == (5, True)
    assert acked.sent_registration_date == "2026-01-01T00:00:00Z"
    assert records[rejected.id].stored.registration.delivery is DeliveryState.REJECTED
    assert [out.id for out in journal.pending(10)] == [str(pending.id)]
    assert journal.stats().pending == 1
    journal.close()


def _journal_at_version(path: Path, version: int) -> sqlite3.Connection:
    """A journal file as an older release left it (the migrations up to `version`)."""
    conn = connect(path, read_only=False)
    for number, script in enumerate(MIGRATIONS[:version], start=1):
        for statement in statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={number}")
    return conn


def test_a_failed_migration_rolls_every_migration_back(tmp_path: Path) -> None:
    """All pending migrations are one transaction: migration 5 failing also undoes 4, and the
    file is byte for byte what the old release left, still at its old version."""
    path = tmp_path / "j.db"
    conn = _journal_at_version(path, 3)
    insert_before_version_8(conn, a_registration())
    conn.execute("CREATE TABLE acknowledgements (conflict INTEGER)")  # migration 5 makes it
    conn.close()
    before = path.read_bytes()
    with pytest.raises(
        JournalMigrationError, match=rf"migration 5 \(of 3 -> {len(MIGRATIONS)}\).*unchanged"
    ):
        Journal(path)
    assert path.read_bytes() == before
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 3
        tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master")}
        assert "in_flight" not in tables  # migration 4 was rolled back with 5
        check.execute("DROP TABLE acknowledgements")
    journal = Journal(path)  # the cause removed, every migration applies
    assert journal.execute("PRAGMA user_version")[0][0] == len(MIGRATIONS)
    assert journal.stats().registrations == 1
    journal.close()


class _RolledBackBySqlite:
    """A connection on which one migration statement fails the way SQLITE_FULL or
    SQLITE_IOERR can: SQLite has rolled the whole transaction back before the error."""

    def __init__(self, conn: sqlite3.Connection, failing: str) -> None:
        self._conn = conn
        self._failing = failing

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def execute(self, sql: str) -> sqlite3.Cursor:
        if self._failing in sql:
            self._conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql)


def test_a_migration_failing_after_sqlite_rolled_back_reports_the_real_error(
    tmp_path: Path,
) -> None:
    """No second ROLLBACK ("no transaction is active") hides why the migration failed."""
    path = tmp_path / "j.db"
    conn = _journal_at_version(path, 3)
    failing = next(statements(MIGRATIONS[3])).strip()[:40]
    with pytest.raises(JournalMigrationError, match="database or disk is full"):
        migrate(_RolledBackBySqlite(conn, failing))  # type: ignore[arg-type]
    assert not conn.in_transaction
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()


def test_registration_round_trips_and_is_queued(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    reg = a_registration()
    seq = journal.append_registration(reg)
    stored = journal.last_registration(WORKER.niss, SITE.declaration)
    assert stored is not None and stored.seq == seq
    assert stored.registration == reg
    assert journal.stats().pending == 1
    assert journal.last_registration("00000000000", SITE.declaration) is None
    journal.close()


def test_last_registration_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path)
    first = a_registration("2026-11-22T07:00", 100)
    journal.append_registration(first)
    second = registered(
        AttendanceRules(SITE).decide(read(), WORKER, first, clock_at("2026-11-22T12:00", 18100))
    )
    journal.append_registration(second)
    journal.close()
    reopened = Journal(path)
    last = reopened.last_registration(WORKER.niss, SITE.declaration)
    assert last is not None and last.registration.direction is Direction.OUT
    assert last.registration.id == second.id
    reopened.close()


def test_personal_data_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "j.db"
    journal = Journal(path)
    journal.append_registration(a_registration())
    for name in ("j.db", "j.db-wal", "j.db-shm"):
        assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    journal.close()


def test_only_one_writer(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    with pytest.raises(JournalLockedError, match="in use"):
        Journal(tmp_path / "j.db")
    journal.close()
    Journal(tmp_path / "j.db").close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(JournalVersionError, match="upgrade"):
        Journal(path)


def test_full_disk_fails_the_write_then_recovers(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.append_registration(a_registration())
    pages = journal.execute("PRAGMA page_count")[0][0]
    journal.limit_pages(pages)
    attempt = TapAttempt(
        "unknown-badge", "DEADBEEF", "entrance", ClockSample(1, 1, "b", True), detail="x" * 20_000
    )
    with pytest.raises(StorageError, match="full"):
        journal.append_attempt(attempt)
    assert journal.stats().tap_attempts == 0
    journal.limit_pages(pages + 100)
    journal.append_attempt(attempt)
    assert journal.stats().tap_attempts == 1
    journal.close()


def test_read_only_reader_sees_commits_and_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path)
    reg = a_registration()
    journal.append_registration(reg)
    reader = JournalReader(path)
    assert [s.registration.id for s in reader.registrations_since(0)] == [reg.id]
    reader.close()
    with (
        closing(connect(path, read_only=True)) as conn,
        pytest.raises(sqlite3.OperationalError, match="readonly"),
    ):
        conn.execute("DELETE FROM registrations")  # the reader's kind of connection
    journal.close()
    with pytest.raises(FileNotFoundError):
        JournalReader(tmp_path / "missing.db")


def test_wal_is_checkpointed_beside_the_writer_every_so_many_commits(tmp_path: Path) -> None:
    path, wal = tmp_path / "j.db", tmp_path / "j.db-wal"
    threads_before = set(threading.enumerate())
    journal = Journal(path)
    attempt = TapAttempt("unknown-badge", "DEADBEEF", "entrance", ClockSample(1, 1, "b", True))
    for _ in range(CHECKPOINT_EVERY - 1):
        journal.append_attempt(attempt)
    assert set(threading.enumerate()) == threads_before  # no checkpoint due: no thread
    before = path.stat().st_size
    journal.append_attempt(attempt)
    assert _eventually(lambda: path.stat().st_size > before)  # pages copied into the database
    wal_size = wal.stat().st_size
    for _ in range(4 * CHECKPOINT_EVERY):
        journal.append_attempt(attempt)
    assert wal.stat().st_size < 2 * wal_size  # reused from its start, not grown
    journal.close()
    assert set(threading.enumerate()) == threads_before  # the checkpoint thread has ended


def _eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


SYNC_TRACE = """
import os, sys
from pathlib import Path
from gateway.journal.store import Journal
from tests.support import a_registration
journal = Journal(Path(sys.argv[1]))
os.write(2, b"tap\\n")
seq = journal.append_registration(a_registration())
os.write(2, b"mark\\n")
journal.mark_in_flight([seq])
os.write(2, b"marked\\n")
journal.close()
"""


def test_a_tap_and_an_in_flight_mark_reach_the_disk_before_they_return(tmp_path: Path) -> None:
    """The beep, and a request's sending, wait for the WAL's sync (strace shows the calls)."""
    trace = tmp_path / "strace.txt"
    script = [sys.executable, "-c", SYNC_TRACE, str(tmp_path / "j.db")]
    traced = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-y",
            "-o",
            str(trace),
            "-e",
            "trace=write,fsync,fdatasync",
            *script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert traced.returncode == 0, traced.stderr[-2000:]
    steps: list[str] = []
    for line in trace.read_text().splitlines():
        if said := re.search(r'write\(2<[^>]*>, "(tap|mark|marked)\\n"', line):
            steps.append(said[1])
        elif (
            steps and steps[-1] != "sync" and re.search(r"f(data)?sync\(\d+<\S*j\.db-wal>\)", line)
        ):
            steps.append("sync")
    closing = steps.index("marked") + 1  # closing the journal syncs too
    assert steps[:closing] == ["tap", "sync", "mark", "sync", "marked"], trace.read_text()[-3000:]
