"""What `badge-gateway status` shows: a plain JSON-able snapshot of the running daemon.

NISS numbers are masked here too: status output ends up in tickets and screenshots.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drivers.base import ReaderHealth
from gateway.identifiers import mask_niss
from gateway.journal import DeliveryRecord, StoredRegistration
from gateway.models import Channel, ClockSample, UplinkState, Worker, iso_utc

if TYPE_CHECKING:
    from gateway.control.view import DaemonView
    from gateway.feedback import TapOutcome

RECENT = 10
QUEUE_MAX = 100_000  # registrations in one `queue` reply (an export asks for that many)


def _iso(wall_ns: int | None) -> str | None:
    return None if wall_ns is None else iso_utc(wall_ns)


def outcome_json(outcome: TapOutcome) -> dict[str, Any]:
    return {
        "kind": outcome.kind.value,
        "positive": outcome.kind.positive,
        "message": outcome.message(),
        "direction": outcome.direction.value if outcome.direction else None,
        "registration_id": str(outcome.registration_id) if outcome.registration_id else None,
        "local_time": outcome.local_time.isoformat(timespec="seconds"),
    }


def registration_json(stored: StoredRegistration, *, full_niss: bool = False) -> dict[str, Any]:
    reg = stored.registration
    return {
        "seq": stored.seq,
        "id": str(reg.id),
        "type": reg.direction.value,
        "time_utc": _iso(reg.clock.wall_ns),
        "clock_synced": reg.clock.synced,
        "boot_id": reg.clock.boot_id,
        "monotonic_ns": reg.clock.monotonic_ns,
        "badge_uid": reg.badge_uid,
        "reader": reg.reader,
        "name": reg.worker.name,
        **_person(reg.worker, full_niss),
        "employer": reg.worker.employer.ident,
        "capacity": reg.worker.capacity.value,
        "declaration": reg.declaration,
        "delivery": reg.delivery.value,
    }


def delivery_json(
    record: DeliveryRecord, tz: ZoneInfo, *, full_niss: bool = False
) -> dict[str, Any]:
    """A registration with what the uplink learnt about it (`queue list`, `queue export`)."""
    wall_ns = record.stored.registration.clock.wall_ns
    rejection = record.rejection or {}
    return {
        **registration_json(record.stored, full_niss=full_niss),
        "time_local": datetime.fromtimestamp(wall_ns / 1e9, tz).isoformat(timespec="seconds"),
        "onss_id": record.onss_id,
        "onss_validity": record.onss_validity,
        "onss_remarks": list(record.onss_remarks),
        "delivered_utc": _iso(record.delivered_wall_ns),
        "sent_registration_date": record.sent_registration_date,
        "late": record.late,
        "possibly_duplicated": record.possibly_duplicated,
        "time_uncertain": record.time_uncertain,
        "rejection_source": rejection.get("source"),
        "errors": _errors(record, full_niss=full_niss),
        "unconfirmed_cause": record.unconfirmed_cause,
        "unconfirmed_utc": _iso(record.unconfirmed_wall_ns),
    }


def _person(worker: Worker, full_niss: bool) -> dict[str, str]:
    """The worker's NISS (masked unless asked in full), or a posted worker's Limosa number."""
    if worker.niss is None:
        limosa = worker.limosa or ""
        return {"limosa": limosa if full_niss else mask_niss(limosa)}
    return {"niss": worker.niss if full_niss else mask_niss(worker.niss)}


def _errors(record: DeliveryRecord, *, full_niss: bool) -> list[dict[str, str]]:
    """The rejection's errors; an error text quoting the worker's NISS gets it masked."""
    errors: list[dict[str, Any]] = (record.rejection or {}).get("errors", [])
    worker = record.stored.registration.worker
    niss = worker.niss or worker.limosa or ""
    return [
        {
            "code": str(error.get("code", "")),
            "description": _masked_in(str(error.get("description", "")), niss, full_niss),
        }
        for error in errors
    ]


def _masked_in(text: str, niss: str, full_niss: bool) -> str:
    return text if full_niss else text.replace(niss, mask_niss(niss))


def collect(daemon: DaemonView) -> dict[str, Any]:
    """A snapshot of the running daemon; blocking (journal reads), call it off the loop."""
    journal, badges, pipeline = daemon.journal, daemon.badges, daemon.pipeline
    assert journal is not None and badges is not None and pipeline is not None
    stats = journal.stats()
    recent = journal.recent_registrations(RECENT)
    attempts = journal.recent_attempts(RECENT)
    register = badges.current
    counters = pipeline.counters
    clock = pipeline.clock.sample()
    return {
        "pid": os.getpid(),
        "uptime_seconds": round(time.time() - daemon.started_at, 1),
        "site": _site(daemon),
        "clock": {
            "synced": clock.synced,
            "boot_id": clock.boot_id,
            "now": _iso(clock.wall_ns),
            "sources": [  # synced, not synced, or unreadable (counted as not synced): why
                {"name": name, **reading.as_json()}
                for name, reading in pipeline.clock.readings(clock.monotonic_ns).items()
            ],
        },
        "readers": [
            {"name": reader.name, **_health(reader.health(), clock)} for reader in daemon.readers
        ],
        "evidence_head": journal.evidence_head.as_json(),
        "badges": {
            "file": str(register.path),
            "workers": len(register.workers),
            "refused_lines": len(register.errors),
            "sha256": register.sha256,
            "last_error": badges.last_error,
        },
        "journal": {
            "path": str(journal.path),
            "registrations": stats.registrations,
            "queue_depth": stats.pending,
            "rejected": stats.rejected,
            "unconfirmed": stats.unconfirmed,  # the ONSS may hold them: the employer resolves
            "oldest_pending": _iso(stats.oldest_pending_wall_ns),
            "tap_attempts": stats.tap_attempts,
            "storage_error": counters.last_storage_error,
        },
        "taps": dict(counters.outcomes),
        "recent_registrations": [registration_json(item) for item in recent],
        "recent_refused_or_repeated": attempts,
        "uplink": _uplink(daemon),
        "fleet": daemon.fleet_status(),
    }


def summary(snapshot: dict[str, Any]) -> str:
    """One line for systemd's STATUS= (`systemctl status`): what a technician checks first."""
    journal, uplink = snapshot["journal"], snapshot["uplink"]
    readers = snapshot["readers"]
    up = sum(reader["state"] == "connected" for reader in readers)
    parts = [f"{journal['registrations']} registered", f"{journal['queue_depth']} waiting"]
    if journal["oldest_pending"]:
        parts[-1] += f" (oldest {journal['oldest_pending']})"
    if journal.get("unconfirmed"):
        parts.append(f"{journal['unconfirmed']} UNCONFIRMED (queue list --state unconfirmed)")
    if uplink["enabled"]:
        cause = f" ({uplink['cause']})" if uplink.get("cause") else ""
        parts.append(f"ONSS {uplink['state']}{cause}")
        if uplink.get("held_until_clock_synchronised"):
            parts.append("held until the clock is synchronised")
    else:
        parts.append("uplink off")
    fleet = snapshot["fleet"]
    if fleet["enabled"]:
        cause = f" ({fleet['cause']})" if fleet.get("cause") else ""
        parts.append(f"fleet {fleet['state']}{cause}")
    parts.append(f"readers {up}/{len(readers)} up")
    parts.append("clock synced" if snapshot["clock"]["synced"] else "clock NOT synced")
    if journal["storage_error"]:
        parts.append(f"CANNOT STORE: {journal['storage_error']}")
    return ", ".join(parts)


def _health(health: ReaderHealth, now: ClockSample) -> dict[str, Any]:
    down_since = health.down_since_ns
    return {
        "state": health.state.value,
        "error": health.error,
        "reads": health.reads,
        "bad_frames": health.bad_frames,
        "down_since": None if down_since is None else _iso(now.wall_at(down_since)),
        "down_seconds": (
            None if down_since is None else round((now.monotonic_ns - down_since) / 1e9, 1)
        ),
    }


def _site(daemon: DaemonView) -> dict[str, Any]:
    """The site, its channel and every declaration it serves (the default one first)."""
    site = daemon.config.site
    return {
        "name": site.name,
        "channel": site.channel.value,
        "declaration": site.declaration,
        "declarations": list(site.all_declarations),
    }


def _uplink(daemon: DaemonView) -> dict[str, Any]:
    service = _service(daemon)
    if daemon.connectivity is not None:
        return {"enabled": True, **service, **daemon.connectivity.as_json()}
    if daemon.uplink_error is not None:
        state = UplinkState.MISCONFIGURED.value
        return {"enabled": True, **service, "state": state, "cause": daemon.uplink_error}
    return {"enabled": False, **service}


def _service(daemon: DaemonView) -> dict[str, str]:
    """Which ONSS service the uplink delivers to, and where."""
    channel, uplink = daemon.config.site.channel, daemon.config.uplink
    endpoint = uplink.presence_url if channel is Channel.CHECKINATWORK else uplink.base_url
    return {"service": channel.value, "endpoint": str(endpoint)}
