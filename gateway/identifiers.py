"""Check and normalise the identifiers a registration carries (docs/domain.md, "What a
registration carries").

Pure functions: each takes the text as a person typed it and returns the canonical form, or
raises InvalidIdentifier whose message is a short reason fit to show that person.
"""

from __future__ import annotations

import re

from gateway.errors import InvalidIdentifier
from gateway.models import Employer, mask

_NUMBER_SEPARATORS = re.compile(r"[\s.\-]")
_UID_SEPARATORS = re.compile(r"[\s:.\-]")
_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9A-F]+")
_FOREIGN_VAT = re.compile(r"([A-Z]{2})([A-Z0-9]{2,13})")
_DECLARATION_CHARS = re.compile(r"[A-HJ-NP-Z0-9]+")

# The VAT prefixes of the other EU member states (Greece is EL, not its ISO code GR), and
# XI for Northern Ireland, whose businesses keep intra-EU VAT ids for goods.
EU_VAT_PREFIXES = frozenset(
    "AT BG CY CZ DE DK EE EL ES FI FR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK XI".split()  # noqa: SIM905
)

NISS_LENGTH = 11
ENTERPRISE_NUMBER_LENGTH = 10
DECLARATION_LENGTH = 13
UID_MIN_HEX_DIGITS = 2
UID_MAX_HEX_DIGITS = 64


def _compact(text: str, separators: re.Pattern[str] = _NUMBER_SEPARATORS) -> str:
    return separators.sub("", text)


def _mod97_check(number: str) -> int:
    return 97 - int(number) % 97


# --- NISS / INSZ and BIS -------------------------------------------------------------------


def normalise_niss(text: str) -> str:
    """The 11 digits of a NISS/INSZ or BIS number written with or without separators."""
    digits = _compact(text)
    if not _DIGITS.fullmatch(digits):
        raise InvalidIdentifier("must contain only digits")
    if len(digits) != NISS_LENGTH:
        raise InvalidIdentifier(f"must be {NISS_LENGTH} digits")
    _check_birth_date_fields(digits)
    if not _niss_check_digits_match(digits):
        raise InvalidIdentifier("bad checksum")
    return digits


def _check_birth_date_fields(digits: str) -> None:
    month, day = int(digits[2:4]), int(digits[4:6])
    # A BIS number adds 20 or 40 to the month; 0 means "unknown" for both month and day.
    birth_month = month - 40 if month >= 40 else month - 20 if month >= 20 else month
    if birth_month > 12:
        raise InvalidIdentifier("month must be 00-12 (or +20/+40 for a BIS number)")
    if day > 31:
        raise InvalidIdentifier("day must be 00-31")


def _niss_check_digits_match(digits: str) -> bool:
    first9, check = digits[:9], int(digits[9:])
    # We cannot tell the century from the number itself, so either form is accepted.
    return check in (_niss_check_digits(first9, False), _niss_check_digits(first9, True))


def _niss_check_digits(first9: str, born_2000: bool) -> int:
    return _mod97_check(("2" if born_2000 else "") + first9)


def make_niss(yymmdd: str, serial: int, born_2000: bool = False) -> str:
    """A valid NISS (or BIS, with month +20/+40) for tests and demos."""
    if not (len(yymmdd) == 6 and _DIGITS.fullmatch(yymmdd)):
        raise ValueError("yymmdd must be 6 digits")
    if not 0 <= serial <= 999:
        raise ValueError("serial must be 0-999")
    first9 = f"{yymmdd}{serial:03d}"
    return normalise_niss(f"{first9}{_niss_check_digits(first9, born_2000):02d}")


def mask_niss(niss: str) -> str:
    """All but the last 3 characters replaced by '*', for logs and error messages."""
    return mask(niss)


# --- Limosa -----------------------------------------------------------------------------

LIMOSA_MAX = 64
_LIMOSA = re.compile(r"[A-Z0-9][A-Z0-9-]*")


def normalise_limosa(text: str) -> str:
    """The number of a posted worker's Limosa declaration, as its receipt prints it:
    letters, digits and '-', at most 64 (the service's LimosaIdType is any string; these
    bounds are ours), in upper case."""
    value = text.strip().upper()
    if not value:
        raise InvalidIdentifier("is empty")
    if len(value) > LIMOSA_MAX:
        raise InvalidIdentifier(f"is longer than {LIMOSA_MAX} characters")
    if not _LIMOSA.fullmatch(value):
        raise InvalidIdentifier("only letters, digits and '-'")
    return value


# --- Employers --------------------------------------------------------------------------


def normalise_enterprise_number(text: str) -> str:
    """The 10 digits of a Belgian KBO/BCE number: dotted, spaced, 9-digit or BE-prefixed."""
    digits = _without_be_prefix(_compact(text).upper())
    if not _DIGITS.fullmatch(digits):
        raise InvalidIdentifier("must contain only digits (after an optional BE)")
    if len(digits) == ENTERPRISE_NUMBER_LENGTH - 1:
        digits = "0" + digits  # the old nine-digit form drops the leading 0
    if len(digits) != ENTERPRISE_NUMBER_LENGTH:
        raise InvalidIdentifier(f"must be {ENTERPRISE_NUMBER_LENGTH} digits")
    if digits[0] not in "01":
        raise InvalidIdentifier("must start with 0 or 1")
    if _mod97_check(digits[:8]) != int(digits[8:]):
        raise InvalidIdentifier("bad checksum")
    return digits


def _without_be_prefix(compact: str) -> str:
    return compact[2:] if compact.startswith("BE") else compact


def normalise_foreign_vat(text: str) -> str:
    """An intra-EU VAT id of a non-Belgian employer, upper-case, without separators."""
    compact = _compact(text).upper()
    match = _FOREIGN_VAT.fullmatch(compact)
    if match is None:
        raise InvalidIdentifier("must be a 2-letter country code and 2 to 13 letters or digits")
    country = match.group(1)
    if country == "BE":
        raise InvalidIdentifier("BE is Belgian: give the enterprise number")
    if country not in EU_VAT_PREFIXES:
        raise InvalidIdentifier(_not_an_eu_prefix(country))
    return compact


def _not_an_eu_prefix(country: str) -> str:
    if country == "GR":
        return "Greek VAT numbers start with EL, not GR"
    if country == "GB":
        return "GB is not in the EU: only Northern Ireland's XI numbers are intra-EU VAT ids"
    return f"{country} is not an EU VAT country prefix (EU: {' '.join(sorted(EU_VAT_PREFIXES))})"


def parse_employer(text: str) -> Employer:
    """A Belgian enterprise number (digits, optionally BE-prefixed), else a foreign VAT id."""
    compact = _compact(text).upper()
    if not compact:
        raise InvalidIdentifier("expected an enterprise number or a foreign VAT number")
    # A foreign VAT id starts with two letters, so a leading digit or BE means Belgian.
    if compact.startswith("BE") or compact[0].isdigit():
        try:
            return Employer(enterprise_number=normalise_enterprise_number(compact))
        except InvalidIdentifier as error:
            raise InvalidIdentifier(f"expected a Belgian enterprise number: {error}") from None
    try:
        return Employer(foreign_vat=normalise_foreign_vat(compact))
    except InvalidIdentifier as error:
        raise InvalidIdentifier(f"expected a foreign VAT number: {error}") from None


# --- Declaration of works and badges -----------------------------------------------------


def normalise_declaration(text: str) -> str:
    """A declaration of works number: 13 characters, letters without I and O, and digits."""
    value = text.strip().upper()
    if len(value) != DECLARATION_LENGTH:
        raise InvalidIdentifier(f"must be {DECLARATION_LENGTH} characters")
    if not _DECLARATION_CHARS.fullmatch(value):
        if "I" in value or "O" in value:
            raise InvalidIdentifier("the letters I and O are never used")
        raise InvalidIdentifier("only letters and digits")
    return value


WORKPLACE_ID_MAX = 13
_WORKPLACE_ID = re.compile(r"[A-Z0-9]+")


def normalise_workplace_id(text: str) -> str:
    """A Checkinatwork WorkPlaceId: the declaration of works (or contract) number that
    identifies the workplace, 1 to 13 letters and digits (WorkPlaceIdType), in upper case."""
    value = text.strip().upper()
    if not 1 <= len(value) <= WORKPLACE_ID_MAX:
        raise InvalidIdentifier(f"must be 1 to {WORKPLACE_ID_MAX} characters")
    if not _WORKPLACE_ID.fullmatch(value):
        raise InvalidIdentifier("only letters and digits")
    return value


def normalise_uid(text: str) -> str:
    """A badge uid as upper-case hex, whatever the case and separators (':', '-', '.', space)."""
    compact = _compact(text, _UID_SEPARATORS).upper()
    if not UID_MIN_HEX_DIGITS <= len(compact) <= UID_MAX_HEX_DIGITS:
        raise InvalidIdentifier(f"must be {UID_MIN_HEX_DIGITS} to {UID_MAX_HEX_DIGITS} hex digits")
    if not _HEX.fullmatch(compact):
        raise InvalidIdentifier("must be hexadecimal")
    return compact


READER_NAME_MAX = 64


def check_reader_name(name: str) -> str:
    """A reader's name, stored with each registration and shown at the door and in logs:
    1 to 64 printable characters (no control, escape or bidi characters), no space at
    either end."""
    if not name:
        raise InvalidIdentifier("must not be empty")
    if len(name) > READER_NAME_MAX:
        raise InvalidIdentifier(f"must be at most {READER_NAME_MAX} characters, not {len(name)}")
    if not name.isprintable() or name != name.strip():
        raise InvalidIdentifier(
            "must be printable: no control, escape or bidi characters, no space at either end"
        )
    return name


# --- the fleet's names: one MQTT topic level each (gateway.fleet.topics) ----------------------

_FLEET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TOPIC_PREFIX = re.compile(rf"{_FLEET_NAME.pattern}(/{_FLEET_NAME.pattern}){{0,3}}")
# The site's own topics, beside its boxes', and a box's leaves: a box named "status" would
# make `{prefix}/{site}/commands/status` read as a box's status to `{prefix}/+/+/status`.
SITE_TOPICS = ("badges", "commands")
BOX_TOPICS = ("availability", "status", "events", "evidence")
RESERVED_BOX_IDS = SITE_TOPICS + BOX_TOPICS


def check_fleet_name(value: str) -> str:
    """A site or box id: no MQTT wildcard or separator, nothing a shell or a file name
    minds."""
    if not _FLEET_NAME.fullmatch(value):
        raise InvalidIdentifier("1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or digit")
    return value


def check_box_id(value: str) -> str:
    check_fleet_name(value)
    if value in RESERVED_BOX_IDS:
        raise InvalidIdentifier(f"{value!r} is reserved: it names a topic")
    return value


def check_topic_prefix(value: str) -> str:
    if not _TOPIC_PREFIX.fullmatch(value):
        raise InvalidIdentifier("up to 4 levels of A-Z a-z 0-9 _ . -, separated by /")
    return value
