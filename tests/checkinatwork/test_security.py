"""WS-Security for Checkinatwork: the box signs, the simulator verifies, and every way a
request can be wrong is refused with its own reason. Keys and certificates are real (made
with cryptography here); envelopes go through bytes, as on the wire, before being verified.
Also: reading SOAP envelopes back (odd answers are one SoapEnvelopeError, never a crash),
and loading the employer's certificate from a file."""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, SignatureConstructionMethod
from signxml.signer import XMLSigner

from gateway.checkinatwork.envelope import (
    SOAP_ENV,
    Operation,
    SoapFault,
    build_envelope,
    envelope_bytes,
    fault_envelope,
    http_headers,
    read_envelope,
)
from gateway.checkinatwork.messages import PresenceItem, register_presences_body, schema_problems
from gateway.checkinatwork.security import (
    DS,
    MAX_CLOCK_SKEW,
    TIMESTAMP_LIFETIME,
    WSSE,
    WSU,
    X509V3,
    Refusal,
    check_key_pair,
    load_identity,
    sign,
    verify,
)
from gateway.errors import CredentialError, SoapEnvelopeError, WsSecurityError
from gateway.system.credentials import load_certificate

NOW = datetime(2026, 3, 2, 6, 58, 12, tzinfo=UTC)
PR = "http://socialsecurity.be/presenceregistration/v1"
TYPES = "http://socialsecurity.be/presenceregistration/schemas/v1"
ID = f"{{{WSU}}}Id"


@dataclass(frozen=True)
class Party:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate


def make_party(name: str, not_before: datetime, not_after: datetime) -> Party:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return Party(key, certificate)


EMPLOYER = make_party("Bouw NV", NOW - timedelta(days=30), NOW + timedelta(days=365))
OTHER = make_party("Someone else", NOW - timedelta(days=30), NOW + timedelta(days=365))
LAPSED = make_party("Bouw NV (old)", NOW - timedelta(days=400), NOW - timedelta(days=1))


def register_presences() -> etree._Element:
    """A RegisterPresences Body as the specification's example has it (§5.1.1.1, pp. 10-11)."""
    request = etree.Element(f"{{{PR}}}RegisterPresencesRequest", nsmap={"v1": PR, "v11": TYPES})
    item = etree.SubElement(request, f"{{{PR}}}PresenceRegistrationRequest")
    for name, value in (
        ("RegistrationDate", "2026-03-02"),
        ("INSS", "85073003328"),
        ("CompanyID", "0450905686"),
        ("WorkPlaceId", "1Y1000003EQCZ"),
        ("ClientPresenceRegistrationReference", "0195a3c25f007000"),
    ):
        etree.SubElement(item, f"{{{TYPES}}}{name}").text = value
    return request


def signed_bytes(party: Party = EMPLOYER, at: datetime = NOW) -> bytes:
    envelope = build_envelope(register_presences())
    return envelope_bytes(sign(envelope, party.key, party.certificate, at))


def received(data: bytes) -> etree._Element:
    return read_envelope(data).envelope


def refusal_of(envelope: etree._Element, trusted: list[x509.Certificate] | None = None) -> str:
    with pytest.raises(WsSecurityError) as caught:
        verify(envelope, trusted or [EMPLOYER.certificate], NOW)
    message = str(caught.value)
    assert "\n" not in message and caught.value.reason in message
    return caught.value.refusal


def security(envelope: etree._Element) -> etree._Element:
    found = envelope.find(f"{{{SOAP_ENV}}}Header/{{{WSSE}}}Security")
    assert found is not None
    return found


def body(envelope: etree._Element) -> etree._Element:
    found = envelope.find(f"{{{SOAP_ENV}}}Body")
    assert found is not None
    return found


def inss(envelope: etree._Element) -> etree._Element:
    found = envelope.find(f".//{{{TYPES}}}INSS")
    assert found is not None
    return found


# --- what a signed request holds ---------------------------------------------------------------


def test_a_signed_request_verifies_after_the_wire() -> None:
    envelope = received(signed_bytes())
    verified = verify(envelope, [OTHER.certificate, EMPLOYER.certificate], NOW)
    assert verified.certificate == EMPLOYER.certificate
    assert verified.created == NOW
    assert verified.expires == NOW + TIMESTAMP_LIFETIME
    assert verified.body is body(envelope)
    assert inss(envelope).text == "85073003328"


def test_comments_added_on_the_way_change_nothing() -> None:
    """Exclusive C14N without comments: a proxy's comment is not an alteration."""
    data = signed_bytes().replace(b"<v11:INSS>", b"<!-- seen by a proxy --><v11:INSS>")
    assert b"seen by a proxy" in data
    assert verify(received(data), [EMPLOYER.certificate], NOW).certificate == EMPLOYER.certificate


def test_the_security_header_is_the_one_the_policy_asks_for() -> None:
    """IncludeTimestamp, a BinarySecurityToken with the certificate, SignedParts Body,
    ProtectTokens; exclusive C14N, RSA-SHA256, SHA-256; KeyInfo a reference to the token."""
    envelope = received(signed_bytes())
    header = security(envelope)
    assert header.get(f"{{{SOAP_ENV}}}mustUnderstand") == "1"
    timestamp, token, signature = list(header)
    assert timestamp.tag == f"{{{WSU}}}Timestamp"
    assert [child.text for child in timestamp] == [
        "2026-03-02T06:58:12.000Z",
        "2026-03-02T07:03:12.000Z",
    ]
    assert token.get("ValueType") == X509V3
    assert base64.b64decode(token.text or "") == EMPLOYER.certificate.public_bytes(
        serialization.Encoding.DER
    )
    info = signature.find(f"{{{DS}}}SignedInfo")
    assert info is not None
    algorithms = {element.get("Algorithm") for element in info.iter(f"{{{DS}}}*")} - {None}
    assert algorithms == {
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    }
    uris = [reference.get("URI") for reference in info.iter(f"{{{DS}}}Reference")]
    assert uris == [f"#{element.get(ID)}" for element in (body(envelope), timestamp, token)]
    reference = signature.find(
        f"{{{DS}}}KeyInfo/{{{WSSE}}}SecurityTokenReference/{{{WSSE}}}Reference"
    )
    assert reference is not None and reference.get("URI") == f"#{token.get(ID)}"


def test_an_envelope_without_header_gets_one_when_signed() -> None:
    envelope = build_envelope(register_presences())
    envelope.remove(envelope[0])
    signed = received(envelope_bytes(sign(envelope, EMPLOYER.key, EMPLOYER.certificate, NOW)))
    assert [etree.QName(child).localname for child in signed] == ["Header", "Body"]
    assert verify(signed, [EMPLOYER.certificate], NOW).body is body(signed)


def test_signing_leaves_the_envelope_given_as_it_was() -> None:
    envelope = build_envelope(register_presences())
    before = etree.tostring(envelope)
    sign(envelope, EMPLOYER.key, EMPLOYER.certificate, NOW)
    assert etree.tostring(envelope) == before


def test_a_certificate_that_is_not_the_keys_is_refused_before_signing() -> None:
    with pytest.raises(CredentialError, match="not the private key's"):
        check_key_pair(EMPLOYER.key, OTHER.certificate)
    with pytest.raises(CredentialError):
        sign(build_envelope(register_presences()), EMPLOYER.key, OTHER.certificate, NOW)


def test_signing_keeps_the_body_valid_against_the_official_xsd() -> None:
    """A NISS worker and a Limosa worker, built by messages.py, signed, sent, verified: the
    Body the signature covers still validates against the official XSD."""
    day = date(2026, 3, 2)
    items = [
        PresenceItem.for_niss(uuid.uuid4(), "85073003328", "0450905686", "1Y1000003EQCZ", day),
        PresenceItem.for_limosa(uuid.uuid4(), "24910158641968060", "1Y1000003EQCZ", day),
    ]
    envelope = build_envelope(register_presences_body(items))
    data = envelope_bytes(sign(envelope, EMPLOYER.key, EMPLOYER.certificate, NOW))
    verified = verify(received(data), [EMPLOYER.certificate], NOW)
    assert schema_problems(verified.body[0]) == ()
    assert schema_problems(register_presences()) == ()


# --- refusals, each with its reason ------------------------------------------------------------


def test_a_body_changed_after_signing_is_refused() -> None:
    envelope = received(signed_bytes())
    inss(envelope).text = "90010100123"
    assert refusal_of(envelope) == Refusal.ALTERED
    with pytest.raises(WsSecurityError, match="the Body was changed after signing"):
        verify(envelope, [EMPLOYER.certificate], NOW)


def test_a_timestamp_changed_after_signing_is_refused() -> None:
    envelope = received(signed_bytes())
    expires = security(envelope).find(f"{{{WSU}}}Timestamp/{{{WSU}}}Expires")
    assert expires is not None
    expires.text = "2026-03-02T23:59:59.000Z"
    assert refusal_of(envelope) == Refusal.ALTERED
    with pytest.raises(WsSecurityError, match="the Timestamp was changed after signing"):
        verify(envelope, [EMPLOYER.certificate], NOW)


def test_a_signature_made_with_another_key_is_refused() -> None:
    """The employer's certificate in the token, the signature made with someone else's key."""
    envelope = received(signed_bytes(OTHER))
    token = security(envelope).find(f"{{{WSSE}}}BinarySecurityToken")
    assert token is not None
    der = EMPLOYER.certificate.public_bytes(serialization.Encoding.DER)
    token.text = base64.b64encode(der).decode()
    assert refusal_of(envelope) == Refusal.BAD_SIGNATURE


def test_a_certificate_not_registered_is_refused() -> None:
    envelope = received(signed_bytes(OTHER))
    assert refusal_of(envelope, [EMPLOYER.certificate]) == Refusal.UNTRUSTED_CERTIFICATE


def test_a_registered_certificate_out_of_its_validity_is_refused() -> None:
    envelope = received(signed_bytes(LAPSED))
    assert refusal_of(envelope, [LAPSED.certificate]) == Refusal.CERTIFICATE_NOT_VALID


@pytest.mark.parametrize(
    ("signed_at", "refusal"),
    [
        (NOW - TIMESTAMP_LIFETIME - timedelta(seconds=1), Refusal.TIMESTAMP_EXPIRED),
        (NOW - TIMESTAMP_LIFETIME, Refusal.TIMESTAMP_EXPIRED),
        (NOW - TIMESTAMP_LIFETIME + timedelta(seconds=1), None),
        (NOW + MAX_CLOCK_SKEW, None),
        (NOW + MAX_CLOCK_SKEW + timedelta(seconds=1), Refusal.TIMESTAMP_IN_FUTURE),
        (NOW + timedelta(hours=2), Refusal.TIMESTAMP_IN_FUTURE),
    ],
)
def test_the_timestamp_must_be_fresh(signed_at: datetime, refusal: Refusal | None) -> None:
    envelope = received(signed_bytes(at=signed_at))
    if refusal is None:
        assert verify(envelope, [EMPLOYER.certificate], NOW).created == signed_at
    else:
        assert refusal_of(envelope) == refusal


def test_a_request_without_security_header_is_refused() -> None:
    envelope = received(envelope_bytes(build_envelope(register_presences())))
    assert refusal_of(envelope) == Refusal.NO_SECURITY_HEADER


def test_a_signed_body_moved_aside_and_replaced_is_refused() -> None:
    """Signature wrapping: the signed Body goes into a header, another takes its place."""
    envelope = received(signed_bytes())
    signed_body = body(envelope)
    wrapper = etree.SubElement(envelope[0], "{urn:attacker}Wrapper")
    forged = copy.deepcopy(signed_body)
    del forged.attrib[ID]
    inss(forged).text = "90010100123"
    envelope.replace(signed_body, forged)
    wrapper.append(signed_body)
    assert refusal_of(envelope) == Refusal.BODY_NOT_SIGNED


def test_a_replacement_body_that_copies_the_signed_id_is_refused() -> None:
    envelope = received(signed_bytes())
    signed_body = body(envelope)
    forged = copy.deepcopy(signed_body)
    inss(forged).text = "90010100123"
    envelope.replace(signed_body, forged)
    etree.SubElement(envelope[0], "{urn:attacker}Wrapper").append(signed_body)
    assert refusal_of(envelope) == Refusal.DUPLICATE_ID


def test_a_signature_that_leaves_the_timestamp_out_is_refused() -> None:
    envelope = received(signed_bytes())
    header = security(envelope)
    old = header.find(f"{{{DS}}}Signature")
    token = header.find(f"{{{WSSE}}}BinarySecurityToken")
    key_info = None if old is None else old.find(f"{{{DS}}}KeyInfo")
    assert old is not None and token is not None and key_info is not None
    signer = XMLSigner(
        method=SignatureConstructionMethod.detached,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    uris = [f"#{body(envelope).get(ID)}", f"#{token.get(ID)}"]
    new = signer.sign(envelope, key=EMPLOYER.key, reference_uri=uris, key_info=key_info)
    header.replace(old, new)
    assert refusal_of(received(envelope_bytes(envelope))) == Refusal.TIMESTAMP_NOT_SIGNED


@pytest.mark.parametrize(
    "damage",
    [
        lambda header: header.remove(header[0]),  # no Timestamp
        lambda header: header.append(copy.deepcopy(header[1])),  # two tokens
        lambda header: header[1].set("ValueType", "urn:other"),
        lambda header: setattr(header[1], "text", "not base64 at all!"),
        lambda header: header[2].find(f"{{{DS}}}KeyInfo").clear(),
    ],
    ids=["no-timestamp", "two-tokens", "token-type", "token-garbage", "no-token-reference"],
)
def test_a_malformed_security_header_is_refused(
    damage: Callable[[etree._Element], object],
) -> None:
    envelope = received(signed_bytes())
    damage(security(envelope))
    assert refusal_of(envelope) in {Refusal.MALFORMED, Refusal.DUPLICATE_ID}


def test_removing_any_one_element_of_the_header_is_a_refusal_never_a_crash() -> None:
    count = len(list(security(received(signed_bytes())).iter(etree.Element)))
    assert 15 < count < 40
    for index in range(1, count):  # every element below wsse:Security, one at a time
        envelope = received(signed_bytes())
        element = list(security(envelope).iter(etree.Element))[index]
        parent = element.getparent()
        assert parent is not None
        parent.remove(element)
        with pytest.raises(WsSecurityError):
            verify(envelope, [EMPLOYER.certificate], NOW)


# --- reading envelopes -------------------------------------------------------------------------


def test_a_fault_is_read_with_its_code_string_and_detail() -> None:
    detail = etree.fromstring(
        b'<SystemError xmlns="http://socialsecurity.be/errors/v1"><Id>x</Id>'
        b"<Code>SOA-01001</Code><Message>Service call not authenticated</Message></SystemError>"
    )
    fault = SoapFault("soapenv:Client", "Service call\n  not authenticated", detail=detail)
    message = read_envelope(envelope_bytes(fault_envelope(fault)))
    assert message.content is None and message.fault is not None
    assert message.fault.code_name == "Client"
    assert message.fault.string == "Service call not authenticated"
    assert message.fault.service_code == "SOA-01001"


def test_an_odd_but_readable_fault_is_read_liberally() -> None:
    data = (
        b"<S:Envelope xmlns:S='" + SOAP_ENV.encode() + b"'><S:Body><!-- why -->"
        b"<S:Fault><S:faultcode>S:Server</S:faultcode><extra/></S:Fault></S:Body></S:Envelope>"
    )
    fault = read_envelope(data).fault
    assert fault == SoapFault(code="S:Server", string="")
    assert fault.service_code is None


def test_the_body_content_is_read_past_comments() -> None:
    data = (
        b"<?xml version='1.0'?><e:Envelope xmlns:e='" + SOAP_ENV.encode() + b"'><e:Header/>"
        b"<e:Body><!-- note --><r:RegisterPresencesResponse xmlns:r='" + PR.encode() + b"'/>"
        b"</e:Body></e:Envelope>"
    )
    message = read_envelope(data)
    assert message.fault is None and message.content is not None
    assert etree.QName(message.content).localname == "RegisterPresencesResponse"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"<html><body>502 Bad Gateway</body></html>", "not a SOAP 1.1 envelope"),
        (b'{"error": "json"}', "not XML"),
        (b"<e:Envelope xmlns:e='" + SOAP_ENV.encode() + b"'><e:Body>", "not XML"),
        (
            b"<!DOCTYPE e [<!ENTITY x 'y'>]><e:Envelope xmlns:e='" + SOAP_ENV.encode() + b"'>"
            b"<e:Body><a>&x;</a></e:Body></e:Envelope>",
            "document type declaration",
        ),
        (
            b"<e:Envelope xmlns:e='http://www.w3.org/2003/05/soap-envelope'><e:Body/></e:Envelope>",
            "SOAP 1.2",
        ),
        (b"<e:Envelope xmlns:e='" + SOAP_ENV.encode() + b"'/>", "no Body"),
        (
            b"<e:Envelope xmlns:e='" + SOAP_ENV.encode() + b"'><e:Body> </e:Body></e:Envelope>",
            "empty",
        ),
        (
            b"<e:Envelope xmlns:e='" + SOAP_ENV.encode() + b"'><e:Body><a/></e:Body>"
            b"<e:Body><b/></e:Body></e:Envelope>",
            "2 SOAP Body elements",
        ),
        (b"\xff\xfe<\x00", "not XML"),
        (b"<a>" * 5000 + b"</a>" * 5000, "not XML"),  # deeper than the parser's limit
    ],
)
def test_an_unreadable_answer_is_one_error_with_a_one_line_reason(data: bytes, reason: str) -> None:
    with pytest.raises(SoapEnvelopeError, match=reason) as caught:
        read_envelope(data)
    assert "\n" not in str(caught.value)


def test_each_operation_has_the_wsdls_soap_action() -> None:
    headers = http_headers(Operation.REGISTER_PRESENCES)
    assert headers == {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": '"http://socialsecurity.be/presenceregistration/v1/registerPresences"',
    }


# --- the employer's certificate file -----------------------------------------------------------


def cert_pem(party: Party) -> bytes:
    return party.certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(party: Party) -> bytes:
    return party.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_a_certificate_file_is_loaded_whatever_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "employer.crt"
    path.write_bytes(cert_pem(EMPLOYER))
    path.chmod(0o644)
    assert load_certificate(path) == EMPLOYER.certificate


@pytest.mark.parametrize(
    ("content", "mode", "reason"),
    [
        (b"", 0o644, "no PEM certificate"),
        (key_pem(EMPLOYER), 0o600, "no PEM certificate"),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            0o644,
            "not a readable",
        ),
        (key_pem(EMPLOYER) + cert_pem(EMPLOYER), 0o644, "readable by others"),
    ],
    ids=["empty", "a-key", "garbage", "key-beside-it-exposed"],
)
def test_a_bad_certificate_file_is_one_line_naming_it(
    tmp_path: Path, content: bytes, mode: int, reason: str
) -> None:
    path = tmp_path / "employer.pem"
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(CredentialError, match=reason) as caught:
        load_certificate(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_certificate_beside_its_key_in_a_private_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "employer.pem"
    path.write_bytes(key_pem(EMPLOYER) + cert_pem(EMPLOYER))
    path.chmod(0o600)
    assert load_certificate(path) == EMPLOYER.certificate


def test_a_missing_certificate_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="cannot open the certificate"):
        load_certificate(tmp_path / "absent.crt")


def write_pair(tmp_path: Path, key_of: Party, certificate_of: Party) -> tuple[Path, Path]:
    key_file, certificate_file = tmp_path / "employer.key", tmp_path / "employer.crt"
    key_file.write_bytes(key_pem(key_of))
    key_file.chmod(0o600)
    certificate_file.write_bytes(cert_pem(certificate_of))
    return key_file, certificate_file


def test_the_signing_identity_is_a_key_and_its_certificate(tmp_path: Path) -> None:
    identity = load_identity(*write_pair(tmp_path, EMPLOYER, EMPLOYER), NOW)
    assert identity.certificate == EMPLOYER.certificate
    signed = sign(build_envelope(register_presences()), identity.key, identity.certificate, NOW)
    assert verify(received(envelope_bytes(signed)), [EMPLOYER.certificate], NOW)


@pytest.mark.parametrize(
    ("certificate_of", "reason"),
    [(OTHER, "not .*employer.key's certificate"), (LAPSED, "valid from .* not now")],
    ids=["another-certificate", "lapsed"],
)
def test_an_identity_that_cannot_sign_is_refused_at_loading(
    tmp_path: Path, certificate_of: Party, reason: str
) -> None:
    key_of = LAPSED if certificate_of is LAPSED else EMPLOYER
    with pytest.raises(CredentialError, match=reason) as caught:
        load_identity(*write_pair(tmp_path, key_of, certificate_of), NOW)
    assert "employer.crt" in str(caught.value) and "\n" not in str(caught.value)
