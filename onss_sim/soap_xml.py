"""The XML of the simulated PresenceRegistration v1 SOAP service: the request envelope
read, the official XSD applied, SOAP faults and the operations' answers written.

The simulator reads requests itself (lxml, by the XSD's qualified names), never with the
gateway's reading code: a bug there must show against it, not be shared. It validates with
the official XSDs kept beside the gateway (gateway/checkinatwork/schema/, the same
distribution: found by path, not imported).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "http://socialsecurity.be/presenceregistration/v1"
TYPES_NS = "http://socialsecurity.be/presenceregistration/schemas/v1"
ERRORS_NS = "http://socialsecurity.be/errors/v1"
ACTION_BASE = "http://socialsecurity.be/presenceregistration/v1/"
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "gateway" / "checkinatwork" / "schema"
PROTOCOL_XSD = SCHEMA_DIR / "v1" / "PresenceRegistration_protocol_v1.xsd"
CONTENT_TYPE = "text/xml; charset=utf-8"
MAX_PROBLEMS = 3  # schema problems quoted in a fault

# §7.1, p. 33: the system error codes, their description and who caused them.
SYSTEM_ERRORS: dict[str, tuple[str, str]] = {
    "SOA-00001": ("Service error", ""),
    "SOA-01001": ("Service call not authenticated", "Consumer"),
    "SOA-01002": ("Service call not authorized", "Consumer"),
    "SOA-02001": ("Service not available. Please contact service desk.", "Provider"),
    "SOA-02002": ("Service temporarily not available. Please try later.", "Provider"),
    "SOA-03001": ("Malformed message", "Consumer"),
    "SOA-03002": ("Message must be SOAP", "Consumer"),
    "SOA-03003": ("Message must contain SOAP body", "Consumer"),
    "SOA-03004": ("WS-I compliance failure", "Consumer"),
    "SOA-03005": ("WSDL compliance failure", "Consumer"),
    "SOA-03006": ("XSD compliance failure", "Consumer"),
    "SOA-03007": ("Message content validation failure", "Consumer"),
}


class SoapRefusal(Exception):  # noqa: N818 (reads as "raise SoapRefusal")
    """The request is answered with a SOAP fault: `code` is a §7.1 SOA-nnnnn code."""

    def __init__(self, code: str, reason: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = " ".join(reason.split())[:300]


@dataclass(frozen=True)
class Envelope:
    root: etree._Element
    content: etree._Element  # the Body's one element


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def name_of(element: etree._Element) -> str:
    return etree.QName(element).text


# --- reading -------------------------------------------------------------------------------


def read_envelope(data: bytes) -> Envelope:
    """The SOAP 1.1 envelope in `data`; SoapRefusal 03002 (not SOAP), 03003 (no Body or an
    empty one) or 03004 (a document/literal Body holds one element: WS-I BP R2201)."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        tree = etree.ElementTree(etree.fromstring(data, parser))
    except etree.XMLSyntaxError as error:
        raise SoapRefusal("SOA-03002", f"not XML: {error}") from None
    root = tree.getroot()
    if tree.docinfo.doctype or root.tag != q(SOAP_ENV, "Envelope"):
        raise SoapRefusal("SOA-03002", f"the root is {name_of(root)}, not a SOAP 1.1 Envelope")
    bodies = root.findall(q(SOAP_ENV, "Body"))
    if len(bodies) != 1:
        raise SoapRefusal("SOA-03003", f"{len(bodies)} SOAP Body elements")
    children = [child for child in bodies[0] if isinstance(child.tag, str)]
    if not children:
        raise SoapRefusal("SOA-03003", "the SOAP Body is empty")
    if len(children) > 1:
        raise SoapRefusal("SOA-03004", f"{len(children)} elements in a document/literal Body")
    return Envelope(root, children[0])


_SCHEMA_LOCK = threading.Lock()  # an XMLSchema keeps its error log on itself


@cache
def _schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(PROTOCOL_XSD), parser))


def schema_problems(element: etree._Element) -> list[str]:
    """What the official XSD finds wrong with `element`, one line each; [] if valid."""
    document = etree.ElementTree(etree.fromstring(etree.tostring(element)))
    schema = _schema()
    with _SCHEMA_LOCK:
        if schema.validate(document):
            return []
        return [f"line {e.line}: {e.message}" for e in schema.error_log]


def check_schema(element: etree._Element) -> None:
    """SoapRefusal SOA-03006 quoting the first problems, if the XSD refuses `element`."""
    problems = schema_problems(element)
    if problems:
        raise SoapRefusal("SOA-03006", "; ".join(problems[:MAX_PROBLEMS]))


def text_of(parent: etree._Element, name: str) -> str | None:
    """The text of the child `name` in the types namespace, None when absent."""
    child = parent.find(q(TYPES_NS, name))
    return None if child is None else (child.text or "").strip()


# --- writing -------------------------------------------------------------------------------


def envelope_of(content: etree._Element) -> bytes:
    """A SOAP 1.1 envelope around `content`, as sent."""
    root = etree.Element(q(SOAP_ENV, "Envelope"), nsmap={"S": SOAP_ENV})
    etree.SubElement(root, q(SOAP_ENV, "Header"))
    etree.SubElement(root, q(SOAP_ENV, "Body")).append(content)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def fault_bytes(code: str, reason: str = "") -> bytes:
    """A SOAP 1.1 Fault carrying a §7.1 code: faultcode Client for the consumer's causes,
    Server otherwise; faultstring the specification's description (and the reason); the
    code in detail/SystemError (its schema is not published: this shape is ours)."""
    description, origin = SYSTEM_ERRORS.get(code, ("Service error", ""))
    root = etree.Element(q(SOAP_ENV, "Envelope"), nsmap={"soapenv": SOAP_ENV})
    fault = etree.SubElement(etree.SubElement(root, q(SOAP_ENV, "Body")), q(SOAP_ENV, "Fault"))
    side = "Client" if origin == "Consumer" else "Server"
    etree.SubElement(fault, "faultcode").text = f"soapenv:{side}"
    etree.SubElement(fault, "faultstring").text = (
        f"{description}: {reason}" if reason else description
    )
    error = etree.SubElement(
        etree.SubElement(fault, "detail"), q(ERRORS_NS, "SystemError"), nsmap={"err": ERRORS_NS}
    )
    etree.SubElement(error, "Id").text = str(uuid.uuid4())
    etree.SubElement(error, "Origin").text = origin or "Provider"
    etree.SubElement(error, "Code").text = code
    etree.SubElement(error, "Message").text = description
    if reason:
        etree.SubElement(error, "Reason").text = reason
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def operation_element(name: str) -> etree._Element:
    """An operation's answer element, with the prefixes of the specification's example."""
    return etree.Element(q(NS, name), nsmap={"ns4": NS, "ns3": TYPES_NS})


def add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    """A child in the types namespace (every element inside the operations' ones)."""
    child = etree.SubElement(parent, q(TYPES_NS, name))
    if text is not None:
        child.text = text
    return child
