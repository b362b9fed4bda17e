"""`badge-gateway queue list|retry|export`: the real CLI against a real daemon process."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path
from typing import Any, Literal

from gateway.attendance import AttendanceRules
from gateway.cli.render import render_status
from gateway.journal import Acknowledgement, Journal, Rejection
from gateway.models import Registration
from tests.support import (
    DECLARATION,
    SITE,
    WORKER,
    badges,
    clock_at,
    daemon_process,
    read,
    registered,
    write_badge_file,
    write_config,
)
from tests.test_process import cli, raw_exchange

NISS = WORKER.niss or "no NISS"  # WORKER has one; typed as a text
MASKED = "********" + NISS[-3:]


Direction = Literal["IN", "OUT"]


def registration(local: str, direction: Direction) -> Registration:
    return registered(AttendanceRules(SITE).decide(read(direction), WORKER, None, clock_at(local)))


def write_journal(state: Path) -> dict[str, str]:
    """Three registrations, written before any daemon runs (one writer): one delivered
    late, one rejected by the ONSS (its error quoting the NISS), one pending. Their ids."""
    journal = Journal(state / "journal.db")
    plan: list[tuple[str, str, Direction]] = [
        ("delivered", "2026-11-22T07:02:05", "IN"),
        ("rejected", "2026-11-22T12:30:00", "OUT"),
        ("pending", "2026-11-22T13:15:00", "IN"),
    ]
    stored = {name: registration(local, direction) for name, local, direction in plan}
    seqs = {name: journal.append_registration(reg) for name, reg in stored.items()}
    journal.settle(
        [late_acknowledgement(seqs["delivered"])],
        [Rejection(seqs["rejected"], "onss", ({"code": "4", "description": f"x {NISS}"},))],
    )
    journal.close()
    return {name: str(reg.id) for name, reg in stored.items()}


def late_acknowledgement(seq: int) -> Acknowledgement:
    return Acknowledgement(
        seq=seq,
        onss_id=4242,
        validity="valid",
        remarks=("late registration",),
        sent_registration_date="2026-11-22T07:02:05+01:00",
        delivered_wall_ns=clock_at("2026-11-22T08:00").wall_ns,
        late=True,
        time_uncertain=False,
    )


def setup(state: Path) -> tuple[Path, dict[str, str]]:
    write_badge_file(state / "badges.csv", badges(1))
    return write_config(state), write_journal(state)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_queue_list_newest_first_masked_with_flags_and_errors(state: Path) -> None:
    config, ids = setup(state)
    with daemon_process(state, config):
        listed = cli("queue", "list", config=config)
    assert listed.returncode == 0, listed.stderr
    assert NISS not in listed.stdout + listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("2026-11-22T13:15:00+01:00  IN   Marie")
    assert lines[0].endswith(f"{MASKED}  {DECLARATION}  pending      onss -  {ids['pending']}")
    assert f"{MASKED}  {DECLARATION}  rejected     onss -  {ids['rejected']}" in lines[1]
    assert lines[2] == f"    onss error 4: x {MASKED}"
    assert f"{DECLARATION}  delivered    onss 4242  {ids['delivered']}  [late]" in lines[3]
    assert lines[3].startswith("2026-11-22T07:02:05+01:00  IN ")


def test_queue_list_json_by_state_and_show_niss(state: Path) -> None:
    config, ids = setup(state)
    with daemon_process(state, config):
        rejected = cli("queue", "list", "--state", "rejected", "--json", config=config)
        full = cli("queue", "list", "--show-niss", "--limit", "1", config=config)
    [record] = json_lines(rejected.stdout)
    assert record["id"] == ids["rejected"] and record["type"] == "OUT"
    assert record["niss"] == MASKED and record["rejection_source"] == "onss"
    assert record["errors"] == [{"code": "4", "description": f"x {MASKED}"}]
    assert record["time_local"] == "2026-11-22T12:30:00+01:00"
    assert NISS not in rejected.stdout and "personal data" not in rejected.stderr
    assert full.returncode == 0, full.stderr
    assert NISS in full.stdout and len(full.stdout.splitlines()) == 1
    assert "personal data" in full.stderr


def test_queue_export_csv_to_a_private_file(state: Path, tmp_path: Path) -> None:
    config, ids = setup(state)
    out = tmp_path / "export.csv"
    out.write_text("an older export, world-readable\n")
    out.chmod(0o644)
    with daemon_process(state, config):
        exported = cli("queue", "export", "--out", str(out), config=config)
    assert exported.returncode == 0, exported.stderr
    assert "3 registration(s) exported" in exported.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text(encoding="utf-8")
    assert NISS not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["id"] for row in rows] == [ids["delivered"], ids["rejected"], ids["pending"]]
    assert text.splitlines()[0].startswith("id,time_local,time_utc,type,name,niss,")
    delivered, rejected, _ = rows
    assert (delivered["onss_id"], delivered["late"], delivered["delivery"]) == (
        "4242",
        "True",
        "delivered",
    )
    assert delivered["onss_remarks"] == "late registration"
    assert rejected["errors"] == f"4: x {MASKED}" and rejected["niss"] == MASKED
    assert not list(tmp_path.glob(".export.csv.*")), "temporary file left behind"


def test_queue_export_json_with_show_niss(state: Path) -> None:
    config, ids = setup(state)
    with daemon_process(state, config):
        export = ("queue", "export", "--format", "json", "--state", "rejected", "--show-niss")
        exported = cli(*export, config=config)
    assert exported.returncode == 0, exported.stderr
    [record] = json.loads(exported.stdout)
    assert record["id"] == ids["rejected"] and record["niss"] == NISS
    assert record["errors"] == [{"code": "4", "description": f"x {NISS}"}]
    assert "personal data" in exported.stderr


def test_queue_retry_sends_a_rejected_registration_again(state: Path) -> None:
    config, ids = setup(state)
    with daemon_process(state, config) as daemon:
        assert daemon.request({"cmd": "status"})["status"]["journal"]["rejected"] == 1
        retried = cli("queue", "retry", ids["rejected"].upper(), config=config)
        assert retried.returncode == 0, retried.stderr
        assert ids["rejected"] in retried.stdout
        pending = json_lines(
            cli("queue", "list", "--state", "pending", "--json", config=config).stdout
        )
        assert [r["id"] for r in pending] == [ids["pending"], ids["rejected"]]
        assert pending[1]["errors"] == [] and pending[1]["rejection_source"] is None
        journal = daemon.request({"cmd": "status"})["status"]["journal"]
        assert (journal["queue_depth"], journal["rejected"]) == (2, 0)
        again = cli("queue", "retry", ids["rejected"], config=config)
        assert again.returncode == 1 and "not rejected" in again.stderr
    requeued = [json.loads(line) for line in daemon.log().splitlines() if "requeued" in line]
    assert [(entry["level"], entry["registration"]) for entry in requeued] == [
        ("info", ids["rejected"])
    ]


def test_queue_retry_of_an_unknown_or_malformed_id_is_refused(state: Path) -> None:
    config, ids = setup(state)
    with daemon_process(state, config):
        unknown = cli("queue", "retry", "0190f0e2-0000-7000-8000-000000000000", config=config)
        delivered = cli("queue", "retry", ids["delivered"], config=config)
        garbage = cli("queue", "retry", "seq-2", config=config)
        listed = json_lines(cli("queue", "list", "--json", config=config).stdout)
    assert unknown.returncode == 1 and "unknown id" in unknown.stderr
    assert delivered.returncode == 1 and "not rejected nor unconfirmed" in delivered.stderr
    assert garbage.returncode == 1 and "not a registration id" in garbage.stderr
    assert [r["delivery"] for r in listed] == ["pending", "rejected", "delivered"]


def test_bad_queue_control_messages_get_an_error(state: Path) -> None:
    config, _ = setup(state)
    with daemon_process(state, config) as daemon:
        for payload, error in (
            (b'{"cmd": "queue", "state": "lost"}\n', '"state"'),
            (b'{"cmd": "queue", "limit": 0}\n', '"limit"'),
            (b'{"cmd": "queue", "show_niss": "yes"}\n', '"show_niss"'),
            (b'{"cmd": "requeue"}\n', '"id"'),
        ):
            reply = raw_exchange(daemon.socket, payload)
            assert reply["ok"] is False and error in reply["error"], reply


def test_queue_tools_read_the_journal_directly_when_the_daemon_is_down(
    state: Path, tmp_path: Path
) -> None:
    config, ids = setup(state)
    journal = str(state / "journal.db")
    listed = cli("queue", "list", "--journal", journal, "--json", config=config)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json_lines(listed.stdout)] == [
        ids["pending"],
        ids["rejected"],
        ids["delivered"],
    ]
    assert NISS not in listed.stdout
    out = tmp_path / "rejected.json"
    export = ("queue", "export", "--journal", journal, "--format", "json", "--state", "rejected")
    exported = cli(*export, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert [r["id"] for r in json.loads(out.read_text())] == [ids["rejected"]]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    retried = cli("queue", "retry", ids["rejected"], config=config)
    assert retried.returncode == 1 and "not running" in retried.stderr
    missing = cli("queue", "list", "--journal", str(tmp_path / "none.db"))
    assert missing.returncode == 1 and "no journal" in missing.stderr


def test_status_shows_the_uplink_state_last_ack_and_next_retry() -> None:
    uplink = {
        "enabled": True,
        "state": "offline",
        "cause": "dns",
        "since": "2026-11-22T07:00:00+00:00",
        "last_acknowledgement": None,
        "next_retry": "2026-11-22T07:05:00+00:00",
        "held_until_clock_synchronised": 0,
    }
    status = {
        "site": {"name": "S", "declaration": "D"},
        "clock": {"synced": True, "now": "2026-11-22T07:01:00+00:00"},
        "badges": {"workers": 1, "refused_lines": 0, "last_error": None},
        "journal": {
            "registrations": 3,
            "queue_depth": 2,
            "rejected": 1,
            "oldest_pending": "2026-11-22T06:00:00+00:00",
            "storage_error": None,
        },
        "uplink": uplink,
        "readers": [],
        "recent_registrations": [],
        "recent_refused_or_repeated": [],
    }
    text = render_status(status)
    assert "queue depth 2, oldest pending 2026-11-22T06:00:00Z" in text
    assert (
        "uplink      offline (dns) since 2026-11-22T07:00:00Z, last ack never,"
        " next retry 2026-11-22T07:05:00Z"
    ) in text


UNREADABLE = "2xx answer unreadable: an id of 1e400"
BIG = str(2**70)


def write_unconfirmed_journal(state: Path) -> dict[str, str]:
    """The three of write_journal, then two sent in a batch whose 2xx answer could not be
    read (the uplink's `mark_unconfirmed`)."""
    ids = write_journal(state)
    journal = Journal(state / "journal.db")
    regs = [registration("2026-11-22T16:00:00", "OUT"), registration("2026-11-22T16:05:00", "IN")]
    seqs = [journal.append_registration(reg) for reg in regs]
    journal.mark_in_flight(seqs)
    journal.mark_unconfirmed(seqs, UNREADABLE, clock_at("2026-11-22T16:06"))
    journal.close()
    return {**ids, "first": str(regs[0].id), "second": str(regs[1].id)}


def test_unconfirmed_registrations_are_listed_counted_and_exported(
    state: Path, tmp_path: Path
) -> None:
    write_badge_file(state / "badges.csv", badges(1))
    config, ids = write_config(state), write_unconfirmed_journal(state)
    out = tmp_path / "export.csv"
    with daemon_process(state, config) as daemon:
        status = daemon.request({"cmd": "status"})["status"]
        listed = cli("queue", "list", "--state", "unconfirmed", config=config)
        as_json = cli("queue", "list", "--state", "unconfirmed", "--json", config=config)
        exported = cli("queue", "export", "--out", str(out), config=config)
        shown = cli("status", config=config)
    assert (status["journal"]["unconfirmed"], status["journal"]["queue_depth"]) == (2, 1)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert (
        len(lines) == 4
        and f"{MASKED}  {DECLARATION}  unconfirmed  onss -  {ids['second']}" in lines[0]
    )
    assert UNREADABLE in lines[1] and f"queue confirm {ids['second']} ONSS_ID" in lines[1]
    records = json_lines(as_json.stdout)
    assert [r["id"] for r in records] == [ids["second"], ids["first"]]
    assert {(r["delivery"], r["unconfirmed_cause"]) for r in records} == {
        ("unconfirmed", UNREADABLE)
    }
    assert records[0]["unconfirmed_utc"] == "2026-11-22T15:06:00+00:00"
    assert exported.returncode == 0, exported.stderr
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(out.read_text()))}
    assert len(rows) == 5
    assert (rows[ids["first"]]["delivery"], rows[ids["first"]]["unconfirmed_cause"]) == (
        "unconfirmed",
        UNREADABLE,
    )
    assert rows[ids["pending"]]["unconfirmed_cause"] == ""
    assert shown.returncode == 0, shown.stderr
    assert "UNCONFIRMED 2 registration(s) the ONSS may hold" in shown.stdout


def test_the_employer_confirms_or_retries_an_unconfirmed_registration(state: Path) -> None:
    write_badge_file(state / "badges.csv", badges(1))
    config, ids = write_config(state), write_unconfirmed_journal(state)
    with daemon_process(state, config) as daemon:
        confirmed = cli("queue", "confirm", ids["first"].upper(), BIG, config=config)
        retried = cli("queue", "retry", ids["second"], config=config)
        again = cli("queue", "confirm", ids["first"], "4243", config=config)
        records = {
            r["id"]: r for r in json_lines(cli("queue", "list", "--json", config=config).stdout)
        }
        journal = daemon.request({"cmd": "status"})["status"]["journal"]
    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stdout.strip() == f"confirmed: {ids['first']} delivered, ONSS id {BIG}"
    assert retried.returncode == 0, retried.stderr
    assert "flagged possibly duplicated" in retried.stdout
    assert again.returncode == 1 and "no unconfirmed registration" in again.stderr
    first, second = records[ids["first"]], records[ids["second"]]
    assert (first["delivery"], first["onss_id"], first["possibly_duplicated"]) == (
        "delivered",
        BIG,
        False,
    )
    assert (second["delivery"], second["possibly_duplicated"]) == ("pending", True)
    assert second["unconfirmed_cause"] is None
    assert (journal["unconfirmed"], journal["queue_depth"]) == (0, 2)
    logged = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    assert [(e["level"], e["registration"]) for e in logged if "requeued" in e["event"]] == [
        ("warning", ids["second"])
    ]
    assert [e["onss_id"] for e in logged if e["event"].endswith("confirmed")] == [BIG]


def test_confirm_refuses_bad_ids_with_clear_errors(state: Path) -> None:
    write_badge_file(state / "badges.csv", badges(1))
    config, ids = write_config(state), write_unconfirmed_journal(state)
    first = ids["first"]
    with daemon_process(state, config) as daemon:
        garbage = cli("queue", "confirm", "seq-2", "77", config=config)
        pending = cli("queue", "confirm", ids["pending"], "77", config=config)
        spaced = cli("queue", "confirm", first, "12 34", config=config)
        escape = cli("queue", "confirm", first, "77\x1b[2J", config=config)
        long = cli("queue", "confirm", first, "7" * 65, config=config)
        replies = [
            raw_exchange(daemon.socket, json.dumps(message).encode() + b"\n")
            for message in (
                {"cmd": "confirm", "id": first},
                {"cmd": "confirm", "id": first, "onss_id": True},
                {"cmd": "confirm", "id": first, "onss_id": -1},
                {"cmd": "confirm", "id": first, "onss_id": 10**70},
                {"cmd": "confirm", "onss_id": 77},
            )
        ]
        listed = json_lines(cli("queue", "list", "--json", config=config).stdout)
    assert garbage.returncode == 1 and "not a registration id" in garbage.stderr
    assert pending.returncode == 1 and "no unconfirmed registration" in pending.stderr
    for refused in (spaced, escape, long):
        assert refused.returncode == 1 and "is not an ONSS registration id" in refused.stderr
    assert "\x1b" not in escape.stderr and "\\x1b" in escape.stderr  # shown escaped
    assert [reply["ok"] for reply in replies] == [False] * 5
    assert all('"onss_id"' in reply["error"] for reply in replies[:4]), replies
    assert '"id"' in replies[4]["error"]
    assert {r["id"]: r["delivery"] for r in listed}[first] == "unconfirmed"
