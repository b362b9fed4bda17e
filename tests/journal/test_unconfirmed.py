"""Registrations whose 2xx answer could not be read (`unconfirmed`), and ONSS ids stored as
given: on real journal files, through the migration from the previous schema version."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from gateway.evidence import Entry, entries, verify_journal
from gateway.journal.file import MIGRATIONS, connect, statements
from gateway.journal.rows import Acknowledgement
from gateway.journal.store import Journal, JournalReader
from gateway.models import DeliveryState
from tests.support import a_registration, clock_at, insert_before_version_8

BIG = 2**70  # an id past 64 bits: SQLite's "int too large" if bound as a number
MINUTE = 60 * 1_000_000_000
CAUSE = "2xx answer unreadable: 'notCreatedRegistrationsErrors' is not a list"


def acknowledgement(seq: int, onss_id: int | str) -> Acknowledgement:
    return Acknowledgement(
        seq=seq,
        onss_id=onss_id,
        validity="valid",
        remarks=(),
        sent_registration_date="2026-11-22T07:02:00+01:00",
        delivered_wall_ns=clock_at("2026-11-22T07:03").wall_ns,
        late=False,
        time_uncertain=False,
    )


def journal_with(path: Path, count: int) -> tuple[Journal, list[int], list[str]]:
    journal = Journal(path)
    regs = [a_registration(f"2026-11-22T07:{10 + n:02d}") for n in range(count)]
    return journal, [journal.append_registration(reg) for reg in regs], [str(r.id) for r in regs]


def evidence(path: Path) -> list[Entry]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        assert verify_journal(conn).ok
        return list(entries(conn))


def stored_id(journal: Journal, seq: int) -> tuple[object, str]:
    """The ONSS id as the file holds it, and SQLite's type for it."""
    [row] = journal.execute(
        f"SELECT onss_id, typeof(onss_id) FROM acknowledgements WHERE seq = {seq}"
    )
    return row[0], row[1]


def test_an_unreadable_answer_takes_its_registrations_out_of_the_queue_durably(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    journal, seqs, ids = journal_with(path, 3)
    journal.mark_in_flight(seqs)
    answered = clock_at("2026-11-22T07:20")
    journal.mark_unconfirmed(seqs[:2], CAUSE, answered)
    assert [out.seq for out in journal.pending(10)] == [seqs[2]]
    stats = journal.stats()
    assert (stats.pending, stats.unconfirmed, stats.rejected) == (1, 2, 0)
    journal.close()

    journal = Journal(path)  # as after a crash: only the third's mark is left
    assert journal.recover_in_flight() == [ids[2]]
    unconfirmed = journal.deliveries(DeliveryState.UNCONFIRMED)
    assert [r.stored.seq for r in unconfirmed] == [seqs[1], seqs[0]]  # newest first
    assert {r.stored.registration.delivery for r in unconfirmed} == {DeliveryState.UNCONFIRMED}
    assert {(r.unconfirmed_cause, r.unconfirmed_wall_ns) for r in unconfirmed} == {
        (CAUSE, answered.wall_ns)
    }
    assert not any(r.possibly_duplicated for r in unconfirmed)
    assert [out.seq for out in journal.pending(10)] == [seqs[2]]
    journal.close()
    [entry] = [e for e in evidence(path) if e.kind == "unconfirmed"]
    assert dict(entry.details) == {"ids": ids[:2], "cause": CAUSE}
    assert entry.wall_ns == answered.wall_ns


def test_only_pending_registrations_become_unconfirmed_and_a_late_settle_leaves_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    journal, seqs, _ = journal_with(path, 3)
    journal.settle([acknowledgement(seqs[0], 11)])
    journal.mark_unconfirmed(seqs, CAUSE, clock_at("2026-11-22T07:20"))
    journal.mark_unconfirmed(seqs, CAUSE, clock_at("2026-11-22T07:21"))  # nothing new
    journal.settle([acknowledgement(seqs[1], 12)])  # not pending any more: ignored
    states = {r.stored.seq: r.stored.registration.delivery for r in journal.deliveries()}
    assert states == {
        seqs[0]: DeliveryState.DELIVERED,
        seqs[1]: DeliveryState.UNCONFIRMED,
        seqs[2]: DeliveryState.UNCONFIRMED,
    }
    assert journal.pending(10) == []
    journal.close()
    assert len([e for e in evidence(path) if e.kind == "unconfirmed"]) == 1


def test_the_employer_confirms_one_and_sends_the_other_again_flagged(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal, seqs, ids = journal_with(path, 2)
    journal.mark_unconfirmed(seqs, CAUSE, clock_at("2026-11-22T07:40"))  # 29 min after the first

    assert journal.confirm(ids[0], str(BIG), late_after_ns=15 * MINUTE) == str(BIG)
    assert journal.confirm(ids[0], "77", late_after_ns=15 * MINUTE) is None  # resolved already
    assert journal.retry_unconfirmed(ids[0]) is False
    assert journal.retry_unconfirmed(ids[1]) is True
    assert journal.retry_unconfirmed(ids[1]) is False  # pending now
    assert journal.confirm(ids[1], "78", late_after_ns=15 * MINUTE) is None

    records = {r.stored.seq: r for r in journal.deliveries()}
    confirmed, retried = records[seqs[0]], records[seqs[1]]
    assert confirmed.stored.registration.delivery is DeliveryState.DELIVERED
    assert (confirmed.onss_id, confirmed.late, confirmed.unconfirmed_cause) == (
        str(BIG),
        True,
        None,
    )
    assert confirmed.delivered_wall_ns == clock_at("2026-11-22T07:40").wall_ns
    assert stored_id(journal, seqs[0]) == (str(BIG), "text")
    assert retried.stored.registration.delivery is DeliveryState.PENDING
    assert retried.possibly_duplicated and retried.unconfirmed_cause is None
    assert [out.seq for out in journal.pending(10)] == [seqs[1]]
    stats = journal.stats()
    assert (stats.pending, stats.unconfirmed) == (1, 0)
    journal.close()

    logged = evidence(path)
    [acked] = [e for e in logged if e.kind == "acknowledged"]
    assert acked.details["ids"] == {ids[0]: str(BIG)}
    assert acked.details["confirmed_by"] == "employer" and acked.details["late"] == [ids[0]]
    [flagged] = [e for e in logged if e.kind == "possibly-duplicated"]
    assert flagged.details["ids"] == [ids[1]]
    assert "could not be read" in flagged.details["cause"]


def test_onss_ids_are_stored_as_given_ints_as_ints_the_rest_as_text(tmp_path: Path) -> None:
    given: list[int | str] = [4242, 2**63 - 1, BIG, -(2**63) - 1, "000123", "R-77/b", "4243"]
    journal, seqs, _ = journal_with(tmp_path / "j.db", len(given))
    journal.settle(
        [acknowledgement(seq, onss_id) for seq, onss_id in zip(seqs, given, strict=True)]
    )
    assert [stored_id(journal, seq) for seq in seqs] == [
        (4242, "integer"),
        (2**63 - 1, "integer"),
        (str(BIG), "text"),
        (str(-(2**63) - 1), "text"),
        ("000123", "text"),  # not an integer's canonical text: kept as given
        ("R-77/b", "text"),
        (4243, "integer"),  # a 64-bit integer's text: the integer
    ]
    journal.close()
    reader = JournalReader(tmp_path / "j.db")
    try:
        read_back = {r.stored.seq: r.onss_id for r in reader.deliveries()}
    finally:
        reader.close()
    assert [read_back[seq] for seq in seqs] == [
        4242,
        2**63 - 1,
        str(BIG),
        str(-(2**63) - 1),
        "000123",
        "R-77/b",
        4243,
    ]


def _journal_at_version_5(path: Path) -> sqlite3.Connection:
    """A journal as the release before `unconfirmed` left it: the first five migrations."""
    conn = connect(path, read_only=False)
    for number, script in enumerate(MIGRATIONS[:5], start=1):
        for statement in statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={number}")
    return conn


def test_a_journal_of_schema_5_migrates_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    conn = _journal_at_version_5(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    regs = [a_registration(f"2026-11-22T07:{n:02d}") for n in range(4)]
    for reg in regs:
        insert_before_version_8(conn, reg)
    conn.execute(
        "INSERT INTO acknowledgements VALUES (1, 77, 'valid', '[\"LATE\"]', 5, 'd', 1, 0),"
        f" (2, {2**63 - 1}, 'valid', '[]', 6, 'd', 0, 1)"
    )
    conn.execute("UPDATE registrations SET delivery = 'rejected', rejection = '{}' WHERE seq = 3")
    conn.execute("INSERT INTO in_flight VALUES (4)")  # sent, then the box stopped
    conn.close()

    journal = Journal(path)
    assert journal.execute("PRAGMA user_version")[0][0] == len(MIGRATIONS)
    assert journal.execute("PRAGMA integrity_check")[0][0] == "ok"
    records = {r.stored.seq: r for r in journal.deliveries()}
    assert [records[s].stored.registration.delivery.value for s in (1, 2, 3, 4)] == [
        "delivered",
        "delivered",
        "rejected",
        "pending",
    ]
    assert (records[1].onss_id, records[1].onss_remarks, records[1].late) == (77, ("LATE",), True)
    assert (records[2].onss_id, records[2].time_uncertain) == (2**63 - 1, True)
    assert stored_id(journal, 1) == (77, "integer")
    assert journal.recover_in_flight() == [str(regs[3].id)]
    journal.settle([acknowledgement(4, BIG)])  # "int too large" under the old column
    assert stored_id(journal, 4) == (str(BIG), "text")
    assert journal.stats().unconfirmed == 0
    journal.close()
