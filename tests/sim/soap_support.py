"""Helpers for the tests of the simulator's Checkinatwork SOAP endpoint: requests built and
signed with gateway.checkinatwork, answers checked as SOAP and against the official XSD
(read here with lxml, not through the gateway)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from lxml import etree

from gateway.checkinatwork import (
    PresenceItem,
    Refused,
    get_presence_registration_body,
    parse_register_response,
    register_presences_body,
)
from gateway.checkinatwork.envelope import (
    Operation,
    build_envelope,
    envelope_bytes,
    http_headers,
)
from gateway.checkinatwork.messages import NS, PROTOCOL_XSD, TYPES_NS
from gateway.checkinatwork.security import sign
from onss_sim.testing import SimulatorProcess

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
BRUSSELS = ZoneInfo("Europe/Brussels")
WORKPLACE = "1Y1002V9KLZ6Z"  # the simulator's default, with company 0450905686
COMPANY = "0450905686"
OTHER_WORKPLACE = "2B2002V9KLZ6Z"
OTHER_COMPANY = "0203201340"  # valid KBO/BCE, works on OTHER_WORKPLACE only
NISS = "85073003328"
OTHER_NISS = "90010100123"
LIMOSA = "24910158641968060"
DUPLICATE = "SAME DECLARATION HAS ALREADY BEEN REGISTERED"
SPEC = {  # §5.1.3, p. 12, as printed
    "2": "Invalid companyId node content. Invalid KBO/BCE number",
    "3": "Invalid companyId node content. Invalid KBO/BCE number",
    "4": "Invalid WorkPlaceId node content. Invalid Déclaration de Travaux/Aangifte van"
    " Werken number",
    "5": "Invalid INSS node content. Invalid INSZ/INSS number",
    "6": "Invalid registration date (only today or tomorrow are allowed)",
}


# --- helpers -------------------------------------------------------------------------------


def today() -> date:
    return datetime.now(BRUSSELS).date()


def niss_item(niss: str = NISS, **changes: Any) -> PresenceItem:
    fields: dict[str, Any] = {
        "niss": niss,
        "company_id": COMPANY,
        "workplace_id": WORKPLACE,
        "day": today(),
    }
    fields.update(changes)
    return PresenceItem.for_niss(uuid.uuid4(), **fields)


def limosa_item(limosa: str = LIMOSA, workplace: str = WORKPLACE) -> PresenceItem:
    return PresenceItem.for_limosa(uuid.uuid4(), limosa, workplace, today())


def identity(sim: SimulatorProcess) -> tuple[RSAPrivateKey, x509.Certificate]:
    key = load_pem_private_key(sim.client_key_file.read_bytes(), None)
    assert isinstance(key, RSAPrivateKey)
    return key, x509.load_pem_x509_certificate(sim.client_cert_file.read_bytes())


def signed(
    sim: SimulatorProcess,
    content: etree._Element,
    *,
    pem: tuple[bytes, bytes] | None = None,
    at: datetime | None = None,
) -> bytes:
    """The envelope around `content`, signed with the simulator's client key (or `pem`,
    a key and certificate), its Timestamp made `at` (default now)."""
    if pem is None:
        key, certificate = identity(sim)
    else:
        loaded = load_pem_private_key(pem[0], None)
        assert isinstance(loaded, RSAPrivateKey)
        key, certificate = loaded, x509.load_pem_x509_certificate(pem[1])
    envelope = sign(build_envelope(content), key, certificate, at or datetime.now(UTC))
    return envelope_bytes(envelope)


def post(
    client: httpx.Client,
    sim: SimulatorProcess,
    data: bytes,
    operation: Operation = Operation.REGISTER_PRESENCES,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {**http_headers(operation), **(headers or {})}
    return client.post(sim.soap_url, content=data, headers=sent)


def register(
    client: httpx.Client, sim: SimulatorProcess, items: list[PresenceItem]
) -> httpx.Response:
    return post(client, sim, signed(sim, register_presences_body(items)))


def body_of(response: httpx.Response) -> etree._Element:
    """The Body's element of an answer, after checking it is SOAP 1.1 text/xml."""
    assert response.headers["content-type"].startswith("text/xml"), response.text
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{SOAP_ENV}}}Envelope"
    body = root.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None and len(body) == 1
    return body[0]


def valid(element: etree._Element) -> etree._Element:
    """`element`, once the official XSD (read here with lxml, not the gateway) accepts it."""
    schema = etree.XMLSchema(etree.parse(str(PROTOCOL_XSD)))
    document = etree.ElementTree(etree.fromstring(etree.tostring(element)))
    assert schema.validate(document), [str(e) for e in schema.error_log]
    return element


def answered(response: httpx.Response) -> etree._Element:
    assert response.status_code == 200, response.text
    return valid(body_of(response))


def fault(response: httpx.Response, status: int = 500) -> tuple[str, str, str]:
    """(faultcode, SOA code from the detail, faultstring) of a SOAP fault answer."""
    assert response.status_code == status, response.text
    element = body_of(response)
    assert element.tag == f"{{{SOAP_ENV}}}Fault"
    code = element.findtext("detail/{http://socialsecurity.be/errors/v1}SystemError/Code")
    return str(element.findtext("faultcode")), str(code), str(element.findtext("faultstring"))


def soa(response: httpx.Response) -> str:
    return fault(response)[1]


def results(response: httpx.Response, items: list[PresenceItem]) -> tuple[Any, ...]:
    return parse_register_response(answered(response), items)


def error_codes(result: Any) -> list[str]:
    assert isinstance(result, Refused), result
    return [error.code for error in result.errors]


def set_text(content: etree._Element, index: int, name: str, text: str | None) -> None:
    """Change (or, with None, remove) one field of the index-th item, past the client's
    own checks: what a buggy client could send."""
    item = content.findall(f"{{{NS}}}PresenceRegistrationRequest")[index]
    field = item.find(f"{{{TYPES_NS}}}{name}")
    assert field is not None
    if text is None:
        item.remove(field)
    else:
        field.text = text


def get(client: httpx.Client, sim: SimulatorProcess, presence_id: int) -> etree._Element:
    data = signed(sim, get_presence_registration_body(presence_id))
    return answered(post(client, sim, data, Operation.GET_PRESENCE_REGISTRATION))
