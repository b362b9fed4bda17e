"""`registerInBulk` over HTTPS: one request, its answer classified (docs/onss-api.md, "How
the client classifies each answer").

Every way a call can end is a value or a typed exception here, so the sender decides by
kind and never parses HTTP itself (the exceptions are gateway.errors' `UplinkError`s):
- `list[ItemResult]`: the ONSS answered each item (created or notCreated), in order;
- `RetryableError` (network down, timeouts before sending, 5xx, 429, token trouble), with the
  server's Retry-After when it gave one; its subclass `AmbiguousError` when the request may
  have been processed without an answer reaching us (timeout after sending, connection
  reset, a 200 we cannot read);
- `BadRequestError` (400: some item is bad), `PayloadTooLargeError` (413), `ForbiddenError` (403).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.errors import (
    AmbiguousError,
    BadRequestError,
    ForbiddenError,
    PayloadTooLargeError,
    RetryableError,
    TokenError,
)
from gateway.uplink.answers import json_object
from gateway.uplink.token import TokenProvider


@dataclass(frozen=True, slots=True)
class Created:
    onss_id: int
    validity: str
    remarks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotCreated:
    errors: tuple[dict[str, str], ...]


ItemResult = Created | NotCreated


class OnssClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, tokens: TokenProvider) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/presenceRegistrations/registerInBulk"
        self._tokens = tokens

    async def register_in_bulk(self, items: Sequence[dict[str, Any]]) -> list[ItemResult]:
        response = await self._post(items)
        if response.status_code == 401:  # renew the token once, then retry once
            self._tokens.invalidate()
            response = await self._post(items)
        return _answer(response, len(items))

    async def _post(self, items: Sequence[dict[str, Any]]) -> httpx.Response:
        try:
            token = await self._tokens.token()
        except TokenError as error:
            raise RetryableError("token", str(error)) from error
        except httpx.HTTPError as error:
            raise _network_failure(error) from error
        try:
            return await self._http.post(
                self._url,
                json={"items": list(items)},
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
        except httpx.HTTPError as error:
            raise _network_failure(error) from error


def _answer(response: httpx.Response, count: int) -> list[ItemResult]:
    status = response.status_code
    problem = json_object(response)
    detail = str(problem.get("detail") or problem.get("title") or response.reason_phrase)
    if status == 200:
        return _item_results(problem, count)
    if status == 400:
        issues = problem.get("issues")
        raise BadRequestError(issues if isinstance(issues, list) else [])
    if status == 403:
        raise ForbiddenError(f"403 {problem.get('type', '')}: {detail}")
    if status == 413:
        raise PayloadTooLargeError(detail)
    if status == 401:
        raise RetryableError("token", f"HTTP 401 after a fresh token: {detail}")
    retry_after = _retry_after(response.headers.get("Retry-After"))
    raise RetryableError(f"http {status}", detail, retry_after)


def _item_results(body: dict[str, Any], count: int) -> list[ItemResult]:
    entries = body.get("items")
    if not isinstance(entries, list) or len(entries) != count:
        raise AmbiguousError("bad answer", f"expected {count} item results, got {entries!r:.200}")
    try:
        return [_item_result(entry) for entry in entries]
    except (KeyError, TypeError, ValueError) as error:
        raise AmbiguousError("bad answer", f"unreadable item result: {error}") from error


def _item_result(entry: dict[str, Any]) -> ItemResult:
    if "createdPresenceRegistration" in entry:
        created = entry["createdPresenceRegistration"]
        return Created(
            int(created["id"]),
            str(created.get("validity", "")),
            tuple(str(r) for r in created.get("remarks") or ()),
        )
    errors = entry["notCreatedPresenceRegistration"]["errors"]
    return NotCreated(
        tuple(
            {"code": str(e.get("code")), "description": str(e.get("description"))} for e in errors
        )
    )


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from an API; our own backoff applies


def _network_failure(error: httpx.HTTPError) -> RetryableError:
    """Name the cause (for the outage evidence) and whether the ONSS may have the request."""
    if isinstance(error, httpx.ReadTimeout | httpx.RemoteProtocolError | httpx.ReadError):
        return AmbiguousError(_cause(error), str(error) or type(error).__name__)
    return RetryableError(_cause(error), str(error) or type(error).__name__)


def _cause(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "tls"
    text = " ".join(str(e) for e in chain).lower()
    if "name or service not known" in text or "name resolution" in text or "nodename" in text:
        return "dns"
    if isinstance(error, httpx.ConnectError):
        return "tcp"
    return "connection"
