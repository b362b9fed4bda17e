"""The evidence log: the chain holds, tampering is named precisely, a power cut is bounded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from drivers.base import ReaderHealth, ReaderState
from gateway.clock import boot_id
from gateway.evidence import Entry, Kind, entry_hash, verify_chain
from gateway.evidence.log import Head, LogCheck, entries, liveness, verify_journal
from gateway.journal import Acknowledgement, Journal, Rejection, StorageError, connect
from gateway.watch import Retention, WatchState, clock_changes, reader_changes
from tests.support import (
    WORKER,
    DaemonProcess,
    a_registration,
    badges,
    clock_at,
    daemon_process,
    wait_for,
    write_badge_file,
    write_config,
)

# --- a journal with a known log, made on 23 November 2026 -------------------------------
# 1 daemon-start, then registrations (2, 4, 6: rows of the registrations table) and
# reader entries (3, 5, 7: rows of the evidence table) in turn, 8 daemon-stop.
KINDS = ["daemon-start", "registration", "reader-failed", "registration", "reader-connected"]
KINDS += ["registration", "reader-failed", "daemon-stop"]


def filled_journal(path: Path) -> Path:
    moments = iter(f"2026-11-23T{hour:02d}:30" for hour in range(5, 20))
    journal = Journal(path, clock=lambda: clock_at(next(moments), 5000.0))
    try:
        journal.start_run({"version": "test"})
        for hour, name in enumerate(["Jan", "Marie", "Jan"]):
            reg = a_registration(f"2026-11-23T{hour + 6:02d}:00", monotonic_s=100.0 + hour)
            journal.append_registration(replace(reg, worker=replace(WORKER, name=name)))
            kind = Kind.READER_CONNECTED if hour == 1 else Kind.READER_FAILED
            journal.record(kind, {"reader": "entrance", "error": "ENODEV"})
        journal.stop_run("signal")
    finally:
        journal.close()
    return path


def tamper(path: Path, *statements: str) -> None:
    """What someone with the SD card and sqlite3 can do: the append-only triggers first."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER evidence_no_update")
        conn.execute("DROP TRIGGER evidence_no_delete")
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def forge(path: Path, entry: Entry, **changes: Any) -> None:
    """Change an entry's details and recompute its own hash, as a careful forger would."""
    forged = replace(entry, details={**entry.details, **changes})
    details = json.dumps(forged.details, sort_keys=True, separators=(",", ":"))
    tamper(
        path,
        f"UPDATE evidence SET details = '{details}', hash = '{entry_hash(forged)}'"
        f" WHERE seq = {entry.seq}",
    )


def check(path: Path, anchor: Head | None = None) -> LogCheck:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return verify_journal(conn, anchor=anchor)
    finally:
        conn.close()


def read_entries(path: Path) -> list[Entry]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(entries(conn))
    finally:
        conn.close()


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return filled_journal(tmp_path / "journal.db")


def test_an_untouched_log_verifies_and_links_every_entry(journal_path: Path) -> None:
    logged = read_entries(journal_path)

    assert [e.kind for e in logged] == KINDS
    assert [e.seq for e in logged] == list(range(1, 9))
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(logged))
    result = check(journal_path)
    assert result.ok, (result.chain.broken, result.problems)
    assert result.chain.entries == 8


def test_entries_never_hold_a_full_niss(journal_path: Path) -> None:
    registrations = [e for e in read_entries(journal_path) if e.kind == "registration"]

    assert {e.details["niss"] for e in registrations} == {"********328"}
    assert WORKER.niss and WORKER.niss not in json.dumps(
        [e.as_json() for e in read_entries(journal_path)]
    )


def test_the_log_refuses_updates_and_deletes(journal_path: Path) -> None:
    conn = sqlite3.connect(journal_path, isolation_level=None)
    try:
        for statement in ("UPDATE evidence SET kind = 'x' WHERE seq = 3", "DELETE FROM evidence"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()


TAMPERING: list[tuple[str, list[str], int, str]] = [
    (
        "an entry's field edited",
        ["UPDATE evidence SET details = replace(details, 'ENODEV', 'EIO') WHERE seq = 5"],
        5,
        "edited",
    ),
    (
        "a registration's type edited",
        ["UPDATE registrations SET direction = 'OUT' WHERE ev_seq = 4"],
        4,
        "edited",
    ),
    ("an entry deleted", ["DELETE FROM evidence WHERE seq = 5"], 5, "deleted"),
    ("a registration deleted", ["DELETE FROM registrations WHERE ev_seq = 4"], 4, "deleted"),
    (
        "two entries swapped",
        [
            "UPDATE evidence SET seq = -1 WHERE seq = 3",
            "UPDATE evidence SET seq = 3 WHERE seq = 5",
            "UPDATE evidence SET seq = 5 WHERE seq = -1",
        ],
        3,
        "reordered",
    ),
]


@pytest.mark.parametrize(
    ("statements", "seq", "problem"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
def test_tampering_names_the_entry(
    journal_path: Path, statements: list[str], seq: int, problem: str
) -> None:
    tamper(journal_path, *statements)

    broken = check(journal_path).chain.broken

    assert broken is not None
    assert (broken.seq, broken.problem) == (seq, problem)


def test_an_edit_with_its_hash_recomputed_is_caught_by_the_next_link(journal_path: Path) -> None:
    forge(journal_path, read_entries(journal_path)[4], error="EIO")

    broken = check(journal_path).chain.broken

    assert broken is not None
    assert (broken.seq, broken.problem) == (5, "edited")
    assert "its hash was changed" in broken.detail


def test_a_truncated_tail_is_named_by_the_head_the_box_noted(journal_path: Path) -> None:
    tamper(journal_path, "DELETE FROM evidence WHERE seq > 6")

    result = check(journal_path)

    assert result.chain.ok  # what is left links up: only the head the box noted tells
    assert result.problems == (
        "truncated: the box's last noted head is entry 8, the log ends at entry 6",
    )


def test_a_rewritten_log_is_caught_by_an_older_anchor(journal_path: Path) -> None:
    anchor = Head(read_entries(journal_path)[4].seq, read_entries(journal_path)[4].hash)
    rewritten = filled_journal(journal_path.with_name("other.db"))  # same shape, new hashes
    shutil.copyfile(rewritten, journal_path)

    result = check(journal_path, anchor)

    assert result.chain.ok
    assert [p for p in result.problems if p.startswith("rewritten: the anchor says entry 5")]


def test_a_chain_check_from_mid_chain_needs_the_entry_before() -> None:
    logged = read_entries(
        filled_journal(Path(os.environ.get("TMPDIR", "/tmp")) / f"mid-{os.getpid()}.db")
    )

    assert verify_chain(logged[3:], after=logged[2]).ok
    broken = verify_chain(logged[3:]).broken
    assert broken is not None and broken.problem == "deleted"


# --- the command, as the employer runs it -----------------------------------------------------


def verify_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "evidence", "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_verify_exits_1_and_names_the_break(journal_path: Path) -> None:
    good = verify_command("--journal", str(journal_path))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "verified" in good.stdout
    head = good.stdout.split("head: ")[1].split()[0]

    tamper(journal_path, "DELETE FROM evidence WHERE seq = 3")
    bad = verify_command("--journal", str(journal_path), "--head", head)

    assert bad.returncode == 1
    assert "BROKEN at entry 3: deleted: entries 3 are missing" in bad.stdout


# --- the daemon: what it writes, and a power cut ---------------------------------------------


def noted_alive_after(path: Path, wall_ns: int) -> bool:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        seen = liveness(conn)
    finally:
        conn.close()
    return seen is not None and seen.running and seen.wall_ns > wall_ns


@pytest.mark.slow
def test_a_power_cut_is_bounded_by_the_last_heartbeat(state: Path, tmp_path: Path) -> None:
    libfaketime = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not (libfaketime and shutil.which("unshare")):
        pytest.fail("libfaketime and unshare are needed: ./dev test installs them")
    [marie] = badges(1)
    write_badge_file(state / "badges.csv", [marie])
    config = write_config(state, evidence={"heartbeat_seconds": 5})
    journal = state / "journal.db"
    with daemon_process(state, config) as daemon:
        assert daemon.tap(marie.uid)["kind"] == "registered"
        tapped_ns = time.time_ns()
        wait_for(lambda: noted_alive_after(journal, tapped_ns))  # a heartbeat after the tap
        daemon.kill()  # the power cut: nothing more is written
    cut_ns = time.time_ns()

    # The box comes back after a reboot (a new boot id) with its clock an hour behind, as a
    # Pi without a battery-backed clock does until NTP answers.
    fake_boot = tmp_path / "boot_id"
    fake_boot.write_text("0badb007-0000-4000-8000-000000000001\n")
    restarted = DaemonProcess(config, state / "control.sock", state / "daemon.log")
    restarted.wrapper = [
        "unshare",
        "--mount",
        "sh",
        "-c",
        f'mount --bind "{fake_boot}" /proc/sys/kernel/random/boot_id && exec "$@"',
        "--",
        "env",
        f"LD_PRELOAD={libfaketime[0]}",
        "FAKETIME=-1h",
    ]
    restarted.start()
    assert restarted.stop() == 0

    logged = read_entries(journal)
    kinds = [e.kind for e in logged]
    assert kinds == ["daemon-start", "registration", "unclean-stop", "daemon-start", "daemon-stop"]
    cut = logged[2]
    assert cut.boot_id == logged[3].boot_id == "0badb007-0000-4000-8000-000000000001"
    assert cut.details["last_seen_boot_id"] == boot_id()
    assert cut.details["power_cut_likely"] is True and cut.details["same_boot"] is False
    # bounded: the last heartbeat came after the tap and before the cut
    assert tapped_ns < cut.details["last_seen_wall_ns"] <= cut_ns
    # the box's clock says it came back an hour before it went: the gap shows it
    assert -3700 < cut.details["gap_seconds"] < -3500
    assert verify_command("--journal", str(journal)).returncode == 0


def test_the_daemon_logs_its_life_and_refused_taps(state: Path) -> None:
    [marie] = badges(1)
    write_badge_file(state / "badges.csv", [marie])
    with daemon_process(state, write_config(state)) as daemon:
        daemon.tap(marie.uid)
        daemon.tap("DEADBEEF")  # unknown badge
        daemon.tap(marie.uid)  # a repeat: not evidence
        head = daemon.request({"cmd": "status"})["status"]["evidence_head"]
        daemon.signal(signal.SIGTERM)
        assert daemon.process is not None and daemon.process.wait(timeout=20) == 0

    logged = read_entries(state / "journal.db")
    assert [e.kind for e in logged] == [
        "daemon-start",
        "registration",
        "tap-refused",
        "daemon-stop",
    ]
    assert logged[2].details == {
        "outcome": "unknown-badge",
        "badge_uid": "DEADBEEF",
        "reader": "control",
    }
    assert head["seq"] == 3 and head["hash"] == logged[2].hash
    assert logged[0].details["badges_sha256"]
    assert '"event": "evidence head"' in (state / "daemon.log").read_text()


# --- export: what the employer hands over, checked offline ------------------------------


def export_command(
    config: Path, out: Path, *extra: str, days: tuple[str, str] = ("2026-11-23", "2026-11-23")
) -> subprocess.CompletedProcess[str]:
    command = ["evidence", "export", "--from", days[0], "--to", days[1], "--out", str(out)]
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *command, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def exported(state: Path, tmp_path: Path, **evidence: Any) -> tuple[Path, Path]:
    filled_journal(state / "journal.db")
    [marie] = badges(1)
    write_badge_file(state / "badges.csv", [marie])
    config = write_config(state, evidence=evidence) if evidence else write_config(state)
    out = tmp_path / "export"
    result = export_command(config, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return config, out


def signing_key(tmp_path: Path) -> tuple[Path, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    path = tmp_path / "evidence-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return path, public.hex()


def test_an_export_holds_the_period_and_verifies_offline(state: Path, tmp_path: Path) -> None:
    _, out = exported(state, tmp_path)

    manifest = json.loads((out / "manifest.json").read_text())
    lines = (out / "entries.jsonl").read_text().splitlines()
    assert manifest["entries"] == 8 and len(lines) == 8  # the whole day: all of filled_journal
    assert manifest["linked_from"] is None and manifest["first"]["seq"] == 1
    assert manifest["chain_verified"] and manifest["journal_verified"]
    assert "signature" not in manifest
    assert {
        (out / name).stat().st_mode & 0o777
        for name in ("manifest.json", "entries.jsonl", "report.html")
    } == {0o600}
    assert out.stat().st_mode & 0o777 == 0o700
    good = verify_command("--export", str(out))
    assert good.returncode == 0, good.stdout
    assert "verified: files, hashes and chain hold, unsigned" in good.stdout


def test_an_edited_export_fails_offline_verification(state: Path, tmp_path: Path) -> None:
    _, out = exported(state, tmp_path)
    path = out / "entries.jsonl"
    path.write_text(path.read_text().replace('"IN"', '"OUT"', 1))

    bad = verify_command("--export", str(out))

    assert bad.returncode == 1
    assert "entries.jsonl does not match the manifest's entries_sha256" in bad.stdout
    assert "chain broken at entry 2: edited" in bad.stdout


def test_a_signed_manifest_names_its_key_and_any_change_breaks_it(
    state: Path, tmp_path: Path
) -> None:
    key, public = signing_key(tmp_path)
    _, out = exported(state, tmp_path, signing_key=str(key))

    good = verify_command("--export", str(out), "--public-key", public)
    assert good.returncode == 0, good.stdout
    assert f"signed by Ed25519 key {public}" in good.stdout
    assert verify_command("--export", str(out), "--public-key", "00" * 32).returncode == 1

    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["entries"] = 7
    manifest_path.write_text(json.dumps(manifest))
    bad = verify_command("--export", str(out))
    assert bad.returncode == 1
    assert "the manifest was changed after it was signed" in bad.stdout


# --- retention ------------------------------------------------------------------------------


def acknowledged(seq: int) -> Acknowledgement:
    return Acknowledgement(
        seq=seq,
        onss_id=1000 + seq,
        validity="valid",
        remarks=(),
        sent_registration_date="2018-01-01T07:00:00Z",
        delivered_wall_ns=0,
        late=False,
        time_uncertain=False,
    )


def aged_journal(path: Path) -> tuple[Journal, list[int]]:
    """Registrations of 2018 (delivered, but for one pending and one rejected) and of 2026,
    with a reader entry between two old ones; returns the journal and the old seqs."""
    journal = Journal(path, clock=lambda: clock_at("2026-11-23T12:00", 9000.0))
    journal.start_run({"version": "test"})
    old = []
    for day in range(1, 7):
        reg = a_registration(f"2018-01-{day:02d}T07:00", monotonic_s=float(day))
        old.append(journal.append_registration(reg))
        if day == 3:
            journal.record(Kind.READER_FAILED, {"reader": "entrance", "error": "ENODEV"})
    journal.settle([acknowledged(seq) for seq in old[:4]], [Rejection(old[4], "onss", ())])
    journal.append_registration(a_registration("2026-11-23T07:00", monotonic_s=50.0))
    return journal, old


def test_retention_prunes_old_delivered_registrations_and_the_chain_still_holds(
    tmp_path: Path,
) -> None:
    journal, old = aged_journal(tmp_path / "journal.db")
    try:
        pruned = journal.prune(clock_at("2020-01-01T00:00").wall_ns)
        with closing(connect(journal.path, read_only=True)) as conn:
            remaining = [r[0] for r in conn.execute("SELECT seq FROM registrations")]
            result = verify_journal(conn)
            logged = list(entries(conn))
    finally:
        journal.close()

    assert pruned == 4
    assert remaining == [old[4], old[5], old[5] + 1]  # rejected, pending, and the recent one
    assert result.ok, (result.chain.broken, result.problems)
    summary = logged[-1]
    assert summary.kind == "retention-summary"
    assert summary.details["pruned"] == 4 and summary.details["links"]
    assert "reader-failed" in [e.kind for e in logged]  # outages are never pruned


def test_deleting_a_kept_entry_beside_a_pruned_gap_is_still_caught(tmp_path: Path) -> None:
    journal, _ = aged_journal(tmp_path / "journal.db")
    journal.prune(clock_at("2020-01-01T00:00").wall_ns)
    journal.close()
    tamper(tmp_path / "journal.db", "DELETE FROM evidence WHERE kind = 'reader-failed'")

    broken = check(tmp_path / "journal.db").chain.broken

    assert broken is not None and broken.problem == "deleted"


def test_a_retention_summary_is_signed_when_a_key_is_set(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.evidence.chain import canonical
    from gateway.evidence.signing import signed

    key = Ed25519PrivateKey.generate()
    journal, _ = aged_journal(tmp_path / "journal.db")
    try:
        journal.prune(clock_at("2020-01-01T00:00").wall_ns, sign=lambda d: signed(d, key))
        with closing(connect(journal.path, read_only=True)) as conn:
            summary = list(entries(conn))[-1]
    finally:
        journal.close()

    details = dict(summary.details)
    signature = bytes.fromhex(details.pop("signature"))
    key.public_key().verify(signature, canonical(details))  # raises if it does not hold


def signed_and_pruned(tmp_path: Path) -> tuple[Path, str, Entry]:
    """A journal whose old registrations were pruned behind a signed summary."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from gateway.evidence.signing import signed

    key_file, public = signing_key(tmp_path)
    key = load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    journal, _ = aged_journal(tmp_path / "journal.db")
    journal.prune(clock_at("2020-01-01T00:00").wall_ns, sign=lambda d: signed(d, key))
    journal.close()
    summary = read_entries(tmp_path / "journal.db")[-1]
    assert summary.kind == Kind.RETENTION_SUMMARY.value
    return tmp_path / "journal.db", public, summary


def test_verify_checks_the_retention_summaries_signatures(tmp_path: Path) -> None:
    path, public, summary = signed_and_pruned(tmp_path)

    good = verify_command("--journal", str(path), "--public-key", public)
    wrong = verify_command("--journal", str(path), "--public-key", "00" * 32)

    assert good.returncode == 0, good.stdout + good.stderr
    assert wrong.returncode == 1
    assert (
        f"PROBLEM: retention summary #{summary.seq} is signed by key {public},"
        f" not by the expected {'00' * 32}" in wrong.stdout
    )


def test_a_summary_forged_with_its_hash_recomputed_fails_its_signature(tmp_path: Path) -> None:
    path, _, summary = signed_and_pruned(tmp_path)
    forge(path, summary, pruned=1)  # hides how many went

    bad = verify_command("--journal", str(path))

    assert bad.returncode == 1
    assert (
        f"PROBLEM: retention summary #{summary.seq} was changed after it was signed" in bad.stdout
    )


def test_an_unsigned_summary_fails_when_a_key_is_expected(tmp_path: Path) -> None:
    _, public = signing_key(tmp_path)
    journal, _ = aged_journal(tmp_path / "journal.db")
    journal.prune(clock_at("2020-01-01T00:00").wall_ns)
    journal.close()

    unpinned = verify_command("--journal", str(tmp_path / "journal.db"))
    pinned = verify_command("--journal", str(tmp_path / "journal.db"), "--public-key", public)

    assert unpinned.returncode == 0, unpinned.stdout
    assert pinned.returncode == 1
    assert "is not signed, and a key was given" in pinned.stdout


def test_an_export_across_a_pruned_gap_verifies_offline(state: Path, tmp_path: Path) -> None:
    journal, _ = aged_journal(state / "journal.db")
    journal.prune(clock_at("2020-01-01T00:00").wall_ns)
    journal.close()
    [marie] = badges(1)
    write_badge_file(state / "badges.csv", [marie])
    config = write_config(state)
    out = tmp_path / "export"
    result = export_command(config, out, days=("2018-01-01", "2026-12-31"))
    assert result.returncode == 0, result.stdout + result.stderr

    assert json.loads((out / "manifest.json").read_text())["pruned"]["runs"]
    good = verify_command("--export", str(out))
    assert good.returncode == 0, good.stdout


def test_the_daily_retention_waits_for_a_synchronised_clock_and_keeps_to_the_budget(
    tmp_path: Path,
) -> None:
    journal, old = aged_journal(tmp_path / "journal.db")
    seven_years = Retention(days=7 * 365)
    now = clock_at("2026-11-23T12:00")
    try:
        assert seven_years.apply(journal, replace(now, synced=False)) == 0  # 2018 may be wrong
        assert seven_years.apply(journal, now) == 4  # the delivered ones of 2018
        journal.settle([acknowledged(old[5] + 1)])  # the 2026 one, delivered
        assert seven_years.apply(journal, now) == 0  # young: kept
        # A journal past its budget (0 MB here: always) loses its oldest delivered ones
        # whatever their age; the rejected and the pending one stay.
        assert Retention(days=7 * 365, max_size_mb=0).apply(journal, now) == 1
        with closing(connect(journal.path, read_only=True)) as conn:
            left = [row[0] for row in conn.execute("SELECT delivery FROM registration_rows")]
            assert sorted(left) == ["pending", "rejected"]
            assert verify_journal(conn).ok
    finally:
        journal.close()


# --- what the watch turns into entries ---------------------------------------------------------


class FlakyReader:
    """A reader's health at the Reader boundary, as drivers.device reports it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.now = ReaderHealth(ReaderState.CONNECTED)

    def start(self, on_read: Callable[..., None]) -> None: ...

    def stop(self) -> None: ...

    def health(self) -> ReaderHealth:
        return self.now


def test_a_reader_failing_and_coming_back_is_two_entries() -> None:
    reader, state = FlakyReader("back-door"), WatchState()
    now = clock_at("2026-11-23T07:20", monotonic_s=1000.0)
    down_since = now.monotonic_ns - 90 * 1_000_000_000

    assert reader_changes([reader], state, now) == [
        (Kind.READER_CONNECTED, {"reader": "back-door", "down_seconds": None})
    ]
    reader.now = ReaderHealth(ReaderState.RECONNECTING, "ENODEV", down_since_ns=down_since)
    assert reader_changes([reader], state, now) == []  # down, not yet failed
    reader.now = ReaderHealth(ReaderState.FAILED, "ENODEV", down_since_ns=down_since)
    [(kind, failed)] = reader_changes([reader], state, now)
    assert kind is Kind.READER_FAILED
    assert failed["down_since_wall_ns"] == now.wall_ns - 90 * 1_000_000_000
    reader.now = ReaderHealth(ReaderState.CONNECTED)
    later = replace(now, monotonic_ns=now.monotonic_ns + 30 * 1_000_000_000)
    assert reader_changes([reader], state, later) == [
        (Kind.READER_CONNECTED, {"reader": "back-door", "down_seconds": 120.0})
    ]


def test_the_clock_losing_sync_and_jumping_are_entries() -> None:
    state = WatchState()
    now = clock_at("2026-11-23T07:00", monotonic_s=1000.0)
    assert clock_changes(state, now, "timesyncd") == []  # the first look sets the scene
    lost = replace(
        now, synced=False, monotonic_ns=now.monotonic_ns + 10**9, wall_ns=now.wall_ns + 10**9
    )
    assert clock_changes(state, lost, "timesyncd") == [(Kind.CLOCK_LOST, {"source": "timesyncd"})]
    stepped = replace(lost, synced=True, wall_ns=lost.wall_ns - 5 * 10**9)  # NTP steps back 5 s
    assert clock_changes(state, stepped, "timesyncd") == [
        (Kind.CLOCK_SYNCED, {"source": "timesyncd"}),
        (Kind.CLOCK_JUMPED, {"correction_ns": -5 * 10**9}),
    ]


def test_writes_refused_for_a_full_disk_are_recorded_once_space_returns(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    try:
        journal.start_run({"version": "test"})
        pages = journal.execute("PRAGMA page_count")[0][0]
        journal.limit_pages(pages)
        big = replace(WORKER, name="x" * 20_000)  # a row that needs new pages
        for hour in range(3):
            reg = a_registration(f"2026-11-23T{hour + 6:02d}:00", monotonic_s=100.0 + hour)
            with pytest.raises(StorageError, match="full"):
                journal.append_registration(replace(reg, worker=big))
        journal.limit_pages(pages + 100)  # space comes back
        journal.append_registration(a_registration("2026-11-23T10:00", monotonic_s=200.0))
        with closing(connect(journal.path, read_only=True)) as conn:
            logged = list(entries(conn))
            result = verify_journal(conn)
    finally:
        journal.close()

    assert [e.kind for e in logged] == ["daemon-start", "registration", "storage-full"]
    full = logged[2].details
    assert full["failed_writes"] == 3 and "full" in full["error"]
    assert full["first_wall_ns"] <= full["last_wall_ns"] <= full["recorded_wall_ns"]
    assert result.ok, result.chain.broken
