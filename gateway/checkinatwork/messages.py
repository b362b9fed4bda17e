"""The Body content of the Checkinatwork requests, and their answers read, as typed values.

PresenceRegistration 1.11 (the official specification, WSDL and XSDs in `schema/`;
docs/checkinatwork.md): `registerPresences` takes 1 to 200 `PresenceRegistrationRequest`
items (§5.1.1, p. 10) and answers each with a registration (its `PresenceRegistrationId`)
or an error list (§5.1.2, pp. 11-12); `getPresenceRegistration` gives one registration's
current validation and history by that id (§5.4, pp. 15-16).

Requests are built exactly as the XSD says and `schema_problems` checks any of them (the
simulator checks what it receives with it). Answers are read liberally: by local names, an
element we do not know is skipped, a missing optional one leaves a field empty. Whatever
keeps an answer from giving one result per item is a `PresenceAnswerError`: the caller
treats the items as unconfirmed, as the REST uplink does.

The SOAP envelope around these elements, and faults, are `envelope.py`'s.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from lxml import etree

from gateway.checkinatwork.codes import CodeClass, Remark, classify, remark_of
from gateway.errors import InvalidIdentifier, PayloadTooLargeError, PresenceAnswerError
from gateway.identifiers import mask_niss, normalise_enterprise_number, normalise_niss

NS = "http://socialsecurity.be/presenceregistration/v1"  # the operations' elements
TYPES_NS = "http://socialsecurity.be/presenceregistration/schemas/v1"  # everything inside
MAX_ITEMS = 200  # PresenceRegistrationRequest maxOccurs, §5.1.1 p. 10
REFERENCE_LENGTH = 24  # ClientReferenceType maxLength, §6.1.6 p. 18
PRESENCE_ID_DIGITS = 15  # PresenceRegistrationIdType totalDigits, §6.1.22 p. 22
# The service's "today" is Belgium's [ours: the specification names no time zone].
SERVICE_TIME_ZONE = ZoneInfo("Europe/Brussels")
SCHEMA_DIR = Path(__file__).with_name("schema")
PROTOCOL_XSD = SCHEMA_DIR / "v1" / "PresenceRegistration_protocol_v1.xsd"

_NSMAP = {"v1": NS, "v11": TYPES_NS}  # the prefixes of the specification's examples
_WORKPLACE_ID = re.compile(r"[A-Za-z0-9]{1,13}")  # WorkPlaceIdType: maxLength 13
_LIMOSA_ID = re.compile(r"[A-Za-z0-9-]{1,64}")  # LimosaIdType is any string [ours: bounded]
_NISS_RUN = re.compile(r"(?<!\d)\d{8}(\d{3})(?!\d)")  # 11 digits alone: a NISS, masked
_TEXT_CAP = 500
_EXCERPT = 200


class ValidationStatus(enum.StrEnum):
    """StatusType (§6.1.46, p. 30). An accepted registration is SUCCESSFULLY REGISTERED;
    the ONSS validates it later: VALIDATED (no remark) or FAILED (with remarks, but still
    registered)."""

    REGISTERED = "SUCCESSFULLY REGISTERED"
    CANCELLED = "SUCCESSFULLY CANCELLED"
    VALIDATED = "VALIDATED"
    FAILED = "FAILED"


# --- our registration id as ClientPresenceRegistrationReference --------------------------------


def client_reference(registration_id: uuid.UUID) -> str:
    """The registration's UUID in 22 characters (URL-safe base64 without padding): its 36-
    character text does not fit the reference's 24."""
    return base64.urlsafe_b64encode(registration_id.bytes).rstrip(b"=").decode("ascii")


def registration_id_of(reference: str) -> uuid.UUID | None:
    """The UUID a reference of ours carries; None for any other text."""
    text = reference.strip()
    if len(text) != 22:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 16 or client_reference(uuid.UUID(bytes=raw)) != text:
        return None
    return uuid.UUID(bytes=raw)


# --- the date rule ---------------------------------------------------------------------------


def service_date(moment: datetime) -> date:
    """The calendar day of an aware moment in Belgium, the day a tap registers for."""
    return moment.astimezone(SERVICE_TIME_ZONE).date()


def date_accepted(registration_date: date, today: date) -> bool:
    """Whether the service takes this RegistrationDate on `today`: only today or tomorrow
    (§5.1.3 code 6, p. 12; RegistrationDateType §6.1.29, p. 25)."""
    return today <= registration_date <= today + timedelta(days=1)


# --- the request -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresenceItem:
    """One PresenceRegistrationRequest (PresenceRegistrationSubmitType, §6.1.25, p. 23):
    who (INSS and CompanyID, or LimosaId), where (WorkPlaceId), when (RegistrationDate,
    always sent: left out, the service would take "today" as it is when it arrives), and our
    registration id as ClientPresenceRegistrationReference. Built with `for_niss` or
    `for_limosa`; a bad field is an InvalidIdentifier naming it."""

    registration_id: uuid.UUID
    workplace_id: str
    registration_date: date
    inss: str | None = field(default=None, repr=False)
    company_id: str | None = None  # the employer's 10-digit KBO/BCE number
    limosa_id: str | None = None

    def __post_init__(self) -> None:
        _check_identity(self.inss, self.company_id, self.limosa_id)
        if not _WORKPLACE_ID.fullmatch(self.workplace_id):
            raise InvalidIdentifier(f"WorkPlaceId {self.workplace_id!r}: 1 to 13 letters or digits")
        if isinstance(self.registration_date, datetime) or not isinstance(
            self.registration_date, date
        ):
            raise InvalidIdentifier(f"RegistrationDate {self.registration_date!r}: not a date")

    @classmethod
    def for_niss(
        cls, registration_id: uuid.UUID, niss: str, company_id: str, workplace_id: str, day: date
    ) -> PresenceItem:
        return cls(registration_id, workplace_id, day, inss=niss, company_id=company_id)

    @classmethod
    def for_limosa(
        cls, registration_id: uuid.UUID, limosa_id: str, workplace_id: str, day: date
    ) -> PresenceItem:
        return cls(registration_id, workplace_id, day, limosa_id=limosa_id)

    @property
    def reference(self) -> str:
        return client_reference(self.registration_id)


def _check_identity(inss: str | None, company_id: str | None, limosa_id: str | None) -> None:
    if limosa_id is not None:
        if inss is not None or company_id is not None:
            raise InvalidIdentifier("a presence item has INSS and CompanyID, or LimosaId: not both")
        if not _LIMOSA_ID.fullmatch(limosa_id):
            raise InvalidIdentifier(f"LimosaId {limosa_id!r}: 1 to 64 letters, digits or '-'")
        return
    if inss is None or company_id is None:
        raise InvalidIdentifier("a presence item has INSS and CompanyID, or LimosaId")
    _check_canonical("INSS", inss, normalise_niss, mask_niss(inss))
    _check_canonical("CompanyID", company_id, normalise_enterprise_number, company_id)


def _check_canonical(name: str, value: str, normalise: Callable[[str], str], shown: str) -> None:
    try:
        canonical = normalise(value)
    except InvalidIdentifier as error:
        raise InvalidIdentifier(f"{name} {shown}: {error}") from None
    if canonical != value:
        raise InvalidIdentifier(f"{name} {shown}: not in its canonical form {canonical!r}")


def register_presences_body(items: Sequence[PresenceItem]) -> etree._Element:
    """RegisterPresencesRequest for 1 to 200 items, in their order. More is refused before
    any XML is made (PayloadTooLargeError: the sender halves the batch); none, or one
    registration twice (its answers could not be told apart), is a ValueError."""
    if len(items) > MAX_ITEMS:
        raise PayloadTooLargeError(
            f"{len(items)} presence items: RegisterPresences takes at most {MAX_ITEMS}"
            " (PresenceRegistration 1.11, §5.1.1)"
        )
    if not items:
        raise ValueError("RegisterPresences needs at least one presence item")
    if len({item.registration_id for item in items}) != len(items):
        raise ValueError("the same registration twice in one RegisterPresences request")
    root = etree.Element(f"{{{NS}}}RegisterPresencesRequest", nsmap=_NSMAP)
    for item in items:
        _append_item(etree.SubElement(root, f"{{{NS}}}PresenceRegistrationRequest"), item)
    return root


def _append_item(parent: etree._Element, item: PresenceItem) -> None:
    """The children in the XSD's sequence order."""
    _typed(parent, "RegistrationDate", item.registration_date.isoformat())
    if item.limosa_id is not None:
        _typed(parent, "LimosaId", item.limosa_id)
    else:
        assert item.inss is not None and item.company_id is not None
        _typed(parent, "INSS", item.inss)
        # An xs:long: the specification's examples write it without the leading 0 (p. 11).
        _typed(parent, "CompanyID", str(int(item.company_id)))
    _typed(parent, "WorkPlaceId", item.workplace_id)
    _typed(parent, "ClientPresenceRegistrationReference", item.reference)


def _typed(parent: etree._Element, name: str, text: str) -> None:
    etree.SubElement(parent, f"{{{TYPES_NS}}}{name}").text = text


def get_presence_registration_body(presence_id: int) -> etree._Element:
    """GetPresenceRegistrationRequest for one PresenceRegistrationId (§5.4.1, p. 15)."""
    if not 0 < presence_id < 10**PRESENCE_ID_DIGITS:
        raise ValueError(f"a PresenceRegistrationId has 1 to 15 digits, not {presence_id}")
    root = etree.Element(f"{{{NS}}}GetPresenceRegistrationRequest", nsmap=_NSMAP)
    request = etree.SubElement(root, f"{{{NS}}}GetPresenceRegistrationRequest")
    _typed(request, "PresenceRegistrationId", str(presence_id))
    return root


# --- the schema ------------------------------------------------------------------------------

_SCHEMA_LOCK = threading.Lock()  # an XMLSchema's error log is per object: one user at a time


@cache
def _schema() -> etree.XMLSchema:
    # The protocol XSD imports the types XSD by a relative path, resolved from the files.
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(PROTOCOL_XSD), parser))


def schema_problems(element: etree._Element) -> tuple[str, ...]:
    """What the official XSD finds wrong with a Body element (a request or a response of
    any operation), one line each; () when it is valid."""
    schema = _schema()
    with _SCHEMA_LOCK:
        if schema.validate(etree.ElementTree(_detached(element))):
            return ()
        return tuple(f"{entry.path}: {entry.message}" for entry in schema.error_log)


def _detached(element: etree._Element) -> etree._Element:
    """The element as the root of a document of its own (it may sit inside an envelope)."""
    return etree.fromstring(etree.tostring(element))


# --- the answers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validation:
    """ValidationType (§6.1.51, p. 31); `at` as written (the examples carry no zone)."""

    status: str
    at: str | None = None
    remarks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Registered:
    """A registration the ONSS holds (PresenceRegistrationType, §6.1.26, p. 24), with what
    of it the box keeps. `registration_id` is ours, read back from the reference it echoes."""

    presence_id: int
    registration_id: uuid.UUID | None
    registration_date: date | None
    workplace_id: str
    created_at: str
    channel: str
    last_validation: Validation
    history: tuple[Validation, ...] = ()
    sector: int | None = None  # WorkSectorType: 1 construction, 2 security/guarding, 3 meat

    @property
    def status(self) -> str:
        return self.last_validation.status

    @property
    def remarks(self) -> tuple[str, ...]:
        return self.last_validation.remarks

    @property
    def known_remarks(self) -> tuple[Remark, ...]:
        """The remarks the specification lists (`Remark.DUPLICATE` confirms a resend)."""
        return tuple(known for known in map(remark_of, self.remarks) if known is not None)


@dataclass(frozen=True, slots=True)
class ItemError:
    code: str
    description: str

    @property
    def kind(self) -> CodeClass:
        return classify(self.code)


@dataclass(frozen=True, slots=True)
class Refused:
    """An item the ONSS did not register (RegisterPresenceRegistrationErrorType, §6.1.27)."""

    registration_id: uuid.UUID | None
    errors: tuple[ItemError, ...]

    @property
    def kind(self) -> CodeClass:
        """Configuration first (stop and tell), then permanent (resending cannot help),
        retry only when every error says so; no error at all is permanent."""
        kinds = {error.kind for error in self.errors}
        for kind in (CodeClass.CONFIGURATION, CodeClass.PERMANENT, CodeClass.RETRY):
            if kind in kinds:
                return kind
        return CodeClass.PERMANENT


ItemResult = Registered | Refused


def parse_register_response(
    content: etree._Element, items: Sequence[PresenceItem]
) -> tuple[ItemResult, ...]:
    """One result per item, in the items' order, from the Body's RegisterPresencesResponse.
    An answer echoing our references is matched by them, one without by position.
    PresenceAnswerError for anything that prevents it."""
    try:
        _expect(content, "RegisterPresencesResponse")
        entries = list(_children(content, "PresenceRegistrationResponse"))
        return _aligned([_item_result(entry) for entry in entries], items)
    except Exception as error:  # every way an answer can be odd: never a crash nor a loop
        raise _unreadable(error, content) from error


def parse_get_response(content: etree._Element) -> Registered | None:
    """The registration from the Body's GetPresenceRegistrationResponse; None when the
    answer holds none (GetPresenceRegistrationType's content is optional, §6.1.16: an id
    unknown, or not ours to see). PresenceAnswerError when it cannot be read."""
    try:
        _expect(content, "GetPresenceRegistrationResponse")
        holder = _descendant(content, "GetPresenceRegistrationType")
        if holder is None:
            raise ValueError("no GetPresenceRegistrationType")
        found = _child(holder, "PresenceRegistrationType")
        return None if found is None else _registered(found)
    except Exception as error:  # as above
        raise _unreadable(error, content) from error


def _item_result(entry: etree._Element) -> ItemResult:
    registered = _child(entry, "PresenceRegistration")
    refused = _child(entry, "PresenceRegistrationError")
    if (registered is None) == (refused is None):
        raise ValueError("an item answer that is not one of PresenceRegistration or ...Error")
    if registered is not None:
        return _registered(registered)
    assert refused is not None
    return _refused(refused)


def _registered(element: etree._Element) -> Registered:
    submitted = _child(element, "PresenceRegistrationSubmitted")
    if submitted is None:
        submitted = _child(element, "PresenceRegistrationConsultSubmitted")
    last = _child(element, "LastValidation")
    history = _child(element, "ValidationHistory")
    return Registered(
        presence_id=_presence_id(_text_of(element, "PresenceRegistrationId")),
        registration_id=_echoed_id(submitted),
        registration_date=_echoed_date(submitted),
        workplace_id=_text_of(submitted, "WorkPlaceId"),
        created_at=_text_of(element, "CreationDate"),
        channel=_text_of(element, "Channel"),
        last_validation=_validation(last) if last is not None else Validation(""),
        history=tuple(map(_validation, _children(history, "Validation"))),
        sector=_small_int(_text_of(element, "Sector")),
    )


def _refused(element: etree._Element) -> Refused:
    errors = _children(_child(element, "ErrorList"), "Error")
    return Refused(
        registration_id=_echoed_id(_child(element, "PresenceRegistrationSubmitted")),
        errors=tuple(
            ItemError(_text_of(error, "ErrorCode")[:100], _text_of(error, "ErrorDescription"))
            for error in errors
        ),
    )


def _validation(element: etree._Element) -> Validation:
    at = _text_of(element, "ValidationDate")
    remarks = _children(_child(element, "RemarkList"), "Remark")
    return Validation(
        _text_of(element, "Status")[:100], at or None, tuple(_text(r) for r in remarks)
    )


def _aligned(results: list[ItemResult], items: Sequence[PresenceItem]) -> tuple[ItemResult, ...]:
    if len(results) != len(items):
        raise ValueError(f"{len(items)} item results expected, {len(results)} found")
    index_of = {item.registration_id: index for index, item in enumerate(items)}
    placed: list[ItemResult | None] = [None] * len(items)
    echoed = [(p, r) for p, r in enumerate(results) if r.registration_id is not None]
    plain = [(p, r) for p, r in enumerate(results) if r.registration_id is None]
    for position, result in echoed + plain:
        index = position if result.registration_id is None else index_of.get(result.registration_id)
        if index is None:
            raise ValueError(f"answer {position + 1} echoes a reference not in the request")
        if placed[index] is not None:
            raise ValueError(f"two answers for item {index + 1}")
        placed[index] = result
    return tuple(result for result in placed if result is not None)


def _presence_id(text: str) -> int:
    if not text.isdigit() or len(text) > PRESENCE_ID_DIGITS or int(text) == 0:
        raise ValueError(f"a PresenceRegistrationId that is no id: {text[:40]!r}")
    return int(text)


def _echoed_id(submitted: etree._Element | None) -> uuid.UUID | None:
    return registration_id_of(_text_of(submitted, "ClientPresenceRegistrationReference"))


def _echoed_date(submitted: etree._Element | None) -> date | None:
    try:
        return date.fromisoformat(_text_of(submitted, "RegistrationDate"))
    except ValueError:
        return None


def _small_int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= 3 else None


# --- reading elements by local name ----------------------------------------------------------


def _expect(element: etree._Element, name: str) -> None:
    if _local(element) != name:
        raise ValueError(f"{name} expected, not {_local(element) or 'a non-element'}")


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _children(parent: etree._Element | None, name: str) -> Iterator[etree._Element]:
    if parent is None:
        return
    for child in parent:
        if isinstance(child.tag, str) and _local(child) == name:
            yield child


def _child(parent: etree._Element | None, name: str) -> etree._Element | None:
    return next(_children(parent, name), None)


def _descendant(parent: etree._Element, name: str) -> etree._Element | None:
    return next((e for e in parent.iter() if isinstance(e.tag, str) and _local(e) == name), None)


def _text_of(parent: etree._Element | None, name: str) -> str:
    """The named child's text; "" when there is none (read liberally)."""
    child = _child(parent, name)
    return "" if child is None else _text(child)


def _text(element: etree._Element) -> str:
    """Its text on one line, capped, any NISS in it masked (it may reach logs and evidence)."""
    return _masked(" ".join("".join(element.itertext()).split()))[:_TEXT_CAP]


def _masked(text: str) -> str:
    return _NISS_RUN.sub(lambda found: mask_niss(found.group(0)), text)


def _unreadable(error: Exception, content: etree._Element) -> PresenceAnswerError:
    if isinstance(error, PresenceAnswerError):
        return error
    raw = etree.tostring(content, encoding="unicode") if isinstance(content.tag, str) else ""
    excerpt = _masked(" ".join(raw[: _EXCERPT * 20].split()))
    shown = repr(excerpt[:_EXCERPT]) + (" …" if len(excerpt) > _EXCERPT else "")
    return PresenceAnswerError(f"{type(error).__name__}: {str(error)[:200]}; answer {shown}")
