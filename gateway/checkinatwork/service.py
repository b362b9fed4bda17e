"""Checkinatwork as the uplink's `Service`: a journal registration made into a presence item
for the day it was tapped, sent by `PresenceClient`.

The service takes only today or tomorrow as the RegistrationDate (§5.1.3 code 6, p. 12).
A presence that could not be delivered on its own day is never sent with another date,
which would register the person on a day they may not have worked: it is rejected
locally with the code `day-passed`, and the employer's report lists it as a case of force
majeure, with the outage that kept it on the box (docs/checkinatwork.md, "The date rule").
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import cast

from gateway.checkinatwork.client import PresenceClient
from gateway.checkinatwork.messages import MAX_ITEMS, PresenceItem, date_accepted, service_date
from gateway.errors import InvalidIdentifier
from gateway.journal import Outbound
from gateway.models import ClockSample, Direction
from gateway.uplink.service import BeforeSending, Held, Item, ItemResult, Unsendable
from gateway.uplink.timing import SendTime

DAY_PASSED = "day-passed"  # the code of a presence not delivered on its day


class CheckinatworkService:
    name = "checkinatwork"
    max_items = MAX_ITEMS

    def __init__(self, client: PresenceClient) -> None:
        self._client = client

    def prepare(
        self, registration: Outbound, time: SendTime, now: ClockSample
    ) -> Item | Unsendable:
        if registration.direction != Direction.PRESENCE:
            return _unsendable(
                "local",
                f"an {registration.direction} registration (CIaO) cannot be sent to Checkinatwork",
            )
        day = service_date(_moment(time.wall_ns))
        today = service_date(_moment(now.wall_ns))
        if not date_accepted(day, today):
            return _unsendable(
                DAY_PASSED,
                f"not delivered on its day ({day}; now {today}): the service takes only today"
                " or tomorrow; kept as a case of force majeure",
            )
        try:
            item = _item(registration, day)
        except InvalidIdentifier as error:
            return _unsendable("local", str(error))
        return Item(item, day.isoformat())

    async def send(
        self, payloads: Sequence[object], before_sending: BeforeSending
    ) -> list[ItemResult]:
        items = cast("Sequence[PresenceItem]", payloads)
        return await self._client.register_presences(items, before_sending)

    async def held(self, onss_id: int | str) -> Held | None:
        """getPresenceRegistration: the presence the ONSS holds under that id, if any."""
        try:
            presence_id = int(onss_id)
        except ValueError:
            return None  # not a PresenceRegistrationId: nothing can be held under it
        registered = await self._client.get_presence_registration(presence_id)
        if registered is None:
            return None
        ours = registered.registration_id
        return Held(str(ours) if ours else None, registered.status, registered.remarks)


def _item(registration: Outbound, day: date) -> PresenceItem:
    registration_id = uuid.UUID(registration.id)
    workplace = registration.declaration
    if registration.limosa is not None:
        return PresenceItem.for_limosa(registration_id, registration.limosa, workplace, day)
    if registration.niss is None or registration.enterprise_number is None:
        raise InvalidIdentifier(
            "CompanyID: the employer has no Belgian enterprise number (a posted worker is"
            " registered by their Limosa number)"
        )
    return PresenceItem.for_niss(
        registration_id, registration.niss, registration.enterprise_number, workplace, day
    )


def _moment(wall_ns: int) -> datetime:
    return datetime.fromtimestamp(wall_ns / 1e9, tz=UTC)


def _unsendable(code: str, description: str) -> Unsendable:
    return Unsendable(({"code": code, "description": description},))
