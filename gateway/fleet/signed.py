"""Signed badge registers and commands: made by the employer's tools, checked by the box.

Both are JSON documents signed with the employer's Ed25519 key (gateway.evidence.signing:
`public_key` and `signature` over the canonical JSON of the rest); the box pins the public
key from its configuration (`[mqtt] fleet_public_key`) and applies nothing else.

    {"type": "badge-register", "site": S, "version": int >= 1, "issued_utc": iso,
     "csv": "<the badge file's whole text>"}
    {"type": "command", "site": S, "box": B or null, "command": "reload" | "publish-status",
     "id": "<uuid4 hex>", "issued_utc": iso, "expires_utc": iso}

A register is checked line by line by exactly the rules of the local file (badges.py); one
refused line refuses the whole register, since the employer meant every line of it. Each
refusal is one SignedDocumentError line saying which check failed, never with a NISS in it
(badges.py masks any NISS a LineError quotes).

cryptography is imported only inside the functions that sign or verify: the daemon imports
this module when `[mqtt]` is on, and pays for cryptography when the first document comes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.badges import BadgeRegister, parse_badge_register
from gateway.errors import BadgeFileError, SignedDocumentError
from gateway.fleet.topics import check_box, check_name

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REGISTER_TYPE = "badge-register"
COMMAND_TYPE = "command"
MAX_REGISTER_BYTES = 8 * 1024 * 1024
MAX_COMMAND_BYTES = 4 * 1024
CLOCK_SKEW = timedelta(minutes=5)
# A command lives minutes; a day at most, so that a recorded one cannot be replayed for long
# to a box that restarted and forgot the ids it has seen.
MAX_COMMAND_LIFETIME = timedelta(days=1)
_KEY_SHOWN = 16
_VALUE_SHOWN = 40
_COMMAND_ID = re.compile(r"[0-9a-f]{32}")


class Command(StrEnum):
    RELOAD = "reload"
    PUBLISH_STATUS = "publish-status"


@dataclass(frozen=True)
class SignedRegister:
    version: int
    issued: datetime
    csv_text: str
    sha256: str  # of the CSV as UTF-8: what the box reports in its status
    register: BadgeRegister


@dataclass(frozen=True)
class SignedCommand:
    command: Command
    id: str
    box: str | None  # None: every box of the site
    issued: datetime
    expires: datetime


# --- Making (the employer's tools) -----------------------------------------------------------


def register_document(
    csv_text: str,
    site: str,
    version: int,
    key: Ed25519PrivateKey,
    issued: datetime | None = None,
) -> bytes:
    """The signed register, as published; SignedDocumentError if a box would refuse it for
    its size or version (the lines are the caller's to check: `badges check`)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SignedDocumentError(f"badge register: version {version!r} is not an integer >= 1")
    document = {
        "type": REGISTER_TYPE,
        "site": _valid(check_name, site, "site id"),
        "version": version,
        "issued_utc": _iso(issued or datetime.now(UTC)),
        "csv": csv_text,
    }
    return _signed_payload(document, key, MAX_REGISTER_BYTES, "badge register")


def command_document(
    command: Command,
    site: str,
    box: str | None,
    key: Ed25519PrivateKey,
    expires_in: timedelta,
    issued: datetime | None = None,
) -> bytes:
    """A signed command for every box of `site` (box None) or for one box."""
    if not timedelta(0) < expires_in <= MAX_COMMAND_LIFETIME:
        raise SignedDocumentError(
            f"command: expires in {_duration(expires_in)}: must be more than 0 and at most"
            f" {_duration(MAX_COMMAND_LIFETIME)}"
        )
    issued = issued or datetime.now(UTC)
    document = {
        "type": COMMAND_TYPE,
        "site": _valid(check_name, site, "site id"),
        "box": None if box is None else _valid(_box_id, box, "box id"),
        "command": Command(command).value,
        "id": uuid.uuid4().hex,
        "issued_utc": _iso(issued),
        "expires_utc": _iso(issued + expires_in),
    }
    return _signed_payload(document, key, MAX_COMMAND_BYTES, "command")


def _signed_payload(
    document: dict[str, Any], key: Ed25519PrivateKey, limit: int, what: str
) -> bytes:
    from gateway.evidence.signing import signed

    payload = json.dumps(signed(document, key), ensure_ascii=False).encode("utf-8")
    if len(payload) > limit:
        raise SignedDocumentError(
            f"{what}: {len(payload)} bytes signed, more than the {_size(limit)} a box accepts"
        )
    return payload


def _valid(check: Callable[[str, str], str], value: str, what: str) -> str:
    try:
        return check(value, what)
    except ValueError as error:
        raise SignedDocumentError(str(error)) from None


def _box_id(value: str, _what: str) -> str:
    return check_box(value)


# --- Checking (the box) ----------------------------------------------------------------------


def read_register(
    payload: bytes | bytearray,
    *,
    site: str,
    public_key: str,
    applied_version: int | None,
) -> SignedRegister:
    """The register in `payload` if it may replace the applied one; else SignedDocumentError
    saying which check failed."""
    what = "badge register"
    document = _signed_document(payload, REGISTER_TYPE, MAX_REGISTER_BYTES, public_key, what)
    _check_site(document, site, what)
    version = _version(document)
    if applied_version is not None and version <= applied_version:
        raise SignedDocumentError(
            f"{what}: version {version} is not newer than the applied {applied_version}"
        )
    issued = _timestamp(document, "issued_utc", what)
    csv_text = _text(document, "csv", what)
    register = _parsed(csv_text, Path(f"{site} badge register v{version}"), what)
    return SignedRegister(version, issued, csv_text, register.sha256, register)


def read_command(
    payload: bytes | bytearray,
    *,
    site: str,
    box: str,
    public_key: str,
    now: datetime,
    seen: Container[str],
) -> SignedCommand:
    """The command in `payload` if this box may run it now; else SignedDocumentError saying
    which check failed. `seen`: the ids of the commands already run (a replay is refused)."""
    document = _signed_document(payload, COMMAND_TYPE, MAX_COMMAND_BYTES, public_key, "command")
    _check_site(document, site, "command")
    target = _target_box(document, box)
    command = _command(document)
    command_id = _command_id(document)
    what = f"command {command} {command_id}"
    issued = _timestamp(document, "issued_utc", what)
    expires = _timestamp(document, "expires_utc", what)
    _check_times(issued, expires, now, what)
    if command_id in seen:
        raise SignedDocumentError(f"{what}: already run: a replay")
    return SignedCommand(command, command_id, target, issued, expires)


def _signed_document(
    payload: bytes | bytearray, kind: str, limit: int, public_key: str, what: str
) -> Mapping[str, Any]:
    if len(payload) > limit:
        raise SignedDocumentError(
            f"{what}: {len(payload)} bytes, more than the {_size(limit)} accepted"
        )
    try:
        document = json.loads(payload)
    except ValueError as error:  # UnicodeDecodeError is one too
        raise SignedDocumentError(f"{what}: not JSON: {error}") from None
    if not isinstance(document, dict):
        raise SignedDocumentError(f"{what}: not a JSON object")
    _check_type(document, kind, what)
    _check_signature(document, public_key, what)
    return document


def _check_type(document: Mapping[str, Any], kind: str, what: str) -> None:
    if "type" not in document:
        raise SignedDocumentError(f"{what}: no 'type' field (expected {kind!r})")
    if document["type"] != kind:
        raise SignedDocumentError(f"{what}: type {_shown(document['type'])}, expected {kind!r}")


def _check_signature(document: Mapping[str, Any], pinned: str, what: str) -> None:
    signature, key = document.get("signature"), document.get("public_key")
    if not isinstance(signature, str) or not isinstance(key, str):
        raise SignedDocumentError(f"{what}: not signed (no 'signature' and 'public_key')")
    if key.lower() != pinned.lower():
        raise SignedDocumentError(
            f"{what}: signed by key {key[:_KEY_SHOWN]}…, not by the pinned fleet_public_key"
            f" {pinned[:_KEY_SHOWN]}…"
        )
    from gateway.evidence.signing import signature_problems

    problems = signature_problems(document, pinned, what)
    if problems:
        raise SignedDocumentError(problems[0])


def _check_site(document: Mapping[str, Any], site: str, what: str) -> None:
    theirs = document.get("site")
    if theirs != site:
        raise SignedDocumentError(f"{what}: for site {_shown(theirs)}, not this site {site!r}")


def _version(document: Mapping[str, Any]) -> int:
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SignedDocumentError(
            f"badge register: version {_shown(version)} is not an integer >= 1"
        )
    return version


def _parsed(csv_text: str, source: Path, what: str) -> BadgeRegister:
    try:
        register = parse_badge_register(csv_text.encode("utf-8"), source)
    except BadgeFileError as error:
        raise SignedDocumentError(f"{what}: {error}") from None
    if register.errors:
        lines = len({error.line for error in register.errors})
        raise SignedDocumentError(
            f"{what}: {lines} refused line(s), the first: {register.errors[0]}"
        )
    empty = register.no_worker()
    if empty is not None:
        raise SignedDocumentError(f"{what}: {empty}")
    return register


def _target_box(document: Mapping[str, Any], box: str) -> str | None:
    target = document.get("box")
    if target is not None and target != box:
        raise SignedDocumentError(f"command: for box {_shown(target)}, not this box {box!r}")
    return None if target is None else box


def _command(document: Mapping[str, Any]) -> Command:
    name = document.get("command")
    known = [command.value for command in Command]
    if not isinstance(name, str) or name not in known:
        raise SignedDocumentError(
            f"command: unknown command {_shown(name)} (known: {', '.join(known)})"
        )
    return Command(name)


def _command_id(document: Mapping[str, Any]) -> str:
    command_id = document.get("id")
    if not isinstance(command_id, str) or not _COMMAND_ID.fullmatch(command_id):
        raise SignedDocumentError(f"command: id {_shown(command_id)} is not 32 hex digits")
    return command_id


def _check_times(issued: datetime, expires: datetime, now: datetime, what: str) -> None:
    if expires <= now:
        raise SignedDocumentError(
            f"{what}: expired {_duration(now - expires)} ago (at {_iso(expires)})"
        )
    if issued > now + CLOCK_SKEW:
        raise SignedDocumentError(
            f"{what}: issued {_duration(issued - now)} in the future (at {_iso(issued)};"
            f" the clocks may differ by {_duration(CLOCK_SKEW)} at most)"
        )
    if expires - issued > MAX_COMMAND_LIFETIME:
        raise SignedDocumentError(
            f"{what}: valid for {_duration(expires - issued)}, more than the"
            f" {_duration(MAX_COMMAND_LIFETIME)} allowed"
        )


def _timestamp(document: Mapping[str, Any], field: str, what: str) -> datetime:
    text = document.get(field)
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise SignedDocumentError(
            f"{what}: {field} {_shown(text)} is not an ISO 8601 time with its offset"
        )
    return moment.astimezone(UTC)


def _text(document: Mapping[str, Any], field: str, what: str) -> str:
    value = document.get(field)
    if not isinstance(value, str):
        raise SignedDocumentError(f"{what}: {field} is missing or not a string")
    return value


# --- Wording ---------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _shown(value: object) -> str:
    """A field's value as a message may quote it: short, one line. Only fields that hold no
    personal data are quoted (type, site, box, command, id, version, times)."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= _VALUE_SHOWN else text[: _VALUE_SHOWN - 1] + "…"


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "min"), (seconds, "s")]
    shown = [f"{count} {unit}" for count, unit in parts if count]
    return " ".join(shown) or "0 s"


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"
