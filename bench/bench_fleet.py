"""Fleet link benchmark (issue 15): taps with MQTT on and off, one broker under 1,000 boxes,
the evidence catch-up after a month offline.

Run from the repository root: `python -m bench.bench_fleet [--quick] [--skip-boxes]`.
It prints its figures and a table of targets; it is a measurement, not a test. Every broker
is a real Mosquitto (tests.fleet.broker: TLS, password file, the ACL of gateway.fleet.acl).

1. Taps: the real Daemon in this process, as bench_tap measures it (its reader, its
   feedback stamp, latency from the reader's hand-over to the feedback call), in three
   variants that alternate block by block, each on a journal of its own: MQTT off; MQTT on
   with the broker up (the box `box-a1` of a MosquittoBroker, publishing every tap's
   evidence); MQTT on with the broker down (the same configuration pointed at a port where
   nothing listens: the link is backing off). Each block starts the variant's daemon, waits
   for its link to be online (or waiting), taps a few unmeasured warm-up cards, then the
   measured ones. Target: p50 and p99 of each "on" variant at most 1.05x the "off" blocks.
2. Boxes: one Mosquitto with a user per box (1,000 by default) and the generated ACL. Each
   simulated box is a real paho client over TLS with its own user, its last will, `online`
   retained, its retained status every `--status-interval` seconds (random phase) and
   evidence entries at `--taps-per-day` x `--entries-per-tap` a day (Poisson). The boxes
   are driven by `--box-processes` processes, each serving its clients from one thread
   with a selector (loop_read on readable sockets, loop_misc once a second): the drivers
   stand in for boxes elsewhere, so they stay light and run `--driver-nice` nicer. A
   `fleet` subscriber (this process) takes every status and evidence message, as the
   fleet's status tool and the archive do; the status latency is its receive time minus
   the publish time the status carries (`bench_sent_ns`, the same machine's clock).
   Measured: the broker's CPU (utime+stime of /proc/PID/stat, % of one core) first with
   every box connected and silent (keepalives only: the baseline), then over the window;
   its VmRSS and VmHWM. A status interval under 60 s compresses time: the evidence rate is
   compressed by the same factor, and the CPU is also given scaled back to the real rate
   ((window - idle) / factor + idle: an estimate, said so in the table).
3. Catch-up: a journal holding `--catchup-registrations` pending registrations (30 days of
   2,000 taps, made by bench_drain.make_backlog: one evidence entry each), a FleetLink
   (gateway.fleet.link, with small real hooks: a status snapshot dict holding the fields
   telemetry.status_document reads) started on it against the broker, and run_archive in
   a thread writing the archive (every entry fdatasync'ed before its PUBACK). Entries per
   second from the link's start until the archive holds the last one; the archive then
   verified offline (verify_archive) and the journal's fleet watermark compared with the
   last seq. Baseline: raw append + fsync of a 200-byte record in the archive's directory
   (the archive's floor: one sync per entry).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import heapq
import json
import math
import multiprocessing
import os
import queue
import random
import selectors
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from bench.bench_drain import backlog_worker, cpu_seconds, make_backlog, site_rules
from bench.bench_tap import (
    BenchReader,
    FsyncBaseline,
    StampingFeedback,
    TapRun,
    add_directory_arguments,
    in_fresh_directory,
    load_average,
    machine,
    percentile,
    print_table,
    tap_block,
    us,
    verdict,
    vm_kib,
)
from gateway import __version__
from gateway.clock import boot_id, boottime_ns
from gateway.config import MqttConfig
from gateway.daemon import Daemon
from gateway.errors import SignedDocumentError
from gateway.evidence import GENESIS, Kind, make_entry
from gateway.fleet.archive import EVIDENCE_FILE
from gateway.fleet.archive_check import verify_archive
from gateway.fleet.archive_session import run_archive
from gateway.fleet.connection import BrokerAccess, new_client, parse_broker, session_properties
from gateway.fleet.link import FleetHooks, FleetLink, LinkState
from gateway.fleet.stream import WATERMARK
from gateway.fleet.telemetry import status_document
from gateway.fleet.topics import OFFLINE, ONLINE, BoxTopics, all_boxes
from gateway.identifiers import mask_niss
from gateway.journal import Journal
from gateway.models import ClockSample
from gateway.system import logs
from tests.fleet.broker import MOSQUITTO_PASSWD, MosquittoBroker, free_port
from tests.support import badges, make_config, with_daemon

Row = tuple[str, str, str, str]

PREFIX = "badge-gateway"
SITE, BOX = "site-a", "box-a1"
TAP_RATIO_TARGET = 1.05
BROKER_CPU_TARGET = 0.50  # of one core, at the real rate (the bench's own target)
STATUS_P99_TARGET_S = 1.0  # the bench's own target: a fleet view is fresh within a second
CATCHUP_TARGET_S = 3600.0  # a month's evidence off the box within an hour (the bench's own)
REAL_STATUS_INTERVAL_S = 60.0
SECONDS_PER_DAY = 86_400
LINK_READY_S = 15.0
CONNECT_BUDGET_S = 180.0
DRIVER_END_S = 30.0
MISC_EVERY_S = 1.0
SELECT_MAX_S = 0.05
POLL_S = 0.25


# --- a broker that takes a thousand users -----------------------------------------------------


class BenchBroker(MosquittoBroker):
    """MosquittoBroker, its password file hashed by one `mosquitto_passwd -U` run over a
    plain user:password file (the test class runs mosquitto_passwd once per user: 1,000
    process starts), and its pid for /proc."""

    def _write_password_file(self, users: Sequence[str]) -> None:
        path = self.directory / "passwd"
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as plain:
            plain.writelines(f"{user}:{self.passwords[user]}\n" for user in users)
        subprocess.run([MOSQUITTO_PASSWD, "-U", str(path)], check=True, timeout=120)

    @property
    def pid(self) -> int:
        assert self._process is not None and self._process.poll() is None, "not running"
        return self._process.pid


def bench_broker(directory: Path, boxes: Sequence[tuple[str, str]]) -> BenchBroker:
    return BenchBroker(directory, boxes, prefix=PREFIX, verbose=False)


# --- what a box says about itself (small, real hooks) -----------------------------------------


def snapshot(queue_depth: int = 0, head_seq: int = 0, head_hash: str = GENESIS) -> dict[str, Any]:
    """The fields telemetry.status_document reads from control.status.collect, no more."""
    return {
        "journal": {
            "queue_depth": queue_depth,
            "oldest_pending": None,
            "rejected": 0,
            "unconfirmed": 0,
            "storage_error": None,
        },
        "uplink": {"enabled": True, "state": "online", "cause": None, "next_retry": None},
        "badges": {"sha256": "0" * 64, "workers": 50, "last_error": None},
        "readers": [{"name": "door", "state": "connected", "error": None, "down_since": None}],
        "clock": {"synced": True},
        "evidence_head": {"seq": head_seq, "hash": head_hash},
    }


def identity(site: str, box: str) -> dict[str, Any]:
    return {
        "site": site,
        "box": box,
        "version": __version__,
        "config_sha256": "0" * 64,
        "status_interval_seconds": REAL_STATUS_INTERVAL_S,
        "badges_version": None,
    }


def refuse_register(register: object) -> None:
    raise SignedDocumentError("the benchmark takes no register")


def bench_hooks(journal: Journal, site: str, box: str) -> FleetHooks:
    def current() -> dict[str, Any]:
        head = journal.evidence_head
        return snapshot(journal.stats().pending, head.seq, head.hash)

    return FleetHooks(
        snapshot=current,
        identity=lambda: identity(site, box),
        apply_register=refuse_register,
        reload_badges=lambda: None,
    )


def password_file(broker: MosquittoBroker, user: str, path: Path) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(broker.passwords[user] + "\n")
    return path


def mqtt_section(broker: MosquittoBroker, state: Path, url: str) -> dict[str, Any]:
    return {
        "enabled": True,
        "brokers": [url],
        "site_id": SITE,
        "box_id": BOX,
        "password": str(password_file(broker, BOX, state / "mqtt-password")),
        "ca_file": str(broker.ca_file),
    }


# --- 1. taps with the fleet link off, on, and on with the broker down -------------------------


class Variant(enum.Enum):
    OFF = "MQTT off"
    UP = "MQTT on, broker up"
    DOWN = "MQTT on, broker down"


@dataclass(frozen=True, slots=True)
class TapPlan:
    taps: int  # per variant
    blocks: int
    warmup: int  # per block and variant
    workers: int
    rate: float  # taps a second; 0: back to back


@dataclass(slots=True)
class VariantTaps:
    config_dir: Path  # its journal, badge file and socket: kept from one block to the next
    mqtt: dict[str, Any] | None = None  # its [mqtt] section
    run: TapRun = field(default_factory=TapRun)
    next_index: int = 0
    starts: int = 0
    link_states: Counter[str] = field(default_factory=Counter)  # when its taps began


def run_taps(root: Path, plan: TapPlan) -> dict[Variant, VariantTaps]:
    runs = {variant: VariantTaps(root / variant.name.lower()) for variant in Variant}
    with bench_broker(root / "broker", [(SITE, BOX)]) as broker:
        down_url = f"mqtts://127.0.0.1:{free_port()}"  # nothing listens there
        urls = {Variant.UP: broker.url, Variant.DOWN: down_url}
        for variant, taps in runs.items():
            taps.config_dir.mkdir()
            if variant in urls:
                taps.mqtt = mqtt_section(broker, taps.config_dir, urls[variant])
        for block in range(plan.blocks):
            order = list(Variant)[block % 3 :] + list(Variant)[: block % 3]  # rotate the order
            for variant in order:
                count = plan.taps // plan.blocks + (block < plan.taps % plan.blocks)
                tap_variant_block(variant, runs[variant], plan, count)
            print(f"  block {block + 1}/{plan.blocks} done", flush=True)
    return runs


def tap_variant_block(variant: Variant, taps: VariantTaps, plan: TapPlan, count: int) -> None:
    """One daemon start of `variant`: warm-up taps, then `count` measured ones."""
    sections: dict[str, dict[str, Any]] = {"attendance": {"debounce_seconds": 0}}
    if taps.mqtt is not None:
        sections["mqtt"] = taps.mqtt
    config = make_config(taps.config_dir, badges(plan.workers), **sections)
    config.badges.file.chmod(0o600)
    feedback = StampingFeedback()
    uids = [badge.uid for badge in badges(plan.workers)]

    async def body(daemon: Daemon) -> None:
        await asyncio.to_thread(wait_for_link, daemon, variant)
        taps.link_states[daemon.fleet.state.value if daemon.fleet else "off"] += 1
        reader = daemon.readers[0]
        assert isinstance(reader, BenchReader)
        run = taps.run
        kept_latencies, kept_outcomes = len(run.latencies), Counter(run.outcomes)
        first = taps.next_index
        await asyncio.to_thread(
            tap_block, reader, feedback, uids, range(first, first + plan.warmup), run
        )
        del run.latencies[kept_latencies:]
        run.outcomes = kept_outcomes
        first += plan.warmup
        measured = range(first, first + count)
        await asyncio.to_thread(tap_block, reader, feedback, uids, measured, run, plan.rate)
        taps.next_index = first + count
        run.feedback_calls += feedback.calls - plan.warmup

    asyncio.run(with_daemon(config, body, outputs=[feedback], readers=[BenchReader()]))
    taps.starts += 1


def wait_for_link(daemon: Daemon, variant: Variant) -> None:
    """Until the link is online with nothing in flight (broker up) or backing off (down)."""
    if variant is Variant.OFF:
        return
    assert daemon.fleet is not None, f"{variant.value}: no fleet link ({daemon.fleet_error})"
    wanted = LinkState.ONLINE if variant is Variant.UP else LinkState.WAITING
    deadline = time.monotonic() + LINK_READY_S
    while time.monotonic() < deadline:
        link = daemon.fleet
        if link.state is wanted and (
            wanted is LinkState.WAITING or not link.as_json()["evidence_in_flight"]
        ):
            return
        time.sleep(0.05)
    print(f"  {variant.value}: link still {daemon.fleet.state.value} after {LINK_READY_S:g} s")


def tap_rows(runs: dict[Variant, VariantTaps]) -> list[Row]:
    off = runs[Variant.OFF].run.latencies
    rows: list[Row] = []
    for variant, taps in runs.items():
        lat = taps.run.latencies
        rows.append(
            (
                f"tap->feedback, {variant.value} ({len(lat):,}) p50 / p99 / max",
                f"{us(percentile(lat, 0.5))} / {us(percentile(lat, 0.99))} / {us(max(lat))}",
                "(baseline)" if variant is Variant.OFF else "",
                "",
            )
        )
    for variant in (Variant.UP, Variant.DOWN):
        lat = runs[variant].run.latencies
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            ratio = percentile(lat, q) / percentile(off, q)
            rows.append(
                (
                    f"{variant.value}: {name} / off {name}",
                    f"{ratio:.3f}x",
                    f"<= {TAP_RATIO_TARGET}x",
                    verdict(ratio <= TAP_RATIO_TARGET),
                )
            )
    return rows


# --- 2. a thousand boxes on one broker --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """What one driver process needs (picklable: it crosses to a spawned process)."""

    index: int
    port: int
    ca_file: str
    boxes: tuple[tuple[str, str, str], ...]  # (site, box, password)
    status_interval: float
    evidence_per_s: float  # per box, time compression included
    keepalive: int
    nice: int


class SimBox:
    """One simulated box: a paho client (TLS, its own user, its will), its own chain."""

    def __init__(self, spec: DriverSpec, site: str, box: str, password: str) -> None:
        self.topics = BoxTopics(PREFIX, site, box)
        access = BrokerAccess(
            brokers=(parse_broker(f"mqtts://127.0.0.1:{spec.port}"),),
            ca_file=Path(spec.ca_file),
            username=box,
            password=password,
        )
        self.client = new_client(box, access, will=(self.topics.availability, OFFLINE))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.status_interval, self.evidence_per_s = spec.status_interval, spec.evidence_per_s
        self.connack: str | None = None  # "ok" or why not
        self.disconnects = 0
        self.seq = 0
        self.prev_hash = GENESIS
        self.niss_masked = mask_niss(backlog_worker(random.randrange(1000)).niss)

    def _on_connect(self, client: mqtt.Client, u: Any, f: Any, reason: ReasonCode, p: Any) -> None:
        self.connack = "ok" if not reason.is_failure else str(reason)

    def _on_disconnect(self, client: mqtt.Client, u: Any, f: Any, r: ReasonCode, p: Any) -> None:
        self.disconnects += 1

    def connect(self, port: int, keepalive: int) -> None:
        self.client.connect(
            "127.0.0.1",
            port,
            keepalive=keepalive,
            clean_start=False,
            properties=session_properties(7 * SECONDS_PER_DAY),
        )

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Sent (or queued on a live connection): paho writes it at once, no loop thread."""
        sent = self.client.publish(topic, payload, qos=1, retain=retain).rc
        if self.client.want_write():
            self.client.loop_write()
        return sent == mqtt.MQTT_ERR_SUCCESS

    def status(self) -> bytes:
        document = status_document(
            snapshot(0, self.seq, self.prev_hash),
            identity(self.topics.site, self.topics.box),
            {"published_seq": self.seq, "telemetry_dropped": 0, "register_error": None},
        )
        document["bench_sent_ns"] = time.time_ns()
        return json.dumps(document, separators=(",", ":")).encode()

    def evidence(self) -> bytes:
        """A registration-shaped entry (the most frequent kind), chained to the last."""
        self.seq += 1
        clock = ClockSample(time.time_ns(), boottime_ns(), boot_id(), True)
        details = {
            "id": str(uuid.uuid4()),
            "type": "IN",
            "registration_wall_ns": clock.wall_ns,
            "reader": "door",
            "badge_uid": f"04{self.seq:06X}",
            "worker": f"Worker {self.seq % 50}",
            "niss": self.niss_masked,
        }
        entry = make_entry(self.seq, clock, Kind.REGISTRATION, details, self.prev_hash)
        self.prev_hash = entry.hash
        return json.dumps(entry.as_json(), separators=(",", ":")).encode()

    def read(self) -> None:
        """What the broker sent; TLS may hold more than one packet after one select."""
        for _ in range(100):
            if self.client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                return
            sock = self.client.socket()
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return


def drive_boxes(spec: DriverSpec, results: Any, go: EventType, stop: EventType) -> None:
    """A driver process: connect its boxes, say so, wait for `go`, publish until `stop`."""
    os.nice(spec.nice)
    boxes = [SimBox(spec, site, box, password) for site, box, password in spec.boxes]
    selector = selectors.DefaultSelector()
    failures = _connect_all(spec, boxes, selector)
    results.put(("ready", spec.index, len(boxes) - len(failures), failures[:3]))
    counts: Counter[str] = Counter()
    _serve(boxes, selector, go, None, counts)
    cpu = time.process_time()
    _serve(boxes, selector, stop, _schedule(spec, boxes), counts)
    counts["cpu_ms"] = round((time.process_time() - cpu) * 1000)
    counts["disconnects"] = sum(box.disconnects for box in boxes)
    for box in boxes:
        with contextlib.suppress(Exception):
            box.client.disconnect()
    results.put(("done", spec.index, dict(counts), []))


def _connect_all(
    spec: DriverSpec, boxes: Sequence[SimBox], selector: selectors.BaseSelector
) -> list[str]:
    failures: list[str] = []
    tried: list[SimBox] = []
    for box in boxes:
        try:
            box.connect(spec.port, spec.keepalive)
        except (OSError, ssl.SSLError) as error:
            failures.append(f"{box.topics.box}: {error}")
            continue
        sock = box.client.socket()
        assert sock is not None, "connected without a socket"
        selector.register(sock, selectors.EVENT_READ, box)
        tried.append(box)
    deadline = time.monotonic() + CONNECT_BUDGET_S
    while any(box.connack is None for box in tried) and time.monotonic() < deadline:
        _read_ready(selector, SELECT_MAX_S)
    for box in tried:
        if box.connack == "ok":
            box.publish(box.topics.availability, ONLINE, retain=True)
        else:
            failures.append(f"{box.topics.box}: {box.connack or 'no CONNACK'}")
    return failures


def _read_ready(selector: selectors.BaseSelector, timeout: float) -> None:
    for key, _ in selector.select(timeout):
        box: SimBox = key.data
        box.read()


Due = list[tuple[float, int, str]]  # (when, box index, "status" | "evidence"): a heap


def _schedule(spec: DriverSpec, boxes: Sequence[SimBox]) -> Due:
    now = time.monotonic()
    due: Due = []
    for index in range(len(boxes)):
        due.append((now + random.uniform(0, spec.status_interval), index, "status"))  # phase
        due.append((_next_time(boxes[index], "evidence", now), index, "evidence"))
    heapq.heapify(due)
    return due


def _serve(
    boxes: Sequence[SimBox],
    selector: selectors.BaseSelector,
    until: EventType,
    due: Due | None,
    counts: Counter[str],
) -> None:
    """Read what comes in, keep the sessions alive, publish what is due, until `until`."""
    misc_at = 0.0
    while not until.is_set():
        now = time.monotonic()
        while due and due[0][0] <= now:
            when, index, what = heapq.heappop(due)
            _publish_due(boxes[index], what, counts)
            heapq.heappush(due, (_next_time(boxes[index], what, when), index, what))
        if now >= misc_at:
            misc_at = now + MISC_EVERY_S
            for box in boxes:
                box.client.loop_misc()
                if box.client.want_write():
                    box.client.loop_write()
        wait = min(SELECT_MAX_S, max(0.0, (due[0][0] - now) if due else SELECT_MAX_S))
        _read_ready(selector, wait)


def _publish_due(box: SimBox, what: str, counts: Counter[str]) -> None:
    if box.connack != "ok":
        return
    if what == "status":
        sent = box.publish(box.topics.status, box.status(), retain=True)
    else:
        sent = box.publish(box.topics.evidence, box.evidence())
    counts[what if sent else f"{what} not sent"] += 1


def _next_time(box: SimBox, what: str, after: float) -> float:
    """Statuses at a fixed interval; evidence entries as taps come: a Poisson process."""
    if what == "status":
        return after + box.status_interval
    if box.evidence_per_s <= 0:
        return math.inf
    return after + random.expovariate(box.evidence_per_s)


@dataclass(frozen=True, slots=True)
class BoxPlan:
    boxes: int
    processes: int
    status_interval: float
    taps_per_day: float
    entries_per_tap: float
    window: float
    idle: float
    keepalive: int
    nice: int

    @property
    def compression(self) -> float:
        """How much faster than real time the boxes speak."""
        return REAL_STATUS_INTERVAL_S / self.status_interval

    @property
    def evidence_per_s(self) -> float:
        """Per box, compression included."""
        return self.taps_per_day * self.entries_per_tap / SECONDS_PER_DAY * self.compression


@dataclass(slots=True)
class BoxesRun:
    connected: int = 0
    failures: list[str] = field(default_factory=list)
    setup_s: float = 0.0  # users, ACL, broker start
    connect_s: float = 0.0
    idle_s: float = 0.0
    idle_cpu_s: float = 0.0
    window_s: float = 0.0
    window_cpu_s: float = 0.0
    rss_kib: int = 0
    hwm_kib: int = 0
    published: Counter[str] = field(default_factory=Counter)
    latencies: list[int] = field(default_factory=list)
    received: Counter[str] = field(default_factory=Counter)


class FleetWatcher:
    """The `fleet` user's subscriber: every status (its latency) and evidence message."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.window = (0, 0)  # wall ns: the statuses published inside it are measured
        self.latencies: list[int] = []
        self.received: Counter[str] = Counter()
        self._granted = threading.Semaphore(0)
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe

    def subscribe(self, leaves: Sequence[str]) -> None:
        for leaf in leaves:
            self.client.subscribe(all_boxes(PREFIX, leaf), qos=1)
            if not self._granted.acquire(timeout=10):
                raise RuntimeError(f"{all_boxes(PREFIX, leaf)}: no SUBACK within 10 s")

    def _on_subscribe(self, client: mqtt.Client, userdata: object, *rest: object) -> None:
        self._granted.release()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.time_ns()
        leaf = message.topic.rsplit("/", 1)[-1]
        self.received[leaf] += 1
        if leaf != "status":
            return
        try:
            sent = json.loads(message.payload).get("bench_sent_ns")
        except (ValueError, AttributeError):
            self.received["unreadable status"] += 1
            return
        if isinstance(sent, int) and self.window[0] <= sent <= self.window[1]:
            self.latencies.append(now - sent)


def fleet_boxes(count: int, per_site: int = 20) -> list[tuple[str, str]]:
    return [(f"site-{index // per_site:03d}", f"box-{index:04d}") for index in range(count)]


def driver_specs(broker: BenchBroker, plan: BoxPlan) -> list[DriverSpec]:
    boxes = [(site, box, broker.passwords[box]) for site, box in broker.boxes]
    return [
        DriverSpec(
            index=index,
            port=broker.port,
            ca_file=str(broker.ca_file),
            boxes=tuple(boxes[index :: plan.processes]),
            status_interval=plan.status_interval,
            evidence_per_s=plan.evidence_per_s,
            keepalive=plan.keepalive,
            nice=plan.nice,
        )
        for index in range(plan.processes)
    ]


def run_boxes(root: Path, plan: BoxPlan) -> BoxesRun:
    result = BoxesRun()
    started = time.perf_counter()
    broker = bench_broker(root / "boxes-broker", fleet_boxes(plan.boxes))
    with broker:
        result.setup_s = time.perf_counter() - started
        print(f"  broker pid {broker.pid} up with {plan.boxes:,} users in {result.setup_s:.1f} s")
        with mqtt_session("bench-fleet", broker.access("fleet")) as client:
            watcher = FleetWatcher(client)
            watcher.subscribe(["status", "evidence"])
            with drivers(driver_specs(broker, plan)) as (results, go, stop):
                measure_boxes(broker, plan, watcher, (results, go, stop), result)
            time.sleep(2.0)  # the last statuses of the window, still on their way
            result.latencies, result.received = list(watcher.latencies), Counter(watcher.received)
    return result


Drivers = tuple[Any, EventType, EventType]  # results queue, go, stop


@contextlib.contextmanager
def drivers(specs: Sequence[DriverSpec]) -> Iterator[Drivers]:
    """The driver processes, stopped (then terminated, if they must be) at the end."""
    context = multiprocessing.get_context("spawn")
    results, go, stop = context.Queue(), context.Event(), context.Event()
    processes = [
        context.Process(target=drive_boxes, args=(spec, results, go, stop), name=f"boxes-{i}")
        for i, spec in enumerate(specs)
    ]
    for process in processes:
        process.start()
    try:
        yield results, go, stop
    finally:
        stop.set()
        go.set()
        deadline = time.monotonic() + DRIVER_END_S
        for process in processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(5)


def measure_boxes(
    broker: BenchBroker, plan: BoxPlan, watcher: FleetWatcher, ends: Drivers, result: BoxesRun
) -> None:
    results, go, stop = ends
    started = time.perf_counter()
    for _, _, connected, failures in collect(results, "ready", plan.processes, CONNECT_BUDGET_S):
        result.connected += connected
        result.failures += failures
    result.connect_s = time.perf_counter() - started
    print(f"  {result.connected:,} boxes connected in {result.connect_s:.1f} s", flush=True)
    print(f"  idle (keepalives only) for {plan.idle:g} s", flush=True)
    result.idle_s, result.idle_cpu_s = cpu_over(broker.pid, plan.idle)
    print(f"  publishing for {plan.window:g} s", flush=True)
    watcher.window = (time.time_ns(), time.time_ns() + int(plan.window * 1e9))
    go.set()
    result.window_s, result.window_cpu_s = cpu_over(broker.pid, plan.window)
    result.rss_kib, result.hwm_kib = vm_kib(broker.pid, "VmRSS"), vm_kib(broker.pid, "VmHWM")
    stop.set()
    for _, _, counts, _ in collect(results, "done", plan.processes, DRIVER_END_S):
        result.published.update(counts)


def cpu_over(pid: int, seconds: float) -> tuple[float, float]:
    """(wall seconds, CPU seconds of `pid`) over a sleep of `seconds`."""
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return time.perf_counter() - wall, cpu_seconds(pid) - cpu


def collect(results: Any, kind: str, count: int, budget: float) -> list[tuple[Any, ...]]:
    """`count` messages of `kind` from the drivers, within `budget` seconds."""
    found: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + budget
    while len(found) < count and (left := deadline - time.monotonic()) > 0:
        try:
            message = results.get(timeout=left)
        except queue.Empty:
            break
        if message[0] == kind:
            found.append(message)
    if len(found) < count:
        print(f"  only {len(found)} of {count} driver processes reported {kind!r} in time")
    return found


@contextlib.contextmanager
def mqtt_session(client_id: str, access: BrokerAccess) -> Iterator[mqtt.Client]:
    """A connected client, its network loop on a thread of paho's."""
    client = new_client(client_id, access)
    connack = threading.Event()
    client.on_connect = lambda *args: connack.set()
    broker = access.brokers[0]
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        if not connack.wait(10):
            raise RuntimeError(f"{broker}: no CONNACK within 10 s")
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def percent(cpu_s: float, wall_s: float) -> str:
    return f"{100 * cpu_s / wall_s:.1f} %" if wall_s else "?"


def box_rows(run: BoxesRun, plan: BoxPlan) -> list[Row]:
    idle = run.idle_cpu_s / run.idle_s if run.idle_s else 0.0
    busy = run.window_cpu_s / run.window_s if run.window_s else 0.0
    real = (busy - idle) / plan.compression + idle
    published = run.published["status"] + run.published["evidence"]
    rate = published / run.window_s if run.window_s else 0.0
    drivers_cpu = run.published["cpu_ms"] / 1000
    not_sent = run.published["status not sent"] + run.published["evidence not sent"]
    lat = run.latencies or [0]
    p99 = percentile(lat, 0.99) / 1e9
    scaled = f"x{plan.compression:g} time: {real * 100:.1f} % (estimate)"
    rows: list[Row] = [
        (
            f"boxes connected (TLS, own user) of {plan.boxes:,}, drivers' start included",
            f"{run.connected:,} in {run.connect_s:.1f} s",
            "all",
            verdict(run.connected == plan.boxes),
        ),
        (
            "messages published per second (window)",
            f"{rate:,.0f} ({run.published['status']:,} status,"
            f" {run.published['evidence']:,} evidence)",
            "",
            "",
        ),
        (
            "fleet subscriber received",
            f"{run.received['status']:,} status, {run.received['evidence']:,} evidence",
            "",
            "",
        ),
        ("broker CPU, connected and silent", percent(run.idle_cpu_s, run.idle_s), "(baseline)", ""),
        ("broker CPU, publishing", percent(run.window_cpu_s, run.window_s), "", ""),
        (
            "broker CPU at the real rate",
            f"{real * 100:.1f} %" if plan.compression == 1 else scaled,
            f"<= {BROKER_CPU_TARGET * 100:.0f} % of a core",
            verdict(real <= BROKER_CPU_TARGET),
        ),
        (
            "publishing / silent CPU",
            f"{busy / idle:.1f}x" if idle else "n/a (silent: under a clock tick)",
            "",
            "",
        ),
        (
            f"box drivers' CPU ({plan.processes} processes, nice {plan.nice})",
            percent(drivers_cpu, run.window_s),
            "",
            "",
        ),
        (
            "broker VmRSS / VmHWM",
            f"{run.rss_kib / 1024:.1f} / {run.hwm_kib / 1024:.1f} MiB",
            "",
            "",
        ),
        (
            f"status latency p50 / p99 / max ({len(run.latencies):,})",
            f"{percentile(lat, 0.5) / 1e6:,.1f} / {p99 * 1000:,.1f} / {max(lat) / 1e6:,.1f} ms",
            f"p99 <= {STATUS_P99_TARGET_S:g} s",
            verdict(bool(run.latencies) and p99 <= STATUS_P99_TARGET_S),
        ),
        (
            "boxes disconnected / messages not sent",
            f"{run.published['disconnects']} / {not_sent}",
            "0 / 0",
            verdict(run.published["disconnects"] == 0 and not_sent == 0),
        ),
    ]
    return rows


# --- 3. the evidence of a month offline, to the archive ---------------------------------------


@dataclass(slots=True)
class CatchupRun:
    registrations: int
    fill_s: float = 0.0
    last_seq: int = 0
    archived_seq: int = 0
    seconds: float = 0.0
    reached: bool = False
    broker_cpu_s: float = 0.0
    watermark: int | None = None
    verified: bool = False
    check_text: str = ""
    fsync: list[int] = field(default_factory=list)


def run_catchup(root: Path, registrations: int, fsyncs: int, budget: float) -> CatchupRun:
    result = CatchupRun(registrations)
    (root / "catchup-site").mkdir()
    config = make_config(root / "catchup-site", badges(1))
    journal_path = root / "catchup" / "journal.db"
    print(f"  filling a journal with {registrations:,} pending registrations", flush=True)
    result.fill_s = make_backlog(journal_path, registrations, site_rules(config))
    archive = root / "archive"
    archive.mkdir(mode=0o700)
    result.fsync = fsync_baseline(archive, fsyncs)
    with bench_broker(root / "catchup-broker", [(SITE, BOX)]) as broker:
        prime_archive(broker, archive)
        journal = Journal(journal_path)
        try:
            stream_backlog(broker, journal, archive, budget, result)
            result.watermark = int(journal.fleet_value(WATERMARK) or 0)
        finally:
            journal.close()
    check = verify_archive(archive / SITE / BOX)
    result.verified = check.ok and check.entries == result.last_seq
    result.check_text = f"{check.entries:,} entries, ok={check.ok}" + "".join(
        f"; {problem}" for problem in (*check.breaks, *check.gaps, *check.conflicts)[:3]
    )
    return result


def fsync_baseline(directory: Path, count: int) -> list[int]:
    baseline = FsyncBaseline(directory / "fsync-baseline.bin")
    try:
        baseline.run(20, keep=False)
        baseline.run(count)
    finally:
        baseline.close()
        baseline.path.unlink()
    return baseline.samples


def prime_archive(broker: MosquittoBroker, archive: Path) -> None:
    """The archive's persistent session, subscribed, before the box speaks (as deployed:
    the archive runs first; the broker keeps its messages while it reconnects)."""
    run_archive(broker.access("fleet"), PREFIX, archive, "bench-archive", threading.Event(), 2.0)


def stream_backlog(
    broker: BenchBroker, journal: Journal, archive: Path, budget: float, result: CatchupRun
) -> None:
    result.last_seq = journal.evidence_head.seq
    config = MqttConfig.model_validate(
        {
            "enabled": True,
            "brokers": [broker.url],
            "site_id": SITE,
            "box_id": BOX,
            "password": None,
            "ca_file": str(broker.ca_file),
        }
    )
    link = FleetLink(config, broker.access(BOX), journal, bench_hooks(journal, SITE, BOX))
    stop = threading.Event()
    archiver = threading.Thread(
        target=run_archive,
        args=(broker.access("fleet"), PREFIX, archive, "bench-archive", stop),
        name="archive",
    )
    print(f"  streaming {result.last_seq:,} entries to the archive", flush=True)
    cpu, started = cpu_seconds(broker.pid), time.perf_counter()
    archiver.start()
    link.start()
    try:
        path = archive / SITE / BOX / EVIDENCE_FILE
        result.reached = wait_for_seq(path, result.last_seq, budget, result)
        result.seconds = time.perf_counter() - started
        result.broker_cpu_s = cpu_seconds(broker.pid) - cpu
    finally:
        link.close()
        stop.set()
        archiver.join(15)


def wait_for_seq(path: Path, seq: int, budget: float, result: CatchupRun) -> bool:
    deadline = time.monotonic() + budget
    next_report = time.monotonic() + 10
    while time.monotonic() < deadline:
        result.archived_seq = last_archived_seq(path)
        if result.archived_seq >= seq:
            return True
        if time.monotonic() >= next_report:
            next_report += 10
            print(f"    archive at {result.archived_seq:,} of {seq:,}", flush=True)
        time.sleep(POLL_S)
    return False


def last_archived_seq(path: Path) -> int:
    """The seq of the archive file's last complete line (0 if none yet)."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - 8192))
            tail = file.read()
    except FileNotFoundError:
        return 0
    lines = tail[: tail.rfind(b"\n") + 1].splitlines()
    return int(json.loads(lines[-1])["seq"]) if lines else 0


def catchup_rows(run: CatchupRun) -> list[Row]:
    rate = run.archived_seq / run.seconds if run.seconds else 0.0
    fsync_rate = 1e9 / percentile(run.fsync, 0.5) if run.fsync else 0.0
    month = run.registrations / rate if rate else float("inf")
    return [
        (
            f"journal filled ({run.registrations:,} registrations)",
            f"{run.last_seq:,} entries in {run.fill_s:.1f} s",
            "",
            "",
        ),
        (
            f"raw write+fsync p50, archive dir ({len(run.fsync):,})",
            f"{us(percentile(run.fsync, 0.5))} ({fsync_rate:,.0f}/s)" if run.fsync else "?",
            "(baseline)",
            "",
        ),
        (
            "catch-up: entries per second to the archive",
            f"{rate:,.0f}/s ({run.archived_seq:,} in {run.seconds:.1f} s)",
            "",
            "",
        ),
        (
            "catch-up rate / raw fsync rate",
            f"{rate / fsync_rate:.2f}x" if fsync_rate else "?",
            "",
            "",
        ),
        ("broker CPU during the catch-up", percent(run.broker_cpu_s, run.seconds), "", ""),
        (
            f"time for {run.registrations:,} entries (at this rate)",
            f"{month:,.0f} s",
            f"<= {CATCHUP_TARGET_S:,.0f} s",
            verdict(run.reached and month <= CATCHUP_TARGET_S),
        ),
        ("archive verified (verify_archive)", run.check_text, "every entry", verdict(run.verified)),
        (
            "journal fleet watermark at the end",
            f"{run.watermark} (last seq {run.last_seq:,})",
            "= last seq",
            verdict(run.watermark == run.last_seq),
        ),
    ]


# --- the report and main -----------------------------------------------------------------------


def print_report(
    info: dict[str, str],
    taps: dict[Variant, VariantTaps] | None,
    boxes: tuple[BoxesRun, BoxPlan] | None,
    catchup: CatchupRun | None,
    quick: bool,
) -> None:
    print("\n== machine")
    for key, value in info.items():
        print(f"{key:>13}: {value}")
    print(f"{'load at end':>13}: {load_average()}")
    if quick:
        print("\nQUICK RUN: smoke figures only, not a measurement")
    rows: list[Row] = [("figure", "measured", "target", "verdict")]
    if taps is not None:
        for variant, each in taps.items():
            print(
                f"== taps, {variant.value}: {dict(each.run.outcomes)}; {each.starts} daemon"
                f" starts; link when the taps began: {dict(each.link_states)};"
                f" toggle errors {each.run.toggle_errors}"
            )
        rows += tap_rows(taps)
    if boxes is not None:
        run, plan = boxes
        print(
            f"== boxes: {plan.boxes:,} in {plan.processes} processes; status every"
            f" {plan.status_interval:g} s; {plan.taps_per_day:g} taps x {plan.entries_per_tap:g}"
            f" entries a day each; time compressed x{plan.compression:g}; users+ACL+start"
            f" {run.setup_s:.1f} s"
        )
        for failure in run.failures[:5]:
            print(f"   connect failure: {failure}")
        rows += box_rows(run, plan)
    if catchup is not None:
        rows += catchup_rows(catchup)
    print("\n== figures")
    print_table(rows)


QUICK = {
    "taps": 600,
    "blocks": 3,
    "warmup": 20,
    "boxes": 200,
    "box_processes": 2,
    "status_interval": 5.0,
    "window": 15.0,
    "idle": 5.0,
    "catchup_registrations": 2_000,
    "fsyncs": 200,
}
FULL = {
    "taps": 3_000,
    "blocks": 10,
    "warmup": 50,
    "boxes": 1_000,
    "box_processes": 4,
    "status_interval": 60.0,
    "window": 60.0,
    "idle": 20.0,
    "catchup_registrations": 60_000,
    "fsyncs": 1_000,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_fleet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes for a smoke run (under 2 minutes); sizes given explicitly win",
    )
    sized: list[tuple[str, type, str]] = [
        ("--taps", int, "measured taps per variant"),
        ("--blocks", int, "alternating blocks (each starts each variant's daemon once)"),
        ("--warmup", int, "unmeasured taps after each daemon start"),
        ("--boxes", int, "simulated boxes (broker users)"),
        ("--box-processes", int, "driver processes sharing the boxes"),
        ("--status-interval", float, "seconds between a box's statuses; < 60 compresses time"),
        ("--window", float, "seconds of publishing measured after all boxes are connected"),
        ("--idle", float, "seconds measured with every box connected and silent (baseline)"),
        ("--catchup-registrations", int, "pending registrations in the offline journal"),
        ("--fsyncs", int, "raw write+fsync samples in the archive's directory (baseline)"),
    ]
    for flag, kind, text in sized:
        name = flag[2:].replace("-", "_")
        parser.add_argument(
            flag, type=kind, default=None, help=f"{text} ({FULL[name]:,}; quick {QUICK[name]:,})"
        )
    parser.add_argument("--workers", type=int, default=50, help="workers tapped in turn (50)")
    parser.add_argument(
        "--tap-rate",
        type=float,
        default=50.0,
        help="taps a second, paced (50: a door at a shift change, as bench_drain's stream);"
        " 0: back to back, as bench_tap (the link's work for each tap then always overlaps"
        " the next tap)",
    )
    parser.add_argument(
        "--taps-per-day", type=float, default=2_000.0, help="taps a day per box (2,000)"
    )
    parser.add_argument(
        "--entries-per-tap",
        type=float,
        default=3.0,
        help="evidence entries per tap: registration, acknowledgement, and one for the"
        " daemon's other entries (3)",
    )
    parser.add_argument("--keepalive", type=int, default=30, help="boxes' MQTT keepalive, s (30)")
    parser.add_argument(
        "--driver-nice", type=int, default=10, help="nice increment of the box drivers (10)"
    )
    parser.add_argument(
        "--catchup-budget", type=float, default=1_800.0, help="catch-up stops after (1,800) s"
    )
    parser.add_argument("--skip-taps", action="store_true", help="no tap part")
    parser.add_argument("--skip-boxes", action="store_true", help="no 1,000-box part")
    parser.add_argument("--skip-catchup", action="store_true", help="no catch-up part")
    add_directory_arguments(parser)
    args = parser.parse_args(argv)
    for name, full in FULL.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK[name] if args.quick else full)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return in_fresh_directory(args.dir, "bench-fleet-", args.keep, lambda root: _run(args, root))


def _run(args: argparse.Namespace, root: Path) -> int:
    logs.configure(fmt="console", level="warning")
    info = machine(root)
    started = time.perf_counter()
    taps = boxes = catchup = None
    if not args.skip_taps:
        print(f"taps: {args.taps:,} per variant in {args.blocks} blocks, in {root}", flush=True)
        taps = run_taps(
            root, TapPlan(args.taps, args.blocks, args.warmup, args.workers, args.tap_rate)
        )
    if not args.skip_boxes:
        plan = BoxPlan(
            args.boxes,
            args.box_processes,
            args.status_interval,
            args.taps_per_day,
            args.entries_per_tap,
            args.window,
            args.idle,
            args.keepalive,
            args.driver_nice,
        )
        print(f"boxes: {plan.boxes:,} simulated boxes on one broker", flush=True)
        boxes = (run_boxes(root, plan), plan)
    if not args.skip_catchup:
        print("catch-up: a month of evidence to the archive", flush=True)
        catchup = run_catchup(root, args.catchup_registrations, args.fsyncs, args.catchup_budget)
    print_report(info, taps, boxes, catchup, args.quick)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
