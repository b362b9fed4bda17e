"""The journal's one writing connection: its lock, its commits, and the record of writes
the disk refused.

One process writes (a lock file says so), through one connection, under one lock. A commit
returns only after the WAL is fsync'd, so a registration the worker heard a beep for
survives a power cut; an unsynced transaction (the uplink's bookkeeping) is made durable by
the next synced commit. Each commit is counted for the checkpointer. A refused write (disk
full, read-only, I/O error) raises StorageError and is noted: the next write that succeeds
records it as a `storage-full` entry, since it could not be written when it happened.

The journal's file may also go away under the daemon: deleted or replaced by a technician
or a script. SQLite keeps writing to the file it opened, which nobody will find again after
a restart, so the path is looked at before and after every commit (`FileGuard`, a stat
each): once it no longer names the file opened at start, the write and every write after
it raise StorageError (the tap answers "cannot store") until the daemon is restarted.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import StorageError
from gateway.evidence import EvidenceWriter, Kind
from gateway.journal.checkpoint import Checkpointer
from gateway.journal.file import connect, create_private_file, lock_exclusively, migrate
from gateway.models import ClockSample

log = structlog.get_logger("journal")

CHECKPOINT_EVERY = 500  # commits: a WAL of about 2 MiB


DOOR_FIRST_MAX_WAIT = 0.05  # seconds another writer yields to the door, at most, each time


class DoorFirstLock:
    """The journal's lock (reentrant), taken by the door first: while a tap waits for it or
    holds it, another writer (the uplink, the fleet link, the checkpointer) waits to take
    it, for at most DOOR_FIRST_MAX_WAIT each time. Python's locks are not fair: the
    uplink's thread, releasing the lock and taking it again for its next transaction while
    it keeps the GIL, would otherwise come first again and again while a tap waits."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._door = threading.Condition(threading.Lock())
        self._taps = 0  # taps waiting for the lock or holding it

    def __enter__(self) -> None:
        if not self._lock._is_owned():  # type: ignore[attr-defined]  # reentry: no wait
            with self._door:
                self._door.wait_for(lambda: self._taps == 0, DOOR_FIRST_MAX_WAIT)
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    @contextmanager
    def for_the_door(self) -> Iterator[None]:
        """The lock for a tap: ahead of every other writer that has not taken it yet."""
        with self._door:
            self._taps += 1
        try:
            with self._lock:
                yield
        finally:
            with self._door:
                self._taps -= 1
                if not self._taps:
                    self._door.notify_all()


class Writer:
    """The writing connection (`conn`), one per journal for the whole process, and the
    evidence chain's writing end (`evidence`). Every statement runs under `lock`."""

    def __init__(
        self, path: Path, *, max_size_mb: int | None, clock: Callable[[], ClockSample]
    ) -> None:
        self.path = path
        self.lock = DoorFirstLock()
        self._clock = clock
        self._checkpointer = Checkpointer(path, CHECKPOINT_EVERY, self.lock)
        create_private_file(path)
        self._lock_fd = lock_exclusively(path.with_name(path.name + ".lock"))
        try:  # a journal this release cannot use (newer, failed migration): let go of it
            self._file = FileGuard(path)  # before SQLite opens it: a swap between is caught
            try:
                self.conn = _open_checked(path, max_size_mb, self._file)
            except BaseException:
                self._file.close()
                raise
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.evidence = EvidenceWriter(self.conn)
        self._storage_outage: dict[str, Any] | None = None
        self._wal_path = path.with_name(path.name + "-wal")
        self._wal_fd: int | None = None  # opened at the first sync: SQLite keeps the file

    def limit_pages(self, pages: int) -> None:
        with self.lock:
            _set_max_pages(self.conn, pages)

    def execute(self, sql: str, values: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.conn.execute(sql, values).fetchall()

    def insert(self, sql: str, values: tuple[Any, ...]) -> int:
        """One INSERT, committed durably: in autocommit mode a statement is a transaction.

        A failed statement (disk full, read-only, I/O error) is rolled back by SQLite.
        """
        with self.lock:
            self._check_file_before()
            try:
                cursor = self.conn.execute(sql, values)
            except sqlite3.Error as error:
                self.evidence.rolled_back()
                raise self._failed(error) from error
            self.evidence.committed()  # an entry the statement carried (a registration's)
            self._checkpointer.committed()
            self._file.check()  # lost during the commit: the tap is not answered "registered"
            self._record_storage_outage()
            return int(cursor.lastrowid or 0)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """Several statements, committed together (or not at all), durably."""
        return self._transaction(fsync=True)

    def unsynced_transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """Several statements, committed together (or not at all), without waiting for the
        disk: the commit survives a crash of this process but may be lost in a power cut,
        until the next durable commit (any tap, or `sync_wal`) syncs the WAL up to it."""
        return self._transaction(fsync=False)

    @contextmanager
    def _transaction(self, *, fsync: bool) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self._check_file_before()
            try:
                if not fsync:
                    self.conn.execute("PRAGMA synchronous=NORMAL")
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    yield self.conn
                    self.conn.execute("COMMIT")
                    self.evidence.committed()
                except BaseException:
                    self.evidence.rolled_back()
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
                finally:
                    if not fsync:
                        self.conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as error:
                raise self._failed(error) from error
            self._checkpointer.committed()
            self._file.check()  # lost during the commit: the tap is not answered "registered"
            self._record_storage_outage()

    def _check_file_before(self) -> None:
        """The journal's file gone already: the write is refused, nothing written (not even
        the evidence entry a registration staged)."""
        try:
            self._file.check()
        except StorageError:
            self.evidence.rolled_back()
            raise

    def _failed(self, error: sqlite3.Error) -> StorageError:
        """Note a refused write (disk full, read-only, I/O error) for the evidence: it
        cannot be written now, so it is written by the next write that succeeds."""
        now = self._clock().wall_ns
        if self._storage_outage is None:
            self._storage_outage = {"first_wall_ns": now, "failed_writes": 0, "error": str(error)}
        self._storage_outage["failed_writes"] += 1
        self._storage_outage["last_wall_ns"] = now
        return StorageError(f"{self.path}: {error}")

    def _record_storage_outage(self) -> None:
        outage, self._storage_outage = self._storage_outage, None
        if outage is None:
            return
        outage["recorded_wall_ns"] = self._clock().wall_ns
        try:
            with self.transaction() as conn:
                self.evidence.append(conn, self._clock(), Kind.STORAGE_FULL, outage)
        except StorageError:  # still failing: noted again by _failed, kept for next time
            if self._storage_outage is not None:
                outage["failed_writes"] += self._storage_outage["failed_writes"]
            self._storage_outage = outage

    def sync_wal(self) -> None:
        """Make every commit so far durable, as synchronous=FULL would at commit, but after
        the journal's lock is released: a tap waits for its own fsync, not the uplink's.
        fdatasync, as SQLite's own commits: the WAL's data and size, not its times (fsync
        would also commit the new mtime through ext4's journal, one more device flush)."""
        if self._wal_fd is None:
            self._wal_fd = os.open(self._wal_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fdatasync(self._wal_fd)
        except OSError as error:
            raise StorageError(f"cannot sync the journal's WAL: {error}") from error

    def close(self) -> None:
        self._checkpointer.close()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
        with self.lock:
            self.conn.close()
            self._file.close()
            os.close(self._lock_fd)


class FileGuard:
    """The journal's file as opened at start (its device and inode, held by a descriptor of
    our own) against the file its path names now: one stat.

    A path that is gone, or names another file, means every commit lands in a file nobody
    will open again: that is final for this process (`lost`: no stat after), logged once.
    A path that cannot be looked at (EACCES, EIO) refuses nothing: the commit goes to the
    open file, and a transient error must not refuse a tap that is stored.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        opened = os.fstat(self._fd)
        self._identity = (opened.st_dev, opened.st_ino)
        self.lost: str | None = None

    def check(self) -> None:
        """Raise StorageError if the path no longer names the file opened at start."""
        if self.lost is None:
            self.lost = self._why_lost()
            if self.lost is None:
                return
            log.critical(
                "JOURNAL FILE LOST: every tap is refused until badge-gateway is restarted",
                journal=str(self._path),
                error=self.lost,
            )
        raise StorageError(self.lost)

    def _why_lost(self) -> str | None:
        try:
            now = os.stat(self._path)
        except (FileNotFoundError, NotADirectoryError):
            return _lost(self._path, "deleted or moved away")
        except OSError:
            return None
        if (now.st_dev, now.st_ino) != self._identity:
            return _lost(self._path, "replaced by another file")
        return None

    def close(self) -> None:
        os.close(self._fd)


def _lost(path: Path, how: str) -> str:
    return (
        f"{path}: the journal file was {how} while the daemon ran; nothing is stored"
        " until badge-gateway is restarted on a valid journal"
    )


def _open_checked(path: Path, max_size_mb: int | None, file: FileGuard) -> sqlite3.Connection:
    conn = _open(path, max_size_mb)
    try:
        migrate(conn)
        file.check()  # SQLite opened the file the guard holds
    except BaseException:
        conn.close()
        raise
    return conn


def _open(path: Path, max_size_mb: int | None) -> sqlite3.Connection:
    conn = connect(path, read_only=False)
    conn.row_factory = sqlite3.Row
    if max_size_mb is not None:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        _set_max_pages(conn, max_size_mb * 1024 * 1024 // page_size)
    return conn


def _set_max_pages(conn: sqlite3.Connection, pages: int) -> None:
    conn.execute(f"PRAGMA max_page_count={int(pages)}")
