"""The box's fleet link: one MQTT session on a thread of its own, at a lower CPU priority.

It announces the box (`online`, and a last will that says `offline` when the box dies),
publishes its status on change and every `status_interval_seconds`, its events, and every
evidence entry in order (gateway.fleet.stream); it takes signed badge registers and
commands from the site's topics. Nothing here can delay a tap: the link reads the journal
on a connection of its own, writes to it every ten seconds at most (the watermark), and what
waits for the broker is bounded (the evidence stays in the journal, events are dropped
oldest first and counted).

Brokers are tried in turn; every failure waits longer before the next try (never a tight
loop), and each change of state is logged once, not each attempt.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import structlog

from gateway.config import MqttConfig
from gateway.errors import FleetError, SignedDocumentError
from gateway.fleet.connection import BrokerAccess, new_client, reason_text, session_properties
from gateway.fleet.stream import EvidenceStream
from gateway.fleet.telemetry import EventQueue, event, event_from_entry, status_document
from gateway.fleet.topics import OFFLINE, ONLINE, BoxTopics
from gateway.journal import FleetLog
from gateway.system.background import lower_priority

if TYPE_CHECKING:
    from paho.mqtt.reasoncodes import ReasonCode

    from gateway.fleet.signed import SignedCommand, SignedRegister

log = structlog.get_logger("fleet")

NICE_INCREMENT = 10
LOOP_TIMEOUT_S = 0.1
CONNECT_TIMEOUT_S = 10.0
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 60.0
PUMP_EVERY_S = 0.25
STATUS_CHECK_S = 10.0  # how often the status is looked at for a change
GOODBYE_TIMEOUT_S = 2.0
INFLIGHT_MAX = 200  # paho's own window, beside the stream's 100
SEEN_COMMANDS = 1000
REGISTER_VERSION, REGISTER_DOCUMENT = "register_version", "register_document_sha256"


class LinkState(enum.StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    WAITING = "waiting"  # to try again, after a failure
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class FleetHooks:
    """What the link asks of the daemon, from its own thread (each may block a while)."""

    snapshot: Callable[[], dict[str, Any]]  # control.status.collect, for the status
    identity: Callable[[], dict[str, Any]]  # site, box, version, config and register hashes
    apply_register: Callable[[SignedRegister], None]  # raises SignedDocumentError if refused
    reload_badges: Callable[[], None]


class FleetLink:
    def __init__(
        self,
        config: MqttConfig,
        access: BrokerAccess,
        journal: FleetLog,
        hooks: FleetHooks,
    ) -> None:
        assert config.site_id is not None and config.box_id is not None
        self._config = config
        self._access = access
        self._journal = journal
        self._hooks = hooks
        self.topics = BoxTopics(config.topic_prefix, config.site_id, config.box_id)
        self.state = LinkState.CONNECTING
        self.cause: str | None = None
        self.register_error: str | None = None  # the last register refused, until one applies
        self._stream = EvidenceStream(journal)
        self._events = EventQueue()
        self._events_through = self._stream.acknowledged  # evidence seqs already told
        self._seen_commands: deque[str] = deque(maxlen=SEEN_COMMANDS)
        self._stop = threading.Event()
        self._status_wanted = threading.Event()
        self._connack: ReasonCode | None = None
        self._failures = 0
        self._broker_index = 0
        self._last_status: dict[str, Any] | None = None
        self._status_at = 0.0
        self._checked_at = 0.0
        self._pumped_at = 0.0
        self._identity: dict[str, Any] = {}  # read on the link's thread, as it starts
        self._client = self._new_client()
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)

    # --- the daemon's side -----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Say `offline`, keep the watermark, disconnect; at most a few seconds."""
        self._stop.set()
        self._thread.join(GOODBYE_TIMEOUT_S + CONNECT_TIMEOUT_S)

    def as_json(self) -> dict[str, Any]:
        """For `badge-gateway status`."""
        return {
            "state": self.state.value,
            "cause": self.cause,
            "broker": str(self._access.brokers[self._broker_index]),
            "evidence_published_seq": self._stream.acknowledged,
            "evidence_in_flight": self._stream.in_flight,
            "telemetry_dropped": self._events.dropped,
            "register_error": self.register_error,
        }

    # --- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            lower_priority(threading.get_native_id(), NICE_INCREMENT)
        except OSError as error:
            log.warning("cannot lower the fleet link's CPU priority", error=str(error))
        try:
            self._identity = self._hooks.identity()
            while not self._stop.is_set():
                if self.state is LinkState.ONLINE:
                    self._serve_once()
                else:
                    self._connect()
        except Exception:  # a bug here must not go unnoticed, nor take the daemon with it
            log.exception("the fleet link stopped on an error")
            self.state, self.cause = LinkState.STOPPED, "internal error (see the log)"
            return
        self._goodbye()

    def _new_client(self) -> mqtt.Client:
        client = new_client(
            self._config.box_id or "", self._access, will=(self.topics.availability, OFFLINE)
        )
        client.max_inflight_messages_set(INFLIGHT_MAX)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _connect(self) -> None:
        broker = self._access.brokers[self._broker_index]
        self.state, self._connack = LinkState.CONNECTING, None
        try:
            self._client.connect(
                broker.host,
                broker.port,
                keepalive=self._config.keepalive_seconds,
                clean_start=False,
                properties=session_properties(self._config.session_expiry_seconds),
            )
            self._await_connack()
        except (OSError, ssl.SSLError, FleetError) as error:
            self._failed(f"{broker}: {error}")
            return
        self._online(str(broker))

    def _await_connack(self) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while self._connack is None:
            if time.monotonic() > deadline or self._stop.is_set():
                raise FleetError(f"no answer to CONNECT within {CONNECT_TIMEOUT_S:g} s")
            rc = self._client.loop(LOOP_TIMEOUT_S)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise FleetError(f"connection lost: {reason_text(rc)}")
        if self._connack.is_failure:
            raise FleetError(f"refused: {self._connack}")

    def _online(self, broker: str) -> None:
        if self.state is not LinkState.ONLINE:
            log.info("fleet link online", broker=broker, after_failures=self._failures)
        self.state, self.cause, self._failures = LinkState.ONLINE, None, 0
        self._stream.restart()
        self._subscribe()
        self._publish(self.topics.availability, ONLINE, retain=True)
        self._status_wanted.set()

    def _failed(self, cause: str) -> None:
        if cause != self.cause:
            log.warning("fleet link: broker unreachable; taps are unaffected", cause=cause)
        self.state, self.cause = LinkState.WAITING, cause
        self._failures += 1
        self._broker_index = (self._broker_index + 1) % len(self._access.brokers)
        with contextlib.suppress(Exception):  # shutting down: nothing left to tell
            self._client.disconnect()
        delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** min(self._failures - 1, 10))
        self._stop.wait(delay * random.uniform(0.8, 1.2))  # noqa: S311 (jitter, not secrecy)

    def _serve_once(self) -> None:
        rc = self._client.loop(LOOP_TIMEOUT_S)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._failed(f"connection lost: {reason_text(rc)}")
            return
        self._pump_evidence()
        self._publish_events()
        self._publish_status_if_due()
        self._stream.save()

    def _goodbye(self) -> None:
        if self.state is LinkState.ONLINE:
            info = self._publish(self.topics.availability, OFFLINE, retain=True)
            deadline = time.monotonic() + GOODBYE_TIMEOUT_S
            while not info.is_published() and time.monotonic() < deadline:
                if self._client.loop(LOOP_TIMEOUT_S) != mqtt.MQTT_ERR_SUCCESS:
                    break
        with contextlib.suppress(Exception):  # shutting down: nothing left to tell
            self._stream.save(now=True)
        with contextlib.suppress(Exception):  # shutting down: nothing left to tell
            self._client.disconnect()
        self.state = LinkState.STOPPED

    # --- what goes out ---------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=1, retain=retain)

    def _pump_evidence(self) -> None:
        """A few times a second at most, so that a busy door's entries go out together
        rather than the link waking for every tap; as fast as the broker acknowledges
        while a backlog is catching up."""
        now = time.monotonic()
        if now - self._pumped_at < PUMP_EVERY_S and not self._stream.behind:
            return
        self._pumped_at = now
        entries = self._stream.pump(lambda data: self._publish(self.topics.evidence, data).mid)
        for entry in entries:
            if entry.seq <= self._events_through:
                continue  # told before this connection
            self._events_through = entry.seq
            told = event_from_entry(self._identity, entry)
            if told is not None:
                self._events.put(told)

    def _publish_events(self) -> None:
        for item in self._events.take():
            self._publish(self.topics.events, _json(item))

    def _publish_status_if_due(self) -> None:
        now = time.monotonic()
        wanted = self._status_wanted.is_set()
        if not wanted and now - self._checked_at < STATUS_CHECK_S:
            return
        self._checked_at = now
        self._status_wanted.clear()
        document = status_document(self._hooks.snapshot(), self._identity, self._link())
        overdue = now - self._status_at >= self._config.status_interval_seconds
        if wanted or overdue or _changed(self._last_status, document):
            self._publish(self.topics.status, _json(document), retain=True)
            self._last_status, self._status_at = document, now

    def _link(self) -> dict[str, Any]:
        return {
            "published_seq": self._stream.acknowledged,
            "telemetry_dropped": self._events.dropped,
            "register_error": self.register_error,
        }

    # --- what comes in (on this thread, from inside client.loop) ---------------------------

    def _subscribe(self) -> None:
        if self._config.fleet_public_key is None:
            return  # nothing signed can be checked: registers and commands are not taken
        site = self.topics.site_topics
        for topic in (site.badges, site.commands, site.box_commands(self.topics.box)):
            self._client.subscribe(topic, qos=1)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self._connack = reason

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:  # an ACL that does not let the box write its own topics
            self.cause = f"the broker refused a message: {reason}"
            log.error("fleet link: the broker refused a message", reason=str(reason))
            return
        self._stream.acknowledge(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        site = self.topics.site_topics
        try:
            if message.topic == site.badges:
                self._take_register(bytes(message.payload))
            else:
                self._take_command(bytes(message.payload))
        except SignedDocumentError as error:
            self._refused(message.topic, str(error))
        except Exception:
            log.exception("fleet link: a message could not be handled", topic=message.topic)

    def _take_register(self, payload: bytes) -> None:
        from gateway.fleet.signed import read_register

        applied = self._journal.fleet_value(REGISTER_VERSION)
        assert self._config.fleet_public_key is not None
        try:
            register = read_register(
                payload,
                site=self.topics.site,
                public_key=self._config.fleet_public_key,
                applied_version=None if applied is None else int(applied),
            )
        except SignedDocumentError:
            if self._is_applied(payload):
                return  # the retained register, again at each connection
            raise
        self._hooks.apply_register(register)
        self._journal.set_fleet_value(REGISTER_VERSION, str(register.version), durable=True)
        self._journal.set_fleet_value(REGISTER_DOCUMENT, _sha256(payload), durable=True)
        self._identity = self._hooks.identity()  # its register version changed
        self.register_error = None
        details = {"version": register.version, "sha256": register.sha256}
        log.info("badge register from the fleet applied", **details)
        self._events.put(event(self._identity, "register-applied", details))
        self._status_wanted.set()

    def _is_applied(self, payload: bytes) -> bool:
        return _sha256(payload) == self._journal.fleet_value(REGISTER_DOCUMENT)

    def _take_command(self, payload: bytes) -> None:
        from gateway.fleet.signed import Command, read_command

        assert self._config.fleet_public_key is not None
        command: SignedCommand = read_command(
            payload,
            site=self.topics.site,
            box=self.topics.box,
            public_key=self._config.fleet_public_key,
            now=datetime.now(UTC),
            seen=self._seen_commands,
        )
        self._seen_commands.append(command.id)
        if command.command is Command.RELOAD:
            self._hooks.reload_badges()
        self._status_wanted.set()
        details = {"command": command.command.value, "id": command.id}
        log.info("fleet command applied", **details)
        self._events.put(event(self._identity, "command-applied", details))

    def _refused(self, topic: str, reason: str) -> None:
        kind = "command-refused"
        if topic == self.topics.site_topics.badges:
            kind, self.register_error = "register-refused", reason
        log.error(f"fleet link: {kind.replace('-', ' ')}", topic=topic, reason=reason)
        self._events.put(event(self._identity, kind, {"reason": reason}))
        self._status_wanted.set()


def _changed(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
    if before is None:
        return True
    return {**before, "published_utc": None} != {**after, "published_utc": None}


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
