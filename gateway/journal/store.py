"""The journal: one SQLite file, the single source of truth (DESIGN.md).

A commit returns only after the WAL is fsync'd, so a registration the worker heard a beep
for survives a power cut. One process writes, through one connection, under one lock
(Journal); CLI readers open the file read-only (JournalReader). The file itself (schema,
migrations, lock) is gateway.journal.file; the records and their rows gateway.journal.rows;
the evidence entries written in the same transactions gateway.evidence.log.

SD-card wear: a registration touches two b-tree pages (its row, which also holds its
evidence entry, and the per-worker index entry) and pages are 2 KiB, so a tap writes
about 10.5 KiB (docs/benchmarks.md). For that
reason the registration id (a UUIDv7 made by this process, see gateway.uuid7) has no
UNIQUE index, and the uplink's queue is the `delivery` column itself: pending rows are
found from the oldest pending one on, which the writer keeps track of. WAL checkpoints
run on the journal thread after a tap's commit, never between a commit and its beep.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

import structlog

from gateway.clock import boot_id, boottime_ns
from gateway.evidence import EvidenceWriter, Head, Kind
from gateway.evidence import log as evidence_log
from gateway.journal.checkpoint import Checkpointer
from gateway.journal.file import (
    StorageError,
    connect,
    create_private_file,
    lock_exclusively,
    migrate,
)
from gateway.journal.rows import (
    DELIVERY_COLUMNS,
    INSERT_ATTEMPT,
    INSERT_REGISTRATION,
    OUTBOUND_COLUMNS,
    REGISTRATION_COLUMNS,
    Acknowledgement,
    DeliveryRecord,
    JournalStats,
    Outbound,
    Rejection,
    StoredRegistration,
    TapAttempt,
    attempt_row,
    captured,
    delivery_from_row,
    outbound_from_row,
    registration_from_row,
    registration_row,
    registration_values,
)
from gateway.models import (
    ClockSample,
    Registration,
    iso_utc,
)

log = structlog.get_logger("journal")

CHECKPOINT_EVERY = 500  # commits: a WAL of about 2 MiB

# A batch's rows are written by one statement each (from a JSON array, or a VALUES list
# for acknowledgements, whose eight fields each a JSON path would parse again):
# executemany would step once a row, each step giving the GIL away and waiting for it with
# the journal's lock held, which a tap may be waiting for.
MARK_IN_FLIGHT = "INSERT OR IGNORE INTO in_flight (seq) SELECT value FROM json_each(?)"
CLEAR_IN_FLIGHT = "DELETE FROM in_flight WHERE seq IN (SELECT value FROM json_each(?))"
FLAG_POSSIBLY_DUPLICATED = (
    "UPDATE registrations SET possibly_duplicated = 1 WHERE seq IN (SELECT value FROM json_each(?))"
)
ACKNOWLEDGEMENT_FIELDS = 8  # as _delivered lists them


@lru_cache(maxsize=8)
def settle_delivered(count: int) -> str:
    rows = ", ".join(["(" + ", ".join("?" * ACKNOWLEDGEMENT_FIELDS) + ")"] * count)
    return (
        "INSERT OR IGNORE INTO acknowledgements (seq, onss_id, onss_validity, onss_remarks,"
        " delivered_wall_ns, sent_registration_date, late, time_uncertain)"
        f" SELECT ack.* FROM (VALUES {rows}) AS ack"
        " JOIN registrations AS r ON r.seq = ack.column1 WHERE r.delivery = 'pending'"
    )


SETTLE_REJECTED = (
    "UPDATE registrations SET delivery = 'rejected', rejection = refusal.value ->> 1"
    " FROM json_each(?) AS refusal WHERE seq = refusal.value ->> 0 AND delivery = 'pending'"
    " AND seq NOT IN (SELECT seq FROM acknowledgements)"
)


class _Queries:
    """Reads shared by the writer and by read-only CLI connections."""

    _conn: sqlite3.Connection

    def _guard(self) -> AbstractContextManager[object]:
        return nullcontext()

    def last_registration(self, niss: str, declaration: str) -> StoredRegistration | None:
        with self._guard():
            row = self._conn.execute(
                f"SELECT seq, {REGISTRATION_COLUMNS} FROM registration_rows"
                " WHERE niss = ? AND declaration = ? ORDER BY seq DESC LIMIT 1",
                (niss, declaration),
            ).fetchone()
            return registration_from_row(row) if row else None

    def registrations_since(self, wall_ns: int, limit: int = 10_000) -> list[StoredRegistration]:
        with self._guard():
            rows = self._conn.execute(
                f"SELECT seq, {REGISTRATION_COLUMNS} FROM registration_rows"
                " WHERE wall_ns >= ? ORDER BY seq LIMIT ?",
                (wall_ns, limit),
            )
            return [registration_from_row(row) for row in rows]

    def recent_registrations(self, count: int) -> list[StoredRegistration]:
        with self._guard():
            rows = self._conn.execute(
                f"SELECT seq, {REGISTRATION_COLUMNS} FROM registration_rows"
                " ORDER BY seq DESC LIMIT ?",
                (count,),
            )
            return [registration_from_row(row) for row in rows]

    def recent_attempts(self, count: int) -> list[dict[str, Any]]:
        with self._guard():
            rows = self._conn.execute(
                "SELECT seq, outcome, badge_uid, reader, detail, wall_ns, clock_synced"
                " FROM tap_attempts ORDER BY seq DESC LIMIT ?",
                (count,),
            )
            return [{**dict(row), "time_utc": iso_utc(row["wall_ns"])} for row in rows]

    def pending(self, limit: int, after_seq: int = 0) -> list[Outbound]:
        """The uplink's queue: registrations not yet delivered nor rejected, oldest first
        (those after `after_seq` only: the uplink reads ahead while a batch is out)."""
        start = max(self._oldest_pending_seq(), after_seq + 1)
        with self._queue_reads() as conn:
            rows = conn.execute(
                f"SELECT {OUTBOUND_COLUMNS} FROM registration_rows"
                " WHERE seq >= ? AND delivery = 'pending' ORDER BY seq LIMIT ?",
                (start, limit),
            ).fetchall()
        return [outbound_from_row(row) for row in rows]

    def _queue_reads(self) -> AbstractContextManager[sqlite3.Connection]:
        return nullcontext(self._conn)

    def deliveries(self, delivery: str | None = None, limit: int = 1000) -> list[DeliveryRecord]:
        """Registrations with what the uplink learnt, newest first (`queue list`)."""
        where = "" if delivery is None else "WHERE delivery = ?"
        with self._guard():
            rows = self._conn.execute(
                f"SELECT seq, {REGISTRATION_COLUMNS}, {DELIVERY_COLUMNS} FROM registration_rows"
                f" {where} ORDER BY seq DESC LIMIT ?",
                (limit,) if delivery is None else (delivery, limit),
            )
            return [delivery_from_row(row) for row in rows]

    def uplink_transitions(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._guard():
            rows = self._conn.execute(
                "SELECT * FROM uplink_transitions ORDER BY seq DESC LIMIT ?", (limit,)
            )
            return [{**dict(row), "time_utc": iso_utc(row["wall_ns"])} for row in rows]

    def _oldest_pending_seq(self) -> int:
        """Where the uplink's queue starts (the writer keeps it without a scan)."""
        return self._oldest_pending_seq_from(0)

    def _oldest_pending_seq_from(self, floor: int) -> int:
        row = self._conn.execute(
            "SELECT min(seq) FROM registration_rows WHERE seq >= ? AND delivery = 'pending'",
            (floor,),
        ).fetchone()
        if row[0] is not None:
            return int(row[0])
        row = self._conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM registrations").fetchone()
        return int(row[0])

    def _pending_count_and_oldest(self) -> tuple[int, int | None]:
        """A range scan from the oldest pending row on: cheap however long the history."""
        count, oldest = self._conn.execute(
            "SELECT count(*), min(wall_ns) FROM registration_rows"
            " WHERE seq >= ? AND delivery = 'pending'",
            (self._oldest_pending_seq(),),
        ).fetchone()
        return int(count), oldest

    def stats(self) -> JournalStats:
        with self._guard():
            registrations, attempts = self._conn.execute(
                "SELECT (SELECT count(*) FROM registrations), (SELECT count(*) FROM tap_attempts)"
            ).fetchone()
            pending, oldest = self._pending_count_and_oldest()
            rejected = self._conn.execute(
                "SELECT count(*) FROM registrations WHERE delivery = 'rejected'"
            ).fetchone()[0]  # a partial index holds just these: no scan
            return JournalStats(registrations, pending, oldest, attempts, rejected)


class Journal(_Queries):
    """The writing connection; one per journal, for the whole process (a file lock says so).

    Thread-safe: every method holds the journal's lock. Each worker's last registration is
    also kept in memory, exact because this is the only writer: a tap reads nothing.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_size_mb: int | None = None,
        clock: Callable[[], ClockSample] | None = None,
    ) -> None:
        self.path = path
        self._max_size_mb = max_size_mb
        self._clock = clock or _unsynchronised_now
        self._lock = threading.RLock()
        self._last: dict[tuple[str, str], Registration | None] = {}
        self._checkpointer = Checkpointer(path, CHECKPOINT_EVERY, self._lock)
        self._queue_lock = threading.Lock()
        create_private_file(path)
        self._lock_fd = lock_exclusively(path.with_name(path.name + ".lock"))
        try:  # a journal this release cannot use (newer, failed migration): let go of it
            self._conn = self._open()
            try:
                migrate(self._conn)
            except BaseException:
                self._conn.close()
                raise
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._pending_from = super()._oldest_pending_seq()
        self._evidence = EvidenceWriter(self._conn)
        self._storage_outage: dict[str, Any] | None = None
        self._queue_conn = connect(path, read_only=True)
        self._wal_path = path.with_name(path.name + "-wal")
        self._wal_fd: int | None = None  # opened at the first sync: SQLite keeps the file

    def _guard(self) -> AbstractContextManager[object]:
        return self._lock

    def _open(self) -> sqlite3.Connection:
        conn = connect(self.path, read_only=False)
        conn.row_factory = sqlite3.Row
        if self._max_size_mb is not None:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            self._set_max_pages(conn, self._max_size_mb * 1024 * 1024 // page_size)
        return conn

    @staticmethod
    def _set_max_pages(conn: sqlite3.Connection, pages: int) -> None:
        conn.execute(f"PRAGMA max_page_count={int(pages)}")

    def limit_pages(self, pages: int) -> None:
        """Cap the file at `pages` pages (the disk budget; tests use it to fill the disk)."""
        with self._lock:
            self._set_max_pages(self._conn, pages)

    def execute(self, sql: str) -> None:
        """Run one statement under the journal's lock (tests, maintenance)."""
        with self._lock:
            self._conn.execute(sql)

    def _insert(self, sql: str, values: tuple[Any, ...]) -> int:
        """One INSERT, committed durably: in autocommit mode a statement is a transaction.

        A failed statement (disk full, read-only, I/O error) is rolled back by SQLite.
        """
        with self._lock:
            try:
                cursor = self._conn.execute(sql, values)
            except sqlite3.Error as error:
                self._evidence.rolled_back()
                raise self._failed(error) from error
            self._evidence.committed()  # an entry the statement carried (a registration's)
            self._checkpointer.committed()
            self._record_storage_outage()
            return int(cursor.lastrowid or 0)

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
            self.record(Kind.STORAGE_FULL, outage)
        except StorageError:  # still failing: noted again by _failed, kept for next time
            if self._storage_outage is not None:
                outage["failed_writes"] += self._storage_outage["failed_writes"]
            self._storage_outage = outage

    def _oldest_pending_seq(self) -> int:
        return self._pending_from

    @contextmanager
    def _queue_reads(self) -> Iterator[sqlite3.Connection]:
        """The uplink reads its queue on a connection of its own: a snapshot of what was
        committed, without the journal's lock, which a tap may be waiting for (the rows
        come one by one, each step giving the GIL away and waiting to get it back)."""
        with self._queue_lock:
            yield self._queue_conn

    def previous_registration(self, niss: str, declaration: str) -> Registration | None:
        """The registration a new tap of this worker at this site follows, if any."""
        key = (niss, declaration)
        with self._lock:
            if key not in self._last:
                stored = self.last_registration(niss, declaration)
                self._last[key] = stored.registration if stored else None
            return self._last[key]

    def append_registration(self, reg: Registration) -> int:
        """Store a registration, pending delivery, and its evidence entry, in one durable
        transaction."""
        with self._lock:
            entry = self._evidence.stage(reg.clock, Kind.REGISTRATION, captured(reg))
            row = (*registration_row(reg), entry.seq, entry.prev_hash, entry.hash)
            seq = self._insert(INSERT_REGISTRATION, row)  # one statement: atomic
            self._last[(reg.worker.niss, reg.declaration)] = reg
            return seq

    def append_attempt(self, attempt: TapAttempt) -> int:
        """Store a tap that registered nothing; a refused one is evidence, a repeat is not."""
        with self._transaction() as conn:
            cursor = conn.execute(INSERT_ATTEMPT, attempt_row(attempt))
            if attempt.outcome != "repeat":
                refused = {
                    "outcome": attempt.outcome,
                    "badge_uid": attempt.badge_uid,
                    "reader": attempt.reader,
                }
                self._evidence.append(conn, attempt.clock, Kind.TAP_REFUSED, refused)
        return int(cursor.lastrowid or 0)

    @property
    def evidence_head(self) -> Head:
        with self._lock:
            return self._evidence.head

    def record(self, kind: Kind, details: dict[str, Any], clock: ClockSample | None = None) -> None:
        """An evidence entry on its own: the daemon, a reader, the clock, the badge file."""
        with self._transaction() as conn:
            self._evidence.append(conn, clock or self._clock(), kind, details)

    def start_run(self, details: dict[str, Any]) -> list[Kind]:
        """At daemon start: an `unclean-stop` entry if the last run was cut short (its last
        heartbeat bounds the outage), then `daemon-start`. Returns the kinds written."""
        now = self._clock()
        with self._transaction() as conn:
            written = []
            previous = evidence_log.liveness(conn)
            if previous is not None and previous.running:
                self._evidence.append(conn, now, Kind.UNCLEAN_STOP, _cut_short(previous, now))
                written.append(Kind.UNCLEAN_STOP)
            self._evidence.append(conn, now, Kind.DAEMON_START, details)
            self._evidence.beat(conn, now, running=True)
            return [*written, Kind.DAEMON_START]

    def prune(
        self,
        before_wall_ns: int,
        *,
        limit: int = 10_000,
        sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> int:
        """Delete delivered registrations made before `before_wall_ns`, oldest first (never
        pending or rejected ones), behind one `retention-summary` entry that vouches for
        the chain across them; every other entry stays. Returns how many were pruned."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT seq, ev_seq, ev_hash, wall_ns FROM registrations"
                " JOIN acknowledgements USING (seq) WHERE wall_ns < ? AND ev_seq IS NOT NULL"
                " ORDER BY seq LIMIT ?",
                (before_wall_ns, limit),
            ).fetchall()
            if not rows:
                return 0
            summary = _retention_summary(rows, before_wall_ns)
            summary = sign(summary) if sign is not None else summary
            self._evidence.append(conn, self._clock(), Kind.RETENTION_SUMMARY, summary)
            pruned = [(row[0],) for row in rows]
            conn.executemany("DELETE FROM acknowledgements WHERE seq = ?", pruned)
            conn.executemany("DELETE FROM registrations WHERE seq = ?", pruned)
            return len(rows)

    def size_bytes(self) -> int:
        """Pages in use: what counts against the disk budget (max_page_count)."""
        with self._lock:
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
            free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def heartbeat(self) -> None:
        """The box is alive now: bounds a power cut that would follow (one page, in place)."""
        with self._transaction() as conn:
            self._evidence.beat(conn, self._clock(), running=True)

    def stop_run(self, reason: str) -> None:
        now = self._clock()
        with self._transaction() as conn:
            self._evidence.append(conn, now, Kind.DAEMON_STOP, {"reason": reason})
            self._evidence.beat(conn, now, running=False)

    @contextmanager
    def _transaction(self, *, fsync: bool = True) -> Iterator[sqlite3.Connection]:
        """Several statements, committed together (or not at all), durably unless `fsync`
        is False: then the commit survives a crash of this process but may be lost in a
        power cut, until the next durable commit (any tap) syncs the WAL up to it."""
        with self._lock:
            try:
                if not fsync:
                    self._conn.execute("PRAGMA synchronous=NORMAL")
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    yield self._conn
                    self._conn.execute("COMMIT")
                    self._evidence.committed()
                except BaseException:
                    self._evidence.rolled_back()
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
                finally:
                    if not fsync:
                        self._conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as error:
                raise self._failed(error) from error
            self._checkpointer.committed()
            self._record_storage_outage()

    def settle(self, acks: Sequence[Acknowledgement], rejections: Sequence[Rejection] = ()) -> None:
        """What the ONSS answered for a batch, in one commit: ids and remarks of the created
        ones, errors of the refused ones (never sent again by themselves).

        Not fsync'd: the in-flight mark made before sending was. If a power cut loses this
        commit, the mark survives and the batch is resent flagged "possibly duplicated",
        exactly as after a crash mid-request. That halves the uplink's fsyncs, which share
        the SD card with the taps' (docs/benchmarks.md, tap latency during a drain).
        """
        delivered = [field for ack in acks for field in _delivered(ack)]
        rejected = json.dumps([_rejected(rejection) for rejection in rejections])
        settled = json.dumps([a.seq for a in acks] + [r.seq for r in rejections])
        with self._transaction(fsync=False) as conn:  # rows built first: a tap may be waiting
            if acks:
                conn.execute(settle_delivered(len(acks)), delivered)
            conn.execute(SETTLE_REJECTED, (rejected,))
            conn.execute(CLEAR_IN_FLIGHT, (settled,))
            self._advance_pending_floor()
            self._settlement_evidence(conn, acks, rejections)

    def _settlement_evidence(
        self,
        conn: sqlite3.Connection,
        acks: Sequence[Acknowledgement],
        rejections: Sequence[Rejection],
    ) -> None:
        ids = registration_values(
            conn, "seq", "id", [a.seq for a in acks] + [r.seq for r in rejections]
        )
        now = self._clock()
        if acks:
            acknowledged = {
                "ids": {ids[a.seq]: a.onss_id for a in acks},
                "late": [ids[a.seq] for a in acks if a.late],
                "remarks": {ids[a.seq]: list(a.remarks) for a in acks if a.remarks},
            }
            self._evidence.append(conn, now, Kind.ACKNOWLEDGED, acknowledged)
        for r in rejections:
            rejected = {"id": ids[r.seq], "source": r.source, "errors": list(r.errors)}
            self._evidence.append(conn, now, Kind.REJECTED, rejected)

    def mark_in_flight(self, seqs: Sequence[int], in_flight: bool) -> None:
        """Set before a request and cleared after a definite outcome: a crash in between
        leaves the mark, and the next start flags those registrations (see recover).
        Setting it is durable; clearing it need not be (a lost clear only over-flags)."""
        marked = json.dumps(list(seqs))
        with self._transaction(fsync=False) as conn:
            conn.execute(MARK_IN_FLIGHT if in_flight else CLEAR_IN_FLIGHT, (marked,))
        if in_flight:
            self._sync_wal()

    def _sync_wal(self) -> None:
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

    def flag_possibly_duplicated(self, seqs: Sequence[int], cause: str) -> None:
        """Sent without an answer: the ONSS may hold them already; a resend may duplicate."""
        flagged_seqs = json.dumps(list(seqs))
        with self._transaction() as conn:
            conn.execute(FLAG_POSSIBLY_DUPLICATED, (flagged_seqs,))
            conn.execute(CLEAR_IN_FLIGHT, (flagged_seqs,))
            flagged = {
                "ids": list(registration_values(conn, "seq", "id", seqs).values()),
                "cause": cause,
            }
            self._evidence.append(conn, self._clock(), Kind.POSSIBLY_DUPLICATED, flagged)

    def recover_in_flight(self) -> list[str]:
        """After a crash: registrations whose request had no known outcome may be duplicated
        by their resend. Returns their ids."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, id FROM in_flight JOIN registration_rows USING (seq)"
                " WHERE delivery = 'pending' ORDER BY seq"
            ).fetchall()
        if rows:
            seqs = [row["seq"] for row in rows]
            self.flag_possibly_duplicated(seqs, "sent before a crash, no answer known")
        return [row["id"] for row in rows]

    def requeue(self, registration_id: str) -> bool:
        """Send a rejected registration again (the employer fixed the badge register)."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT seq FROM registrations WHERE id = ? AND delivery = 'rejected'",
                (registration_id,),
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "UPDATE registrations SET delivery = 'pending', rejection = NULL WHERE seq = ?",
                (row["seq"],),
            )
            self._pending_from = min(self._pending_from, int(row["seq"]))
            return True

    def record_transition(
        self, state: str, cause: str, detail: str | None, clock: ClockSample
    ) -> int:
        """The uplink went online, offline or forbidden: its table, and the evidence (an
        outage starts or ends)."""
        with self._transaction() as conn:
            pending, _ = self._pending_count_and_oldest()  # not stats(): the whole history
            cursor = conn.execute(
                "INSERT INTO uplink_transitions (state, cause, detail, pending, wall_ns,"
                " monotonic_ns, boot_id, clock_synced) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    state,
                    cause,
                    detail,
                    pending,
                    clock.wall_ns,
                    clock.monotonic_ns,
                    clock.boot_id,
                    int(clock.synced),
                ),
            )
            if state == "online":
                self._evidence.append(conn, clock, Kind.UPLINK_ONLINE, {"pending": pending})
            else:
                outage = {"cause": cause, "detail": detail, "pending": pending, "state": state}
                self._evidence.append(conn, clock, Kind.UPLINK_OFFLINE, outage)
            return int(cursor.lastrowid or 0)

    def _advance_pending_floor(self) -> None:
        self._pending_from = super()._oldest_pending_seq_from(self._pending_from)

    def close(self) -> None:
        self._checkpointer.close()
        with self._queue_lock:
            self._queue_conn.close()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
        with self._lock:
            self._conn.close()
            os.close(self._lock_fd)


class JournalReader(_Queries):
    """A read-only view for the CLI; it never blocks or changes the daemon's writes."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"no journal at {path}")
        self._conn = connect(path, read_only=True)
        self._conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self._conn.close()


def _delivered(ack: Acknowledgement) -> list[Any]:
    """An acknowledgement's ACKNOWLEDGEMENT_FIELDS, as settle_delivered reads them."""
    return [
        ack.seq,
        ack.onss_id,
        ack.validity,
        json.dumps(list(ack.remarks)) if ack.remarks else "[]",  # mostly none: skip the encoder
        ack.delivered_wall_ns,
        ack.sent_registration_date,
        int(ack.late),
        int(ack.time_uncertain),
    ]


def _rejected(rejection: Rejection) -> list[Any]:
    """A rejection as SETTLE_REJECTED reads it."""
    return [
        rejection.seq,
        json.dumps({"source": rejection.source, "errors": list(rejection.errors)}),
    ]


def _unsynchronised_now() -> ClockSample:
    """Evidence time when the journal was given no clock (tools, tests): never 'synced'."""
    return ClockSample(time.time_ns(), boottime_ns(), boot_id(), False)


def _cut_short(previous: evidence_log.Liveness, now: ClockSample) -> dict[str, Any]:
    same_boot = previous.boot_id == now.boot_id
    return {
        "last_seen_wall_ns": previous.wall_ns,
        "last_seen_monotonic_ns": previous.monotonic_ns,
        "last_seen_boot_id": previous.boot_id,
        "gap_seconds": round((now.wall_ns - previous.wall_ns) / 1e9, 3),
        "same_boot": same_boot,
        "power_cut_likely": not same_boot,
    }


def _retention_summary(rows: Sequence[sqlite3.Row], before_wall_ns: int) -> dict[str, Any]:
    """What stands in for pruned registrations: how many, when, a digest of their entries'
    hashes, and for each kept entry right after a pruned one the hash it links to."""
    hashes = {int(row["ev_seq"]): str(row["ev_hash"]) for row in rows}
    # The entry after the last pruned one may be this summary itself: linked the same way.
    links = {str(seq + 1): hash_ for seq, hash_ in hashes.items() if seq + 1 not in hashes}
    ordered = sorted(hashes)
    runs: list[list[int]] = []
    for seq in ordered:
        if runs and runs[-1][1] == seq - 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return {
        "runs": runs,
        "pruned": len(rows),
        "before_wall_ns": before_wall_ns,
        "first_wall_ns": min(int(row["wall_ns"]) for row in rows),
        "last_wall_ns": max(int(row["wall_ns"]) for row in rows),
        "from_seq": ordered[0],
        "to_seq": ordered[-1],
        "digest": hashlib.sha256("".join(hashes[seq] for seq in ordered).encode()).hexdigest(),
        "links": links,
    }
