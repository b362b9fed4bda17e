"""Every error code and validation remark of PresenceRegistration 1.11, classified.

Page numbers are the specification's own ("N / 33" at the foot of each page of
PresenceRegistration_v1.pdf):
- registerPresences' business error codes 2-6, §5.1.3, p. 12;
- cancelPresences' business error codes 1 and 7-11, §5.2.3, p. 14 (the box never cancels,
  but an answer carrying one is still read);
- searchPresences and getPresenceRegistration: "Not applicable", §5.3.3 p. 15, §5.4.3 p. 16;
- the system error codes SOA-nnnnn, carried by SOAP faults, §7.1, p. 33 ("7.2 Business
  error codes: Not applicable. The errors codes are specified for a given operation");
- the remarks a later validation may attach to a registration that was accepted
  (SearchRemarkType, §6.1.40, pp. 28-29; also an enumeration in the types XSD).

Each code falls in one `CodeClass`: what the sender does about it. Unknown codes are
classified by `classify`; docs/checkinatwork.md, "Error classes", says why.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class CodeClass(enum.StrEnum):
    # The item as sent will never be accepted: rejected, never resent by itself.
    PERMANENT = "permanent"
    # The service or the network: send again later, with backoff.
    RETRY = "retry"
    # Our certificate, authorisation or endpoint: the same for every item; stop sending,
    # keep storing taps, and tell the employer.
    CONFIGURATION = "configuration"


class CodeScope(enum.StrEnum):
    """Where the specification lists a code."""

    REGISTER = "registerPresences"
    CANCEL = "cancelPresences"
    SYSTEM = "system"  # §7.1: carried by a SOAP fault, whatever the operation


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    text: str  # the specification's description, as printed
    kind: CodeClass
    scope: CodeScope
    page: int  # where the specification lists it


def _code(code: str, kind: CodeClass, scope: CodeScope, page: int, text: str) -> Code:
    return Code(code, text, kind, scope, page)


_P, _R, _C = CodeClass.PERMANENT, CodeClass.RETRY, CodeClass.CONFIGURATION
_REG, _CAN, _SYS = CodeScope.REGISTER, CodeScope.CANCEL, CodeScope.SYSTEM

_ALL = (
    # §5.1.3, p. 12: the content of one item.
    _code("2", _P, _REG, 12, "Invalid companyId node content. Invalid KBO/BCE number"),
    _code("3", _P, _REG, 12, "Invalid companyId node content. Invalid KBO/BCE number"),
    _code(
        "4",
        _P,
        _REG,
        12,
        "Invalid WorkPlaceId node content. Invalid Déclaration de Travaux/Aangifte van"
        " Werken number",
    ),
    _code("5", _P, _REG, 12, "Invalid INSS node content. Invalid INSZ/INSS number"),
    _code("6", _P, _REG, 12, "Invalid registration date (only today or tomorrow are allowed)"),
    # §5.2.3, p. 14. Code 1 is our technical user's rights, not the item.
    _code("1", _C, _CAN, 14, "The user has no authorization to cancel this Presence Registration"),
    _code("7", _P, _CAN, 14, "Unknown RegistrationId"),
    _code("8", _P, _CAN, 14, "Presence registration already cancelled"),
    _code("9", _P, _CAN, 14, "Too late to cancel this presence registration"),
    _code("10", _P, _CAN, 14, "Presence registration not found"),
    _code("11", _P, _CAN, 14, "Invalid cancel reason"),
    # §7.1, p. 33: a SOAP fault for the whole call.
    _code("SOA-00001", _R, _SYS, 33, "Service error"),
    _code("SOA-01001", _C, _SYS, 33, "Service call not authenticated"),
    _code("SOA-01002", _C, _SYS, 33, "Service call not authorized"),
    # "Retries will not work. Service desk may help": a person must act, as for a
    # configuration matter; taps keep being stored meanwhile.
    _code("SOA-02001", _C, _SYS, 33, "Service not available. Please contact service desk."),
    _code("SOA-02002", _R, _SYS, 33, "Service temporarily not available. Please try later."),
    _code("SOA-03001", _P, _SYS, 33, "Malformed message"),
    # Not SOAP, no body, not WS-I or not WSDL compliant: every request of this box is so
    # (its software, or the wrong endpoint or security variant), never one item.
    _code("SOA-03002", _C, _SYS, 33, "Message must be SOAP"),
    _code("SOA-03003", _C, _SYS, 33, "Message must contain SOAP body"),
    _code("SOA-03004", _C, _SYS, 33, "WS-I compliance failure"),
    _code("SOA-03005", _C, _SYS, 33, "WSDL compliance failure"),
    # The content: some item of the batch (halve the batch to find it).
    _code("SOA-03006", _P, _SYS, 33, "XSD compliance failure"),
    _code("SOA-03007", _P, _SYS, 33, "Message content validation failure"),
)

CODES: Mapping[str, Code] = MappingProxyType({code.code: code for code in _ALL})

# The families of §7.1's codes, by their first two digits, for a code the table lacks: the
# "Cause" column (p. 33) puts 01 and 03 on the consumer, 02 on the provider.
_SYSTEM_CODE = re.compile(r"SOA-(\d{2})\d{3}")
_SYSTEM_FAMILIES: Mapping[str, CodeClass] = MappingProxyType(
    {"00": _R, "01": _C, "02": _R, "03": _P}
)


def classify(code: str) -> CodeClass:
    """The class of a code as received (surrounding spaces ignored).

    A code the table lacks: a SOA-nnnnn code takes its family's class (§7.1's numbering),
    an unknown family RETRY (nothing blames an item, and a retry with backoff loses
    nothing); any other code is an item's error the service refused it with: PERMANENT, as
    the service will answer the same content the same way. Resending it automatically would
    put one refused item in every batch; rejected, it stays in the journal with the code
    and the service's own text, for the employer to read and retry."""
    known = lookup(code)
    if known is not None:
        return known.kind
    text = code.strip()
    system = _SYSTEM_CODE.fullmatch(text.upper())
    if system is not None:
        return _SYSTEM_FAMILIES.get(system.group(1), _R)
    return _P


def lookup(code: str) -> Code | None:
    """The specification's entry for a code as received ("05" and " 5" are 5), or None."""
    text = code.strip().upper()
    return CODES.get(text) or CODES.get(text.lstrip("0") or text)


class Remark(enum.StrEnum):
    """What the ONSS's later validation may remark on an accepted registration
    (SearchRemarkType, pp. 28-29): the registration exists, with status FAILED (§6.1.46,
    p. 30: "successfully registered but the content has been validated with remarks").
    Never a reason to resend; the employer reads them. The XSD spells one with double
    spaces; `remark_of` reads any spacing."""

    RELATED_DIMONA_NOT_OK = "RELATED DIMONA NOT OK"
    INSS_NOT_FOUNDER = "GIVEN INSS IS NOT THE FOUNDER OF THE COMPANY"
    EMPLOYER_NOT_FOUNDER = "EMPLOYER IS NOT KNOWN AS COMPANY FOUNDER"
    COMPANY_DOES_NOT_EXIST = "THE COMPANY DOESN'T EXISTS"
    INDEPENDANT_NOT_FOUNDER = "INDEPENDANT IS NOT KNOWN AS COMPANY FOUNDER"
    LIMOSA_UNKNOWN = "LIMOSA ID IS NOT KNOWN"
    LIMOSA_NOT_ACTIVE = "LIMOSA ID IS NOT ACTIVE AT DATE"
    NISS_BIS_NOT_IN_LIMOSA = "NISS-BIS IS NOT KNOWN IN LIMOSA"
    NISS_BIS_NOT_ACTIVE_IN_LIMOSA = "NISS-BIS IS NOT ACTIVE AT THIS DATE IN LIMOSA"
    DECLARATION_UNKNOWN = "DUC IS NOT EXISTING"
    DECLARATION_NOT_ACTIVE = "DUC IS NOT ACTIVE AT THIS DATE"
    COMPANY_NOT_IN_DECLARATION = "COMPANY IS NOT KNOWN AS BUILDER OR SUBCONTRACTOR IN THIS DUC"
    SITE_NOT_SUBJECT = "SITE IS NOT SUBJECT TO PRESENCE REGISTRATION"
    DUPLICATE = "SAME DECLARATION HAS ALREADY BEEN REGISTERED"
    NISS_UNKNOWN = "NISS IS NOT KNOW IN THE NATIONAL REGISTER"
    EMPLOYER_NOT_ACTIVE = "EMPLOYER NOT ACTIVE"
    CONTRACT_NOT_ACTIVE = "THE COMPANY ID ASSOCIATED AT A NOT ACTIVE CONTRACT"


def remark_of(text: str) -> Remark | None:
    """The known remark a text is, whatever its spacing and case; None for another."""
    try:
        return Remark(" ".join(text.split()).upper())
    except ValueError:
        return None
