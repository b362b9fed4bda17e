"""`badge-gateway fleet publish-badges`, `fleet command` and `fleet keygen`: the employer
signs what the boxes of a site apply (gateway/fleet/signed.py), with an Ed25519 key of the
same kind as the one that signs evidence exports.

    fleet keygen --out KEY                       a new key; prints the boxes' fleet_public_key
    fleet publish-badges FILE --site S --key KEY a register, retained on the site's topic
    fleet command reload --site S [--box B] --key KEY

Every failure is one line on stderr and exit 1 (gateway/cli/main.py prints GatewayErrors).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.badges import CP1252_NOTE, parse_badge_register
from gateway.cli.fleet_options import add_broker_options, broker_access
from gateway.errors import BadgeFileError, CredentialError, FleetError, SignedDocumentError
from gateway.fleet.connection import CONNECT_TIMEOUT_S, connected, publish_and_wait
from gateway.fleet.signed import (
    MAX_COMMAND_LIFETIME,
    Command,
    command_document,
    register_document,
)
from gateway.fleet.topics import SiteTopics, check_box, check_name

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.badges import BadgeRegister

DEFAULT_EXPIRY = "10m"
_DURATION = re.compile(r"([0-9]+)\s*(s|m|min|h|d)?")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def add_publish_commands(actions: Any) -> None:
    _add_keygen(actions)
    _add_publish_badges(actions)
    _add_command(actions)


def _add_keygen(actions: Any) -> None:
    keygen = actions.add_parser(
        "keygen", help="a new Ed25519 key for signing badge registers and commands"
    )
    keygen.add_argument("--out", type=Path, required=True, help="the key file to create (0600)")
    keygen.set_defaults(command=_keygen)


def _add_publish_badges(actions: Any) -> None:
    publish = actions.add_parser(
        "publish-badges", help="sign a badge register and publish it to a site's boxes"
    )
    publish.add_argument("file", type=Path, help="the badge register (CSV), as `badges check`")
    _add_site_and_key(publish)
    publish.add_argument(
        "--version",
        type=_version,
        help="the register's version, newer than any published (default: the Unix time)",
    )
    add_broker_options(publish)
    publish.set_defaults(command=_publish_badges)


def _add_command(actions: Any) -> None:
    command = actions.add_parser("command", help="sign a command and send it to a site or a box")
    command.add_argument("name", choices=[c.value for c in Command], metavar="|".join(Command))
    _add_site_and_key(command)
    command.add_argument("--box", type=_box, help="one box of the site (default: all of them)")
    command.add_argument(
        "--expires-in",
        type=_duration,
        default=_duration(DEFAULT_EXPIRY),
        metavar="DURATION",
        help=f"refused by the boxes after this (90s, 10m, 2h; default {DEFAULT_EXPIRY})",
    )
    add_broker_options(command)
    command.set_defaults(command=_send_command)


def _add_site_and_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", required=True, type=_site, help="the site id")
    parser.add_argument(
        "--key",
        required=True,
        help="the employer's Ed25519 private key (PEM, mode 600): a file, or a systemd"
        " credential name inside a unit",
    )


# --- fleet keygen ----------------------------------------------------------------------------


def _keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _create_secret_file(args.out, pem)
    print(
        f"{args.out}: a new Ed25519 key (mode 600); for [mqtt] fleet_public_key:", file=sys.stderr
    )
    print(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex())
    return 0


def _create_secret_file(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise CredentialError(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as error:
        raise CredentialError(f"{path}: cannot create: {error.strerror or error}") from error
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        path.unlink(missing_ok=True)
        raise CredentialError(f"{path}: cannot write: {error.strerror or error}") from error


# --- fleet publish-badges --------------------------------------------------------------------


def _publish_badges(args: argparse.Namespace) -> int:
    data = _read_register_file(args.file)
    register = parse_badge_register(data, args.file)
    problems = _register_problems(register)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{args.file}: not published", file=sys.stderr)
        return 1
    if register.encoding != "utf-8":
        print(f"{args.file}: {CP1252_NOTE}; published as UTF-8", file=sys.stderr)
    text = data.decode(register.encoding)
    key = _signing_key(args.key)
    topic = SiteTopics(args.prefix, args.site).badges
    with connected(_client_id("publish-badges"), broker_access(args)) as client:
        version = _next_version(args.version, _retained_version(client, topic), topic)
        payload = register_document(text, args.site, version, key)
        publish_and_wait(client, topic, payload, qos=1, retain=True)
    sha256 = _sha256(text)
    print(
        f"published version {version} ({len(register.workers)} workers, sha256 {sha256}) to {topic}"
    )
    return 0


def _next_version(asked: int | None, retained: int | None, topic: str) -> int:
    """The version asked for, if the boxes would take it after the retained one; else the
    Unix time, or the retained version + 1 if that is not older (a clock set back)."""
    if asked is None:
        return max(int(time.time()), (retained or 0) + 1)
    if retained is not None and asked <= retained:
        raise SignedDocumentError(
            f"{topic}: version {asked} is not newer than the retained {retained}:"
            " the boxes would refuse it"
        )
    return asked


def _retained_version(client: mqtt.Client, topic: str) -> int | None:
    """The version of the register retained on `topic`, None if there is none.

    The broker sends a subscription's retained message before it answers the next
    SUBSCRIBE on the same connection: the second SUBACK (asking for no retained copy) says
    that whatever was retained has arrived, with no wait for something that may not come."""
    retained: list[bytes] = []
    client.on_message = lambda _client, _userdata, message: retained.append(bytes(message.payload))
    _subscribe(client, topic, SubscribeOptions(qos=1))
    _subscribe(client, topic, SubscribeOptions(qos=1, retainHandling=2))
    client.unsubscribe(topic)
    return _version_in(retained[0]) if retained else None


def _subscribe(client: mqtt.Client, topic: str, options: SubscribeOptions) -> None:
    answered = threading.Event()
    reasons: list[ReasonCode] = []

    def on_subscribe(
        _client: mqtt.Client, _userdata: object, _mid: int, codes: list[ReasonCode], _: object
    ) -> None:
        reasons.extend(codes)
        answered.set()

    client.on_subscribe = on_subscribe
    client.subscribe(topic, options=options)
    if not answered.wait(CONNECT_TIMEOUT_S):
        raise FleetError(f"{topic}: the broker did not answer SUBSCRIBE in {CONNECT_TIMEOUT_S:g} s")
    refused = [reason for reason in reasons if reason.is_failure]
    if refused:
        raise FleetError(f"{topic}: cannot read the retained register: {refused[0]}")


def _version_in(payload: bytes) -> int | None:
    """The version a retained register claims (unchecked: only to publish a newer one)."""
    try:
        version = json.loads(payload).get("version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _read_register_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise BadgeFileError(f"{path}: cannot read: {error.strerror or error}") from error


def _register_problems(register: BadgeRegister) -> list[str]:
    """Every reason the boxes would refuse the register, as `badges check` prints them."""
    problems = [str(error) for error in register.errors]
    empty = register.no_worker()
    if empty is not None:
        problems.append(empty)
    return problems


def _sha256(text: str) -> str:
    """The hash a box reports for the register: of its CSV text as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- fleet command ---------------------------------------------------------------------------


def _send_command(args: argparse.Namespace) -> int:
    command = Command(args.name)
    payload = command_document(
        command, args.site, args.box, _signing_key(args.key), args.expires_in
    )
    site = SiteTopics(args.prefix, args.site)
    topic = site.commands if args.box is None else site.box_commands(args.box)
    with connected(_client_id("command"), broker_access(args)) as client:
        publish_and_wait(client, topic, payload, qos=1, retain=False)
    document = json.loads(payload)
    print(f"sent {command} (id {document['id']}, expires {document['expires_utc']}) to {topic}")
    return 0


# --- shared ----------------------------------------------------------------------------------


def _signing_key(name: str) -> Ed25519PrivateKey:
    """The key from a file; a bare name is a systemd credential when run inside a unit
    ($CREDENTIALS_DIRECTORY set), as the daemon's keys are."""
    from gateway.system.credentials import key_path, load_signing_key

    if "/" not in name and "CREDENTIALS_DIRECTORY" in os.environ:
        return load_signing_key(key_path(name))
    return load_signing_key(Path(name).absolute())


def _client_id(action: str) -> str:
    return f"badge-gateway-{action}-{uuid.uuid4().hex[:12]}"


def _site(text: str) -> str:
    try:
        return check_name(text, "site id")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _box(text: str) -> str:
    try:
        return check_box(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _version(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"version {text!r}: an integer >= 1")
    return int(text)


def _duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip())
    span = timedelta(seconds=int(match[1]) * _UNITS[match[2] or "s"]) if match else None
    if span is None or not timedelta(0) < span <= MAX_COMMAND_LIFETIME:
        raise argparse.ArgumentTypeError(
            f"duration {text!r}: a number with s, m, h or d (90s, 10m, 2h), at most 1 day"
        )
    return span
