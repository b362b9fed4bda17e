"""What a box tells its fleet: its status (one retained JSON document) and its events.

The status is made from the daemon's own status snapshot (gateway.control.status.collect,
what `badge-gateway status` shows), trimmed to what a fleet needs: no names, no badge uids,
no recent registrations, never a national number. Events come from the evidence entries as
the stream publishes them, and from the link itself (a register or command refused).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateway.evidence import Entry, Kind
from gateway.models import iso_utc
from gateway.system.logs import masked

SCHEMA = 1
OLDEST_PENDING_ALERT_S = 15 * 60  # the ONSS expects registrations in real time
MAX_EVENTS = 1000  # waiting while the broker is away; older ones are dropped, and counted

# The evidence kinds a fleet operator is told about as they happen.
EVENT_KINDS = frozenset(
    {
        Kind.UPLINK_OFFLINE,
        Kind.UPLINK_ONLINE,
        Kind.READER_FAILED,
        Kind.READER_CONNECTED,
        Kind.STORAGE_FULL,
        Kind.REJECTED,
        Kind.UNCONFIRMED,
        Kind.UNCLEAN_STOP,
        Kind.CLOCK_LOST,
        Kind.BADGES_CHANGED,
    }
)


def utc_now() -> str:
    return iso_utc(time.time_ns())


def status_document(
    snapshot: Mapping[str, Any], identity: Mapping[str, Any], link: Mapping[str, Any]
) -> dict[str, Any]:
    """The retained status: `snapshot` from control.status.collect, `identity` (site, box,
    version, config_sha256, badges_version), `link` (published_seq, telemetry_dropped,
    register_error)."""
    journal, uplink = snapshot["journal"], snapshot["uplink"]
    document = {
        "schema": SCHEMA,
        "site": identity["site"],
        "box": identity["box"],
        "published_utc": utc_now(),
        "version": identity["version"],
        "status_interval_seconds": identity["status_interval_seconds"],
        "config_sha256": identity["config_sha256"],
        "badges": {
            "version": identity.get("badges_version"),
            "sha256": snapshot["badges"]["sha256"],
            "workers": snapshot["badges"]["workers"],
            "last_error": snapshot["badges"]["last_error"],
            "fleet_error": link.get("register_error"),
        },
        "readers": [
            {key: reader.get(key) for key in ("name", "state", "error", "down_since")}
            for reader in snapshot["readers"]
        ],
        "clock": {"synced": snapshot["clock"]["synced"]},
        "uplink": {
            "enabled": uplink["enabled"],
            "state": uplink.get("state"),
            "cause": uplink.get("cause"),
            "next_retry_utc": uplink.get("next_retry"),
        },
        "queue": {
            "depth": journal["queue_depth"],
            "oldest_pending_utc": journal["oldest_pending"],
            "rejected": journal["rejected"],
            "unconfirmed": journal["unconfirmed"],
            "last_acknowledged_utc": uplink.get("last_acknowledgement"),
        },
        "evidence": {
            "head_seq": snapshot["evidence_head"]["seq"],
            "head_hash": snapshot["evidence_head"]["hash"],
            "published_seq": link["published_seq"],
        },
        "telemetry_dropped": link["telemetry_dropped"],
    }
    document["alerts"] = alerts(snapshot)
    return masked(document)  # type: ignore[no-any-return]


def alerts(snapshot: Mapping[str, Any]) -> list[str]:
    """What needs someone's attention, one short line each."""
    journal, uplink = snapshot["journal"], snapshot["uplink"]
    found = [
        f"reader {reader['name']} {reader['state']}: {reader.get('error') or 'no reads'}"
        for reader in snapshot["readers"]
        if reader["state"] != "connected"
    ]
    if journal["storage_error"]:
        found.append(f"cannot store taps: {journal['storage_error']}")
    if uplink["enabled"] and uplink.get("state") != "online":
        found.append(f"ONSS {uplink.get('state')}: {uplink.get('cause') or 'no cause known'}")
    oldest = journal["oldest_pending"]
    if oldest is not None and _age_s(oldest) > OLDEST_PENDING_ALERT_S:
        found.append(f"{journal['queue_depth']} registration(s) waiting since {oldest}")
    if journal["unconfirmed"]:
        found.append(f"{journal['unconfirmed']} unconfirmed: the employer must resolve them")
    if journal["rejected"]:
        found.append(f"{journal['rejected']} rejected by the ONSS")
    if not snapshot["clock"]["synced"]:
        found.append("clock not synchronised")
    if snapshot["badges"]["last_error"]:
        found.append(f"badge register: {snapshot['badges']['last_error']}")
    return found


def _age_s(iso: str) -> float:
    return time.time() - datetime.fromisoformat(iso).timestamp()


def event(identity: Mapping[str, Any], kind: str, details: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "site": identity["site"],
        "box": identity["box"],
        "kind": kind,
        "at_utc": utc_now(),
        "seq": None,
        "details": masked(dict(details)),  # an ONSS error may quote a national number
    }


def event_from_entry(identity: Mapping[str, Any], entry: Entry) -> dict[str, Any] | None:
    """The event an evidence entry makes, if its kind is one; its details are the entry's
    (the evidence holds no national number in full)."""
    if entry.kind not in EVENT_KINDS:
        return None
    return {
        **event(identity, entry.kind, entry.details),
        "at_utc": iso_utc(entry.wall_ns),
        "seq": entry.seq,
    }


class EventQueue:
    """Events waiting for the broker, the oldest dropped (and counted) past MAX_EVENTS."""

    def __init__(self, limit: int = MAX_EVENTS) -> None:
        self._events: deque[dict[str, Any]] = deque()
        self._limit = limit
        self.dropped = 0

    def put(self, item: dict[str, Any]) -> None:
        if len(self._events) >= self._limit:
            self._events.popleft()
            self.dropped += 1
        self._events.append(item)

    def take(self) -> list[dict[str, Any]]:
        taken = list(self._events)
        self._events.clear()
        return taken
