"""HTTPS over the standard library: a threaded HTTP/1.1 server and its request handler.

The standard library server gives full control of the connection: keep-alive (every answer
has a Content-Length), and a connection closed without an answer when a fault says so.
The TLS handshake runs in the connection's own thread, so a stalled client blocks nobody.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import sys
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from onss_sim import admin, api, soap
from onss_sim.checks import item_count
from onss_sim.messages import Reply, Request, problem
from onss_sim.pki import PkiFiles
from onss_sim.state import Simulator, Urls

LOG = logging.getLogger("onss_sim")
MAX_BODY = 1024 * 1024  # a larger body is refused (413)
DISCARD_LIMIT = 16 * MAX_BODY  # up to this, a refused body is read and the connection kept
IDLE_TIMEOUT_S = 30.0

API_ROUTES: dict[str, dict[str, api.Endpoint]] = {
    api.TOKEN_PATH: {"POST": api.token},
    api.REGISTER_PATH: {"POST": api.register_in_bulk},
    soap.PATH: {"POST": soap.presence_registration},
}
ROUTES = {**API_ROUTES, **admin.ROUTES}


class Handler(BaseHTTPRequestHandler):
    """One connection: TLS handshake, then HTTP/1.1 requests until either side closes."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, the body waits for the
    # client's delayed ACK (~40 ms a request), and every benchmark measures that stall.
    disable_nagle_algorithm = True
    server_version = "onss-sim/1"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S

    def setup(self) -> None:
        connection = cast(ssl.SSLSocket, self.request)
        connection.settimeout(self.timeout)
        connection.do_handshake()
        super().setup()

    # The method names are BaseHTTPRequestHandler's dispatch convention.
    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silenced: _serve logs one line of its own per request."""

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s %s", self.address_string(), format % args)

    @property
    def simulator(self) -> Simulator:
        return cast(SimulatorServer, self.server).simulator

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body, early = self._read_body()
        request = Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            received_at=datetime.now(UTC),
        )
        reply = early or self._route(request)
        self._answer(reply)
        outcome = "dropped" if reply.drop else str(reply.status)
        LOG.info("%s %s %s", request.method, request.path, outcome)
        self._record(request, reply)

    def _read_body(self) -> tuple[bytes, Reply | None]:
        """The body, or an answer that replaces the endpoint's (refused or unreadable body)."""
        if "Transfer-Encoding" in self.headers:
            return b"", replace(problem(411, None, "send a Content-Length"), close=True)
        declared = self.headers.get("Content-Length", "0").strip()
        if not declared.isdigit():
            return b"", replace(problem(400, None, "bad Content-Length"), close=True)
        length = int(declared)
        if length > MAX_BODY:
            too_large = api.payload_too_large(f"the body exceeds {MAX_BODY} bytes")
            if length > DISCARD_LIMIT:
                return b"", replace(too_large, close=True)
            self._discard(length)
            return b"", too_large
        body = self.rfile.read(length)
        if len(body) < length:  # the client went away mid-request
            return body, Reply(0, drop=True, close=True)
        return body, None

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                return
            length -= len(chunk)

    def _route(self, request: Request) -> Reply:
        methods = ROUTES.get(request.path)
        if methods is None:
            return problem(404, None, f"no resource at {request.path}")
        endpoint = methods.get(request.method)
        if endpoint is None:
            reply = problem(405, None, f"{request.method} is not allowed on {request.path}")
            return replace(reply, headers=(("Allow", ", ".join(methods)),))
        return endpoint(self.simulator, request)

    def _answer(self, reply: Reply) -> None:
        if reply.drop:
            self.close_connection = True  # no answer at all: the connection just closes
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _record(self, request: Request, reply: Reply) -> None:
        if request.path not in API_ROUTES:
            return
        items = _items(request) if request.path == api.REGISTER_PATH else None
        more = {}
        if request.path == soap.PATH:
            items, more = soap.item_count(request), {"operation": soap.operation_of(request)}
        processed = reply.status if reply.drop and reply.status else None
        with self.simulator.lock:
            self.simulator.log_request(
                request.method,
                request.path,
                None if reply.drop else reply.status,
                items,
                request.received_at,
                client_id=reply.client_id,
                fault=reply.fault,
                processed_status=processed,
                **more,
            )


def _items(request: Request) -> int | None:
    try:
        return item_count(request.json())
    except ValueError:
        return None


class SimulatorServer(ThreadingHTTPServer):
    """The HTTPS server; `simulator` holds all state, `urls` where clients reach it."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, context: ssl.SSLContext, public_host: str) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = int(self.server_address[1])
        shown = f"[{public_host}]" if ":" in public_host else public_host
        self.simulator = Simulator(Urls(f"https://{shown}:{self.port}"))

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's FQDN, which can stall on a bad DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.warning("connection from %s ended: %s", client_address[0], sys.exc_info()[1])


def tls_context(pki: PkiFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.server_cert, pki.server_key)
    return context


def public_host_for(host: str) -> str:
    """The host a client should use: a wildcard bind is reached on the loopback address."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 (a comparison)


def create_server(host: str, port: int, pki: PkiFiles) -> SimulatorServer:
    return SimulatorServer(host, port, tls_context(pki), public_host_for(host))
