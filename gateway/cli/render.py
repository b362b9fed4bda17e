"""`badge-gateway status` as text: the status the daemon reports (gateway.control.status),
one line per part, and a registration as one line (also `badge-gateway registrations`).

The daemon reports times in UTC (its JSON, for machines); a person reads them in the site's
time zone, as the door shows them, each with its own offset (`2026-10-25T02:30:00+02:00`,
then `2026-10-25T02:30:00+01:00` an hour later: the offset settles which one), or in UTC
written with `Z` (`--utc`). `zone` None means UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.feedback.outcome import printable


def shown_time(iso: str, zone: ZoneInfo | None) -> str:
    """A time the daemon reports (ISO 8601, UTC) as a person reads it: in `zone` with the
    offset of that moment, or in UTC with `Z`. Text that is not a time is shown as given."""
    try:
        moment = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return str(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the daemon's times are UTC
    if zone is None:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.astimezone(zone).isoformat(timespec="seconds")


def zone_name(zone: ZoneInfo | None) -> str:
    return "UTC" if zone is None else zone.key


def render_status(status: dict[str, Any], zone: ZoneInfo | None = None) -> str:
    """The status as text, its times in `zone` (None: UTC)."""
    journal, clock, badges = status["journal"], status["clock"], status["badges"]
    oldest = journal["oldest_pending"]
    lines = [
        f"site        {_site_text(status['site'])}, times in {zone_name(zone)}",
        f"clock       {'synchronised' if clock['synced'] else 'NOT synchronised'},"
        f" {shown_time(clock['now'], zone)}"
        + "".join(f"; {_source_text(source)}" for source in clock.get("sources", [])),
        f"badges      {badges['workers']} worker(s), {badges['refused_lines']} refused line(s)"
        + (f", ERROR {badges['last_error']}" if badges["last_error"] else ""),
        f"journal     {journal['registrations']} registration(s), queue depth"
        f" {journal['queue_depth']}, oldest pending {shown_time(oldest, zone) if oldest else '-'},"
        f" {journal['rejected']} rejected (badge-gateway queue list --state rejected)",
    ]
    if journal.get("unconfirmed"):
        lines.append(
            f"UNCONFIRMED {journal['unconfirmed']} registration(s) the ONSS may hold, its answer"
            " unreadable; never resent by themselves: badge-gateway queue list --state"
            " unconfirmed, then queue confirm ID ONSS_ID (found at the ONSS) or queue retry ID"
        )
    if journal["storage_error"]:
        lines.append(f"STORAGE     cannot store: {journal['storage_error']}")
    lines.append(f"uplink      {_uplink_line(status['uplink'], zone)}")
    if status.get("fleet", {}).get("enabled"):
        lines.append(f"fleet       {_fleet_line(status['fleet'])}")
    head = status.get("evidence_head")
    if head:
        lines.append(f"evidence    head #{head['seq']} {head['hash']}")
    for reader in status["readers"]:
        lines.append(f"reader      {_reader_line(reader, zone)}")
    lines.append("last taps")
    for reg in status["recent_registrations"]:
        lines.append(f"  {registration_line(reg, zone)}")
    for attempt in status["recent_refused_or_repeated"]:
        lines.append(
            f"  {shown_time(attempt['time_utc'], zone)}  {attempt['outcome']:<14}"
            f" badge {attempt['badge_uid']}"
        )
    return "\n".join(lines)


def registration_line(reg: dict[str, Any], zone: ZoneInfo | None = None) -> str:
    """One registration (`registrations`, status's last taps), its time in `zone`."""
    synced = "" if reg["clock_synced"] else "  (clock not synced)"
    return (
        f"{shown_time(reg['time_utc'], zone)}  {reg['type']:<3}  {printable(reg['name']):<20}"
        f" {person(reg)}  {reg['declaration']}  {reg['delivery']:<11}  {reg['id']}{synced}"
    )


def person(reg: dict[str, Any]) -> str:
    """The worker's NISS, or 'Limosa ' and a posted worker's Limosa number (as the JSON
    gives them: masked unless asked in full)."""
    if reg.get("limosa") is not None:
        return f"Limosa {reg['limosa']}"
    return str(reg.get("niss", ""))


def _site_text(site: dict[str, Any]) -> str:
    """`Name (ciao, declaration X)`, or every declaration when the site serves several."""
    declarations = site.get("declarations") or [site["declaration"]]
    label = "declarations" if len(declarations) > 1 else "declaration"
    channel = f"{site['channel']}, " if site.get("channel") else ""
    return f"{site['name']} ({channel}{label} {', '.join(declarations)})"


def _source_text(source: dict[str, Any]) -> str:
    """`kernel unreadable (clock_adjtime: EPERM)`: where "synchronised" is read, and how."""
    reason = f" ({source['reason']})" if source.get("reason") else ""
    return f"{source['name']} {source['state']}{reason}"


def _reader_line(reader: dict[str, Any], zone: ZoneInfo | None) -> str:
    """State (and error, and since when it is down), reads, bad frames."""
    state = reader["state"]
    if reader.get("error"):
        state += f" ({reader['error']})"
    if reader.get("down_since"):
        state += f" since {shown_time(reader['down_since'], zone)} ({reader['down_seconds']:.0f} s)"
    bad = reader.get("bad_frames") or 0
    return f"{reader['name']}: {state}, {reader['reads']} read(s)" + (
        f", {bad} bad frame(s)" if bad else ""
    )


def _fleet_line(fleet: dict[str, Any]) -> str:
    line = str(fleet["state"]) + (f" ({fleet['cause']})" if fleet.get("cause") else "")
    if "evidence_published_seq" in fleet:
        line += f", evidence acknowledged up to #{fleet['evidence_published_seq']}"
    if fleet.get("register_error"):
        line += f", last register refused: {fleet['register_error']}"
    return line


def _uplink_line(uplink: dict[str, Any], zone: ZoneInfo | None) -> str:
    """State (and cause), since when, last acknowledgement (or never), next retry."""
    if not uplink["enabled"]:
        return f"disabled ({uplink['service']})" if uplink.get("service") else "disabled"
    line = str(uplink["state"]) + (f" ({uplink['cause']})" if uplink.get("cause") else "")
    if uplink.get("service"):
        line = f"{uplink['service']} {uplink.get('endpoint', '')}: {line}"
    if uplink.get("since"):
        line += f" since {shown_time(uplink['since'], zone)}"
    if uplink["state"] != "misconfigured":
        ack = uplink.get("last_acknowledgement")
        line += f", last ack {shown_time(ack, zone) if ack else 'never'}"
    if uplink.get("next_retry"):
        line += f", next retry {shown_time(uplink['next_retry'], zone)}"
    if uplink.get("held_until_clock_synchronised"):
        line += f", held for the clock {uplink['held_until_clock_synchronised']}"
    return line
