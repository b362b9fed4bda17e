"""A fake HTTPS ONSS that answers the odd things the real world sends (issue 14): a success
other than 200, 2xx bodies nobody can read, endless or huge bodies, 502/504 after
processing, a token endpoint that says 429 with Retry-After, a 401 on every call.

Real TLS on loopback: the server certificate is signed by a test CA (made by
onss_sim.pki), which the uplink trusts through its `ca_file`, as it would a real one.
Raw HTTP/1.1 over a socket, one request per connection, so that it can answer what no
well-behaved framework would. Every request is logged with what the fake did with it
(`processed`: whether a real ONSS would now hold its items).

    with OddOnss(tmp_path / "onss") as onss:
        onss.answer_bulk(Reply(status=202))        # the next registerInBulk, then normal
        ...
        assert [r.status for r in onss.bulk_requests()] == [202]

Every loop here is bounded: a connection thread ends when the client goes, when the
fake closes, or after `STREAM_LIMIT_SECONDS`; each socket has a timeout.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from onss_sim.pki import ensure_pki
from tests.fake_https import LoopbackHttps, Request

STREAM_LIMIT_SECONDS = 10.0  # an endless body ends after this even if nobody hangs up
STREAM_LIMIT_BYTES = 1 << 31
CHUNK = b'{"createdPresenceRegistration": {"id": 1, "validity": "pending"}}, ' * 250
TOKEN_PATH = "/oauth/token"
BASE_PATH = "/REST/presenceRegistration/v1"
BULK_PATH = BASE_PATH + "/presenceRegistrations/registerInBulk"
CLIENT_ID = "odd-onss-client"

Mode = Literal["plain", "endless", "huge", "drop", "hang"]


def items_of(request: Request) -> list[dict[str, Any]]:
    """The registerInBulk items a request carries (none if its body is not that)."""
    try:
        items = json.loads(request.body)["items"]
    except (ValueError, KeyError, TypeError):
        return []
    return items if isinstance(items, list) else []


Body = bytes | Callable[[Request, "OddOnss"], bytes]


@dataclass(frozen=True)
class Reply:
    """One answer. `body` may be made from the request (see `created`); `mode`: plain,
    endless (chunked, never ends; `interval` between chunks), huge (a Content-Length of
    `length`, then bytes without end), drop (close without answering), hang (answer
    nothing for `interval` seconds, then close). `processed`: whether the items are now
    at the "ONSS" (default: for a 2xx, 502 and 504)."""

    status: int = 200
    body: Body | None = None
    headers: tuple[tuple[str, str], ...] = ()
    mode: Mode = "plain"
    interval: float = 0.0
    length: int = 10**12
    processed: bool | None = None

    def was_processed(self) -> bool:
        if self.processed is not None:
            return self.processed
        return self.mode != "drop" and (200 <= self.status < 300 or self.status in (502, 504))


@dataclass
class Received:
    at: float  # time.monotonic()
    path: str
    items: list[dict[str, Any]]
    authorization: str
    reply: Reply
    bytes_sent: int = 0

    @property
    def status(self) -> int:
        return self.reply.status

    @property
    def ssins(self) -> list[str]:
        return [str(item.get("ssin")) for item in self.items]


@dataclass
class _Script:
    queue: list[Reply] = field(default_factory=list)
    then: Reply | None = None  # after the queue; None: the normal answer


class OddOnss(LoopbackHttps):
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.pki = ensure_pki(directory)
        super().__init__(self.pki)
        self._scripts = {TOKEN_PATH: _Script(), BULK_PATH: _Script()}
        self._received: list[Received] = []
        self._next_id = 17_000
        self._tokens = 0

    # --- what the uplink needs -------------------------------------------------------------

    @property
    def token_url(self) -> str:
        return f"https://127.0.0.1:{self.port}{TOKEN_PATH}"

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}{BASE_PATH}"

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_cert

    @property
    def client_key_file(self) -> Path:
        return self.pki.client_key

    client_id = CLIENT_ID

    # --- scripting -------------------------------------------------------------------------

    def answer_token(self, *replies: Reply, then: Reply | None = None) -> None:
        """The next token requests get `replies`, in order; later ones `then` (or a token)."""
        with self._lock:
            self._scripts[TOKEN_PATH] = _Script(list(replies), then)

    def answer_bulk(self, *replies: Reply, then: Reply | None = None) -> None:
        """The next registerInBulk requests get `replies`, in order; later ones `then` (or
        each item created)."""
        with self._lock:
            self._scripts[BULK_PATH] = _Script(list(replies), then)

    def created(self, request: Request, onss: OddOnss | None = None) -> bytes:
        """Each item created, with a fresh id (the normal answer's body)."""
        with self._lock:
            first, self._next_id = self._next_id, self._next_id + len(items_of(request))
        results = [
            {"createdPresenceRegistration": {"id": first + n, "validity": "pending", "remarks": []}}
            for n in range(len(items_of(request)))
        ]
        return json.dumps({"items": results}).encode()

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def bulk_requests(self) -> list[Received]:
        return [r for r in self.requests() if r.path == BULK_PATH]

    def token_requests(self) -> list[Received]:
        return [r for r in self.requests() if r.path == TOKEN_PATH]

    def processed_ssins(self) -> list[str]:
        """The items a real ONSS would now hold, once per time it processed them."""
        return [ssin for r in self.bulk_requests() if r.reply.was_processed() for ssin in r.ssins]

    # --- serving ---------------------------------------------------------------------------

    def _reply_for(self, request: Request) -> Reply:
        script = self._scripts.get(request.path)
        if script is None:
            return Reply(404, b'{"title": "not found"}', processed=False)
        if script.queue:
            return script.queue.pop(0)
        if script.then is not None:
            return script.then
        if request.path == TOKEN_PATH:
            self._tokens += 1
            token = {"access_token": f"token-{self._tokens}", "expires_in": 600}
            return Reply(200, json.dumps(token).encode())
        return Reply(200, self.created)

    def _answer(self, conn: ssl.SSLSocket, request: Request) -> None:
        with self._lock:
            reply = self._reply_for(request)
            received = Received(
                time.monotonic(),
                request.path,
                items_of(request),
                request.headers.get("authorization", ""),
                reply,
            )
            self._received.append(received)
        body = reply.body(request, self) if callable(reply.body) else (reply.body or b"")
        if reply.mode == "drop":
            return
        if reply.mode == "hang":
            self._closing.wait(reply.interval)
            return
        head = [f"HTTP/1.1 {reply.status} Odd", "Content-Type: application/json"]
        head += [f"{name}: {value}" for name, value in reply.headers]
        if reply.mode == "plain":
            head += [f"Content-Length: {len(body)}", "Connection: close"]
            conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            received.bytes_sent = len(body)
            return
        framing = "Transfer-Encoding: chunked" if reply.mode == "endless" else ""
        head.append(framing or f"Content-Length: {reply.length}")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        self._stream(conn, reply, received)

    def _stream(self, conn: ssl.SSLSocket, reply: Reply, received: Received) -> None:
        """Bytes without end, until the client hangs up (or the limits, for the test's sake)."""
        chunked = reply.mode == "endless"
        piece = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n" if chunked else CHUNK
        until = time.monotonic() + STREAM_LIMIT_SECONDS
        while not self._closing.is_set() and time.monotonic() < until:
            if received.bytes_sent > STREAM_LIMIT_BYTES:
                return
            conn.sendall(piece)
            received.bytes_sent += len(CHUNK)
            if reply.interval:
                self._closing.wait(reply.interval)
