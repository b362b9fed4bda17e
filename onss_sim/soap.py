"""The Checkinatwork SOAP endpoint, PresenceRegistration v1: `POST /PresenceRegistration/v1`
(SOAP 1.1, document/literal, one SOAPAction per operation, as the WSDL binds it).

A request goes through, in order (README.md, "Checkinatwork"): injected faults; SOAP
(SOA-03002 not SOAP, SOA-03003 no Body, SOA-03004 more than one Body element); the
operation (SOA-03005: SOAPAction and Body element of one WSDL operation); WS-Security
(SOA-01001: signed by a registered client's certificate, Body and Timestamp covered,
Timestamp fresh); authorisation (SOA-01002: a client registered `permitted: false`, or an
operation the simulated technical user is not granted); the official XSD (SOA-03006, the
200-item limit included); then each item (§5.1.3 codes 2-6). Faults are HTTP 500.

The signature check is gateway.checkinatwork.security.verify (signxml), the one meant for
the receiving side; everything else here reads the XML itself.
"""

from __future__ import annotations

import time
from dataclasses import replace

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree

from gateway.checkinatwork import security
from gateway.errors import WsSecurityError
from onss_sim import faults
from onss_sim.messages import Reply, Request, dropped
from onss_sim.soap_answers import get_response, register_response
from onss_sim.soap_book import Error, Submitted, real_now
from onss_sim.soap_xml import (
    ACTION_BASE,
    CONTENT_TYPE,
    NS,
    Envelope,
    SoapRefusal,
    check_schema,
    envelope_of,
    fault_bytes,
    name_of,
    q,
    read_envelope,
    text_of,
)
from onss_sim.state import Simulator
from onss_sim.tokens import Client

PATH = "/PresenceRegistration/v1"
# Each operation's request element (the WSDL's input messages).
REQUESTS = {
    "registerPresences": "RegisterPresencesRequest",
    "cancelPresences": "CancelPresencesRequest",
    "searchPresences": "SearchPresencesRequest",
    "getPresenceRegistration": "GetPresenceRegistrationRequest",
}
GRANTED = frozenset(faults.SOAP_TARGETS)  # the simulated technical user's rights
NOT_GRANTED = "the simulated technical user may call registerPresences and getPresenceRegistration"


def presence_registration(sim: Simulator, request: Request) -> Reply:
    """The endpoint: faults first, as for the REST endpoints, then the checks."""
    operation = operation_of(request)
    target = operation if operation in faults.SOAP_TARGETS else ""  # "": outages only
    with sim.lock:
        fault = sim.faults.take(target, time.monotonic())
        generation = sim.generation
    if fault is None:
        return _process(sim, request, {})
    return replace(_faulty(sim, request, fault, generation), fault=fault.kind)


def _faulty(sim: Simulator, request: Request, fault: faults.Fault, generation: int) -> Reply:
    if fault.kind == faults.OUTAGE:
        reply = _fault_reply(SoapRefusal("SOA-02002", "simulated outage"))
        return replace(reply, status=503, headers=(("Retry-After", str(fault.retry_after)),))
    if fault.kind == faults.STATUS:  # what a proxy in trouble answers: not SOAP
        retry = () if fault.retry_after is None else (("Retry-After", str(fault.retry_after)),)
        return Reply(fault.status, b"injected fault\n", "text/plain; charset=utf-8", retry)
    if fault.kind == faults.SOAP_FAULT:
        return _fault_reply(SoapRefusal(str(fault.code), "injected fault"))
    if fault.kind == faults.DROP:
        return dropped(fault.kind)
    if fault.kind == faults.LATENCY:
        time.sleep(fault.seconds)
        return dropped(fault.kind) if sim.generation != generation else _process(sim, request, {})
    if fault.kind == faults.ITEM_ERROR and fault.person is not None:
        forced = {fault.person: (str(fault.code), "injected business error")}
        return _process(sim, request, forced)
    processed = _process(sim, request, {})
    if fault.kind == faults.CUT_AFTER:  # stored, answered 200 with half of its answer
        return replace(processed, body=processed.body[: len(processed.body) // 2])
    if fault.kind != faults.DROP_AFTER:
        return processed
    # drop_after_processing: the ambiguous case
    return replace(dropped(fault.kind), client_id=processed.client_id, status=processed.status)


def operation_of(request: Request) -> str | None:
    """The operation the SOAPAction header names (quoted or not), None for another."""
    action = (request.header("soapaction") or "").strip().strip('"')
    name = action.removeprefix(ACTION_BASE)
    return name if action.startswith(ACTION_BASE) and name in REQUESTS else None


def _process(sim: Simulator, request: Request, forced: dict[tuple[str, str], Error]) -> Reply:
    client: Client | None = None
    try:
        _check_media_type(request)
        envelope = read_envelope(request.body)
        operation = _operation(request, envelope)
        client = _authenticated(sim, envelope)
        if not client.permitted:
            raise SoapRefusal("SOA-01002", f"client {client.client_id} is not permitted")
        if operation not in GRANTED:
            raise SoapRefusal("SOA-01002", f"{operation}: {NOT_GRANTED}")
        check_schema(envelope.content)
        answer = _answer(sim, operation, envelope.content, client.client_id, forced)
        return Reply(200, envelope_of(answer), CONTENT_TYPE, client_id=client.client_id)
    except SoapRefusal as refusal:
        return replace(_fault_reply(refusal), client_id=client.client_id if client else None)


def _check_media_type(request: Request) -> None:
    media = (request.header("content-type") or "").split(";")[0].strip().lower()
    if media != "text/xml":
        raise SoapRefusal("SOA-03002", f"Content-Type {media or 'absent'}: SOAP 1.1 is text/xml")


def _operation(request: Request, envelope: Envelope) -> str:
    operation = operation_of(request)
    if operation is None:
        action = request.header("soapaction")
        raise SoapRefusal("SOA-03005", f"SOAPAction {action!r} is none of the WSDL's")
    expected = q(NS, REQUESTS[operation])
    if envelope.content.tag != expected:
        raise SoapRefusal(
            "SOA-03005", f"{operation} takes {expected}, not {name_of(envelope.content)}"
        )
    return operation


def _authenticated(sim: Simulator, envelope: Envelope) -> Client:
    """The registered client whose certificate signed the request; SOA-01001 otherwise."""
    with sim.lock:
        clients = list(sim.tokens.clients.values())
    certificates = {
        c.client_id: x509.load_pem_x509_certificate(c.certificate_pem.encode()) for c in clients
    }
    try:
        verified = security.verify(envelope.root, list(certificates.values()), real_now())
    except WsSecurityError as error:
        raise SoapRefusal("SOA-01001", str(error)) from None
    signer = verified.certificate.fingerprint(hashes.SHA256())
    return next(
        c for c in clients if certificates[c.client_id].fingerprint(hashes.SHA256()) == signer
    )


def _answer(
    sim: Simulator,
    operation: str,
    content: etree._Element,
    client_id: str,
    forced: dict[tuple[str, str], Error],
) -> etree._Element:
    now = real_now()
    if operation == "registerPresences":
        items = [_submitted(e) for e in content.findall(q(NS, "PresenceRegistrationRequest"))]
        with sim.lock:
            delay = sim.config.validation_delay_s
            outcomes = sim.presences.register(items, client_id, now, delay, forced)
        return register_response(outcomes, now)
    inner = content.find(q(NS, "GetPresenceRegistrationRequest"))
    assert inner is not None  # the XSD requires it
    presence_id = int(text_of(inner, "PresenceRegistrationId") or "0")
    with sim.lock:
        presence = sim.presences.get(presence_id, client_id)
    return get_response(presence_id, presence, now)


def _submitted(element: etree._Element) -> Submitted:
    return Submitted(
        workplace=text_of(element, "WorkPlaceId") or "",
        registration_date=text_of(element, "RegistrationDate"),
        inss=text_of(element, "INSS"),
        company_id=text_of(element, "CompanyID"),
        limosa_id=text_of(element, "LimosaId"),
        reference=text_of(element, "ClientPresenceRegistrationReference"),
    )


def _fault_reply(refusal: SoapRefusal) -> Reply:
    """SOAP 1.1 over HTTP: a fault is an HTTP 500 (SOAP 1.1 §6.2)."""
    return Reply(500, fault_bytes(refusal.code, refusal.reason), CONTENT_TYPE)


def item_count(request: Request) -> int | None:
    """How many presence items a registerPresences body carries (for the request log)."""
    try:
        envelope = read_envelope(request.body)
    except SoapRefusal:
        return None
    found = envelope.content.findall(q(NS, "PresenceRegistrationRequest"))
    return len(found) if envelope.content.tag == q(NS, "RegisterPresencesRequest") else None
