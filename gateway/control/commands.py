"""The control socket's commands: what `badge-gateway tap`, `status`, `registrations` and
`queue list|export|retry|confirm` ask the running daemon, each a handler from a request to a reply.

A request the command cannot take raises ControlError, which the server sends back as
`{"ok": false, "error": ...}`. Journal reads and writes run off the event loop.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from drivers.base import BadgeRead
from gateway.clock import boottime_ns
from gateway.control.server import EncodedReply, Handler
from gateway.control.status import (
    QUEUE_MAX,
    collect,
    delivery_json,
    outcome_json,
    registration_json,
)
from gateway.control.view import ControlJournal, DaemonView
from gateway.errors import (
    ControlError,
    InvalidIdentifier,
    NoLookupError,
    StorageError,
    UplinkError,
)
from gateway.identifiers import check_reader_name, normalise_uid
from gateway.models import DeliveryState

if TYPE_CHECKING:
    from gateway.uplink.service import Held

log = structlog.get_logger("control")


def handlers(daemon: DaemonView) -> dict[str, Handler]:
    """The command table of the daemon's control socket."""
    commands = _Commands(daemon)
    return {
        "tap": commands.tap,
        "status": commands.status,
        "registrations": commands.registrations,
        "queue": commands.queue,
        "requeue": commands.requeue,
        "confirm": commands.confirm,
    }


# What an ONSS registration id may look like when the employer types it: the ONSS's own
# are integers; any other id it gave is taken as text, within reason.
ONSS_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._:/-]{0,63}")
ONSS_ID_MAX = 10**64  # an integer id of more digits is no id


class _Commands:
    def __init__(self, daemon: DaemonView) -> None:
        self._daemon = daemon

    @property
    def _journal(self) -> ControlJournal:
        journal = self._daemon.journal
        assert journal is not None  # opened before the socket
        return journal

    async def tap(self, request: dict[str, Any]) -> dict[str, Any]:
        """Inject a tap as if a reader had read it; the reply is its outcome."""
        return {"outcome": outcome_json(await self._daemon.tap(_tap_read(request)))}

    async def status(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"status": await asyncio.to_thread(collect, self._daemon)}

    async def registrations(self, request: dict[str, Any]) -> dict[str, Any]:
        """Registrations since a moment (`badge-gateway registrations`)."""
        since_ns = request.get("since_ns", 0)
        limit = request.get("limit", 1000)
        if not isinstance(since_ns, int) or not isinstance(limit, int) or not 0 < limit <= 10_000:
            raise ControlError('"since_ns" must be an integer, "limit" 1..10000')
        stored = await asyncio.to_thread(self._journal.registrations_since, since_ns, limit)
        return {"registrations": [registration_json(item) for item in stored]}

    async def queue(self, request: dict[str, Any]) -> EncodedReply:
        """Registrations with their delivery details, newest first (`queue list`, `export`)."""
        state, limit, show_niss = _queue_query(request)
        return await asyncio.to_thread(self._queue_reply, state, limit, show_niss)

    def _queue_reply(
        self, state: DeliveryState | None, limit: int, show_niss: bool
    ) -> EncodedReply:
        tz = self._daemon.config.site.tz
        records = [
            delivery_json(record, tz, full_niss=show_niss)
            for record in self._journal.deliveries(state, limit)
        ]
        return EncodedReply.of({"records": records})

    async def requeue(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send a rejected registration again, once the employer fixed its cause; or an
        unconfirmed one, flagged "possibly duplicated" (the ONSS may hold it already)."""
        registration_id = _registration_id(request)
        try:
            if await asyncio.to_thread(self._journal.requeue, registration_id):
                log.info(
                    "rejected registration requeued for delivery", registration=registration_id
                )
                return {"id": registration_id, "was": "rejected", "possibly_duplicated": False}
            retried = await asyncio.to_thread(self._journal.retry_unconfirmed, registration_id)
        except StorageError as error:
            raise ControlError(f"cannot store the requeue: {error}") from error
        if not retried:
            raise ControlError(
                f"no rejected or unconfirmed registration {registration_id}: unknown id, or"
                " not rejected nor unconfirmed (pending or delivered ones cannot be retried)"
            )
        log.warning(
            "unconfirmed registration requeued, flagged possibly duplicated",
            registration=registration_id,
        )
        return {"id": registration_id, "was": "unconfirmed", "possibly_duplicated": True}

    async def confirm(self, request: dict[str, Any]) -> dict[str, Any]:
        """The employer found an unconfirmed registration at the ONSS: delivered, with the
        id the ONSS gave it."""
        registration_id = _registration_id(request)
        onss_id = _onss_id(request)
        checked = await self._checked_at_the_onss(registration_id, onss_id)
        late_after_ns = int(self._daemon.config.uplink.late_after_minutes * 60e9)
        try:
            stored = await asyncio.to_thread(
                self._journal.confirm, registration_id, onss_id, late_after_ns
            )
        except StorageError as error:
            raise ControlError(f"cannot store the confirmation: {error}") from error
        if stored is None:
            raise ControlError(
                f"no unconfirmed registration {registration_id}: unknown id, or not"
                " unconfirmed (only those `queue list --state unconfirmed` shows)"
            )
        log.info(
            "unconfirmed registration confirmed",
            registration=registration_id,
            onss_id=stored,
            checked_at_the_onss=checked is not None,
        )
        reply: dict[str, Any] = {"id": registration_id, "onss_id": stored, "checked": False}
        if checked is not None:
            reply |= {"checked": True, "status": checked.status, "remarks": list(checked.remarks)}
        return reply

    async def _checked_at_the_onss(self, registration_id: str, onss_id: int | str) -> Held | None:
        """Where the service can say (Checkinatwork's getPresenceRegistration), the id must
        name this very registration; None where it cannot (CIaO): taken on the employer's
        word, as before."""
        try:
            held = await self._daemon.held_at_the_onss(onss_id)
        except NoLookupError:
            return None
        except UplinkError as error:
            raise ControlError(
                f"could not ask the ONSS about id {onss_id} ({error}): not confirmed; try again"
            ) from error
        if held is None:
            raise ControlError(
                f"the ONSS holds nothing of ours under id {onss_id}: not confirmed (check the id;"
                " or send it again, flagged: queue retry)"
            )
        if held.registration_id != registration_id:
            raise ControlError(
                f"ONSS id {onss_id} is registration {held.registration_id}, not"
                f" {registration_id}: not confirmed"
            )
        return held


def _tap_read(request: dict[str, Any]) -> BadgeRead:
    uid = request.get("uid")
    direction = request.get("direction")
    reader = request.get("reader", "control")
    if not isinstance(uid, str):
        raise ControlError('"uid" must be a string')
    try:
        uid = normalise_uid(uid)
    except InvalidIdentifier as error:
        raise ControlError(f"uid: {error}") from error
    if direction not in (None, "IN", "OUT"):
        raise ControlError('"direction" must be "IN", "OUT" or null')
    if not isinstance(reader, str):
        raise ControlError('"reader" must be a string')
    try:
        check_reader_name(reader)
    except InvalidIdentifier as error:
        raise ControlError(f'"reader" {error}') from error
    return BadgeRead(uid, reader, "control", boottime_ns(), direction)


def _queue_query(request: dict[str, Any]) -> tuple[DeliveryState | None, int, bool]:
    state = request.get("state")
    limit = request.get("limit", 1000)
    show_niss = request.get("show_niss", False)
    try:
        delivery = None if state is None else DeliveryState(state)
    except ValueError:
        states = ", ".join(f'"{known.value}"' for known in DeliveryState)
        raise ControlError(f'"state" must be one of {states} or null') from None
    if not isinstance(limit, int) or not 0 < limit <= QUEUE_MAX:
        raise ControlError(f'"limit" must be an integer 1..{QUEUE_MAX}')
    if not isinstance(show_niss, bool):
        raise ControlError('"show_niss" must be true or false')
    return delivery, limit, show_niss


def _registration_id(request: dict[str, Any]) -> str:
    text = request.get("id")
    if not isinstance(text, str):
        raise ControlError('"id" must be a string (a registration id from `queue list`)')
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError as error:
        raise ControlError(f"{text!r} is not a registration id (a UUID)") from error


def _onss_id(request: dict[str, Any]) -> int | str:
    """The id the ONSS gave a registration, as the employer found it: an integer, or text
    of 1 to 64 letters, digits and . _ : / - (no spaces, no control characters)."""
    value = request.get("onss_id")
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < ONSS_ID_MAX:
            raise ControlError('"onss_id": an integer id is 0 or more, of at most 64 digits')
        return value
    if not isinstance(value, str):
        raise ControlError('"onss_id" must be the id the ONSS gave the registration')
    text = value.strip()
    if not ONSS_ID.fullmatch(text):
        shown = text[:70] + ("..." if len(text) > 70 else "")
        raise ControlError(
            f"{shown!r} is not an ONSS registration id: 1 to 64 letters or digits"
            " (and . _ : / -), as the ONSS gave it"
        )
    return text
