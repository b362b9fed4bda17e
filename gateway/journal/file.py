"""The journal's file: SQLite settings, the schema and its migrations, one writer.

WAL mode with synchronous=FULL: a commit returns only after the WAL is fsync'd. Pages of
2 KiB (new journals only): every b-tree page a commit touches costs a WAL frame, so small
pages write less per tap (docs/benchmarks.md). The file is 0600 (personal data) and a
lock file makes sure one process writes, ever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from gateway.errors import JournalLockedError, JournalMigrationError, JournalVersionError
from gateway.evidence import log as evidence_log

PAGE_SIZE = 2048

MIGRATIONS: tuple[str, ...] = (
    # 1: registrations (with their delivery state) and the taps that registered nothing.
    """
    CREATE TABLE registrations (
        seq               INTEGER PRIMARY KEY,
        id                TEXT    NOT NULL,
        badge_uid         TEXT    NOT NULL,
        reader            TEXT    NOT NULL,
        niss              TEXT    NOT NULL,
        enterprise_number TEXT,
        foreign_vat       TEXT,
        worker_name       TEXT    NOT NULL,
        language          TEXT    NOT NULL,
        capacity          TEXT    NOT NULL,
        declaration       TEXT    NOT NULL,
        place             TEXT    NOT NULL,
        direction         TEXT    NOT NULL CHECK (direction IN ('IN', 'OUT')),
        wall_ns           INTEGER NOT NULL,
        monotonic_ns      INTEGER NOT NULL,
        boot_id           TEXT    NOT NULL,
        clock_synced      INTEGER NOT NULL CHECK (clock_synced IN (0, 1)),
        delivery          TEXT    NOT NULL DEFAULT 'pending'
                          CHECK (delivery IN ('pending', 'delivered', 'rejected'))
    );
    CREATE INDEX registrations_by_worker ON registrations (niss, declaration, seq);
    CREATE TABLE tap_attempts (
        seq          INTEGER PRIMARY KEY,
        outcome      TEXT    NOT NULL,
        badge_uid    TEXT    NOT NULL,
        reader       TEXT    NOT NULL,
        niss         TEXT,
        detail       TEXT,
        wall_ns      INTEGER NOT NULL,
        monotonic_ns INTEGER NOT NULL,
        boot_id      TEXT    NOT NULL,
        clock_synced INTEGER NOT NULL CHECK (clock_synced IN (0, 1))
    );
    """,
    # 2: what the uplink learnt: the ONSS acknowledgement or rejection, and the outages.
    """
    ALTER TABLE registrations ADD COLUMN onss_id INTEGER;
    ALTER TABLE registrations ADD COLUMN onss_validity TEXT;
    ALTER TABLE registrations ADD COLUMN onss_remarks TEXT;
    ALTER TABLE registrations ADD COLUMN rejection TEXT;
    ALTER TABLE registrations ADD COLUMN delivered_wall_ns INTEGER;
    ALTER TABLE registrations ADD COLUMN sent_registration_date TEXT;
    ALTER TABLE registrations ADD COLUMN late INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE registrations ADD COLUMN possibly_duplicated INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE registrations ADD COLUMN time_uncertain INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE registrations ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX registrations_rejected ON registrations (seq) WHERE delivery = 'rejected';
    CREATE TABLE uplink_transitions (
        seq          INTEGER PRIMARY KEY,
        state        TEXT    NOT NULL,
        cause        TEXT    NOT NULL,
        detail       TEXT,
        pending      INTEGER NOT NULL,
        wall_ns      INTEGER NOT NULL,
        monotonic_ns INTEGER NOT NULL,
        boot_id      TEXT    NOT NULL,
        clock_synced INTEGER NOT NULL CHECK (clock_synced IN (0, 1))
    );
    """,
    # 3: the evidence log (docs/evidence.md).
    evidence_log.MIGRATION,
    # 4: the uplink's in-flight marks in a table of their own: a request's marks fill one
    #    page, where a column dirtied every page of the batch's rows (twice: set, cleared).
    """
    CREATE TABLE in_flight (seq INTEGER PRIMARY KEY);
    INSERT INTO in_flight (seq) SELECT seq FROM registrations WHERE in_flight = 1;
    ALTER TABLE registrations DROP COLUMN in_flight;
    """,
    # 5: acknowledgements appended to a table of their own: a delivered registration's row
    #    is no longer rewritten (a page for every five rows sent); `registration_rows`
    #    derives its delivery state. The row's own `delivery` says pending or rejected.
    """
    CREATE TABLE acknowledgements (
        seq                    INTEGER PRIMARY KEY,
        onss_id                INTEGER NOT NULL,
        onss_validity          TEXT,
        onss_remarks           TEXT,
        delivered_wall_ns      INTEGER NOT NULL,
        sent_registration_date TEXT,
        late                   INTEGER NOT NULL,
        time_uncertain         INTEGER NOT NULL
    );
    INSERT INTO acknowledgements
        SELECT seq, onss_id, onss_validity, onss_remarks, delivered_wall_ns,
               sent_registration_date, late, time_uncertain
        FROM registrations WHERE delivery = 'delivered';
    UPDATE registrations SET delivery = 'pending' WHERE delivery = 'delivered';
    ALTER TABLE registrations DROP COLUMN onss_id;
    ALTER TABLE registrations DROP COLUMN onss_validity;
    ALTER TABLE registrations DROP COLUMN onss_remarks;
    ALTER TABLE registrations DROP COLUMN delivered_wall_ns;
    ALTER TABLE registrations DROP COLUMN sent_registration_date;
    ALTER TABLE registrations DROP COLUMN late;
    ALTER TABLE registrations DROP COLUMN time_uncertain;
    CREATE VIEW registration_rows AS
        SELECT r.seq, r.id, r.badge_uid, r.reader, r.niss, r.enterprise_number, r.foreign_vat,
               r.worker_name, r.language, r.capacity, r.declaration, r.place, r.direction,
               r.wall_ns, r.monotonic_ns, r.boot_id, r.clock_synced,
               CASE WHEN a.seq IS NULL THEN r.delivery ELSE 'delivered' END AS delivery,
               a.onss_id, a.onss_validity, a.onss_remarks, r.rejection, a.delivered_wall_ns,
               a.sent_registration_date, coalesce(a.late, 0) AS late, r.possibly_duplicated,
               coalesce(a.time_uncertain, 0) AS time_uncertain
        FROM registrations AS r LEFT JOIN acknowledgements AS a ON a.seq = r.seq;
    """,
    # 6: registrations the ONSS may hold but whose answer could not be read, in a table of
    #    their own (the row's CHECK knows three states; `registration_rows` derives the
    #    fourth), and ONSS ids stored as given: `onss_id` loses its INTEGER affinity (an
    #    untyped column converts nothing), so an id that is not a 64-bit integer is kept as
    #    text, where INTEGER affinity would turn "1180591620717411303424" into a rounded REAL.
    #    The acknowledgements are copied once into the new table, every row kept.
    """
    CREATE TABLE unconfirmed (
        seq     INTEGER PRIMARY KEY,
        cause   TEXT    NOT NULL,
        wall_ns INTEGER NOT NULL
    );
    DROP VIEW registration_rows;
    CREATE TABLE acknowledgements_6 (
        seq                    INTEGER PRIMARY KEY,
        onss_id                NOT NULL,
        onss_validity          TEXT,
        onss_remarks           TEXT,
        delivered_wall_ns      INTEGER NOT NULL,
        sent_registration_date TEXT,
        late                   INTEGER NOT NULL,
        time_uncertain         INTEGER NOT NULL
    );
    INSERT INTO acknowledgements_6
        SELECT seq, onss_id, onss_validity, onss_remarks, delivered_wall_ns,
               sent_registration_date, late, time_uncertain
        FROM acknowledgements;
    DROP TABLE acknowledgements;
    ALTER TABLE acknowledgements_6 RENAME TO acknowledgements;
    CREATE VIEW registration_rows AS
        SELECT r.seq, r.id, r.badge_uid, r.reader, r.niss, r.enterprise_number, r.foreign_vat,
               r.worker_name, r.language, r.capacity, r.declaration, r.place, r.direction,
               r.wall_ns, r.monotonic_ns, r.boot_id, r.clock_synced,
               CASE WHEN a.seq IS NOT NULL THEN 'delivered'
                    WHEN u.seq IS NOT NULL THEN 'unconfirmed'
                    ELSE r.delivery END AS delivery,
               a.onss_id, a.onss_validity, a.onss_remarks, r.rejection, a.delivered_wall_ns,
               a.sent_registration_date, coalesce(a.late, 0) AS late, r.possibly_duplicated,
               coalesce(a.time_uncertain, 0) AS time_uncertain,
               u.cause AS unconfirmed_cause, u.wall_ns AS unconfirmed_wall_ns
        FROM registrations AS r
            LEFT JOIN acknowledgements AS a ON a.seq = r.seq
            LEFT JOIN unconfirmed AS u ON u.seq = r.seq;
    """,
    # 7: the fleet link's own state (gateway.fleet), one value per key: how far the evidence
    #    has been acknowledged by the fleet's broker, the badge register version applied.
    """
    CREATE TABLE fleet_state (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 8: Checkinatwork (docs/checkinatwork.md). The table is rebuilt, every row and its
    #    evidence hashes copied as they are: a posted worker has a Limosa number instead
    #    of a NISS (exactly one of the two), a registration's type may be PRESENCE, and a
    #    Checkinatwork site need not declare a place of work. The views are made again: a
    #    Limosa registration's evidence names its masked Limosa number (a NISS
    #    registration's entry reads as before, so its hash still holds).
    """
    DROP VIEW registration_rows;
    DROP VIEW evidence_chain;
    CREATE TABLE registrations_8 (
        seq                 INTEGER PRIMARY KEY,
        id                  TEXT    NOT NULL,
        badge_uid           TEXT    NOT NULL,
        reader              TEXT    NOT NULL,
        niss                TEXT,
        limosa              TEXT,
        enterprise_number   TEXT,
        foreign_vat         TEXT,
        worker_name         TEXT    NOT NULL,
        language            TEXT    NOT NULL,
        capacity            TEXT    NOT NULL,
        declaration         TEXT    NOT NULL,
        place               TEXT,
        direction           TEXT    NOT NULL CHECK (direction IN ('IN', 'OUT', 'PRESENCE')),
        wall_ns             INTEGER NOT NULL,
        monotonic_ns        INTEGER NOT NULL,
        boot_id             TEXT    NOT NULL,
        clock_synced        INTEGER NOT NULL CHECK (clock_synced IN (0, 1)),
        delivery            TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (delivery IN ('pending', 'delivered', 'rejected')),
        rejection           TEXT,
        possibly_duplicated INTEGER NOT NULL DEFAULT 0,
        ev_seq              INTEGER,
        ev_prev             TEXT,
        ev_hash             TEXT,
        CHECK ((niss IS NULL) <> (limosa IS NULL))
    );
    INSERT INTO registrations_8
        SELECT seq, id, badge_uid, reader, niss, NULL, enterprise_number, foreign_vat,
               worker_name, language, capacity, declaration, place, direction, wall_ns,
               monotonic_ns, boot_id, clock_synced, delivery, rejection, possibly_duplicated,
               ev_seq, ev_prev, ev_hash
        FROM registrations;
    DROP TABLE registrations;
    ALTER TABLE registrations_8 RENAME TO registrations;
    CREATE INDEX registrations_by_worker ON registrations (niss, declaration, seq);
    CREATE INDEX registrations_by_posted_worker ON registrations (limosa, declaration, seq)
        WHERE limosa IS NOT NULL;
    CREATE INDEX registrations_rejected ON registrations (seq) WHERE delivery = 'rejected';
    CREATE VIEW evidence_chain AS
        SELECT seq, wall_ns, monotonic_ns, boot_id, clock_synced, kind, details, prev_hash, hash
        FROM evidence
        UNION ALL
        SELECT ev_seq, wall_ns, monotonic_ns, boot_id, clock_synced, 'registration',
               json_object(
                   'id', id, 'type', direction, 'registration_wall_ns', wall_ns,
                   'reader', reader, 'badge_uid', badge_uid, 'worker', worker_name,
                   CASE WHEN niss IS NULL THEN 'limosa' ELSE 'niss' END,
                   substr(
                       '****************************************************************',
                       1, max(length(coalesce(niss, limosa)) - 3, 0)
                   ) || substr(coalesce(niss, limosa), -3)),
               ev_prev, ev_hash
        FROM registrations WHERE ev_seq IS NOT NULL;
    CREATE VIEW registration_rows AS
        SELECT r.seq, r.id, r.badge_uid, r.reader, r.niss, r.limosa, r.enterprise_number,
               r.foreign_vat, r.worker_name, r.language, r.capacity, r.declaration, r.place,
               r.direction, r.wall_ns, r.monotonic_ns, r.boot_id, r.clock_synced,
               CASE WHEN a.seq IS NOT NULL THEN 'delivered'
                    WHEN u.seq IS NOT NULL THEN 'unconfirmed'
                    ELSE r.delivery END AS delivery,
               a.onss_id, a.onss_validity, a.onss_remarks, r.rejection, a.delivered_wall_ns,
               a.sent_registration_date, coalesce(a.late, 0) AS late, r.possibly_duplicated,
               coalesce(a.time_uncertain, 0) AS time_uncertain,
               u.cause AS unconfirmed_cause, u.wall_ns AS unconfirmed_wall_ns
        FROM registrations AS r
            LEFT JOIN acknowledgements AS a ON a.seq = r.seq
            LEFT JOIN unconfirmed AS u ON u.seq = r.seq;
    """,
)


def connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # new journals only; before WAL
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # gateway.journal.checkpoint does it
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def create_private_file(path: Path) -> None:
    """Personal data: the journal (and SQLite's -wal/-shm, which copy its mode) is 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def lock_exclusively(lock_path: Path) -> int:
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        os.close(fd)
        raise JournalLockedError(
            f"{lock_path}: the journal is in use by another process"
        ) from error
    return fd


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the latest version; returns the version found before.

    Every pending migration runs in ONE transaction (SQLite's DDL is transactional, and so
    is `user_version`): a failure rolls them all back and leaves the journal as it was, at
    its old version, for the old release to keep using. An up-to-date journal is only read.
    """
    found = _user_version(conn)
    _refuse_newer(found)
    if found == len(MIGRATIONS):
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _user_version(conn)  # under the write lock now
        _refuse_newer(found)
        for version in range(found + 1, len(MIGRATIONS) + 1):
            try:
                for statement in statements(MIGRATIONS[version - 1]):
                    conn.execute(statement)
            except sqlite3.Error as error:
                raise JournalMigrationError(
                    f"journal schema migration {version} (of {found} -> {len(MIGRATIONS)})"
                    f" failed: {error}; rolled back, the journal is unchanged at version {found}"
                ) from error
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
        conn.execute("COMMIT")
    except BaseException:
        # After SQLITE_FULL or SQLITE_IOERR, SQLite may have rolled back already: a second
        # ROLLBACK would raise "no transaction is active" and hide the real error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(found: int) -> None:
    if found > len(MIGRATIONS):
        raise JournalVersionError(
            f"journal schema version {found} is newer than this release knows"
            f" ({len(MIGRATIONS)}); upgrade badge-gateway"
        )


def statements(script: str) -> Iterator[str]:
    """One statement at a time; a trigger's body holds ';' of its own."""
    statement = ""
    for part in script.split(";"):
        statement += part + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                yield statement
            statement = ""


def migrate_file(path: Path) -> int:
    """`badge-gateway journal migrate`: bring the journal at `path` to the latest schema,
    taking the writer's lock (so never under a running daemon); a missing journal is
    created. Returns the version found (0: new). Raises JournalMigrationError, with the
    journal unchanged, when a migration fails."""
    create_private_file(path)
    lock_fd = lock_exclusively(path.with_name(path.name + ".lock"))
    try:
        conn = connect(path, read_only=False)
        try:
            return migrate(conn)
        finally:
            conn.close()
    finally:
        os.close(lock_fd)


def backup(source: Path, destination: Path) -> int:
    """A consistent copy of the journal through SQLite's backup API: what was committed,
    the WAL's frames included, even under a running daemon. The copy is one self-contained
    file (rollback-journal mode, no -wal beside it), checked with `integrity_check`, 0600,
    fsync'd, and appears whole under its name or not at all; an existing file is never
    overwritten. Returns the copy's schema version."""
    if not source.exists():
        raise FileNotFoundError(f"{source}: no journal here")
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.close(fd)
    try:
        src = connect(source, read_only=True)
        try:
            copy = sqlite3.connect(temporary, isolation_level=None)
            try:
                src.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")
                check = copy.execute("PRAGMA integrity_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(
                        f"{source}: the copy fails integrity_check: {check}"
                    )
                version = _user_version(copy)
            finally:
                copy.close()
        finally:
            src.close()
        _fsync(temporary)
        os.link(temporary, destination)  # never over an existing file
        _fsync(destination.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return version


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
