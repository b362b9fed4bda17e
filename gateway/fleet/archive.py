"""The off-box evidence archive: every box's chain, kept on the employer's server.

    DIR/{site}/{box}/evidence.jsonl    one entry per line (canonical JSON), in seq order
    DIR/{site}/{box}/gaps.jsonl        each gap the archive noticed (entries it never got)
    DIR/{site}/{box}/conflicts.jsonl   each entry that contradicts the stored chain

The evidence holds personal data: directories 0700, files 0600. Each entry is appended and
fdatasync'ed before `receive` returns, and `run_archive` acknowledges a message to the
broker only then (paho's manual acks: by default paho 2.x sends the PUBACK as soon as
on_message returns, whether or not the entry reached the disk).

Idempotent by seq: the same seq with the same hash is a duplicate (the box republishes from
its last PUBACKed watermark after a restart); the same seq with another hash, or a next
entry that does not link to the stored one, is a conflict, recorded and logged, never
stored over the chain. Memory holds each box's last seq and hash, never its chain.
`verify_archive` checks a box's files offline, as `evidence verify --archive` does.
"""

from __future__ import annotations

import enum
import json
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.reasoncodes import ReasonCode

from gateway.evidence import GENESIS, Entry, Pruned, canonical, entry_hash, pruned_by
from gateway.evidence.chain import Break, Kind, verify_chain
from gateway.fleet.connection import Broker, BrokerAccess, new_client, session_properties
from gateway.fleet.topics import EVIDENCE, all_boxes, check_name, parse_box_topic

log = structlog.get_logger("fleet.archive")

EVIDENCE_FILE, GAPS_FILE, CONFLICTS_FILE = "evidence.jsonl", "gaps.jsonl", "conflicts.jsonl"
SESSION_EXPIRY_S = 7 * 24 * 3600  # what the broker keeps for us while the archive is down
PROGRESS_EVERY_S = 5.0
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 60.0
STEADY_S = 60.0  # a connection lost sooner does not reset the backoff (a flapping broker)
KEEPALIVE_S = 30
TAIL_CHUNK = 4096


class Received(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    GAP_STORED = "gap-stored"
    REFUSED = "refused"


@dataclass(slots=True)
class Tally:
    """One box's head and what the archive did with its messages since it started."""

    last_seq: int = 0
    last_hash: str = GENESIS
    counts: dict[Received, int] = field(default_factory=dict)
    logged: int = 0  # the sum of counts when progress was last logged

    def count(self, outcome: Received) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class EvidenceArchive:
    """Each box's chain in its own directory; `receive` stores one published entry."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        _private_dir(directory)
        self.boxes: dict[tuple[str, str], Tally] = {}
        for box_dir in sorted(directory.glob(f"*/*/{EVIDENCE_FILE}")):
            self._open_box(box_dir.parent.parent.name, box_dir.parent.name)

    def receive(self, site: str, box: str, payload: bytes) -> Received:
        """Store one entry; OSError if the disk cannot take it (then it must not be acked)."""
        try:
            check_name(site, "site id")
            check_name(box, "box id")
        except ValueError as error:
            log.error("evidence refused", site=site, box=box, reason=str(error))
            return Received.REFUSED
        tally = self._tally(site, box)
        try:
            entry = parse_entry(payload)
        except ValueError as error:
            log.error("evidence refused", site=site, box=box, reason=str(error))
            outcome = Received.REFUSED
        else:
            outcome = self._store(site, box, entry)
        tally.count(outcome)
        return outcome

    def box_dir(self, site: str, box: str) -> Path:
        return self.directory / site / box

    def _tally(self, site: str, box: str) -> Tally:
        return self.boxes.get((site, box)) or self._open_box(site, box)

    def _open_box(self, site: str, box: str) -> Tally:
        tally = Tally()
        last = _last_entry(self.box_dir(site, box) / EVIDENCE_FILE)
        if last is not None:
            tally.last_seq, tally.last_hash = last.seq, last.hash
        self.boxes[(site, box)] = tally
        return tally

    def _store(self, site: str, box: str, entry: Entry) -> Received:
        tally = self._tally(site, box)
        if entry.seq <= tally.last_seq:
            return self._earlier(site, box, entry)
        if entry.seq == tally.last_seq + 1 and entry.prev_hash != tally.last_hash:
            return self._conflict(site, box, entry, tally.last_hash, "does not link to")
        box_dir = _private_dir(self.box_dir(site, box), parents=True)
        gap = entry.seq > tally.last_seq + 1
        if gap:
            self._note_gap(site, box, tally.last_seq + 1, entry.seq - 1)
        _append(box_dir / EVIDENCE_FILE, canonical(entry.as_json()))
        tally.last_seq, tally.last_hash = entry.seq, entry.hash
        return Received.GAP_STORED if gap else Received.STORED

    def _earlier(self, site: str, box: str, entry: Entry) -> Received:
        path = self.box_dir(site, box) / EVIDENCE_FILE
        stored = find_entry(path, entry.seq)
        if stored is None:  # a late entry, inside a gap: put in its place
            _insert(path, entry)
            log.warning("evidence gap filled", site=site, box=box, seq=entry.seq)
            return Received.STORED
        if stored.hash == entry.hash:
            return Received.DUPLICATE
        return self._conflict(site, box, entry, stored.hash, "differs from")

    def _conflict(self, site: str, box: str, entry: Entry, stored: str, how: str) -> Received:
        box_dir = _private_dir(self.box_dir(site, box), parents=True)
        record = {
            "seq": entry.seq,
            "problem": f"entry {entry.seq} {how} the stored chain",
            "stored_hash": stored,
            "received_utc": _utc_now(),
            "received": entry.as_json(),
        }
        _append(box_dir / CONFLICTS_FILE, canonical(record))
        log.error(
            "EVIDENCE CONFLICT: an entry contradicts the archived chain; kept aside, not stored",
            site=site,
            box=box,
            seq=entry.seq,
            problem=record["problem"],
            stored_hash=stored[:16],
            received_hash=entry.hash[:16],
        )
        return Received.CONFLICT

    def _note_gap(self, site: str, box: str, first: int, last: int) -> None:
        record = {"missing": [first, last], "noted_utc": _utc_now()}
        _append(self.box_dir(site, box) / GAPS_FILE, canonical(record))
        log.warning(
            "evidence gap: entries never received", site=site, box=box, missing=[first, last]
        )


def parse_entry(payload: bytes) -> Entry:
    """An evidence entry from a message; ValueError saying what is wrong with it."""
    try:
        data = json.loads(payload)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"not an entry: a JSON {type(data).__name__}, expected an object")
    try:
        entry = Entry.from_json(data)
    except KeyError as error:
        raise ValueError(f"not an entry: field {error} missing") from error
    except (TypeError, ValueError) as error:
        raise ValueError(f"not an entry: {error}") from error
    if entry.seq < 1:
        raise ValueError(f"entry seq {entry.seq}: must be 1 or more")
    if entry_hash(entry) != entry.hash:
        raise ValueError(f"entry {entry.seq}: its content does not match its hash")
    return entry


# --- the files ----------------------------------------------------------------------------


def _private_dir(path: Path, *, parents: bool = False) -> Path:
    if not path.is_dir():
        if parents:
            _private_dir(path.parent, parents=path.parent != path)
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def _append(path: Path, line: bytes) -> None:
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line + b"\n")
        os.fdatasync(fd)
    finally:
        os.close(fd)
    if created:  # the file's name must survive a power cut too
        _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _last_entry(path: Path) -> Entry | None:
    """The file's last complete line; a torn last line (a crash mid-write, never acked) is
    cut off so that the next append starts on a line of its own."""
    try:
        file = path.open("rb+")
    except FileNotFoundError:
        return None
    with file:
        size = file.seek(0, os.SEEK_END)
        tail = _tail(file, size)
        if tail and not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n") + 1
            file.truncate(size - len(tail) + cut)
            log.warning("archive: torn last line cut off", file=str(path), bytes=len(tail) - cut)
            tail = tail[:cut]
        lines = tail.splitlines()
    return _entry_or_none(lines[-1]) if lines else None


def _tail(file: BinaryIO, size: int) -> bytes:
    """The file's last two lines at most, read backwards in chunks."""
    data = b""
    while len(data) < size and data[:-1].count(b"\n") < 2:
        start = max(0, size - len(data) - TAIL_CHUNK)
        file.seek(start)
        data = file.read(size - len(data) - start) + data
    return data


def _entry_or_none(line: bytes) -> Entry | None:
    try:
        return Entry.from_json(json.loads(line))
    except (KeyError, TypeError, ValueError):
        return None


def find_entry(path: Path, seq: int) -> Entry | None:
    """The stored entry `seq`, by binary search over the file's lines (in seq order)."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return None
    with file:
        low, high = 0, file.seek(0, os.SEEK_END)
        while low < high:
            middle = (low + high) // 2
            offset, line = _line_from(file, middle)
            entry = _entry_or_none(line) if line else None
            if entry is None:
                if line:  # an unreadable line: look through the whole file instead
                    return next((e for e in read_entries(path) if e.seq == seq), None)
                high = middle
            elif entry.seq == seq:
                return entry
            elif entry.seq < seq:
                low = offset + len(line)
            else:
                high = middle
    return None


def _line_from(file: BinaryIO, position: int) -> tuple[int, bytes]:
    """The first whole line starting at `position` or after it, and where it starts."""
    if position > 0:
        file.seek(position - 1)
        file.readline()
    else:
        file.seek(0)
    return file.tell(), file.readline()


def read_entries(path: Path) -> Iterator[Entry]:
    """The readable entries of a chain file, in file order."""
    with path.open("rb") as file:
        for line in file:
            entry = _entry_or_none(line)
            if entry is not None:
                yield entry


def _insert(path: Path, entry: Entry) -> None:
    """Rewrite the file with `entry` in its place (rare: an entry filling a gap)."""
    temporary = path.with_suffix(".jsonl.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, path.open("rb") as source:
        written = False
        for line in source:
            stored = _entry_or_none(line)
            if not written and stored is not None and stored.seq > entry.seq:
                out.write(canonical(entry.as_json()) + b"\n")
                written = True
            out.write(line)
        out.flush()
        os.fdatasync(out.fileno())
    os.replace(temporary, path)
    _sync_dir(path.parent)


# --- offline verification -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoxCheck:
    """One box's archived chain, checked from its files alone."""

    directory: Path
    entries: int
    first: Entry | None
    last: Entry | None
    breaks: tuple[str, ...]  # links that do not hold, unreadable lines
    gaps: tuple[str, ...]  # entries the archive never received
    conflicts: tuple[str, ...]  # entries the box sent that contradict the chain

    @property
    def ok(self) -> bool:
        return not (self.breaks or self.gaps or self.conflicts)


def archive_boxes(directory: Path) -> list[Path]:
    """The box directories under `directory`: itself if it is one, else its sites' boxes,
    else its boxes (a site's directory)."""
    if (directory / EVIDENCE_FILE).exists():
        return [directory]
    return sorted(
        {path.parent for path in directory.glob(f"*/{EVIDENCE_FILE}")}
        | {path.parent for path in directory.glob(f"*/*/{EVIDENCE_FILE}")}
    )


def verify_archive(box_dir: Path) -> BoxCheck:
    """Every hash and link of a box's chain; gaps (unless a retention summary vouches for
    them) and conflicts are problems too. Two passes, neither holding the chain."""
    path = box_dir / EVIDENCE_FILE
    pruned = pruned_by(e for e in read_entries(path) if e.kind == Kind.RETENTION_SUMMARY.value)
    walk = _Walk(pruned)
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            walk.line(number, line)
    conflicts = tuple(_records(box_dir / CONFLICTS_FILE, _conflict_text))
    return BoxCheck(
        box_dir, walk.count, walk.first, walk.last, tuple(walk.breaks), tuple(walk.gaps), conflicts
    )


class _Walk:
    """The chain walked line by line: a gap starts a new run, checked from its first entry's
    own hash (nothing before it to link to)."""

    def __init__(self, pruned: Pruned) -> None:
        self.pruned = pruned
        self.previous: Entry | None = None
        self.first: Entry | None = None
        self.last: Entry | None = None
        self.count = 0
        self.breaks: list[str] = []
        self.gaps: list[str] = []

    def line(self, number: int, line: bytes) -> None:
        entry = _entry_or_none(line)
        if entry is None:
            self.breaks.append(f"{EVIDENCE_FILE} line {number}: not an evidence entry")
            return
        broken = self._link(entry)
        if broken is not None:
            self.breaks.append(f"{EVIDENCE_FILE} line {number}: {broken}")
        self.first = self.first or entry
        self.previous = self.last = entry
        self.count += 1

    def _link(self, entry: Entry) -> Break | str | None:
        previous = self.previous
        expected = 1 if previous is None else previous.seq + 1
        if entry.seq > expected:
            if not self.pruned.vouches(expected, entry):
                self.gaps.append(f"entries {expected}..{entry.seq - 1} never received")
            if entry_hash(entry) != entry.hash:
                return f"entry {entry.seq}: edited: its content does not match its hash"
            return None
        if previous is not None and entry.seq < expected:
            return f"entry {entry.seq}: out of order: after entry {previous.seq}"
        return verify_chain([entry], after=previous).broken


def _records(path: Path, describe: Any) -> Iterator[str]:
    if not path.exists():
        return
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                yield describe(json.loads(line))
            except (KeyError, TypeError, ValueError, AttributeError):
                yield f"{path.name} line {number}: unreadable"


def _conflict_text(record: dict[str, Any]) -> str:
    received = record["received"]["hash"]
    return (
        f"{record['problem']} (received {record['received_utc']}: hash {received[:16]}...,"
        f" stored {record['stored_hash'][:16]}...)"
    )


def describe_check(check: BoxCheck) -> str:
    """What `evidence verify --archive` prints for a box."""
    lines = [f"{check.directory}: {check.entries} evidence entries"]
    if check.first and check.last:
        lines[0] += f", #{check.first.seq} to #{check.last.seq}"
        lines.append(f"head: {check.last.seq}:{check.last.hash}")
    lines += [f"BROKEN: {problem}" for problem in check.breaks]
    lines += [f"GAP: {gap}" for gap in check.gaps]
    lines += [f"CONFLICT: {conflict}" for conflict in check.conflicts]
    if check.ok:
        lines.append("verified: every entry's hash and link holds, no gap, no conflict")
    return "\n".join(lines)


# --- the archive's MQTT client ------------------------------------------------------------


class SessionEnd(enum.Enum):
    STOPPED = "stopped"
    IDLE = "idle"
    LOST = "lost"  # connected for a while, then lost: try again soon
    FAILED = "failed"  # not connected, refused, or lost soon after connecting


def run_archive(
    access: BrokerAccess,
    prefix: str,
    directory: Path,
    client_id: str,
    stop: threading.Event,
    idle_exit: float | None = None,
) -> None:
    """Archive every box's evidence until `stop` (or `idle_exit` seconds without a message),
    over a persistent session, trying the brokers in turn with a growing backoff."""
    archive = EvidenceArchive(directory)
    backoff = BACKOFF_FIRST_S
    attempt = 0
    while not stop.is_set():
        broker = access.brokers[attempt % len(access.brokers)]
        end = _Session(archive, access, broker, prefix, client_id).run(stop, idle_exit)
        if end in (SessionEnd.STOPPED, SessionEnd.IDLE):
            return
        if end is SessionEnd.LOST:
            backoff = BACKOFF_FIRST_S
        attempt += 1
        log.info(
            "archive: reconnecting",
            after_s=backoff,
            next_broker=str(access.brokers[attempt % len(access.brokers)]),
        )
        stop.wait(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX_S)


class _Session:
    """One connection to one broker, its network loop run on the caller's thread."""

    def __init__(
        self,
        archive: EvidenceArchive,
        access: BrokerAccess,
        broker: Broker,
        prefix: str,
        client_id: str,
    ) -> None:
        self.archive, self.broker, self.prefix = archive, broker, prefix
        self.client = new_client(client_id, access)
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.connected_at: float | None = None
        self.disconnect_reason: str | None = None
        self.refused: str | None = None
        self.storage_failed = False
        self.last_message = time.monotonic()
        self.last_progress = time.monotonic()

    def run(self, stop: threading.Event, idle_exit: float | None) -> SessionEnd:
        try:
            self.client.connect(
                self.broker.host,
                self.broker.port,
                keepalive=KEEPALIVE_S,
                clean_start=False,
                properties=session_properties(SESSION_EXPIRY_S),
            )
        except (OSError, ssl.SSLError) as error:
            log.error("archive: cannot connect", broker=str(self.broker), error=str(error))
            return SessionEnd.FAILED
        try:
            return self._loop(stop, idle_exit)
        finally:
            self.client.disconnect()
            self._log_progress(force=True)

    def _loop(self, stop: threading.Event, idle_exit: float | None) -> SessionEnd:
        while not stop.is_set():
            code = self.client.loop(timeout=0.5)
            if self.refused is not None or self.storage_failed:
                return SessionEnd.FAILED
            if code != mqtt.MQTT_ERR_SUCCESS:
                log.warning(
                    "archive: connection lost",
                    broker=str(self.broker),
                    reason=mqtt.error_string(code),
                    broker_said=self.disconnect_reason,
                )
                return self._lost()
            self._log_progress()
            if idle_exit is not None and time.monotonic() - self.last_message > idle_exit:
                return SessionEnd.IDLE
        return SessionEnd.STOPPED

    def _lost(self) -> SessionEnd:
        steady = self.connected_at is not None and time.monotonic() - self.connected_at > STEADY_S
        return SessionEnd.LOST if steady else SessionEnd.FAILED

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self.disconnect_reason = str(reason)  # e.g. "Session taken over": our client id reused

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: Any,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            log.error("archive: the broker refused us", broker=str(self.broker), reason=str(reason))
            return
        self.connected_at = time.monotonic()
        self.last_message = time.monotonic()
        client.subscribe(all_boxes(self.prefix, EVIDENCE), qos=1)
        log.info(
            "archive: connected",
            broker=str(self.broker),
            session_kept=bool(getattr(flags, "session_present", False)),
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: object,
    ) -> None:
        topic = all_boxes(self.prefix, EVIDENCE)
        if any(reason.is_failure for reason in reasons):
            log.error("archive: subscription refused", topic=topic, reason=str(reasons[0]))
            self.refused = str(reasons[0])
        else:
            log.info("archive: subscribed", topic=topic)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.last_message = time.monotonic()
        parsed = parse_box_topic(self.prefix, message.topic)
        if parsed is None or parsed.leaf != EVIDENCE:
            log.error("archive: message on an unexpected topic, ignored", topic=message.topic)
        else:
            try:
                self.archive.receive(parsed.site, parsed.box, bytes(message.payload))
            except OSError as error:  # not acked: the broker keeps it for the next session
                log.error(
                    "archive: cannot store an entry",
                    site=parsed.site,
                    box=parsed.box,
                    error=str(error),
                )
                self.storage_failed = True
                return
        client.ack(message.mid, message.qos)

    def _log_progress(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < PROGRESS_EVERY_S:
            return
        self.last_progress = now
        for (site, box), tally in self.archive.boxes.items():
            if tally.total != tally.logged:
                tally.logged = tally.total
                counts = {outcome.value: n for outcome, n in tally.counts.items()}
                log.info("archive: progress", site=site, box=box, head_seq=tally.last_seq, **counts)
