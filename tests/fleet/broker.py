"""A real Mosquitto (Debian's) for the fleet's tests, set up as config/mosquitto/ says a
production broker is: a TLS listener (a certificate from onss_sim.pki's local CA), no
anonymous client, a password file hashed by the real `mosquitto_passwd`, the ACL that
gateway.fleet.acl generates, persistence on disk (a restart keeps retained messages and
sessions). Optionally a second listener where bridges log in with a client certificate,
or a bridge to another such broker, as a site broker bridges to the central one
(config/mosquitto/bridge.conf). Also: `listening`, a subscriber whose messages a test
waits for, every wait bounded.
"""

from __future__ import annotations

import os
import queue
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from gateway.fleet.acl import BRIDGE_STATE, DEFAULT_PREFIX, acl_text
from gateway.fleet.connection import BrokerAccess, new_client, parse_broker, session_properties
from onss_sim.pki import ensure_pki

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

# Box topics go out from a site broker to the central one; site topics come in.
BRIDGE_OUT = ("availability", "status", "events", "evidence")
BRIDGE_IN = ("badges", "commands/#")


class BrokerStartError(RuntimeError):
    """Mosquitto did not start, or did not accept TLS in time; the message holds its log."""


@dataclass(frozen=True, slots=True)
class BridgeIdentity:
    """The CA a central broker trusts for bridges, and a bridge's certificate from it."""

    ca_cert: Path
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Bridge:
    """Where a site broker bridges to (the central broker's bridge listener), trusting
    which CA, with which client certificate (its common name is the broker user)."""

    port: int
    ca_file: Path
    cert: Path
    key: Path
    name: str = "central"


def make_bridge_identity(directory: Path, user: str = "bridge") -> BridgeIdentity:
    """A bridge CA and a client certificate for `user`, made with the openssl commands that
    docs/fleet.md gives IT."""
    directory.mkdir(parents=True, exist_ok=True)
    identity = BridgeIdentity(
        directory / "bridge-ca.pem", directory / f"{user}.pem", directory / f"{user}.key"
    )
    ca_key, request = directory / "bridge-ca.key", directory / f"{user}.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"]
    ca_subject = ["-subj", "/CN=badge-gateway bridge CA"]
    _openssl("req", "-x509", *ec, *ca_subject, "-keyout", ca_key, "-out", identity.ca_cert)
    _openssl("req", *ec, "-subj", f"/CN={user}", "-keyout", identity.key, "-out", request)
    issuer: list[str | Path] = ["-CA", identity.ca_cert, "-CAkey", ca_key, "-CAcreateserial"]
    _openssl("x509", "-req", "-in", request, *issuer, "-days", "30", "-out", identity.cert)
    identity.key.chmod(0o600)
    return identity


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class MosquittoBroker:
    """`with MosquittoBroker(directory, boxes) as broker:` a running broker on 127.0.0.1."""

    def __init__(
        self,
        directory: Path,
        boxes: Iterable[tuple[str, str]],
        *,
        prefix: str = DEFAULT_PREFIX,
        fleet_user: str = "fleet",
        bridge_user: str | None = "bridge",
        accept_bridges: bool = False,
        bridge: Bridge | None = None,
        verbose: bool = True,
        autosave_seconds: int = 60,
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.boxes = list(boxes)
        self.prefix = prefix
        self.port = free_port()
        self.bridge_port = free_port() if accept_bridges else None
        (directory / "pki").mkdir(exist_ok=True)
        self.pki = ensure_pki(directory / "pki")
        self.bridge_identity = (
            make_bridge_identity(directory / "bridge-pki", bridge_user)
            if accept_bridges and bridge_user is not None
            else None
        )
        users = [fleet_user, *(box for _, box in self.boxes)]  # the bridge: a certificate
        self.passwords = {user: secrets.token_urlsafe(18) for user in users}
        self._bridge = bridge
        self._verbose = verbose
        self._autosave_seconds = autosave_seconds
        self._process: subprocess.Popen[bytes] | None = None
        self._write_password_file(users)
        (directory / "acl").write_text(acl_text(self.boxes, prefix, fleet_user, bridge_user))
        self._write_config()

    # --- files -----------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def output_file(self) -> Path:
        return self.directory / "mosquitto.out"

    def _write_password_file(self, users: Sequence[str]) -> None:
        """`user:password` lines hashed in place by `mosquitto_passwd -U`, as docs/fleet.md
        tells IT to make theirs."""
        path = self.directory / "passwd"
        path.unlink(missing_ok=True)
        path.touch(mode=0o600)
        path.write_text("".join(f"{user}:{self.passwords[user]}\n" for user in users))
        subprocess.run(
            [MOSQUITTO_PASSWD, "-U", str(path)], check=True, capture_output=True, timeout=30
        )

    def _write_config(self) -> None:
        lines = [
            *(["user root"] if os.geteuid() == 0 else []),
            f"listener {self.port} 127.0.0.1",
            f"cafile {self.pki.ca_cert}",
            f"certfile {self.pki.server_cert}",
            f"keyfile {self.pki.server_key}",
            "tls_version tlsv1.2",
            "allow_anonymous false",
            f"password_file {self.directory / 'passwd'}",
            f"acl_file {self.directory / 'acl'}",
            "persistence true",
            f"persistence_location {self.directory}/",
            f"autosave_interval {self._autosave_seconds}",
            "max_queued_messages 1000000",
            "max_inflight_messages 100",
            f"log_dest file {self.log_file}",
            *(["log_type all"] if self._verbose else ["log_type error", "log_type warning"]),
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            *self._bridge_listener_lines(),
            *self._bridge_lines(),
        ]
        self.config_file.write_text("\n".join(lines) + "\n")

    def use_config(self, text: str) -> None:
        """Run with this configuration instead (a shipped example, its paths made local);
        its first listener must be on `port`."""
        root = ["user root"] if os.geteuid() == 0 else []
        self.config_file.write_text("\n".join([*root, text]))

    def _bridge_listener_lines(self) -> list[str]:
        """A listener where a client certificate from the bridge CA is the login: its
        common name is the broker user (no password in any configuration file)."""
        if self.bridge_identity is None:
            return []
        return [
            f"listener {self.bridge_port} 127.0.0.1",
            f"cafile {self.bridge_identity.ca_cert}",
            f"certfile {self.pki.server_cert}",
            f"keyfile {self.pki.server_key}",
            "tls_version tlsv1.2",
            "require_certificate true",
            "use_identity_as_username true",
        ]

    def _bridge_lines(self) -> list[str]:
        if self._bridge is None:
            return []
        bridge = self._bridge
        return [
            f"connection {bridge.name}",
            f"address 127.0.0.1:{bridge.port}",
            f"bridge_cafile {bridge.ca_file}",
            "bridge_insecure false",
            f"bridge_certfile {bridge.cert}",
            f"bridge_keyfile {bridge.key}",
            f"remote_clientid bridge-{self.port}",
            "cleansession false",
            "restart_timeout 1 5",
            *(f"topic {self.prefix}/+/+/{leaf} out 1" for leaf in BRIDGE_OUT),
            *(f"topic {self.prefix}/+/{leaf} in 1" for leaf in BRIDGE_IN),
        ]

    # --- what the tests use ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_cert

    def access(self, username: str | None, password: str | None = None) -> BrokerAccess:
        """How `username` reaches this broker, trusting its CA; its own password unless
        another is given (None for an anonymous client)."""
        if password is None and username is not None:
            password = self.passwords[username]
        return BrokerAccess(
            brokers=(parse_broker(self.url),),
            ca_file=self.ca_file,
            username=username,
            password=password,
        )

    def bridge_to_me(self, name: str = "central") -> Bridge:
        """What another broker needs to bridge to this one as the bridge user."""
        assert self.bridge_identity is not None and self.bridge_port is not None
        identity = self.bridge_identity
        return Bridge(self.bridge_port, self.ca_file, identity.cert, identity.key, name)

    def bridge_access(self) -> BrokerAccess:
        """A client holding the bridge's certificate, on the bridge listener."""
        bridge = self.bridge_to_me()
        return BrokerAccess(
            brokers=(parse_broker(f"mqtts://127.0.0.1:{bridge.port}"),),
            ca_file=self.ca_file,
            client_cert=bridge.cert,
            client_key=bridge.key,
        )

    def log(self) -> str:
        parts = [path.read_text(errors="replace") for path in (self.output_file, self.log_file)]
        return "".join(part for part in parts if part)

    # --- the process -----------------------------------------------------------------------

    def start(self) -> None:
        """Start Mosquitto (again, on the same port after stop() or kill()) and wait until
        it accepts TLS."""
        assert self._process is None or self._process.poll() is not None, "already running"
        with self.output_file.open("ab") as output:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_file)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_for_tls()

    def _wait_for_tls(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error = "not tried"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerStartError(
                    f"mosquitto exited with status {self._process.returncode}:\n{self.log()}"
                )
            try:
                self._tls_handshake()
                return
            except OSError as error:
                last_error = str(error)
            time.sleep(0.05)
        self.kill()
        raise BrokerStartError(
            f"mosquitto on port {self.port}: no TLS within {START_TIMEOUT_S:g} s"
            f" ({last_error}):\n{self.log()}"
        )

    def _tls_handshake(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file and exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: what was not yet saved to disk is lost, as on a power cut."""
        self._end(signal.SIGKILL)

    def _end(self, signum: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signum)
        try:
            self._process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(STOP_TIMEOUT_S)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def listening(
    client_id: str, access: BrokerAccess, *, session_expiry: int = 0, timeout: float = 10.0
) -> Iterator[Inbox]:
    """A client connected to the first broker of `access`, its messages in an Inbox from the
    first one on (a resumed session's queued messages come right after the CONNACK)."""
    client = new_client(client_id, access)
    inbox = Inbox(client)
    broker = access.brokers[0]
    client.connect(
        broker.host,
        broker.port,
        keepalive=30,
        clean_start=session_expiry == 0,
        properties=session_properties(session_expiry) if session_expiry else None,
    )
    client.loop_start()
    try:
        assert inbox.connected.wait(timeout), f"{client_id}: no CONNACK within {timeout:g} s"
        assert inbox.refusal is None, f"{client_id}: refused: {inbox.refusal}"
        yield inbox
    finally:
        client.disconnect()
        client.loop_stop()


class Inbox:
    """The messages a connected client receives, for a test to wait on (every wait bounded)."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.connected = threading.Event()
        self.refusal: str | None = None
        self._messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._granted: dict[int, threading.Event] = {}
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self.refusal = str(reason) if reason.is_failure else None
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self._messages.put(message)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, *rest: object) -> None:
        self._granted.setdefault(mid, threading.Event()).set()

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 10.0) -> None:
        """Subscribe and wait for the broker's SUBACK."""
        result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None, f"subscribe {topic}: {result}"
        granted = self._granted.setdefault(mid, threading.Event())
        assert granted.wait(timeout), f"subscribe {topic}: no SUBACK within {timeout:g} s"

    def wait_for(self, topic: str, timeout: float = 10.0) -> mqtt.MQTTMessage:
        """The next message on `topic` (others are passed over)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self._messages.get(timeout=left)
            except queue.Empty:
                break
            if message.topic == topic:
                return message
        raise AssertionError(f"{topic}: nothing received within {timeout:g} s")

    def until(self, topic: str, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        """Every message up to and including the next one on `topic`: a marker published
        last shows, since the broker keeps the order, that what came before is all there is."""
        deadline = time.monotonic() + timeout
        found: list[mqtt.MQTTMessage] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                found.append(self._messages.get(timeout=left))
            except queue.Empty:
                break
            if found[-1].topic == topic:
                return found
        raise AssertionError(f"{topic}: nothing received within {timeout:g} s")

    def next_payload(self, seconds: float) -> bytes | None:
        """The payload of the next message on any topic, None if none within `seconds`."""
        try:
            return bytes(self._messages.get(timeout=seconds).payload)
        except queue.Empty:
            return None

    def received_on(self, topic: str, seconds: float) -> list[mqtt.MQTTMessage]:
        """Every message on `topic` within `seconds` (a test that something never arrives)."""
        deadline = time.monotonic() + seconds
        found: list[mqtt.MQTTMessage] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self._messages.get(timeout=left)
            except queue.Empty:
                break
            if message.topic == topic:
                found.append(message)
        return found


def wait_for_bridge(
    central: MosquittoBroker, timeout: float = 10.0, access: BrokerAccess | None = None
) -> None:
    """Until a bridge announces itself up on `central` (Mosquitto's notification, retained
    on $SYS/broker/connection/<client id>/state), as the `fleet` user sees it."""
    deadline = time.monotonic() + timeout
    with listening("bridge-watch", access or central.access("fleet")) as inbox:
        inbox.subscribe(BRIDGE_STATE)
        while (left := deadline - time.monotonic()) > 0:
            if inbox.next_payload(left) == b"1":
                return
    raise AssertionError(f"no bridge up on {central.url} within {timeout:g} s:\n{central.log()}")
