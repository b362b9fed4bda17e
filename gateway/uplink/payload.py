"""A registration as the ONSS `registerInBulk` item, and the checks made before sending it.

A registration whose fields cannot be valid (a NISS with a bad checksum that slipped in,
a malformed enterprise or declaration number) is never sent: it is rejected locally with
the reason, like the ONSS would, without costing the employer a remark.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.identifiers import (
    InvalidIdentifier,
    normalise_declaration,
    normalise_enterprise_number,
    normalise_niss,
)
from gateway.models import Registration


def registration_date(wall_ns: int) -> str:
    """UTC with Z, whole seconds (ONSS_API.md)."""
    return datetime.fromtimestamp(wall_ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def item(reg: Registration, wall_ns: int) -> dict[str, Any]:
    employer = reg.worker.employer
    place = reg.place
    return {
        "registrationDate": registration_date(wall_ns),
        "ssin": reg.worker.niss,
        "type": reg.direction.value,
        "employer": (
            {"enterpriseNumber": employer.enterprise_number}
            if employer.enterprise_number
            else {"foreignVatNumber": employer.foreign_vat}
        ),
        "placeOfWork": (
            {"coordinates": place.coordinates.model_dump()}
            if place.coordinates
            else {"address": _address(reg)}
        ),
        "contractualRelationshipReference": reg.declaration,
    }


def _address(reg: Registration) -> dict[str, Any]:
    address = reg.place.address
    assert address is not None  # PlaceOfWork holds exactly one of the two
    return {
        "postCode": address.post_code,
        "municipalityName": address.municipality,
        "streetName": address.street,
        "houseNumber": address.house_number,
        "boxNumber": address.box,
    }


def local_problems(reg: Registration) -> list[dict[str, str]]:
    """Why the ONSS could not accept this registration, in its own codes; empty if none."""
    problems = []
    checks = [
        ("5", "invalid ssin", normalise_niss, reg.worker.niss),
        ("4", "invalid declaration of works", normalise_declaration, reg.declaration),
    ]
    if reg.worker.employer.enterprise_number is not None:
        checks.append(
            (
                "2",
                "invalid enterprise number",
                normalise_enterprise_number,
                reg.worker.employer.enterprise_number,
            )
        )
    for code, description, normalise, value in checks:
        try:
            if normalise(value) != value:
                raise InvalidIdentifier("not in its canonical form")
        except InvalidIdentifier as error:
            problems.append({"code": code, "description": f"{description}: {error}"})
    return problems
