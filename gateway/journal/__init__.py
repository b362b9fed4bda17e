"""The journal: one SQLite file in WAL mode, the single source of truth on the box.

It holds every tap attempt, every registration and its delivery state, and the evidence
chain, written in the same transactions (docs/design.md, "The journal"). One writer
connection behind one lock; readers open their own read-only connections.

Each user takes the narrow view of the journal it needs (`views`): `TapJournal` for the
tap path, `UplinkQueue` for the uplink, `EvidenceSink` for the evidence watch,
`RegistrationReads` and `StatusReads` for the control socket and the CLI, `FleetLog`
for the fleet link. One concrete
`Journal` stands behind them all.

Modules: `views` (those Protocols), `store` (the daemon's `Journal` and the CLI's
read-only `JournalReader`), `writer` (the one writing connection, its lock and commits),
`queries` (the reads both share, on the connection each holds), `delivery` (the uplink's
statements), `retention` (the summary that stands in for pruned rows), `rows` (the values
that go in and out), `file` (opening, locking, schema migrations, backups), `checkpoint`
(the WAL checkpointer thread).

May import: errors, models, identifiers, clock, evidence. Nothing above it.
"""

from gateway.errors import (
    JournalLockedError,
    JournalMigrationError,
    JournalVersionError,
    StorageError,
)
from gateway.journal.file import MIGRATIONS, backup, connect, migrate_file
from gateway.journal.rows import (
    Acknowledgement,
    DeliveryRecord,
    JournalStats,
    Outbound,
    Rejection,
    StoredRegistration,
    TapAttempt,
    place_from_json,
    registration_values,
)
from gateway.journal.store import Journal, JournalReader
from gateway.journal.views import (
    EvidenceSink,
    FleetLog,
    RegistrationReads,
    StatusReads,
    TapJournal,
    UplinkQueue,
)

__all__ = [
    "MIGRATIONS",
    "Acknowledgement",
    "DeliveryRecord",
    "EvidenceSink",
    "FleetLog",
    "Journal",
    "JournalLockedError",
    "JournalMigrationError",
    "JournalReader",
    "JournalStats",
    "JournalVersionError",
    "Outbound",
    "RegistrationReads",
    "Rejection",
    "StatusReads",
    "StorageError",
    "StoredRegistration",
    "TapAttempt",
    "TapJournal",
    "UplinkQueue",
    "backup",
    "connect",
    "migrate_file",
    "place_from_json",
    "registration_values",
]
