"""`registerInBulk` over HTTPS: one request, its answer classified (docs/onss-api.md, "How
the client classifies each answer").

Every way a call can end is a value or a typed exception here, so the sender decides by
kind and never parses HTTP itself (the exceptions are gateway.errors' `UplinkError`s):
- `list[ItemResult]`: any 2xx whose body answers each item (created or notCreated), in
  order; a created id is kept as given (an integer, or text when it is not a 64-bit one);
- `UnreadableAnswerError`: a 2xx whose answer cannot be read (not JSON, too large, cut,
  late, a wrong count, an entry of an unknown shape): the ONSS very probably has the items;
- `RetryableError` (network down, 5xx, 429, token trouble, a request that never left),
  with the server's Retry-After when it gave one; its subclass `AmbiguousError` when the
  request was sent in full and no status came back (timeout, reset), or a 502/504 (a
  gateway in front of the ONSS may answer so after the ONSS processed it); its subclass
  `UnauthorizedError` for a 401 a fresh token does not cure;
- `BadRequestError` (400: some item is bad), `PayloadTooLargeError` (413), `ForbiddenError` (403).

The token comes first: a registration can only have left the box once it is in hand, so a
token failure is an outage, never a possible duplicate. `before_sending` is awaited then,
just before the request (the sender marks the items in flight there).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
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
    UnauthorizedError,
    UnreadableAnswerError,
)
from gateway.uplink.answers import ANSWER_HEADERS, Answer, AnswerLimits, Progress, exchange
from gateway.uplink.failures import cause as _cause
from gateway.uplink.failures import describe as _describe
from gateway.uplink.failures import network_failure as _network_failure
from gateway.uplink.token import TokenProvider

INT64 = range(-(2**63), 2**63)
REGISTER_PATH = "/presenceRegistrations/registerInBulk"  # after base_url
MAX_TEXT_ID = 64  # characters: an id given as text longer than this is not an id
AMBIGUOUS_STATUSES = frozenset({502, 504})  # a gateway's answer: the ONSS may have processed it
REFUSED_CREDENTIALS = frozenset({400, 401, 403})  # the token endpoint: our client id or key
EXCERPT = 200  # characters of an unreadable answer kept as evidence

BeforeSending = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Created:
    onss_id: int | str  # as given: text when it is not a 64-bit integer
    validity: str
    remarks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotCreated:
    errors: tuple[dict[str, str], ...]


ItemResult = Created | NotCreated


class OnssClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        tokens: TokenProvider,
        limits: AnswerLimits | None = None,
    ) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + REGISTER_PATH
        self._tokens = tokens
        self._limits = limits or AnswerLimits()

    async def register_in_bulk(
        self, items: Sequence[dict[str, Any]], before_sending: BeforeSending | None = None
    ) -> list[ItemResult]:
        asked = time.monotonic()
        token = await self._token()
        if before_sending is not None:
            await before_sending()
        answer = await self._post(items, token)
        if answer.status == 401 and not self._tokens.fetched_since(asked):
            self._tokens.invalidate()  # an old token: renew it once, then resend once
            answer = await self._post(items, await self._token())
        if answer.status == 401:
            self._tokens.invalidate()  # the next try asks for a fresh one, and posts once
            raise UnauthorizedError("http 401", f"with a fresh token: {_detail(answer)}")
        return _answer(answer, len(items))

    async def _token(self) -> str:
        """The access token; any failure is an outage (nothing was sent)."""
        try:
            return await self._tokens.token()
        except TokenError as error:
            if error.status in REFUSED_CREDENTIALS:
                raise UnauthorizedError("token", str(error), error.retry_after) from error
            raise RetryableError("token", str(error), error.retry_after) from error
        except (httpx.HTTPError, TimeoutError) as error:
            raise RetryableError(_cause(error), f"token request: {_describe(error)}") from error
        except Exception as error:  # nobody classified it; still nothing was sent
            raise RetryableError("token", f"token request: {_describe(error)}") from error

    async def _post(self, items: Sequence[dict[str, Any]], token: str) -> Answer:
        progress = Progress()
        try:
            request = self._http.build_request(
                "POST",
                self._url,
                json={"items": list(items)},
                headers={**ANSWER_HEADERS, "Authorization": f"Bearer {token}"},
            )
            return await exchange(self._http, request, self._limits, progress)
        except (httpx.HTTPError, TimeoutError) as error:
            raise _network_failure(error, progress.sent) from error
        except Exception as error:  # nobody classified it: ambiguous once it was sent
            kind = AmbiguousError if progress.sent else RetryableError
            raise kind("unexpected", _describe(error)) from error


def _answer(answer: Answer, count: int) -> list[ItemResult]:
    status = answer.status
    if answer.success:
        return _item_results(answer, count)
    problem = answer.json_object()
    detail = _detail(answer, problem)
    if status == 400:
        issues = problem.get("issues")
        raise BadRequestError(issues if isinstance(issues, list) else [])
    if status == 403:
        raise ForbiddenError(f"403 {str(problem.get('type', ''))[:100]}: {detail}")
    if status == 413:
        raise PayloadTooLargeError(detail)
    kind = AmbiguousError if status in AMBIGUOUS_STATUSES else RetryableError
    raise kind(f"http {status}", detail, answer.retry_after())


def _item_results(answer: Answer, count: int) -> list[ItemResult]:
    """Each item's answer from a 2xx; UnreadableAnswerError whatever prevents it."""
    if not answer.complete:
        raise UnreadableAnswerError(answer.status, answer.problem)
    try:
        body = json.loads(answer.body, parse_constant=_not_a_number)
        entries = body["items"] if isinstance(body, dict) else None
        if not isinstance(entries, list) or len(entries) != count:
            got = len(entries) if isinstance(entries, list) else "no list of"
            raise ValueError(f"{count} item results expected, {got} found")
        return [_item_result(entry) for entry in entries]
    except Exception as error:  # every way an answer can be odd: never a crash nor a loop
        why = f"{type(error).__name__}: {str(error)[:200]}"
        raise UnreadableAnswerError(answer.status, f"{why}; answer {_excerpt(answer)}") from error


def _item_result(entry: object) -> ItemResult:
    if not isinstance(entry, dict):
        raise ValueError(f"an item result that is not an object: {entry!r:.60}")
    if "createdPresenceRegistration" in entry:
        created = _object(entry["createdPresenceRegistration"], "createdPresenceRegistration")
        remarks = created.get("remarks") or []
        if not isinstance(remarks, list):
            raise ValueError(f"remarks that are not a list: {remarks!r:.60}")
        validity = created.get("validity") or ""
        return Created(_onss_id(created.get("id")), str(validity)[:100], tuple(map(str, remarks)))
    if "notCreatedPresenceRegistration" in entry:
        errors = _object(entry["notCreatedPresenceRegistration"], "notCreated…").get("errors")
        if not isinstance(errors, list) or not all(isinstance(e, dict) for e in errors):
            raise ValueError(f"notCreated errors that are not a list of objects: {errors!r:.60}")
        return NotCreated(
            tuple(
                {"code": str(e.get("code"))[:100], "description": str(e.get("description"))[:500]}
                for e in errors
            )
        )
    raise ValueError(f"an item result neither created nor notCreated: {list(entry)[:5]}")


def _object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{name} is not an object: {value!r:.60}")
    return value


def _onss_id(value: object) -> int | str:
    """An id as given: a 64-bit integer as such, a longer integer as its digits, a short
    printable text as it is. Anything else (a fraction, 1e400, null...) is not an id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value in INT64 else str(value)
    if (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TEXT_ID
        and value.isprintable()
        and value == value.strip()
    ):
        return value
    raise ValueError(f"an id that is not an integer nor a short text: {value!r:.60}")


def _not_a_number(constant: str) -> None:
    raise ValueError(f"{constant} in the answer")


def _excerpt(answer: Answer) -> str:
    if not answer.body:
        return "(not read)"
    text = answer.body[:EXCERPT].decode("utf-8", errors="replace")
    return repr(text) + (" …" if len(answer.body) > EXCERPT else "")


def _detail(answer: Answer, problem: dict[str, Any] | None = None) -> str:
    problem = answer.json_object() if problem is None else problem
    return str(problem.get("detail") or problem.get("title") or answer.reason)[:300]
