"""Online or offline, since when and why: derived from what the uplink's requests met.

Every change is logged and written to the journal with its cause (dns, tcp, tls,
timeout, http 503, token, forbidden, unauthorized, unreadable answer, unexpected...), so
the evidence log can turn them into outage records with the number of registrations held
back. `unauthorized` and `forbidden` are configuration problems (the client id, key or
scope), shown as such in `status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from gateway.models import UplinkState, iso_utc

log = structlog.get_logger("uplink")


@dataclass(slots=True)
class Connectivity:
    state: UplinkState = UplinkState.UNKNOWN
    cause: str | None = None
    since_wall_ns: int | None = None
    last_ack_wall_ns: int | None = None
    next_retry_wall_ns: int | None = None
    held_for_clock: int = 0

    def changes_to(self, state: UplinkState, cause: str | None) -> bool:
        return (state, cause) != (self.state, self.cause)

    @property
    def online(self) -> bool | None:
        """For the worker's display: None while not known yet."""
        return {UplinkState.ONLINE: True, UplinkState.UNKNOWN: None}.get(self.state, False)

    def as_json(self) -> dict[str, Any]:
        def iso(wall_ns: int | None) -> str | None:
            return None if wall_ns is None else iso_utc(wall_ns)

        return {
            "state": self.state.value,
            "cause": self.cause,
            "since": iso(self.since_wall_ns),
            "last_acknowledgement": iso(self.last_ack_wall_ns),
            "next_retry": iso(self.next_retry_wall_ns),
            "held_until_clock_synchronised": self.held_for_clock,
        }
