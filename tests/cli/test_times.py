"""Times in `status`, `registrations` and `queue list`: in the site's time zone, as the door
shows them, each with the offset of its own moment (right on both sides of a daylight
saving change), or in UTC with `Z` under --utc; --json and the export keep UTC. The real
CLI, as processes, on a real journal file and against a real daemon process."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from gateway.attendance import AttendanceRules
from gateway.cli.render import render_status
from gateway.journal import Journal
from gateway.models import ClockSample
from tests.support import (
    BRUSSELS,
    SECOND,
    SITE,
    WORKER,
    badges,
    daemon_process,
    read,
    registered,
    write_badge_file,
    write_config,
)
from tests.test_process import cli

Direction = Literal["IN", "OUT"]

# Taps either side of Brussels' two changes in 2026: clocks forward at 02:00 on 29 March
# (01:59:59+01:00 is followed by 03:00:00+02:00), back at 03:00 on 25 October (02:30 comes
# twice: first +02:00, an hour later +01:00). UTC instant, direction, as the site reads it.
TAPS: list[tuple[str, Direction, str]] = [
    ("2026-03-29T00:59:59", "IN", "2026-03-29T01:59:59+01:00"),
    ("2026-03-29T01:00:00", "OUT", "2026-03-29T03:00:00+02:00"),
    ("2026-10-25T00:30:00", "IN", "2026-10-25T02:30:00+02:00"),
    ("2026-10-25T01:30:00", "OUT", "2026-10-25T02:30:00+01:00"),
    ("2026-10-26T07:00:00", "IN", "2026-10-26T08:00:00+01:00"),
]
# The same instants at a site in New York (its own changes fall on other dates).
NEW_YORK = [
    "2026-03-28T20:59:59-04:00",
    "2026-03-28T21:00:00-04:00",
    "2026-10-24T20:30:00-04:00",
    "2026-10-24T21:30:00-04:00",
    "2026-10-26T03:00:00-04:00",
]
UNREADABLE = "2xx answer unreadable: an id of 1e400"
UNCONFIRMED_AT = "2026-10-25T01:45:00"  # UTC: 02:45:00+01:00 at the site, after the change
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)")


def clock_utc(utc: str) -> ClockSample:
    wall = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    return ClockSample(int(wall.timestamp()) * SECOND, 1000 * SECOND, "boot-a", True)


def write_journal(state: Path) -> list[str]:
    """The taps of TAPS, the one after the October change left unconfirmed; their ids."""
    journal = Journal(state / "journal.db")
    rules = AttendanceRules(SITE)
    regs = [
        registered(rules.decide(read(direction), WORKER, None, clock_utc(utc)))
        for utc, direction, _ in TAPS
    ]
    seqs = [journal.append_registration(reg) for reg in regs]
    journal.mark_in_flight(seqs[3:4])
    journal.mark_unconfirmed(seqs[3:4], UNREADABLE, clock_utc(UNCONFIRMED_AT))
    journal.close()
    return [str(reg.id) for reg in regs]


def setup(state: Path, **site: str) -> tuple[Path, Path, list[str]]:
    """A site's configuration (Brussels unless `site` says), a journal; their paths, the ids."""
    write_badge_file(state / "badges.csv", badges(1))
    config = write_config(state, site=site) if site else write_config(state)
    return config, state / "journal.db", write_journal(state)


def shown(text: str) -> list[str]:
    """The time each line starts with (its indentation aside)."""
    return [match.group(0) for line in text.splitlines() if (match := TIME.match(line.strip()))]


def same_instant(printed: str, utc: str) -> bool:
    return datetime.fromisoformat(printed) == datetime.fromisoformat(utc).replace(tzinfo=UTC)


def test_registrations_in_the_site_zone_with_the_offset_of_each_moment(state: Path) -> None:
    config, journal, ids = setup(state)
    since = ["registrations", "--journal", str(journal), "--since", "2026-01-01"]
    local = cli(*since, config=config)
    utc = cli(*since, "--utc", config=config)
    machines = cli(*since, "--json", config=config)
    assert local.returncode == utc.returncode == machines.returncode == 0, local.stderr
    lines = local.stdout.splitlines()
    assert shown(local.stdout) == [site for _, _, site in TAPS]
    for line, (_, direction, site), reg_id in zip(lines, TAPS, ids, strict=True):
        assert line.startswith(f"{site}  {direction:<3}  Marie ") and line.endswith(reg_id)
    # the same wall time twice on 25 October: the offsets tell the two moments apart
    assert all(same_instant(t, u) for t, (u, _, _) in zip(shown(local.stdout), TAPS, strict=True))
    assert shown(utc.stdout) == [f"{u}Z" for u, _, _ in TAPS]
    assert [json.loads(line)["time_utc"] for line in machines.stdout.splitlines()] == [
        f"{u}+00:00" for u, _, _ in TAPS
    ]


def test_another_site_zone_follows_its_configuration(state: Path) -> None:
    config, journal, _ = setup(state, timezone="America/New_York")
    listed = cli("registrations", "--journal", str(journal), "--since", "2026-01-01", config=config)
    queued = cli("queue", "list", "--journal", str(journal), config=config)
    assert listed.returncode == queued.returncode == 0, listed.stderr + queued.stderr
    assert shown(listed.stdout) == NEW_YORK
    assert shown(queued.stdout)[0] == NEW_YORK[-1]  # newest first


def test_since_is_read_in_the_zone_the_times_are_shown_in(state: Path) -> None:
    config, journal, _ = setup(state)
    source = ["registrations", "--journal", str(journal), "--since"]
    after_change = cli(*source, "2026-10-25T03:00", config=config)  # Brussels: 02:00 UTC
    in_utc = cli(*source, "2026-10-25T01:00", "--utc", config=config)
    with_offset = cli(*source, "2026-10-25T02:30:00+01:00", config=config)
    assert shown(after_change.stdout) == [TAPS[4][2]]
    assert shown(in_utc.stdout) == ["2026-10-25T01:30:00Z", "2026-10-26T07:00:00Z"]
    assert shown(with_offset.stdout) == [TAPS[3][2], TAPS[4][2]]


def test_queue_list_in_the_site_zone_or_utc_and_the_export_unchanged(state: Path) -> None:
    config, journal, ids = setup(state)
    source = ["--journal", str(journal)]
    local = cli("queue", "list", *source, config=config)
    utc = cli("queue", "list", *source, "--utc", config=config)
    machines = cli("queue", "list", *source, "--json", config=config)
    exported = cli("queue", "export", *source, config=config)
    for result in (local, utc, machines, exported):
        assert result.returncode == 0, result.stderr
    newest_first = list(reversed(TAPS))
    assert shown(local.stdout) == [site for _, _, site in newest_first]
    detail = local.stdout.splitlines()[2]
    assert detail.startswith("    answer unreadable at 2026-10-25T02:45:00+01:00: ")
    assert f"queue confirm {ids[3]} ONSS_ID" in detail
    assert shown(utc.stdout) == [f"{u}Z" for u, _, _ in newest_first]
    assert f"answer unreadable at {UNCONFIRMED_AT}Z: " in utc.stdout.splitlines()[2]
    records = [json.loads(line) for line in machines.stdout.splitlines()]
    assert [(r["time_utc"], r["time_local"]) for r in records] == [
        (f"{u}+00:00", site) for u, _, site in newest_first
    ]
    assert records[1]["unconfirmed_utc"] == f"{UNCONFIRMED_AT}+00:00"
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(row["time_local"], row["time_utc"]) for row in rows] == [
        (site, f"{u}+00:00") for u, _, site in TAPS
    ]


def test_status_registrations_and_queue_of_a_running_daemon(state: Path) -> None:
    config, _, ids = setup(state)
    with daemon_process(state, config) as daemon:
        daemon.tap("DEADBEEF")  # refused: a recent attempt, at the daemon's now
        local = cli("status", config=config)
        utc = cli("status", "--utc", config=config)
        machines = cli("status", "--json", config=config)
        listed = cli("registrations", "--since", "2026-10-25T02:30:00+01:00", config=config)
        queued = cli("queue", "list", "--limit", "1", "--utc", config=config)
    for result in (local, utc, machines, listed, queued):
        assert result.returncode == 0, result.stderr
    assert "), times in Europe/Brussels" in local.stdout
    assert "), times in UTC" in utc.stdout
    taps = local.stdout.split("last taps\n")[1].splitlines()
    assert [line.strip().split("  ")[0] for line in taps[:5]] == [
        site for _, _, site in reversed(TAPS)
    ]
    refused = TIME.match(taps[5].strip())
    assert refused and taps[5].endswith("badge DEADBEEF"), taps
    for moment in (_clock_time(local.stdout), _at(refused.group(0))):  # now, in Brussels
        assert moment.utcoffset() == moment.astimezone(BRUSSELS).utcoffset(), moment
        assert abs((datetime.now(UTC) - moment).total_seconds()) < 60
    assert _clock_time(utc.stdout).utcoffset() == timedelta(0)
    utc_taps = utc.stdout.split("last taps\n")[1].splitlines()
    assert [line.strip().split("  ")[0] for line in utc_taps[:5]] == [
        f"{u}Z" for u, _, _ in reversed(TAPS)
    ]
    status: dict[str, Any] = json.loads(machines.stdout)
    assert status["recent_registrations"][0]["time_utc"] == f"{TAPS[4][0]}+00:00"
    assert status["clock"]["now"].endswith("+00:00")
    assert shown(listed.stdout) == [TAPS[3][2], TAPS[4][2]]
    assert listed.stdout.splitlines()[0].endswith(ids[3])
    assert queued.stdout.startswith("2026-10-26T07:00:00Z  IN ")


def _clock_time(status_text: str) -> datetime:
    """The time on the status's `clock` line."""
    clock = next(line for line in status_text.splitlines() if line.startswith("clock "))
    match = TIME.search(clock)
    assert match, clock
    return _at(match.group(0))


def _at(printed: str) -> datetime:
    """A printed time, parsed (`Z` and all): it must name its own offset."""
    moment = datetime.fromisoformat(printed)
    assert moment.tzinfo is not None, printed
    return moment


def test_every_status_time_is_shown_in_the_zone() -> None:
    """Each time the status holds, in summer and in winter time, or in UTC."""
    summer, winter = "2026-10-25T00:30:00+00:00", "2026-10-25T01:30:00+00:00"
    status: dict[str, Any] = {
        "site": {"name": "S", "declaration": "D"},
        "clock": {"synced": True, "now": winter},
        "badges": {"workers": 1, "refused_lines": 0, "last_error": None},
        "journal": {
            "registrations": 1,
            "queue_depth": 1,
            "rejected": 0,
            "oldest_pending": summer,
            "storage_error": None,
        },
        "uplink": {
            "enabled": True,
            "state": "offline",
            "cause": "dns",
            "since": summer,
            "last_acknowledgement": summer,
            "next_retry": winter,
            "held_until_clock_synchronised": 0,
        },
        "readers": [
            {"name": "door", "state": "reconnecting", "reads": 3, "down_since": summer}
            | {"down_seconds": 3600.0, "error": None, "bad_frames": 0}
        ],
        "recent_registrations": [],
        "recent_refused_or_repeated": [
            {"time_utc": winter, "outcome": "unknown_badge", "badge_uid": "DEADBEEF"}
        ],
    }
    text = render_status(status, BRUSSELS)
    summer_local, winter_local = "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00"
    assert f"synchronised, {winter_local}" in text
    assert f"oldest pending {summer_local}," in text
    assert (
        f"offline (dns) since {summer_local}, last ack {summer_local}, next retry {winter_local}"
    ) in text
    assert f"door: reconnecting since {summer_local} (3600 s)" in text
    assert f"  {winter_local}  unknown_badge  badge DEADBEEF" in text
    in_utc = render_status(status)
    assert "times in UTC" in in_utc and "+0" not in in_utc
    assert "since 2026-10-25T00:30:00Z, last ack 2026-10-25T00:30:00Z" in in_utc
