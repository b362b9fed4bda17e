"""The Checkinatwork client over real TLS, against a fake HTTPS SOAP server of this module
whose answer each test chooses: every way a call can end is a result per item or one of the
REST uplink's exceptions, with the same rule (an item the ONSS may hold is never sent
again without a flag: `AmbiguousError`, `UnreadableAnswerError`).

The fake records what it received, raw: each request is checked as the ONSS would (the
Body against the official XSD, the WS-Security signature against the employer's
certificate, the timestamp's freshness). The employer's key and certificate are files made
by onss_sim.pki (a 0600 key, as the box holds it), loaded by `security.load_identity`.
Every loop of the fake is bounded in count and time; so is every test (`run`).
"""

from __future__ import annotations

import dataclasses
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx
import pytest
from lxml import etree

from gateway.checkinatwork import (
    MAX_ITEMS,
    PresenceClient,
    PresenceItem,
    Registered,
    schema_problems,
)
from gateway.checkinatwork.envelope import SOAP_ENV, Operation, SoapFault, fault_envelope
from gateway.checkinatwork.envelope import envelope_bytes as to_bytes
from gateway.checkinatwork.messages import NS, TYPES_NS
from gateway.checkinatwork.security import SigningIdentity, load_identity, verify
from gateway.errors import (
    AmbiguousError,
    BadRequestError,
    ForbiddenError,
    PayloadTooLargeError,
    PresenceAnswerError,
    RetryableError,
    UnauthorizedError,
    UnreadableAnswerError,
    UplinkError,
)
from gateway.uplink.answers import AnswerLimits
from gateway.uplink.client import Created, NotCreated
from gateway.uplink.tls import tls_context
from onss_sim.pki import PkiFiles, ensure_pki
from tests.checkinatwork.test_messages import (
    ANSWER_NS,
    GET_EXAMPLE,
    NISS,
    limosa_item,
    niss_item,
    refused,
    registered,
)
from tests.fake_https import LoopbackHttps, Request
from tests.support import run

CAP = 64 * 1024
DEADLINE = 1.5  # seconds, for a whole exchange
LIMITS = AnswerLimits(CAP, DEADLINE)
STREAM_SECONDS = 8.0  # an endless answer ends after this even if nobody hangs up
PATH = "/PresenceRegistration/v1"
FIRST_ID = 53102  # the specification's example id (p. 11)

Mode = Literal["plain", "endless", "huge", "cut", "drip", "drop", "hang"]


# --- the fake HTTPS SOAP server --------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One answer. `mode`: plain; endless (chunked, never ends); huge (a Content-Length
    above any cap, then bytes); cut (a Content-Length longer than the body, then close);
    drip (chunked, a few bytes every `interval`); drop (read the request, close without
    answering); hang (read it, answer nothing for `interval` seconds)."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    mode: Mode = "plain"
    interval: float = 0.0


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() once the request was read in full
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def envelope(self) -> etree._Element:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        return etree.fromstring(self.body, parser)

    def content(self) -> etree._Element:
        body = self.envelope().find(f"{{{SOAP_ENV}}}Body")
        assert body is not None
        return body[0]


@dataclass
class _Sent:
    bytes: int = 0


class SoapServer(LoopbackHttps):
    """A fake SOAP service; the next answers are `replies`, in order, then `then`."""

    def __init__(self, pki: PkiFiles) -> None:
        super().__init__(pki)
        self.url = f"https://127.0.0.1:{self.port}{PATH}"
        self._replies: list[Reply] = []
        self._then = Reply(500, b"no answer scripted")
        self._received: list[Received] = []
        self.streamed = _Sent()

    def answer(self, *replies: Reply, then: Reply | None = None) -> None:
        with self._lock:
            self._replies = list(replies)
            self._then = then or self._then

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def _answer(self, conn: ssl.SSLSocket, read: Request) -> None:
        request = Received(time.monotonic(), read.method, read.path, read.headers, read.body)
        with self._lock:
            self._received.append(request)
            reply = self._replies.pop(0) if self._replies else self._then
        if reply.mode == "drop":
            return
        if reply.mode == "hang":
            self._closing.wait(reply.interval)
            return
        head = [f"HTTP/1.1 {reply.status} Fake", "Content-Type: text/xml; charset=utf-8"]
        head += [f"{name}: {value}" for name, value in reply.headers]
        length = {"plain": len(reply.body), "cut": len(reply.body) + 1000, "huge": 10**12}
        if reply.mode in length:
            head += [f"Content-Length: {length[reply.mode]}", "Connection: close"]
            conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + reply.body)
            if reply.mode == "huge":
                self._stream(conn, reply.body or b"<x/>" * 4096, chunked=False, pause=0.0)
            return
        conn.sendall(("\r\n".join([*head, "Transfer-Encoding: chunked"]) + "\r\n\r\n").encode())
        piece = b"<x/>" * (4096 if reply.mode == "endless" else 1)
        self._stream(conn, piece, chunked=True, pause=reply.interval)

    def _stream(self, conn: ssl.SSLSocket, piece: bytes, chunked: bool, pause: float) -> None:
        """Bytes without end, until the client hangs up or STREAM_SECONDS have passed."""
        framed = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
        until = time.monotonic() + STREAM_SECONDS
        while not self._closing.is_set() and time.monotonic() < until:
            conn.sendall(framed)
            self.streamed.bytes += len(piece)
            if pause:
                self._closing.wait(pause)


# --- answers, as the ONSS writes them --------------------------------------------------------


def envelope(content: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="{SOAP_ENV}">'
        f"<S:Header/><S:Body>{content}</S:Body></S:Envelope>"
    ).encode()


def register_answer(*entries: str) -> bytes:
    content = f"<ns4:RegisterPresencesResponse {ANSWER_NS}>{''.join(entries)}"
    content += "</ns4:RegisterPresencesResponse>"
    assert schema_problems(etree.fromstring(content)) == ()  # a valid answer, by the XSD
    return envelope(content)


def all_registered(items: list[PresenceItem]) -> Reply:
    entries = [registered(item, FIRST_ID + n) for n, item in enumerate(items)]
    return Reply(200, register_answer(*entries))


def fault(code: str, string: str, status: int = 500, detail_code: str | None = None) -> Reply:
    """A SOAP 1.1 fault; the ONSS's code in the detail (its SystemError), or only in the
    faultstring when `detail_code` is ""."""
    detail = None
    if detail_code != "":
        detail = etree.fromstring(
            '<err:SystemError xmlns:err="http://socialsecurity.be/errors/v1">'
            f"<Id>fault-1</Id><Code>{detail_code or code}</Code><Reason>{string}</Reason>"
            "</err:SystemError>"
        )
    document = fault_envelope(SoapFault("soapenv:Server", string, detail=detail))
    return Reply(status, to_bytes(document))


# --- fixtures and the client -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return ensure_pki(tmp_path_factory.mktemp("checkinatwork-pki"))  # keys are slow: once


@pytest.fixture(scope="module")
def identity(pki: PkiFiles) -> SigningIdentity:
    return load_identity(pki.client_key, pki.client_cert, datetime.now(UTC))


@pytest.fixture
def server(pki: PkiFiles) -> Iterator[SoapServer]:
    with SoapServer(pki) as fake:
        yield fake


@dataclass
class Calls:
    """What the client did, in order: `signed` when it read the time for a Timestamp,
    `before` when it called before_sending."""

    events: list[str] = field(default_factory=list)
    before_at: list[float] = field(default_factory=list)

    def now(self) -> datetime:
        self.events.append("signed")
        return datetime.now(UTC)

    async def before_sending(self) -> None:
        self.events.append("before")
        self.before_at.append(time.monotonic())


@asynccontextmanager
async def presence_client(
    pki: PkiFiles, identity: SigningIdentity, url: str, calls: Calls, limits: AnswerLimits = LIMITS
) -> AsyncIterator[PresenceClient]:
    timeout = httpx.Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)
    async with httpx.AsyncClient(verify=tls_context(pki.ca_cert), timeout=timeout) as http:
        yield PresenceClient(http, url, identity, limits, now=calls.now)


def register(
    pki: PkiFiles,
    identity: SigningIdentity,
    url: str,
    items: list[PresenceItem],
    calls: Calls | None = None,
    limits: AnswerLimits = LIMITS,
) -> list[Created | NotCreated]:
    calls = calls or Calls()

    async def call() -> list[Created | NotCreated]:
        async with presence_client(pki, identity, url, calls, limits) as client:
            return await client.register_presences(items, before_sending=calls.before_sending)

    result: list[Created | NotCreated] = run(call(), timeout=30)
    return result


def failure(
    pki: PkiFiles,
    identity: SigningIdentity,
    url: str,
    items: list[PresenceItem],
    calls: Calls | None = None,
) -> UplinkError:
    with pytest.raises(UplinkError) as caught:
        register(pki, identity, url, items, calls)
    return caught.value


def checked_as_the_onss_would(request: Received, identity: SigningIdentity) -> datetime:
    """The request's Body is valid by the XSD and its signature holds with the employer's
    certificate, made within the last minute; its Timestamp's creation time."""
    assert request.method == "POST" and request.path == PATH
    assert schema_problems(request.content()) == ()
    verified = verify(request.envelope(), [identity.certificate], datetime.now(UTC))
    assert datetime.now(UTC) - timedelta(minutes=1) < verified.created <= datetime.now(UTC)
    return verified.created


# --- a good answer ---------------------------------------------------------------------------


def test_a_signed_valid_request_gets_each_item_registered(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    items = [niss_item(), limosa_item()]
    server.answer(all_registered(items), all_registered(items))
    calls = Calls()
    first = register(pki, identity, server.url, items, calls)
    second = register(pki, identity, server.url, items, calls)

    registered_now = Created(FIRST_ID, "SUCCESSFULLY REGISTERED", ())
    assert (
        first
        == second
        == [registered_now, dataclasses.replace(registered_now, onss_id=FIRST_ID + 1)]
    )
    sent = server.requests()
    assert len(sent) == 2
    created = [checked_as_the_onss_would(request, identity) for request in sent]
    # Signed afresh: a new Timestamp, new ids, for the same items.
    assert created[0] <= created[1]
    ids = [request.envelope().xpath("//@*[local-name()='Id']") for request in sent]
    assert not set(map(str, ids[0])) & set(map(str, ids[1]))
    # Signed, then before_sending, then the request left: once per call.
    assert calls.events == ["signed", "before"] * 2
    assert all(marked <= r.at for marked, r in zip(calls.before_at, sent, strict=True))
    assert sent[0].headers["soapaction"] == f'"{Operation.REGISTER_PRESENCES.soap_action}"'
    assert sent[0].headers["content-type"].startswith("text/xml")
    content = sent[0].content()
    assert content.tag == f"{{{NS}}}RegisterPresencesRequest"
    references = content.findall(f".//{{{TYPES_NS}}}ClientPresenceRegistrationReference")
    assert [r.text for r in references] == [item.reference for item in items]


def test_results_follow_our_references_when_the_answer_is_in_another_order(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    first, second, third = niss_item(), limosa_item(), niss_item()
    server.answer(
        Reply(
            200,
            register_answer(
                registered(third, 903),
                refused(second, "4", "Invalid WorkPlaceId"),
                registered(first, 901),
            ),
        )
    )
    results = register(pki, identity, server.url, [first, second, third])
    assert results == [
        Created(901, "SUCCESSFULLY REGISTERED", ()),
        NotCreated(({"code": "4", "description": "Invalid WorkPlaceId"},)),
        Created(903, "SUCCESSFULLY REGISTERED", ()),
    ]


def test_a_registration_validated_with_remarks_keeps_them(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    item = niss_item()
    validation = (
        "<ns3:Status>FAILED</ns3:Status><ns3:ValidationDate>2026-12-07T06:58:14.1"
        "</ns3:ValidationDate><ns3:RemarkList><ns3:Remark>RELATED DIMONA NOT OK</ns3:Remark>"
        "</ns3:RemarkList>"
    )
    server.answer(Reply(200, register_answer(registered(item, 77, validation=validation))))
    assert register(pki, identity, server.url, [item]) == [
        Created(77, "FAILED", ("RELATED DIMONA NOT OK",))
    ]


# --- per-item business errors (§5.1.3, p. 12) ------------------------------------------------


def test_business_errors_2_to_6_are_items_not_created_with_their_descriptions(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    items = [niss_item() for _ in range(6)]
    entries = [
        refused(item, str(code), f"said by the ONSS about {code}")
        for code, item in zip(range(2, 7), items[:5], strict=True)
    ]
    # The service's own description is kept; an empty one is the specification's text.
    entries.append(refused(items[5], "6", ""))
    server.answer(Reply(200, register_answer(*entries)))
    results = register(pki, identity, server.url, items)
    assert results[:5] == [
        NotCreated(({"code": str(code), "description": f"said by the ONSS about {code}"},))
        for code in range(2, 7)
    ]
    assert results[5] == NotCreated(
        (
            {
                "code": "6",
                "description": "Invalid registration date (only today or tomorrow are allowed)",
            },
        )
    )
    assert all(isinstance(result, NotCreated) for result in results)


# --- SOAP faults (§7.1, p. 33) ---------------------------------------------------------------

# What the sender must do about each system code, written out here rather than read from
# codes.py: retried later, sending stopped (configuration), or the batch halved (content).
FAULTS: dict[str, type[UplinkError]] = {
    "SOA-00001": RetryableError,
    "SOA-02002": RetryableError,
    "SOA-01001": UnauthorizedError,
    "SOA-01002": ForbiddenError,
    "SOA-02001": ForbiddenError,
    "SOA-03002": ForbiddenError,
    "SOA-03003": ForbiddenError,
    "SOA-03004": ForbiddenError,
    "SOA-03005": ForbiddenError,
    "SOA-03001": BadRequestError,
    "SOA-03006": BadRequestError,
    "SOA-03007": BadRequestError,
}


@pytest.mark.parametrize("code", sorted(FAULTS))
def test_each_system_error_code_ends_the_call_as_its_class_says(
    code: str, pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    server.answer(fault(code, f"fault {code} for {NISS}"))
    calls = Calls()
    error = failure(pki, identity, server.url, [niss_item()], calls)
    assert type(error) is FAULTS[code]
    assert not isinstance(error, AmbiguousError)  # a fault is an answer: nothing registered
    assert code in str(error) or (isinstance(error, BadRequestError) and code in str(error.issues))
    assert NISS not in str(error) and NISS not in str(getattr(error, "issues", ""))
    assert calls.events == ["signed", "before"]


def test_a_content_fault_names_its_code_as_the_rest_issues_do(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    server.answer(fault("SOA-03007", "cross-checks between fields failed"))
    error = failure(pki, identity, server.url, [niss_item(), limosa_item()])
    assert isinstance(error, BadRequestError)
    [issue] = error.issues
    assert issue["name"] == "SOA-03007"
    assert "Message content validation failure" in issue["detail"]
    assert "cross-checks between fields failed" in issue["detail"]


def test_a_retry_fault_carries_the_servers_retry_after(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    reply = fault("SOA-02002", "Service temporarily not available. Please try later.")
    server.answer(dataclasses.replace(reply, headers=(("Retry-After", "120"),)))
    error = failure(pki, identity, server.url, [niss_item()])
    assert isinstance(error, RetryableError) and not isinstance(error, AmbiguousError)
    assert (error.cause, error.retry_after) == ("fault SOA-02002", 120.0)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        # An unknown code of a known family takes the family's class (§7.1's numbering).
        (fault("SOA-01999", "new security check"), ForbiddenError),
        (fault("SOA-03999", "new content check"), BadRequestError),
        (fault("SOA-09001", "new family"), RetryableError),
        # The code only in the faultstring is still read.
        (fault("SOA-02002", "SOA-02002 try later", detail_code=""), RetryableError),
        # No code at all: a fault blames no item, retry; at a gateway's status, ambiguous.
        (fault("none", "Internal Error", detail_code=""), RetryableError),
        (fault("none", "Gateway Timeout", status=504, detail_code=""), AmbiguousError),
        # A fault is read whatever the status it came with.
        (fault("SOA-01002", "not authorized", status=200), ForbiddenError),
    ],
    ids=[
        "unknown-01",
        "unknown-03",
        "unknown-family",
        "in-faultstring",
        "no-code",
        "no-code-504",
        "fault-in-200",
    ],
)
def test_a_fault_with_an_unknown_or_missing_code_is_never_a_crash(
    reply: Reply,
    expected: type[UplinkError],
    pki: PkiFiles,
    identity: SigningIdentity,
    server: SoapServer,
) -> None:
    server.answer(reply)
    error = failure(pki, identity, server.url, [niss_item()])
    assert type(error) is expected


# --- answers that cannot be read -------------------------------------------------------------


def _unreadable_cases() -> dict[str, Callable[[list[PresenceItem]], Reply]]:
    return {
        "not-xml": lambda items: Reply(200, b"<html>Welcome</html"),
        "not-soap": lambda items: Reply(200, b"<RegisterPresencesResponse/>"),
        "empty": lambda items: Reply(200, b""),
        "wrong-count": lambda items: Reply(200, register_answer(registered(items[0], 1))),
        "another-operation": lambda items: Reply(200, envelope(GET_EXAMPLE)),
        "a-reference-not-sent": lambda items: Reply(
            200, register_answer(registered(niss_item(), 1), registered(items[1], 2))
        ),
        "cut": lambda items: dataclasses.replace(all_registered(items), mode="cut"),
        "huge": lambda items: Reply(200, mode="huge"),
        "endless": lambda items: Reply(200, mode="endless"),
        "drip": lambda items: Reply(200, mode="drip", interval=0.2),
        "with-a-niss": lambda items: Reply(200, f"no answer for {NISS}".encode()),
    }


@pytest.mark.parametrize("case", sorted(_unreadable_cases()))
def test_a_2xx_that_cannot_be_read_leaves_the_items_unconfirmed(
    case: str, pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    items = [niss_item(), limosa_item()]
    server.answer(_unreadable_cases()[case](items))
    started = time.monotonic()
    error = failure(pki, identity, server.url, items)
    elapsed = time.monotonic() - started
    assert isinstance(error, PresenceAnswerError) and isinstance(error, UnreadableAnswerError)
    assert NISS not in str(error)
    assert elapsed < DEADLINE + 1.5  # the deadline holds, whatever the server does
    if case in ("huge", "endless"):
        assert "cap" in error.detail  # stopped at the cap: memory bounded
    if case == "drip":
        assert "deadline" in error.detail
    assert len(server.requests()) == 1


def test_an_endless_answer_is_read_no_further_than_the_cap(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    server.answer(Reply(200, mode="endless"))
    error = failure(pki, identity, server.url, [niss_item()])
    assert isinstance(error, PresenceAnswerError)
    assert f"longer than the {CAP}-byte cap" in error.detail
    # What the server managed to push before the client hung up: socket buffers, not more.
    time.sleep(0.3)
    assert server.streamed.bytes < 64 * CAP


# --- statuses without a fault, and the network -----------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected", "retry_after"),
    [
        (Reply(502, b"<html>Bad Gateway</html>"), AmbiguousError, None),
        (Reply(504, b""), AmbiguousError, None),
        (Reply(503, b"busy", headers=(("Retry-After", "30"),)), RetryableError, 30.0),
        (Reply(500, b"<html>oops</html>"), RetryableError, None),
        (Reply(500, mode="huge"), RetryableError, None),  # over the cap, not a 2xx: retry
        (Reply(404, b"Not Found"), RetryableError, None),
        (Reply(400, b"Bad Request"), RetryableError, None),  # no fault: no item blamed
        (Reply(401, b"who are you"), UnauthorizedError, None),
        (Reply(403, b"Forbidden"), ForbiddenError, None),
        (Reply(413, b"Too Large"), PayloadTooLargeError, None),
    ],
    ids=["502", "504", "503", "500", "500-huge", "404", "400", "401", "403", "413"],
)
def test_a_status_without_a_fault_ends_the_call_as_the_rest_client_does(
    reply: Reply,
    expected: type[UplinkError],
    retry_after: float | None,
    pki: PkiFiles,
    identity: SigningIdentity,
    server: SoapServer,
) -> None:
    server.answer(reply)
    error = failure(pki, identity, server.url, [niss_item()])
    assert type(error) is expected
    if isinstance(error, RetryableError):
        assert error.retry_after == retry_after
        assert error.cause == f"http {reply.status}"


def test_a_connection_dropped_after_sending_may_have_registered_the_items(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    server.answer(Reply(mode="drop"))
    calls = Calls()
    error = failure(pki, identity, server.url, [niss_item()], calls)
    assert isinstance(error, AmbiguousError)
    assert calls.events == ["signed", "before"]
    assert len(server.requests()) == 1  # it arrived in full


def test_no_answer_by_the_deadline_may_have_registered_the_items(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    server.answer(Reply(mode="hang", interval=DEADLINE + 3))
    started = time.monotonic()
    error = failure(pki, identity, server.url, [niss_item()])
    assert isinstance(error, AmbiguousError) and error.cause == "timeout"
    assert time.monotonic() - started < DEADLINE + 1.5


def test_a_refused_connection_sent_nothing(pki: PkiFiles, identity: SigningIdentity) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    calls = Calls()
    error = failure(pki, identity, f"https://127.0.0.1:{port}{PATH}", [niss_item()], calls)
    assert type(error) is RetryableError and error.cause == "tcp"
    # before_sending was called (the items are marked in flight just before the send);
    # the sender clears the mark on a RetryableError, so nothing is flagged.
    assert calls.events == ["signed", "before"]


def test_a_server_whose_certificate_is_not_trusted_gets_nothing(
    identity: SigningIdentity, server: SoapServer, tmp_path: Path
) -> None:
    (tmp_path / "another-ca").mkdir()
    other = ensure_pki(tmp_path / "another-ca")  # the box trusts this CA, not the server's
    error = failure(other, identity, server.url, [niss_item()])
    assert type(error) is RetryableError and error.cause == "tls"
    assert server.requests() == []


# --- refused before anything is sent ---------------------------------------------------------


def test_more_than_200_items_are_refused_before_anything_is_sent(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    calls = Calls()
    error = failure(pki, identity, server.url, [niss_item() for _ in range(MAX_ITEMS + 1)], calls)
    assert isinstance(error, PayloadTooLargeError)
    assert (calls.events, server.requests()) == ([], [])


def test_200_items_are_one_request(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    items = [niss_item() if n % 2 else limosa_item() for n in range(MAX_ITEMS)]
    server.answer(all_registered(items))
    # About 700 bytes an item answered: 200 need more than this module's 64 KiB cap.
    results = register(pki, identity, server.url, items, limits=AnswerLimits(1 << 20, 10.0))
    assert [r.onss_id for r in results if isinstance(r, Created)] == [
        FIRST_ID + n for n in range(MAX_ITEMS)
    ]
    [request] = server.requests()
    checked_as_the_onss_would(request, identity)


def test_an_item_the_xsd_refuses_is_never_sent(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    bad = niss_item()
    object.__setattr__(bad, "workplace_id", "W" * 14)  # past PresenceItem's own check
    calls = Calls()
    error = failure(pki, identity, server.url, [niss_item(), bad], calls)
    assert isinstance(error, BadRequestError)
    assert "WorkPlaceId" in str(error.issues)
    assert (calls.events, server.requests()) == ([], [])


# --- getPresenceRegistration ------------------------------------------------------------------


def test_get_presence_registration_reads_the_registrations_validation(
    pki: PkiFiles, identity: SigningIdentity, server: SoapServer
) -> None:
    unknown = re.sub(
        r"<ns2:PresenceRegistrationType>.*</ns2:PresenceRegistrationType>",
        "",
        GET_EXAMPLE,
        flags=re.S,
    )
    server.answer(
        Reply(200, envelope(GET_EXAMPLE)),
        Reply(200, envelope(unknown)),
        fault("SOA-01001", "not authenticated"),
    )
    calls = Calls()

    async def call() -> tuple[list[Registered | None], UplinkError | None]:
        found = []
        async with presence_client(pki, identity, server.url, calls) as client:
            try:
                for presence_id in (47003, 47004, 47005):
                    found.append(await client.get_presence_registration(presence_id))
            except UplinkError as error:
                return found, error
            return found, None

    (found, unknown_id), error = run(call(), timeout=30)
    assert found is not None and (found.presence_id, found.status) == (47003, "FAILED")
    assert found.remarks == ("EMPLOYER NOT ACTIVE",)
    assert unknown_id is None  # the answer holds no registration
    assert isinstance(error, UnauthorizedError)
    first = server.requests()[0]
    checked_as_the_onss_would(first, identity)
    assert first.headers["soapaction"] == f'"{Operation.GET_PRESENCE_REGISTRATION.soap_action}"'
    ids = first.content().findall(f".//{{{TYPES_NS}}}PresenceRegistrationId")
    assert [e.text for e in ids] == ["47003"]
