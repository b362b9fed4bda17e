"""The one interface between the sender and an ONSS web service: what an item is, how a
batch of items is sent, what each item's answer was.

The sender (gateway.uplink.sender) knows the rules every delivery obeys (order, backoff,
in-flight marks, flags, settling); a `Service` knows one protocol: CIaO's REST
registerInBulk (gateway.uplink.ciao) or Checkinatwork's SOAP registerPresences
(gateway.checkinatwork.service). How a call can end is the same for both: a list of
`ItemResult`s in the items' order, or one of gateway.errors' `UplinkError`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.journal import Outbound
from gateway.models import ClockSample
from gateway.uplink.client import BeforeSending, Created, ItemResult, NotCreated
from gateway.uplink.timing import SendTime

__all__ = [
    "BeforeSending",
    "Created",
    "Held",
    "Item",
    "ItemResult",
    "LooksUp",
    "NotCreated",
    "Service",
    "Unsendable",
]


@dataclass(frozen=True, slots=True)
class Item:
    """A registration as the service receives it, and the date it is sent with (stored with
    the acknowledgement as `sent_registration_date`)."""

    payload: object
    sent_as: str


@dataclass(frozen=True, slots=True)
class Unsendable:
    """Why the service could never accept this registration: rejected without sending,
    in the service's own codes where it has one."""

    errors: tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class Held:
    """What the service holds under one of its ids, as it says (a reconciliation)."""

    registration_id: str | None  # ours, as its answer echoes it
    status: str
    remarks: tuple[str, ...]


@runtime_checkable
class LooksUp(Protocol):
    """A service that can say what it holds under one of its ids (Checkinatwork)."""

    async def held(self, onss_id: int | str) -> Held | None:
        """None: nothing the service lets us see under that id."""
        ...


class Service(Protocol):
    name: str  # for logs and status: "ciao", "checkinatwork"
    max_items: int  # the most one request may carry

    def prepare(
        self, registration: Outbound, time: SendTime, now: ClockSample
    ) -> Item | Unsendable:
        """The item for a registration ready to go, sent with `time`; `now` is the clock."""
        ...

    async def send(
        self, payloads: Sequence[object], before_sending: BeforeSending
    ) -> list[ItemResult]:
        """One request; `before_sending` is awaited once nothing but the network stands
        between the request and the service (the sender marks the items in flight)."""
        ...
