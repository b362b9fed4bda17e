"""The answers of registerPresences and getPresenceRegistration, element by element in
the XSD's sequence order (the specification's tables, §6.1, list children alphabetically;
the XSD decides)."""

from __future__ import annotations

from datetime import datetime

from lxml import etree

from onss_sim.soap_book import REGISTERED, Outcome, Presence, Submitted, Validation
from onss_sim.soap_xml import NS as PROTOCOL_NS
from onss_sim.soap_xml import add, operation_element, q

CHANNEL = "WS"  # what the examples show for the web service (pp. 11, 16)


def register_response(outcomes: list[Outcome], now: datetime) -> etree._Element:
    """RegisterPresencesResponse: one PresenceRegistrationResponse per item, in order."""
    root = operation_element("RegisterPresencesResponse")
    for outcome in outcomes:
        entry = etree.SubElement(root, q(PROTOCOL_NS, "PresenceRegistrationResponse"))
        if outcome.presence is not None:
            _registration(entry, "PresenceRegistration", outcome.presence, now, consult=False)
        else:
            _refusal(entry, outcome)
    return root


def get_response(presence_id: int, presence: Presence | None, now: datetime) -> etree._Element:
    """GetPresenceRegistrationResponse; an empty GetPresenceRegistrationType when the id
    is unknown or not the caller's (the type's content is optional, §6.1.16)."""
    root = operation_element("GetPresenceRegistrationResponse")
    holder = etree.SubElement(root, q(PROTOCOL_NS, "GetPresenceRegistrationResponseType"))
    add(add(holder, "GetPresenceRegistrationRequest"), "PresenceRegistrationId", str(presence_id))
    found = add(holder, "GetPresenceRegistrationType")
    if presence is not None:
        _registration(found, "PresenceRegistrationType", presence, now, consult=True)
    return root


def _registration(
    parent: etree._Element, name: str, presence: Presence, now: datetime, consult: bool
) -> None:
    """PresenceRegistrationType: the register answer echoes what was submitted and shows
    the registration just made (p. 11); a consultation shows its validation (p. 16)."""
    element = add(parent, name)
    submitted = presence.submitted
    tag = "PresenceRegistrationConsultSubmitted" if consult else "PresenceRegistrationSubmitted"
    _submitted(add(element, tag), submitted, consult)
    if submitted.inss is not None:
        add(element, "INSS", submitted.inss)
    add(element, "PresenceRegistrationId", str(presence.id))
    add(element, "CreationDate", _time(presence.created_at))
    add(element, "Channel", CHANNEL)
    # The register answer comes before any validation (p. 11); a consultation shows it.
    validation = presence.validation(now) if consult else Validation(REGISTERED)
    _validation(add(element, "LastValidation"), validation)
    if consult and validation.at is not None:
        _validation(add(add(element, "ValidationHistory"), "Validation"), validation)
    if consult:
        add(add(element, "Sender"), "SenderId", presence.client_id)


def _refusal(parent: etree._Element, outcome: Outcome) -> None:
    element = add(parent, "PresenceRegistrationError")
    _submitted(add(element, "PresenceRegistrationSubmitted"), outcome.submitted, consult=False)
    errors = add(element, "ErrorList")
    for code, description in outcome.errors[:10]:  # RequestErrorType: at most 10
        error = add(errors, "Error")
        add(error, "ErrorCode", code)
        add(error, "ErrorDescription", description)


def _submitted(element: etree._Element, item: Submitted, consult: bool) -> None:
    """What was sent, in the XSD's order; the consultation type has no choice (p. 22)."""
    if item.registration_date is not None:
        add(element, "RegistrationDate", item.registration_date)
    if item.inss is not None:
        add(element, "INSS", item.inss)
        add(element, "CompanyID", item.company_id)
    if item.limosa_id is not None:
        add(element, "LimosaId", item.limosa_id)
    add(element, "WorkPlaceId", item.workplace)
    if item.reference is not None:
        add(element, "ClientPresenceRegistrationReference", item.reference)


def _validation(element: etree._Element, validation: Validation) -> None:
    add(element, "Status", validation.status)
    if validation.at is not None:
        add(element, "ValidationDate", _time(validation.at))
    if validation.remarks:
        remarks = add(element, "RemarkList")
        for remark in validation.remarks:
            add(remarks, "Remark", remark)


def _time(moment: datetime) -> str:
    """As the examples write it: Brussels time, milliseconds, no zone (2013-12-01T16:00:00.769)."""
    return moment.isoformat(timespec="milliseconds")
