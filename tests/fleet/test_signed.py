"""Signed badge registers and commands: what the employer's tools make, the box reads back,
and every document the box must refuse, each with the reason it gives. Pure and fast: real
Ed25519 keys, no broker."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import SignedDocumentError
from gateway.evidence.signing import signed
from gateway.fleet.signed import (
    MAX_COMMAND_BYTES,
    MAX_REGISTER_BYTES,
    Command,
    command_document,
    read_command,
    read_register,
    register_document,
)
from gateway.identifiers import make_niss
from tests.support import EMPLOYER, REPO

KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
ISSUED = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
HEADER = "badge_uid,niss,employer,name,language,capacity"
NISS = make_niss("850730", 101)
GOOD_CSV = (
    f"{HEADER}\n04000001,{NISS},{EMPLOYER},Marie Dubois,fr,employee\n"
    f"04000002,{make_niss('850730', 102)},{EMPLOYER},Jan Peeters,nl,student\n"
)


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


PINNED = public_hex(KEY)


def register(csv_text: str = GOOD_CSV, *, version: int = 7, key: Ed25519PrivateKey = KEY) -> bytes:
    return register_document(csv_text, "site-a", version, key, issued=ISSUED)


def read(payload: bytes, applied: int | None = None) -> Any:
    return read_register(payload, site="site-a", public_key=PINNED, applied_version=applied)


def refusal(payload: bytes, applied: int | None = None) -> str:
    with pytest.raises(SignedDocumentError) as caught:
        read(payload, applied)
    return str(caught.value)


def sign(document: dict[str, Any], key: Ed25519PrivateKey = KEY) -> bytes:
    return json.dumps(signed(document, key)).encode()


def register_fields(**changes: Any) -> dict[str, Any]:
    document = json.loads(register())
    del document["public_key"], document["signature"]
    return {**document, **changes}


# --- registers -------------------------------------------------------------------------------


def test_a_good_register_is_read_back_with_its_workers() -> None:
    got = read(register(), applied=6)
    assert (got.version, got.issued, got.csv_text) == (7, ISSUED, GOOD_CSV)
    assert sorted(got.register.workers) == ["04000001", "04000002"]
    assert got.register.lookup("04:00:00:01").name == "Marie Dubois"
    assert got.sha256 == got.register.sha256
    assert len(got.sha256) == 64
    assert read(register(), applied=None).version == 7  # nothing applied yet


def test_a_register_over_8_mib_is_refused_before_it_is_parsed() -> None:
    payload = b"{" + b" " * MAX_REGISTER_BYTES + b"}"
    assert refusal(payload) == (
        f"badge register: {MAX_REGISTER_BYTES + 2} bytes, more than the 8 MiB accepted"
    )


def test_the_publisher_refuses_to_make_a_register_a_box_would_refuse_for_its_size() -> None:
    line = f"04000001,{NISS},{EMPLOYER},Marie Dubois,fr,employee\n"
    huge = HEADER + "\n" + line * (MAX_REGISTER_BYTES // len(line) + 1)
    with pytest.raises(SignedDocumentError, match=r"bytes signed, more than the 8 MiB a box"):
        register(huge)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "badge register: not JSON: "),
        (b'{"type": "badge-register"', "badge register: not JSON: "),
        (b"[1, 2]", "badge register: not a JSON object"),
        (b"{}", "badge register: no 'type' field (expected 'badge-register')"),
        (b'{"type": "command"}', "badge register: type \"command\", expected 'badge-register'"),
    ],
)
def test_what_is_not_a_register_is_refused_saying_why(payload: bytes, reason: str) -> None:
    assert refusal(payload).startswith(reason)


def test_an_unsigned_register_is_refused() -> None:
    payload = json.dumps(register_fields()).encode()
    assert refusal(payload) == "badge register: not signed (no 'signature' and 'public_key')"


def test_a_register_signed_by_another_key_names_both_keys_by_their_first_16_digits() -> None:
    reason = refusal(register(key=OTHER_KEY))
    other = public_hex(OTHER_KEY)
    assert reason == (
        f"badge register: signed by key {other[:16]}…, not by the pinned fleet_public_key"
        f" {PINNED[:16]}…"
    )


def test_a_register_whose_csv_was_changed_after_signing_is_refused() -> None:
    document = json.loads(register())
    document["csv"] = document["csv"].replace("Marie Dubois", "Mallory")
    assert refusal(json.dumps(document).encode()) == (
        "badge register was changed after it was signed: its signature does not hold"
    )


def test_a_register_for_another_site_is_refused() -> None:
    payload = register_document(GOOD_CSV, "site-b", 7, KEY)
    assert refusal(payload) == "badge register: for site \"site-b\", not this site 'site-a'"


@pytest.mark.parametrize(
    ("version", "shown"), [(0, "0"), ("8", '"8"'), (True, "true"), (None, "null")]
)
def test_a_version_that_is_not_an_integer_from_1_is_refused(version: object, shown: str) -> None:
    payload = sign(register_fields(version=version))
    assert refusal(payload) == f"badge register: version {shown} is not an integer >= 1"


@pytest.mark.parametrize("applied", [7, 8])
def test_a_version_not_newer_than_the_applied_one_is_refused(applied: int) -> None:
    assert refusal(register(version=7), applied=applied) == (
        f"badge register: version 7 is not newer than the applied {applied}"
    )


def test_a_register_with_a_refused_line_is_refused_whole_without_showing_the_niss() -> None:
    bad_niss = NISS[:-2] + f"{(int(NISS[-2:]) + 1) % 100:02d}"  # its check digits broken
    csv_text = (
        GOOD_CSV
        + f"04000003,{bad_niss},{EMPLOYER},Olga Nowak,xx,employee\n"
        + f"04000004,{make_niss('850730', 104)},{EMPLOYER},Ann,fr,boss\n"
    )
    reason = refusal(register(csv_text))
    assert reason.startswith(
        "badge register: 2 refused line(s), the first: site-a badge register v7:4: niss: "
    )
    assert bad_niss not in reason and NISS not in reason
    assert bad_niss[-3:] in reason  # masked as the file's messages mask it


def test_a_register_with_no_worker_is_refused() -> None:
    assert refusal(register(HEADER + "\n")) == (
        "badge register: site-a badge register v7: no worker: the file holds only its header"
    )


def test_a_register_without_its_header_is_refused() -> None:
    reason = refusal(register("04000001,Marie\n"))
    assert reason.startswith("badge register: site-a badge register v7:1: missing required column")


def test_a_register_whose_issued_time_is_not_iso_is_refused() -> None:
    payload = sign(register_fields(issued_utc="yesterday"))
    assert refusal(payload) == (
        'badge register: issued_utc "yesterday" is not an ISO 8601 time with its offset'
    )


# --- commands --------------------------------------------------------------------------------


def command(
    box: str | None = "box-a1",
    *,
    name: Command = Command.RELOAD,
    key: Ed25519PrivateKey = KEY,
    expires_in: timedelta = timedelta(minutes=10),
) -> bytes:
    return command_document(name, "site-a", box, key, expires_in, issued=ISSUED)


def read_cmd(
    payload: bytes,
    *,
    box: str = "box-a1",
    now: datetime = ISSUED + timedelta(minutes=1),
    seen: frozenset[str] = frozenset(),
) -> Any:
    return read_command(payload, site="site-a", box=box, public_key=PINNED, now=now, seen=seen)


def command_refusal(payload: bytes, **options: Any) -> str:
    with pytest.raises(SignedDocumentError) as caught:
        read_cmd(payload, **options)
    return str(caught.value)


def command_fields(**changes: Any) -> dict[str, Any]:
    document = json.loads(command())
    del document["public_key"], document["signature"]
    return {**document, **changes}


def test_a_command_for_a_box_is_read_back() -> None:
    payload = command(name=Command.PUBLISH_STATUS)
    got = read_cmd(payload)
    assert (got.command, got.box) == (Command.PUBLISH_STATUS, "box-a1")
    assert (got.issued, got.expires) == (ISSUED, ISSUED + timedelta(minutes=10))
    assert got.id == json.loads(payload)["id"] and len(got.id) == 32


def test_a_command_for_the_site_reaches_every_box_and_one_for_a_box_only_that_box() -> None:
    for_site = command(None)
    assert read_cmd(for_site, box="box-a1").box is None
    assert read_cmd(for_site, box="box-a2").box is None
    assert command_refusal(command("box-a1"), box="box-a2") == (
        "command: for box \"box-a1\", not this box 'box-a2'"
    )


def test_a_command_replayed_is_refused() -> None:
    payload = command()
    first = read_cmd(payload)
    assert command_refusal(payload, seen=frozenset({first.id})) == (
        f"command reload {first.id}: already run: a replay"
    )


def test_a_command_expires() -> None:
    payload = command(expires_in=timedelta(minutes=10))
    assert read_cmd(payload, now=ISSUED + timedelta(minutes=9, seconds=59)).command == "reload"
    reason = command_refusal(payload, now=ISSUED + timedelta(minutes=11, seconds=5))
    assert reason.endswith(": expired 1 min 5 s ago (at 2026-12-06T09:10:00+00:00)")


def test_a_command_issued_beyond_the_clock_skew_allowance_is_refused() -> None:
    payload = command()
    assert read_cmd(payload, now=ISSUED - timedelta(minutes=4, seconds=59)).command == "reload"
    reason = command_refusal(payload, now=ISSUED - timedelta(minutes=6))
    assert reason.endswith(
        ": issued 6 min in the future (at 2026-12-06T09:00:00+00:00; the clocks may differ"
        " by 5 min at most)"
    )


def test_a_command_valid_for_more_than_a_day_is_neither_made_nor_accepted() -> None:
    with pytest.raises(SignedDocumentError, match="at most 24 h"):
        command(expires_in=timedelta(days=2))
    with pytest.raises(SignedDocumentError, match="more than 0"):
        command(expires_in=timedelta(0))
    forged = sign(command_fields(expires_utc="2026-12-08T09:00:00+00:00"))
    assert command_refusal(forged).endswith(": valid for 48 h, more than the 24 h allowed")


def test_an_unknown_command_is_refused_even_when_signed() -> None:
    assert command_refusal(sign(command_fields(command="reboot"))) == (
        'command: unknown command "reboot" (known: reload, publish-status)'
    )


def test_a_command_signed_by_another_key_or_changed_is_refused() -> None:
    assert "not by the pinned fleet_public_key" in command_refusal(command(key=OTHER_KEY))
    document = json.loads(command("box-a1"))
    document["box"] = "box-a2"
    assert command_refusal(json.dumps(document).encode(), box="box-a2") == (
        "command was changed after it was signed: its signature does not hold"
    )


def test_a_command_over_4_kib_or_of_another_type_is_refused() -> None:
    assert command_refusal(b" " * (MAX_COMMAND_BYTES + 1)) == (
        f"command: {MAX_COMMAND_BYTES + 1} bytes, more than the 4 KiB accepted"
    )
    assert command_refusal(register()) == "command: type \"badge-register\", expected 'command'"


def test_a_command_for_another_site_is_refused() -> None:
    payload = command_document(Command.RELOAD, "site-b", None, KEY, timedelta(minutes=10))
    assert command_refusal(payload) == "command: for site \"site-b\", not this site 'site-a'"


def test_the_module_does_not_load_cryptography_until_a_document_comes() -> None:
    probe = "import sys, gateway.fleet.signed; print('cryptography' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "False", result.stderr
