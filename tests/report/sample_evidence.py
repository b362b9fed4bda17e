"""A synthetic week of evidence for the report: a valid hash chain (made with make_entry)
of a cleaning site with five workers, a 3-hour internet outage, a power cut one night, a
reader failure, a clock that lost its synchronisation, a rejected and a possibly duplicated
registration, and two whose answer could not be read (unconfirmed), which the employer
resolved: one confirmed, one sent again.

    python -m tests.report.sample_evidence --out docs/evidence-report-example.html [--language fr]
        [--pdf docs/evidence-report-example.pdf] [--png docs/evidence-report-example.png]

The PDF and the screenshot are made by Debian's chromium, as tests/report/test_report.py does.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.evidence import GENESIS, Entry, Kind, make_entry, verify_chain
from gateway.identifiers import make_niss, mask_niss
from gateway.models import ClockSample, Language
from gateway.report import ReportContext, render_report

TZ = ZoneInfo("Europe/Brussels")
SITE = "Résidence Les Tilleuls — Rue de Fer 12, 5000 Namur"
DECLARATION = "1Y1002V9KLZ6Z"
WEEK = datetime(2025, 3, 10, tzinfo=TZ)  # a Monday
LATE_AFTER = timedelta(minutes=15)  # the sender's default (gateway.uplink.sender)
ENTRANCE, BACK_DOOR = "entrance", "back-door"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SampleWorker:
    name: str
    niss: str
    badge_uid: str
    reader: str


WORKERS = (
    SampleWorker("Amina El Idrissi", make_niss("850730", 33), "04A224B2C15E80", ENTRANCE),
    SampleWorker("Jan Peeters", make_niss("790214", 121), "04B3195AC26D81", ENTRANCE),
    SampleWorker("Maria Santos Silva", make_niss("910503", 246), "04C5027FD37B82", BACK_DOOR),
    SampleWorker("Lukas Schmitz", make_niss("881122", 57), "04D6E83AE48C83", BACK_DOOR),
    SampleWorker("Séverine Dubois", make_niss("020918", 88, True), "04E7F14B59D840", ENTRANCE),
)  # fmt: skip


@dataclass
class SampleBox:
    """Writes the entries the daemon would write, at given times, and plays the uplink:
    acknowledged a second after each tap, or held back while offline."""

    boot_id: str
    boot_wall_ns: int  # the wall time at CLOCK_BOOTTIME zero
    entries: list[Entry] = field(default_factory=list)
    synced: bool = True
    offline_since: datetime | None = None
    held: list[tuple[str, datetime]] = field(default_factory=list)
    full_niss: dict[str, str] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(5))

    def log(self, at: datetime, kind: Kind, details: Mapping[str, Any]) -> Entry:
        wall_ns = int(at.timestamp() * 1e9)
        clock = ClockSample(wall_ns, wall_ns - self.boot_wall_ns, self.boot_id, self.synced)
        prev_hash = self.entries[-1].hash if self.entries else GENESIS
        entry = make_entry(len(self.entries) + 1, clock, kind, details, prev_hash)
        self.entries.append(entry)
        return entry

    def boot(self, at: datetime, boot_id: str, uptime: timedelta) -> None:
        self.boot_id = boot_id
        self.boot_wall_ns = int((at - uptime).timestamp() * 1e9)

    def start(self, at: datetime) -> None:
        self.log(at, Kind.DAEMON_START, {
            "version": "0.1.0", "config_sha256": "3f1c" * 16, "badges_sha256": "9a0e" * 16,
            "pid": self.rng.randrange(400, 900),
        })  # fmt: skip
        for reader in (ENTRANCE, BACK_DOOR):
            self.log(at + timedelta(seconds=2), Kind.READER_CONNECTED, {
                "reader": reader, "down_seconds": None,
            })  # fmt: skip

    def tap(self, at: datetime, worker: SampleWorker, direction: str, reader: str) -> str:
        reg_id = self._registration_id(at)
        self.full_niss[reg_id] = worker.niss
        self.log(at, Kind.REGISTRATION, {
            "id": reg_id, "type": direction, "registration_wall_ns": int(at.timestamp() * 1e9),
            "reader": reader, "badge_uid": worker.badge_uid, "worker": worker.name,
            "niss": mask_niss(worker.niss), "time_uncertain": not self.synced,
        })  # fmt: skip
        if self.offline_since is not None:
            self.held.append((reg_id, at))
        return reg_id

    def acknowledge(self, at: datetime, taps: Sequence[tuple[str, datetime]]) -> None:
        ids = {reg_id: self.onss_id() for reg_id, _ in taps}
        late = [reg_id for reg_id, tapped in taps if at - tapped > LATE_AFTER]
        self.log(at, Kind.ACKNOWLEDGED, {"ids": ids, "late": late, "remarks": {}})

    def uplink_offline(self, at: datetime, cause: str, detail: str) -> None:
        self.offline_since = at
        self.log(at, Kind.UPLINK_OFFLINE, {"cause": cause, "detail": detail, "pending": 0})

    def uplink_online(self, at: datetime) -> None:
        assert self.offline_since is not None
        offline = (at - self.offline_since).total_seconds()
        self.log(at, Kind.UPLINK_ONLINE, {"pending": len(self.held), "offline_seconds": offline})
        self.acknowledge(at + timedelta(seconds=4), self.held)
        self.offline_since, self.held = None, []

    def _registration_id(self, at: datetime) -> str:
        millis = int(at.timestamp() * 1000)
        value = millis << 80 | 0x7 << 76 | self.rng.getrandbits(12) << 64 | 0b10 << 62
        return str(uuid.UUID(int=value | self.rng.getrandbits(62)))

    def onss_id(self) -> str:
        return f"CIAO-{self.rng.randrange(10**11, 10**12)}"


Step = Callable[[SampleBox], None]


def _at(day: int, hhmm: str, second: int = 0) -> datetime:
    hours, minutes = (int(part) for part in hhmm.split(":"))
    return WEEK + timedelta(days=day, hours=hours, minutes=minutes, seconds=second)


def _tap_acknowledged(at: datetime, worker: SampleWorker, direction: str, reader: str) -> Step:
    def step(box: SampleBox) -> None:
        reg_id = box.tap(at, worker, direction, reader)
        if box.offline_since is None:
            box.acknowledge(at + timedelta(seconds=1), [(reg_id, at)])

    return step


def _tap_resent(at: datetime, worker: SampleWorker, direction: str) -> Step:
    """Sent, no answer within the timeout, twice, then answered: possibly duplicated (one
    registration, three sends)."""

    def step(box: SampleBox) -> None:
        reg_id = box.tap(at, worker, direction, worker.reader)
        for unanswered in range(2):
            box.log(at + timedelta(seconds=31 + 32 * unanswered), Kind.POSSIBLY_DUPLICATED, {
                "ids": [reg_id], "cause": "timeout: no answer within 30 s, sent again",
            })  # fmt: skip
        box.acknowledge(at + timedelta(seconds=66), [(reg_id, at)])

    return step


def _tap_unconfirmed(at: datetime, worker: SampleWorker, direction: str, confirm: bool) -> Step:
    """Sent, answered 200 with an answer that could not be read: unconfirmed; the employer
    then checks at the ONSS and confirms it with its id, or sends it again (flagged)."""

    def step(box: SampleBox) -> None:
        reg_id = box.tap(at, worker, direction, worker.reader)
        answered = at + timedelta(seconds=1)
        cause = CUT_SHORT if confirm else NO_ITEM
        box.log(answered, Kind.UNCONFIRMED, {"ids": [reg_id], "cause": cause})
        resolved = at + (timedelta(hours=2, minutes=41) if confirm else timedelta(minutes=9))
        if confirm:
            box.log(resolved, Kind.ACKNOWLEDGED, {
                "ids": {reg_id: box.onss_id()}, "late": [], "remarks": {},
                "confirmed_by": "employer", "answered_wall_ns": int(answered.timestamp() * 1e9),
            })  # fmt: skip
            return
        box.log(resolved, Kind.POSSIBLY_DUPLICATED, {"ids": [reg_id], "cause": SENT_AGAIN})
        box.acknowledge(resolved + timedelta(seconds=3), [(reg_id, at)])

    return step


# The two answers that could not be read: the first cut short, the second without its item.
CUT_SHORT = (
    "HTTP 200, unreadable answer: the answer was cut after 61 bytes: peer closed connection"
    " without sending complete message body (incomplete chunked read)"
)
NO_ITEM = (
    'HTTP 200, unreadable answer: ValueError: 1 item results expected, 0 found; answer {"items":[]}'
)
SENT_AGAIN = "sent again by the employer after an answer that could not be read"


def _tap_rejected(at: datetime, worker: SampleWorker, direction: str) -> Step:
    def step(box: SampleBox) -> None:
        reg_id = box.tap(at, worker, direction, worker.reader)
        error = {"code": "400", "description": "worker.ssin: no employment with 0450905686"}
        details = {"id": reg_id, "source": "onss", "errors": [error]}
        box.log(at + timedelta(seconds=1), Kind.REJECTED, details)

    return step


def _shifts(day: int) -> list[tuple[datetime, Step]]:
    """Workers 0-2 clean 06:00-10:30, workers 3-4 10:00-15:00, with a few minutes' jitter."""
    jitter = random.Random(day)
    steps = []
    for index, worker in enumerate(WORKERS):
        start, end = ("06:00", "10:30") if index < 3 else ("10:00", "15:00")
        for hhmm, direction in ((start, "IN"), (end, "OUT")):
            at = _at(day, hhmm, jitter.randrange(-420, 480))
            reader = ENTRANCE if (day, worker.reader) == (3, BACK_DOOR) else worker.reader
            steps.append((at, _tap_acknowledged(at, worker, direction, reader)))
    return steps


def _incidents() -> list[tuple[datetime, Step]]:
    """Everything but the ordinary taps, by day (0 = Monday)."""
    return [
        (_at(0, "06:12", 40), lambda box: box.log(_at(0, "06:12", 40), Kind.TAP_REFUSED, {
            "outcome": "unknown-badge", "badge_uid": "04FF0A11B2C3D4", "reader": ENTRANCE,
        })),
        # Tuesday: the provider's DNS fails for three hours.
        (_at(1, "09:10", 4), lambda box: box.uplink_offline(
            _at(1, "09:10", 4), "dns",
            "[Errno -3] Temporary failure in name resolution (services.socialsecurity.be)",
        )),
        (_at(1, "12:14", 31), lambda box: box.uplink_online(_at(1, "12:14", 31))),
        # Wednesday night: a power cut, from the last heartbeat (23:40) to the restart.
        (_at(3, "04:55", 3), _power_cut_restart),
        # Thursday: the back door's reader is unplugged for 40 minutes.
        (_at(3, "07:20"), lambda box: box.log(_at(3, "07:20"), Kind.READER_FAILED, {
            "reader": BACK_DOOR, "error": "serial port /dev/ttyUSB1 disappeared (cable?)",
            "down_since_wall_ns": int(_at(3, "07:18", 50).timestamp() * 1e9),
        })),
        (_at(3, "08:00"), lambda box: box.log(_at(3, "08:00"), Kind.READER_CONNECTED, {
            "reader": BACK_DOOR, "down_seconds": 2470.0,
        })),
        # Friday: the time server is unreachable for 35 minutes.
        (_at(4, "13:02", 11), lambda box: _clock(box, _at(4, "13:02", 11), synced=False)),
        (_at(4, "13:37", 45), lambda box: _clock(box, _at(4, "13:37", 45), synced=True)),
    ]  # fmt: skip


def _power_cut_restart(box: SampleBox) -> None:
    at, last_seen = _at(3, "04:55", 3), _at(2, "23:40", 12)
    previous_boot, previous_monotonic = box.boot_id, int(last_seen.timestamp() * 1e9)
    previous_monotonic -= box.boot_wall_ns
    box.boot(at, "5b0e7c2a-91d4-4f3e-8c6a-2f1d9e4b7a60", uptime=timedelta(seconds=21))
    box.synced = False  # no real-time clock: unsynchronised until NTP answers
    box.start(at)
    box.log(at + timedelta(seconds=1), Kind.UNCLEAN_STOP, {
        "last_seen_wall_ns": int(last_seen.timestamp() * 1e9),
        "last_seen_monotonic_ns": previous_monotonic, "last_seen_boot_id": previous_boot,
        "gap_seconds": (at - last_seen).total_seconds(), "same_boot": False,
        "power_cut_likely": True,
    })  # fmt: skip
    synced_at = at + timedelta(seconds=38)
    box.log(synced_at, Kind.CLOCK_JUMPED, {"correction_ns": 3_214_000_000})
    _clock(box, synced_at, synced=True)


def _clock(box: SampleBox, at: datetime, *, synced: bool) -> None:
    box.synced = synced
    box.log(at, Kind.CLOCK_SYNCED if synced else Kind.CLOCK_LOST, {"source": "systemd-timesyncd"})


def _special_taps() -> list[tuple[datetime, Step]]:
    """Séverine takes a break during Tuesday's outage (her OUT is held back, but not long
    enough to be late); Thursday's first OUT is resent after a timeout; Friday's IN of Lukas
    is rejected. Wednesday's first IN of Jan and Friday's OUT of Maria are answered with an
    answer that could not be read: the employer confirms the first, sends the second again."""
    severine = WORKERS[4]
    return [
        (_at(2, "06:03", 12), _tap_unconfirmed(_at(2, "06:03", 12), WORKERS[1], "IN", True)),
        (_at(4, "10:29", 44), _tap_unconfirmed(_at(4, "10:29", 44), WORKERS[2], "OUT", False)),
        (_at(1, "12:02", 9), _tap_acknowledged(_at(1, "12:02", 9), severine, "OUT", ENTRANCE)),
        (_at(1, "12:31", 52), _tap_acknowledged(_at(1, "12:31", 52), severine, "IN", ENTRANCE)),
        (_at(3, "10:31", 5), _tap_resent(_at(3, "10:31", 5), WORKERS[0], "OUT")),
        (_at(4, "10:02", 37), _tap_rejected(_at(4, "10:02", 37), WORKERS[3], "IN")),
    ]


def _ordinary_taps() -> list[tuple[datetime, Step]]:
    special = {
        (3, WORKERS[0].name, "OUT"),
        (4, WORKERS[3].name, "IN"),
        (2, WORKERS[1].name, "IN"),
        (4, WORKERS[2].name, "OUT"),
    }
    steps = []
    for day in range(5):
        steps += [
            (at, step)
            for (at, step), (worker, direction) in zip(_shifts(day), _shift_slots(), strict=True)
            if (day, worker.name, direction) not in special
        ]
    return steps


def _shift_slots() -> list[tuple[SampleWorker, str]]:
    return [(worker, direction) for worker in WORKERS for direction in ("IN", "OUT")]


def sample_box() -> SampleBox:
    """The week, played in time order on a box that booted on Monday at 05:48."""
    box = SampleBox(boot_id="a3d9f0e2-6c1b-4b8e-9f27-0d5c8e1a4b33", boot_wall_ns=0)
    box.boot(_at(0, "05:48", 30), box.boot_id, uptime=timedelta(seconds=24))
    box.start(_at(0, "05:48", 30))
    box.log(_at(0, "05:48", 33), Kind.BADGES_CHANGED, {
        "sha256": "9a0e" * 16, "workers": len(WORKERS), "refused_lines": 0,
    })  # fmt: skip
    for _, step in sorted(_ordinary_taps() + _special_taps() + _incidents(), key=_time):
        step(box)
    return box


def _time(item: tuple[datetime, Step]) -> datetime:
    return item[0]


def sample_week() -> list[Entry]:
    return sample_box().entries


def sample_context(entries: Sequence[Entry], language: Language = Language.EN) -> ReportContext:
    return ReportContext(
        site_name=SITE,
        declaration=DECLARATION,
        language=language,
        tz=TZ,
        period_from_ns=int(WEEK.timestamp() * 1e9),
        period_to_ns=int((WEEK + timedelta(days=7)).timestamp() * 1e9),
        check=verify_chain(entries),
        head=entries[-1] if entries else None,
        created_ns=int((WEEK + timedelta(days=7, hours=8, minutes=12)).timestamp() * 1e9),
    )


def run_chromium(work: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Debian's chromium, headless, with a fresh profile (and home) under `work`."""
    home = Path(tempfile.mkdtemp(prefix="chromium-", dir=work))
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_CACHE_HOME": str(home / "cache")}  # fmt: skip
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={home / 'profile'}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, env=env)


def pdf_arguments(pdf: Path) -> list[str]:
    return [f"--print-to-pdf={pdf}", "--no-pdf-header-footer"]


def screenshot_arguments(png: Path) -> list[str]:
    return [f"--screenshot={png}", "--window-size=1280,2000"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the HTML report to write")
    parser.add_argument("--language", type=Language, choices=list(Language), default="en")
    parser.add_argument("--full-niss", action="store_true", help="show NISS numbers in full")
    parser.add_argument("--pdf", type=Path, help="also print it to this PDF (chromium)")
    parser.add_argument("--png", type=Path, help="also take a screenshot (chromium)")
    args = parser.parse_args(argv)
    box = sample_box()
    full_niss = box.full_niss if args.full_niss else None
    context = sample_context(box.entries, args.language)
    page = render_report(box.entries, context, full_niss=full_niss)
    args.out.write_text(page, encoding="utf-8")
    print(f"{args.out}: {len(box.entries)} entries, {len(page)} characters")
    browser_runs = [(args.pdf, pdf_arguments), (args.png, screenshot_arguments)]
    with tempfile.TemporaryDirectory() as work:
        for target, arguments in browser_runs:
            if target is not None:
                url = args.out.resolve().as_uri()
                result = run_chromium(Path(work), *arguments(target.resolve()), url)
                print(f"{target}: chromium exited with {result.returncode}")


if __name__ == "__main__":
    main()
