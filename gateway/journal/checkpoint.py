"""Copy the journal's WAL back into the database, beside the writer, never in its way.

SQLite's automatic checkpoint runs inside a commit, so a tap would wait for it (tens of
milliseconds on an SD card). Here a thread of its own, on a connection of its own, runs
a PASSIVE checkpoint every so many commits: SQLite lets it run while a writer commits, so
a tap shares only the disk with it. Frames committed meanwhile are then copied under the
writer's lock (a few, briefly): a WAL copied whole is reused from its start by the next
commit, where one always behind would grow for as long as commits keep coming. PASSIVE
leaves the WAL file's size alone, so commits keep overwriting allocated blocks: no
file-system metadata to sync.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from pathlib import Path

import structlog

from gateway.journal.file import connect

log = structlog.get_logger("journal")

STOP_TIMEOUT_S = 10.0


class Checkpointer:
    """Told of every commit; checkpoints after `every` of them, on its own thread (started
    at the first checkpoint, so that a journal that never fills its WAL has none)."""

    def __init__(self, path: Path, every: int, writer_lock: AbstractContextManager[object]) -> None:
        self._path = path
        self._every = every
        self._writer_lock = writer_lock
        self._commits = 0
        self._mutex = threading.Lock()
        self._due = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    def committed(self) -> None:
        with self._mutex:
            self._commits += 1
            due = self._commits >= self._every and not self._closing
            if due and self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="journal-checkpoint", daemon=True
                )
                self._thread.start()
        if due:
            self._due.set()

    def close(self) -> None:
        """Wait for a checkpoint under way (SQLite's own runs at the last close after)."""
        with self._mutex:
            self._closing = True
            thread = self._thread
        self._due.set()
        if thread is not None:
            thread.join(STOP_TIMEOUT_S)

    def _run(self) -> None:
        conn = connect(self._path, read_only=False)
        try:
            while self._due.wait() and not self._closing:
                self._due.clear()
                with self._mutex:
                    self._commits = 0
                if not self._checkpoint(conn):  # a reader held frames back
                    with self._mutex:
                        self._commits = self._every  # again at the next commit
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> bool:
        complete = checkpoint(conn)
        with self._mutex:
            committed_meanwhile = self._commits > 0
        if complete and not committed_meanwhile:
            return True
        with self._writer_lock:  # the frames committed meanwhile, so that the WAL can restart
            return checkpoint(conn)


def checkpoint(conn: sqlite3.Connection) -> bool:
    """One PASSIVE checkpoint; True if it copied the whole WAL."""
    try:
        _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error as error:  # the next commit will say it louder
        log.warning("journal checkpoint failed", error=str(error))
        return False
    return bool(copied == frames)
