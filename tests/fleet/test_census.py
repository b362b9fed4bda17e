"""`fleet status`: every box's retained availability and status, read from a real
Mosquitto, one line per box (or a JSON list): online, offline since when (a box SIGKILLed,
its last will published by the broker), stale, malformed; and each status's figures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.fleet.census import Seen, summarize
from gateway.fleet.connection import connected, new_client, publish_and_wait
from gateway.fleet.topics import OFFLINE, ONLINE, BoxTopics
from tests.fleet.broker import MosquittoBroker

PREFIX = "badge-gateway"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def status(site: str, box: str, published: datetime, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema": 1,
        "site": site,
        "box": box,
        "published_utc": published.isoformat(timespec="seconds"),
        "version": "1.0.0",
        "config_sha256": "ab" * 32,
        "badges": {"version": 3, "sha256": "cd" * 32, "workers": 12, "last_error": None},
        "readers": [{"name": "entrance", "state": "connected", "error": None, "down_since": None}],
        "clock": {"synced": True},
        "uplink": {"enabled": True, "state": "online", "cause": None, "next_retry_utc": None},
        "queue": {
            "depth": 4,
            "oldest_pending_utc": "2026-12-06T11:58:00+00:00",
            "rejected": 0,
            "unconfirmed": 0,
            "last_acknowledged_utc": "2026-12-06T11:59:00+00:00",
        },
        "evidence": {"head_seq": 120, "head_hash": "ef" * 32, "published_seq": 118},
        "alerts": [],
        "telemetry_dropped": 0,
    }
    document.update(changes)
    return document


def encoded(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


# --- what a box's messages say ---------------------------------------------------------------


def test_an_online_box_shows_its_figures() -> None:
    seen = Seen(ONLINE, encoded(status("site-a", "box-a1", NOW - timedelta(seconds=30))))

    row = summarize("site-a", "box-a1", seen, NOW)

    assert row["state"] == "online" and row["stale"] is None and row["problem"] is None
    assert row["queue_depth"] == 4 and row["evidence_head_seq"] == 120
    assert row["evidence_published_seq"] == 118
    assert row["last_acknowledged_utc"] == "2026-12-06T11:59:00+00:00"


def test_a_status_three_intervals_old_from_an_online_box_is_stale() -> None:
    old = encoded(status("site-a", "box-a1", NOW - timedelta(seconds=181)))
    announced = encoded(
        status("site-a", "box-a1", NOW - timedelta(seconds=181), status_interval_seconds=300)
    )

    assert "181 s old" in summarize("site-a", "box-a1", Seen(ONLINE, old), NOW)["stale"]
    assert summarize("site-a", "box-a1", Seen(ONLINE, announced), NOW)["stale"] is None
    assert summarize("site-a", "box-a1", Seen(OFFLINE, old), NOW)["stale"] is None
    no_availability = summarize("site-a", "box-a1", Seen(None, old), NOW)
    assert no_availability["stale"] == "a status but no availability message"


def test_a_malformed_status_is_named_for_its_box() -> None:
    fresh = NOW - timedelta(seconds=5)
    cases = {
        b"{not json": "not JSON",
        b"[1]": "a JSON list, expected an object",
        encoded(status("site-b", "box-a1", fresh)): "field site 'site-b', its topic says 'site-a'",
        encoded(status("site-a", "box-a1", fresh, schema=2)): "schema 2, expected 1",
        encoded(status("site-a", "box-a1", fresh, published_utc="noon")): "field published_utc",
        encoded(status("site-a", "box-a1", fresh, queue=None)): "field queue",
    }
    for payload, reason in cases.items():
        row = summarize("site-a", "box-a1", Seen(ONLINE, payload), NOW)
        assert row["problem"].startswith("malformed status: "), row
        assert reason in row["problem"], (reason, row["problem"])


# --- against a real broker -------------------------------------------------------------------

BOX_SCRIPT = """
import sys, time
from gateway.fleet.connection import new_client, parse_broker, BrokerAccess
from pathlib import Path
url, ca, user, password, topic = sys.argv[1:6]
access = BrokerAccess((parse_broker(url),), Path(ca), username=user, password=password)
client = new_client(user + "-process", access, will=(topic, b"offline"))
broker = access.brokers[0]
client.connect(broker.host, broker.port, keepalive=5)
client.loop_start()
client.publish(topic, b"online", qos=1, retain=True).wait_for_publish(10)
print("ready", flush=True)
time.sleep(60)
"""


def publish_retained(broker: MosquittoBroker, box: BoxTopics, messages: dict[str, bytes]) -> None:
    with connected(f"{box.box}-tool", broker.access(box.box)) as client:
        for topic, message in messages.items():
            publish_and_wait(client, topic, message, retain=True)


def box_process_killed(broker: MosquittoBroker, box: BoxTopics) -> None:
    """A box connected with its last will, then SIGKILLed: the broker publishes the will."""
    password = broker.passwords[box.box]
    arguments = [broker.url, str(broker.ca_file), box.box, password, box.availability]
    process = subprocess.Popen(
        [sys.executable, "-c", BOX_SCRIPT, *arguments], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    finally:
        process.kill()
        process.wait(10)


def fleet_status(broker: MosquittoBroker, tmp_path: Path, *extra: str) -> str:
    password = tmp_path / "fleet.password"
    password.touch(mode=0o600)
    password.write_text(broker.passwords["fleet"])
    result = subprocess.run(
        [
            *(sys.executable, "-m", "gateway", "fleet", "status", "--broker", broker.url),
            *("--ca-file", str(broker.ca_file), "--username", "fleet"),
            *("--password-file", str(password), *extra),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def rows_until(
    broker: MosquittoBroker, tmp_path: Path, box: str, state: str
) -> list[dict[str, Any]]:
    """`fleet status --json` until `box` is in `state` (the will may take a moment)."""
    for _ in range(20):
        rows: list[dict[str, Any]] = json.loads(fleet_status(broker, tmp_path, "--json"))
        if any(row["box"] == box and row["state"] == state for row in rows):
            return rows
        time.sleep(0.25)
    raise AssertionError(f"{box} never {state}: {rows}")


def test_fleet_status_shows_online_offline_stale_and_malformed_boxes(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    a1, a2 = BoxTopics(PREFIX, "site-a", "box-a1"), BoxTopics(PREFIX, "site-a", "box-a2")
    b1 = BoxTopics(PREFIX, "site-b", "box-b1")
    now = datetime.now(UTC)
    alert = {"alerts": ["reader entrance failed"]}
    live = new_client("box-a1-live", broker.access("box-a1"), will=(a1.availability, OFFLINE))
    live.connect("127.0.0.1", broker.port)
    live.loop_start()
    deadline = time.monotonic() + 10
    while not live.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        publish_retained(broker, a1, {a1.status: encoded(status("site-a", "box-a1", now, **alert))})
        publish_and_wait(live, a1.availability, ONLINE, retain=True)
        last_seen = now - timedelta(minutes=20)
        publish_retained(broker, a2, {a2.status: encoded(status("site-a", "box-a2", last_seen))})
        box_process_killed(broker, a2)
        stale = encoded(status("site-b", "box-b1", now - timedelta(minutes=10)))
        publish_retained(broker, b1, {b1.status: stale, b1.availability: ONLINE})

        rows = rows_until(broker, tmp_path, "box-a2", "offline")
        text = fleet_status(broker, tmp_path).splitlines()

        publish_retained(broker, b1, {b1.status: b"{broken", b1.availability: b""})
        later = rows_until(broker, tmp_path, "box-b1", "unknown")
    finally:
        live.disconnect()
        live.loop_stop()

    by_box = {row["box"]: row for row in rows}
    assert [row["box"] for row in rows] == ["box-a1", "box-a2", "box-b1"]
    assert by_box["box-a1"]["state"] == "online" and by_box["box-a1"]["stale"] is None
    assert by_box["box-a1"]["alerts"] == ["reader entrance failed"]
    assert by_box["box-a2"]["since_utc"] == last_seen.isoformat(timespec="seconds")
    assert by_box["box-b1"]["stale"].startswith("online, but its status is 6")
    assert text[0].startswith("site-a/box-a1  online  queue 4  oldest pending 2026-12-06T11:58")
    assert text[0].endswith("evidence head 120 published 118  alerts: reader entrance failed")
    assert text[1].startswith(f"site-a/box-a2  OFFLINE  since {last_seen.isoformat()[:19]}")
    assert text[2].startswith("site-b/box-b1  online") and "STALE: online, but" in text[2]
    broken = next(row for row in later if row["box"] == "box-b1")
    assert broken["problem"].startswith("malformed status: not JSON")
    assert broken["stale"] is None and broken["state"] == "unknown"


def test_fleet_status_with_no_box_says_so(broker: MosquittoBroker, tmp_path: Path) -> None:
    started = time.monotonic()

    output = fleet_status(broker, tmp_path, "--wait", "2")

    assert output == "no box has published under badge-gateway/ on this broker\n"
    assert time.monotonic() - started < 10


def test_fleet_status_refused_by_the_broker_says_why_in_one_line(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    password = tmp_path / "wrong.password"
    password.touch(mode=0o600)
    password.write_text("not-the-password")

    result = subprocess.run(
        [
            *(sys.executable, "-m", "gateway", "fleet", "status", "--broker", broker.url),
            *("--ca-file", str(broker.ca_file), "--username", "fleet"),
            *("--password-file", str(password)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"badge-gateway: cannot connect to the broker: {broker.url}: refused: Not authorized"
    ]
