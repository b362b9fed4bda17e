"""The simulator's Checkinatwork SOAP endpoint (PresenceRegistration v1), as a real process
over real TLS: requests built and signed by gateway.checkinatwork with the simulator's
client key, answers validated against the official XSD and read back by the gateway's
reader."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from lxml import etree

from gateway.checkinatwork import (
    Registered,
    Remark,
    parse_get_response,
    parse_register_response,
    register_presences_body,
)
from gateway.checkinatwork.envelope import Operation, build_envelope, envelope_bytes
from gateway.checkinatwork.messages import NS, TYPES_NS
from gateway.checkinatwork.security import sign
from onss_sim.pki import make_client_identity
from onss_sim.testing import SimulatorError, SimulatorProcess
from tests.sim.soap_support import (
    COMPANY,
    DUPLICATE,
    LIMOSA,
    NISS,
    OTHER_COMPANY,
    OTHER_NISS,
    OTHER_WORKPLACE,
    SOAP_ENV,
    SPEC,
    WORKPLACE,
    answered,
    error_codes,
    fault,
    get,
    identity,
    limosa_item,
    niss_item,
    post,
    register,
    results,
    set_text,
    signed,
    soa,
    today,
)


@pytest.fixture(scope="module")
def onss(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    directory = tmp_path_factory.mktemp("onss")
    workplaces = [f"{OTHER_WORKPLACE}:{OTHER_COMPANY}"]
    with SimulatorProcess(directory, workplaces=workplaces) as process:
        yield process


@pytest.fixture
def sim(onss: SimulatorProcess) -> Iterator[SimulatorProcess]:
    onss.reset()
    onss.configure(validation_delay_s=0)
    yield onss
    onss.clear_faults()


@pytest.fixture
def client(sim: SimulatorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(verify=sim.ssl_context(), timeout=15) as http:
        yield http


# --- a registration ------------------------------------------------------------------------


def test_a_signed_request_registers_and_answers_per_the_xsd(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    items = [niss_item(), limosa_item()]
    response = register(client, sim, items)
    content = answered(response)
    assert content.tag == f"{{{NS}}}RegisterPresencesResponse"
    first, second = parse_register_response(content, items)
    assert isinstance(first, Registered) and isinstance(second, Registered)
    assert second.presence_id == first.presence_id + 1
    assert (first.registration_id, second.registration_id) == (
        items[0].registration_id,
        items[1].registration_id,
    )
    assert first.status == "SUCCESSFULLY REGISTERED" and first.channel == "WS"
    assert first.registration_date == today() and first.workplace_id == WORKPLACE
    listed = sim.presences()
    assert [(p["id"], p["reference"]) for p in listed] == [
        (first.presence_id, items[0].reference),
        (second.presence_id, items[1].reference),
    ]
    assert listed[0]["inss"] == NISS and listed[0]["limosa_id"] is None
    assert listed[1]["limosa_id"] == LIMOSA and listed[1]["inss"] is None
    assert {p["workplace"] for p in listed} == {WORKPLACE}
    assert {p["date"] for p in listed} == {today().isoformat()}
    assert {p["times_received"] for p in listed} == {1}
    logged = sim.requests()[-1]
    assert logged["path"] == "/PresenceRegistration/v1"
    assert (logged["operation"], logged["items"], logged["status"]) == ("registerPresences", 2, 200)
    assert logged["client_id"] == sim.client_id


def test_a_resent_reference_is_counted(sim: SimulatorProcess, client: httpx.Client) -> None:
    item = niss_item()
    for _ in range(2):
        assert isinstance(results(register(client, sim, [item]), [item])[0], Registered)
    listed = sim.presences()
    assert len(listed) == 2 and {p["times_received"] for p in listed} == {2}


def test_each_item_check_answers_its_code(sim: SimulatorProcess, client: httpx.Client) -> None:
    items = [niss_item(niss=n) for n in (NISS, NISS, NISS, NISS, NISS, NISS, OTHER_NISS)]
    items.append(niss_item(day=today() + timedelta(days=1)))
    content = register_presences_body(items)
    set_text(content, 0, "CompanyID", "450905687")  # checksum: 2
    set_text(content, 1, "CompanyID", OTHER_COMPANY)  # not on this workplace: 3
    set_text(content, 2, "WorkPlaceId", "9Z9999999999Z")  # unknown workplace: 4
    set_text(content, 3, "INSS", "85073003329")  # checksum: 5
    set_text(content, 4, "RegistrationDate", (today() - timedelta(days=1)).isoformat())  # 6
    set_text(content, 5, "RegistrationDate", (today() + timedelta(days=2)).isoformat())  # 6
    set_text(content, 6, "RegistrationDate", None)  # absent: today, accepted
    found = results(post(client, sim, signed(sim, content)), items)
    assert [error_codes(r) for r in found[:6]] == [["2"], ["3"], ["4"], ["5"], ["6"], ["6"]]
    assert all(isinstance(r, Registered) for r in found[6:])  # today (implicit), tomorrow
    refused = answered(post(client, sim, signed(sim, content)))
    descriptions = refused.iterfind(f".//{{{TYPES_NS}}}Error")
    for error in descriptions:
        code = str(error.findtext(f"{{{TYPES_NS}}}ErrorCode"))
        assert error.findtext(f"{{{TYPES_NS}}}ErrorDescription") == SPEC[code]
    assert [p["date"] for p in sim.presences()[:2]] == [
        today().isoformat(),
        (today() + timedelta(days=1)).isoformat(),
    ]


def test_an_item_with_several_faults_lists_each(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    items = [niss_item()]
    content = register_presences_body(items)
    set_text(content, 0, "CompanyID", "450905687")
    set_text(content, 0, "INSS", "85073003329")
    set_text(content, 0, "RegistrationDate", "2001-01-01")
    (result,) = results(post(client, sim, signed(sim, content)), items)
    assert error_codes(result) == ["2", "5", "6"]
    assert sim.presences() == []


def test_a_limosa_worker_needs_no_company(sim: SimulatorProcess, client: httpx.Client) -> None:
    items = [limosa_item(workplace=OTHER_WORKPLACE), limosa_item(workplace="0NOSUCHPLACE0")]
    first, second = results(register(client, sim, items), items)
    assert isinstance(first, Registered)
    assert error_codes(second) == ["4"]


# --- the SOAP, WSDL and XSD checks -------------------------------------------------------


def test_what_is_not_soap_is_refused(sim: SimulatorProcess, client: httpx.Client) -> None:
    good = signed(sim, register_presences_body([niss_item()]))
    assert soa(post(client, sim, b"hello")) == "SOA-03002"
    assert soa(post(client, sim, b"<a>not an envelope</a>")) == "SOA-03002"
    soap12 = good.replace(SOAP_ENV.encode(), b"http://www.w3.org/2003/05/soap-envelope")
    assert soa(post(client, sim, soap12)) == "SOA-03002"
    wrong_type = {"Content-Type": "application/soap+xml; charset=utf-8"}
    assert soa(post(client, sim, good, headers=wrong_type)) == "SOA-03002"
    no_body = b'<e:Envelope xmlns:e="%s"><e:Header/></e:Envelope>' % SOAP_ENV.encode()
    assert soa(post(client, sim, no_body)) == "SOA-03003"
    empty = b'<e:Envelope xmlns:e="%s"><e:Body/></e:Envelope>' % SOAP_ENV.encode()
    assert soa(post(client, sim, empty)) == "SOA-03003"
    faultcode, _, faultstring = fault(post(client, sim, empty))
    assert faultcode == "soapenv:Client" and faultstring.startswith("Message must contain")
    assert sim.presences() == []


def test_a_body_of_two_elements_is_not_ws_i_compliant(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    envelope = build_envelope(register_presences_body([niss_item()]))
    body = envelope.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None
    body.append(copy.deepcopy(body[0]))
    key, certificate = identity(sim)
    data = envelope_bytes(sign(envelope, key, certificate, datetime.now(UTC)))
    assert soa(post(client, sim, data)) == "SOA-03004"
    assert sim.presences() == []


def test_the_soap_action_must_match_the_body(sim: SimulatorProcess, client: httpx.Client) -> None:
    good = signed(sim, register_presences_body([niss_item()]))
    assert soa(post(client, sim, good, headers={"SOAPAction": '"urn:other"'})) == "SOA-03005"
    wrong = post(client, sim, good, Operation.GET_PRESENCE_REGISTRATION)
    assert soa(wrong) == "SOA-03005"
    unquoted = {"SOAPAction": Operation.REGISTER_PRESENCES.soap_action}
    assert post(client, sim, good, headers=unquoted).status_code == 200


def test_an_unsigned_request_is_not_authenticated(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    plain = envelope_bytes(build_envelope(register_presences_body([niss_item()])))
    faultcode, code, faultstring = fault(post(client, sim, plain))
    assert (faultcode, code) == ("soapenv:Client", "SOA-01001")
    assert "no-security-header" in faultstring
    assert sim.presences() == []


def test_a_signature_with_another_key_is_not_authenticated(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    stranger = make_client_identity("not registered")
    data = signed(
        sim, register_presences_body([niss_item()]), pem=(stranger.key_pem, stranger.cert_pem)
    )
    _, code, faultstring = fault(post(client, sim, data))
    assert code == "SOA-01001" and "untrusted-certificate" in faultstring
    assert sim.presences() == []


def test_a_body_changed_after_signing_is_not_authenticated(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    data = signed(sim, register_presences_body([niss_item()]))
    changed = data.replace(NISS.encode(), OTHER_NISS.encode())
    assert soa(post(client, sim, changed)) == "SOA-01001"


@pytest.mark.parametrize(("shift", "refusal"), [(-10, "expired"), (10, "in-future")])
def test_a_stale_or_future_timestamp_is_not_authenticated(
    sim: SimulatorProcess, client: httpx.Client, shift: int, refusal: str
) -> None:
    at = datetime.now(UTC) + timedelta(minutes=shift)
    data = signed(sim, register_presences_body([niss_item()]), at=at)
    _, code, faultstring = fault(post(client, sim, data))
    assert code == "SOA-01001" and f"timestamp-{refusal}" in faultstring
    assert sim.presences() == []


def test_a_client_not_permitted_is_not_authorized(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    other = make_client_identity("registered, not permitted")
    sim.add_client("self_service_chaman_000001_notpermitted", other.cert_pem.decode(), False)
    data = signed(sim, register_presences_body([niss_item()]), pem=(other.key_pem, other.cert_pem))
    assert soa(post(client, sim, data)) == "SOA-01002"


def test_operations_the_box_never_calls_are_not_authorized(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    cancel = etree.fromstring(
        f'<v1:CancelPresencesRequest xmlns:v1="{NS}" xmlns:v11="{TYPES_NS}">'
        "<v1:CancelPresenceRequest><v11:PresenceRegistrationId>1</v11:PresenceRegistrationId>"
        "<v11:CancellationReason>HOLIDAY</v11:CancellationReason></v1:CancelPresenceRequest>"
        "</v1:CancelPresencesRequest>"
    )
    response = post(client, sim, signed(sim, cancel), Operation.CANCEL_PRESENCES)
    assert soa(response) == "SOA-01002"


def test_what_the_xsd_refuses_is_an_xsd_failure(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    content = register_presences_body([niss_item()])
    set_text(content, 0, "INSS", "8507300332")  # 10 digits: the pattern is \d{11}
    _, code, faultstring = fault(post(client, sim, signed(sim, content)))
    assert code == "SOA-03006" and "INSS" in faultstring
    content = register_presences_body([niss_item()])
    set_text(content, 0, "WorkPlaceId", "1Y1002V9KLZ6ZZ")  # 14: maxLength 13
    assert soa(post(client, sim, signed(sim, content))) == "SOA-03006"
    assert sim.presences() == []


def test_more_than_200_items_is_an_xsd_failure(sim: SimulatorProcess, client: httpx.Client) -> None:
    content = register_presences_body([limosa_item(f"L{n}") for n in range(200)])
    assert post(client, sim, signed(sim, content)).status_code == 200
    sim.reset()
    content.append(copy.deepcopy(content[0]))
    _, code, faultstring = fault(post(client, sim, signed(sim, content)))
    assert code == "SOA-03006" and "PresenceRegistrationRequest" in faultstring
    assert sim.presences() == []
    assert sim.requests()[-1]["items"] == 201


# --- one presence per person, workplace and day ------------------------------------------


def test_a_second_presence_the_same_day_is_accepted_then_failed(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    items = [niss_item(), niss_item()]  # the same person, workplace and day, in one call
    items.append(niss_item(company_id=OTHER_COMPANY, workplace_id=OTHER_WORKPLACE))
    items.append(niss_item(day=today() + timedelta(days=1)))
    first, second, elsewhere, tomorrow = results(register(client, sim, items), items)
    later = [niss_item()]  # and once more, in another call
    (third,) = results(register(client, sim, later), later)
    created = [first, second, elsewhere, tomorrow, third]
    assert all(isinstance(r, Registered) and r.status == "SUCCESSFULLY REGISTERED" for r in created)
    statuses = [(p["status"], p["remarks"]) for p in sim.presences()]
    assert statuses == [
        ("VALIDATED", []),
        ("FAILED", [DUPLICATE]),
        ("VALIDATED", []),
        ("VALIDATED", []),
        ("FAILED", [DUPLICATE]),
    ]
    assert isinstance(second, Registered)
    shown = parse_get_response(get(client, sim, second.presence_id))
    assert shown is not None and shown.status == "FAILED"
    assert shown.known_remarks == (Remark.DUPLICATE,)
    assert [v.status for v in shown.history] == ["FAILED"]


def test_limosa_workers_count_as_persons_too(sim: SimulatorProcess, client: httpx.Client) -> None:
    items = [limosa_item(), limosa_item(), limosa_item("OTHER-LIMOSA")]
    assert all(isinstance(r, Registered) for r in results(register(client, sim, items), items))
    assert [p["status"] for p in sim.presences()] == ["VALIDATED", "FAILED", "VALIDATED"]


# --- getPresenceRegistration -------------------------------------------------------------


def test_get_shows_the_registration_then_its_validation(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    sim.configure(validation_delay_s=2.0)  # as p. 16 shows; room for a slow machine
    items = [niss_item()]
    (made,) = results(register(client, sim, items), items)
    assert isinstance(made, Registered)
    content = get(client, sim, made.presence_id)
    assert content.tag == f"{{{NS}}}GetPresenceRegistrationResponse"
    early = parse_get_response(content)
    assert early is not None and early.presence_id == made.presence_id
    assert early.status == "SUCCESSFULLY REGISTERED" and early.history == ()
    assert early.registration_id == items[0].registration_id
    assert early.created_at == made.created_at
    deadline = time.monotonic() + 10
    shown = early
    while shown.status == "SUCCESSFULLY REGISTERED" and time.monotonic() < deadline:
        time.sleep(0.2)
        found = parse_get_response(get(client, sim, made.presence_id))
        assert found is not None
        shown = found
    assert shown.status == "VALIDATED" and shown.remarks == ()
    assert shown.last_validation.at is not None and shown.last_validation.at > shown.created_at
    assert [v.status for v in shown.history] == ["VALIDATED"]


def test_get_shows_nothing_of_an_unknown_or_anothers_id(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    assert parse_get_response(get(client, sim, 999_999)) is None
    other = make_client_identity("another employer")
    sim.add_client("self_service_chaman_000002_another", other.cert_pem.decode(), True)
    items = [niss_item()]
    content = register_presences_body(items)
    data = signed(sim, content, pem=(other.key_pem, other.cert_pem))
    (theirs,) = results(post(client, sim, data), items)
    assert isinstance(theirs, Registered)
    assert sim.presences()[0]["client_id"] == "self_service_chaman_000002_another"
    assert parse_get_response(get(client, sim, theirs.presence_id)) is None


# --- the simulated date ------------------------------------------------------------------


def test_the_clock_moves_today_for_the_date_rule(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    assert sim.today() == today()
    later = today() + timedelta(days=40)
    assert sim.set_today(later) == later
    items = [niss_item(day=later), niss_item(day=later + timedelta(days=1)), niss_item()]
    on_day, next_day, real_today = results(register(client, sim, items), items)
    assert isinstance(on_day, Registered) and isinstance(next_day, Registered)
    assert on_day.created_at.startswith(later.isoformat())  # CreationDate is simulated too
    assert error_codes(real_today) == ["6"]
    # past midnight: yesterday's presence can no longer be registered
    sim.set_today(later + timedelta(days=1))
    late = [niss_item(day=later)]
    assert error_codes(results(register(client, sim, late), late)[0]) == ["6"]
    sim.reset()  # forgets the simulated date
    assert sim.today() == today()


def test_the_clock_refuses_what_is_no_date(sim: SimulatorProcess) -> None:
    far = (today() + timedelta(days=4000)).isoformat()
    for body in ({"date": "07/12/2026"}, {"date": 5}, {"day": "2026-12-07"}, {"date": far}):
        with pytest.raises(SimulatorError) as refused:
            sim.admin("POST", "/clock", body)
        assert refused.value.status == 400
    assert sim.set_today(None) == today()


# --- configuration -----------------------------------------------------------------------


def test_simulator_json_names_the_soap_endpoint_and_workplaces(sim: SimulatorProcess) -> None:
    assert sim.soap_url == sim.base_url.split("/REST/")[0] + "/PresenceRegistration/v1"
    assert sim.info["workplaces"] == {WORKPLACE: [COMPANY], OTHER_WORKPLACE: [OTHER_COMPANY]}


def test_workplaces_can_be_added(sim: SimulatorProcess, client: httpx.Client) -> None:
    items = [niss_item(workplace_id="3C3003V9KLZ6Z")]
    assert error_codes(results(register(client, sim, items), items)[0]) == ["4"]
    sim.add_workplace("3C3003V9KLZ6Z", [COMPANY])
    assert sim.admin("GET", "/workplaces")["workplaces"]["3C3003V9KLZ6Z"] == [COMPANY]
    items = [niss_item(workplace_id="3C3003V9KLZ6Z")]
    assert isinstance(results(register(client, sim, items), items)[0], Registered)
