"""What an endpoint receives and answers, and the error bodies of docs/onss-api.md.

Errors of the presence API are RFC 9457 problems (`application/problem+json`) typed
`urn:problem-type:belgif:<name>`; errors of the token endpoint are RFC 6749 §5.2 bodies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from http import HTTPStatus
from typing import Any

from onss_sim.checks import parse_json

BELGIF = "urn:problem-type:belgif:"
PROBLEM_JSON = "application/problem+json"
JSON = "application/json"

# Belgif problem type and title by status, for problems answered by status alone.
PROBLEM_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("badRequest", "Bad Request"),
    401: ("invalidAccessToken", "Invalid Access Token"),
    403: ("missingPermission", "Missing Permission"),
    404: ("resourceNotFound", "Resource Not Found"),
    413: ("payloadTooLarge", "Payload Too Large"),
    429: ("tooManyRequests", "Too Many Requests"),
    500: ("internalServerError", "Internal Server Error"),
    502: ("badGateway", "Bad Gateway"),
    503: ("serviceUnavailable", "Service Unavailable"),
}

TITLES = {
    "noAccessToken": "No Access Token",
    "expiredAccessToken": "Expired Access Token",
    **dict(PROBLEM_BY_STATUS.values()),
}


@dataclass(frozen=True)
class Request:
    """One HTTP request, read whole."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # keys lower-case
    body: bytes
    received_at: datetime  # UTC, when the body had been read

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body as JSON (ValueError if it is none), parsed once for all its readers.

        They share what it returns, so none may change it: the book stores its items.
        """
        body, error = self._json
        if error is not None:
            raise ValueError(error)
        return body

    @cached_property
    def _json(self) -> tuple[Any, str | None]:
        try:
            return parse_json(self.body), None
        except ValueError as error:
            return None, str(error)


@dataclass(frozen=True)
class Reply:
    """One HTTP answer; `drop` closes the connection instead of answering.

    A dropped reply keeps in `status` what it would have answered (0 if nothing was done).
    """

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    close: bool = False
    client_id: str | None = None  # for the request log
    fault: str | None = None  # the injected fault that shaped this answer, for the request log


def json_reply(status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, _dump(data), JSON, headers)


def problem(
    status: int,
    name: str | None,
    detail: str,
    headers: tuple[tuple[str, str], ...] = (),
    **extra: Any,
) -> Reply:
    """An RFC 9457 problem; `name` is the belgif type name, None for `about:blank`."""
    if name is None:
        type_, title = "about:blank", HTTPStatus(status).phrase
    else:
        type_, title = BELGIF + name, TITLES.get(name, HTTPStatus(status).phrase)
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    return Reply(status, _dump(body), PROBLEM_JSON, headers)


def status_problem(status: int, detail: str, retry_after: int | None = None) -> Reply:
    """The problem a server in trouble answers with this status (fault injection)."""
    known = PROBLEM_BY_STATUS.get(status)
    headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
    return problem(status, known[0] if known else None, detail, headers)


def oauth_error(status: int, error: str, description: str) -> Reply:
    """An RFC 6749 §5.2 error of the token endpoint."""
    body = {"error": error, "error_description": description}
    return Reply(status, _dump(body), JSON, (("Cache-Control", "no-store"),))


def dropped(fault: str) -> Reply:
    return Reply(0, drop=True, close=True, fault=fault)


def _dump(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
