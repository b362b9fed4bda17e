"""The uplink's writes as statements: the in-flight marks around a request, the settling of
what the ONSS answered, the flag on registrations a resend may duplicate, and the
`unconfirmed` ones (an answer that could not be read) with the employer's resolution.

A batch's rows are written by one statement each (from a JSON array, or a VALUES list for
acknowledgements, whose eight fields each a JSON path would parse again): executemany
would step once a row, each step giving the GIL away and waiting for it with the journal's
lock held, which a tap may be waiting for.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from gateway.journal.rows import Acknowledgement, Rejection, storable_onss_id

MARK_IN_FLIGHT = "INSERT OR IGNORE INTO in_flight (seq) SELECT value FROM json_each(?)"
CLEAR_IN_FLIGHT = "DELETE FROM in_flight WHERE seq IN (SELECT value FROM json_each(?))"
FLAG_POSSIBLY_DUPLICATED = (
    "UPDATE registrations SET possibly_duplicated = 1 WHERE seq IN (SELECT value FROM json_each(?))"
)
IN_FLIGHT_PENDING = (
    "SELECT seq, id FROM in_flight JOIN registration_rows USING (seq)"
    " WHERE delivery = 'pending' ORDER BY seq"
)
SETTLE_REJECTED = (
    "UPDATE registrations SET delivery = 'rejected', rejection = refusal.value ->> 1"
    " FROM json_each(?) AS refusal WHERE seq = refusal.value ->> 0 AND delivery = 'pending'"
    " AND seq NOT IN (SELECT seq FROM acknowledgements)"
    " AND seq NOT IN (SELECT seq FROM unconfirmed)"
)
# Pending rows only (the row's own `delivery` says pending for an unconfirmed one too).
MARK_UNCONFIRMED = (
    "INSERT OR IGNORE INTO unconfirmed (seq, cause, wall_ns)"
    " SELECT r.seq, ?, ? FROM json_each(?) AS marked"
    " JOIN registrations AS r ON r.seq = marked.value"
    " WHERE r.delivery = 'pending' AND r.seq NOT IN (SELECT seq FROM acknowledgements)"
    " RETURNING seq"
)
FIND_UNCONFIRMED = (
    "SELECT r.seq, r.wall_ns, r.clock_synced, u.wall_ns AS answered_wall_ns"
    " FROM unconfirmed AS u JOIN registrations AS r ON r.seq = u.seq WHERE r.id = ?"
)
CONFIRM = (
    "INSERT INTO acknowledgements (seq, onss_id, onss_validity, onss_remarks,"
    " delivered_wall_ns, sent_registration_date, late, time_uncertain)"
    " VALUES (?, ?, NULL, '[]', ?, NULL, ?, ?)"
)
RESOLVE = "DELETE FROM unconfirmed WHERE seq = ?"
ACKNOWLEDGEMENT_FIELDS = 8  # as delivered_fields lists them


ACKNOWLEDGE = (
    "INSERT OR IGNORE INTO acknowledgements (seq, onss_id, onss_validity, onss_remarks,"
    " delivered_wall_ns, sent_registration_date, late, time_uncertain)"
)


@lru_cache(maxsize=8)
def settle_delivered(count: int) -> str:
    """The statement that stores `count` acknowledgements (of still pending rows only)."""
    rows = ", ".join(["(" + ", ".join("?" * ACKNOWLEDGEMENT_FIELDS) + ")"] * count)
    return (
        f"{ACKNOWLEDGE} SELECT ack.* FROM (VALUES {rows}) AS ack"
        " JOIN registrations AS r ON r.seq = ack.column1 WHERE r.delivery = 'pending'"
        " AND r.seq NOT IN (SELECT seq FROM unconfirmed)"
    )


def delivered_fields(ack: Acknowledgement) -> list[Any]:
    """An acknowledgement's ACKNOWLEDGEMENT_FIELDS, as settle_delivered reads them."""
    return [
        ack.seq,
        storable_onss_id(ack.onss_id),  # never SQLite's "int too large"
        ack.validity,
        json.dumps(list(ack.remarks)) if ack.remarks else "[]",  # mostly none: skip the encoder
        ack.delivered_wall_ns,
        ack.sent_registration_date,
        int(ack.late),
        int(ack.time_uncertain),
    ]


def rejected_fields(rejection: Rejection) -> list[Any]:
    """A rejection as SETTLE_REJECTED reads it."""
    return [
        rejection.seq,
        json.dumps({"source": rejection.source, "errors": list(rejection.errors)}),
    ]
