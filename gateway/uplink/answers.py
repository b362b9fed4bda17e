"""Reading a server's answer without trusting it: one exchange, its body streamed up to a
cap, the whole of it within one deadline (`[uplink] max_answer_bytes`,
`request_deadline_seconds`).

An endless chunked body, a huge Content-Length or a server that drips bytes never holds
more than the cap (plus one network read) in memory, nor the uplink longer than the
deadline: the exchange ends with the status it had, `complete=False` and why. Whether the
request may have reached the server is told by `Progress.sent` (its body was written in
full), so a caller flags a possible duplicate only when one is possible.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

ANSWER_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class AnswerLimits:
    max_bytes: int = 256 * 1024
    deadline_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    headers: httpx.Headers
    body: bytes  # empty when not complete
    problem: str  # why the body could not be read in full ("" when it was)

    @property
    def complete(self) -> bool:
        return not self.problem

    @property
    def success(self) -> bool:
        return 200 <= self.status < 300

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or {} when it is anything else (never raises)."""
        try:
            body = json.loads(self.body)
        except (ValueError, RecursionError):
            return {}
        return body if isinstance(body, dict) else {}

    def retry_after(self) -> float | None:
        return retry_after(self.headers.get("Retry-After"))


class Progress:
    """How far one request got, from httpcore's trace events."""

    def __init__(self) -> None:
        self.sent = False  # the request's body was written in full: the server may act on it

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_body.complete"):
            self.sent = True


async def exchange(
    http: httpx.AsyncClient, request: httpx.Request, limits: AnswerLimits, progress: Progress
) -> Answer:
    """Send `request` and read its answer within `limits`. Raises httpx.HTTPError or
    TimeoutError (the deadline) only when no status line came back."""
    request.extensions["trace"] = progress.trace
    deadline = asyncio.get_running_loop().time() + limits.deadline_seconds
    async with asyncio.timeout_at(deadline):
        response = await http.send(request, stream=True)
    try:
        body, problem = await _read_body(response, limits.max_bytes, deadline)
    finally:
        await response.aclose()  # an unread rest closes the connection: never read further
    return Answer(response.status_code, response.reason_phrase, response.headers, body, problem)


async def _read_body(
    response: httpx.Response, max_bytes: int, deadline: float
) -> tuple[bytes, str]:
    length = response.headers.get("Content-Length")
    if length is not None and (not length.strip().isdigit() or int(length) > max_bytes):
        return b"", f"Content-Length {length[:40]!r} above the {max_bytes}-byte cap"
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return b"", f"an encoded answer ({encoding[:40]}) though none was asked for"
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > max_bytes:
                    return b"", f"an answer longer than the {max_bytes}-byte cap"
                chunks.append(chunk)
    except TimeoutError:
        return b"", f"the answer was not complete by the deadline ({size} bytes read)"
    except httpx.HTTPError as error:
        return b"", f"the answer was cut after {size} bytes: {error or type(error).__name__}"
    return b"".join(chunks), ""


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()[:64]
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - time.time())
