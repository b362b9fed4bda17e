"""The evidence chain: the tamper-evident log an employer shows a labour inspector.

Each entry holds the hash of the one before it (docs/evidence.md). `chain` says what an
entry is, how it is hashed and how a chain is verified; `log` is the table in the journal
that holds it (written in the journal's transactions); `signing` signs and checks
exports and retention summaries with the employer's Ed25519 key.

The chain sits below the journal, which writes entries with its registrations; what reads
it for the employer (export, outage analysis, the report) is `gateway.report`, above.

May import: models. Nothing above it.
"""

from gateway.evidence.chain import (
    GENESIS,
    ChainCheck,
    Entry,
    Kind,
    Pruned,
    canonical,
    entry_hash,
    make_entry,
    pruned_by,
    verify_chain,
)
from gateway.evidence.log import (
    EvidenceWriter,
    Head,
    LogCheck,
    entries,
    entry_at,
    last_head,
    summaries,
    verify_journal,
)

__all__ = [
    "GENESIS",
    "ChainCheck",
    "Entry",
    "EvidenceWriter",
    "Head",
    "Kind",
    "LogCheck",
    "Pruned",
    "canonical",
    "entries",
    "entry_at",
    "entry_hash",
    "last_head",
    "make_entry",
    "pruned_by",
    "summaries",
    "verify_chain",
    "verify_journal",
]
