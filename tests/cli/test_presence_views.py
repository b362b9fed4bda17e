"""The views of a Checkinatwork site (issue 16): `status`, `registrations` and `queue
list|export` show PRESENCE registrations as such, a posted worker by their masked Limosa
number, each registration's own declaration (WorkPlaceId), the site's channel and service,
and a later tap the same day as `already-today` where a repeat would show."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.journal import Journal, Rejection
from gateway.journal.rows import TapAttempt
from gateway.models import mask
from tests.support import (
    LIMOSA,
    POSTED_WORKER,
    WORKER,
    WORKPLACE,
    a_presence,
    badges,
    clock_at,
    daemon_process,
    write_badge_file,
    write_config,
)
from tests.test_process import cli

OTHER_WORKPLACE = "1Y1002V9KLZ6Z"  # a second contract served at the same entrance
PRESENCE_URL = "https://services-sim.socialsecurity.be/PresenceRegistration/v1"


def checkinatwork_config(state: Path, **uplink: Any) -> Path:
    site = {
        "channel": "checkinatwork",
        "declaration": WORKPLACE,
        "declarations": [WORKPLACE, OTHER_WORKPLACE],
    }
    return write_config(state, site=site, uplink={"presence_url": PRESENCE_URL, **uplink})


def write_presence_journal(state: Path) -> dict[str, str]:
    """A NISS worker's presence under the default workplace, delivered; a posted worker's
    under the other one, rejected on the box as day-passed; a later tap that day."""
    journal = Journal(state / "journal.db")
    niss = a_presence("2026-11-23T07:02", WORKER)
    posted = a_presence(
        "2026-11-23T07:40", replace(POSTED_WORKER, declaration=OTHER_WORKPLACE), 200.0
    )
    seqs = [journal.append_registration(reg) for reg in (niss, posted)]
    day_passed = {"code": "day-passed", "description": "not delivered on its day"}
    journal.settle([], [Rejection(seqs[1], "local", (day_passed,))])
    later = clock_at("2026-11-23T12:00", 300.0)
    journal.append_attempt(TapAttempt("already-today", WORKER.badge_uid, "entrance", later))
    journal.close()
    return {"niss": str(niss.id), "posted": str(posted.id)}


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_queue_list_shows_presences_limosa_masked_and_each_declaration(state: Path) -> None:
    config = checkinatwork_config(state)
    ids = write_presence_journal(state)
    source = ("--journal", str(state / "journal.db"))
    text = cli("queue", "list", *source, config=config)
    machines = cli("queue", "list", *source, "--json", config=config)
    full = cli("queue", "list", *source, "--json", "--show-niss", config=config)
    assert text.returncode == machines.returncode == full.returncode == 0, text.stderr
    assert LIMOSA not in text.stdout + machines.stdout
    posted_line, niss_line = text.stdout.splitlines()[0], text.stdout.splitlines()[2]
    assert posted_line.startswith("2026-11-23T07:40:00+01:00  PRESENCE  Ana")
    assert f"Limosa {mask(LIMOSA)}  {OTHER_WORKPLACE}  rejected" in posted_line
    assert text.stdout.splitlines()[1] == "    local error day-passed: not delivered on its day"
    assert f" {mask(WORKER.niss or '')}  {WORKPLACE}  pending" in niss_line
    posted, niss = json_lines(machines.stdout)
    assert (posted["id"], posted["type"], posted["declaration"]) == (
        ids["posted"],
        "PRESENCE",
        OTHER_WORKPLACE,
    )
    assert posted["limosa"] == mask(LIMOSA) and "niss" not in posted
    assert (niss["type"], niss["declaration"], niss["niss"]) == (
        "PRESENCE",
        WORKPLACE,
        mask(WORKER.niss or ""),
    )
    assert "limosa" not in niss
    assert json_lines(full.stdout)[0]["limosa"] == LIMOSA
    assert "Limosa numbers in full" in full.stderr


def test_registrations_and_export_name_the_posted_worker_by_limosa(state: Path) -> None:
    config = checkinatwork_config(state)
    ids = write_presence_journal(state)
    journal = str(state / "journal.db")
    since = ("registrations", "--journal", journal, "--since", "2026-11-01")
    listed = cli(*since, config=config)
    machines = cli(*since, "--json", config=config)
    exported = cli("queue", "export", "--journal", journal, config=config)
    assert listed.returncode == machines.returncode == exported.returncode == 0, listed.stderr
    assert LIMOSA not in listed.stdout + machines.stdout + exported.stdout
    first, second = listed.stdout.splitlines()
    assert first.startswith("2026-11-23T07:02:00+01:00  PRESENCE  Marie")
    assert f"{WORKPLACE}  pending" in first and first.endswith(ids["niss"])
    assert f"Limosa {mask(LIMOSA)}  {OTHER_WORKPLACE}  rejected" in second
    assert [(r["type"], r["declaration"]) for r in json_lines(machines.stdout)] == [
        ("PRESENCE", WORKPLACE),
        ("PRESENCE", OTHER_WORKPLACE),
    ]
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(row["niss"], row["limosa"], row["declaration"]) for row in rows] == [
        (mask(WORKER.niss or ""), "", WORKPLACE),
        ("", mask(LIMOSA), OTHER_WORKPLACE),
    ]


def test_status_names_the_channel_its_declarations_and_counts_already_today(
    state: Path,
) -> None:
    worker = badges(1)[0]
    write_badge_file(state / "badges.csv", [worker])
    config = checkinatwork_config(state)
    with daemon_process(state, config):
        first = cli("tap", worker.uid, config=config)
        again = cli("tap", worker.uid, config=config)
        snapshot = json.loads(cli("status", "--json", config=config).stdout)
        human = cli("status", config=config)
    assert first.returncode == again.returncode == human.returncode == 0, human.stderr
    assert first.stdout.startswith("registered: PRÉSENT") and again.stdout.startswith(
        "already-today: Déjà enregistré aujourd'hui"
    )
    site, uplink, journal = snapshot["site"], snapshot["uplink"], snapshot["journal"]
    assert site["channel"] == "checkinatwork"
    assert site["declarations"] == [WORKPLACE, OTHER_WORKPLACE]
    assert uplink == {"enabled": False, "service": "checkinatwork", "endpoint": PRESENCE_URL}
    assert (journal["registrations"], journal["queue_depth"], journal["tap_attempts"]) == (1, 1, 1)
    assert snapshot["taps"] == {"registered": 1, "already-today": 1}
    [presence] = snapshot["recent_registrations"]
    assert (presence["type"], presence["declaration"]) == ("PRESENCE", WORKPLACE)
    assert [a["outcome"] for a in snapshot["recent_refused_or_repeated"]] == ["already-today"]
    text = human.stdout
    assert f"(checkinatwork, declarations {WORKPLACE}, {OTHER_WORKPLACE})" in text
    assert "uplink      disabled (checkinatwork)" in text
    assert " PRESENCE  Worker 0" in text and "  already-today  badge " in text
    assert worker.niss not in text
    # Nothing was refused: a later tap the same day is no evidence of a refusal.
    conn = sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True)
    try:
        kinds = [row[0] for row in conn.execute("SELECT kind FROM evidence_chain")]
    finally:
        conn.close()
    assert "registration" in kinds and "tap-refused" not in kinds
