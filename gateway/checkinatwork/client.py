"""One call to PresenceRegistration v1 over HTTPS, its answer classified exactly as the REST
uplink's (`gateway.uplink.client`), so that the sender decides by kind and never reads SOAP:

- `list[ItemResult]` (`Created`, `NotCreated`, the REST client's types): an answer that
  gives each item's registration or errors, matched to the items by our reference when it
  echoes it, else by order;
- `UnreadableAnswerError` (its subclass `PresenceAnswerError`): a 2xx that cannot be read
  (not XML, not the operation's answer, a wrong count, cut, too large, late): the ONSS very
  probably has the items, never resent by itself;
- `RetryableError`: the network, a request that never left, a fault of class retry
  (SOA-00001, SOA-02002), a fault whose code cannot be read, a status without a fault not
  named below (a 400 without a fault blames no item); its subclass `AmbiguousError` once
  the request was sent in full and no status came back, or a 502/504 without a fault (a
  gateway may answer so after the ONSS processed it); its subclass `UnauthorizedError`:
  SOA-01001, a 401, or our certificate cannot sign;
- `ForbiddenError`: the other faults of class configuration (SOA-01002, 02001, 03002 to
  03005), a 403: nothing more is sent until the employer or the ONSS fixes it;
- `BadRequestError`: a fault of class permanent (SOA-03001, 03006, 03007): some item is bad
  (the sender halves the batch to find it), or an item the XSD refuses before sending;
- `PayloadTooLargeError`: more than 200 items, before anything is built; a 413.
- `ValueError`: no item, or one registration twice (the caller's mistake; nothing sent).

A SOAP fault is an answer (SOAP 1.1 sends it with HTTP 500): a fault with an ONSS code
registered nothing, so it is never ambiguous; one without a code is classified by its
status. Each request is signed afresh just before it leaves (a new Timestamp and new ids);
`before_sending` is awaited once it is signed, right before the exchange, so that only the
network can fail between the items' in-flight mark and the send.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx
from lxml import etree

from gateway.checkinatwork.codes import CodeClass, classify, lookup
from gateway.checkinatwork.envelope import (
    Operation,
    SoapFault,
    build_envelope,
    envelope_bytes,
    http_headers,
    read_envelope,
)
from gateway.checkinatwork.messages import (
    MAX_ITEMS,
    ItemError,
    PresenceItem,
    Registered,
    get_presence_registration_body,
    parse_get_response,
    parse_register_response,
    register_presences_body,
    schema_problems,
)
from gateway.checkinatwork.messages import (
    ItemResult as PresenceResult,
)
from gateway.checkinatwork.security import SigningIdentity, sign
from gateway.errors import (
    AmbiguousError,
    BadRequestError,
    CredentialError,
    ForbiddenError,
    PayloadTooLargeError,
    PresenceAnswerError,
    RetryableError,
    SoapEnvelopeError,
    UnauthorizedError,
)
from gateway.identifiers import mask_niss
from gateway.uplink.answers import Answer, AnswerLimits, Progress, exchange
from gateway.uplink.client import AMBIGUOUS_STATUSES, BeforeSending, Created, NotCreated
from gateway.uplink.client import ItemResult as ItemResult
from gateway.uplink.failures import describe, network_failure

__all__ = ["ItemResult", "PresenceClient"]

_ANSWER_HEADERS = {"Accept": "text/xml", "Accept-Encoding": "identity"}
_NOT_AUTHENTICATED = "SOA-01001"  # §7.1, p. 33: the certificate or the signature
_EXCERPT = 200
_DETAIL = 300
_NISS_RUN = re.compile(r"(?<!\d)\d{11}(?!\d)")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PresenceClient:
    """`registerPresences` and `getPresenceRegistration` at `url`, each request signed with
    `identity`, each answer read within `limits`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        identity: SigningIdentity,
        limits: AnswerLimits,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._http = http
        self._url = url
        self._identity = identity
        self._limits = limits
        self._now = now

    async def register_presences(
        self, items: Sequence[PresenceItem], before_sending: BeforeSending | None = None
    ) -> list[ItemResult]:
        """Each item's result, in the items' order (see the module's docstring)."""
        if len(items) > MAX_ITEMS:
            raise PayloadTooLargeError(
                f"{len(items)} presence items: RegisterPresences takes at most {MAX_ITEMS}"
            )
        body = register_presences_body(items)
        _check_schema(body)
        content = await self._call(Operation.REGISTER_PRESENCES, body, before_sending)
        return [_item_result(result) for result in parse_register_response(content, items)]

    async def get_presence_registration(self, presence_id: int) -> Registered | None:
        """The registration the ONSS holds under that id, with its validation history;
        None when the answer holds none (unknown, or not ours to see)."""
        body = get_presence_registration_body(presence_id)
        content = await self._call(Operation.GET_PRESENCE_REGISTRATION, body, None)
        return parse_get_response(content)

    async def _call(
        self, operation: Operation, body: etree._Element, before_sending: BeforeSending | None
    ) -> etree._Element:
        """The answer's Body content, or the exception that classifies the call."""
        content = self._signed(body)
        headers = {**http_headers(operation), **_ANSWER_HEADERS}
        try:
            request = self._http.build_request("POST", self._url, content=content, headers=headers)
        except Exception as error:  # an unusable URL: nothing was sent
            raise RetryableError("request", describe(error)) from error
        if before_sending is not None:
            await before_sending()
        return _content(await self._exchange(request))

    def _signed(self, body: etree._Element) -> bytes:
        """The envelope signed now; nothing was sent if this fails."""
        identity = self._identity
        try:
            signed = sign(build_envelope(body), identity.key, identity.certificate, self._now())
        except CredentialError as error:
            raise UnauthorizedError("certificate", str(error)) from error
        except Exception as error:  # nobody classified it; still nothing was sent
            raise RetryableError("signing", describe(error)) from error
        return envelope_bytes(signed)

    async def _exchange(self, request: httpx.Request) -> Answer:
        progress = Progress()
        try:
            return await exchange(self._http, request, self._limits, progress)
        except (httpx.HTTPError, TimeoutError) as error:
            raise network_failure(error, progress.sent) from error
        except Exception as error:  # nobody classified it: ambiguous once it was sent
            kind = AmbiguousError if progress.sent else RetryableError
            raise kind("unexpected", describe(error)) from error


def _check_schema(body: etree._Element) -> None:
    """What the XSD refuses is never sent: a BadRequestError, as the ONSS would answer
    SOA-03006, so that the sender isolates the item."""
    problems = schema_problems(body)
    if problems:
        raise BadRequestError([_issue("XSD", _masked(problem)) for problem in problems[:10]])


def _content(answer: Answer) -> etree._Element:
    """The Body's content of a readable 2xx; the classifying exception for anything else."""
    if not answer.complete:
        if answer.success:
            raise PresenceAnswerError(answer.problem, answer.status)
        raise _by_status(answer, answer.problem)
    try:
        message = read_envelope(answer.body)
    except SoapEnvelopeError as error:
        why = f"{error}; answer {_excerpt(answer)}"
        if answer.success:
            raise PresenceAnswerError(why, answer.status) from error
        raise _by_status(answer, why) from error
    if message.fault is not None:
        raise _fault_error(message.fault, answer)
    if not answer.success:
        raise _by_status(answer, f"a SOAP answer without a fault; answer {_excerpt(answer)}")
    assert message.content is not None  # read_envelope gives content or a fault
    return message.content


def _fault_error(fault: SoapFault, answer: Answer) -> Exception:
    """A fault's SOA code, classified (codes.py); a fault without one, by its HTTP status."""
    code = fault.service_code
    said = _masked(f"{fault.code}: {fault.string}" if fault.string else fault.code)[:_DETAIL]
    if code is None:
        return _by_status(answer, f"a SOAP fault without an ONSS code ({said})")
    known = lookup(code)
    meaning = f"{code} {known.text}" if known is not None else code
    kind = classify(code)
    if kind is CodeClass.RETRY:
        return RetryableError(f"fault {code}", said, answer.retry_after())
    if kind is CodeClass.PERMANENT:
        return BadRequestError([_issue(code, f"{meaning}: {said}")])
    if code == _NOT_AUTHENTICATED:
        return UnauthorizedError(f"fault {code}", f"{meaning}: {said}", answer.retry_after())
    return ForbiddenError(f"{meaning}: {said}")


def _by_status(answer: Answer, detail: str) -> Exception:
    """An answer that is no readable fault nor a readable 2xx: what its status says. No
    400 here is an item's fault (the ONSS says that with a SOAP fault), so none halves."""
    status, why = answer.status, f"{answer.reason}: {detail}"[:_DETAIL]
    if status == 401:
        return UnauthorizedError(f"http {status}", why, answer.retry_after())
    if status == 403:
        return ForbiddenError(f"http 403: {why}")
    if status == 413:
        return PayloadTooLargeError(f"http 413: {why}")
    kind = AmbiguousError if status in AMBIGUOUS_STATUSES else RetryableError
    return kind(f"http {status}", why, answer.retry_after())


def _item_result(result: PresenceResult) -> ItemResult:
    if isinstance(result, Registered):
        return Created(result.presence_id, result.status, result.remarks)
    errors = tuple(_error(error) for error in result.errors)
    return NotCreated(errors or ({"code": "", "description": "refused without an error list"},))


def _error(error: ItemError) -> dict[str, str]:
    known = lookup(error.code) if error.code else None
    description = error.description or (known.text if known is not None else "")
    return {"code": error.code, "description": description}


def _issue(name: str, detail: str) -> dict[str, str]:
    """Shaped as the REST service's issues (the sender reads `name` and `detail`), with the
    service's code, which the rejection keeps."""
    code = name if name.startswith("SOA-") else "400"
    return {"in": "body", "name": name, "detail": detail, "code": code}


def _excerpt(answer: Answer) -> str:
    if not answer.body:
        return "(empty)"
    text = _masked(answer.body[:_EXCERPT].decode("utf-8", errors="replace"))
    return repr(text) + (" …" if len(answer.body) > _EXCERPT else "")


def _masked(text: str) -> str:
    """Any 11-digit run masked as a NISS: these texts reach logs and the journal."""
    return _NISS_RUN.sub(lambda found: mask_niss(found.group(0)), text)
