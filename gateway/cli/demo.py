"""`badge-gateway demo`: what the box is for, in about fifteen seconds, with nothing to set up.

A short working day at a site's entrance, told for someone who has never seen the box:
1. The ONSS is reachable: Marie arrives (and taps twice: one registration), a badge
   nobody registered and an expired one register nothing, Jan arrives; each registration
   reaches the ONSS within a second.
2. The ONSS goes down for a few seconds (the simulator answers "503 service
   unavailable" to everything: its outage fault). Jan goes on a break: the box finds out
   that the ONSS is down when it tries to send his tap. Marie leaves and Jan comes back:
   the door says "offline — saved", in their language.
3. The ONSS is back: the box delivers what it kept, each registration with the time of
   its tap, not the time it was sent. A table puts the two side by side, as the ONSS
   holds them.
4. The employer's evidence for the day, the same export as `badge-gateway evidence
   export`: the log verified, and report.html (with the outage, the taps it held back and
   when the ONSS acknowledged them) written to a directory the demo names.
5. A construction site next door, where the law asks for something else (Checkinatwork):
   each person is registered once a day, before work, over the ONSS's SOAP service. A
   posted worker is known by his Limosa number; a second tap the same day is answered
   "already registered today" and registers nothing.

The ONSS simulator (onss_sim) runs as its own process, never imported here; the demo
talks to it over HTTPS (its /_sim/ endpoints) like any test. The daemon runs in this
process with its real journal, uplink and control socket; the taps go through the same
path as a reader's. The box's technical log goes to a file, beside the report. Before it
ends, the demo checks what it promised (every registration at the ONSS, with its tap's
time; the outage in the report; the evidence verified) and exits 1 naming what failed.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import httpx

from drivers.base import BadgeRead
from gateway.cli.evidence import describe, report_renderer
from gateway.config import GatewayConfig, config_from_dict
from gateway.daemon import Daemon
from gateway.errors import DemoError, GatewayError
from gateway.evidence import entries, verify_journal
from gateway.feedback import TapOutcome, display_lines
from gateway.identifiers import make_niss, mask_niss
from gateway.journal import DeliveryRecord, connect
from gateway.models import UplinkState
from gateway.report import (
    Analysis,
    Outage,
    OutageKind,
    Period,
    analyse,
    verify_export,
)
from gateway.report import export as export_evidence
from gateway.system import logs
from gateway.uplink.payload import registration_date

MARIE, JAN, OLGA, UNKNOWN = "04A23B9C", "04:5E:11:7F", "04C0FFEE", "DEADBEEF"
SOFIE, PIOTR = "04B0B0B0", "04D1D1D1"  # at the construction site
READER = "entrance"
DEBOUNCE_SECONDS = 2.0  # a second tap of the same badge within this is the same tap
PAUSE_SECONDS = 0.8  # between two taps: time to read what the door said
DOWN_AT_LEAST_SECONDS = 5.0  # how long the ONSS stays down, at least
WAIT_SECONDS = 30.0  # the bound on every wait for the daemon or the simulator
SIMULATOR_LOG, DAEMON_LOG = "onss-simulator.log", "daemon.log"


def sample_badges() -> str:
    return "\n".join(
        [
            "badge_uid,niss,employer,name,language,capacity,valid_from,valid_until",
            f"{MARIE},{make_niss('850730', 33)},0450.905.686,Marie Dubois,fr,employee,,",
            f"{JAN},{make_niss('010215', 127, born_2000=True)},0450905686,Jan Peeters,nl,student,,",
            f"{OLGA},{make_niss('920411', 8)},PL5260001246,Olga Nowak,en,posted-worker,"
            "2024-01-01,2024-12-31",
        ]
    )


def construction_badges() -> str:
    return "\n".join(
        [
            "badge_uid,niss,limosa,employer,name,language,capacity",
            f"{SOFIE},{make_niss('880512', 41)},,0450905686,Sofie Janssens,nl,employee",
            f"{PIOTR},,LIM-2026-004711,PL5260001246,Piotr Kowalski,en,posted-worker",
        ]
    )


def construction_config(state: Path, onss: dict[str, Any]) -> dict[str, Any]:
    """The same box at a construction site: Checkinatwork, with the employer's certificate
    (the simulator registered it for its technical user)."""
    base = demo_config(state, onss)
    return {
        **base,
        "site": {
            "name": "Demo construction site, Wavre",
            "channel": "checkinatwork",
            "declaration": "1Y1002V9KLZ6Z",  # the declaration of works: the WorkPlaceId
            "language": "en",
        },
        "uplink": {
            "enabled": True,
            "presence_url": onss["soap_url"],
            "private_key": onss["client_key_file"],
            "certificate": onss["client_cert_file"],
            "ca_file": onss["ca_file"],
            "backoff_max_seconds": 2.0,
        },
    }


def demo_config(state: Path, onss: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": {
            "name": "Demo office building, Wavre",
            "declaration": "1Y1002V9KLZ6Z",
            "language": "en",  # the report's language (each worker is answered in theirs)
            "place_of_work": {"coordinates": {"latitude": 50.681805, "longitude": 4.834123}},
        },
        "badges": {"file": str(state / "badges.csv"), "poll_seconds": 1.0},
        "attendance": {"debounce_seconds": DEBOUNCE_SECONDS},
        "storage": {"journal": str(state / "journal.db")},
        "control": {"socket": str(state / "control.sock")},
        "logging": {"format": "console"},
        # The demo stands in for systemd-timesyncd: its flag file says "synchronised".
        "clock": {"sources": ["timesyncd"], "timesyncd_flag": str(state / "synchronized")},
        "uplink": {
            "enabled": True,
            "token_url": onss["token_url"],
            "base_url": onss["base_url"],
            "client_id": onss["client_id"],
            "private_key": onss["client_key_file"],
            "ca_file": onss["ca_file"],
            "type_values": onss["type_values"],  # the case of `type` the simulator accepts
            # A box retries for up to 5 minutes apart; the demo's outage lasts seconds.
            "backoff_max_seconds": 2.0,
        },
        # The door's reader; the demo presents the cards itself (see Door), one by one.
        "readers": [{"driver": "simulated", "name": READER, "start_delay_seconds": 0}],
    }


# --- The story --------------------------------------------------------------------------


async def run_demo(out: Path | None = None) -> int:
    """The demo; its report and logs go to `out` (default: a new temporary directory)."""
    out = out or Path(tempfile.mkdtemp(prefix="badge-gateway-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="badge-gw-")))
        log_file = stack.enter_context((out / DAEMON_LOG).open("a", encoding="utf-8"))
        stack.callback(logs.configure, fmt="console", level="warning")  # before it closes
        try:
            await _run(state, out, log_file, stack)
        except (GatewayError, TimeoutError, OSError, httpx.HTTPError) as error:
            print(f"\ndemo: PROBLEM: {error}\n(the box's log: {out / DAEMON_LOG})")
            return 1
    return 0


async def _run(state: Path, out: Path, log_file: TextIO, stack: ExitStack) -> None:
    (state / "badges.csv").write_text(sample_badges() + "\n", encoding="utf-8")
    (state / "badges.csv").chmod(0o600)
    (state / "synchronized").touch()
    logs.configure(fmt="console", level="info", stream=log_file)
    onss = stack.enter_context(await Onss.start(state / "onss", out / SIMULATOR_LOG))
    config = config_from_dict(demo_config(state, onss.info), source="embedded demo configuration")
    _introduce(out)
    first_day = _today(config.site.tz)
    daemon = Daemon(config)
    runner = asyncio.create_task(daemon.run())
    try:
        door = await Door.ready(daemon, runner)
        outage = await _story(daemon, door, onss)
        records = await _delivered(daemon, onss, outage)
    finally:
        daemon.stop()
        await runner
    _show_evidence(config.storage.journal)
    _write_report(config, first_day, out, outage, records)
    await _construction_site(state / "construction", onss)


async def _construction_site(state: Path, onss: Onss) -> None:
    _heading(5, "Next door, a construction site: one registration a day (Checkinatwork)")
    state.mkdir()
    (state / "badges.csv").write_text(construction_badges() + "\n", encoding="utf-8")
    (state / "badges.csv").chmod(0o600)
    (state / "synchronized").touch()
    config = config_from_dict(construction_config(state, onss.info), source="embedded demo")
    daemon = Daemon(config)
    runner = asyncio.create_task(daemon.run())
    try:
        door = await Door.ready(daemon, runner)
        await door.present(SOFIE, "Sofie Janssens arrives on site")
        await door.present(PIOTR, "Piotr Kowalski, posted from Poland (a Limosa number)")
        await door.present(SOFIE, "Sofie comes back from lunch")
        await _until(lambda: _pending(daemon), "the presences to be delivered")
    finally:
        daemon.stop()
        await runner
    presences = (await onss.call("GET", "/presences"))["presences"]
    print("  -> what the ONSS holds for today: one presence per person\n")
    for presence in presences:
        inss, limosa = presence["inss"], presence["limosa_id"]
        who = f"NISS {mask_niss(inss)}" if inss else f"Limosa {mask_niss(limosa)}"
        print(f"     {presence['date']}  workplace {presence['workplace']}  {who}")
    if len(presences) != 2:
        raise DemoError(f"{len(presences)} presences at the ONSS, 2 expected")


def _introduce(out: Path) -> None:
    print(
        "badge-gateway demo: a few seconds of a working day at a site's entrance.\n"
        "Each badge tap is stored on the box at once, the worker is told at the door, and\n"
        "the box registers the presence with the ONSS (here a simulator plays the ONSS).\n"
        "What the box does matters most when the ONSS or the internet is down.\n"
        f"(the box's technical log: {out / DAEMON_LOG})"
    )


@dataclass(frozen=True, slots=True)
class OutageSeen:
    """The outage as the demo caused it: wall clock, nanoseconds."""

    down_ns: int
    back_ns: int
    taps: tuple[str, ...]  # the registration ids tapped while the ONSS was down


async def _story(daemon: Daemon, door: Door, onss: Onss) -> OutageSeen:
    _heading(1, "A normal morning: the ONSS is reachable")
    await door.present(MARIE, "Marie Dubois arrives")
    await door.present(MARIE, "Marie taps again at once (one registration, not two)", again=True)
    await door.present(UNKNOWN, "a badge nobody registered")
    await door.present(JAN, "Jan Peeters arrives")
    await door.present(OLGA, "Olga Nowak, whose badge expired at the end of 2024")
    await _until(lambda: _pending(daemon), "the morning's registrations to be delivered")
    print("  -> both registrations are at the ONSS already, a moment after the taps")

    _heading(2, 'The ONSS goes down (the simulator answers "503 service unavailable")')
    down_ns = time.time_ns()
    await onss.go_down()
    taps = [await door.present(JAN, "Jan Peeters goes on a break")]
    await _until(lambda: _noticed(daemon), "the box to notice that the ONSS is down")
    print(
        "  -> the box tried to send Jan's tap: the ONSS did not take it. (The door could\n"
        "     not know yet.) The box keeps the tap and tries again every second or two."
    )
    taps.append(await door.present(MARIE, "Marie Dubois leaves"))
    taps.append(await door.present(JAN, "Jan is back from his break"))
    print("  -> the door tells them: saved on the box, to be sent when the ONSS is back")
    await asyncio.sleep(max(0.0, DOWN_AT_LEAST_SECONDS - (time.time_ns() - down_ns) / 1e9))
    await onss.come_back()
    back_ns = time.time_ns()
    ids = tuple(str(outcome.registration_id) for outcome in taps if outcome.registration_id)
    return OutageSeen(down_ns, back_ns, ids)


async def _delivered(daemon: Daemon, onss: Onss, outage: OutageSeen) -> list[DeliveryRecord]:
    seconds = (outage.back_ns - outage.down_ns) / 1e9
    _heading(3, f"The ONSS is back, after {seconds:.0f} seconds")
    await _until(lambda: _pending(daemon), "the kept taps to be delivered")
    assert daemon.journal is not None
    records = list(reversed(await asyncio.to_thread(daemon.journal.deliveries)))
    held = await onss.registrations()
    print("  -> the box delivered what it kept. What the ONSS now holds:\n")
    _print_table(records, held, outage, daemon.config.site.tz)
    _check_delivery(records, held, outage)
    return records


# --- The door and the simulator ---------------------------------------------------------


class Door:
    """The entrance reader: presents a card, prints what the worker sees on the display."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._last_tap: dict[str, float] = {}  # badge -> monotonic time of its last tap
        self._first = True  # no pause before the first tap

    @classmethod
    async def ready(cls, daemon: Daemon, runner: asyncio.Task[None]) -> Door:
        await _until(lambda: _accepting(daemon, runner), "the box to start")
        return cls(daemon)

    async def present(self, uid: str, who: str, *, again: bool = False) -> TapOutcome:
        """`again`: at once, a double tap; otherwise after a pause, and after the debounce
        for a badge tapped before (a new registration, not a repeat)."""
        if not again:
            await self._pause(uid)
        read = BadgeRead(
            uid=uid,
            reader=READER,
            technology="simulated",
            monotonic_ns=time.clock_gettime_ns(time.CLOCK_BOOTTIME),
        )
        outcome = await self._daemon.tap(read)
        self._last_tap[uid] = time.monotonic()
        shown = " | ".join(f'"{line}"' for line in display_lines(outcome))
        tapped = datetime.now(self._daemon.config.site.tz)  # a repeat shows the first's time
        print(f"  {tapped:%H:%M:%S}  {who}\n            door shows: {shown}")
        return outcome

    async def _pause(self, uid: str) -> None:
        if self._first:
            self._first = False
            return
        last = self._last_tap.get(uid)
        debounced = 0.0 if last is None else DEBOUNCE_SECONDS + 0.2 - (time.monotonic() - last)
        await asyncio.sleep(max(PAUSE_SECONDS, debounced))


class Onss:
    """The ONSS simulator, in its own process, and its /_sim/ endpoints."""

    def __init__(self, process: subprocess.Popen[bytes], info: dict[str, Any]) -> None:
        self.process = process
        self.info = info
        context = ssl.create_default_context(cafile=info["ca_file"])
        self._admin = httpx.Client(verify=context, timeout=10.0)

    @classmethod
    async def start(cls, directory: Path, log: Path) -> Onss:
        directory.mkdir()
        with log.open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "onss_sim", "--dir", str(directory)],
                stdout=output,
                stderr=output,
            )
        try:
            return cls(process, await _simulator_files(directory, process))
        except BaseException:
            process.terminate()
            process.wait(timeout=10)
            raise

    def __enter__(self) -> Onss:
        return self

    def __exit__(self, *exc: object) -> None:
        self._admin.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    async def go_down(self) -> None:
        """Every token and registerInBulk request answered 503 until come_back (at most
        a minute, should the demo be interrupted)."""
        await self.call("POST", "/faults", [{"kind": "outage", "seconds": 60}])

    async def come_back(self) -> None:
        await self.call("DELETE", "/faults")

    async def registrations(self) -> dict[str, dict[str, Any]]:
        """What the ONSS created, by id (as text, as the journal may store it)."""
        answer = await self.call("GET", "/registrations")
        return {str(reg["id"]): reg for reg in answer["registrations"]}

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.info['admin_url']}{path}"
        response = await asyncio.to_thread(self._admin.request, method, url, json=body)
        if not response.is_success:
            raise DemoError(f"the simulator answered {response.status_code} to {method} {path}")
        return response.json()


async def _simulator_files(directory: Path, simulator: subprocess.Popen[bytes]) -> dict[str, Any]:
    """What the simulator wrote for a gateway to trust and use it, once it listens."""
    description = directory / "simulator.json"
    for _ in range(200):
        if description.exists():
            data: dict[str, Any] = json.loads(description.read_text())
            return data
        if simulator.poll() is not None:
            break
        await asyncio.sleep(0.1)
    raise DemoError("the ONSS simulator did not start (see its log)")


# --- Waiting on the daemon --------------------------------------------------------------


async def _until(ready: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while loop.time() < deadline:
        if await ready():
            return
        await asyncio.sleep(0.1)
    raise DemoError(f"waited {WAIT_SECONDS:.0f} s for {what}")


async def _accepting(daemon: Daemon, runner: asyncio.Task[None]) -> bool:
    if runner.done():  # it could not start: its exception, or why not
        runner.result()
        raise DemoError("the box stopped before taking a tap")
    return daemon.accepting and daemon.connectivity is not None


async def _pending(daemon: Daemon) -> bool:
    """Nothing left to deliver, and the uplink says so."""
    connectivity, journal = daemon.connectivity, daemon.journal
    if connectivity is None or journal is None or connectivity.state is not UplinkState.ONLINE:
        return False
    return (await asyncio.to_thread(journal.stats)).pending == 0


async def _noticed(daemon: Daemon) -> bool:
    connectivity = daemon.connectivity
    return connectivity is not None and connectivity.state is UplinkState.OFFLINE


# --- What the ONSS holds ----------------------------------------------------------------


def _print_table(
    records: Sequence[DeliveryRecord],
    held: dict[str, dict[str, Any]],
    outage: OutageSeen,
    tz: ZoneInfo,
) -> None:
    print(
        "  worker         IN/OUT  tapped    reached the ONSS      the ONSS registered\n"
        "  -------------  ------  --------  --------------------  -------------------"
    )
    for record in records:
        registration = record.stored.registration
        tapped_ns = registration.clock.wall_ns
        onss = held.get(str(record.onss_id), {})
        received = _onss_time(onss.get("received_at"), tz)
        registered = _onss_time(onss.get("item", {}).get("registrationDate"), tz)
        late = ""
        if record.delivered_wall_ns is not None and str(registration.id) in outage.taps:
            late = f" ({(record.delivered_wall_ns - tapped_ns) / 1e9:.0f} s later)"
        print(
            f"  {registration.worker.name:<13}  {registration.direction.value:<6}"
            f"  {_local(tapped_ns, tz)}  {received + late:<20}  {registered}"
        )
    print(
        "\n  The ONSS registered each tap at the time it was made, even those it received"
        "\n  late: the time the worker tapped is what counts, not when the box sent it."
    )


def _onss_time(text: Any, tz: ZoneInfo) -> str:
    if not isinstance(text, str):
        return "-"
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return f"{moment.astimezone(tz):%H:%M:%S}"


def _check_delivery(
    records: Sequence[DeliveryRecord], held: dict[str, dict[str, Any]], outage: OutageSeen
) -> None:
    """Every registration at the ONSS once, with its tap's time; the outage's after it."""
    if len(held) != len(records):
        raise DemoError(f"{len(records)} registrations on the box, {len(held)} at the ONSS")
    if len(outage.taps) != 3:
        raise DemoError(f"{len(outage.taps)} registrations during the outage, 3 expected")
    for record in records:
        registration = record.stored.registration
        onss = held.get(str(record.onss_id))
        tapped = registration_date(registration.clock.wall_ns)
        if onss is None or onss["item"]["registrationDate"] != tapped:
            raise DemoError(f"registration {registration.id} is not at the ONSS as tapped")
        after = record.delivered_wall_ns is not None and record.delivered_wall_ns > outage.back_ns
        if str(registration.id) in outage.taps and not after:
            raise DemoError(f"registration {registration.id} was delivered during the outage")


# --- What the employer keeps ------------------------------------------------------------


def _show_evidence(journal: Path) -> None:
    _heading(4, "What the employer keeps: the evidence")
    conn = connect(journal, read_only=True)
    try:
        check = verify_journal(conn)
    finally:
        conn.close()
    print("  $ badge-gateway evidence verify")
    print("  " + describe(Path(journal.name), check).replace("\n", "\n  "))
    if not check.ok:
        raise DemoError("the evidence log does not verify")


def _write_report(
    config: GatewayConfig,
    first_day: date,
    out: Path,
    outage: OutageSeen,
    records: Sequence[DeliveryRecord],
) -> None:
    """`badge-gateway evidence export` for the demo's day(s), into out/evidence-DAY."""
    site, last_day = config.site, _today(config.site.tz)
    period = Period(_day_start_ns(first_day, site.tz), _day_start_ns(last_day, site.tz, 1))
    directory = out / f"evidence-{first_day.isoformat()}"
    conn = connect(config.storage.journal, read_only=True)
    try:
        chain = list(entries(conn))
        export_evidence(
            conn,
            directory,
            period,
            site={"name": site.name, "declaration": site.declaration},
            render=report_renderer(site, period),
        )
    finally:
        conn.close()
    check = verify_export(directory)
    if not check.ok:
        raise DemoError(f"the export does not verify: {'; '.join(check.problems)}")
    analysis = analyse(chain)
    _describe_report(directory, analysis, site.tz)
    _check_report(analysis, outage, len(records))


def _describe_report(directory: Path, analysis: Analysis, tz: ZoneInfo) -> None:
    print(f"\n  The employer's report for the day: {directory / 'report.html'}")
    print("  (open it in a browser; print it to PDF for a labour inspector). It shows:")
    print(
        f"    {analysis.captured} registrations captured,"
        f" {analysis.acknowledged} acknowledged by the ONSS"
    )
    for number, outage in enumerate(analysis.outages, start=1):
        print(f"    outage {number}: {_outage_line(outage, tz)}")
    print(f"  Beside it: entries.jsonl and manifest.json, checked again: {directory}")
    print("  (`badge-gateway evidence verify --export DIR` does the same on any machine)")


def _outage_line(outage: Outage, tz: ZoneInfo) -> str:
    cause = f" ({outage.cause})" if outage.cause else ""
    end = _local(outage.end_ns, tz) if outage.end_ns is not None else "still going on"
    waiting = f" + {outage.pending_at_start} already waiting" if outage.pending_at_start else ""
    acks = [r.acknowledgement.wall_ns for r in outage.held if r.acknowledgement is not None]
    acked = f", {len(acks)} acknowledged by {_local(max(acks), tz)}" if acks else ""
    return (
        f"the ONSS unreachable{cause}, {_local(outage.start_ns, tz)} to {end}\n"
        f"              {len(outage.held)} taps made meanwhile{waiting}{acked}"
    )


def _check_report(analysis: Analysis, outage: OutageSeen, registrations: int) -> None:
    uplink = [o for o in analysis.outages if o.kind is OutageKind.UPLINK]
    if len(analysis.outages) != 1 or len(uplink) != 1 or uplink[0].end_ns is None:
        kinds = ", ".join(o.kind for o in analysis.outages) or "none"
        raise DemoError(f"the report shows these outages: {kinds}; one of the ONSS expected")
    if analysis.acknowledged != registrations or analysis.captured != registrations:
        raise DemoError("the report does not show every registration acknowledged")
    missing = set(outage.taps) - {record.id for record in uplink[0].held}
    if len(missing) > 1:  # the first tap may be the one that found the ONSS down
        raise DemoError("the report's outage does not hold the taps made during it")


# --- Small helpers ----------------------------------------------------------------------


def _heading(number: int, text: str) -> None:
    print(f"\n{number}. {text}")


def _local(wall_ns: int, tz: ZoneInfo) -> str:
    return f"{datetime.fromtimestamp(wall_ns // 1_000_000_000, tz):%H:%M:%S}"


def _today(tz: ZoneInfo) -> date:
    return datetime.now(tz).date()


def _day_start_ns(day: date, tz: ZoneInfo, plus_days: int = 0) -> int:
    start = datetime.combine(day + timedelta(days=plus_days), datetime.min.time(), tzinfo=tz)
    return int(start.timestamp()) * 1_000_000_000
