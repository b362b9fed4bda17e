"""The journal: one SQLite file, the single source of truth (docs/design.md, "The journal").

`Journal` is the daemon's: the one writer (gateway.journal.writer), the reads inside its
transactions, and the views' reads on a read-only connection, never waiting for the
writer's lock (gateway.journal.queries), with the operations of each of its users, whose
narrow views are gateway.journal.views. `JournalReader` is the CLI's: the same reads on a
read-only connection of its own. The file itself (schema, migrations, lock) is
gateway.journal.file; the records and their rows gateway.journal.rows; the evidence
entries written in the same transactions gateway.evidence.log.

SD-card wear: a registration touches two b-tree pages (its row, which also holds its
evidence entry, and the per-worker index entry) and pages are 2 KiB, so a tap writes
about 10.5 KiB (docs/benchmarks.md). For that reason the registration id (a UUIDv7 made
by this process, see gateway.uuid7) has no UNIQUE index, and the uplink's queue is the
`delivery` column itself: pending rows are found from the oldest pending one on, which the
writer keeps track of. WAL checkpoints run on a thread of their own
(gateway.journal.checkpoint), never inside a tap's commit.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from gateway.clock import boot_id, boottime_ns
from gateway.evidence import Entry, Head, Kind
from gateway.evidence import log as evidence_log
from gateway.journal.delivery import (
    CLEAR_IN_FLIGHT,
    CONFIRM,
    FIND_UNCONFIRMED,
    FLAG_POSSIBLY_DUPLICATED,
    IN_FLIGHT_PENDING,
    MARK_IN_FLIGHT,
    MARK_UNCONFIRMED,
    RESOLVE,
    SETTLE_REJECTED,
    delivered_fields,
    rejected_fields,
    settle_delivered,
)
from gateway.journal.file import connect
from gateway.journal.queries import Queries, read_pending
from gateway.journal.retention import PRUNABLE, retention_summary
from gateway.journal.rows import (
    INSERT_ATTEMPT,
    INSERT_REGISTRATION,
    Acknowledgement,
    DeliveryRecord,
    JournalStats,
    Outbound,
    Rejection,
    StoredRegistration,
    TapAttempt,
    attempt_row,
    captured,
    registration_row,
    registration_values,
    storable_onss_id,
)
from gateway.journal.writer import Writer
from gateway.models import ClockSample, DeliveryState, Registration, UplinkState, Worker

SET_FLEET_VALUE = "INSERT OR REPLACE INTO fleet_state (key, value) VALUES (?, ?)"


class Journal:
    """The daemon's journal; one per file, for the whole process (a file lock says so).

    Thread-safe: every write holds the writer's lock. The reads (status, reports, the
    uplink's queue, the fleet link's evidence) have read-only connections of their own: a
    snapshot of what was committed, never waiting for that lock, which a tap may be waiting
    for. Each worker's last registration is also kept in memory, exact because this is the
    only writer: a tap reads nothing.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_size_mb: int | None = None,
        clock: Callable[[], ClockSample] | None = None,
    ) -> None:
        self.path = path
        self._clock = clock or _unsynchronised_now
        self._writer = Writer(path, max_size_mb=max_size_mb, clock=self._clock)
        self._lock = self._writer.lock
        self._evidence = self._writer.evidence
        self._writes = Queries(self._writer.conn, self._lock)  # inside a transaction, a tap
        self._reads_lock = threading.Lock()
        self._reads_conn = _reading(path)
        self._reads = Queries(self._reads_conn, self._reads_lock)
        self._last: dict[tuple[str | None, str | None, str], Registration | None] = {}
        self._pending_from = self._writes.oldest_pending_seq()  # where the uplink's queue starts
        # The uplink reads its queue on a connection of its own: a snapshot of what was
        # committed, without the journal's lock, which a tap may be waiting for (the rows
        # come one by one, each step giving the GIL away and waiting to get it back).
        self._queue_lock = threading.Lock()
        self._queue_conn = _reading(path)
        self._fleet_lock = threading.Lock()
        self._fleet_conn: sqlite3.Connection | None = None  # opened when the link first reads

    # --- the tap path (views.TapJournal) ---------------------------------------------------

    def previous_registration(self, worker: Worker, declaration: str) -> Registration | None:
        """The registration a new tap of this worker under this declaration follows, if any."""
        key = (worker.niss, worker.limosa, declaration)
        # Known already (every tap but a worker's first since start): answered without the
        # journal's lock, which the uplink may hold for milliseconds while it settles a
        # batch. Taps are serialised by the pipeline, and only append_registration (a tap)
        # changes an entry, so the entry read here is the latest.
        if key in self._last:
            return self._last[key]
        with self._lock.for_the_door():
            if key not in self._last:
                stored = self._writes.last_registration(
                    worker.niss, declaration, limosa=worker.limosa
                )
                self._last[key] = stored.registration if stored else None
            return self._last[key]

    def append_registration(self, reg: Registration) -> int:
        """Store a registration, pending delivery, and its evidence entry, in one durable
        transaction."""
        with self._lock.for_the_door():
            entry = self._evidence.stage(reg.clock, Kind.REGISTRATION, captured(reg))
            row = (*registration_row(reg), entry.seq, entry.prev_hash, entry.hash)
            seq = self._writer.insert(INSERT_REGISTRATION, row)  # one statement: atomic
            self._last[(reg.worker.niss, reg.worker.limosa, reg.declaration)] = reg
            return seq

    def append_attempt(self, attempt: TapAttempt) -> int:
        """Store a tap that registered nothing; a refused one is evidence, a repeat is not."""
        with self._lock.for_the_door(), self._writer.transaction() as conn:
            cursor = conn.execute(INSERT_ATTEMPT, attempt_row(attempt))
            if attempt.outcome not in ("repeat", "already-today"):  # nothing was refused
                refused = {
                    "outcome": attempt.outcome,
                    "badge_uid": attempt.badge_uid,
                    "reader": attempt.reader,
                }
                self._evidence.append(conn, attempt.clock, Kind.TAP_REFUSED, refused)
        return int(cursor.lastrowid or 0)

    # --- the uplink (views.UplinkQueue) ----------------------------------------------------

    def pending(self, limit: int, after_seq: int = 0) -> list[Outbound]:
        """The uplink's queue: registrations not yet delivered nor rejected, oldest first
        (those after `after_seq` only: the uplink reads ahead while a batch is out)."""
        start = max(self._pending_from, after_seq + 1)
        with self._queue_lock:
            return read_pending(self._queue_conn, start, limit)

    def mark_in_flight(self, seqs: Sequence[int]) -> None:
        """Before a request, durably: a crash before its outcome is known leaves the mark,
        and the next start flags those registrations (see recover_in_flight)."""
        with self._writer.unsynced_transaction() as conn:
            conn.execute(MARK_IN_FLIGHT, (json.dumps(list(seqs)),))
        self._writer.sync_wal()

    def clear_in_flight(self, seqs: Sequence[int]) -> None:
        """After a request the ONSS did not process (a retry follows): not durably, since a
        lost clear only over-flags."""
        with self._writer.unsynced_transaction() as conn:
            conn.execute(CLEAR_IN_FLIGHT, (json.dumps(list(seqs)),))

    def settle(self, acks: Sequence[Acknowledgement], rejections: Sequence[Rejection] = ()) -> None:
        """What the ONSS answered for a batch, in one commit: ids and remarks of the created
        ones, errors of the refused ones (never sent again by themselves).

        Not fsync'd: the in-flight mark made before sending was. If a power cut loses this
        commit, the mark survives and the batch is resent flagged "possibly duplicated",
        exactly as after a crash mid-request. That halves the uplink's fsyncs, which share
        the SD card with the taps' (docs/benchmarks.md, tap latency during a drain).
        """
        delivered = [field for ack in acks for field in delivered_fields(ack)]
        rejected = json.dumps([rejected_fields(rejection) for rejection in rejections])
        settled = json.dumps([a.seq for a in acks] + [r.seq for r in rejections])
        # the rows are built first: a tap may be waiting for the lock
        with self._writer.unsynced_transaction() as conn:
            if acks:
                conn.execute(settle_delivered(len(acks)), delivered)
            conn.execute(SETTLE_REJECTED, (rejected,))
            conn.execute(CLEAR_IN_FLIGHT, (settled,))
            self._pending_from = self._writes.oldest_pending_seq(self._pending_from)
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

    def flag_possibly_duplicated(self, seqs: Sequence[int], cause: str) -> None:
        """Sent without an answer: the ONSS may hold them already; a resend may duplicate."""
        flagged_seqs = json.dumps(list(seqs))
        with self._writer.transaction() as conn:
            conn.execute(FLAG_POSSIBLY_DUPLICATED, (flagged_seqs,))
            conn.execute(CLEAR_IN_FLIGHT, (flagged_seqs,))
            flagged = {
                "ids": list(registration_values(conn, "seq", "id", seqs).values()),
                "cause": cause,
            }
            self._evidence.append(conn, self._clock(), Kind.POSSIBLY_DUPLICATED, flagged)

    def mark_unconfirmed(self, seqs: Sequence[int], cause: str, clock: ClockSample) -> None:
        """A 2xx whose answer could not be read: the ONSS may hold these registrations, so
        they leave the queue (never sent again by themselves) for the employer to resolve
        (`confirm`, `retry_unconfirmed`). Pending ones only; their in-flight marks cleared
        and an `unconfirmed` entry written in the same durable commit: a lost commit would
        leave the marks, and the next start would resend them."""
        marked = json.dumps(list(seqs))
        with self._writer.transaction() as conn:
            moved = [
                row[0] for row in conn.execute(MARK_UNCONFIRMED, (cause, clock.wall_ns, marked))
            ]
            conn.execute(CLEAR_IN_FLIGHT, (marked,))
            self._pending_from = self._writes.oldest_pending_seq(self._pending_from)
            if moved:
                ids = registration_values(conn, "seq", "id", moved)
                unconfirmed = {"ids": [ids[seq] for seq in sorted(moved)], "cause": cause}
                self._evidence.append(conn, clock, Kind.UNCONFIRMED, unconfirmed)

    def confirm(
        self, registration_id: str, onss_id: int | str, late_after_ns: int
    ) -> int | str | None:
        """The employer found an unconfirmed registration at the ONSS: delivered, with the
        id the ONSS gave it (stored as `storable_onss_id` says), when its unreadable answer
        came (late if that is more than `late_after_ns` after the tap), and an
        `acknowledged` entry saying the employer confirmed it. Returns the id as stored;
        None when no unconfirmed registration has that id."""
        stored_id = storable_onss_id(onss_id)
        with self._writer.transaction() as conn:
            row = conn.execute(FIND_UNCONFIRMED, (registration_id,)).fetchone()
            if row is None:
                return None
            answered = int(row["answered_wall_ns"])
            late = answered - int(row["wall_ns"]) > late_after_ns
            uncertain = not row["clock_synced"]  # what was sent is not known: as tapped
            conn.execute(CONFIRM, (row["seq"], stored_id, answered, int(late), int(uncertain)))
            conn.execute(RESOLVE, (row["seq"],))
            acknowledged = {
                "ids": {registration_id: stored_id},
                "late": [registration_id] if late else [],
                "remarks": {},
                "confirmed_by": "employer",
                "answered_wall_ns": answered,
            }
            self._evidence.append(conn, self._clock(), Kind.ACKNOWLEDGED, acknowledged)
            return stored_id

    def retry_unconfirmed(self, registration_id: str) -> bool:
        """The employer sends an unconfirmed registration again: back in the queue, flagged
        "possibly duplicated" (the ONSS may hold it already), with its evidence entry.
        False when no unconfirmed registration has that id."""
        with self._writer.transaction() as conn:
            row = conn.execute(FIND_UNCONFIRMED, (registration_id,)).fetchone()
            if row is None:
                return False
            seq = int(row["seq"])
            conn.execute(RESOLVE, (seq,))
            conn.execute(FLAG_POSSIBLY_DUPLICATED, (json.dumps([seq]),))
            flagged = {
                "ids": [registration_id],
                "cause": "sent again by the employer after an answer that could not be read",
            }
            self._evidence.append(conn, self._clock(), Kind.POSSIBLY_DUPLICATED, flagged)
            self._pending_from = min(self._pending_from, seq)
            return True

    def recover_in_flight(self) -> list[str]:
        """After a crash: registrations whose request had no known outcome may be duplicated
        by their resend. Returns their ids."""
        with self._lock:
            rows = self._writer.conn.execute(IN_FLIGHT_PENDING).fetchall()
        if rows:
            seqs = [row["seq"] for row in rows]
            self.flag_possibly_duplicated(seqs, "sent before a crash, no answer known")
        return [row["id"] for row in rows]

    def record_transition(
        self, state: UplinkState, cause: str, detail: str | None, clock: ClockSample
    ) -> int:
        """The uplink went online, offline or forbidden: its table, and the evidence (an
        outage starts or ends)."""
        pending = self._reads.pending_count(self._pending_from)  # before the lock: a scan
        with self._writer.transaction() as conn:
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

    def requeue(self, registration_id: str) -> bool:
        """Send a rejected registration again (the employer fixed the badge register)."""
        with self._writer.transaction() as conn:
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

    # --- the evidence (views.EvidenceSink) and the daemon's runs ---------------------------

    @property
    def evidence_head(self) -> Head:
        with self._lock:
            return self._evidence.head

    def record(self, kind: Kind, details: dict[str, Any], clock: ClockSample | None = None) -> None:
        """An evidence entry on its own: the daemon, a reader, the clock, the badge file."""
        with self._writer.transaction() as conn:
            self._evidence.append(conn, clock or self._clock(), kind, details)

    def heartbeat(self) -> None:
        """The box is alive now: bounds a power cut that would follow (one page, in place)."""
        with self._writer.transaction() as conn:
            self._evidence.beat(conn, self._clock(), running=True)

    def start_run(self, details: dict[str, Any]) -> list[Kind]:
        """At daemon start: an `unclean-stop` entry if the last run was cut short (its last
        heartbeat bounds the outage), then `daemon-start`. Returns the kinds written."""
        now = self._clock()
        with self._writer.transaction() as conn:
            written = []
            previous = evidence_log.liveness(conn)
            if previous is not None and previous.running:
                self._evidence.append(conn, now, Kind.UNCLEAN_STOP, _cut_short(previous, now))
                written.append(Kind.UNCLEAN_STOP)
            self._evidence.append(conn, now, Kind.DAEMON_START, details)
            self._evidence.beat(conn, now, running=True)
            return [*written, Kind.DAEMON_START]

    def stop_run(self, reason: str) -> None:
        now = self._clock()
        with self._writer.transaction() as conn:
            self._evidence.append(conn, now, Kind.DAEMON_STOP, {"reason": reason})
            self._evidence.beat(conn, now, running=False)

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
        with self._writer.transaction() as conn:
            rows = conn.execute(PRUNABLE, (before_wall_ns, limit)).fetchall()
            if not rows:
                return 0
            summary = retention_summary(rows, before_wall_ns)
            summary = sign(summary) if sign is not None else summary
            self._evidence.append(conn, self._clock(), Kind.RETENTION_SUMMARY, summary)
            pruned = [(row[0],) for row in rows]
            conn.executemany("DELETE FROM acknowledgements WHERE seq = ?", pruned)
            conn.executemany("DELETE FROM registrations WHERE seq = ?", pruned)
            return len(rows)

    def size_bytes(self) -> int:
        """Pages in use: what counts against the disk budget (max_page_count)."""
        with self._lock:
            conn = self._writer.conn
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    # --- reads (views.RegistrationReads, views.StatusReads) --------------------------------

    def last_registration(
        self, niss: str | None, declaration: str, *, limosa: str | None = None
    ) -> StoredRegistration | None:
        return self._reads.last_registration(niss, declaration, limosa=limosa)

    def registrations_since(self, wall_ns: int, limit: int = 10_000) -> list[StoredRegistration]:
        return self._reads.registrations_since(wall_ns, limit)

    def recent_registrations(self, count: int) -> list[StoredRegistration]:
        return self._reads.recent_registrations(count)

    def recent_attempts(self, count: int) -> list[dict[str, Any]]:
        return self._reads.recent_attempts(count)

    def deliveries(
        self, delivery: DeliveryState | None = None, limit: int = 1000
    ) -> list[DeliveryRecord]:
        """Registrations with what the uplink learnt, newest first (`queue list`)."""
        return self._reads.deliveries(delivery, limit)

    def uplink_transitions(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._reads.uplink_transitions(limit)

    def stats(self) -> JournalStats:
        return self._reads.stats(self._pending_from)

    # --- the fleet link (views.FleetLog) ----------------------------------------------------

    def evidence_after(self, seq: int, limit: int) -> list[Entry]:
        """Up to `limit` evidence entries after `seq`, in order, from a connection of the
        fleet link's own: a snapshot of what was committed, never waiting for the lock."""
        with self._fleet_lock:
            if self._fleet_conn is None:
                self._fleet_conn = connect(self.path, read_only=True)
            return list(islice(evidence_log.entries(self._fleet_conn, from_seq=seq + 1), limit))

    def fleet_value(self, key: str) -> str | None:
        rows = self._writer.execute("SELECT value FROM fleet_state WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_fleet_value(self, key: str, value: str, *, durable: bool = False) -> None:
        """Not durable by default: a watermark lost in a power cut only makes the link
        publish a few entries again, which the archive recognises."""
        transaction = self._writer.transaction if durable else self._writer.unsynced_transaction
        with transaction() as conn:
            conn.execute(SET_FLEET_VALUE, (key, value))

    # --- maintenance -----------------------------------------------------------------------

    def limit_pages(self, pages: int) -> None:
        """Cap the file at `pages` pages (the disk budget; tests use it to fill the disk)."""
        self._writer.limit_pages(pages)

    def execute(self, sql: str) -> list[sqlite3.Row]:
        """Run one statement under the journal's lock and return its rows (tests,
        maintenance)."""
        return self._writer.execute(sql)

    def close(self) -> None:
        with self._queue_lock:
            self._queue_conn.close()
        with self._reads_lock:
            self._reads_conn.close()
        with self._fleet_lock:
            if self._fleet_conn is not None:
                self._fleet_conn.close()
        self._writer.close()


class JournalReader:
    """The CLI's read-only view (views.RegistrationReads); it never blocks or changes the
    daemon's writes."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"no journal at {path}")
        self._conn = connect(path, read_only=True)
        self._conn.row_factory = sqlite3.Row
        self._reads = Queries(self._conn)

    def registrations_since(self, wall_ns: int, limit: int = 10_000) -> list[StoredRegistration]:
        return self._reads.registrations_since(wall_ns, limit)

    def deliveries(
        self, delivery: DeliveryState | None = None, limit: int = 1000
    ) -> list[DeliveryRecord]:
        return self._reads.deliveries(delivery, limit)

    def close(self) -> None:
        self._conn.close()


def _reading(path: Path) -> sqlite3.Connection:
    """A read-only connection of the daemon's, which has read once: SQLite holds the file,
    its WAL and shared memory open from then on, so that `status` still answers (and says
    so) once the journal's file has been deleted under the daemon."""
    conn = connect(path, read_only=True)
    conn.row_factory = sqlite3.Row
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


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
