"""The evidence log's entries and their hash chain (docs/evidence.md).

An entry is hashed over a canonical JSON encoding that any JSON library with sorted keys
reproduces, so that an export can be verified on another machine without this code.
This module is pure: the journal stores entries (gateway.journal.store), the CLI exports and
verifies them.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.models import ClockSample

GENESIS = "0" * 64


class Kind(enum.StrEnum):
    DAEMON_START = "daemon-start"
    DAEMON_STOP = "daemon-stop"
    UNCLEAN_STOP = "unclean-stop"
    CLOCK_SYNCED = "clock-synced"
    CLOCK_LOST = "clock-lost"
    CLOCK_JUMPED = "clock-jumped"
    CLOCK_SOURCE_UNREADABLE = "clock-source-unreadable"
    READER_CONNECTED = "reader-connected"
    READER_FAILED = "reader-failed"
    UPLINK_OFFLINE = "uplink-offline"
    UPLINK_ONLINE = "uplink-online"
    REGISTRATION = "registration"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    POSSIBLY_DUPLICATED = "possibly-duplicated"
    UNCONFIRMED = "unconfirmed"  # a 2xx whose answer could not be read: the ONSS may hold them
    TAP_REFUSED = "tap-refused"
    BADGES_CHANGED = "badges-changed"
    STORAGE_FULL = "storage-full"
    RETENTION_SUMMARY = "retention-summary"


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    wall_ns: int
    monotonic_ns: int
    boot_id: str
    clock_synced: bool
    kind: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        return {**_hashed_fields(self), "hash": self.hash}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        """An entry read from an export line; KeyError/TypeError/ValueError if malformed."""
        return cls(
            seq=int(data["seq"]),
            wall_ns=int(data["wall_ns"]),
            monotonic_ns=int(data["monotonic_ns"]),
            boot_id=str(data["boot_id"]),
            clock_synced=bool(data["clock_synced"]),
            kind=str(data["kind"]),
            details=dict(data["details"]),
            prev_hash=str(data["prev_hash"]),
            hash=str(data["hash"]),
        )


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: Entry) -> str:
    return hashlib.sha256(canonical(_hashed_fields(entry))).hexdigest()


def make_entry(
    seq: int, clock: ClockSample, kind: Kind, details: Mapping[str, Any], prev_hash: str
) -> Entry:
    """The next link of the chain, its hash computed."""
    fields: dict[str, Any] = {
        "seq": seq,
        "wall_ns": clock.wall_ns,
        "monotonic_ns": clock.monotonic_ns,
        "boot_id": clock.boot_id,
        "clock_synced": clock.synced,
        "kind": kind.value,
        "details": dict(details),
        "prev_hash": prev_hash,
    }
    return Entry(**fields, hash=hashlib.sha256(canonical(fields)).hexdigest())


def _hashed_fields(entry: Entry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "wall_ns": entry.wall_ns,
        "monotonic_ns": entry.monotonic_ns,
        "boot_id": entry.boot_id,
        "clock_synced": entry.clock_synced,
        "kind": entry.kind,
        "details": dict(entry.details),
        "prev_hash": entry.prev_hash,
    }


@dataclass(frozen=True, slots=True)
class Break:
    """The first place where the chain does not hold, named as an inspector would need."""

    seq: int  # the entry at fault (or, for a missing entry, the one expected there)
    problem: str  # edited, deleted, reordered, inserted, truncated, wrong start
    detail: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.problem}: {self.detail}"


@dataclass(frozen=True, slots=True)
class ChainCheck:
    entries: int
    first: Entry | None
    last: Entry | None
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify_chain(
    entries: Iterable[Entry],
    *,
    after: Entry | None = None,
    pruned: Pruned | None = None,
) -> ChainCheck:
    """Recompute every hash and link, in order. `after`: the trusted entry just before the
    first (an export starts mid-chain); without it the first must be entry 1. `pruned`:
    what retention summaries vouch for (gaps the retention made)."""
    previous = after
    first = last = None
    count = 0
    for entry in entries:
        broken = _check_link(previous, entry, pruned or Pruned())
        if broken is not None:
            return ChainCheck(count, first, last, broken)
        first = first or entry
        previous = last = entry
        count += 1
    return ChainCheck(count, first, last, None)


def _check_link(previous: Entry | None, entry: Entry, pruned: Pruned) -> Break | None:
    expected_seq = 1 if previous is None else previous.seq + 1
    expected_prev = GENESIS if previous is None else previous.hash
    own_hash_holds = entry_hash(entry) == entry.hash
    # A gap the retention made; a check starting mid-chain needs only the entry before pruned.
    gap_from = expected_seq if previous is not None else entry.seq - 1
    if entry.seq > expected_seq and pruned.vouches(gap_from, entry):
        expected_seq, expected_prev = entry.seq, entry.prev_hash  # a gap retention made
    if entry.seq != expected_seq:
        if entry.seq > expected_seq:
            missing = f"{expected_seq}" + (
                f"..{entry.seq - 1}" if entry.seq - 1 > expected_seq else ""
            )
            return Break(expected_seq, "deleted", f"entries {missing} are missing")
        return Break(
            entry.seq, "reordered", f"entry {entry.seq} comes after entry {expected_seq - 1}"
        )
    if not own_hash_holds:
        moved_from = _original_seq(entry)
        if moved_from is not None:
            return Break(entry.seq, "reordered", f"it holds entry {moved_from}, moved here")
        return Break(entry.seq, "edited", "its content does not match its hash")
    if entry.prev_hash != expected_prev:
        if previous is not None:
            return Break(
                previous.seq,
                "edited",
                f"its hash was changed (entry {entry.seq} links to {entry.prev_hash[:12]}...)",
            )
        return Break(entry.seq, "wrong start", "the first entry does not link to the genesis")
    return None


def _original_seq(entry: Entry, reach: int = 1000) -> int | None:
    """The position an entry was hashed at, if it was moved intact (its seq rewritten)."""
    for candidate in range(max(1, entry.seq - reach), entry.seq + reach + 1):
        if candidate != entry.seq:
            moved = Entry(**{**_hashed_fields(entry), "seq": candidate, "hash": entry.hash})
            if entry_hash(moved) == entry.hash:
                return candidate
    return None


@dataclass(frozen=True, slots=True)
class Pruned:
    """What retention summaries vouch for: the runs of entries pruned (`[first, last]`),
    and for each kept entry right after a pruned one, the hash it links to."""

    runs: tuple[tuple[int, int], ...] = ()
    links: Mapping[int, str] = field(default_factory=dict)

    def vouches(self, gap_from: int, entry: Entry) -> bool:
        """Entries gap_from .. entry.seq - 1 were all pruned, and entry links to the last."""
        if self.links.get(entry.seq) != entry.prev_hash:
            return False
        needed = gap_from
        for first, last in sorted(self.runs):
            if first <= needed <= last:
                needed = last + 1
        return needed >= entry.seq

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": [list(run) for run in self.runs],
            "links": {str(k): v for k, v in self.links.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pruned:
        runs = tuple((int(a), int(b)) for a, b in data.get("runs") or ())
        return cls(runs, {int(k): str(v) for k, v in (data.get("links") or {}).items()})


def pruned_by(summaries: Iterable[Entry]) -> Pruned:
    runs: list[tuple[int, int]] = []
    links: dict[int, str] = {}
    for summary in summaries:
        if summary.kind == Kind.RETENTION_SUMMARY.value:
            part = Pruned.from_json(summary.details)
            runs += part.runs
            links.update(part.links)
    return Pruned(tuple(runs), links)
