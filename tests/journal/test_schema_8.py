"""Journal schema 8 (issue 16, Checkinatwork): a journal of release 7 migrates keeping every
row, seq and evidence hash; a posted worker's PRESENCE, known by their Limosa number, goes
through the journal like any registration and the evidence names it masked; the table
refuses a row with both a NISS and a Limosa number, or neither.

A journal "of release 7" is made the way that release made it, as far as a test can: the
schema is the first seven migrations (the text release 7 ran), and its rows are those a
journal of today wrote for NISS workers (the only ones release 7 knew), copied column by
column. That the copy verifies under release 7's own view shows that a NISS registration's
evidence entry reads the same in both releases; that it still verifies once migrated shows
that migration 8 keeps it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from gateway.evidence import Entry, Kind, entries, verify_journal
from gateway.journal import (
    MIGRATIONS,
    Acknowledgement,
    Journal,
    JournalReader,
    Rejection,
    TapAttempt,
    connect,
)
from gateway.journal.file import statements
from gateway.journal.rows import INSERT_REGISTRATION, registration_row
from gateway.models import ClockSample, DeliveryState, Direction, UplinkState
from tests.support import (
    LIMOSA,
    POSTED_WORKER,
    WORKER,
    WORKPLACE,
    a_presence,
    a_registration,
    clock_at,
)

SCHEMA_8 = 8
NISS = "85073003328"  # WORKER's


def test_schema_8_is_the_latest() -> None:
    assert len(MIGRATIONS) == SCHEMA_8  # a later schema: give this file's tests a look


# --- a journal of release 7 ---------------------------------------------------------------------


def ticking(start_hour: int = 5) -> Callable[[], ClockSample]:
    """A journal clock that moves a minute at each reading, on 23 November 2026."""
    minutes = count()

    def now() -> ClockSample:
        minute = next(minutes)
        return clock_at(f"2026-11-23T{start_hour + minute // 60:02d}:{minute % 60:02d}", 5000.0)

    return now


def written_by_today(path: Path) -> list[str]:
    """A journal with every delivery state and evidence of each kind the uplink writes;
    returns its registrations' ids in seq order (delivered, rejected, unconfirmed, in
    flight, pending, the last one pending too)."""
    journal = Journal(path, clock=ticking())
    try:
        journal.start_run({"version": "release 7"})
        regs = [a_registration(f"2026-11-23T07:{n:02d}", 100.0 + 60 * n) for n in range(6)]
        seqs = [journal.append_registration(reg) for reg in regs]
        journal.append_attempt(
            TapAttempt("unknown-badge", "DEADBEEF", "entrance", clock_at("2026-11-23T07:30"))
        )
        journal.record_transition(
            UplinkState.OFFLINE, "tcp", "refused", clock_at("2026-11-23T07:40")
        )
        journal.mark_in_flight(seqs[:4])
        journal.settle(
            [Acknowledgement(seqs[0], 4242, "valid", ("LATE",), "2026-11-23", 1, True, False)],
            [Rejection(seqs[1], "onss", ({"code": "ssin-invalid", "description": "no"},))],
        )
        journal.mark_unconfirmed([seqs[2]], "not JSON", clock_at("2026-11-23T08:00"))
        journal.record_transition(UplinkState.ONLINE, "", None, clock_at("2026-11-23T08:10"))
        journal.record(Kind.READER_FAILED, {"reader": "entrance", "error": "ENODEV"})
        journal.stop_run("signal")
    finally:
        journal.close()
    return [str(reg.id) for reg in regs]


def as_release_7_left_it(source: Path, target: Path) -> None:
    """`target`: the schema of release 7 (its seven migrations) holding every row of
    `source`, each table's columns as release 7 had them."""
    conn = connect(target, read_only=False)
    with closing(conn):
        for number, script in enumerate(MIGRATIONS[:7], start=1):
            for statement in statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
        conn.execute("ATTACH DATABASE ? AS source", (str(source),))
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM main.sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        conn.execute("BEGIN")
        for table in tables:
            columns = ", ".join(row[1] for row in conn.execute(f"PRAGMA main.table_info({table})"))
            conn.execute(
                f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM source.{table}"
            )
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE source")


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def chain_of(path: Path) -> list[Entry]:
    with closing(read_only(path)) as conn:
        return list(entries(conn))


def verified(path: Path) -> bool:
    with closing(read_only(path)) as conn:
        check = verify_journal(conn)
    assert check.ok, (check.chain.broken, check.problems)
    return check.ok


def registration_table(path: Path) -> list[tuple[Any, ...]]:
    """Every stored column of every registration a release-7 journal has, in seq order."""
    columns = (
        "seq, id, badge_uid, reader, niss, enterprise_number, foreign_vat, worker_name,"
        " language, capacity, declaration, place, direction, wall_ns, monotonic_ns, boot_id,"
        " clock_synced, delivery, rejection, possibly_duplicated, ev_seq, ev_prev, ev_hash"
    )
    with closing(read_only(path)) as conn:
        return list(conn.execute(f"SELECT {columns} FROM registrations ORDER BY seq"))


def other_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of the tables migration 8 does not rebuild, which it must leave as they are."""
    tables = ("acknowledgements", "in_flight", "unconfirmed", "uplink_transitions")
    with closing(read_only(path)) as conn:
        found = {t: list(conn.execute(f"SELECT * FROM {t} ORDER BY rowid")) for t in tables}
        found["tap_attempts"] = list(conn.execute("SELECT * FROM tap_attempts ORDER BY seq"))
    assert all(found.values()), found  # the journal holds some of each
    return found


@pytest.fixture
def release_7(tmp_path: Path) -> tuple[Path, list[str]]:
    ids = written_by_today(tmp_path / "today.db")
    path = tmp_path / "journal.db"
    as_release_7_left_it(tmp_path / "today.db", path)
    with closing(read_only(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
        columns = [row[1] for row in conn.execute("PRAGMA table_info(registrations)")]
    assert "limosa" not in columns
    return path, ids


def test_a_release_7_journal_verifies_as_it_is(release_7: tuple[Path, list[str]]) -> None:
    path, _ = release_7

    assert verified(path)  # release 7's own view reads a NISS entry as today's writer hashed it
    kinds = [entry.kind for entry in chain_of(path)]
    assert kinds.count("registration") == 6
    assert {"acknowledged", "rejected", "unconfirmed", "uplink-offline"} <= set(kinds)


def test_migrating_from_7_keeps_every_row_seq_and_evidence_hash(
    release_7: tuple[Path, list[str]],
) -> None:
    path, ids = release_7
    rows_before, chain_before = registration_table(path), chain_of(path)
    others_before = other_tables(path)

    journal = Journal(path, clock=ticking(start_hour=9))
    try:
        assert journal.execute("PRAGMA user_version")[0][0] == SCHEMA_8
        assert journal.execute("PRAGMA integrity_check")[0][0] == "ok"
        rows_after, others_after = registration_table(path), other_tables(path)
        flagged = journal.recover_in_flight()  # the one sent when the old release stopped
        pending = [out.id for out in journal.pending(10)]
        records = {str(r.stored.registration.id): r for r in journal.deliveries()}
    finally:
        journal.close()

    assert rows_after == rows_before
    assert others_after == others_before
    assert chain_of(path)[: len(chain_before)] == chain_before  # every entry, every hash
    assert verified(path)
    assert flagged == [ids[3]]
    assert pending == [ids[3], ids[4], ids[5]]  # the unconfirmed one waits for the employer
    states = [records[i].stored.registration.delivery for i in ids]
    assert states == [
        DeliveryState.DELIVERED,
        DeliveryState.REJECTED,
        DeliveryState.UNCONFIRMED,
        DeliveryState.PENDING,
        DeliveryState.PENDING,
        DeliveryState.PENDING,
    ]
    delivered = records[ids[0]]
    assert (delivered.onss_id, delivered.onss_remarks, delivered.late) == (4242, ("LATE",), True)
    assert records[ids[1]].rejection is not None
    assert records[ids[2]].unconfirmed_cause == "not JSON"
    assert records[ids[3]].possibly_duplicated
    assert all(r.stored.registration.worker.limosa is None for r in records.values())


def test_badge_gateway_evidence_verify_passes_after_migrating(
    release_7: tuple[Path, list[str]],
) -> None:
    path, _ = release_7
    journal = Journal(path, clock=ticking(start_hour=9))
    journal.append_registration(a_presence("2026-11-23T10:00", POSTED_WORKER))
    journal.append_registration(a_presence("2026-11-23T10:01", WORKER))
    journal.close()

    verify = subprocess.run(
        [sys.executable, "-m", "gateway", "evidence", "verify", "--journal", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verified" in verify.stdout


# --- a posted worker's presence ----------------------------------------------------------------


def test_a_limosa_presence_goes_through_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    posted = a_presence("2026-11-23T07:02", POSTED_WORKER)
    marie = a_presence("2026-11-23T07:03", WORKER)
    journal = Journal(path, clock=ticking())
    try:
        posted_seq = journal.append_registration(posted)
        journal.append_registration(marie)
        [limosa_out, niss_out] = sorted(journal.pending(10), key=lambda out: out.niss or "")
        stored = journal.last_registration(None, WORKPLACE, limosa=LIMOSA)
        journal.mark_in_flight([posted_seq])
        journal.settle(
            [Acknowledgement(posted_seq, 77, "valid", (), "2026-11-23", 2, False, False)]
        )
        [record] = [r for r in journal.deliveries() if r.stored.seq == posted_seq]
    finally:
        journal.close()

    assert (limosa_out.niss, limosa_out.limosa) == (None, LIMOSA)
    assert (limosa_out.direction, limosa_out.place, limosa_out.declaration) == (
        "PRESENCE",
        None,
        WORKPLACE,
    )
    assert (niss_out.niss, niss_out.limosa) == (NISS, None)
    assert stored is not None and stored.registration == posted
    assert record.stored.registration.delivery is DeliveryState.DELIVERED
    assert record.onss_id == 77
    reopened = Journal(path)
    try:  # read back from the file, not the writer's memory
        assert reopened.previous_registration(POSTED_WORKER, WORKPLACE) == replace(
            posted, delivery=DeliveryState.DELIVERED
        )
        assert reopened.previous_registration(WORKER, WORKPLACE) == marie
        assert reopened.previous_registration(POSTED_WORKER, "1Y1000003EQCZ") is None
    finally:
        reopened.close()
    assert verified(path)


def test_the_evidence_names_a_posted_worker_by_the_masked_limosa_number(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, clock=ticking())
    try:
        journal.append_registration(a_presence("2026-11-23T07:02", POSTED_WORKER))
        journal.append_registration(a_presence("2026-11-23T07:03", WORKER))
    finally:
        journal.close()

    posted, marie = [entry for entry in chain_of(path) if entry.kind == "registration"]
    assert posted.details["limosa"] == "*" * (len(LIMOSA) - 3) + LIMOSA[-3:]
    assert "niss" not in posted.details
    assert posted.details["type"] == "PRESENCE"
    assert marie.details["niss"] == "********328" and "limosa" not in marie.details
    everything = json.dumps([entry.as_json() for entry in chain_of(path)])
    assert LIMOSA not in everything and NISS not in everything
    assert verified(path)
    reader = JournalReader(path)
    try:
        assert [r.registration.worker.limosa for r in reader.registrations_since(0)] == [
            LIMOSA,
            None,
        ]
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("niss", "limosa"), [(NISS, LIMOSA), (None, None)], ids=["both", "neither"]
)
def test_the_table_refuses_a_row_with_both_numbers_or_neither(
    tmp_path: Path, niss: str | None, limosa: str | None
) -> None:
    path = tmp_path / "journal.db"
    Journal(path).close()
    row = list(registration_row(a_presence()))
    row[3:5] = [niss, limosa]  # REGISTRATION_COLUMNS: id, badge_uid, reader, niss, limosa, ...

    with closing(sqlite3.connect(path)) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(INSERT_REGISTRATION, (*row, None, None, None))


def test_the_table_refuses_an_unknown_type(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    Journal(path).close()
    row = list(registration_row(a_presence()))
    assert row[12] == Direction.PRESENCE
    row[12] = "LATER"

    with closing(sqlite3.connect(path)) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(INSERT_REGISTRATION, (*row, None, None, None))


@pytest.mark.parametrize("limosa", ["7", "A1", "ABC", "ABCD", "9" * 64])
def test_a_limosa_number_of_any_allowed_length_verifies_masked(tmp_path: Path, limosa: str) -> None:
    """The view masks in SQL what the writer masked in Python: the two must agree exactly."""
    path = tmp_path / "journal.db"
    journal = Journal(path, clock=ticking())
    try:
        journal.append_registration(a_presence(worker=replace(POSTED_WORKER, limosa=limosa)))
    finally:
        journal.close()

    [entry] = [entry for entry in chain_of(path) if entry.kind == "registration"]
    assert entry.details["limosa"] == "*" * max(len(limosa) - 3, 0) + limosa[-3:]
    assert verified(path)
