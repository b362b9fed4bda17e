"""`badge-gateway fleet keygen | publish-badges | command`, run as the employer runs them (a
process), against a real Mosquitto with TLS, a password file and the fleet's ACL; what they
publish is read back by the boxes' own broker users and checked as a box checks it."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from gateway.fleet.connection import connected, publish_and_wait
from gateway.fleet.signed import Command, read_command, read_register
from gateway.identifiers import make_niss
from tests.fleet.broker import MosquittoBroker
from tests.support import EMPLOYER, REPO

CLI_TIMEOUT_S = 60.0
MESSAGE_TIMEOUT_S = 10.0
BADGES_TOPIC = "badge-gateway/site-a/badges"
HEADER = "badge_uid,niss,employer,name,language,capacity"
GOOD_CSV = (
    f"{HEADER}\n04000001,{make_niss('850730', 101)},{EMPLOYER},Marie Dubois,fr,employee\n"
    f"04000002,{make_niss('850730', 102)},{EMPLOYER},Jan Peeters,nl,student\n"
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CREDENTIALS_DIRECTORY"}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def secret_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    """The employer's signing key file and its public key (hex)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    return secret_file(tmp_path / "fleet-signing.pem", pem), public


def broker_options(
    broker: MosquittoBroker, tmp_path: Path, password: str | None = None
) -> list[str]:
    password = password or broker.access("fleet").password or ""
    password_file = secret_file(tmp_path / f"fleet-{uuid.uuid4().hex}.pw", password.encode())
    return [
        "--broker",
        broker.url,
        "--ca-file",
        str(broker.ca_file),
        "--username",
        "fleet",
        "--password-file",
        str(password_file),
    ]


@contextmanager
def inbox(
    broker: MosquittoBroker, user: str, topic: str
) -> Iterator[queue.Queue[mqtt.MQTTMessage]]:
    """What `user` receives on `topic`, subscribed (SUBACK received) before it is yielded."""
    messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    with connected(f"test-{user}-{uuid.uuid4().hex[:8]}", broker.access(user)) as client:
        client.on_message = lambda _client, _userdata, message: messages.put(message)
        subscribe(client, topic)
        yield messages


def subscribe(client: mqtt.Client, topic: str) -> None:
    acknowledged = threading.Event()
    client.on_subscribe = lambda *_: acknowledged.set()
    client.subscribe(topic, qos=1)
    assert acknowledged.wait(MESSAGE_TIMEOUT_S), f"no SUBACK for {topic}"


def next_message(messages: queue.Queue[mqtt.MQTTMessage]) -> mqtt.MQTTMessage:
    return messages.get(timeout=MESSAGE_TIMEOUT_S)


def test_keygen_writes_a_0600_key_prints_its_public_key_and_never_overwrites(
    tmp_path: Path,
) -> None:
    out = tmp_path / "fleet-signing.pem"
    made = run("fleet", "keygen", "--out", str(out))
    assert made.returncode == 0, made.stderr
    public = made.stdout.strip()
    assert len(public) == 64 and int(public, 16) >= 0
    assert out.stat().st_mode & 0o777 == 0o600
    before = out.read_bytes()

    again = run("fleet", "keygen", "--out", str(out))
    assert again.returncode == 1
    assert again.stderr == f"badge-gateway: {out}: already exists; refusing to overwrite a key\n"
    assert out.read_bytes() == before


def test_publish_badges_leaves_a_retained_register_a_box_of_the_site_accepts(
    broker: MosquittoBroker, tmp_path: Path, key: tuple[Path, str]
) -> None:
    key_file, public = key
    badges = tmp_path / "badges.csv"
    badges.write_text(GOOD_CSV)
    published = run(
        "fleet", "publish-badges", str(badges), "--site", "site-a", "--key", str(key_file),
        "--version", "42", *broker_options(broker, tmp_path),
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    sha256 = hashlib.sha256(GOOD_CSV.encode()).hexdigest()
    assert published.stdout == (
        f"published version 42 (2 workers, sha256 {sha256}) to {BADGES_TOPIC}\n"
    )

    with inbox(broker, "box-a1", BADGES_TOPIC) as messages:  # after the fact: retained
        message = next_message(messages)
    assert message.retain
    got = read_register(message.payload, site="site-a", public_key=public, applied_version=41)
    assert (got.version, got.sha256, got.csv_text) == (42, sha256, GOOD_CSV)
    assert sorted(got.register.workers) == ["04000001", "04000002"]


def test_publish_badges_versions_by_the_unix_time_by_default(
    broker: MosquittoBroker, tmp_path: Path, key: tuple[Path, str]
) -> None:
    key_file, public = key
    badges = tmp_path / "badges.csv"
    badges.write_text(GOOD_CSV)
    before = int(time.time())
    published = run(
        "fleet", "publish-badges", str(badges), "--site", "site-a", "--key", str(key_file),
        *broker_options(broker, tmp_path),
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    with inbox(broker, "box-a2", BADGES_TOPIC) as messages:
        payload = next_message(messages).payload
    version = read_register(payload, site="site-a", public_key=public, applied_version=None).version
    assert before <= version <= int(time.time())


def test_an_excel_windows_1252_register_reaches_the_boxes_as_utf_8(
    broker: MosquittoBroker, tmp_path: Path, key: tuple[Path, str]
) -> None:
    key_file, public = key
    badges = tmp_path / "badges.csv"
    badges.write_bytes(GOOD_CSV.replace("Marie Dubois", "Hélène Dubois").encode("cp1252"))
    published = run(
        "fleet", "publish-badges", str(badges), "--site", "site-a", "--key", str(key_file),
        "--version", "3", *broker_options(broker, tmp_path),
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert published.stderr.startswith(f"{badges}: not UTF-8: read as Windows-1252")
    with inbox(broker, "box-a1", BADGES_TOPIC) as messages:
        payload = next_message(messages).payload
    got = read_register(payload, site="site-a", public_key=public, applied_version=None)
    worker = got.register.lookup("04000001")
    assert worker is not None and worker.name == "Hélène Dubois"


def test_a_version_not_newer_than_the_retained_one_is_refused_and_the_default_follows_it(
    broker: MosquittoBroker, tmp_path: Path, key: tuple[Path, str]
) -> None:
    key_file, public = key
    badges = tmp_path / "badges.csv"
    badges.write_text(GOOD_CSV)
    options = [str(badges), "--site", "site-a", "--key", str(key_file)]
    options += broker_options(broker, tmp_path)
    future = run("fleet", "publish-badges", *options, "--version", "9999999999")
    assert future.returncode == 0, future.stderr

    older = run("fleet", "publish-badges", *options, "--version", "42")
    assert (older.returncode, older.stdout) == (1, "")
    assert older.stderr == (
        f"badge-gateway: {BADGES_TOPIC}: version 42 is not newer than the retained 9999999999:"
        " the boxes would refuse it\n"
    )
    following = run("fleet", "publish-badges", *options)  # the Unix time is older: one more
    assert following.returncode == 0, following.stderr
    assert following.stdout.startswith("published version 10000000000 (2 workers, ")

    with inbox(broker, "box-a1", BADGES_TOPIC) as messages:
        payload = next_message(messages).payload
    got = read_register(payload, site="site-a", public_key=public, applied_version=9999999999)
    assert got.version == 10000000000


@pytest.mark.parametrize(
    ("csv_text", "problems"),
    [
        (
            GOOD_CSV + f"04000003,{make_niss('850730', 103)},{EMPLOYER},Ann,xx,employee\n"
            f"04000004,{make_niss('850730', 104)},{EMPLOYER},Bo,fr,boss\n",
            ["{file}:4: language: must be one of", "{file}:5: capacity: must be one of"],
        ),
        (HEADER + "\n", ["{file}: no worker: the file holds only its header"]),
    ],
    ids=["refused-lines", "no-worker"],
)
def test_a_register_a_box_would_refuse_is_not_published(
    broker: MosquittoBroker,
    tmp_path: Path,
    key: tuple[Path, str],
    csv_text: str,
    problems: list[str],
) -> None:
    badges = tmp_path / "badges.csv"
    badges.write_text(csv_text)
    refused = run(
        "fleet", "publish-badges", str(badges), "--site", "site-a", "--key", str(key[0]),
        *broker_options(broker, tmp_path),
    )  # fmt: skip
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert len(lines) == len(problems) + 1 and "Traceback" not in refused.stderr
    for line, problem in zip(lines, problems, strict=False):
        assert line.startswith(problem.format(file=badges))
    assert lines[-1] == f"{badges}: not published"
    assert refused.stdout == ""
    assert nothing_retained(broker, BADGES_TOPIC)


def nothing_retained(broker: MosquittoBroker, topic: str) -> bool:
    """No retained message on `topic`: a retained fence, subscribed after it, arrives first
    (the broker sends a client's retained messages in the order of its subscriptions)."""
    fence = "badge-gateway/site-a/commands/fence"
    with connected(f"test-fence-{uuid.uuid4().hex[:8]}", broker.access("fleet")) as client:
        publish_and_wait(client, fence, b"fence", retain=True)
        messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        client.on_message = lambda _client, _userdata, message: messages.put(message)
        subscribe(client, topic)
        subscribe(client, fence)
        first = next_message(messages)
    return first.topic == fence


@pytest.mark.parametrize("problem", ["wrong-password", "key-readable-by-others"])
def test_a_failure_is_one_line_on_stderr_and_exit_1(
    broker: MosquittoBroker, tmp_path: Path, key: tuple[Path, str], problem: str
) -> None:
    key_file, _ = key
    badges = tmp_path / "badges.csv"
    badges.write_text(GOOD_CSV)
    password = "not-the-password" if problem == "wrong-password" else None
    if problem == "key-readable-by-others":
        key_file.chmod(0o644)
    failed = run(
        "fleet", "publish-badges", str(badges), "--site", "site-a", "--key", str(key_file),
        *broker_options(broker, tmp_path, password),
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stdout == ""
    (line,) = failed.stderr.splitlines()
    expected = {
        "wrong-password": f"badge-gateway: cannot connect to the broker: {broker.url}: refused: ",
        "key-readable-by-others": f"badge-gateway: {key_file}: readable by others (mode 0644)",
    }[problem]
    assert line.startswith(expected), line
    assert nothing_retained(broker, BADGES_TOPIC)


def test_a_command_for_one_box_reaches_only_that_box(
    broker: MosquittoBroker, tmp_path: Path, key: tuple[Path, str]
) -> None:
    key_file, public = key
    options = ["--site", "site-a", "--key", str(key_file), *broker_options(broker, tmp_path)]
    commands = "badge-gateway/site-a/commands/#"
    with inbox(broker, "box-a1", commands) as box_a1, inbox(broker, "box-a2", commands) as box_a2:
        for_a2 = run("fleet", "command", "reload", "--box", "box-a2", *options)
        assert for_a2.returncode == 0, for_a2.stderr
        assert for_a2.stdout.endswith(" to badge-gateway/site-a/commands/box-a2\n")
        for_all = run("fleet", "command", "publish-status", "--expires-in", "90s", *options)
        assert for_all.returncode == 0, for_all.stderr

        got_a2 = [next_message(box_a2), next_message(box_a2)]
        got_a1 = next_message(box_a1)  # the command for every box, box-a2's never came

    def command_of(message: mqtt.MQTTMessage, box: str) -> tuple[Command, str | None]:
        read = read_command(
            message.payload,
            site="site-a",
            box=box,
            public_key=public,
            now=datetime.now(UTC),
            seen=(),
        )
        assert not message.retain
        return read.command, read.box

    assert [command_of(m, "box-a2") for m in got_a2] == [
        (Command.RELOAD, "box-a2"),
        (Command.PUBLISH_STATUS, None),
    ]
    assert got_a1.topic == "badge-gateway/site-a/commands"
    assert command_of(got_a1, "box-a1") == (Command.PUBLISH_STATUS, None)
    assert f"sent publish-status (id {json.loads(got_a1.payload)['id']}, " in for_all.stdout
