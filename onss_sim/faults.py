"""Fault injection: rules queued in order, each consumed by the requests it targets.

A rule targets registerInBulk (the default), the token endpoint (`"target": "token"`) or
an operation of the Checkinatwork SOAP endpoint (`registerPresences`, the default of the
SOAP kinds, or `getPresenceRegistration`), and applies to its next `times` requests
(default 1). An outage is not queued: it is a window that starts when posted (or
`start_in_seconds` later) and, while it lasts, every registerInBulk, token and SOAP request
answers 503 without consuming queued rules. Not thread-safe: the caller holds the
simulator's lock. Times are `time.monotonic()` seconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

REGISTER = "registerInBulk"
TOKEN = "token"  # noqa: S105 (a rule target name, not a secret)
# The Checkinatwork SOAP endpoint's operations, by the request's SOAPAction.
REGISTER_PRESENCES = "registerPresences"
GET_PRESENCE = "getPresenceRegistration"
SOAP_TARGETS = (REGISTER_PRESENCES, GET_PRESENCE)
TARGETS = (REGISTER, TOKEN, *SOAP_TARGETS)

STATUS, LATENCY, DROP, DROP_AFTER, OUTAGE, REFUSE_SSIN = (
    "status",
    "latency",
    "drop",
    "drop_after_processing",
    "outage",
    "refuse_ssin",  # a stricter schema than the client's: 400 for calls carrying this ssin
)
SOAP_FAULT = "soap_fault"  # a SOAP fault with a given SOA-nnnnn code
ITEM_ERROR = "item_error"  # a business error forced on the items of one INSS or LimosaId
CUT_AFTER = "cut_after_processing"  # processed, then a 200 whose answer is cut in half
SOAP_KINDS = (SOAP_FAULT, ITEM_ERROR, CUT_AFTER)
MAX_SECONDS = 3600.0
_SOA_CODE = re.compile(r"SOA-\d{5}")
_PERSON_KEYS = {"inss": "INSS", "limosa_id": "LimosaId"}
OUTAGE_RETRY_AFTER = 1

_FIELDS = {
    STATUS: {"status", "retry_after"},
    LATENCY: {"seconds"},
    DROP: set(),
    DROP_AFTER: set(),
    REFUSE_SSIN: {"ssin"},
    SOAP_FAULT: {"code"},
    ITEM_ERROR: {"code", "inss", "limosa_id"},
    CUT_AFTER: set(),
}
_COMMON = {"kind", "times", "target"}


class FaultSpecError(ValueError):
    """A fault rule is malformed; nothing of the request was queued."""


@dataclass(frozen=True)
class Fault:
    """What to do to one request."""

    kind: str
    status: int = 503
    retry_after: int | None = None
    seconds: float = 0.0
    ssin: str | None = None
    code: str | None = None  # soap_fault: SOA-nnnnn; item_error: the business error code
    person: tuple[str, str] | None = None  # item_error: ("INSS", n) or ("LimosaId", id)


@dataclass
class _Queued:
    fault: Fault
    target: str
    remaining: int


class FaultPlan:
    """The queued rules and the outage window."""

    def __init__(self) -> None:
        self._queue: list[_Queued] = []
        self._outages: list[tuple[float, float]] = []  # (start, end) windows

    def add(self, spec: Any, now: float) -> None:
        """Queue a rule or a list of rules (all checked first); FaultSpecError if one is bad."""
        rules = spec if isinstance(spec, list) else [spec]
        parsed = [_parse(rule, index) for index, rule in enumerate(rules)]
        for rule in parsed:
            if isinstance(rule, tuple):
                start_in, seconds = rule
                self._outages.append((now + start_in, now + start_in + seconds))
            else:
                self._queue.append(rule)

    def take(self, target: str, now: float) -> Fault | None:
        """The fault for the next request to `target`, consuming one use of its rule."""
        self._outages = [(start, end) for start, end in self._outages if now < end]
        if any(start <= now for start, _ in self._outages):
            return Fault(OUTAGE, 503, OUTAGE_RETRY_AFTER)
        for queued in self._queue:
            if queued.target == target:
                queued.remaining -= 1
                if queued.remaining == 0:
                    self._queue.remove(queued)
                return queued.fault
        return None

    def clear(self) -> None:
        self._queue.clear()
        self._outages.clear()

    def describe(self, now: float) -> dict[str, Any]:
        queued = [
            {**asdict(q.fault), "target": q.target, "times": q.remaining} for q in self._queue
        ]
        current = [end - now for start, end in self._outages if start <= now < end]
        windows = [
            {"starts_in_s": max(0.0, start - now), "ends_in_s": end - now}
            for start, end in self._outages
            if now < end
        ]
        return {
            "queued": queued,
            "outage_remaining_s": max(current, default=0.0),
            "outages": windows,
        }


def _parse(rule: Any, index: int) -> _Queued | tuple[float, float]:
    """A queued rule, or an outage window: (starts in, lasts) seconds."""
    if not isinstance(rule, Mapping):
        raise FaultSpecError(f"rule {index}: must be an object")
    kind = rule.get("kind")
    if kind == OUTAGE:
        _only(rule, {"kind", "seconds", "start_in_seconds"}, index)
        start_in = rule.get("start_in_seconds", 0)
        if isinstance(start_in, bool) or not isinstance(start_in, int | float):
            raise FaultSpecError(f"rule {index}: start_in_seconds must be a number")
        if not 0 <= start_in <= MAX_SECONDS:
            raise FaultSpecError(f"rule {index}: start_in_seconds must be 0..{MAX_SECONDS:g}")
        return float(start_in), _seconds(rule, index, positive=True)
    if kind not in _FIELDS:
        kinds = ", ".join([*_FIELDS, OUTAGE])
        raise FaultSpecError(f"rule {index}: kind must be one of {kinds}")
    _only(rule, _COMMON | _FIELDS[kind], index)
    target = rule.get("target", REGISTER_PRESENCES if kind in SOAP_KINDS else REGISTER)
    if target not in TARGETS:
        raise FaultSpecError(f"rule {index}: target must be one of {', '.join(TARGETS)}")
    _check_target(kind, target, index)
    times = _integer(rule, "times", index, default=1, minimum=1)
    return _Queued(_fault(kind, rule, index), target, times)


def _fault(kind: str, rule: Mapping[str, Any], index: int) -> Fault:
    if kind == STATUS:
        status = _integer(rule, "status", index, default=None, minimum=400)
        if status > 599:
            raise FaultSpecError(f"rule {index}: status must be 400 to 599")
        retry_after = None
        if "retry_after" in rule:
            retry_after = _integer(rule, "retry_after", index, default=None, minimum=0)
        return Fault(STATUS, status, retry_after)
    if kind == LATENCY:
        return Fault(LATENCY, seconds=_seconds(rule, index, positive=False))
    if kind == REFUSE_SSIN:
        ssin = rule.get("ssin")
        if not isinstance(ssin, str) or not ssin:
            raise FaultSpecError(f"rule {index}: ssin must be a non-empty string")
        return Fault(REFUSE_SSIN, ssin=ssin)
    if kind == SOAP_FAULT:
        return Fault(SOAP_FAULT, 500, code=_soa_code(rule, index))
    if kind == ITEM_ERROR:
        return Fault(ITEM_ERROR, code=_item_code(rule, index), person=_person(rule, index))
    return Fault(kind)


def _check_target(kind: str, target: str, index: int) -> None:
    """SOAP kinds on SOAP operations only, item errors on registerPresences; refuse_ssin
    is a REST (JSON) rule."""
    if kind == ITEM_ERROR and target != REGISTER_PRESENCES:
        raise FaultSpecError(f"rule {index}: {ITEM_ERROR} targets {REGISTER_PRESENCES} only")
    if kind == CUT_AFTER and target != REGISTER_PRESENCES:
        raise FaultSpecError(f"rule {index}: {CUT_AFTER} targets {REGISTER_PRESENCES} only")
    if kind == SOAP_FAULT and target not in SOAP_TARGETS:
        raise FaultSpecError(f"rule {index}: {SOAP_FAULT} targets a SOAP operation only")
    if kind == REFUSE_SSIN and target in SOAP_TARGETS:
        raise FaultSpecError(f"rule {index}: {REFUSE_SSIN} is for registerInBulk")


def _soa_code(rule: Mapping[str, Any], index: int) -> str:
    code = rule.get("code")
    if not isinstance(code, str) or not _SOA_CODE.fullmatch(code):
        raise FaultSpecError(f"rule {index}: code must be a system error code SOA-nnnnn")
    return code


def _item_code(rule: Mapping[str, Any], index: int) -> str:
    code = rule.get("code")
    if not isinstance(code, str) or not 0 < len(code.strip()) <= 20:
        raise FaultSpecError(f"rule {index}: code must be a non-empty string (at most 20)")
    return code.strip()


def _person(rule: Mapping[str, Any], index: int) -> tuple[str, str]:
    given = [(name, rule[key]) for key, name in _PERSON_KEYS.items() if key in rule]
    if len(given) != 1 or not isinstance(given[0][1], str) or not given[0][1]:
        raise FaultSpecError(f"rule {index}: give one of inss, limosa_id, a non-empty string")
    return given[0]


def _only(rule: Mapping[str, Any], allowed: set[str], index: int) -> None:
    unknown = sorted(set(rule) - allowed)
    if unknown:
        raise FaultSpecError(f"rule {index}: unknown field(s) {', '.join(unknown)}")


def _integer(
    rule: Mapping[str, Any], name: str, index: int, default: int | None, minimum: int
) -> int:
    value = rule.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FaultSpecError(f"rule {index}: {name} must be an integer >= {minimum}")
    return value


def _seconds(rule: Mapping[str, Any], index: int, positive: bool) -> float:
    value = rule.get("seconds")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultSpecError(f"rule {index}: seconds must be a number")
    if not (value > 0 if positive else value >= 0) or value > MAX_SECONDS:
        bound = "> 0" if positive else ">= 0"
        raise FaultSpecError(f"rule {index}: seconds must be {bound} and <= {MAX_SECONDS:g}")
    return float(value)
