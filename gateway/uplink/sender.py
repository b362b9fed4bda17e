"""The uplink task: drain the journal's pending registrations to the ONSS, oldest first.

It never blocks taps (journal calls run on worker threads; taps run on reader threads)
and never gives up on a transient failure: tenacity retries the same items forever after
a capped exponential backoff with jitter (at least half of it, so never a tight loop), or
the server's Retry-After when that is longer. Every failure backs off, including those
nobody classified, and the backoff keeps growing over consecutive failures, across
batches, until an answer is read. The rule: an item the ONSS may hold is never sent again
without a flag.
- created: the ONSS id (as given) and remarks are stored in the commit that marks it
  delivered;
- notCreated, or a 400 isolated to one item by splitting the batch: rejected, never
  resent by itself (`badge-gateway queue retry` after the employer fixed the cause);
- no answer after sending (timeout, reset, 502, 504): flagged "possibly duplicated", then
  resent. Items are marked in flight only once the token is in hand, just before the
  request: a token failure sent nothing, and flags nothing;
- a 2xx that cannot be read (or an answer that cannot be stored): unconfirmed, never
  resent by itself; the employer resolves them (`queue confirm`, `queue retry`);
- 413: smaller batches; 403: nothing is sent until the configuration is fixed, taps keep
  being queued, status says why; a 401 a fresh token does not cure: `unauthorized`.

One request is out at a time, so the ONSS receives registrations in journal order. While
it is out, the next batch is read and its items built (read-ahead): the journal read and
the item building overlap the network and the server instead of adding to each request.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never

from gateway.clock import Clock
from gateway.errors import (
    AmbiguousError,
    BadRequestError,
    ForbiddenError,
    NoLookupError,
    PayloadTooLargeError,
    RetryableError,
    UnauthorizedError,
    UnreadableAnswerError,
)
from gateway.journal import Acknowledgement, Outbound, Rejection, UplinkQueue
from gateway.models import ClockSample, UplinkState
from gateway.uplink.connectivity import Connectivity
from gateway.uplink.service import Created, Held, ItemResult, LooksUp, Service, Unsendable
from gateway.uplink.timing import SendTime, send_time

log = structlog.get_logger("uplink")

MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    registration: Outbound
    time: SendTime
    registration_date: str  # the time (or day) sent, as sent
    item: object

    @property
    def seq(self) -> int:
        return self.registration.seq


@dataclass(frozen=True, slots=True)
class Batch:
    """The oldest pending registrations ready to go (empty: the oldest is held back)."""

    outgoing: list[Outgoing]  # in journal order, unsendable ones already rejected
    last_seq: int  # the last registration looked at; the read-ahead starts after it
    held: bool = False  # the oldest pending one waits for the clock: nothing to send


@dataclass(frozen=True, slots=True)
class UplinkPolicy:
    batch_size: int = 50
    late_after_ns: int = 15 * 60 * 1_000_000_000
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    idle_poll: float = 0.5


class Uplink:
    def __init__(
        self, *, journal: UplinkQueue, clock: Clock, service: Service, policy: UplinkPolicy
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._service = service
        self._policy = policy
        self._batch_size = min(policy.batch_size, service.max_items)
        self._failures = 0  # consecutive ones, across batches: the backoff grows with them
        self._settled: set[int] = set()
        self._read_ahead: asyncio.Task[Batch | None] | None = None
        self.connectivity = Connectivity()

    async def run(self) -> None:
        await self._until_recorded("the in-flight marks of the last run", self._recover)
        try:
            while True:
                try:
                    delivered = await self.deliver_once()
                except Exception:  # a bug or a journal error must not end delivery for good
                    self._failures += 1
                    delay = self.backoff(self._failures)
                    log.exception("uplink failed; trying again", in_seconds=round(delay, 1))
                    await asyncio.sleep(delay)
                    continue
                if not delivered:
                    await asyncio.sleep(self._policy.idle_poll)
        finally:
            if self._read_ahead is not None:
                self._read_ahead.cancel()

    def _recover(self) -> None:
        """Before anything is sent: flag what a crash left in flight (a worker thread)."""
        recovered = self._journal.recover_in_flight()
        if recovered:
            log.warning(
                "sent before a crash without a known answer: possibly duplicated",
                registrations=recovered,
            )

    async def held(self, onss_id: int | str) -> Held | None:
        """What the ONSS holds under its id `onss_id`, for `queue confirm` to check against
        (on the uplink's loop). NoLookupError when the service cannot say (CIaO)."""
        if not isinstance(self._service, LooksUp):
            raise NoLookupError(f"the {self._service.name} service cannot be asked what it holds")
        return await self._service.held(onss_id)

    async def deliver_once(self) -> bool:
        """Send one batch (retrying until it is settled); False when nothing could be sent."""
        batch = await self._next_batch()
        if batch is None or batch.held:
            return False
        if not batch.outgoing:  # all unsendable: look again at once
            return True
        self._read_ahead = asyncio.create_task(self._prepare(after_seq=batch.last_seq))
        await self._send_until_settled(batch.outgoing)
        return True

    async def _next_batch(self) -> Batch | None:
        read_ahead, self._read_ahead = self._read_ahead, None
        if read_ahead is not None:
            batch = await read_ahead
            if batch is not None and batch.outgoing:
                return batch
        return await self._prepare(after_seq=0)  # from the oldest pending one

    async def _prepare(self, after_seq: int) -> Batch | None:
        """The next batch after `after_seq`, unsendable ones rejected; None if none."""
        pending = await asyncio.to_thread(self._journal.pending, self._batch_size, after_seq)
        if not pending:
            return None
        ready = self._ready(pending, self._clock.sample())
        if not ready:
            return Batch([], after_seq, held=True)
        return Batch(await self._without_unsendable(ready), ready[-1][0].seq)

    def _ready(
        self, pending: Sequence[Outbound], now: ClockSample
    ) -> list[tuple[Outbound, Outgoing | Unsendable]]:
        """The oldest registrations up to the first one held for the clock (keeps order),
        each made into its item or found unsendable."""
        ready = []
        for registration in pending:
            time_to_send = send_time(registration.clock, now)
            if time_to_send is None:
                break
            ready.append((registration, self._make(registration, time_to_send, now)))
        held = len(pending) - len(ready)
        if held and held != self.connectivity.held_for_clock:
            log.warning("registrations held until the clock is synchronised", held=held)
        self.connectivity.held_for_clock = held
        return ready

    def _make(
        self, registration: Outbound, time_to_send: SendTime, now: ClockSample
    ) -> Outgoing | Unsendable:
        item = self._service.prepare(registration, time_to_send, now)
        if isinstance(item, Unsendable):
            log.warning(
                "registration cannot be accepted: rejected without sending",
                registration=registration.id,
                errors=item.errors,
            )
            return item
        if time_to_send.rederived:
            log.info(
                "time re-derived from the monotonic clock",
                registration=registration.id,
                recorded=registration.clock.wall_time.isoformat(),
                sent=item.sent_as,
            )
        elif time_to_send.uncertain:
            log.warning(
                "clock never synchronised during that boot: best known time sent",
                registration=registration.id,
            )
        return Outgoing(registration, time_to_send, item.sent_as, item.payload)

    async def _send_until_settled(self, outgoing: list[Outgoing]) -> None:
        self._settled.clear()  # filled as parts settle, so that a retry never resends them
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),  # every failure, classified or not
            wait=self._wait,
            stop=stop_never,
            before_sleep=self._going_to_sleep,
            reraise=True,
        ):
            with attempt:
                remaining = [out for out in outgoing if out.seq not in self._settled]
                if attempt.retry_state.attempt_number > 1:
                    remaining = await self._made_again(remaining)
                for chunk in _chunks(remaining, self._batch_size):
                    await self._send_checked(chunk)

    async def _made_again(self, outgoing: list[Outgoing]) -> list[Outgoing]:
        """After a wait, each item made again for the clock as it is now: what could be sent
        before may not be any more (a Checkinatwork presence whose day has passed)."""
        now = self._clock.sample()
        again = [
            (out.registration, self._make(out.registration, out.time, now)) for out in outgoing
        ]
        return await self._without_unsendable(again)

    async def _without_unsendable(
        self, made: list[tuple[Outbound, Outgoing | Unsendable]]
    ) -> list[Outgoing]:
        """The items to send; the unsendable ones rejected (in the journal) first."""
        rejections = [
            Rejection(registration.seq, "local", item.errors)
            for registration, item in made
            if isinstance(item, Unsendable)
        ]
        if rejections:
            await self._record((), rejections)
        return [item for _, item in made if isinstance(item, Outgoing)]

    async def _send_chunk(self, chunk: list[Outgoing]) -> None:
        seqs = [out.seq for out in chunk]
        marked = False

        async def mark_in_flight() -> None:  # the token is in hand: the request leaves next
            nonlocal marked
            await asyncio.to_thread(self._journal.mark_in_flight, seqs)
            marked = True

        try:
            results = await self._service.send([out.item for out in chunk], mark_in_flight)
        except UnreadableAnswerError as error:
            await self._hold_unconfirmed(chunk, str(error))
            raise  # backs off before anything else is sent
        except AmbiguousError as error:
            await self._flag_possibly_duplicated(chunk, error)
            raise
        except (RetryableError, BadRequestError, PayloadTooLargeError, ForbiddenError):
            if marked:  # not processed
                await asyncio.to_thread(self._journal.clear_in_flight, seqs)
            raise
        except Exception as error:  # nobody classified it: the ONSS may have it if it left
            if marked:
                await self._flag_possibly_duplicated(chunk, error)
            raise
        await self._store_answer(chunk, results)

    async def _send_checked(self, chunk: list[Outgoing]) -> None:
        """A chunk whose 400 or 413 is handled by splitting it (both mean: not processed)."""
        try:
            await self._send_chunk(chunk)
        except BadRequestError as error:
            await self._isolate_bad_items(chunk, error)
        except PayloadTooLargeError:
            await self._send_smaller(chunk)

    async def _isolate_bad_items(self, chunk: list[Outgoing], error: BadRequestError) -> None:
        if len(chunk) == 1:
            [out] = chunk
            log.warning(
                "ONSS refused the request for this registration alone: rejected",
                registration=out.registration.id,
                issues=error.issues,
            )
            errors = tuple(_issue_error(issue) for issue in error.issues) or (
                {"code": "400", "description": "badRequest"},
            )
            await self._record((), [Rejection(out.seq, "onss", errors)])
            return
        half = len(chunk) // 2
        for part in (chunk[:half], chunk[half:]):
            await self._send_checked(part)

    async def _send_smaller(self, chunk: list[Outgoing]) -> None:
        if len(chunk) == 1:
            [out] = chunk
            too_large = {"code": "413", "description": "payloadTooLarge"}
            await self._record((), [Rejection(out.seq, "onss", (too_large,))])
            return
        self._batch_size = max(1, len(chunk) // 2)
        log.warning(
            "ONSS said the batch is too large: smaller batches", batch_size=self._batch_size
        )
        for part in _chunks(chunk, self._batch_size):
            await self._send_checked(part)

    async def _flag_possibly_duplicated(self, chunk: list[Outgoing], error: Exception) -> None:
        log.warning(
            "no answer after sending: these may already be at the ONSS",
            registrations=[out.registration.id for out in chunk],
            error=str(error)[:300],
        )
        cause = getattr(error, "cause", None) or f"unexpected {type(error).__name__}"
        seqs = [out.seq for out in chunk]
        await self._until_recorded("the flag", self._journal.flag_possibly_duplicated, seqs, cause)

    async def _hold_unconfirmed(self, chunk: list[Outgoing], cause: str) -> None:
        """The ONSS very probably holds these but what it said is unknown: out of the queue,
        never resent by itself, for the employer to resolve."""
        log.error(
            "the ONSS answered but its answer cannot be used: unconfirmed, not resent",
            registrations=[out.registration.id for out in chunk],
            cause=cause[:500],
        )
        seqs = [out.seq for out in chunk]
        mark = self._journal.mark_unconfirmed
        await self._until_recorded("unconfirmed", mark, seqs, cause[:1000], self._clock.sample())
        self._settled.update(seqs)

    async def _store_answer(self, chunk: list[Outgoing], results: list[ItemResult]) -> None:
        """Settle a readable answer. The ONSS has processed the request, so a failure to
        store the answer never resends: the items are held unconfirmed instead."""
        try:
            await self._settle(chunk, results)
        except Exception as error:
            log.exception("the ONSS answered but its answer could not be stored")
            await self._hold_unconfirmed(
                chunk, f"answered, but the answer could not be stored: {error!r:.300}"
            )

    async def _until_recorded(self, what: str, write: Callable[..., None], *args: Any) -> None:
        """A journal write that must land before anything more is sent (a flag, an
        unconfirmed mark): tried again with a growing backoff while the journal fails;
        the items' durable in-flight marks flag them should the daemon stop meanwhile."""
        for attempt in itertools.count(1):
            try:
                await asyncio.to_thread(write, *args)
                return
            except Exception:
                delay = self.backoff(attempt)
                log.exception(f"could not record {what}: trying again", in_seconds=delay)
                await asyncio.sleep(delay)

    async def _settle(self, chunk: list[Outgoing], results: list[ItemResult]) -> None:
        now_ns = time.time_ns()
        acks, rejections = [], []
        for out, result in zip(chunk, results, strict=True):
            if isinstance(result, Created):
                acks.append(self._acknowledgement(out, result, now_ns))
            else:
                log.warning(
                    "ONSS did not create the registration",
                    registration=out.registration.id,
                    errors=result.errors,
                )
                rejections.append(Rejection(out.seq, "onss", result.errors))
        await self._record(acks, rejections)
        self._failures = 0  # an answer was read: the next failure backs off from the start
        if acks:
            ids = {out.seq: out.registration.id for out in chunk}
            log.info("acknowledged by the ONSS", onss_ids={ids[a.seq]: a.onss_id for a in acks})
        self.connectivity.last_ack_wall_ns = now_ns
        done = f"{len(acks)} created, {len(rejections)} refused"
        await self._transition(UplinkState.ONLINE, None, done)

    async def _record(
        self, acks: Sequence[Acknowledgement], rejections: Sequence[Rejection]
    ) -> None:
        await asyncio.to_thread(self._journal.settle, acks, rejections)
        self._settled.update(a.seq for a in acks)
        self._settled.update(r.seq for r in rejections)

    def _acknowledgement(self, out: Outgoing, created: Created, now_ns: int) -> Acknowledgement:
        late = now_ns - out.time.wall_ns > self._policy.late_after_ns
        if late:
            log.info(
                "delivered late",
                registration=out.registration.id,
                delay_seconds=round((now_ns - out.time.wall_ns) / 1e9),
            )
        return Acknowledgement(
            seq=out.seq,
            onss_id=created.onss_id,
            validity=created.validity,
            remarks=created.remarks,
            sent_registration_date=out.registration_date,
            delivered_wall_ns=now_ns,
            late=late,
            time_uncertain=out.time.uncertain,
        )

    def backoff(self, failures: int) -> float:
        """The wait after `failures` consecutive failures: exponential from backoff_initial,
        capped at backoff_max, jittered within its upper half (never close to nothing)."""
        growth = 2.0 ** min(failures - 1, 30)
        ceiling = min(self._policy.backoff_max, self._policy.backoff_initial * growth)
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)

    def _wait(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        self._failures += 1
        if isinstance(error, ForbiddenError):
            return self._policy.backoff_max
        delay = self.backoff(self._failures)
        if isinstance(error, RetryableError) and error.retry_after is not None:
            # the server's word, within reason; never sooner than our own backoff
            return max(delay, min(error.retry_after, MAX_RETRY_AFTER))
        return delay

    async def _going_to_sleep(self, retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        delay = retry_state.upcoming_sleep
        self.connectivity.next_retry_wall_ns = time.time_ns() + int(delay * 1e9)
        if isinstance(error, ForbiddenError):
            await self._transition(UplinkState.FORBIDDEN, "forbidden", str(error))
        elif isinstance(error, UnauthorizedError):
            await self._transition(UplinkState.UNAUTHORIZED, error.cause, error.detail)
        elif isinstance(error, RetryableError):
            await self._transition(UplinkState.OFFLINE, error.cause, error.detail)
        elif isinstance(error, UnreadableAnswerError):
            await self._transition(UplinkState.OFFLINE, "unreadable answer", str(error))
        elif error is not None:
            log.error("unexpected failure while sending", exc_info=error)
            detail = f"{type(error).__name__}: {error}"
            await self._transition(UplinkState.OFFLINE, "unexpected", detail)
        log.info(
            "retrying",
            cause=getattr(error, "cause", type(error).__name__),
            in_seconds=round(delay, 1),
            attempt=retry_state.attempt_number,
        )

    async def _transition(self, state: UplinkState, cause: str | None, detail: str) -> None:
        if not self.connectivity.changes_to(state, cause):
            return
        clock = self._clock.sample()
        level = log.info if state is UplinkState.ONLINE else log.error
        level(
            "uplink " + state,
            cause=cause,
            detail=detail[:300],
            was=self.connectivity.state,
            since=self.connectivity.since_wall_ns,
        )
        self.connectivity.state, self.connectivity.cause = state, cause
        self.connectivity.since_wall_ns = clock.wall_ns
        if state is UplinkState.ONLINE:
            self.connectivity.next_retry_wall_ns = None
        await asyncio.to_thread(
            self._journal.record_transition, state, cause or "ok", detail[:1000], clock
        )


def _chunks(items: list[Outgoing], size: int) -> list[list[Outgoing]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _issue_error(issue: object) -> dict[str, str]:
    if not isinstance(issue, dict):
        return {"code": "400", "description": str(issue)[:300]}
    where = issue.get("name") or issue.get("in") or ""
    detail = issue.get("detail") or issue.get("title")
    return {"code": str(issue.get("code") or "400"), "description": f"{where}: {detail}"}
