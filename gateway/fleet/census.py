"""The fleet at a glance, for IT: every box's availability and retained status, read from
the broker and summed up one line per box (`badge-gateway fleet status`).

A box is offline by its last will (`offline`, retained) and since its last status; a box
whose status has no availability beside it, or whose status is older than three status
intervals while it says it is online, is flagged stale: something between the box and the
broker is wrong even if the broker has not noticed. A status that cannot be read is shown
as such for its box.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from gateway.fleet.connection import BrokerAccess, connected
from gateway.fleet.topics import AVAILABILITY, STATUS, all_boxes, parse_box_topic

QUIET_S = 0.5  # the retained messages have all come once none came for this long
STALE_INTERVALS = 3
DEFAULT_STATUS_INTERVAL_S = 60
FIGURES = (
    "published_utc",
    "queue_depth",
    "oldest_pending_utc",
    "last_acknowledged_utc",
    "uplink",
    "uplink_cause",
    "evidence_head_seq",
    "evidence_published_seq",
)


@dataclass(slots=True)
class Seen:
    """What the broker holds for one box: its availability and its status, as received."""

    availability: bytes | None = None
    status: bytes | None = None


@dataclass(slots=True)
class _Collector:
    prefix: str
    boxes: dict[tuple[str, str], Seen] = field(default_factory=dict)
    last_message: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        parsed = parse_box_topic(self.prefix, message.topic)
        if parsed is None or parsed.leaf not in (AVAILABILITY, STATUS):
            return
        with self.lock:
            seen = self.boxes.setdefault((parsed.site, parsed.box), Seen())
            payload = bytes(message.payload) or None  # an empty retained message clears it
            if parsed.leaf == AVAILABILITY:
                seen.availability = payload
            else:
                seen.status = payload
            self.last_message = time.monotonic()

    def quiet_for(self) -> float:
        with self.lock:
            return time.monotonic() - self.last_message


def collect(
    access: BrokerAccess, prefix: str, client_id: str, wait: float, quiet: float = QUIET_S
) -> dict[tuple[str, str], Seen]:
    """Every box's retained availability and status: collected until none came for `quiet`
    seconds, for `wait` seconds at most."""
    collector = _Collector(prefix)
    with connected(client_id, access) as client:
        client.on_message = collector.on_message
        client.subscribe([(all_boxes(prefix, AVAILABILITY), 1), (all_boxes(prefix, STATUS), 1)])
        deadline = time.monotonic() + wait
        collector.last_message = time.monotonic()
        while time.monotonic() < deadline and collector.quiet_for() < quiet:
            time.sleep(0.05)
    with collector.lock:
        return dict(collector.boxes)


def read_status(payload: bytes, site: str, box: str) -> dict[str, Any]:
    """A box's status JSON; ValueError naming the field that is wrong."""
    try:
        status = json.loads(payload)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from error
    if not isinstance(status, dict):
        raise ValueError(f"a JSON {type(status).__name__}, expected an object")
    if status.get("schema") != 1:
        raise ValueError(f"schema {status.get('schema')!r}, expected 1")
    for name, value in (("site", site), ("box", box)):
        if status.get(name) != value:
            raise ValueError(f"field {name} {status.get(name)!r}, its topic says {value!r}")
    _published(status)
    for section in ("queue", "uplink", "evidence"):
        if not isinstance(status.get(section), dict):
            raise ValueError(f"field {section}: missing or not an object")
    if not isinstance(status.get("alerts", []), list):
        raise ValueError("field alerts: not a list")
    return status


def _published(status: dict[str, Any]) -> datetime:
    text = status.get("published_utc")
    try:
        published = datetime.fromisoformat(str(text))
    except ValueError as error:
        raise ValueError(f"field published_utc {text!r}: not an ISO date and time") from error
    if published.tzinfo is None:
        raise ValueError(f"field published_utc {text!r}: no time zone")
    return published


def summarize(
    site: str,
    box: str,
    seen: Seen,
    now: datetime,
    interval_s: float = DEFAULT_STATUS_INTERVAL_S,
) -> dict[str, Any]:
    """One box as `fleet status` shows it (and prints with --json)."""
    row: dict[str, Any] = {
        "site": site,
        "box": box,
        "state": _state(seen.availability),
        "since_utc": None,
        "stale": None,
        "problem": None,
        **dict.fromkeys(FIGURES),
        "alerts": [],
    }
    if seen.status is None:
        row["stale"] = "no status published" if row["state"] == "online" else None
        return row
    try:
        status = read_status(seen.status, site, box)
    except ValueError as error:
        row["problem"] = f"malformed status: {error}"
        return row
    row.update(_figures(status))
    row["since_utc"] = status["published_utc"] if row["state"] == "offline" else None
    row["stale"] = _staleness(row["state"], status, now, interval_s)
    return row


def _state(availability: bytes | None) -> str:
    if availability is None:
        return "unknown"
    text = availability.decode("utf-8", "replace")
    return text if text in ("online", "offline") else f"unreadable ({text[:20]!r})"


def _figures(status: dict[str, Any]) -> dict[str, Any]:
    queue, uplink, evidence = status["queue"], status["uplink"], status["evidence"]
    return {
        "queue_depth": queue.get("depth"),
        "oldest_pending_utc": queue.get("oldest_pending_utc"),
        "last_acknowledged_utc": queue.get("last_acknowledged_utc"),
        "uplink": uplink.get("state"),
        "uplink_cause": uplink.get("cause"),
        "evidence_head_seq": evidence.get("head_seq"),
        "evidence_published_seq": evidence.get("published_seq"),
        "alerts": [str(alert) for alert in status.get("alerts", [])],
        "published_utc": status["published_utc"],
    }


def _staleness(state: str, status: dict[str, Any], now: datetime, interval_s: float) -> str | None:
    if state == "unknown":
        return "a status but no availability message"
    interval = status.get("status_interval_seconds", interval_s)
    if not isinstance(interval, int | float) or interval <= 0:
        interval = interval_s
    age = (now - _published(status)).total_seconds()
    if state == "online" and age > STALE_INTERVALS * interval:
        return f"online, but its status is {age:.0f} s old (over {STALE_INTERVALS} intervals)"
    return None


def census(
    seen: dict[tuple[str, str], Seen],
    now: datetime | None = None,
    interval_s: float = DEFAULT_STATUS_INTERVAL_S,
) -> list[dict[str, Any]]:
    """Every box, sorted by site and box."""
    now = now or datetime.now(UTC)
    return [summarize(site, box, seen[site, box], now, interval_s) for site, box in sorted(seen)]


def render_line(row: dict[str, Any]) -> str:
    """One box on one line: where it is, whether it is up, what is waiting, what is wrong."""
    parts = [
        f"{row['site']}/{row['box']}",
        row["state"].upper() if row["state"] != "online" else "online",
    ]
    if row["since_utc"]:
        parts.append(f"since {row['since_utc']}")
    if row["problem"]:
        parts.append(row["problem"])
    elif row["published_utc"]:
        parts += [
            f"queue {_show(row['queue_depth'])}",
            f"oldest pending {_show(row['oldest_pending_utc'])}",
            f"last ack {_show(row['last_acknowledged_utc'])}",
            f"uplink {_show(row['uplink'])}"
            + (f" ({row['uplink_cause']})" if row["uplink_cause"] else ""),
            f"evidence head {_show(row['evidence_head_seq'])}"
            f" published {_show(row['evidence_published_seq'])}",
            "alerts: " + (", ".join(row["alerts"]) or "none"),
        ]
    else:
        parts.append("no status")
    if row["stale"]:
        parts.append(f"STALE: {row['stale']}")
    return "  ".join(parts)


def _show(value: Any) -> str:
    return "-" if value is None else str(value)
