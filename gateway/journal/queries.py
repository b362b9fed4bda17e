"""The journal's reads, on whichever connection is given: the writer's (under its lock) or a
read-only one (the daemon's views, the CLI's). `Journal` holds two `Queries`, `JournalReader`
one.

The uplink's queue is the `delivery` column itself: pending rows are found from the oldest
pending one on (`pending_from`), which the writer keeps track of and a reader looks up.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from gateway.journal.rows import (
    DELIVERY_COLUMNS,
    OUTBOUND_COLUMNS,
    REGISTRATION_COLUMNS,
    DeliveryRecord,
    JournalStats,
    Outbound,
    StoredRegistration,
    delivery_from_row,
    outbound_from_row,
    registration_from_row,
)
from gateway.models import DeliveryState, iso_utc

REGISTRATIONS = f"SELECT seq, {REGISTRATION_COLUMNS} FROM registration_rows"
DELIVERIES = f"SELECT seq, {REGISTRATION_COLUMNS}, {DELIVERY_COLUMNS} FROM registration_rows"
OUTBOUND = f"SELECT {OUTBOUND_COLUMNS} FROM registration_rows"


class Queries:
    """Reads on one connection, each under `guard`: the writer's lock on the writer's
    connection (a read must not step between a transaction's statements), a lock of its own
    on the daemon's read-only connection (shared by its threads), nothing on the CLI's."""

    def __init__(
        self, conn: sqlite3.Connection, guard: AbstractContextManager[object] | None = None
    ) -> None:
        self._conn = conn
        self._guard = guard if guard is not None else nullcontext()

    def last_registration(
        self, niss: str | None, declaration: str, *, limosa: str | None = None
    ) -> StoredRegistration | None:
        """A person's last registration under this declaration, by NISS or Limosa number."""
        column, value = ("niss", niss) if niss is not None else ("limosa", limosa)
        with self._guard:
            row = self._conn.execute(
                REGISTRATIONS
                + f" WHERE {column} = ? AND declaration = ? ORDER BY seq DESC LIMIT 1",
                (value, declaration),
            ).fetchone()
            return registration_from_row(row) if row else None

    def registrations_since(self, wall_ns: int, limit: int = 10_000) -> list[StoredRegistration]:
        with self._guard:
            rows = self._conn.execute(
                REGISTRATIONS + " WHERE wall_ns >= ? ORDER BY seq LIMIT ?",
                (wall_ns, limit),
            )
            return [registration_from_row(row) for row in rows]

    def recent_registrations(self, count: int) -> list[StoredRegistration]:
        with self._guard:
            rows = self._conn.execute(
                REGISTRATIONS + " ORDER BY seq DESC LIMIT ?",
                (count,),
            )
            return [registration_from_row(row) for row in rows]

    def recent_attempts(self, count: int) -> list[dict[str, Any]]:
        with self._guard:
            rows = self._conn.execute(
                "SELECT seq, outcome, badge_uid, reader, detail, wall_ns, clock_synced"
                " FROM tap_attempts ORDER BY seq DESC LIMIT ?",
                (count,),
            )
            return [{**dict(row), "time_utc": iso_utc(row["wall_ns"])} for row in rows]

    def deliveries(
        self, delivery: DeliveryState | None = None, limit: int = 1000
    ) -> list[DeliveryRecord]:
        """Registrations with what the uplink learnt, newest first (`queue list`)."""
        where = "" if delivery is None else "WHERE delivery = ?"
        with self._guard:
            rows = self._conn.execute(
                f"{DELIVERIES} {where} ORDER BY seq DESC LIMIT ?",
                (limit,) if delivery is None else (delivery, limit),
            )
            return [delivery_from_row(row) for row in rows]

    def uplink_transitions(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._guard:
            rows = self._conn.execute(
                "SELECT * FROM uplink_transitions ORDER BY seq DESC LIMIT ?", (limit,)
            )
            return [{**dict(row), "time_utc": iso_utc(row["wall_ns"])} for row in rows]

    def stats(self, pending_from: int) -> JournalStats:
        with self._guard:
            registrations, attempts = self._conn.execute(
                "SELECT (SELECT count(*) FROM registrations), (SELECT count(*) FROM tap_attempts)"
            ).fetchone()
            pending, oldest = self.pending_count_and_oldest(pending_from)
            rejected, unconfirmed = self._conn.execute(
                "SELECT (SELECT count(*) FROM registrations WHERE delivery = 'rejected'),"
                " (SELECT count(*) FROM unconfirmed)"
            ).fetchone()  # a partial index holds just the rejected, a table the unconfirmed
            return JournalStats(registrations, pending, oldest, attempts, rejected, unconfirmed)

    def pending_count(self, pending_from: int) -> int:
        with self._guard:
            return self.pending_count_and_oldest(pending_from)[0]

    def oldest_pending_seq(self, floor: int = 0) -> int:
        """Where the uplink's queue starts, looked for from `floor` on (the caller holds
        the guard, or needs none)."""
        row = self._conn.execute(
            "SELECT min(seq) FROM registration_rows WHERE seq >= ? AND delivery = 'pending'",
            (floor,),
        ).fetchone()
        if row[0] is not None:
            return int(row[0])
        row = self._conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM registrations").fetchone()
        return int(row[0])

    def pending_count_and_oldest(self, pending_from: int) -> tuple[int, int | None]:
        """A range scan from the oldest pending row on: cheap however long the history
        (the caller holds the guard, or needs none)."""
        count, oldest = self._conn.execute(
            "SELECT count(*), min(wall_ns) FROM registration_rows"
            " WHERE seq >= ? AND delivery = 'pending'",
            (pending_from,),
        ).fetchone()
        return int(count), oldest


def read_pending(conn: sqlite3.Connection, start: int, limit: int) -> list[Outbound]:
    """The uplink's queue from `start` on: registrations not yet delivered nor rejected,
    oldest first."""
    rows = conn.execute(
        OUTBOUND + " WHERE seq >= ? AND delivery = 'pending' ORDER BY seq LIMIT ?",
        (start, limit),
    ).fetchall()
    return [outbound_from_row(row) for row in rows]
