"""The journal: one SQLite file in WAL mode, the single source of truth on the box.

It holds every tap attempt, every registration and its delivery state, and the evidence
chain, written in the same transactions (docs/design.md, "The journal"). One writer
connection behind one lock; readers open their own read-only connections.

Modules: `store` (the `Journal` and its read-only `JournalReader`), `rows` (the values
that go in and out), `file` (opening, locking, schema migrations, backups), `checkpoint`
(the WAL checkpointer thread).

May import: models, identifiers, clock, evidence. Nothing above it.
"""

from gateway.journal.file import (
    MIGRATIONS,
    JournalLockedError,
    JournalMigrationError,
    JournalVersionError,
    StorageError,
    backup,
    connect,
    migrate_file,
)
from gateway.journal.rows import (
    Acknowledgement,
    DeliveryRecord,
    Outbound,
    Rejection,
    StoredRegistration,
    TapAttempt,
    place_from_json,
    registration_values,
)
from gateway.journal.store import Journal, JournalReader

__all__ = [
    "MIGRATIONS",
    "Acknowledgement",
    "DeliveryRecord",
    "Journal",
    "JournalLockedError",
    "JournalMigrationError",
    "JournalReader",
    "JournalVersionError",
    "Outbound",
    "Rejection",
    "StorageError",
    "StoredRegistration",
    "TapAttempt",
    "backup",
    "connect",
    "migrate_file",
    "place_from_json",
    "registration_values",
]
