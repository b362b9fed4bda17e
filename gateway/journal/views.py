"""The journal as each of its users sees it: one `typing.Protocol` per user, holding exactly
the calls that user makes (tests/journal/test_views.py keeps them so).

There is one concrete journal, `Journal`, behind all of them, with its one writer
connection and its one lock; these views only say who may call what. A user takes its view,
not `Journal`, so that what it may do is read from its signature, and a test can hand it
a small fake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from gateway.evidence import Entry, Head, Kind
from gateway.journal.rows import (
    Acknowledgement,
    DeliveryRecord,
    JournalStats,
    Outbound,
    Rejection,
    StoredRegistration,
    TapAttempt,
)
from gateway.models import ClockSample, DeliveryState, Registration, UplinkState, Worker


@runtime_checkable
class TapJournal(Protocol):
    """The tap path (gateway.tap): the toggle's previous registration, and each tap stored."""

    def previous_registration(self, worker: Worker, declaration: str) -> Registration | None: ...

    def append_registration(self, reg: Registration) -> int: ...

    def append_attempt(self, attempt: TapAttempt) -> int: ...


@runtime_checkable
class UplinkQueue(Protocol):
    """The uplink (gateway.uplink.sender): the pending registrations, oldest first, the
    in-flight marks around each request, and what the ONSS answered (or that its answer
    could not be read: `mark_unconfirmed`)."""

    def recover_in_flight(self) -> list[str]: ...

    def pending(self, limit: int, after_seq: int = 0) -> list[Outbound]: ...

    def mark_in_flight(self, seqs: Sequence[int]) -> None: ...

    def clear_in_flight(self, seqs: Sequence[int]) -> None: ...

    def flag_possibly_duplicated(self, seqs: Sequence[int], cause: str) -> None: ...

    def mark_unconfirmed(self, seqs: Sequence[int], cause: str, clock: ClockSample) -> None: ...

    def settle(
        self, acks: Sequence[Acknowledgement], rejections: Sequence[Rejection] = ()
    ) -> None: ...

    def record_transition(
        self, state: UplinkState, cause: str, detail: str | None, clock: ClockSample
    ) -> int: ...


@runtime_checkable
class EvidenceSink(Protocol):
    """The evidence watch (gateway.watch): entries no tap or request writes, the heartbeat,
    the retention, and the chain's head to log."""

    @property
    def evidence_head(self) -> Head: ...

    def record(
        self, kind: Kind, details: dict[str, Any], clock: ClockSample | None = None
    ) -> None: ...

    def heartbeat(self) -> None: ...

    def prune(
        self,
        before_wall_ns: int,
        *,
        limit: int = 10_000,
        sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> int: ...

    def size_bytes(self) -> int: ...


@runtime_checkable
class RegistrationReads(Protocol):
    """The registrations and their delivery, newest first: the control socket's `since` and
    `queue` commands on the daemon's journal, and the CLI's read-only `JournalReader`."""

    def registrations_since(
        self, wall_ns: int, limit: int = 10_000
    ) -> list[StoredRegistration]: ...

    def deliveries(
        self, delivery: DeliveryState | None = None, limit: int = 1000
    ) -> list[DeliveryRecord]: ...


@runtime_checkable
class StatusReads(Protocol):
    """What `status` shows of the journal (gateway.control.status)."""

    @property
    def path(self) -> Path: ...

    @property
    def evidence_head(self) -> Head: ...

    def stats(self) -> JournalStats: ...

    def recent_registrations(self, count: int) -> list[StoredRegistration]: ...

    def recent_attempts(self, count: int) -> list[dict[str, Any]]: ...


@runtime_checkable
class FleetLog(Protocol):
    """What the fleet link reads and keeps in the journal (gateway.fleet): the evidence, in
    order, from where the broker last acknowledged, and its own few values."""

    def evidence_after(self, seq: int, limit: int) -> list[Entry]: ...

    def fleet_value(self, key: str) -> str | None: ...

    def set_fleet_value(self, key: str, value: str, *, durable: bool = False) -> None: ...
