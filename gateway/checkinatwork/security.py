"""WS-Security for PresenceRegistration v1: the box signs each request with the employer's
X.509 certificate (`sign`); the simulator checks it (`verify`).

The specification (PresenceRegistration 1.11, §4.2.1 "Security", PDF page 9) lists X.509 Token
Profile and SAML endpoints; the box has the employer's certificate, so it speaks the
"X.509 Token Profile (SHA-256)" one (PresenceRegistrationVarC_v1.wsdl, also published as
PresenceRegistration-X509Sha256_v1.wsdl). That WSDL is not among the published files; the
one we hold (PresenceRegistration_v1.wsdl, SAML holder-of-key) has the policy `SAML_HOK`,
attached to each operation's input only (answers are not signed: TLS protects them): an
asymmetric binding with `sp:IncludeTimestamp`, `sp:ProtectTokens`,
`sp:OnlySignEntireHeadersAndBody`, `sp:SignedParts/sp:Body`, the algorithm suite
`sp:Basic256Sha256` and the `sp:Lax` layout. We apply it with the employer's X.509
certificate as the initiator's token. So a signed request carries, in one `wsse:Security`
header (mustUnderstand): a `wsu:Timestamp` (Created, Expires: neither the specification nor
the policy gives a lifetime, we use 5 minutes), a `wsse:BinarySecurityToken` holding the
certificate (X509v3, Base64Binary), and a `ds:Signature` (exclusive C14N, RSA-SHA256,
SHA-256 digests) over the Body, the Timestamp and the token, each referenced by its
`wsu:Id`, whose KeyInfo is a `wsse:SecurityTokenReference` to the token.

Canonicalisation and signatures are signxml's (pure Python on lxml and cryptography);
nothing here canonicalises or signs by hand. `verify` then checks what signxml cannot know:
that the signed elements are the envelope's own Body and Timestamp (not copies moved
elsewhere: signature wrapping), that the certificate is a registered one, and that the
timestamp is fresh. Every refusal is a `WsSecurityError` whose `refusal` is a `Refusal`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.exceptions import (
    InvalidCertificate,
    InvalidDigest,
    InvalidInput,
    InvalidSignature,
    SignXMLException,
)
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from gateway.checkinatwork.envelope import SOAP_ENV
from gateway.errors import CredentialError, SoapEnvelopeError, WsSecurityError
from gateway.system.credentials import load_certificate, load_private_key

__all__ = [
    "MAX_CLOCK_SKEW",
    "TIMESTAMP_LIFETIME",
    "Refusal",
    "SigningIdentity",
    "Verified",
    "check_key_pair",
    "load_identity",
    "sign",
    "verify",
]

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64_BINARY = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)

TIMESTAMP_LIFETIME = timedelta(minutes=5)
MAX_CLOCK_SKEW = timedelta(minutes=5)

_ID = f"{{{WSU}}}Id"
_ID_NAMES = frozenset({"Id", "ID", "id"})  # what signxml resolves a "#..." reference by
_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
_SIGNATURE = SignatureMethod.RSA_SHA256
_DIGEST = DigestAlgorithm.SHA256
_REFERENCE_URI = re.compile(r"\((#[^)]*)\)")


class Refusal(StrEnum):
    """Why a WS-Security header was refused: for the caller, each is the specification's
    SOA-01001 "Service call not authenticated" (§7.1, p. 33)."""

    NO_SECURITY_HEADER = "no-security-header"
    MALFORMED = "malformed-security-header"
    DUPLICATE_ID = "duplicate-id"
    UNTRUSTED_CERTIFICATE = "untrusted-certificate"
    CERTIFICATE_NOT_VALID = "certificate-not-valid"
    ALGORITHM = "algorithm-not-allowed"
    BAD_SIGNATURE = "bad-signature"
    ALTERED = "altered-after-signing"
    BODY_NOT_SIGNED = "body-not-signed"
    TIMESTAMP_NOT_SIGNED = "timestamp-not-signed"
    TIMESTAMP_EXPIRED = "timestamp-expired"
    TIMESTAMP_IN_FUTURE = "timestamp-in-future"


@dataclass(frozen=True)
class Verified:
    """A request whose signature holds: who signed it, when, and the Body it covers."""

    certificate: x509.Certificate
    created: datetime
    expires: datetime
    body: etree._Element


@dataclass(frozen=True)
class _Parts:
    body: etree._Element
    security: etree._Element
    timestamp: etree._Element
    token: etree._Element
    signature: etree._Element


# --- signing, on the box ---------------------------------------------------------------------


@dataclass(frozen=True)
class SigningIdentity:
    """The employer's private key and the certificate registered for it at the ONSS."""

    key: RSAPrivateKey
    certificate: x509.Certificate


def load_identity(key_file: Path, certificate_file: Path, now: datetime) -> SigningIdentity:
    """Both files, by gateway.system.credentials' rules (the key 0600, one-line errors), and
    a CredentialError when they are no pair or the certificate is not valid `now`: every
    request would be refused, so it is said once, at start-up and by `config check`."""
    key, certificate = load_private_key(key_file), load_certificate(certificate_file)
    try:
        check_key_pair(key, certificate)
    except CredentialError as error:
        raise CredentialError(f"{certificate_file}: not {key_file}'s certificate") from error
    invalid = not_valid_now(certificate, now)
    if invalid is not None:
        raise CredentialError(f"{certificate_file}: {invalid}")
    return SigningIdentity(key, certificate)


def not_valid_now(certificate: x509.Certificate, now: datetime) -> str | None:
    """Why the certificate is not valid `now` (the service refuses whatever it signs), or
    None when it is."""
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if start <= _utc(now) <= end:
        return None
    return f"valid from {_xsd_time(start)} to {_xsd_time(end)}, not now ({_xsd_time(_utc(now))})"


def check_key_pair(key: RSAPrivateKey, certificate: x509.Certificate) -> None:
    """CredentialError unless the certificate is the key's (a mismatch the ONSS would refuse
    on every request: better said once, at start-up, in one line)."""
    if certificate.public_key() != key.public_key():
        subject = certificate.subject.rfc4514_string()
        raise CredentialError(
            f"the certificate ({subject}) is not the private key's: its public key differs"
        )


def sign(
    envelope: etree._Element,
    key: RSAPrivateKey,
    certificate: x509.Certificate,
    now: datetime,
    lifetime: timedelta = TIMESTAMP_LIFETIME,
) -> etree._Element:
    """A signed copy of `envelope` (left as it was), its Timestamp made at `now`."""
    check_key_pair(key, certificate)
    signed = _with_wss_namespaces(envelope)
    header, body = _header(signed), _child(signed, "Body")
    if body is None:
        raise SoapEnvelopeError("cannot sign an envelope without a Body")
    if header.find(f"{{{WSSE}}}Security") is not None:
        raise SoapEnvelopeError("the envelope is already signed (it has a wsse:Security header)")
    body.set(_ID, _new_id("Body"))
    security = etree.SubElement(header, f"{{{WSSE}}}Security")
    security.set(f"{{{SOAP_ENV}}}mustUnderstand", "1")
    timestamp = _timestamp(security, _utc(now), lifetime)
    token = _binary_token(security, certificate)
    signer = XMLSigner(
        method=SignatureConstructionMethod.detached,
        signature_algorithm=_SIGNATURE,
        digest_algorithm=_DIGEST,
        c14n_algorithm=_C14N,
    )
    uris = [f"#{element.get(_ID)}" for element in (body, timestamp, token)]
    signature = signer.sign(
        signed, key=key, reference_uri=uris, key_info=_key_info(str(token.get(_ID)))
    )
    security.append(signature)
    return signed


def _with_wss_namespaces(envelope: etree._Element) -> etree._Element:
    """A copy whose root declares wsse and wsu, so that every wsu:Id reads as such."""
    source = copy.deepcopy(envelope)
    nsmap = {**source.nsmap, "wsse": WSSE, "wsu": WSU}
    root = etree.Element(source.tag, attrib=dict(source.attrib), nsmap=nsmap)
    for child in list(source):
        root.append(child)
    return root


def _header(envelope: etree._Element) -> etree._Element:
    header = _child(envelope, "Header")
    if header is None:
        header = etree.Element(f"{{{SOAP_ENV}}}Header")
        envelope.insert(0, header)
    return header


def _timestamp(security: etree._Element, now: datetime, lifetime: timedelta) -> etree._Element:
    timestamp = etree.SubElement(security, f"{{{WSU}}}Timestamp", {_ID: _new_id("TS")})
    etree.SubElement(timestamp, f"{{{WSU}}}Created").text = _xsd_time(now)
    etree.SubElement(timestamp, f"{{{WSU}}}Expires").text = _xsd_time(now + lifetime)
    return timestamp


def _binary_token(security: etree._Element, certificate: x509.Certificate) -> etree._Element:
    attributes = {"EncodingType": BASE64_BINARY, "ValueType": X509V3, _ID: _new_id("X509")}
    token = etree.SubElement(security, f"{{{WSSE}}}BinarySecurityToken", attributes)
    token.text = base64.b64encode(certificate.public_bytes(Encoding.DER)).decode("ascii")
    return token


def _key_info(token_id: str) -> etree._Element:
    key_info = etree.Element(f"{{{DS}}}KeyInfo", nsmap={"ds": DS})
    reference = etree.SubElement(
        etree.SubElement(key_info, f"{{{WSSE}}}SecurityTokenReference", nsmap={"wsse": WSSE}),
        f"{{{WSSE}}}Reference",
    )
    reference.set("URI", f"#{token_id}")
    reference.set("ValueType", X509V3)
    return key_info


def _new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def _xsd_time(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a WS-Security time must be timezone-aware")
    return moment.astimezone(UTC)


# --- verifying, on the simulator -------------------------------------------------------------


def verify(
    envelope: etree._Element,
    trusted_certificates: Sequence[x509.Certificate],
    now: datetime,
    max_skew: timedelta = MAX_CLOCK_SKEW,
) -> Verified:
    """The signer and the signed Body of a request, or WsSecurityError saying which check
    refused it: the header's shape, unique ids, a registered and valid certificate, the
    signature, its coverage of the Body and the Timestamp, then the Timestamp's freshness."""
    now = _utc(now)
    parts = _security_parts(envelope)
    _check_unique_ids(envelope)
    certificate = _token_certificate(parts.token)
    _check_key_reference(parts.signature, parts.token)
    _check_trusted(certificate, trusted_certificates)
    _check_validity(certificate, now)
    signed = _verify_signature(envelope, certificate, now, parts)
    _check_covered(signed, parts.body, Refusal.BODY_NOT_SIGNED, "the envelope's Body")
    _check_covered(signed, parts.timestamp, Refusal.TIMESTAMP_NOT_SIGNED, "the Timestamp")
    created, expires = _check_fresh(parts.timestamp, now, max_skew)
    return Verified(certificate, created, expires, parts.body)


def _security_parts(envelope: etree._Element) -> _Parts:
    header, body = _child(envelope, "Header"), _child(envelope, "Body")
    if body is None:
        raise WsSecurityError(Refusal.MALFORMED, "the envelope has no Body")
    headers = [] if header is None else header.findall(f"{{{WSSE}}}Security")
    if not headers:
        raise WsSecurityError(Refusal.NO_SECURITY_HEADER, "the request has no wsse:Security header")
    if len(headers) > 1:
        raise WsSecurityError(
            Refusal.MALFORMED, f"{len(headers)} wsse:Security headers, one expected"
        )
    security = headers[0]
    return _Parts(
        body=body,
        security=security,
        timestamp=_one(security, f"{{{WSU}}}Timestamp", "wsu:Timestamp"),
        token=_one(security, f"{{{WSSE}}}BinarySecurityToken", "wsse:BinarySecurityToken"),
        signature=_one(security, f"{{{DS}}}Signature", "ds:Signature"),
    )


def _one(security: etree._Element, tag: str, name: str) -> etree._Element:
    found = security.findall(tag)
    if len(found) != 1:
        raise WsSecurityError(
            Refusal.MALFORMED, f"{len(found)} {name} in the Security header, exactly one expected"
        )
    return found[0]


def _check_unique_ids(envelope: etree._Element) -> None:
    seen: set[str] = set()
    for element in envelope.iter(etree.Element):  # elements only, not comments
        for name, value in element.attrib.items():
            if etree.QName(name).localname not in _ID_NAMES:
                continue
            if value in seen:
                raise WsSecurityError(
                    Refusal.DUPLICATE_ID,
                    f"two elements carry the id {value!r}: a signature-wrapping attempt",
                )
            seen.add(value)


def _token_certificate(token: etree._Element) -> x509.Certificate:
    if token.get("ValueType") != X509V3:
        value_type = token.get("ValueType")
        raise WsSecurityError(
            Refusal.MALFORMED, f"the token's ValueType is not X509v3: {value_type!r}"
        )
    if token.get("EncodingType", BASE64_BINARY) != BASE64_BINARY:
        raise WsSecurityError(Refusal.MALFORMED, "the token's EncodingType is not Base64Binary")
    try:
        der = base64.b64decode("".join((token.text or "").split()), validate=True)
        return x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as error:
        raise WsSecurityError(
            Refusal.MALFORMED,
            f"the BinarySecurityToken is not an X.509 certificate: {_first_line(error)}",
        ) from error


def _check_key_reference(signature: etree._Element, token: etree._Element) -> None:
    """The signature's KeyInfo must name the token whose certificate is checked."""
    path = f"{{{DS}}}KeyInfo/{{{WSSE}}}SecurityTokenReference/{{{WSSE}}}Reference"
    reference = signature.find(path)
    if reference is None:
        raise WsSecurityError(
            Refusal.MALFORMED, "the signature's KeyInfo has no SecurityTokenReference"
        )
    if reference.get("URI") != f"#{token.get(_ID)}":
        raise WsSecurityError(
            Refusal.MALFORMED,
            f"the signature's KeyInfo refers to {reference.get('URI')!r},"
            " not to the BinarySecurityToken",
        )


def _check_trusted(certificate: x509.Certificate, trusted: Sequence[x509.Certificate]) -> None:
    fingerprint = certificate.fingerprint(hashes.SHA256())
    if all(known.fingerprint(hashes.SHA256()) != fingerprint for known in trusted):
        raise WsSecurityError(
            Refusal.UNTRUSTED_CERTIFICATE,
            f"the certificate {certificate.subject.rfc4514_string()} (SHA-256 "
            f"{fingerprint.hex()[:16]}...) is not one registered for this service",
        )


def _check_validity(certificate: x509.Certificate, now: datetime) -> None:
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if not start <= now <= end:
        raise WsSecurityError(
            Refusal.CERTIFICATE_NOT_VALID,
            f"the certificate is valid from {_xsd_time(start)} to {_xsd_time(end)},"
            f" not at {_xsd_time(now)}",
        )


def _verify_signature(
    envelope: etree._Element, certificate: x509.Certificate, now: datetime, parts: _Parts
) -> list[VerifyResult]:
    config = SignatureConfiguration(
        location=f"./{{{SOAP_ENV}}}Header/{{{WSSE}}}Security/",
        expect_references=True,
        signature_methods=frozenset({_SIGNATURE}),
        digest_algorithms=frozenset({_DIGEST}),
        verification_time=now,
    )
    try:
        results = XMLVerifier().verify(envelope, x509_cert=certificate, expect_config=config)
    except InvalidDigest as error:
        raise WsSecurityError(Refusal.ALTERED, _altered(str(error), parts)) from error
    except InvalidCertificate as error:
        raise WsSecurityError(Refusal.CERTIFICATE_NOT_VALID, _first_line(error)) from error
    except InvalidSignature as error:
        raise WsSecurityError(
            Refusal.BAD_SIGNATURE,
            "the signature does not verify with the certificate's key (another key,"
            " or SignedInfo changed)",
        ) from error
    except InvalidInput as error:
        refusal = Refusal.ALGORITHM if "forbidden" in str(error) else Refusal.MALFORMED
        raise WsSecurityError(refusal, _first_line(error)) from error
    except (SignXMLException, etree.LxmlError, ValueError, TypeError, AttributeError) as error:
        raise WsSecurityError(
            Refusal.MALFORMED, f"unreadable signature: {_first_line(error)}"
        ) from error
    return results if isinstance(results, list) else [results]


def _altered(message: str, parts: _Parts) -> str:
    found = _REFERENCE_URI.search(message)
    uri = found.group(1) if found else ""
    names = {
        f"#{parts.body.get(_ID)}": "the Body",
        f"#{parts.timestamp.get(_ID)}": "the Timestamp",
        f"#{parts.token.get(_ID)}": "the BinarySecurityToken",
    }
    part = names.get(uri, f"the signed part {uri or '(unknown)'}")
    return f"{part} was changed after signing (its digest does not match)"


def _check_covered(
    results: list[VerifyResult], element: etree._Element, refusal: Refusal, name: str
) -> None:
    """What was signed must be this very element, byte for byte once canonicalised."""
    standalone = etree.fromstring(etree.tostring(element))
    canonical = etree.tostring(standalone, method="c14n", exclusive=True, with_comments=False)
    if all(result.signed_data != canonical for result in results):
        raise WsSecurityError(refusal, f"the signature does not cover {name}")


def _check_fresh(
    timestamp: etree._Element, now: datetime, max_skew: timedelta
) -> tuple[datetime, datetime]:
    created, expires = _time(timestamp, "Created"), _time(timestamp, "Expires")
    if expires <= created:
        raise WsSecurityError(Refusal.MALFORMED, "the Timestamp expires before it was created")
    if created > now + max_skew:
        raise WsSecurityError(
            Refusal.TIMESTAMP_IN_FUTURE,
            f"created at {_xsd_time(created)}, {_seconds(created - now)} s ahead of"
            f" {_xsd_time(now)} (at most {_seconds(max_skew)} s of clock skew accepted)",
        )
    if now >= expires:
        raise WsSecurityError(
            Refusal.TIMESTAMP_EXPIRED,
            f"expired at {_xsd_time(expires)}, {_seconds(now - expires)} s before {_xsd_time(now)}",
        )
    return created, expires


def _time(timestamp: etree._Element, name: str) -> datetime:
    element = timestamp.find(f"{{{WSU}}}{name}")
    text = "" if element is None else (element.text or "").strip()
    if not text:
        raise WsSecurityError(Refusal.MALFORMED, f"the Timestamp has no {name}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise WsSecurityError(
            Refusal.MALFORMED, f"the Timestamp's {name} {text!r} is no time"
        ) from error
    if moment.tzinfo is None:
        raise WsSecurityError(
            Refusal.MALFORMED, f"the Timestamp's {name} {text!r} has no time zone"
        )
    return moment.astimezone(UTC)


def _seconds(delta: timedelta) -> int:
    return int(delta.total_seconds())


def _child(envelope: etree._Element, name: str) -> etree._Element | None:
    return envelope.find(f"{{{SOAP_ENV}}}{name}")


def _first_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]
