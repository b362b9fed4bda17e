"""HTTPS on loopback for the tests' fake servers (the odd REST ONSS, the SOAP one): raw
HTTP/1.1 over real TLS, one request per connection, each on a thread of its own, so that a
fake can answer what no well-behaved framework would. The server certificate is signed by
onss_sim's test CA, which the client trusts through its `ca_file`, as it would a real one.

Every loop is bounded: a connection ends when the client goes or the fake closes, and each
socket has a timeout.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from onss_sim.pki import PkiFiles

SOCKET_TIMEOUT_SECONDS = 5.0
MAX_HEAD_BYTES = 1 << 20


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without its query
    headers: dict[str, str]  # names in lower case
    body: bytes


def read_request(conn: ssl.SSLSocket) -> Request | None:
    """One HTTP/1.1 request read off the connection; None if it closed or sent too much."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk or len(data) > MAX_HEAD_BYTES:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return Request(method, path.split("?")[0], headers, body[:length])


class LoopbackHttps:
    """The listening socket and its connection threads; a fake answers in `_answer`."""

    def __init__(self, pki: PkiFiles) -> None:
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(pki.server_cert, pki.server_key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Self:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        self._acceptor.join(5)
        self._listener.close()
        for thread in list(self._threads):
            thread.join(SOCKET_TIMEOUT_SECONDS + 1)

    def _answer(self, conn: ssl.SSLSocket, request: Request) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(SOCKET_TIMEOUT_SECONDS)
        try:
            with self._tls.wrap_socket(raw, server_side=True) as conn:
                request = read_request(conn)
                if request is not None:
                    self._answer(conn, request)
        except (OSError, ssl.SSLError, ValueError):
            pass  # the client went away (as it should, from an endless body) or spoke nonsense
        finally:
            raw.close()
