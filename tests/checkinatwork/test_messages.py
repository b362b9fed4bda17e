"""The Checkinatwork requests are what the official XSD accepts, and their answers, as the
specification shows them and in odd but valid shapes, are read into one result per item;
an answer that cannot be read is one PresenceAnswerError, never a crash.

The answers are written by hand from the XSD and the specification's examples (§5.1.2.1,
pp. 11-12; §5.4.2.1, p. 16), and each one meant to be valid is checked against the XSD
first, so that "odd but valid" is the schema's word, not ours.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

from gateway.checkinatwork import (
    MAX_ITEMS,
    CodeClass,
    PresenceItem,
    Refused,
    Registered,
    Remark,
    ValidationStatus,
    client_reference,
    date_accepted,
    get_presence_registration_body,
    parse_get_response,
    parse_register_response,
    register_presences_body,
    registration_id_of,
    schema_problems,
    service_date,
)
from gateway.checkinatwork.envelope import read_envelope
from gateway.checkinatwork.messages import NS, SCHEMA_DIR, TYPES_NS
from gateway.errors import (
    InvalidIdentifier,
    PayloadTooLargeError,
    PresenceAnswerError,
    UnreadableAnswerError,
)
from gateway.identifiers import make_niss
from tests.support import DECLARATION, REPO

NISS = make_niss("850730", 33)
COMPANY = "0448181966"  # the specification's example employer, with its leading 0
LIMOSA = "24910158641968060"  # the specification's example (p. 11)
TODAY = date(2026, 12, 7)
REFERENCE = REPO.parent / "shared" / "reference" / "onss-presenceregistration-soap-v1.11"
ANSWER_NS = (
    f'xmlns:ns3="{TYPES_NS}" xmlns:ns4="{NS}" xmlns="http://socialsecurity.be/errors/v1"'
    ' xmlns:ns2="http://socialsecurity.be/errors/serviceprovider/v1"'
)


def niss_item(registration_id: uuid.UUID | None = None) -> PresenceItem:
    return PresenceItem.for_niss(registration_id or uuid.uuid4(), NISS, COMPANY, DECLARATION, TODAY)


def limosa_item() -> PresenceItem:
    return PresenceItem.for_limosa(uuid.uuid4(), LIMOSA, DECLARATION, TODAY)


def text_at(element: etree._Element, path: str) -> list[str]:
    found = element.xpath(path, namespaces={"v1": NS, "t": TYPES_NS})
    assert isinstance(found, list)
    return [str(e.text) for e in found if isinstance(e, etree._Element)]


# --- requests --------------------------------------------------------------------------------


def test_a_niss_worker_and_a_limosa_worker_make_a_request_the_xsd_accepts() -> None:
    worker, posted = niss_item(), limosa_item()
    body = register_presences_body([worker, posted])

    assert schema_problems(body) == ()
    first, second = body
    assert etree.QName(body).text == f"{{{NS}}}RegisterPresencesRequest"
    assert text_at(first, "t:INSS") == [NISS]
    assert text_at(first, "t:CompanyID") == ["448181966"]  # an xs:long, as the examples
    assert text_at(first, "t:LimosaId") == []
    assert text_at(second, "t:LimosaId") == [LIMOSA]
    assert text_at(second, "t:INSS") == text_at(second, "t:CompanyID") == []
    for element, item in ((first, worker), (second, posted)):
        assert text_at(element, "t:WorkPlaceId") == [DECLARATION]
        assert text_at(element, "t:RegistrationDate") == ["2026-12-07"]
        (reference,) = text_at(element, "t:ClientPresenceRegistrationReference")
        assert registration_id_of(reference) == item.registration_id


def test_two_hundred_items_are_one_valid_request() -> None:
    items = [niss_item() if n % 2 else limosa_item() for n in range(MAX_ITEMS)]
    body = register_presences_body(items)
    assert len(body) == MAX_ITEMS
    assert schema_problems(body) == ()


def test_two_hundred_and_one_items_are_refused_before_any_xml() -> None:
    items = [niss_item() for _ in range(MAX_ITEMS + 1)]
    with pytest.raises(PayloadTooLargeError, match=r"201 presence items.*at most 200"):
        register_presences_body(items)


def test_an_empty_request_or_one_registration_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        register_presences_body([])
    item = niss_item()
    with pytest.raises(ValueError, match="twice"):
        register_presences_body([item, item])


def test_the_xsd_check_names_what_is_wrong_and_where() -> None:
    body = register_presences_body([niss_item()])
    etree.SubElement(body[0], f"{{{TYPES_NS}}}LimosaId").text = LIMOSA
    (problem,) = schema_problems(body)
    assert "PresenceRegistrationRequest" in problem and "LimosaId" in problem


def test_the_xsd_check_reads_a_body_inside_an_envelope() -> None:
    envelope = etree.Element("{http://schemas.xmlsoap.org/soap/envelope/}Envelope")
    body = etree.SubElement(envelope, "{http://schemas.xmlsoap.org/soap/envelope/}Body")
    body.append(register_presences_body([limosa_item()]))
    assert schema_problems(body[0]) == ()
    assert schema_problems(envelope) != ()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"inss": NISS, "company_id": COMPANY, "limosa_id": LIMOSA}, "not both"),
        ({"inss": NISS}, "INSS and CompanyID, or LimosaId"),
        ({"company_id": COMPANY}, "INSS and CompanyID, or LimosaId"),
        ({"inss": NISS[:-1] + "0", "company_id": COMPANY}, r"INSS \*{8}\d{2}0: bad checksum"),
        ({"inss": NISS, "company_id": "BE0448181966"}, "CompanyID BE0448181966: not in its"),
        ({"inss": NISS, "company_id": "0448181967"}, "CompanyID 0448181967: bad checksum"),
        ({"limosa_id": "2491 0158"}, "LimosaId '2491 0158'"),
        ({"limosa_id": ""}, "LimosaId ''"),
    ],
)
def test_a_bad_identity_is_refused_naming_its_field(fields: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidIdentifier, match=message):
        PresenceItem(uuid.uuid4(), DECLARATION, TODAY, **fields)


def test_a_bad_workplace_or_date_is_refused_naming_its_field() -> None:
    with pytest.raises(InvalidIdentifier, match="WorkPlaceId '1Y1002V9KLZ6ZZ'"):
        PresenceItem.for_limosa(uuid.uuid4(), LIMOSA, DECLARATION + "Z", TODAY)
    with pytest.raises(InvalidIdentifier, match="RegistrationDate"):
        PresenceItem.for_limosa(uuid.uuid4(), LIMOSA, DECLARATION, datetime.now(UTC))


def test_an_item_never_shows_its_niss() -> None:
    item = niss_item()
    assert NISS not in repr(item) and NISS not in str(item)
    with pytest.raises(InvalidIdentifier) as refused:
        PresenceItem(uuid.uuid4(), DECLARATION, TODAY, inss=NISS[:-1] + "0", company_id=COMPANY)
    assert NISS[:8] not in str(refused.value)


def test_our_registration_id_fits_the_reference_and_comes_back() -> None:
    for _ in range(50):
        registration_id = uuid.uuid4()
        reference = client_reference(registration_id)
        assert len(reference) == 22  # ClientReferenceType: at most 24
        assert registration_id_of(reference) == registration_id
        assert registration_id_of(f"  {reference}\n") == registration_id
    for other in (
        "client_reference_here",
        "Ref 1",
        "",
        "A" * 23,
        "!" * 22,
        "AAAAAAAAAAAAAAAAAAAAAB",
    ):
        assert registration_id_of(other) is None, other


def test_the_date_rule_is_today_or_tomorrow_in_belgium() -> None:
    assert date_accepted(TODAY, TODAY)
    assert date_accepted(date(2026, 12, 8), TODAY)
    assert not date_accepted(date(2026, 12, 6), TODAY)
    assert not date_accepted(date(2026, 12, 9), TODAY)
    # 23:30 UTC is already the next day in Brussels in winter (UTC+1), not yet in summer's
    # 21:30 UTC (UTC+2) .. 22:30 UTC.
    assert service_date(datetime(2026, 12, 6, 23, 30, tzinfo=UTC)) == date(2026, 12, 7)
    assert service_date(datetime(2026, 7, 6, 21, 30, tzinfo=UTC)) == date(2026, 7, 6)
    assert service_date(datetime(2026, 7, 6, 22, 30, tzinfo=UTC)) == date(2026, 7, 7)


def test_a_get_presence_registration_request_is_valid() -> None:
    body = get_presence_registration_body(47003)
    assert schema_problems(body) == ()
    assert text_at(body, "v1:GetPresenceRegistrationRequest/t:PresenceRegistrationId") == ["47003"]
    for wrong in (0, -1, 10**15):
        with pytest.raises(ValueError, match="1 to 15 digits"):
            get_presence_registration_body(wrong)


# --- answers to registerPresences ------------------------------------------------------------


def submitted(
    item: PresenceItem, tag: str = "PresenceRegistrationSubmitted", echo: bool = True
) -> str:
    who = (
        f"<ns3:LimosaId>{item.limosa_id}</ns3:LimosaId>"
        if item.limosa_id
        else f"<ns3:INSS>{item.inss}</ns3:INSS><ns3:CompanyID>448181966</ns3:CompanyID>"
    )
    reference = (
        f"<ns3:ClientPresenceRegistrationReference>{item.reference}"
        "</ns3:ClientPresenceRegistrationReference>"
        if echo
        else ""
    )
    return (
        f"<ns3:{tag}><ns3:RegistrationDate>{item.registration_date}</ns3:RegistrationDate>"
        f"{who}<ns3:WorkPlaceId>{item.workplace_id}</ns3:WorkPlaceId>{reference}</ns3:{tag}>"
    )


JUST_REGISTERED = "<ns3:Status>SUCCESSFULLY REGISTERED</ns3:Status>"


def registered(
    item: PresenceItem,
    presence_id: int,
    echo: bool = True,
    before_id: str = "",
    validation: str = JUST_REGISTERED,
    after: str = "",
) -> str:
    return (
        "<ns4:PresenceRegistrationResponse><ns3:PresenceRegistration>"
        f"{submitted(item, echo=echo)}{before_id}"
        f"<ns3:PresenceRegistrationId>{presence_id}</ns3:PresenceRegistrationId>"
        "<ns3:CreationDate>2026-12-07T06:58:12.769</ns3:CreationDate>"
        "<ns3:Channel>WS</ns3:Channel>"
        f"<ns3:LastValidation>{validation}</ns3:LastValidation>{after}"
        "</ns3:PresenceRegistration></ns4:PresenceRegistrationResponse>"
    )


def refused(item: PresenceItem, code: str, description: str) -> str:
    return (
        "<ns4:PresenceRegistrationResponse><ns3:PresenceRegistrationError>"
        f"{submitted(item)}<ns3:ErrorList><ns3:Error><ns3:ErrorCode>{code}</ns3:ErrorCode>"
        f"<ns3:ErrorDescription>{description}</ns3:ErrorDescription></ns3:Error></ns3:ErrorList>"
        "</ns3:PresenceRegistrationError></ns4:PresenceRegistrationResponse>"
    )


def answer(*entries: str, valid: bool = True) -> etree._Element:
    content = etree.fromstring(
        f"<ns4:RegisterPresencesResponse {ANSWER_NS}>{''.join(entries)}"
        "</ns4:RegisterPresencesResponse>"
    )
    assert (schema_problems(content) == ()) is valid, schema_problems(content)
    return content


def test_the_specifications_example_answer_is_read_per_item() -> None:
    worker, posted = niss_item(), limosa_item()
    results = parse_register_response(
        answer(registered(worker, 53102), registered(posted, 53103)), [worker, posted]
    )
    assert all(isinstance(result, Registered) for result in results)
    first, second = results
    assert isinstance(first, Registered) and isinstance(second, Registered)
    assert (first.presence_id, second.presence_id) == (53102, 53103)
    assert first.registration_id == worker.registration_id
    assert first.status == ValidationStatus.REGISTERED
    assert first.registration_date == TODAY
    assert first.workplace_id == DECLARATION
    assert (first.created_at, first.channel, first.remarks) == ("2026-12-07T06:58:12.769", "WS", ())


def test_a_refused_item_carries_its_codes_their_class_and_no_niss() -> None:
    worker, posted = niss_item(), limosa_item()
    content = answer(
        refused(worker, "5", f"Invalid INSS node content. Invalid INSZ/INSS number {NISS}"),
        registered(posted, 60247),
    )
    first, second = parse_register_response(content, [worker, posted])
    assert isinstance(first, Refused) and isinstance(second, Registered)
    assert first.registration_id == worker.registration_id
    (error,) = first.errors
    assert error.code == "5" and error.kind is CodeClass.PERMANENT
    assert error.description.endswith("number ********" + NISS[-3:])
    assert first.kind is CodeClass.PERMANENT


def test_answers_in_another_order_are_matched_by_our_references() -> None:
    items = [niss_item(), limosa_item(), niss_item()]
    content = answer(
        registered(items[2], 3),
        refused(items[0], "6", "Invalid registration date"),
        registered(items[1], 2),
    )
    results = parse_register_response(content, items)
    assert isinstance(results[0], Refused)
    assert [r.presence_id for r in results[1:] if isinstance(r, Registered)] == [2, 3]


def test_answers_without_our_references_are_matched_by_position() -> None:
    items = [niss_item(), limosa_item()]
    content = answer(registered(items[0], 11, echo=False), registered(items[1], 12, echo=False))
    results = parse_register_response(content, items)
    assert [(r.presence_id, r.registration_id) for r in results if isinstance(r, Registered)] == [
        (11, None),
        (12, None),
    ]


def test_odd_but_valid_answers_are_read() -> None:
    item = limosa_item()
    validation = (
        "<ns3:Status>FAILED</ns3:Status>"
        "<ns3:ValidationDate>2026-12-07T06:58:14.098</ns3:ValidationDate>"
        "<ns3:RemarkList><ns3:Remark>LIMOSA ID IS NOT\n   ACTIVE AT DATE</ns3:Remark>"
        "<ns3:Remark>SAME DECLARATION HAS ALREADY BEEN REGISTERED</ns3:Remark></ns3:RemarkList>"
    )
    history = (
        "<!-- a comment --><ns3:ValidationHistory>"
        f"<ns3:Validation>{JUST_REGISTERED}</ns3:Validation>"
        "<ns3:Validation><ns3:Status>FAILED</ns3:Status></ns3:Validation>"
        "</ns3:ValidationHistory>"
        "<ns3:Sender><ns3:SenderId>0206731645</ns3:SenderId></ns3:Sender>"
    )
    sector = "<ns3:Sector>1</ns3:Sector>"  # before the id, as the XSD orders it
    entry = registered(
        item, 900000000000001, before_id=sector, validation=validation, after=history
    ).replace("PresenceRegistrationSubmitted", "PresenceRegistrationConsultSubmitted")
    (result,) = parse_register_response(answer(entry), [item])
    assert isinstance(result, Registered)
    assert result.presence_id == 900000000000001
    assert result.registration_id == item.registration_id  # echoed in ConsultSubmitted
    assert result.sector == 1
    assert result.status == ValidationStatus.FAILED
    assert result.last_validation.at == "2026-12-07T06:58:14.098"
    assert result.remarks == (
        "LIMOSA ID IS NOT ACTIVE AT DATE",
        "SAME DECLARATION HAS ALREADY BEEN REGISTERED",
    )
    assert result.known_remarks == (Remark.LIMOSA_NOT_ACTIVE, Remark.DUPLICATE)
    assert [v.status for v in result.history] == ["SUCCESSFULLY REGISTERED", "FAILED"]


def test_another_prefix_layout_is_the_same_answer() -> None:
    # The cancel example (p. 13) puts the types in the default namespace: only names count.
    item = niss_item()
    text = etree.tostring(answer(registered(item, 7)), encoding="unicode")
    content = etree.fromstring(
        text.replace("ns3:", "")
        .replace('xmlns:ns3="', 'xmlns:unused="')
        .replace('xmlns="http://socialsecurity.be/errors/v1"', f'xmlns="{TYPES_NS}"')
    )
    assert schema_problems(content) == ()
    (result,) = parse_register_response(content, [item])
    assert isinstance(result, Registered) and result.presence_id == 7


def test_unexpected_elements_and_missing_optional_ones_are_no_crash() -> None:
    item = niss_item()
    entry = (
        registered(item, 8)
        .replace("<ns3:Channel>WS</ns3:Channel>", "<ns3:NewField>x</ns3:NewField>")
        .replace("</ns3:LastValidation>", "</ns3:LastValidation><ns3:Extra/>", 1)
    )
    content = answer(entry + "<ns4:Trailer>later versions</ns4:Trailer>", valid=False)
    (result,) = parse_register_response(content, [item])
    assert isinstance(result, Registered)
    assert (result.presence_id, result.channel, result.sector) == (8, "", None)


def test_a_refusal_without_its_error_list_is_still_a_refusal() -> None:
    item = niss_item()
    entry = refused(item, "2", "x").split("<ns3:ErrorList>")[0] + (
        "</ns3:PresenceRegistrationError></ns4:PresenceRegistrationResponse>"
    )
    (result,) = parse_register_response(answer(entry, valid=False), [item])
    assert isinstance(result, Refused)
    assert result.errors == () and result.kind is CodeClass.PERMANENT


def test_a_refusal_with_a_configuration_code_stops_sending() -> None:
    item = niss_item()
    entry = refused(item, "1", "The user has no authorization").replace(
        "</ns3:Error>",
        "</ns3:Error><ns3:Error><ns3:ErrorCode>5</ns3:ErrorCode>"
        "<ns3:ErrorDescription>Invalid INSS</ns3:ErrorDescription></ns3:Error>",
        1,
    )
    (result,) = parse_register_response(answer(entry), [item])
    assert isinstance(result, Refused)
    assert [e.kind for e in result.errors] == [CodeClass.CONFIGURATION, CodeClass.PERMANENT]
    assert result.kind is CodeClass.CONFIGURATION


def both(item: PresenceItem) -> str:
    """An item answer holding a registration and an error: the XSD's choice broken."""
    error = refused(item, "5", "x").removeprefix("<ns4:PresenceRegistrationResponse>")
    return registered(item, 2).replace("</ns4:PresenceRegistrationResponse>", error)


Build = Callable[[PresenceItem, PresenceItem], etree._Element]
UNREADABLE: dict[str, tuple[Build, str]] = {
    "another operation's answer": (
        lambda a, b: etree.fromstring(f'<x:CancelPresencesResponse xmlns:x="{NS}"/>'),
        "RegisterPresencesResponse expected",
    ),
    "one answer short": (
        lambda a, b: answer(registered(a, 1)),
        "2 item results expected, 1 found",
    ),
    "one answer too many": (
        lambda a, b: answer(registered(a, 1), registered(b, 2), registered(b, 3)),
        "2 item results expected, 3 found",
    ),
    "one item answered twice": (
        lambda a, b: answer(registered(a, 1), registered(a, 2)),
        "two answers for item 1",
    ),
    "a reference we did not send": (
        lambda a, b: answer(registered(a, 1), registered(niss_item(), 2)),
        "a reference not in the request",
    ),
    "id zero": (
        lambda a, b: answer(registered(a, 1), registered(b, 0)),
        "no id: '0'",
    ),
    "id not an integer": (
        lambda a, b: answer(
            registered(a, 1), registered(b, 2).replace(">2<", ">1e3<"), valid=False
        ),
        "no id: '1e3'",
    ),
    "id empty": (
        lambda a, b: answer(registered(a, 1), registered(b, 2).replace(">2<", "><"), valid=False),
        "no id: ''",
    ),
    "an empty item answer": (
        lambda a, b: answer(registered(a, 1), "<ns4:PresenceRegistrationResponse/>", valid=False),
        "not one of PresenceRegistration",
    ),
    "an item registered and refused": (
        lambda a, b: answer(registered(a, 1), both(b), valid=False),
        "not one of PresenceRegistration",
    ),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_an_unreadable_answer_is_one_error_and_shows_no_niss(case: str) -> None:
    make, why = UNREADABLE[case]
    worker, posted = niss_item(), limosa_item()
    with pytest.raises(PresenceAnswerError, match=why) as unreadable:
        parse_register_response(make(worker, posted), [worker, posted])
    assert NISS not in str(unreadable.value)
    assert unreadable.value.status == 200 and "answer '<" in unreadable.value.detail
    # The REST uplink's own kind: the caller marks the items unconfirmed, never resends.
    assert isinstance(unreadable.value, UnreadableAnswerError)


# --- answers to getPresenceRegistration ------------------------------------------------------

# The specification's example (§5.4.2.1, p. 16), its Body's content as printed.
GET_EXAMPLE = """
<ns3:GetPresenceRegistrationResponse xmlns="http://socialsecurity.be/errors/v1"
 xmlns:ns2="http://socialsecurity.be/presenceregistration/schemas/v1"
 xmlns:ns3="http://socialsecurity.be/presenceregistration/v1"
 xmlns:ns4="http://socialsecurity.be/errors/serviceprovider/v1">
 <ns3:GetPresenceRegistrationResponseType>
  <ns2:GetPresenceRegistrationRequest>
   <ns2:PresenceRegistrationId>47003</ns2:PresenceRegistrationId>
  </ns2:GetPresenceRegistrationRequest>
  <ns2:GetPresenceRegistrationType>
   <ns2:PresenceRegistrationType>
    <ns2:PresenceRegistrationConsultSubmitted>
     <ns2:RegistrationDate>2014-07-07</ns2:RegistrationDate>
     <ns2:INSS>77072239430</ns2:INSS>
     <ns2:CompanyID>448181966</ns2:CompanyID>
     <ns2:WorkPlaceId>1Y1000003DH2Z</ns2:WorkPlaceId>
    </ns2:PresenceRegistrationConsultSubmitted>
    <ns2:INSS>77072239430</ns2:INSS>
    <ns2:PresenceRegistrationId>47003</ns2:PresenceRegistrationId>
    <ns2:CreationDate>2014-07-07T15:33:10.327</ns2:CreationDate>
    <ns2:Channel>WS</ns2:Channel>
    <ns2:LastValidation>
     <ns2:Status>FAILED</ns2:Status>
     <ns2:ValidationDate>2014-07-07T15:33:12.098</ns2:ValidationDate>
     <ns2:RemarkList><ns2:Remark>EMPLOYER NOT ACTIVE</ns2:Remark></ns2:RemarkList>
    </ns2:LastValidation>
    <ns2:ValidationHistory>
     <ns2:Validation>
      <ns2:Status>FAILED</ns2:Status>
      <ns2:ValidationDate>2014-07-07T15:33:12.098</ns2:ValidationDate>
      <ns2:RemarkList><ns2:Remark>EMPLOYER NOT ACTIVE</ns2:Remark></ns2:RemarkList>
     </ns2:Validation>
    </ns2:ValidationHistory>
    <ns2:Sender><ns2:SenderId>0206731645</ns2:SenderId></ns2:Sender>
   </ns2:PresenceRegistrationType>
  </ns2:GetPresenceRegistrationType>
 </ns3:GetPresenceRegistrationResponseType>
</ns3:GetPresenceRegistrationResponse>
"""


def test_the_specifications_get_example_gives_the_registrations_validation() -> None:
    content = etree.fromstring(GET_EXAMPLE)
    assert schema_problems(content) == ()
    found = parse_get_response(content)
    assert found is not None
    assert found.presence_id == 47003
    assert found.registration_id is None  # registered without a reference of ours
    assert (found.registration_date, found.workplace_id) == (date(2014, 7, 7), "1Y1000003DH2Z")
    assert found.status == ValidationStatus.FAILED
    assert found.remarks == ("EMPLOYER NOT ACTIVE",)
    assert len(found.history) == 1


def test_a_get_answer_without_a_registration_is_none() -> None:
    root = etree.fromstring(GET_EXAMPLE)
    holder = root.find(f".//{{{TYPES_NS}}}GetPresenceRegistrationType")
    assert holder is not None
    holder.remove(holder[0])
    assert schema_problems(root) == ()
    assert parse_get_response(root) is None


def test_an_unreadable_get_answer_is_one_error() -> None:
    root = etree.fromstring(GET_EXAMPLE)
    holder = root.find(f".//{{{NS}}}GetPresenceRegistrationResponseType")
    assert holder is not None
    holder.remove(holder[1])
    with pytest.raises(PresenceAnswerError, match="no GetPresenceRegistrationType"):
        parse_get_response(root)
    with pytest.raises(PresenceAnswerError, match="GetPresenceRegistrationResponse expected"):
        parse_get_response(answer(registered(niss_item(), 1)))


# --- the schema files ------------------------------------------------------------------------


def test_the_schema_files_are_the_official_ones_unchanged() -> None:
    readme = (SCHEMA_DIR / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| (\S+\.(?:xsd|wsdl)) \| ([0-9a-f]{64}) \|$", readme, re.M))
    assert len(listed) == 3
    for name, digest in listed.items():
        data = (SCHEMA_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        original = REFERENCE / Path(name).name
        if original.is_file():
            assert original.read_bytes() == data, name


def test_the_specifications_example_envelope_reads_through_to_the_items() -> None:
    # §5.1.2.1, pp. 11-12, whole, with our two items' references in place of its own.
    worker, posted = niss_item(), limosa_item()
    data = f"""<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/">
      <S:Header>
      </S:Header>
      <S:Body>
        <ns4:RegisterPresencesResponse {ANSWER_NS}>
          {registered(worker, 53102)}
          {registered(posted, 53103)}
        </ns4:RegisterPresencesResponse>
      </S:Body>
    </S:Envelope>""".encode()
    message = read_envelope(data)
    assert message.fault is None and message.content is not None
    assert schema_problems(message.content) == ()
    results = parse_register_response(message.content, [worker, posted])
    assert [r.presence_id for r in results if isinstance(r, Registered)] == [53102, 53103]
