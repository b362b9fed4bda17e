"""The off-box evidence archive's files: idempotent by seq, conflicts kept aside, gaps
stored and reported, refused payloads, a restart continuing, private files, and
`evidence verify --archive` on a good archive and a tampered one (the archive fed what the
broker would hand it); then `fleet archive` against a real Mosquitto, SIGKILLed mid-stream
and restarted: every entry once, in order."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from paho.mqtt.client import MQTTMessageInfo

from gateway.evidence import GENESIS, Entry, Kind, canonical, make_entry
from gateway.fleet.archive import (
    CONFLICTS_FILE,
    EVIDENCE_FILE,
    GAPS_FILE,
    EvidenceArchive,
    Received,
)
from gateway.fleet.archive_check import verify_archive
from gateway.fleet.connection import connected
from tests.fleet.broker import MosquittoBroker
from tests.support import clock_at

SITE, BOX = "site-a", "box-a1"


def chain(count: int, *, start: Entry | None = None, tag: str = "a") -> list[Entry]:
    """`count` linked entries after `start` (or from entry 1), their details tagged."""
    entries: list[Entry] = []
    previous = start
    for _ in range(count):
        seq = 1 if previous is None else previous.seq + 1
        entry = make_entry(
            seq,
            clock_at("2026-12-01T08:00", monotonic_s=seq),
            Kind.READER_CONNECTED,
            {"reader": "entrance", "tag": tag},
            GENESIS if previous is None else previous.hash,
        )
        entries.append(entry)
        previous = entry
    return entries


def payload(entry: Entry) -> bytes:
    return json.dumps(entry.as_json()).encode()


def feed(archive: EvidenceArchive, entries: list[Entry]) -> list[Received]:
    return [archive.receive(SITE, BOX, payload(entry)) for entry in entries]


def stored_lines(directory: Path) -> list[bytes]:
    return (directory / SITE / BOX / EVIDENCE_FILE).read_bytes().splitlines()


def records(directory: Path, name: str) -> list[dict[str, object]]:
    path = directory / SITE / BOX / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_entries_are_stored_in_order_in_private_files(tmp_path: Path) -> None:
    archive_dir = tmp_path / "archive"
    entries = chain(5)

    outcomes = feed(EvidenceArchive(archive_dir), entries)

    assert outcomes == [Received.STORED] * 5
    assert stored_lines(archive_dir) == [canonical(entry.as_json()) for entry in entries]
    for directory in (archive_dir, archive_dir / SITE, archive_dir / SITE / BOX):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE((archive_dir / SITE / BOX / EVIDENCE_FILE).stat().st_mode) == 0o600
    check = verify_archive(archive_dir / SITE / BOX)
    assert check.ok and check.entries == 5 and check.last == entries[-1]


def test_an_entry_received_again_is_a_duplicate_and_changes_nothing(tmp_path: Path) -> None:
    archive = EvidenceArchive(tmp_path)
    entries = chain(300)
    feed(archive, entries)
    before = stored_lines(tmp_path)

    # A box republishes from its last PUBACKed watermark: any earlier seq may come again.
    again = [archive.receive(SITE, BOX, payload(entries[i])) for i in (0, 1, 149, 298, 299)]

    assert again == [Received.DUPLICATE] * 5
    assert stored_lines(tmp_path) == before
    assert records(tmp_path, CONFLICTS_FILE) == []


def test_an_entry_contradicting_the_chain_is_a_conflict_kept_aside(tmp_path: Path) -> None:
    archive = EvidenceArchive(tmp_path)
    entries = chain(5)
    feed(archive, entries)
    before = stored_lines(tmp_path)
    rewritten = chain(1, start=entries[1], tag="rewritten")[0]  # another entry 3
    forked = chain(1, start=rewritten, tag="fork")[0]  # entry 4 of that other chain...
    unlinked = chain(1, start=forked, tag="fork")[0]  # ...and its 5: then a 6 not linking to ours

    outcomes = [archive.receive(SITE, BOX, payload(e)) for e in (rewritten, forked)]
    sixth = chain(1, start=unlinked, tag="fork")[0]
    outcomes.append(archive.receive(SITE, BOX, payload(sixth)))

    assert outcomes == [Received.CONFLICT] * 3
    assert stored_lines(tmp_path) == before  # never overwritten, never extended by a fork
    conflicts = records(tmp_path, CONFLICTS_FILE)
    assert [c["seq"] for c in conflicts] == [3, 4, 6]
    assert conflicts[0]["stored_hash"] == entries[2].hash
    assert conflicts[0]["received"] == rewritten.as_json()
    assert conflicts[2]["problem"] == "entry 6 does not link to the stored chain"
    check = verify_archive(tmp_path / SITE / BOX)
    assert not check.ok and check.breaks == () and len(check.conflicts) == 3
    assert check.conflicts[0].startswith("entry 3 differs from the stored chain")


def test_a_gap_is_stored_noted_and_reported_until_filled(tmp_path: Path) -> None:
    archive = EvidenceArchive(tmp_path)
    entries = chain(6)

    outcomes = feed(archive, [entries[0], entries[1], entries[4], entries[5]])

    assert outcomes == [Received.STORED, Received.STORED, Received.GAP_STORED, Received.STORED]
    assert [r["missing"] for r in records(tmp_path, GAPS_FILE)] == [[3, 4]]
    check = verify_archive(tmp_path / SITE / BOX)
    assert check.gaps == ("entries 3..4 never received",)
    assert check.breaks == () and not check.ok

    # The missing entries come late (a box restored from a backup publishing them again).
    assert feed(archive, [entries[3], entries[2]]) == [Received.STORED, Received.STORED]
    assert stored_lines(tmp_path) == [canonical(entry.as_json()) for entry in entries]
    assert verify_archive(tmp_path / SITE / BOX).ok


def test_a_first_entry_after_1_is_a_gap_from_the_start(tmp_path: Path) -> None:
    archive = EvidenceArchive(tmp_path)

    assert feed(archive, chain(12)[9:]) == [Received.GAP_STORED, Received.STORED, Received.STORED]

    assert verify_archive(tmp_path / SITE / BOX).gaps == ("entries 1..9 never received",)


def test_what_is_not_an_entry_is_refused_and_the_archive_goes_on(tmp_path: Path) -> None:
    archive = EvidenceArchive(tmp_path)
    good = chain(2)
    edited = {**good[0].as_json(), "details": {"reader": "back door"}}
    missing = {k: v for k, v in good[0].as_json().items() if k != "prev_hash"}

    outcomes = [
        archive.receive(SITE, BOX, b"\xff not json"),
        archive.receive(SITE, BOX, b"[1, 2]"),
        archive.receive(SITE, BOX, json.dumps(missing).encode()),
        archive.receive(SITE, BOX, json.dumps(edited).encode()),
        archive.receive(SITE, BOX, json.dumps({**good[0].as_json(), "seq": "x"}).encode()),
        archive.receive("../etc", BOX, payload(good[0])),
    ]

    assert outcomes == [Received.REFUSED] * 6
    assert not (tmp_path / SITE / BOX / EVIDENCE_FILE).exists()
    assert not (tmp_path.parent / "etc").exists()
    assert feed(archive, good) == [Received.STORED, Received.STORED]
    assert archive.boxes[SITE, BOX].counts[Received.REFUSED] == 5


def test_a_restarted_archive_continues_where_its_files_end(tmp_path: Path) -> None:
    entries = chain(6)
    feed(EvidenceArchive(tmp_path), entries[:3])
    # A crash in the middle of an append (never acknowledged: the broker sends it again).
    with (tmp_path / SITE / BOX / EVIDENCE_FILE).open("ab") as file:
        file.write(canonical(entries[3].as_json())[:40])

    restarted = EvidenceArchive(tmp_path)

    assert restarted.boxes[SITE, BOX].last_seq == 3
    assert feed(restarted, entries[2:]) == [Received.DUPLICATE] + [Received.STORED] * 3
    assert stored_lines(tmp_path) == [canonical(entry.as_json()) for entry in entries]
    assert verify_archive(tmp_path / SITE / BOX).ok


def verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "evidence", "verify", "--archive", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_evidence_verify_archive_passes_a_good_archive(tmp_path: Path) -> None:
    archive = EvidenceArchive(tmp_path)
    entries = chain(20)
    feed(archive, entries)
    archive.receive("site-b", "box-b1", payload(entries[0]))

    whole = verify(tmp_path)  # every box of every site
    one = verify(tmp_path / SITE / BOX)

    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert f"{tmp_path / SITE / BOX}: 20 evidence entries, #1 to #20" in whole.stdout
    assert f"{tmp_path / 'site-b' / 'box-b1'}: 1 evidence entries" in whole.stdout
    assert whole.stdout.count("verified:") == 2
    assert one.returncode == 0 and f"head: 20:{entries[-1].hash}" in one.stdout


def test_evidence_verify_archive_names_a_tampered_line(tmp_path: Path) -> None:
    feed(EvidenceArchive(tmp_path), chain(20))
    path = tmp_path / SITE / BOX / EVIDENCE_FILE
    lines = path.read_bytes().splitlines()
    lines[6] = lines[6].replace(b'"entrance"', b'"back door"')
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = verify(tmp_path)

    assert result.returncode == 1, result.stdout
    assert "BROKEN: evidence.jsonl line 7: entry 7: edited" in result.stdout
    assert "verified" not in result.stdout and "Traceback" not in result.stderr


# --- against a real broker -----------------------------------------------------------------

TOPIC = f"badge-gateway/{SITE}/{BOX}/evidence"


def password_file(broker: MosquittoBroker, user: str, directory: Path) -> Path:
    path = directory / f"{user}.password"
    path.touch(mode=0o600)
    path.write_text(broker.passwords[user] + "\n")
    return path


def start_archive(
    broker: MosquittoBroker, archive_dir: Path, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    command = [
        *(sys.executable, "-m", "gateway", "fleet", "archive", "--dir", str(archive_dir)),
        *("--client-id", "archive-under-test", "--broker", broker.url),
        *("--ca-file", str(broker.ca_file), "--username", "fleet"),
        *("--password-file", str(password_file(broker, "fleet", log.parent)), *extra),
    ]
    with log.open("ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def wait_for(condition: Callable[[], bool], what: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s\n{log.read_text()}")
        time.sleep(0.05)


def line_count(archive_dir: Path) -> int:
    path = archive_dir / SITE / BOX / EVIDENCE_FILE
    return path.read_bytes().count(b"\n") if path.exists() else 0


def publish_all(broker: MosquittoBroker, entries: list[Entry]) -> None:
    """As the box's broker user, every entry at QoS 1, until the broker acknowledged all."""
    with connected("box-a1-publisher", broker.access(BOX)) as client:
        sent: list[MQTTMessageInfo] = [
            client.publish(TOPIC, payload(entry), qos=1) for entry in entries
        ]
        for info in sent:
            info.wait_for_publish(timeout=30)
            assert info.is_published(), f"message {info.mid} not acknowledged"


def test_the_archive_killed_and_restarted_has_every_entry_once_in_order(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    archive_dir, log = tmp_path / "archive", tmp_path / "archive.log"
    entries = chain(1000)
    archive = start_archive(broker, archive_dir, log)
    try:
        wait_for(lambda: b"archive: subscribed" in log.read_bytes(), "subscribed", 20, log)
        publish_all(broker, entries[:500])
        # Killed mid-stream: what was stored but not yet acknowledged comes again.
        wait_for(lambda: line_count(archive_dir) >= 250, "250 entries stored", 60, log)
        os.kill(archive.pid, signal.SIGKILL)
        archive.wait(10)
    finally:
        archive.kill()
    publish_all(broker, entries[500:])  # the broker keeps them for the archive's session

    restarted = start_archive(broker, archive_dir, log, "--exit-when-idle", "3")
    try:
        assert restarted.wait(120) == 0, log.read_text()
    finally:
        restarted.kill()

    assert stored_lines(archive_dir) == [canonical(entry.as_json()) for entry in entries]
    assert not (archive_dir / SITE / BOX / CONFLICTS_FILE).exists()
    assert not (archive_dir / SITE / BOX / GAPS_FILE).exists()
    result = verify(archive_dir)
    assert result.returncode == 0, result.stdout
    assert "1000 evidence entries, #1 to #1000" in result.stdout


def reconnect_waits(log: Path) -> list[float]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line["after_s"] for line in lines if line["event"] == "archive: reconnecting"]


def test_the_archive_waits_longer_each_time_the_broker_is_away_and_then_catches_up(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    archive_dir, log = tmp_path / "archive", tmp_path / "archive.log"
    entries = chain(100)
    archive = start_archive(broker, archive_dir, log)
    try:
        wait_for(lambda: b"archive: subscribed" in log.read_bytes(), "subscribed", 20, log)
        publish_all(broker, entries[:50])
        wait_for(lambda: line_count(archive_dir) == 50, "50 entries stored", 30, log)

        broker.stop()
        wait_for(lambda: len(reconnect_waits(log)) >= 3, "three reconnection attempts", 20, log)
        broker.start()
        publish_all(broker, entries[50:])
        wait_for(lambda: line_count(archive_dir) == 100, "100 entries stored", 30, log)

        archive.send_signal(signal.SIGTERM)
        assert archive.wait(10) == 0, log.read_text()
    finally:
        archive.kill()

    waits = reconnect_waits(log)
    assert waits[:3] == [1.0, 2.0, 4.0], waits  # never a tight loop
    assert len(waits) <= 5, waits
    assert stored_lines(archive_dir) == [canonical(entry.as_json()) for entry in entries]
    assert '"event": "archive: progress"' in log.read_text()


def test_a_gap_the_boxs_retention_made_is_vouched_for_by_its_summary(tmp_path: Path) -> None:
    archive = EvidenceArchive(tmp_path)
    entries = chain(10)
    pruned = {"runs": [[3, 5]], "links": {"6": entries[5].prev_hash}}
    summary = make_entry(
        11, clock_at("2026-12-02T03:00"), Kind.RETENTION_SUMMARY, pruned, entries[-1].hash
    )

    feed(archive, [*entries[:2], *entries[5:], summary])

    assert [r["missing"] for r in records(tmp_path, GAPS_FILE)] == [[3, 5]]  # noted...
    check = verify_archive(tmp_path / SITE / BOX)
    assert check.ok and check.gaps == () and check.entries == 8  # ...and vouched for
