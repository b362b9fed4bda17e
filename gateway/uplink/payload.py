"""A registration as the ONSS `registerInBulk` item, and the checks made before sending it.

A registration whose fields cannot be valid (a NISS with a bad checksum that slipped in,
a malformed enterprise or declaration number) is never sent: it is rejected locally with
the reason, like the ONSS would, without costing the employer a remark.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from gateway.identifiers import (
    InvalidIdentifier,
    normalise_declaration,
    normalise_enterprise_number,
    normalise_niss,
)
from gateway.journal_rows import Outbound, place_from_json


def registration_date(wall_ns: int) -> str:
    """UTC with Z, whole seconds (ONSS_API.md)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall_ns // 1_000_000_000))


def item(out: Outbound, registration_date: str) -> dict[str, Any]:
    return {
        "registrationDate": registration_date,
        "ssin": out.niss,
        "type": out.direction,
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


def local_problems(out: Outbound) -> list[dict[str, str]]:
    """Why the ONSS could not accept this registration, in its own codes; empty if none."""
    problems = []
    checks = [
        ("5", "invalid ssin", normalise_niss, out.niss),
        ("4", "invalid declaration of works", normalise_declaration, out.declaration),
    ]
    if out.enterprise_number is not None:
        checks.append(
            ("2", "invalid enterprise number", normalise_enterprise_number, out.enterprise_number)
        )
    for code, description, normalise, value in checks:
        try:
            if normalise(value) != value:
                raise InvalidIdentifier("not in its canonical form")
        except InvalidIdentifier as error:
            problems.append({"code": code, "description": f"{description}: {error}"})
    return problems
