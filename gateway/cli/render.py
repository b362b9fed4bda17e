"""`badge-gateway status` as text: the status the daemon reports (gateway.control.status),
one line per part, and a registration as one line (also `badge-gateway registrations`)."""

from __future__ import annotations

from typing import Any


def render_status(status: dict[str, Any]) -> str:
    journal, clock, badges = status["journal"], status["clock"], status["badges"]
    lines = [
        f"site        {status['site']['name']} (declaration {status['site']['declaration']})",
        f"clock       {'synchronised' if clock['synced'] else 'NOT synchronised'}, {clock['now']}"
        + "".join(f"; {_source_text(source)}" for source in clock.get("sources", [])),
        f"badges      {badges['workers']} worker(s), {badges['refused_lines']} refused line(s)"
        + (f", ERROR {badges['last_error']}" if badges["last_error"] else ""),
        f"journal     {journal['registrations']} registration(s), queue depth"
        f" {journal['queue_depth']}, oldest pending {journal['oldest_pending'] or '-'},"
        f" {journal['rejected']} rejected (badge-gateway queue list --state rejected)",
    ]
    if journal["storage_error"]:
        lines.append(f"STORAGE     cannot store: {journal['storage_error']}")
    lines.append(f"uplink      {_uplink_line(status['uplink'])}")
    head = status.get("evidence_head")
    if head:
        lines.append(f"evidence    head #{head['seq']} {head['hash']}")
    for reader in status["readers"]:
        lines.append(f"reader      {_reader_line(reader)}")
    lines.append("last taps")
    for reg in status["recent_registrations"]:
        lines.append(f"  {registration_line(reg)}")
    for attempt in status["recent_refused_or_repeated"]:
        lines.append(
            f"  {attempt['time_utc']}  {attempt['outcome']:<14} badge {attempt['badge_uid']}"
        )
    return "\n".join(lines)


def registration_line(reg: dict[str, Any]) -> str:
    synced = "" if reg["clock_synced"] else "  (clock not synced)"
    return (
        f"{reg['time_utc']}  {reg['type']:<3}  {reg['name']:<20} {reg['niss']}"
        f"  {reg['delivery']}  {reg['id']}{synced}"
    )


def _source_text(source: dict[str, Any]) -> str:
    """`kernel unreadable (clock_adjtime: EPERM)`: where "synchronised" is read, and how."""
    reason = f" ({source['reason']})" if source.get("reason") else ""
    return f"{source['name']} {source['state']}{reason}"


def _reader_line(reader: dict[str, Any]) -> str:
    """State (and error, and since when it is down), reads, bad frames."""
    state = reader["state"]
    if reader.get("error"):
        state += f" ({reader['error']})"
    if reader.get("down_since"):
        state += f" since {reader['down_since']} ({reader['down_seconds']:.0f} s)"
    bad = reader.get("bad_frames") or 0
    return f"{reader['name']}: {state}, {reader['reads']} read(s)" + (
        f", {bad} bad frame(s)" if bad else ""
    )


def _uplink_line(uplink: dict[str, Any]) -> str:
    """State (and cause), since when, last acknowledgement (or never), next retry."""
    if not uplink["enabled"]:
        return "disabled"
    line = str(uplink["state"]) + (f" ({uplink['cause']})" if uplink.get("cause") else "")
    if uplink.get("since"):
        line += f" since {uplink['since']}"
    if uplink["state"] != "misconfigured":
        line += f", last ack {uplink.get('last_acknowledgement') or 'never'}"
    if uplink.get("next_retry"):
        line += f", next retry {uplink['next_retry']}"
    if uplink.get("held_until_clock_synchronised"):
        line += f", held for the clock {uplink['held_until_clock_synchronised']}"
    return line
