"""The checks of a registerInBulk body: JSON, schema (whole call) and business (per item).

Schema problems reject the whole call (400, every issue listed); business problems reject
one item (`notCreatedPresenceRegistration` with ONSS error codes). The identifier checksums
are the public algorithms of docs/domain.md, written here again on purpose: the simulator
must not share a bug with the gateway it tests.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SCHEMA_VIOLATION = "urn:problem-type:belgif:input-validation:schemaViolation"
UNKNOWN_INPUT = "urn:problem-type:belgif:input-validation:unknownInput"

DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
SSIN = re.compile(r"[0-9]{11}")
ENTERPRISE_NUMBER = re.compile(r"[01][0-9]{9}")
DECLARATION = re.compile(r"[A-HJ-NP-Z0-9]{13}")

ITEM_FIELDS = (
    "registrationDate",
    "ssin",
    "type",
    "employer",
    "placeOfWork",
    "contractualRelationshipReference",
)
ADDRESS_FIELDS = ("postCode", "municipalityName", "streetName", "houseNumber")

# The `type` values accepted, by the simulator's --type-values: the ONSS OpenAPI enum is
# lowercase by the better-supported reading, uppercase by an older client (docs/onss-api.md).
TYPE_VALUES = {"lower": ("in", "out"), "upper": ("IN", "OUT")}
DEFAULT_TYPE_VALUES = "lower"

# Business error codes (docs/onss-api.md; borrowed from the SOAP service).
INVALID_ENTERPRISE_NUMBER = ("2", "invalid enterprise number")
EMPLOYER_NOT_IN_DECLARATION = ("3", "enterprise not known for this declaration of works")
UNKNOWN_DECLARATION = ("4", "invalid declaration of works")
INVALID_SSIN = ("5", "invalid ssin")
INVALID_DATE = ("6", "invalid registration date")

_MISSING = object()


# --- JSON --------------------------------------------------------------------------------


def parse_json(raw: bytes) -> Any:
    """The JSON document in `raw` (UTF-8); ValueError with a short reason if there is none."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"body is not UTF-8: {error.reason}") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise ValueError(f"JSON syntax error: {error.msg} at line {error.lineno}") from None


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def syntax_issue(detail: str) -> dict[str, Any]:
    """The issue of a body that is not JSON at all (no `name`: it concerns the whole body)."""
    return {"type": SCHEMA_VIOLATION, "title": _TITLES[SCHEMA_VIOLATION], "detail": detail}


def item_count(body: Any) -> int | None:
    """How many items a parsed body carries, None if it has no list of items."""
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        return len(body["items"])
    return None


# --- Schema ------------------------------------------------------------------------------

_TITLES = {
    SCHEMA_VIOLATION: "Input value is invalid with respect to the schema",
    UNKNOWN_INPUT: "Unknown input",
}


@dataclass
class _Issues:
    types: tuple[str, ...]  # the accepted values of an item's `type`
    found: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self, name: str, detail: str, value: Any = _MISSING, type_: str = SCHEMA_VIOLATION
    ) -> None:
        issue = {"type": type_, "title": _TITLES[type_], "detail": detail, "in": "body"}
        issue["name"] = name
        if value is not _MISSING:
            issue["value"] = value
        self.found.append(issue)

    def object(
        self, name: str, value: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """`value` if it is an object; reports missing required and unknown fields."""
        if not isinstance(value, dict):
            self.add(name, "must be an object", value)
            return None
        prefix = f"{name}." if name else ""
        for key in required:
            if key not in value:
                self.add(prefix + key, f"{key} is required")
        for key, inner in value.items():
            if key not in required and key not in optional:
                self.add(prefix + key, f"unknown field {key}", inner, UNKNOWN_INPUT)
        return value

    def exactly_one(self, name: str, value: dict[str, Any], choices: tuple[str, str]) -> None:
        first, second = choices
        if (first in value) == (second in value):  # both or neither
            self.add(name, f"must have exactly one of {first}, {second}", value)


def schema_issues(body: Any, type_values: str = DEFAULT_TYPE_VALUES) -> list[dict[str, Any]]:
    """Every schema problem of a parsed registerInBulk body, in document order; an item's
    `type` must be in the case `type_values` names (a key of TYPE_VALUES)."""
    issues = _Issues(TYPE_VALUES[type_values])
    root = issues.object("", body, ("items",))
    if root is None or "items" not in root:
        return _name_root(issues.found)
    items = root["items"]
    if not isinstance(items, list):
        issues.add("items", "must be an array", items)
    elif not items:
        issues.add("items", "must hold at least one item", items)
    else:
        for index, item in enumerate(items):
            _check_item(issues, f"items[{index}]", item)
    return _name_root(issues.found)


def _name_root(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issues about the whole body carry no `name` (as belgif validators do)."""
    for issue in found:
        if issue["name"] == "":
            del issue["name"]
    return found


def _check_item(issues: _Issues, name: str, value: Any) -> None:
    item = issues.object(name, value, ITEM_FIELDS)
    if item is None:
        return
    for key, check in _ITEM_CHECKS.items():
        if key in item:
            check(issues, f"{name}.{key}", item[key])


def parse_date(value: Any) -> datetime | None:
    """The UTC moment `value` writes as YYYY-MM-DDTHH:MM:SSZ; None if it writes none.

    ASCII digits only, every field in range: no month 13, February 30, hour 24 or second 60.
    """
    if not (isinstance(value, str) and DATE.fullmatch(value)) or value[11:13] == "24":
        return None  # hour 24: fromisoformat reads it as the next midnight (3.14, gh-102450)
    try:
        return datetime.fromisoformat(value)  # Python 3.11+ reads the Z as UTC
    except ValueError:
        return None


def _check_date(issues: _Issues, name: str, value: Any) -> None:
    if parse_date(value) is None:
        issues.add(name, "must be a UTC date-time YYYY-MM-DDTHH:MM:SSZ", value)


def _check_ssin(issues: _Issues, name: str, value: Any) -> None:
    if not (isinstance(value, str) and SSIN.fullmatch(value)):
        issues.add(name, "must be 11 digits", value)


def _check_type(issues: _Issues, name: str, value: Any) -> None:
    """An enum: the other case is as wrong as any other word (the service's schema is
    case-sensitive)."""
    if not isinstance(value, str) or value not in issues.types:
        issues.add(name, f"must be one of {', '.join(issues.types)}", value)


def _check_employer(issues: _Issues, name: str, value: Any) -> None:
    employer = issues.object(name, value, (), ("enterpriseNumber", "foreignVatNumber"))
    if employer is None:
        return
    issues.exactly_one(name, employer, ("enterpriseNumber", "foreignVatNumber"))
    number = employer.get("enterpriseNumber", _MISSING)
    if number is not _MISSING and not (
        isinstance(number, str) and ENTERPRISE_NUMBER.fullmatch(number)
    ):
        issues.add(f"{name}.enterpriseNumber", "must be 10 digits starting with 0 or 1", number)
    vat = employer.get("foreignVatNumber", _MISSING)
    if vat is not _MISSING and not (isinstance(vat, str) and vat.strip()):
        issues.add(f"{name}.foreignVatNumber", "must be a non-empty string", vat)


def _check_place(issues: _Issues, name: str, value: Any) -> None:
    place = issues.object(name, value, (), ("coordinates", "address"))
    if place is None:
        return
    issues.exactly_one(name, place, ("coordinates", "address"))
    if "coordinates" in place:
        _check_coordinates(issues, f"{name}.coordinates", place["coordinates"])
    if "address" in place:
        _check_address(issues, f"{name}.address", place["address"])


def _check_coordinates(issues: _Issues, name: str, value: Any) -> None:
    coordinates = issues.object(name, value, ("latitude", "longitude"))
    if coordinates is None:
        return
    for key, limit in (("latitude", 90), ("longitude", 180)):
        if key in coordinates and not _number_within(coordinates[key], limit):
            detail = f"must be a number from -{limit} to {limit}"
            issues.add(f"{name}.{key}", detail, coordinates[key])


def _number_within(value: Any, limit: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and -limit <= value <= limit


def _check_address(issues: _Issues, name: str, value: Any) -> None:
    address = issues.object(name, value, ADDRESS_FIELDS, ("boxNumber",))
    if address is None:
        return
    for key in ADDRESS_FIELDS:
        text = address.get(key, _MISSING)
        if text is not _MISSING and not (isinstance(text, str) and text.strip()):
            issues.add(f"{name}.{key}", "must be a non-empty string", text)
    box = address.get("boxNumber")
    if box is not None and not isinstance(box, str):
        issues.add(f"{name}.boxNumber", "must be a string or null", box)


def _check_declaration(issues: _Issues, name: str, value: Any) -> None:
    if not (isinstance(value, str) and DECLARATION.fullmatch(value)):
        issues.add(name, "must be 13 characters of A-H, J-N, P-Z, 0-9", value)


_ITEM_CHECKS: dict[str, Callable[[_Issues, str, Any], None]] = {
    "registrationDate": _check_date,
    "ssin": _check_ssin,
    "type": _check_type,
    "employer": _check_employer,
    "placeOfWork": _check_place,
    "contractualRelationshipReference": _check_declaration,
}


# --- Identifiers -------------------------------------------------------------------------


def ssin_is_valid(ssin: str) -> bool:
    """NISS or BIS: plausible month/day fields and a mod-97 check (either century)."""
    if not SSIN.fullmatch(ssin):
        return False
    month, day = int(ssin[2:4]), int(ssin[4:6])
    if not (month <= 12 or 20 <= month <= 32 or 40 <= month <= 52) or day > 31:
        return False
    first9, check = ssin[:9], int(ssin[9:])
    return check in (97 - int(first9) % 97, 97 - int("2" + first9) % 97)


def enterprise_number_is_valid(number: str) -> bool:
    """KBO/BCE: 10 digits, first 0 or 1, last two = 97 - (first eight mod 97)."""
    if not ENTERPRISE_NUMBER.fullmatch(number):
        return False
    return int(number[8:]) == 97 - int(number[:8]) % 97


# --- Business ----------------------------------------------------------------------------


def employer_id(item: Mapping[str, Any]) -> str:
    """The employer's identifier: its enterprise number or its foreign VAT number."""
    employer = item["employer"]
    return str(employer.get("enterpriseNumber") or employer["foreignVatNumber"])


def registration_time(item: Mapping[str, Any]) -> datetime:
    """The registrationDate of a schema-valid item."""
    when = parse_date(item["registrationDate"])
    if when is None:
        raise ValueError(f"not a registration date: {item['registrationDate']!r}")
    return when


def business_errors(
    item: Mapping[str, Any],
    when: datetime,
    declarations: Mapping[str, frozenset[str]],
    latest: datetime,
) -> list[dict[str, str]]:
    """The ONSS errors of one schema-valid item; empty when it is acceptable.

    `when` is its registration time, `latest` the latest one not in the future.
    """
    errors: list[tuple[str, str]] = []
    number = item["employer"].get("enterpriseNumber")
    if number is not None and not enterprise_number_is_valid(number):
        errors.append(INVALID_ENTERPRISE_NUMBER)
    employers = declarations.get(item["contractualRelationshipReference"])
    if employers is None:
        errors.append(UNKNOWN_DECLARATION)
    elif INVALID_ENTERPRISE_NUMBER not in errors and employer_id(item) not in employers:
        errors.append(EMPLOYER_NOT_IN_DECLARATION)
    if not ssin_is_valid(item["ssin"]):
        errors.append(INVALID_SSIN)
    if when > latest:
        errors.append(INVALID_DATE)
    return [{"code": code, "description": description} for code, description in errors]
