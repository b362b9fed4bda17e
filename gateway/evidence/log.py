"""The evidence log in the journal database: hash-chained entries (gateway.evidence.chain), and the
liveness row that bounds a power cut.

The journal writes an entry in the same transaction as the change it describes, through
`EvidenceWriter`; the chain head advances only once that transaction committed. A
registration's entry lives in the registration's own row (its seq and the two hashes; the
details are the row's fields), so that a tap writes no page beyond the ones it wrote before
the log existed; every other entry is a row of the append-only `evidence` table. The view
`evidence_chain` reads both as one chain.
The liveness row is overwritten in place (by the heartbeat, not appended), so that an
idle box costs one small page write a minute, not a growing log; the next start turns it
into an `unclean-stop` entry when the previous run did not stop cleanly.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.evidence.chain import (
    GENESIS,
    ChainCheck,
    Entry,
    Kind,
    canonical,
    make_entry,
    pruned_by,
    verify_chain,
)
from gateway.models import ClockSample

MIGRATION = """
    ALTER TABLE registrations ADD COLUMN ev_seq INTEGER;
    ALTER TABLE registrations ADD COLUMN ev_prev TEXT;
    ALTER TABLE registrations ADD COLUMN ev_hash TEXT;
    CREATE TABLE evidence (
        seq          INTEGER PRIMARY KEY,
        wall_ns      INTEGER NOT NULL,
        monotonic_ns INTEGER NOT NULL,
        boot_id      TEXT    NOT NULL,
        clock_synced INTEGER NOT NULL CHECK (clock_synced IN (0, 1)),
        kind         TEXT    NOT NULL,
        details      TEXT    NOT NULL,
        prev_hash    TEXT    NOT NULL,
        hash         TEXT    NOT NULL
    );
    CREATE TRIGGER evidence_no_update BEFORE UPDATE ON evidence
        BEGIN SELECT RAISE(ABORT, 'the evidence log is append-only'); END;
    CREATE TRIGGER evidence_no_delete BEFORE DELETE ON evidence
        BEGIN SELECT RAISE(ABORT, 'the evidence log is append-only'); END;
    CREATE TABLE liveness (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        running      INTEGER NOT NULL,
        wall_ns      INTEGER NOT NULL,
        monotonic_ns INTEGER NOT NULL,
        boot_id      TEXT    NOT NULL,
        head_seq     INTEGER NOT NULL,
        head_hash    TEXT    NOT NULL
    );
    CREATE VIEW evidence_chain AS
        SELECT seq, wall_ns, monotonic_ns, boot_id, clock_synced, kind, details, prev_hash, hash
        FROM evidence
        UNION ALL
        SELECT ev_seq, wall_ns, monotonic_ns, boot_id, clock_synced, 'registration',
               json_object(
                   'id', id, 'type', direction, 'registration_wall_ns', wall_ns,
                   'reader', reader, 'badge_uid', badge_uid, 'worker', worker_name,
                   'niss', substr('********************', 1, max(length(niss) - 3, 0))
                           || substr(niss, -3)),
               ev_prev, ev_hash
        FROM registrations WHERE ev_seq IS NOT NULL
"""

_INSERT = (
    "INSERT INTO evidence (seq, wall_ns, monotonic_ns, boot_id, clock_synced, kind, details,"
    " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "seq, wall_ns, monotonic_ns, boot_id, clock_synced, kind, details, prev_hash, hash"


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str
    wall_ns: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "wall_ns": self.wall_ns}


@dataclass(frozen=True, slots=True)
class Liveness:
    """What the last run left behind: still 'running' after its end means it was cut."""

    running: bool
    wall_ns: int
    monotonic_ns: int
    boot_id: str
    head: Head


class EvidenceWriter:
    """The chain's writing end, used by the journal under its lock, inside its transactions."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._head = last_head(conn)
        self._staged: Head | None = None

    @property
    def head(self) -> Head:
        return self._head

    def stage(self, clock: ClockSample, kind: Kind, details: Mapping[str, Any]) -> Entry:
        """The next entry, for the caller to store in the open transaction (a registration
        stores it in its own row); it counts once that transaction commits."""
        base = self._staged or self._head
        entry = make_entry(base.seq + 1, clock, kind, details, base.hash)
        self._staged = Head(entry.seq, entry.hash, entry.wall_ns)
        return entry

    def append(
        self,
        conn: sqlite3.Connection,
        clock: ClockSample,
        kind: Kind,
        details: Mapping[str, Any],
    ) -> Entry:
        """Insert the next entry into the evidence table, in the open transaction."""
        entry = self.stage(clock, kind, details)
        conn.execute(
            _INSERT,
            (
                entry.seq,
                entry.wall_ns,
                entry.monotonic_ns,
                entry.boot_id,
                int(entry.clock_synced),
                entry.kind,
                canonical(entry.details).decode(),
                entry.prev_hash,
                entry.hash,
            ),
        )
        return entry

    def committed(self) -> None:
        if self._staged is not None:
            self._head, self._staged = self._staged, None

    def rolled_back(self) -> None:
        self._staged = None

    def beat(self, conn: sqlite3.Connection, clock: ClockSample, *, running: bool) -> None:
        """Overwrite the liveness row: the box was alive (or stopped cleanly) at `clock`."""
        conn.execute(
            "INSERT OR REPLACE INTO liveness (id, running, wall_ns, monotonic_ns, boot_id,"
            " head_seq, head_hash) VALUES (1, ?, ?, ?, ?, ?, ?)",
            (
                int(running),
                clock.wall_ns,
                clock.monotonic_ns,
                clock.boot_id,
                (self._staged or self._head).seq,
                (self._staged or self._head).hash,
            ),
        )


def last_head(conn: sqlite3.Connection) -> Head:
    """The chain's last entry, from either table (both by their rowid: no scan)."""
    rows = [
        conn.execute("SELECT seq, hash, wall_ns FROM evidence ORDER BY seq DESC LIMIT 1"),
        conn.execute(
            "SELECT ev_seq, ev_hash, wall_ns FROM registrations WHERE ev_seq IS NOT NULL"
            " ORDER BY seq DESC LIMIT 1"
        ),
    ]
    found = [row for cursor in rows if (row := cursor.fetchone()) is not None]
    if not found:
        return Head(0, GENESIS)
    seq, hash_, wall_ns = max(found, key=lambda row: int(row[0]))
    return Head(int(seq), str(hash_), int(wall_ns))


def liveness(conn: sqlite3.Connection) -> Liveness | None:
    row = conn.execute(
        "SELECT running, wall_ns, monotonic_ns, boot_id, head_seq, head_hash FROM liveness"
    ).fetchone()
    if row is None:
        return None
    return Liveness(bool(row[0]), int(row[1]), int(row[2]), str(row[3]), Head(row[4], row[5]))


def entries(
    conn: sqlite3.Connection,
    *,
    from_seq: int = 1,
    from_wall_ns: int | None = None,
    to_wall_ns: int | None = None,
) -> Iterator[Entry]:
    """Entries in seq order, those from `from_seq` on whose wall time is in the range."""
    where, values = ["seq >= ?"], [from_seq]
    if from_wall_ns is not None:
        where.append("wall_ns >= ?")
        values.append(from_wall_ns)
    if to_wall_ns is not None:
        where.append("wall_ns < ?")
        values.append(to_wall_ns)
    where_all = " AND ".join(where)
    sql = f"SELECT {_COLUMNS} FROM evidence_chain WHERE {where_all} ORDER BY seq"  # noqa: S608
    for row in conn.execute(sql, values):
        yield _entry_from_row(row)


def entry_at(conn: sqlite3.Connection, seq: int) -> Entry | None:
    sql = f"SELECT {_COLUMNS} FROM evidence_chain WHERE seq = ?"  # noqa: S608
    row = conn.execute(sql, (seq,)).fetchone()
    return None if row is None else _entry_from_row(row)


def _entry_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Entry:
    try:
        details = json.loads(row[6])
    except ValueError:
        details = {"unreadable": str(row[6])}  # verify will name it as edited
    return Entry(
        seq=int(row[0]),
        wall_ns=int(row[1]),
        monotonic_ns=int(row[2]),
        boot_id=str(row[3]),
        clock_synced=bool(row[4]),
        kind=str(row[5]),
        details=details if isinstance(details, dict) else {"unreadable": details},
        prev_hash=str(row[7]),
        hash=str(row[8]),
    )


@dataclass(frozen=True, slots=True)
class LogCheck:
    """The chain, then what else the journal says that the chain must agree with."""

    chain: ChainCheck
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problems


def verify_journal(
    conn: sqlite3.Connection, *, anchor: Head | None = None, public_key: str | None = None
) -> LogCheck:
    """The whole log: every hash and link (a registration row edited or deleted breaks its
    entry, which is that row); then whether the head the box last noted (liveness) and an
    anchor kept elsewhere are still there (a truncated or rewritten log), and whether each
    retention summary's signature holds (with `public_key`, hex: each signed by that key)."""
    pruning = summaries(conn)
    chain = verify_chain(entries(conn), pruned=pruned_by(pruning))
    problems = [*_heads_against(conn, chain, anchor), *_signatures(pruning, public_key)]
    return LogCheck(chain, tuple(problems))


def summaries(conn: sqlite3.Connection) -> list[Entry]:
    """The retention summaries (few: one per pruning run)."""
    sql = f"SELECT {_COLUMNS} FROM evidence WHERE kind = ? ORDER BY seq"  # noqa: S608
    return [_entry_from_row(row) for row in conn.execute(sql, (Kind.RETENTION_SUMMARY.value,))]


def _signatures(pruning: list[Entry], pinned: str | None) -> Iterator[str]:
    if not pruning:
        return
    from gateway.evidence.signing import signature_problems  # cryptography: not in the daemon's RAM

    for summary in pruning:
        yield from signature_problems(summary.details, pinned, f"retention summary #{summary.seq}")


def _heads_against(
    conn: sqlite3.Connection, chain: ChainCheck, anchor: Head | None
) -> Iterator[str]:
    noted = liveness(conn)
    last = chain.last.seq if chain.last else 0
    for source, head in (
        ("the box's last noted head", noted.head if noted else None),
        ("the anchor", anchor),
    ):
        if head is None or head.seq == 0:
            continue
        if head.seq > last:
            yield f"truncated: {source} is entry {head.seq}, the log ends at entry {last}"
            continue
        found = entry_at(conn, head.seq)
        if found is not None and found.hash != head.hash:
            yield (
                f"rewritten: {source} says entry {head.seq} has hash {head.hash[:16]}...,"
                f" the log has {found.hash[:16]}..."
            )
