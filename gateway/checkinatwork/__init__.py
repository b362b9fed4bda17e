"""Checkinatwork: daily presence registrations for construction sites and the meat sector,
over the ONSS SOAP service PresenceRegistration v1 (docs/checkinatwork.md; the official
WSDL and XSDs in `schema/`).

Modules: `messages` (the Body content of registerPresences and getPresenceRegistration
as typed values, their answers read liberally, the XSD check), `codes` (every error code
and remark of the specification, classified: permanent, retry, configuration),
`envelope` (the SOAP 1.1 envelope and faults), `security` (WS-Security: the timestamp,
the binary security token, the signature over the body), `client` (`PresenceClient`: one
call over HTTPS, its answer classified as the REST uplink's, with its types).

Importing this package loads lxml, signxml and httpx.

May import: models, identifiers, errors, system, config, journal, uplink. Nothing above it.
"""

from gateway.checkinatwork.client import PresenceClient
from gateway.checkinatwork.codes import (
    CODES,
    Code,
    CodeClass,
    CodeScope,
    Remark,
    classify,
    lookup,
    remark_of,
)
from gateway.checkinatwork.messages import (
    MAX_ITEMS,
    ItemError,
    ItemResult,
    PresenceItem,
    Refused,
    Registered,
    Validation,
    ValidationStatus,
    client_reference,
    date_accepted,
    get_presence_registration_body,
    parse_get_response,
    parse_register_response,
    register_presences_body,
    registration_id_of,
    schema_problems,
    service_date,
)

__all__ = [
    "CODES",
    "MAX_ITEMS",
    "Code",
    "CodeClass",
    "CodeScope",
    "ItemError",
    "ItemResult",
    "PresenceClient",
    "PresenceItem",
    "Refused",
    "Registered",
    "Remark",
    "Validation",
    "ValidationStatus",
    "classify",
    "client_reference",
    "date_accepted",
    "get_presence_registration_body",
    "lookup",
    "parse_get_response",
    "parse_register_response",
    "register_presences_body",
    "registration_id_of",
    "remark_of",
    "schema_problems",
    "service_date",
]
