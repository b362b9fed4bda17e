"""Fault injection on the simulator's Checkinatwork SOAP endpoint: the same admin API and
FaultPlan as the REST endpoints, targets `registerPresences` and
`getPresenceRegistration`, plus SOAP faults and forced item errors. A real process over
real TLS."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.checkinatwork import (
    Registered,
    get_presence_registration_body,
    register_presences_body,
)
from gateway.checkinatwork.envelope import Operation
from onss_sim.testing import SimulatorError, SimulatorProcess
from tests.sim.soap_support import (
    LIMOSA,
    NISS,
    OTHER_NISS,
    answered,
    error_codes,
    fault,
    get,
    limosa_item,
    niss_item,
    post,
    register,
    results,
    signed,
    soa,
)


@pytest.fixture(scope="module")
def onss(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(tmp_path_factory.mktemp("onss")) as process:
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


def registered(client: httpx.Client, sim: SimulatorProcess) -> None:
    """A registration goes through: the fault was used up."""
    items = [niss_item()]
    assert isinstance(results(register(client, sim, items), items)[0], Registered)


def test_a_status_fault_answers_that_status_not_soap(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    sim.add_faults(
        {"kind": "status", "status": 503, "retry_after": 2, "target": "registerPresences"}
    )
    response = register(client, sim, [niss_item()])
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert response.headers["content-type"].startswith("text/plain")
    assert sim.presences() == []
    assert sim.requests()[-1]["fault"] == "status"
    registered(client, sim)


def test_a_rest_fault_leaves_the_soap_endpoint_alone(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    sim.add_faults({"kind": "status", "status": 500}, {"kind": "drop", "target": "token"})
    registered(client, sim)
    assert len(sim.admin("GET", "/faults")["queued"]) == 2


def test_latency_delays_the_answer(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.add_faults({"kind": "latency", "seconds": 0.5, "target": "registerPresences"})
    started = time.monotonic()
    registered(client, sim)
    assert time.monotonic() - started >= 0.5
    assert sim.requests()[-1]["fault"] == "latency"


def test_a_drop_stores_nothing(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.add_faults({"kind": "drop", "target": "registerPresences"})
    with pytest.raises(httpx.RemoteProtocolError):
        register(client, sim, [niss_item()])
    assert sim.presences() == []
    assert sim.requests()[-1]["status"] is None
    registered(client, sim)


def test_a_drop_after_processing_stores_without_answering(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    sim.add_faults({"kind": "drop_after_processing", "target": "registerPresences"})
    item = niss_item()
    with pytest.raises(httpx.RemoteProtocolError):
        register(client, sim, [item])
    (stored,) = sim.presences()
    assert stored["reference"] == item.reference
    logged = sim.requests()[-1]
    assert (logged["status"], logged["processed_status"]) == (None, 200)
    # the box resends: a second registration, the reference seen twice, the second FAILED
    assert isinstance(results(register(client, sim, [item]), [item])[0], Registered)
    listed = sim.presences()
    assert [p["times_received"] for p in listed] == [2, 2]
    assert [p["status"] for p in listed] == ["VALIDATED", "FAILED"]


def test_an_outage_hits_soap_and_rest_alike(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.add_faults({"kind": "outage", "seconds": 30})
    response = register(client, sim, [niss_item()])
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert fault(response, 503)[:2] == ("soapenv:Server", "SOA-02002")
    rest = client.post(sim.token_url, data={"grant_type": "client_credentials"})
    assert rest.status_code == 503
    unknown = post(client, sim, b"hello", headers={"SOAPAction": "urn:nothing"})
    assert unknown.status_code == 503  # even a request naming no operation
    assert sim.presences() == []
    sim.clear_faults()
    registered(client, sim)


@pytest.mark.parametrize(
    ("code", "faultcode"),
    [
        ("SOA-02002", "soapenv:Server"),
        ("SOA-01002", "soapenv:Client"),
        ("SOA-00001", "soapenv:Server"),
    ],
)
def test_a_soap_fault_carries_its_code(
    sim: SimulatorProcess, client: httpx.Client, code: str, faultcode: str
) -> None:
    sim.add_faults({"kind": "soap_fault", "code": code})
    assert fault(register(client, sim, [niss_item()]))[:2] == (faultcode, code)
    assert sim.presences() == []
    assert sim.requests()[-1]["fault"] == "soap_fault"
    registered(client, sim)


def test_a_fault_can_target_get_presence_registration(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    sim.add_faults({"kind": "soap_fault", "code": "SOA-02001", "target": "getPresenceRegistration"})
    registered(client, sim)  # registerPresences is not hit
    presence_id = int(sim.presences()[0]["id"])
    data = signed(sim, get_presence_registration_body(presence_id))
    assert soa(post(client, sim, data, Operation.GET_PRESENCE_REGISTRATION)) == "SOA-02001"
    assert answered(post(client, sim, data, Operation.GET_PRESENCE_REGISTRATION)) is not None
    get(client, sim, presence_id)


def test_an_item_error_is_forced_for_one_inss(sim: SimulatorProcess, client: httpx.Client) -> None:
    sim.add_faults({"kind": "item_error", "inss": NISS, "code": "5", "times": 2})
    unrelated = [niss_item(OTHER_NISS)]  # a call without that person still uses one
    assert isinstance(results(register(client, sim, unrelated), unrelated)[0], Registered)
    items = [niss_item(), niss_item(OTHER_NISS), niss_item()]
    first, other, again = results(register(client, sim, items), items)
    assert error_codes(first) == error_codes(again) == ["5"]
    assert isinstance(other, Registered)
    assert sim.requests()[-1]["fault"] == "item_error"
    registered(client, sim)  # used up


def test_an_item_error_is_forced_for_one_limosa_id(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    sim.add_faults({"kind": "item_error", "limosa_id": LIMOSA, "code": "99"})
    items = [limosa_item(), limosa_item("OTHER-LIMOSA")]
    refused, other = results(register(client, sim, items), items)
    assert error_codes(refused) == ["99"]  # an unknown code, for the client's classification
    assert isinstance(other, Registered)


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "soap_fault", "code": "SOA-2002"},
        {"kind": "soap_fault"},
        {"kind": "soap_fault", "code": "SOA-02002", "target": "registerInBulk"},
        {"kind": "item_error", "code": "5"},
        {"kind": "item_error", "inss": NISS, "limosa_id": LIMOSA, "code": "5"},
        {"kind": "item_error", "inss": NISS, "code": "5", "target": "getPresenceRegistration"},
        {"kind": "item_error", "inss": NISS, "code": ""},
        {"kind": "drop", "target": "cancelPresences"},
        {"kind": "refuse_ssin", "ssin": NISS, "target": "registerPresences"},
    ],
)
def test_malformed_soap_rules_are_refused(sim: SimulatorProcess, rule: dict[str, object]) -> None:
    with pytest.raises(SimulatorError) as refused:
        sim.add_faults(rule)
    assert refused.value.status == 400
    assert sim.admin("GET", "/faults")["queued"] == []


def test_the_request_log_names_the_operation(sim: SimulatorProcess, client: httpx.Client) -> None:
    registered(client, sim)
    content = register_presences_body([niss_item(), limosa_item()])
    post(client, sim, signed(sim, content))
    logged = sim.requests()
    assert [(r["operation"], r["items"], r["status"]) for r in logged] == [
        ("registerPresences", 1, 200),
        ("registerPresences", 2, 200),
    ]
