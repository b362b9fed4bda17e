"""What stands in for pruned registrations: the `retention-summary` entry that vouches for
the evidence chain across the entries their rows held (docs/evidence.md)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from typing import Any

# Delivered registrations only (never pending or rejected ones), oldest first.
PRUNABLE = (
    "SELECT seq, ev_seq, ev_hash, wall_ns FROM registrations"
    " JOIN acknowledgements USING (seq) WHERE wall_ns < ? AND ev_seq IS NOT NULL"
    " ORDER BY seq LIMIT ?"
)


def retention_summary(rows: Sequence[sqlite3.Row], before_wall_ns: int) -> dict[str, Any]:
    """How many were pruned, when, a digest of their entries' hashes, and for each kept
    entry right after a pruned one the hash it links to."""
    hashes = {int(row["ev_seq"]): str(row["ev_hash"]) for row in rows}
    # The entry after the last pruned one may be this summary itself: linked the same way.
    links = {str(seq + 1): hash_ for seq, hash_ in hashes.items() if seq + 1 not in hashes}
    ordered = sorted(hashes)
    runs: list[list[int]] = []
    for seq in ordered:
        if runs and runs[-1][1] == seq - 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return {
        "runs": runs,
        "pruned": len(rows),
        "before_wall_ns": before_wall_ns,
        "first_wall_ns": min(int(row["wall_ns"]) for row in rows),
        "last_wall_ns": max(int(row["wall_ns"]) for row in rows),
        "from_seq": ordered[0],
        "to_seq": ordered[-1],
        "digest": hashlib.sha256("".join(hashes[seq] for seq in ordered).encode()).hexdigest(),
        "links": links,
    }
