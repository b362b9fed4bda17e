"""The uplink against the odd answers of the real world (issue 14, points 1 to 6 and 13),
from a fake HTTPS ONSS of our own (tests/uplink/odd_onss.py: real TLS, trusted through
`ca_file`), with a real journal file.

For each case: no registration the "ONSS" processed is sent again without a flag, no
resend loop (the requests are counted over a fixed time), memory stays bounded, and the
registrations end in the right delivery state with their evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import resource
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from gateway.config import UplinkConfig
from gateway.journal import Acknowledgement, Journal, Rejection, connect
from gateway.models import UplinkState
from gateway.uplink import Uplink, open_uplink
from tests.fake_https import Request
from tests.support import run
from tests.uplink.odd_onss import OddOnss, Reply, items_of
from tests.uplink.test_uplink import evidence_of, journal_with, registrations, synced_clock

CAP = 64 * 1024
MiB = 1 << 20


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("odd-onss")  # one test CA for the module (keys are slow)


@pytest.fixture
def onss(pki: Path) -> Iterator[OddOnss]:
    with OddOnss(pki) as fake:
        yield fake


def uplink_config(onss: OddOnss, **overrides: Any) -> UplinkConfig:
    values: dict[str, Any] = {
        "enabled": True,
        "token_url": onss.token_url,
        "base_url": onss.base_url,
        "client_id": onss.client_id,
        "private_key": str(onss.client_key_file),
        "ca_file": onss.ca_file,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.4,
        "connect_timeout_seconds": 2.0,
        "read_timeout_seconds": 2.0,
        "request_deadline_seconds": 3.0,
        "max_answer_bytes": CAP,
    }
    return UplinkConfig(**{**values, **overrides})


def run_for(onss: OddOnss, journal: Journal, state: Path, seconds: float, **config: Any) -> Uplink:
    """The uplink's own loop (as the daemon runs it) for a fixed time, then stopped."""
    uplink, http = open_uplink(uplink_config(onss, **config), journal, synced_clock(state))

    async def for_a_while() -> None:
        task = asyncio.create_task(uplink.run())
        try:
            await asyncio.sleep(seconds)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await http.aclose()

    run(for_a_while(), timeout=seconds + 30)
    return uplink


def rows(journal: Journal) -> list[sqlite3.Row]:
    with closing(connect(journal.path, read_only=True)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM registration_rows ORDER BY seq").fetchall()


def in_flight(journal: Journal) -> int:
    with closing(connect(journal.path, read_only=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM in_flight").fetchone()[0])


def assert_never_twice_unflagged(onss: OddOnss, journal: Journal) -> None:
    """Whatever the fake ONSS processed more than once is flagged "possibly duplicated"."""
    times = Counter(onss.processed_ssins())
    flagged = {row["niss"]: row["possibly_duplicated"] for row in rows(journal)}
    twice = [ssin for ssin, count in times.items() if count > 1 and not flagged[ssin]]
    assert not twice, f"processed more than once without a flag: {twice}"


Body = Callable[[Request, OddOnss], bytes]


def answer(results: Callable[[int], list[object]]) -> Body:
    """A body made of the results for a request of `count` items (`results(count)`)."""

    def body(request: Request, onss: OddOnss) -> bytes:
        return json.dumps({"items": results(len(items_of(request)))}).encode()

    return body


def raw_results(entry: bytes) -> Body:
    """A body with `entry`, JSON as written (1e400, NaN...), as each item's result."""

    def body(request: Request, onss: OddOnss) -> bytes:
        return b'{"items": [%s]}' % b", ".join([entry] * len(items_of(request)))

    return body


def created_with(onss_id: object) -> Body:
    return answer(lambda n: [{"createdPresenceRegistration": {"id": onss_id}}] * n)


# --- point 1: any 2xx whose items are readable is success ---------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 207])
def test_any_2xx_with_readable_items_is_a_success_sent_once(
    onss: OddOnss, state: Path, status: int
) -> None:
    onss.answer_bulk(Reply(status, onss.created))
    journal = journal_with(state, registrations(3))
    uplink = run_for(onss, journal, state, 1.0)
    [sent] = onss.bulk_requests()
    assert sent.status == status and len(sent.items) == 3
    assert [(r["delivery"], r["possibly_duplicated"]) for r in rows(journal)] == [
        ("delivered", 0)
    ] * 3
    assert [r["onss_id"] for r in rows(journal)] == [17_000, 17_001, 17_002]
    assert uplink.connectivity.state is UplinkState.ONLINE
    journal.close()


# --- point 2: a 2xx nobody can read is held unconfirmed, never resent ----------------------

UNREADABLE: dict[str, Reply] = {
    "not json": Reply(200, b"<html><body>OK</body></html>"),
    "no content": Reply(204, b""),
    "errors a string": Reply(
        200, answer(lambda n: [{"notCreatedPresenceRegistration": {"errors": "bad"}}] * n)
    ),
    "an id of 1e400": Reply(200, raw_results(b'{"createdPresenceRegistration": {"id": 1e400}}')),
    "an id NaN": Reply(200, raw_results(b'{"createdPresenceRegistration": {"id": NaN}}')),
    "an id of 5000 digits": Reply(
        200, raw_results(b'{"createdPresenceRegistration": {"id": %s}}' % (b"7" * 5000))
    ),
    "an id that is an object": Reply(200, created_with({"value": 1})),
    "one result too few": Reply(
        200, answer(lambda n: [{"createdPresenceRegistration": {"id": 1}}] * (n - 1))
    ),
    "items not a list": Reply(200, b'{"items": {"0": "created"}}'),
    "an entry of neither kind": Reply(200, answer(lambda n: [{"accepted": True}] * n)),
    "deeply nested": Reply(200, b"[" * 50_000),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_an_unreadable_2xx_is_held_unconfirmed_and_never_resent(
    onss: OddOnss, state: Path, case: str
) -> None:
    onss.answer_bulk(UNREADABLE[case])
    journal = journal_with(state, registrations(3))
    uplink = run_for(onss, journal, state, 1.2)
    assert len(onss.bulk_requests()) == 1  # not resent, not in a loop
    states = [(r["delivery"], r["possibly_duplicated"]) for r in rows(journal)]
    assert states == [("unconfirmed", 0)] * 3
    assert all("unreadable answer" in r["unconfirmed_cause"] for r in rows(journal))
    [held] = evidence_of(journal, "unconfirmed")
    assert sorted(held.details["ids"]) == sorted(r["id"] for r in rows(journal))
    assert journal.stats().pending == 0 and in_flight(journal) == 0
    assert (uplink.connectivity.state, uplink.connectivity.cause) == (
        UplinkState.OFFLINE,
        "unreadable answer",
    )
    journal.close()


def test_after_an_unreadable_answer_the_next_batch_waits_and_then_goes(
    onss: OddOnss, state: Path
) -> None:
    onss.answer_bulk(Reply(200, b"not json"))
    journal = journal_with(state, registrations(4))
    run_for(onss, journal, state, 1.5, batch_size=2)
    first, second = onss.bulk_requests()
    assert second.at - first.at >= 0.025  # backed off (0.05 s, jittered in its upper half)
    assert [r["delivery"] for r in rows(journal)] == ["unconfirmed"] * 2 + ["delivered"] * 2
    journal.close()


@pytest.mark.parametrize(
    ("given", "stored"),
    [(2**70, str(2**70)), ("A-17611", "A-17611"), (2**63 - 1, 2**63 - 1)],
)
def test_an_id_is_stored_as_given(
    onss: OddOnss, state: Path, given: object, stored: object
) -> None:
    onss.answer_bulk(Reply(200, created_with(given)))
    journal = journal_with(state, registrations(2))
    run_for(onss, journal, state, 1.0)
    assert len(onss.bulk_requests()) == 1
    assert [(r["delivery"], r["onss_id"]) for r in rows(journal)] == [("delivered", stored)] * 2
    [acknowledged] = evidence_of(journal, "acknowledged")
    assert set(acknowledged.details["ids"].values()) == {stored}
    journal.close()


class SettleFails(Journal):
    """A journal that cannot store an answer (as SQLite's "int too large" once did)."""

    def settle(self, acks: Sequence[Acknowledgement], rejections: Sequence[Rejection] = ()) -> None:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")


def test_an_answer_that_cannot_be_stored_is_held_unconfirmed_not_resent(
    onss: OddOnss, state: Path
) -> None:
    journal = SettleFails(state / "journal.db")
    for registration in registrations(2):
        journal.append_registration(registration)
    run_for(onss, journal, state, 1.2)
    assert len(onss.bulk_requests()) == 1
    assert [r["delivery"] for r in rows(journal)] == ["unconfirmed"] * 2
    assert "could not be stored" in rows(journal)[0]["unconfirmed_cause"]
    journal.close()


class MarkFails(Journal):
    """A journal whose in-flight mark fails: a failure nobody classified, before sending."""

    calls: list[float]

    def mark_in_flight(self, seqs: Sequence[int]) -> None:
        self.calls.append(time.monotonic())
        raise RuntimeError("nobody expected this")


def test_a_failure_nobody_classified_backs_off_and_growing(onss: OddOnss, state: Path) -> None:
    journal = MarkFails(state / "journal.db")
    journal.calls = []
    journal.append_registration(registrations(1)[0])
    uplink = run_for(onss, journal, state, 2.0, backoff_max_seconds=10)
    assert onss.bulk_requests() == []  # it failed before sending
    assert 3 <= len(journal.calls) <= 8  # 2 s: 0.05, 0.1, 0.2, 0.4, 0.8... (upper halves)
    gaps = [b - a for a, b in itertools.pairwise(journal.calls)]
    assert gaps[-1] > 2 * gaps[0]
    assert (uplink.connectivity.state, uplink.connectivity.cause) == (
        UplinkState.OFFLINE,
        "unexpected",
    )
    assert [(r["delivery"], r["possibly_duplicated"]) for r in rows(journal)] == [("pending", 0)]
    journal.close()


# --- point 3: endless and huge bodies, and slow ones --------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply(200, mode="endless"), "cap"),
        (Reply(200, mode="huge"), "cap"),
        (Reply(200, mode="endless", interval=0.4), "deadline"),  # 51 KB in the 1 s deadline
    ],
    ids=["endless chunked", "huge Content-Length", "dripping past the deadline"],
)
def test_an_endless_or_huge_2xx_is_read_up_to_the_cap_and_held_unconfirmed(
    onss: OddOnss, state: Path, reply: Reply, why: str
) -> None:
    onss.answer_bulk(reply)
    journal = journal_with(state, registrations(2))
    before = rss_bytes()
    run_for(onss, journal, state, 2.0, request_deadline_seconds=1.0)
    assert rss_bytes() - before < 48 * MiB
    [sent] = onss.bulk_requests()
    assert sent.bytes_sent < 16 * MiB  # the client hung up: it never read on
    assert [(r["delivery"], r["possibly_duplicated"]) for r in rows(journal)] == [
        ("unconfirmed", 0)
    ] * 2
    assert why in rows(journal)[0]["unconfirmed_cause"]
    journal.close()


def test_a_huge_503_is_retried_unflagged_without_reading_it(onss: OddOnss, state: Path) -> None:
    onss.answer_bulk(Reply(503, mode="huge", processed=False))
    journal = journal_with(state, registrations(2))
    uplink = run_for(onss, journal, state, 1.0)
    first, _ = onss.bulk_requests()
    assert first.bytes_sent < 16 * MiB
    assert [(r["delivery"], r["possibly_duplicated"]) for r in rows(journal)] == [
        ("delivered", 0)
    ] * 2
    assert uplink.connectivity.state is UplinkState.ONLINE
    assert_never_twice_unflagged(onss, journal)
    journal.close()


# --- point 6: 502 and 504 may come after the ONSS processed the request --------------------


@pytest.mark.parametrize("status", [502, 504])
def test_502_and_504_are_ambiguous_flagged_then_resent(
    onss: OddOnss, state: Path, status: int
) -> None:
    onss.answer_bulk(Reply(status, b'{"title": "gateway"}'))
    journal = journal_with(state, registrations(2))
    run_for(onss, journal, state, 1.0)
    assert [r.status for r in onss.bulk_requests()] == [status, 200]
    assert [(r["delivery"], r["possibly_duplicated"]) for r in rows(journal)] == [
        ("delivered", 1)
    ] * 2
    [flagged] = evidence_of(journal, "possibly-duplicated")
    assert flagged.details["cause"] == f"http {status}"
    assert_never_twice_unflagged(onss, journal)
    journal.close()


def test_an_endless_502_is_ambiguous_and_bounded(onss: OddOnss, state: Path) -> None:
    onss.answer_bulk(Reply(502, mode="endless"))
    journal = journal_with(state, registrations(1))
    run_for(onss, journal, state, 1.0)
    assert [r.status for r in onss.bulk_requests()] == [502, 200]
    assert onss.bulk_requests()[0].bytes_sent < 16 * MiB
    assert [(r["delivery"], r["possibly_duplicated"]) for r in rows(journal)] == [("delivered", 1)]
    journal.close()


# --- points 4 and 5: the token endpoint --------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        Reply(mode="drop", processed=False),
        Reply(mode="hang", interval=4, processed=False),
        Reply(500, b"{}"),
        Reply(200, b"<html>"),
    ],
    ids=["dropped", "timed out", "500", "nonsense"],
)
def test_a_token_failure_is_an_outage_never_a_duplicate(
    onss: OddOnss, state: Path, failure: Reply
) -> None:
    onss.answer_token(failure)
    journal = journal_with(state, registrations(2))
    uplink = run_for(onss, journal, state, 2.5, read_timeout_seconds=0.5)
    assert len(onss.token_requests()) == 2
    assert len(onss.bulk_requests()) == 1  # only once a token was in hand
    assert [(r["delivery"], r["possibly_duplicated"]) for r in rows(journal)] == [
        ("delivered", 0)
    ] * 2
    assert evidence_of(journal, "possibly-duplicated") == []
    causes = [t["cause"] for t in journal.uplink_transitions()]
    assert causes[-1] in {"token", "timeout", "connection"}
    assert uplink.connectivity.state is UplinkState.ONLINE
    journal.close()


@pytest.mark.parametrize("status", [429, 503])
def test_the_token_endpoint_retry_after_is_honoured(
    onss: OddOnss, state: Path, status: int
) -> None:
    onss.answer_token(Reply(status, b"{}", headers=(("Retry-After", "1"),)))
    journal = journal_with(state, registrations(1))
    run_for(onss, journal, state, 2.0)
    refused, granted = onss.token_requests()
    assert granted.at - refused.at >= 0.95  # as told, not our 0.05 s backoff
    assert [(r["delivery"], r["possibly_duplicated"]) for r in rows(journal)] == [("delivered", 0)]
    assert journal.uplink_transitions()[-1]["cause"] == "token"
    journal.close()


# --- point 13: a 401 a fresh token does not cure ----------------------------------------


def test_a_401_that_a_fresh_token_does_not_cure_backs_off_and_says_unauthorized(
    onss: OddOnss, state: Path
) -> None:
    onss.answer_bulk(then=Reply(401, b'{"type": "invalidAccessToken"}', processed=False))
    journal = journal_with(state, registrations(2))
    uplink = run_for(onss, journal, state, 3.0, backoff_max_seconds=10)
    posts = onss.bulk_requests()
    assert 3 <= len(posts) <= 9  # backoff 0.05, 0.1, 0.2, 0.4, 0.8, 1.6 (upper halves)
    assert len(onss.token_requests()) == len(posts)  # a fresh token each time, one post each
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert gaps[-1] > 2 * gaps[0]  # growing
    assert uplink.connectivity.as_json()["state"] == "unauthorized"
    assert uplink.connectivity.cause == "http 401"
    assert [(r["delivery"], r["possibly_duplicated"]) for r in rows(journal)] == [
        ("pending", 0)
    ] * 2
    assert in_flight(journal) == 0
    journal.close()


def test_a_401_on_an_old_token_renews_it_once(onss: OddOnss, state: Path) -> None:
    journal = journal_with(state, registrations(1))
    uplink, http = open_uplink(uplink_config(onss), journal, synced_clock(state))

    async def twice() -> None:
        await uplink.deliver_once()  # the token is now cached
        onss.answer_bulk(Reply(401, b"{}", processed=False))
        journal.append_registration(registrations(1)[0])
        await uplink.deliver_once()
        await http.aclose()

    run(twice(), timeout=20)
    assert [r.status for r in onss.bulk_requests()] == [200, 401, 200]
    assert len(onss.token_requests()) == 2
    assert [r["delivery"] for r in rows(journal)] == ["delivered"] * 2
    journal.close()


def test_the_token_endpoint_refusing_our_credentials_says_unauthorized(
    onss: OddOnss, state: Path
) -> None:
    onss.answer_token(then=Reply(400, b'{"error": "invalid_client"}'))
    journal = journal_with(state, registrations(1))
    uplink = run_for(onss, journal, state, 1.5, backoff_max_seconds=10)
    assert onss.bulk_requests() == []
    assert 2 <= len(onss.token_requests()) <= 7
    assert (uplink.connectivity.state, uplink.connectivity.cause) == (
        UplinkState.UNAUTHORIZED,
        "token",
    )
    journal.close()
