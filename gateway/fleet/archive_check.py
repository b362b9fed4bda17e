"""An archived chain checked from its files alone, as `evidence verify --archive` does:
every hash and link, the gaps (unless the box's retention summaries vouch for them) and the
conflicts the archive kept aside. Two passes over the file, neither holding the chain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.evidence import Entry, Pruned, entry_hash, pruned_by
from gateway.evidence.chain import Break, Kind, verify_chain
from gateway.fleet.archive import CONFLICTS_FILE, EVIDENCE_FILE, entry_or_none, read_entries


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
        entry = entry_or_none(line)
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
