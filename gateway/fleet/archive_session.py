"""`fleet archive`'s MQTT side: a persistent session (entries published while the archive
is down wait at the broker), each message acknowledged only once its entry is stored and
synced (paho's manual acks), the brokers tried in turn with a growing backoff.
"""

from __future__ import annotations

import enum
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.reasoncodes import ReasonCode

from gateway.fleet.archive import EvidenceArchive
from gateway.fleet.connection import Broker, BrokerAccess, new_client, session_properties
from gateway.fleet.topics import EVIDENCE, all_boxes, parse_box_topic

log = structlog.get_logger("fleet.archive")

SESSION_EXPIRY_S = 7 * 24 * 3600  # what the broker keeps for us while the archive is down
PROGRESS_EVERY_S = 5.0
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 60.0
STEADY_S = 60.0  # a connection lost sooner does not reset the backoff (a flapping broker)
KEEPALIVE_S = 30


class SessionEnd(enum.Enum):
    STOPPED = "stopped"
    IDLE = "idle"
    LOST = "lost"  # connected for a while, then lost: try again soon
    FAILED = "failed"  # not connected, refused, or lost soon after connecting


def run_archive(
    access: BrokerAccess,
    prefix: str,
    directory: Path,
    client_id: str,
    stop: threading.Event,
    idle_exit: float | None = None,
) -> None:
    """Archive every box's evidence until `stop` (or `idle_exit` seconds without a message),
    over a persistent session, trying the brokers in turn with a growing backoff."""
    archive = EvidenceArchive(directory)
    backoff = BACKOFF_FIRST_S
    attempt = 0
    while not stop.is_set():
        broker = access.brokers[attempt % len(access.brokers)]
        end = _Session(archive, access, broker, prefix, client_id).run(stop, idle_exit)
        if end in (SessionEnd.STOPPED, SessionEnd.IDLE):
            return
        if end is SessionEnd.LOST:
            backoff = BACKOFF_FIRST_S
        attempt += 1
        log.info(
            "archive: reconnecting",
            after_s=backoff,
            next_broker=str(access.brokers[attempt % len(access.brokers)]),
        )
        stop.wait(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX_S)


class _Session:
    """One connection to one broker, its network loop run on the caller's thread."""

    def __init__(
        self,
        archive: EvidenceArchive,
        access: BrokerAccess,
        broker: Broker,
        prefix: str,
        client_id: str,
    ) -> None:
        self.archive, self.broker, self.prefix = archive, broker, prefix
        self.client = new_client(client_id, access)
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.connected_at: float | None = None
        self.disconnect_reason: str | None = None
        self.refused: str | None = None
        self.storage_failed = False
        self.last_message = time.monotonic()
        self.last_progress = time.monotonic()

    def run(self, stop: threading.Event, idle_exit: float | None) -> SessionEnd:
        try:
            self.client.connect(
                self.broker.host,
                self.broker.port,
                keepalive=KEEPALIVE_S,
                clean_start=False,
                properties=session_properties(SESSION_EXPIRY_S),
            )
        except (OSError, ssl.SSLError) as error:
            log.error("archive: cannot connect", broker=str(self.broker), error=str(error))
            return SessionEnd.FAILED
        try:
            return self._loop(stop, idle_exit)
        finally:
            self.client.disconnect()
            self._log_progress(force=True)

    def _loop(self, stop: threading.Event, idle_exit: float | None) -> SessionEnd:
        while not stop.is_set():
            code = self.client.loop(timeout=0.5)
            if self.refused is not None or self.storage_failed:
                return SessionEnd.FAILED
            if code != mqtt.MQTT_ERR_SUCCESS:
                log.warning(
                    "archive: connection lost",
                    broker=str(self.broker),
                    reason=mqtt.error_string(code),
                    broker_said=self.disconnect_reason,
                )
                return self._lost()
            self._log_progress()
            if idle_exit is not None and time.monotonic() - self.last_message > idle_exit:
                return SessionEnd.IDLE
        return SessionEnd.STOPPED

    def _lost(self) -> SessionEnd:
        steady = self.connected_at is not None and time.monotonic() - self.connected_at > STEADY_S
        return SessionEnd.LOST if steady else SessionEnd.FAILED

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self.disconnect_reason = str(reason)  # e.g. "Session taken over": our client id reused

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: Any,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            log.error("archive: the broker refused us", broker=str(self.broker), reason=str(reason))
            return
        self.connected_at = time.monotonic()
        self.last_message = time.monotonic()
        client.subscribe(all_boxes(self.prefix, EVIDENCE), qos=1)
        log.info(
            "archive: connected",
            broker=str(self.broker),
            session_kept=bool(getattr(flags, "session_present", False)),
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: object,
    ) -> None:
        topic = all_boxes(self.prefix, EVIDENCE)
        if any(reason.is_failure for reason in reasons):
            log.error("archive: subscription refused", topic=topic, reason=str(reasons[0]))
            self.refused = str(reasons[0])
        else:
            log.info("archive: subscribed", topic=topic)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.last_message = time.monotonic()
        parsed = parse_box_topic(self.prefix, message.topic)
        if parsed is None or parsed.leaf != EVIDENCE:
            log.error("archive: message on an unexpected topic, ignored", topic=message.topic)
        else:
            try:
                self.archive.receive(parsed.site, parsed.box, bytes(message.payload))
            except OSError as error:  # not acked: the broker keeps it for the next session
                log.error(
                    "archive: cannot store an entry",
                    site=parsed.site,
                    box=parsed.box,
                    error=str(error),
                )
                self.storage_failed = True
                return
        client.ack(message.mid, message.qos)

    def _log_progress(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < PROGRESS_EVERY_S:
            return
        self.last_progress = now
        for (site, box), tally in self.archive.boxes.items():
            if tally.total != tally.logged:
                tally.logged = tally.total
                counts = {outcome.value: n for outcome, n in tally.counts.items()}
                log.info("archive: progress", site=site, box=box, head_seq=tally.last_seq, **counts)
