"""The local control socket: newline-delimited JSON requests and replies over a Unix socket.

One request per line, `{"cmd": "...", ...}`; one reply per request, `{"ok": true, ...}`
or `{"ok": false, "error": "..."}`. The socket is 0660: the daemon's user and group
(the technician) may use it, nobody else. Garbage, oversized or slow clients get an
error reply or are dropped; the daemon is never affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import AlreadyRunningError, ControlError

MAX_MESSAGE = 64 * 1024
IDLE_TIMEOUT = 60.0


class EncodedReply(bytes):
    """A whole reply line encoded by the handler itself, off the event loop: for replies
    large enough (a `queue export` of 100,000 registrations) that encoding them would stall
    every tap answer and status request queued behind it."""

    @classmethod
    def of(cls, fields: dict[str, Any]) -> EncodedReply:
        return cls(json.dumps({"ok": True, **fields}, default=str).encode() + b"\n")


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | EncodedReply]]
log = structlog.get_logger("control")


class ControlServer:
    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = path
        self._handlers = dict(handlers)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        if self.path.exists():
            if _answers(self.path):
                raise AlreadyRunningError(f"another daemon answers on {self.path}")
            self.path.unlink()
        old_umask = os.umask(0o117)  # the socket is born 0660, never wider
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_MESSAGE
            )
        finally:
            os.umask(old_umask)

    async def close(self) -> None:
        if self._server is None:  # never bound: the path may be another daemon's socket
            return
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except ValueError:  # longer than MAX_MESSAGE without a newline
                    await _reply(writer, _error(f"message longer than {MAX_MESSAGE} bytes"))
                    return
                if not line:
                    return
                await _reply(writer, await self._dispatch(line))
        except (TimeoutError, ConnectionError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, line: bytes) -> dict[str, Any] | EncodedReply:
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return _error(f"not JSON: {error}")
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return _error('expected an object with a "cmd" string')
        handler = self._handlers.get(request["cmd"])
        if handler is None:
            return _error(f"unknown command {request['cmd']!r}; known: {sorted(self._handlers)}")
        try:
            reply = await handler(request)
            return reply if isinstance(reply, EncodedReply) else {"ok": True, **reply}
        except ControlError as error:
            return _error(str(error))
        except Exception as error:
            log.exception("control command failed", cmd=request["cmd"])
            return _error(f"internal error: {type(error).__name__}")


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


async def _reply(writer: asyncio.StreamWriter, message: dict[str, Any] | EncodedReply) -> None:
    if not isinstance(message, EncodedReply):
        message = EncodedReply(json.dumps(message, default=str).encode() + b"\n")
    writer.write(message)
    await writer.drain()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def request(path: Path, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the daemon and return its reply (raises ControlError)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise ControlError(f"the daemon is not running (no answer on {path})") from error
        except PermissionError as error:
            raise ControlError(f"no permission to use {path}: join its group") from error
        sock.sendall(json.dumps(message).encode() + b"\n")
        with sock.makefile("rb") as replies:
            line = replies.readline()
    if not line:
        raise ControlError("the daemon closed the connection without answering")
    reply: dict[str, Any] = json.loads(line)
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "request refused")))
    return reply
