"""The badge register a box received from its fleet, kept beside its journal.

The configuration's `[badges] file` is the box's own register (in /etc, read-only to the
daemon); a signed register from the fleet supersedes it once applied. It is written next
to the journal (the state directory), atomically and 0600 (it holds national numbers), and
its SHA-256 goes into the journal. At the next start it is used only if it still has that
hash: a file edited on the SD card is not trusted, the box falls back to its own register
and says why.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import structlog

from gateway.journal import FleetLog

log = structlog.get_logger("fleet")

FILE_NAME = "badges.fleet.csv"
FILE_SHA256 = "register_file_sha256"


def register_path(journal_path: Path) -> Path:
    return journal_path.with_name(FILE_NAME)


def store_register(path: Path, text: str, journal: FleetLog) -> None:
    """Write the register's text (atomically, synced, 0600) and note its hash, durably."""
    data = text.encode("utf-8")
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    journal.set_fleet_value(FILE_SHA256, hashlib.sha256(data).hexdigest(), durable=True)


def stored_register(path: Path, journal: FleetLog) -> Path | None:
    """The register the fleet gave, if there is one and it is as it was written."""
    expected = journal.fleet_value(FILE_SHA256)
    if expected is None:
        return None
    try:
        found = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        log.error("the fleet's badge register is gone; using the box's own", error=str(error))
        return None
    if found != expected:
        log.error(
            "the fleet's badge register was changed on the box; using the box's own",
            file=str(path),
        )
        return None
    return path
