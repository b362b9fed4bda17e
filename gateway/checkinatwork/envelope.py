"""SOAP 1.1 envelopes for PresenceRegistration v1: one built around a Body element, and one
read back (the Body's content, or a SOAP Fault) without ever crashing on an odd answer.

The WSDL binds every operation as SOAP 1.1, document/literal (`soap11:binding
style="document"`), each with its own `soapAction`; the specification's example
(PresenceRegistration 1.11, §5.1.1.1, p. 11) is an envelope whose Header is empty until
WS-Security fills it (`security.py`). Whatever cannot be read as such an envelope is one
`SoapEnvelopeError` with a one-line reason: for the client, an answer it cannot read.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from enum import StrEnum

from lxml import etree

from gateway.errors import SoapEnvelopeError

__all__ = [
    "CONTENT_TYPE",
    "SOAP_ENV",
    "Operation",
    "SoapFault",
    "SoapMessage",
    "build_envelope",
    "envelope_bytes",
    "fault_envelope",
    "http_headers",
    "read_envelope",
]

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
CONTENT_TYPE = "text/xml; charset=utf-8"  # SOAP 1.1 over HTTP
_ACTION_BASE = "http://socialsecurity.be/presenceregistration/v1/"
_SERVICE_CODE = re.compile(r"\bSOA-\d{5}\b")
_REASON_CHARS = 200


class Operation(StrEnum):
    """The WSDL's operations; each has its SOAPAction (`soap11:operation soapAction=`)."""

    REGISTER_PRESENCES = "registerPresences"
    CANCEL_PRESENCES = "cancelPresences"
    SEARCH_PRESENCES = "searchPresences"
    GET_PRESENCE_REGISTRATION = "getPresenceRegistration"

    @property
    def soap_action(self) -> str:
        return _ACTION_BASE + self.value


@dataclass(frozen=True)
class SoapFault:
    """A SOAP 1.1 Fault as received: `code` as written (`soapenv:Client`), `string` on one
    line, `detail` the detail element if any (the ONSS puts its SystemError there)."""

    code: str
    string: str
    actor: str = ""
    detail: etree._Element | None = None

    @property
    def code_name(self) -> str:
        """The faultcode without its prefix: Client, Server, VersionMismatch..."""
        return self.code.rpartition(":")[2]

    @property
    def service_code(self) -> str | None:
        """The first ONSS system error code (SOA-nnnnn, §7.1, p. 33) in the detail or the
        faultstring, if any."""
        texts = [] if self.detail is None else list(self.detail.itertext())
        found = _SERVICE_CODE.search(" ".join([*texts, self.string]))
        return found.group(0) if found else None


@dataclass(frozen=True)
class SoapMessage:
    """A readable envelope: its Header (if any), its Body, and either the Body's first
    element (`content`) or a `fault`."""

    envelope: etree._Element
    header: etree._Element | None
    body: etree._Element
    content: etree._Element | None
    fault: SoapFault | None


def _q(name: str) -> str:
    return f"{{{SOAP_ENV}}}{name}"


def build_envelope(content: etree._Element) -> etree._Element:
    """Envelope, an empty Header, and a Body holding a copy of `content`."""
    envelope = etree.Element(_q("Envelope"), nsmap={"soapenv": SOAP_ENV})
    etree.SubElement(envelope, _q("Header"))
    etree.SubElement(envelope, _q("Body")).append(copy.deepcopy(content))
    return envelope


def fault_envelope(fault: SoapFault) -> etree._Element:
    """An envelope whose Body is `fault` (the simulator's answers)."""
    envelope = etree.Element(_q("Envelope"), nsmap={"soapenv": SOAP_ENV})
    element = etree.SubElement(etree.SubElement(envelope, _q("Body")), _q("Fault"))
    etree.SubElement(element, "faultcode").text = fault.code
    etree.SubElement(element, "faultstring").text = fault.string
    if fault.actor:
        etree.SubElement(element, "faultactor").text = fault.actor
    if fault.detail is not None:
        etree.SubElement(element, "detail").append(copy.deepcopy(fault.detail))
    return envelope


def envelope_bytes(envelope: etree._Element) -> bytes:
    """The envelope as sent: UTF-8 with an XML declaration, never re-indented (a signed
    envelope must reach the other side byte for byte as it was canonicalised)."""
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def http_headers(operation: Operation) -> dict[str, str]:
    """The HTTP headers of a SOAP 1.1 request (the SOAPAction quoted, as SOAP 1.1 shows)."""
    return {"Content-Type": CONTENT_TYPE, "SOAPAction": f'"{operation.soap_action}"'}


def read_envelope(data: bytes) -> SoapMessage:
    """The envelope in `data`; SoapEnvelopeError (one line) when it cannot be read as one."""
    envelope = _parse(data)
    if envelope.tag != _q("Envelope"):
        raise SoapEnvelopeError(f"not a SOAP 1.1 envelope: the root is {_name(envelope)}")
    header = _only_child(envelope, "Header", required=False)
    body = _only_child(envelope, "Body", required=True)
    assert body is not None
    children = _elements(body)
    if not children:
        raise SoapEnvelopeError("the SOAP Body is empty")
    faults = [child for child in children if child.tag == _q("Fault")]
    if faults:
        return SoapMessage(envelope, header, body, None, _read_fault(faults[0]))
    return SoapMessage(envelope, header, body, children[0], None)


def _parse(data: bytes) -> etree._Element:
    if not data.strip():
        raise SoapEnvelopeError("no content: an empty answer")
    # No DTD, no entities, no network: what arrives is data, never instructions to fetch.
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        tree = etree.ElementTree(etree.fromstring(data, parser))
    except etree.XMLSyntaxError as error:
        raise SoapEnvelopeError(f"not XML: {_one_line(str(error))}") from error
    if tree.docinfo.doctype:
        raise SoapEnvelopeError("a document type declaration, which SOAP forbids")
    return tree.getroot()


def _only_child(envelope: etree._Element, name: str, required: bool) -> etree._Element | None:
    found = [child for child in _elements(envelope) if child.tag == _q(name)]
    if len(found) > 1:
        raise SoapEnvelopeError(f"{len(found)} SOAP {name} elements, a SOAP envelope has one")
    if not found and required:
        raise SoapEnvelopeError(f"the SOAP envelope has no {name}")
    return found[0] if found else None


def _read_fault(fault: etree._Element) -> SoapFault:
    detail = _local_child(fault, "detail")
    details = [] if detail is None else _elements(detail)
    return SoapFault(
        code=_text(fault, "faultcode"),
        string=_text(fault, "faultstring"),
        actor=_text(fault, "faultactor"),
        detail=details[0] if details else None,
    )


def _text(parent: etree._Element, name: str) -> str:
    """The child's text on one line, capped; "" when missing (read liberally)."""
    child = _local_child(parent, name)
    return "" if child is None else _one_line("".join(child.itertext()))


def _local_child(parent: etree._Element, name: str) -> etree._Element | None:
    """The first child of that local name: unqualified as SOAP 1.1 has it, or qualified as
    some servers write it."""
    return next((c for c in _elements(parent) if etree.QName(c).localname == name), None)


def _elements(parent: etree._Element) -> list[etree._Element]:
    """Element children only: comments and processing instructions are not content."""
    return [child for child in parent if isinstance(child.tag, str)]


def _name(element: etree._Element) -> str:
    qname = etree.QName(element)
    if qname.namespace == _SOAP12_ENV:
        return f"a SOAP 1.2 {qname.localname} (the service speaks SOAP 1.1)"
    return f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."
