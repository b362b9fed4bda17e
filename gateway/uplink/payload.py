"""A registration as the ONSS `registerInBulk` item, and the checks made before sending it.

A registration whose fields cannot be valid (a NISS with a bad checksum that slipped in,
a malformed enterprise or declaration number) is never sent: it is rejected locally with
the reason, like the ONSS would, without costing the employer a remark.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any, Literal

from gateway.errors import InvalidIdentifier
from gateway.identifiers import normalise_declaration, normalise_enterprise_number, normalise_niss
from gateway.journal import Outbound, place_from_json


def registration_date(wall_ns: int) -> str:
    """UTC with Z, whole seconds (docs/onss-api.md, "Registering IN/OUT events")."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall_ns // 1_000_000_000))


TypeValues = Literal["lower", "upper"]  # [uplink] type_values


def wire_type(direction: str, type_values: TypeValues) -> str:
    """A registration's direction (IN or OUT, as the journal keeps it) as `type` on the wire:
    in/out or IN/OUT (docs/onss-api.md, open questions: the case is not settled)."""
    return direction.lower() if type_values == "lower" else direction.upper()


def item(out: Outbound, registration_date: str, type_values: TypeValues) -> dict[str, Any]:
    """The item of a registration `local_problems` found nothing wrong with."""
    assert out.place is not None  # a CIaO site has one, checked by local_problems
    return {
        "registrationDate": registration_date,
        "ssin": out.niss,
        "type": wire_type(out.direction, type_values),
        "employer": (
            {"enterpriseNumber": out.enterprise_number}
            if out.enterprise_number
            else {"foreignVatNumber": out.foreign_vat}
        ),
        "placeOfWork": place_of_work(out.place),
        "contractualRelationshipReference": out.declaration,
    }


@lru_cache(maxsize=16)
def place_of_work(stored: str) -> dict[str, Any]:
    """The item's placeOfWork for a stored place (one per site: shared, never modified)."""
    place = place_from_json(stored)
    assert place is not None  # a stored place is never null JSON
    if place.coordinates:
        return {"coordinates": place.coordinates.model_dump()}
    address = place.address
    assert address is not None  # PlaceOfWork holds exactly one of the two
    return {
        "address": {
            "postCode": address.post_code,
            "municipalityName": address.municipality,
            "streetName": address.street,
            "houseNumber": address.house_number,
            "boxNumber": address.box,
        }
    }


_CHECKS = {
    "ssin": ("5", "invalid ssin", normalise_niss),
    "declaration": ("4", "invalid declaration of works", normalise_declaration),
    "enterprise": ("2", "invalid enterprise number", normalise_enterprise_number),
}


def local_problems(out: Outbound) -> list[dict[str, str]]:
    """Why the ONSS could not accept this registration, in its own codes; empty if none."""
    unfit = _not_for_ciao(out)
    if unfit:
        return [{"code": "local", "description": unfit}]
    assert out.niss is not None  # _not_for_ciao checked it
    values = [("ssin", out.niss), ("declaration", out.declaration)]
    if out.enterprise_number is not None:
        values.append(("enterprise", out.enterprise_number))
    problems = []
    for check, value in values:
        reason = _invalid_because(check, value)
        if reason is not None:
            code, description, _ = _CHECKS[check]
            problems.append({"code": code, "description": f"{description}: {reason}"})
    return problems


def _not_for_ciao(out: Outbound) -> str | None:
    """What makes a registration one the REST service cannot take at all: one made while
    the site registered with Checkinatwork (`queue retry` it after switching back)."""
    if out.direction not in ("IN", "OUT"):
        return f"a {out.direction} registration (Checkinatwork) cannot be sent to CIaO"
    if out.niss is None:
        return "a posted worker known only by a Limosa number: CIaO's service takes an ssin"
    if out.place is None:
        return "no place of work: the site's [site] place_of_work is required for CIaO"
    return None


@lru_cache(maxsize=4096)
def _invalid_because(check: str, value: str) -> str | None:
    """Why `value` fails `check`, or None (cached: a site sends the same few values)."""
    try:
        if _CHECKS[check][2](value) != value:
            return "not in its canonical form"
    except InvalidIdentifier as error:
        return str(error)
    return None
