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
gateway.fleet.archive_check verifies a box's files offline; gateway.fleet.archive_session
feeds the archive from the broker.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import structlog

from gateway.evidence import GENESIS, Entry, canonical, entry_hash
from gateway.fleet.topics import check_name

log = structlog.get_logger("fleet.archive")

EVIDENCE_FILE, GAPS_FILE, CONFLICTS_FILE = "evidence.jsonl", "gaps.jsonl", "conflicts.jsonl"
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
    return entry_or_none(lines[-1]) if lines else None


def _tail(file: BinaryIO, size: int) -> bytes:
    """The file's last two lines at most, read backwards in chunks."""
    data = b""
    while len(data) < size and data[:-1].count(b"\n") < 2:
        start = max(0, size - len(data) - TAIL_CHUNK)
        file.seek(start)
        data = file.read(size - len(data) - start) + data
    return data


def entry_or_none(line: bytes) -> Entry | None:
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
            entry = entry_or_none(line) if line else None
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
            entry = entry_or_none(line)
            if entry is not None:
                yield entry


def _insert(path: Path, entry: Entry) -> None:
    """Rewrite the file with `entry` in its place (rare: an entry filling a gap)."""
    temporary = path.with_suffix(".jsonl.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, path.open("rb") as source:
        written = False
        for line in source:
            stored = entry_or_none(line)
            if not written and stored is not None and stored.seq > entry.seq:
                out.write(canonical(entry.as_json()) + b"\n")
                written = True
            out.write(line)
        out.flush()
        os.fdatasync(out.fileno())
    os.replace(temporary, path)
    _sync_dir(path.parent)
