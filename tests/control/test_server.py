"""The control socket against hostile clients: the real ControlServer on a real Unix socket,
with small handlers, on an event loop in a thread of its own (the test talks to it as the
CLI does, with blocking sockets). Issue 14, point 11."""

from __future__ import annotations

import asyncio
import json
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import pytest
from structlog.testing import capture_logs

from gateway import control
from gateway.control.server import EVICT_AFTER, MAX_CLIENTS, ControlServer, Handler
from tests.support import REPO

SECRET = "secret-internal-detail"


async def status(request: dict[str, Any]) -> dict[str, Any]:
    return {"status": "fine"}


async def tap(request: dict[str, Any]) -> dict[str, Any]:
    return {"outcome": {"kind": "registered", "uid": request.get("uid")}}


async def broken(request: dict[str, Any]) -> dict[str, Any]:
    raise KeyError(SECRET)


async def unencodable(request: dict[str, Any]) -> dict[str, Any]:
    return {"value": 7 * 10**5000}  # more digits than int -> str allows


async def not_a_dict(request: dict[str, Any]) -> dict[str, Any]:
    return [SECRET]  # type: ignore[return-value]  # the bug under test


HANDLERS: dict[str, Handler] = {
    "status": status,
    "tap": tap,
    "broken": broken,
    "unencodable": unencodable,
    "not_a_dict": not_a_dict,
}


@contextmanager
def serving(
    path: Path, handlers: Mapping[str, Handler] = HANDLERS, **options: Any
) -> Iterator[ControlServer]:
    """A ControlServer running on its own event loop in a thread, closed at the end."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="control-loop", daemon=True)
    thread.start()
    server = ControlServer(path, handlers, **options)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        assert not thread.is_alive()
        loop.close()


def connect(path: Path, timeout: float = 5) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def connect_patiently(path: Path, deadline: float) -> socket.socket:
    """Connect, waiting while the server's backlog is full (EAGAIN), until deadline."""
    while True:
        try:
            return connect(path)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def read_reply(sock: socket.socket) -> dict[str, Any]:
    """One reply line (the connection may be reset right after it: still read it)."""
    data = b""
    for _ in range(100):  # each recv bounded by the socket's timeout
        chunk = sock.recv(65536)
        data += chunk
        if not chunk or data.endswith(b"\n"):
            break
    assert data.endswith(b"\n"), f"no complete reply, got {data[:200]!r}"
    reply: dict[str, Any] = json.loads(data)
    return reply


def exchange(sock: socket.socket, payload: bytes) -> dict[str, Any]:
    with suppress(BrokenPipeError, ConnectionResetError):  # refused unread: the answer waits
        sock.sendall(payload)
    return read_reply(sock)


def pending_reply(sock: socket.socket) -> dict[str, Any] | None:
    """The reply already waiting on a socket, if any, without waiting for one."""
    sock.setblocking(False)  # with a timeout, recv would wait for one
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return None
    reply: dict[str, Any] = json.loads(data)
    return reply


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "control.sock"


# --- malformed requests ----------------------------------------------------------------------


NESTED_WITHIN_SIZE = b'{"cmd": "status", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}\n"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b'{"cmd": "status", "n": ' + b"7" * 5000 + b"}\n", "number longer than 4300 digits"),
        (NESTED_WITHIN_SIZE, "nested too deeply"),
        (b'{"cmd": "status", "reader": "\xff\xfe door"}\n', "not JSON"),
        (b"\xc3\x28\n", "not JSON"),
        (b"[1, 2]\n", 'an object with a "cmd" string'),
        (b'"status"\n', 'an object with a "cmd" string'),
        (b"42\n", 'an object with a "cmd" string'),
        (b"null\n", 'an object with a "cmd" string'),
        (b'{"cmd": ["status"]}\n', 'an object with a "cmd" string'),
        (b'{"cmd": "' + b"x" * 60_000 + b'"}\n', "unknown command"),
    ],
    ids=[
        "5000-digit-integer",
        "nested-30000-deep",
        "invalid-utf8-in-string",
        "invalid-utf8",
        "array",
        "string",
        "number",
        "null",
        "cmd-not-a-string",
        "60kB-unknown-command",
    ],
)
def test_a_malformed_request_gets_an_error_and_the_connection_goes_on(
    path: Path, payload: bytes, error: str
) -> None:
    with serving(path) as server, connect(path) as sock:
        reply = exchange(sock, payload)
        assert reply["ok"] is False
        assert error in reply["error"]
        assert len(reply["error"]) < 1000  # no 60 kB echo of what was sent
        assert exchange(sock, b'{"cmd": "status"}\n') == {"ok": True, "status": "fine"}
        assert server.clients == 1


def test_nesting_100000_deep_is_answered_as_too_long(path: Path) -> None:
    payload = b"[" * 100_000 + b"]" * 100_000 + b"\n"
    with serving(path), connect(path) as sock:
        reply = exchange(sock, payload)
        assert reply["ok"] is False
        assert "longer than 65536 bytes" in reply["error"]
        assert closed_by_server(sock)
        assert control.request(path, {"cmd": "status"}, timeout=5)["status"] == "fine"


@pytest.mark.parametrize(
    ("cmd", "error_type"),
    [("broken", "KeyError"), ("unencodable", "ValueError"), ("not_a_dict", "TypeError")],
)
def test_a_handler_that_fails_is_answered_and_logged_once(
    path: Path, cmd: str, error_type: str
) -> None:
    with capture_logs() as logs, serving(path), connect(path) as sock:
        reply = exchange(sock, json.dumps({"cmd": cmd}).encode() + b"\n")
        assert reply == {
            "ok": False,
            "error": f"internal error: {error_type} (the daemon logged it)",
        }
        assert SECRET not in json.dumps(reply) and "Traceback" not in json.dumps(reply)
        assert exchange(sock, b'{"cmd": "status"}\n')["ok"] is True
    failures = [entry for entry in logs if entry["event"] == "control command failed"]
    assert len(failures) == 1, logs
    assert type(failures[0]["exc_info"]).__name__ == error_type
    assert failures[0]["log_level"] == "error"


def test_failures_in_a_tight_loop_are_logged_at_most_once_a_second(path: Path) -> None:
    with capture_logs() as logs, serving(path), connect(path) as sock:
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 1.5 and sent < 5000:
            assert exchange(sock, b'{"cmd": "broken"}\n')["ok"] is False
            sent += 1
        elapsed = time.monotonic() - started
    failures = [entry for entry in logs if entry["event"] == "control command failed"]
    assert sent > 50
    assert 1 <= len(failures) <= elapsed + 1, (sent, len(failures))
    if len(failures) > 1:
        assert failures[1]["held_back"] > 0


# --- idle and slow clients -------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b'{"cmd": "sta'], ids=["silent", "half-a-request"])
def test_a_client_without_a_complete_request_is_told_and_dropped(path: Path, sent: bytes) -> None:
    with serving(path, request_timeout=0.3) as server, connect(path) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        reply = read_reply(sock)
        assert 0.25 < time.monotonic() - started < 2
        assert reply == {"ok": False, "error": "no complete request within 0.3 s: closing"}
        assert closed_by_server(sock)
        assert server.clients == 0


def test_a_client_dripping_bytes_is_dropped_on_time(path: Path) -> None:
    with serving(path, request_timeout=0.5), connect(path) as sock:
        started = time.monotonic()
        with pytest.raises(OSError):  # the server hangs up while we are still dripping
            for _ in range(40):
                sock.sendall(b" ")
                time.sleep(0.05)
        assert time.monotonic() - started < 1.5
        assert "no complete request" in read_reply(sock)["error"]


def test_the_default_drops_idle_clients_within_seconds(path: Path) -> None:
    with serving(path), connect(path, timeout=10) as sock:
        assert "no complete request within 5 s" in read_reply(sock)["error"]


# --- crowds ------------------------------------------------------------------------------


@contextmanager
def descriptors(at_least: int) -> Iterator[None]:
    """Raise this process's descriptor limit for the test, if it is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= at_least:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < at_least:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {at_least}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def timed(path: Path, message: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    reply = control.request(path, message, timeout=5)
    return reply, time.monotonic() - started


def test_1100_idle_connections_leave_status_and_tap_answered_within_a_second(
    path: Path,
) -> None:
    with descriptors(4096), serving(path) as server, ExitStack() as idle:
        deadline = time.monotonic() + 30
        hogs = [idle.enter_context(connect_patiently(path, deadline)) for _ in range(1100)]
        assert server.clients <= MAX_CLIENTS
        status_reply, status_took = timed(path, {"cmd": "status"})
        tap_reply, tap_took = timed(path, {"cmd": "tap", "uid": "04A23B9C"})
        assert status_reply["status"] == "fine" and status_took < 1.0
        assert tap_reply["outcome"]["kind"] == "registered" and tap_took < 1.0
        assert server.clients <= MAX_CLIENTS
        # the hogs over the limit were told so at once and let go, or made room later
        replies = [pending_reply(hog) for hog in hogs]
        told = [r for r in replies if r is not None]
        assert all(r["busy"] is True for r in told)
        evicted = [r for r in told if "make room" in r["error"]]
        busy = [r for r in told if "busy: 16 clients are being served" in r["error"]]
        held = replies.count(None)
        assert held <= MAX_CLIENTS and len(busy) + len(evicted) + held == len(hogs)
        assert busy, "no hog was refused at the door"


def test_idle_clients_make_room_for_a_request(path: Path) -> None:
    with serving(path, max_clients=4) as server, ExitStack() as idle:
        hogs = [idle.enter_context(connect(path)) for _ in range(4)]
        time.sleep(EVICT_AFTER + 0.1)
        reply, took = timed(path, {"cmd": "tap", "uid": "04A23B9C"})
        assert reply["ok"] is True and took < 0.5
        told = [read_reply(hog) for hog in hogs[:1]]  # the oldest went first
        assert "make room" in told[0]["error"]
        assert server.clients <= 4


def test_clients_with_requests_in_hand_are_never_dropped_for_newcomers(path: Path) -> None:
    release = threading.Event()

    async def slow(request: dict[str, Any]) -> dict[str, Any]:
        await asyncio.to_thread(release.wait, 10)
        return {"done": True}

    with serving(path, {"slow": slow, "status": status}, max_clients=2), ExitStack() as busy:
        socks = [busy.enter_context(connect(path)) for _ in range(2)]
        for sock in socks:
            sock.sendall(b'{"cmd": "slow"}\n')
        time.sleep(EVICT_AFTER + 0.1)
        started = time.monotonic()
        with pytest.raises(control.ControlError, match="busy: 2 clients"):
            control.request(path, {"cmd": "status"}, timeout=0.5)
        assert time.monotonic() - started < 1.5  # tried again, within its timeout
        release.set()
        assert [read_reply(sock) for sock in socks] == [{"ok": True, "done": True}] * 2
        assert control.request(path, {"cmd": "status"}, timeout=5)["ok"] is True


# --- out of file descriptors -----------------------------------------------------------------


class Crowded:
    """tests/control/crowded.py: a control socket in a process out of descriptors."""

    def __init__(self, path: Path, log: Path, spare: bool) -> None:
        self.path = path
        self.log_path = log
        command = [sys.executable, "-m", "tests.control.crowded", str(path)]
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*command, "spare" if spare else "nospare"],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )

    def said(self, word: str, timeout: float = 20) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        assert ready, f"the server did not say {word!r} within {timeout} s: {self.log()}"
        assert stdout.readline().decode().strip() == word, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self, event: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == event]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=20) == 0, self.log()
        stdout: IO[bytes] | None = self.process.stdout
        if stdout is not None:
            stdout.close()


@contextmanager
def crowded(tmp_path: Path, spare: bool) -> Iterator[Crowded]:
    server = Crowded(tmp_path / "control.sock", tmp_path / "server.log", spare)
    try:
        server.said("exhausted")
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)


CANNOT_ACCEPT = "control socket cannot accept a connection"
WINDOW = 2.0


def test_out_of_descriptors_each_client_is_told_and_the_log_stays_quiet(tmp_path: Path) -> None:
    with crowded(tmp_path, spare=True) as server:
        started = time.monotonic()
        told = 0
        while time.monotonic() - started < WINDOW and told < 20_000:
            with connect(server.path, timeout=2) as sock:
                reply = exchange(sock, b'{"cmd": "status"}\n')
            assert reply["ok"] is False, reply
            assert "out of file descriptors (EMFILE" in reply["error"]
            told += 1
        server.process.send_signal(signal.SIGUSR1)
        server.said("freed")
        reply, took = timed(server.path, {"cmd": "status"})
        assert reply["status"] == "fine" and took < 1.0
        server.stop()
    assert told > 100, "too few attempts to mean anything"
    logged = server.log_lines(CANNOT_ACCEPT)
    assert 1 <= len(logged) <= WINDOW + 1, f"{len(logged)} lines for {told} refusals"
    assert "EMFILE" in logged[0]["error"]
    again = server.log_lines("control socket accepting again")
    assert len(again) == 1 and again[0]["errors_meanwhile"] > len(logged)  # held back
    assert "out of system resource" not in server.log()  # asyncio's own accept never ran


def test_out_of_descriptors_without_a_spare_clients_wait_and_are_served_after(
    tmp_path: Path,
) -> None:
    with crowded(tmp_path, spare=False) as server, ExitStack() as waiting:
        socks = []
        started = time.monotonic()
        while time.monotonic() - started < WINDOW:
            sock = waiting.enter_context(connect(server.path, timeout=5))
            sock.sendall(b'{"cmd": "status"}\n')
            socks.append(sock)
            time.sleep(0.2)
        server.process.send_signal(signal.SIGUSR1)
        server.said("freed")
        recovered = time.monotonic()
        assert [read_reply(sock) for sock in socks] == [{"ok": True, "status": "fine"}] * len(socks)
        assert time.monotonic() - recovered < 2.0
        server.stop()
    logged = server.log_lines(CANNOT_ACCEPT)
    assert 1 <= len(logged) <= WINDOW + 1, logged
    assert len(server.log_lines("control socket accepting again")) == 1
