"""CIaO's REST service as a `Service`: registerInBulk items (gateway.uplink.payload) sent by
`OnssClient`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from gateway.journal import Outbound
from gateway.models import ClockSample
from gateway.uplink import payload
from gateway.uplink.client import OnssClient
from gateway.uplink.service import BeforeSending, Item, ItemResult, Unsendable
from gateway.uplink.timing import SendTime

MAX_ITEMS = 1000  # ours: the REST service names no limit; a 413 halves the batch anyway


class CiaoService:
    name = "ciao"
    max_items = MAX_ITEMS

    def __init__(self, client: OnssClient, type_values: payload.TypeValues = "lower") -> None:
        self._client = client
        self._type_values = type_values

    def prepare(
        self, registration: Outbound, time: SendTime, now: ClockSample
    ) -> Item | Unsendable:
        problems = payload.local_problems(registration)
        if problems:
            return Unsendable(tuple(problems))
        date = payload.registration_date(time.wall_ns)
        return Item(payload.item(registration, date, self._type_values), date)

    async def send(
        self, payloads: Sequence[object], before_sending: BeforeSending
    ) -> list[ItemResult]:
        items = cast("Sequence[dict[str, Any]]", payloads)
        return await self._client.register_in_bulk(items, before_sending=before_sending)
