"""The way to the fleet's broker: URLs, TLS (always verified), credentials, and a paho-mqtt
client (v2 callback API, MQTT 5) set up the same way for the box and for the fleet's tools.

A broker URL is `mqtts://host[:port]` (8883 by default). Plain `mqtt://` is refused: the
badge register and the evidence carry national numbers.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttConfig
from gateway.errors import CredentialError, FleetError
from gateway.system.secrets import key_path, read_secret_file

DEFAULT_PORT = 8883
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"mqtts://{self.host}:{self.port}"


def parse_broker(url: str) -> Broker:
    """`mqtts://host[:port]` as a Broker; ValueError saying what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme != "mqtts":
        raise ValueError(
            f"broker {url!r}: must start with mqtts:// (TLS is not optional: the fleet's"
            " messages carry personal data)"
        )
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"broker {url!r}: expected mqtts://host or mqtts://host:port")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as error:
        raise ValueError(f"broker {url!r}: {error}") from error
    return Broker(parts.hostname, port)


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    """Where the brokers are (tried in turn) and how to prove who we are to them."""

    brokers: tuple[Broker, ...]
    ca_file: Path | None = None  # trusted besides the system's CAs
    client_cert: Path | None = None
    client_key: Path | None = None
    username: str | None = None
    password: str | None = None

    def tls_context(self) -> ssl.SSLContext:
        """A verifying client context; FleetError naming the file that cannot be used."""
        context = ssl.create_default_context()
        try:
            if self.ca_file is not None:
                context.load_verify_locations(cafile=self.ca_file)
            if self.client_cert is not None:
                context.load_cert_chain(self.client_cert, self.client_key)
        except (OSError, ssl.SSLError) as error:
            raise FleetError(f"TLS files for the broker: {error}") from error
        return context


def new_client(
    client_id: str,
    access: BrokerAccess,
    *,
    will: tuple[str, bytes] | None = None,
) -> mqtt.Client:
    """A paho client, not yet connected: MQTT 5, TLS verified, credentials set, and a
    retained last will if given (topic, payload)."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    client.tls_set_context(access.tls_context())
    if access.username is not None:
        client.username_pw_set(access.username, access.password)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    return client


def session_properties(expiry_seconds: int) -> Properties:
    """CONNECT properties asking the broker to keep our session (subscriptions, QoS 1
    messages queued for us) for `expiry_seconds` after we go."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = expiry_seconds
    return properties


def reason_text(reason: ReasonCode | int) -> str:
    return str(reason) if isinstance(reason, ReasonCode) else mqtt.error_string(reason)


class _Connack:
    """The outcome of one CONNECT, as the network thread reports it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.failure: str | None = None

    def on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self.failure = str(reason) if reason.is_failure else None
        self.done.set()

    def on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        """Hung up on before any CONNACK (a refused client certificate, in TLS 1.3)."""
        if not self.done.is_set():
            self.failure = f"the broker closed the connection ({reason})"
            self.done.set()


@contextmanager
def connected(
    client_id: str,
    access: BrokerAccess,
    *,
    session_expiry: int = 0,
    timeout: float = CONNECT_TIMEOUT_S,
) -> Iterator[mqtt.Client]:
    """A client connected to the first broker of `access` that accepts us, its network
    thread running; disconnected at the end. For the fleet's command-line tools: a
    FleetError names every broker tried and why it failed."""
    failures: list[str] = []
    for broker in access.brokers:
        client = new_client(client_id, access)
        connack = _Connack()
        client.on_connect = connack.on_connect
        client.on_disconnect = connack.on_disconnect
        try:
            client.connect(
                broker.host,
                broker.port,
                keepalive=30,
                clean_start=session_expiry == 0,
                properties=session_properties(session_expiry) if session_expiry else None,
            )
        except (OSError, ssl.SSLError) as error:
            failures.append(f"{broker}: {error}")
            continue
        client.loop_start()
        if not connack.done.wait(timeout):
            failures.append(f"{broker}: no answer to CONNECT within {timeout:g} s")
        elif connack.failure is not None:
            failures.append(f"{broker}: refused: {connack.failure}")
        else:
            try:
                yield client
            finally:
                client.disconnect()
                client.loop_stop()
            return
        client.disconnect()
        client.loop_stop()
    raise FleetError("cannot connect to the broker: " + "; ".join(failures))


def publish_and_wait(
    client: mqtt.Client,
    topic: str,
    payload: bytes,
    *,
    qos: int = 1,
    retain: bool = False,
    timeout: float = CONNECT_TIMEOUT_S,
) -> None:
    """Publish and wait for the broker's PUBACK; FleetError if it does not come, or if the
    broker refuses the message (MQTT 5 says why: "Not authorized" for an ACL)."""
    refusals: dict[int, ReasonCode] = {}
    previous = client.on_publish

    def on_publish(*args: Any) -> None:  # (client, userdata, mid, reason, properties)
        if args[3].is_failure:
            refusals[args[2]] = args[3]
        if previous is not None:
            previous(*args)

    client.on_publish = on_publish
    try:
        info = client.publish(topic, payload, qos=qos, retain=retain)
        deadline = time.monotonic() + timeout
        while not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        client.on_publish = previous
    if not info.is_published():
        raise FleetError(f"{topic}: the broker did not acknowledge the message in {timeout:g} s")
    if info.mid in refusals:
        raise FleetError(f"{topic}: the broker refused the message: {refusals[info.mid]}")


def brokers_from(urls: Sequence[str]) -> tuple[Broker, ...]:
    return tuple(parse_broker(url) for url in urls)


def read_password(path: Path, what: str) -> str:
    """A password file's text (mode 600, one line, trimmed); CredentialError if unusable."""
    text = read_secret_file(path, what).decode("utf-8", "replace").strip()
    if not text:
        raise CredentialError(f"{path}: empty, where the {what} should be")
    return text


def box_access(config: MqttConfig) -> BrokerAccess:
    """How the box reaches its fleet, from `[mqtt]`: the password read from its file or
    systemd credential (mode 600); CredentialError or FleetError (one line) if unusable."""
    password = None
    if config.password is not None:
        password = read_password(key_path(config.password), "MQTT password")
    try:
        brokers = brokers_from(config.brokers)
    except ValueError as error:
        raise FleetError(str(error)) from error
    return BrokerAccess(
        brokers=brokers,
        ca_file=config.ca_file,
        client_cert=config.client_cert,
        client_key=config.client_key,
        username=config.username or config.box_id,
        password=password,
    )
