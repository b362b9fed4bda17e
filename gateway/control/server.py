"""The local control socket: newline-delimited JSON requests and replies over a Unix socket.

One request per line, `{"cmd": "...", ...}`; one reply per request, `{"ok": true, ...}`
or `{"ok": false, "error": "..."}`. The socket is 0660: the daemon's user and group
(the technician) may use it, nobody else.

Whatever a client sends, it gets an answer and the daemon is never affected: a line that is
not JSON, nests too deeply, holds a number too long to read or is longer than MAX_MESSAGE,
and any exception in a handler (logged once, never shown to the client), each get
`{"ok": false}`. At most MAX_CLIENTS connections are served at once. A client must send a
complete request within REQUEST_TIMEOUT of connecting (or of its last reply); when the
socket is full, the connection that has waited longest (EVICT_AFTER at least) without one
is closed to make room for the newcomer, so idle clients never keep `tap` or `status` out.
When none can make room, the newcomer is refused. Both are told `"busy": true`, meaning
their request was never run, and `request` sends it again. The server owns its accept
loop: out of descriptors (EMFILE), it spends a spare one to tell each waiting client why;
every resource error is logged at most once a second, and the socket accepts again as soon
as descriptors are free.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import AlreadyRunningError, ControlError

MAX_MESSAGE = 64 * 1024
MAX_CLIENTS = 16
REQUEST_TIMEOUT = 5.0  # a complete request line within this, or the connection is closed
REPLY_TIMEOUT = 30.0  # the client must take its reply within this
EVICT_AFTER = 0.25  # at capacity, a client idle this long makes room for a newcomer
ACCEPT_RETRY = 0.25  # after a resource error, accept again this much later
LOG_INTERVAL = 1.0  # a recurring problem is logged at most once per interval
CLOSE_WAIT = 2.0  # at shutdown, requests in progress get this long to finish
BACKLOG = 128
ACCEPT_BATCH = 64
MAX_ERROR_TEXT = 500
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


class EncodedReply(bytes):
    """A whole reply line encoded by the handler itself, off the event loop: for replies
    large enough (a `queue export` of 100,000 registrations) that encoding them would stall
    every tap answer and status request queued behind it."""

    @classmethod
    def of(cls, fields: dict[str, Any]) -> EncodedReply:
        return cls(json.dumps({"ok": True, **fields}, default=str).encode() + b"\n")


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | EncodedReply]]
Reply = dict[str, Any] | EncodedReply
log = structlog.get_logger("control")


class Throttled:
    """A recurring problem logged at most once per interval; the next line says how many
    were held back, `recovered` how many there were in all."""

    def __init__(self, event: str, interval: float = LOG_INTERVAL) -> None:
        self.event = event
        self.interval = interval
        self.count = 0
        self._held = 0
        self._last = -math.inf

    def error(self, error: BaseException, *, traceback: bool = False, **fields: Any) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last < self.interval:
            self._held += 1
            return
        self._last = now
        held, self._held = self._held, 0
        exc_info = error if traceback else None
        log.error(
            self.event,
            error=_describe(error),
            held_back=held or None,
            exc_info=exc_info,
            **fields,
        )

    def recovered(self) -> int:
        """How many since the last call; starts counting afresh."""
        count, self.count, self._held, self._last = self.count, 0, 0, -math.inf
        return count


@dataclass(eq=False)
class _Client:
    idle_since: float | None  # monotonic; None while a request of it is in hand
    writer: asyncio.StreamWriter | None = None
    evicted: bool = False


class ControlServer:
    def __init__(
        self,
        path: Path,
        handlers: Mapping[str, Handler],
        *,
        max_clients: int = MAX_CLIENTS,
        request_timeout: float = REQUEST_TIMEOUT,
        spare_descriptor: bool = True,
    ) -> None:
        self.path = path
        self._handlers = dict(handlers)
        self._max_clients = max_clients
        self._request_timeout = request_timeout
        self._spare_wanted = spare_descriptor
        self._listener: socket.socket | None = None
        self._spare: int | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # every connection's, evicted ones too
        self._closing = False
        self._accept_errors = Throttled("control socket cannot accept a connection")
        self._failures: dict[tuple[str, str], Throttled] = {}  # by command and error type

    @property
    def clients(self) -> int:
        """Connections being served now."""
        return len(self._clients)

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        if self.path.exists():
            if _answers(self.path):
                raise AlreadyRunningError(f"another daemon answers on {self.path}")
            self.path.unlink()
        self._listener = _listen(self.path)
        self._spare = _open_spare() if self._spare_wanted else None
        asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept_ready)

    async def close(self) -> None:
        if self._listener is None:  # never bound: the path may be another daemon's socket
            return
        self._closing = True
        self._stop_accepting()
        for client in list(self._clients):
            if client.idle_since is not None and client.writer is not None:
                self._evict(client, "the daemon is stopping", busy=False)
        await _settle(set(self._tasks))
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _stop_accepting(self) -> None:
        assert self._listener is not None
        if self._retry is not None:
            self._retry.cancel()
        asyncio.get_running_loop().remove_reader(self._listener.fileno())
        self._listener.close()
        self._listener = None
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None

    # --- accepting ------------------------------------------------------------------------

    def _accept_ready(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if self._listener is None:  # closed meanwhile
                return
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as error:
                self._accept_failed(error)
                return
            if self._accept_errors.count:
                errors = self._accept_errors.recovered()
                log.info("control socket accepting again", errors_meanwhile=errors)
            self._admit(conn)

    def _accept_failed(self, error: OSError) -> None:
        """Never raise, never spin: log (at most once a second) and wait for descriptors."""
        self._accept_errors.error(error)
        if error.errno in OUT_OF_DESCRIPTORS and self._refuse_with_spare(error):
            return
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._listener.fileno())
        self._retry = loop.call_later(ACCEPT_RETRY, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if self._listener is None or self._closing:
            return
        if self._spare is None and self._spare_wanted:
            self._spare = _open_spare()
        asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept_ready)

    def _refuse_with_spare(self, cause: OSError) -> bool:
        """Free the spare descriptor, take each waiting client on it to say why it cannot be
        served, keep the spare again. False when the waiting clients must wait instead."""
        if self._spare is None:
            return False
        assert self._listener is not None
        os.close(self._spare)
        self._spare = None
        drained = False
        message = _line(_error(f"the daemon is out of file descriptors ({_describe(cause)})"))
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                drained = True
                break
            except OSError:  # the descriptor went to another thread meanwhile
                break
            _refuse(conn, message)
        self._spare = _open_spare()
        return drained and self._spare is not None

    def _admit(self, conn: socket.socket) -> None:
        if self._closing:
            _refuse(conn, _line(_error("the daemon is stopping")))
            return
        if len(self._clients) >= self._max_clients and not self._make_room():
            busy = f"busy: {self._max_clients} clients are being served; try again"
            _refuse(conn, _line({**_error(busy), "busy": True}))
            return
        client = _Client(idle_since=time.monotonic())
        self._clients.add(client)
        task = asyncio.get_running_loop().create_task(self._connection(conn, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _make_room(self) -> bool:
        """Close the client that has waited longest without a request, if long enough."""
        now = time.monotonic()
        waiting = [
            (c.idle_since, c)
            for c in self._clients
            if c.writer is not None
            and c.idle_since is not None
            and now - c.idle_since >= EVICT_AFTER
        ]
        if not waiting:
            return False
        _, oldest = min(waiting, key=lambda pair: pair[0])
        self._evict(oldest, "closed to make room for another client: send a request sooner")
        return True

    def _evict(self, client: _Client, why: str, *, busy: bool = True) -> None:
        """Close a client waiting for its request; one it sent meanwhile is never run, so
        the answer says `busy` and `request` sends it again."""
        assert client.writer is not None
        client.evicted = True
        self._clients.discard(client)
        with contextlib.suppress(Exception):
            client.writer.write(_line({**_error(why), "busy": busy}))
        client.writer.close()

    # --- serving a connection --------------------------------------------------------------

    async def _connection(self, conn: socket.socket, client: _Client) -> None:
        try:
            reader, client.writer = await _streams(conn)
        except OSError:
            conn.close()
            self._clients.discard(client)
            return
        try:
            await self._serve(reader, client)
        except (ConnectionError, TimeoutError):
            pass  # the client left, or did not take its reply
        except Exception as error:  # the server's own bug: log it, keep serving the others
            self._failed("", error)
        finally:
            self._clients.discard(client)
            await _finish(client.writer)

    async def _serve(self, reader: asyncio.StreamReader, client: _Client) -> None:
        writer = client.writer
        assert writer is not None
        while not self._closing:
            client.idle_since = time.monotonic()
            line = await self._next_request(reader, client)
            if line is None:
                return
            client.idle_since = None
            await self._send(writer, await self._answer(line))

    async def _next_request(self, reader: asyncio.StreamReader, client: _Client) -> bytes | None:
        """The next request line; None (having said why, when there is a why) to close."""
        try:
            line = await asyncio.wait_for(reader.readline(), self._request_timeout)
        except TimeoutError:
            problem = f"no complete request within {self._request_timeout:g} s: closing"
        except ValueError:  # longer than MAX_MESSAGE without a newline
            problem = f"message longer than {MAX_MESSAGE} bytes"
        else:
            return line if line and not client.evicted else None
        if not client.evicted:
            assert client.writer is not None
            await self._send(client.writer, _error(problem))
        return None

    async def _answer(self, line: bytes) -> Reply:
        request = _parse(line)
        if isinstance(request, str):
            return _error(request)
        command = request["cmd"]
        handler = self._handlers.get(command)
        if handler is None:
            return _error(f"unknown command {command!r}; known: {sorted(self._handlers)}")
        try:
            reply = await handler(request)
            return reply if isinstance(reply, EncodedReply) else {"ok": True, **reply}
        except ControlError as error:
            return _error(str(error))
        except Exception as error:
            self._failed(command, error)
            return _error(f"internal error: {type(error).__name__} (the daemon logged it)")

    async def _send(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        try:
            data = _line(reply)
        except (ValueError, TypeError, RecursionError) as error:  # a handler's unencodable reply
            self._failed("", error)
            data = _line(_error(f"internal error: {type(error).__name__} (the daemon logged it)"))
        writer.write(data)
        await asyncio.wait_for(writer.drain(), REPLY_TIMEOUT)

    def _failed(self, command: str, error: Exception) -> None:
        """Log a failure with its traceback: once a second at most for each kind."""
        key = (command, type(error).__name__)
        throttled = self._failures.setdefault(key, Throttled("control command failed"))
        throttled.error(error, traceback=True, cmd=command or None)


def _parse(line: bytes) -> dict[str, Any] | str:
    """The request on a line, or what is wrong with it."""
    try:
        request = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return f"not JSON: {error}"
    except ValueError:  # int() refuses to read that many digits
        return f"not JSON we read: a number longer than {sys.get_int_max_str_digits()} digits"
    except RecursionError:
        return "not JSON we read: nested too deeply"
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return 'expected an object with a "cmd" string'
    return request


def _error(message: str) -> dict[str, Any]:
    if len(message) > MAX_ERROR_TEXT:
        message = message[:MAX_ERROR_TEXT] + "..."
    return {"ok": False, "error": message}


def _line(reply: Reply) -> bytes:
    if isinstance(reply, EncodedReply):
        return reply
    return json.dumps(reply, default=str).encode() + b"\n"


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return f"{errno.errorcode.get(error.errno, error.errno)}: {error.strerror}"
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_TEXT]


def _listen(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)  # the socket is born 0660, never wider
    try:
        listener.bind(str(path))
        listener.listen(BACKLOG)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    finally:
        os.umask(old_umask)
    return listener


def _open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _refuse(conn: socket.socket, message: bytes) -> None:
    """Answer a connection that will not be served, without reading it, and close it."""
    with conn, contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(message)


async def _streams(conn: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_MESSAGE, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def _finish(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except Exception:  # the client does not take what is left: drop it
        writer.transport.abort()


async def _settle(tasks: set[asyncio.Task[None]]) -> None:
    """Let requests in progress finish, within CLOSE_WAIT; cancel what is still running."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=CLOSE_WAIT)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=CLOSE_WAIT)


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def request(path: Path, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the daemon and return its reply (raises ControlError). A "busy"
    answer means the daemon never ran the request, so it is sent again, within timeout."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        reply = _exchange(path, message, max(deadline - time.monotonic(), 0.1))
        if not reply.get("busy") or time.monotonic() + pause > deadline:
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "request refused")))
    return reply


def _exchange(path: Path, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise ControlError(f"the daemon is not running (no answer on {path})") from error
        except PermissionError as error:
            raise ControlError(f"no permission to use {path}: join its group") from error
        except BlockingIOError:  # its backlog is full for a moment: nothing was sent
            return {**_error("busy: the daemon's socket has no room; try again"), "busy": True}
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(json.dumps(message).encode() + b"\n")  # refused: its answer waits
        with sock.makefile("rb") as replies:
            try:
                line = replies.readline()
            except ConnectionResetError:
                line = b""
    if not line:
        raise ControlError("the daemon closed the connection without answering")
    try:
        reply = json.loads(line)
    except ValueError as error:
        raise ControlError(f"the daemon's answer is not JSON: {error}") from error
    if not isinstance(reply, dict):
        raise ControlError("the daemon's answer is not a JSON object")
    return reply
