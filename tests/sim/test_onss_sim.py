"""The ONSS simulator, as a real process over real TLS (onss_sim.testing.SimulatorProcess)."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import re
import secrets
import stat
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onss_sim.checks import enterprise_number_is_valid, parse_date, ssin_is_valid
from onss_sim.pki import make_client_identity
from onss_sim.testing import SimulatorError, SimulatorProcess

DECLARATION = "1Y1002V9KLZ6Z"
EMPLOYER = "0450905686"
OTHER_DECLARATION = "2A2002V9KLZ6Z"
FOREIGN_VAT = "NL123456789B01"
BELGIF = "urn:problem-type:belgif:"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DUPLICATE = "SAME DECLARATION HAS ALREADY BEEN REGISTERED"
LATE = "LATE REGISTRATION"


def make_ssin(yymmdd: str, serial: int, born_2000: bool = False) -> str:
    first9 = f"{yymmdd}{serial:03d}"
    return f"{first9}{97 - int(('2' if born_2000 else '') + first9) % 97:02d}"


def make_enterprise_number(first8: str) -> str:
    return f"{first8}{97 - int(first8) % 97:02d}"


SSIN = make_ssin("850730", 33)  # 85073003328, the example of docs/onss-api.md
OTHER_EMPLOYER = make_enterprise_number("02032013")


# --- Fixtures and helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def onss(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    extra = f"{OTHER_DECLARATION}:{OTHER_EMPLOYER},{FOREIGN_VAT}"
    with SimulatorProcess(tmp_path_factory.mktemp("onss"), declarations=[extra]) as process:
        yield process


@pytest.fixture
def sim(onss: SimulatorProcess) -> Iterator[SimulatorProcess]:
    onss.reset()
    onss.configure(
        token_lifetime_s=600, late_threshold_s=900, future_tolerance_s=300, type_values="lower"
    )
    yield onss
    onss.clear_faults()


@pytest.fixture
def client(sim: SimulatorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(verify=sim.ssl_context(), timeout=15) as http:
        yield http


def assertion(
    sim: SimulatorProcess,
    *,
    key: Any = None,
    algorithm: str = "RS256",
    lifetime_s: int = 120,
    issued_s_ago: int = 0,
    **claims: Any,
) -> str:
    """A client assertion of the simulator's technical user, claims overridable."""
    now = int(time.time()) - issued_s_ago
    body = {
        "iss": sim.client_id,
        "sub": sim.client_id,
        "aud": sim.token_url,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + lifetime_s,
        **claims,
    }
    signing_key = sim.client_key_file.read_bytes() if key is None else key
    return jwt.encode(body, signing_key, algorithm=algorithm, headers={"typ": "JWT"})


def token_request(client: httpx.Client, sim: SimulatorProcess, jwt_text: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": jwt_text,
    }
    return client.post(sim.token_url, data=form)


def access_token(
    client: httpx.Client, sim: SimulatorProcess, key: Any = None, **claims: Any
) -> str:
    response = token_request(client, sim, assertion(sim, key=key, **claims))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def item(
    ssin: str = SSIN,
    kind: str = "in",
    when: datetime | None = None,
    employer: dict[str, Any] | None = None,
    declaration: str = DECLARATION,
) -> dict[str, Any]:
    return {
        "registrationDate": utc(when or datetime.now(UTC)),
        "ssin": ssin,
        "type": kind,
        "employer": employer or {"enterpriseNumber": EMPLOYER},
        "placeOfWork": {"coordinates": {"latitude": 50.681805, "longitude": 4.834123}},
        "contractualRelationshipReference": declaration,
    }


def register(
    client: httpx.Client, sim: SimulatorProcess, body: Any, token: str | None
) -> httpx.Response:
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{sim.base_url}/presenceRegistrations/registerInBulk"
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
        return client.post(url, content=body, headers=headers)
    return client.post(url, json=body, headers=headers)


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == response.status_code
    assert body["title"] and body["detail"]
    return str(body["type"]).removeprefix(BELGIF)


def oauth_error(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error", "error_description"}
    return str(body["error"])


# --- Identifier checksums (in process) ---------------------------------------------------


def test_checksums_follow_the_public_algorithms() -> None:
    assert ssin_is_valid("85073003328")
    assert not ssin_is_valid("85073003329")
    assert ssin_is_valid(make_ssin("050101", 7, born_2000=True))
    assert ssin_is_valid(make_ssin("854730", 12))  # BIS, month + 40
    assert ssin_is_valid(make_ssin("852730", 12))  # BIS, month + 20
    assert ssin_is_valid(make_ssin("850000", 12))  # month and day unknown
    assert not ssin_is_valid(make_ssin("851330", 12))  # month 13
    assert not ssin_is_valid(make_ssin("850732", 12))  # day 32
    assert enterprise_number_is_valid("0450905686")
    assert not enterprise_number_is_valid("0450905687")
    assert not enterprise_number_is_valid("2450905686")


def strptime_date(text: str) -> datetime | None:
    """The registrationDate check parse_date replaced: the pattern, then strptime."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", text):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2025-03-03T06:58:12Z", datetime(2025, 3, 3, 6, 58, 12, tzinfo=UTC)),
        ("2024-02-29T23:59:59Z", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ],
)
def test_registration_dates_are_read_as_utc(text: str, moment: datetime) -> None:
    parsed = parse_date(text)
    assert parsed == moment and parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2025-13-03T06:58:12Z",
        "2025-00-03T06:58:12Z",
        "2025-02-30T06:58:12Z",
        "2025-02-29T06:58:12Z",  # not a leap year
        "2025-03-03T24:00:00Z",
        "2025-03-03T06:60:12Z",
        "2025-03-03T06:58:60Z",  # no leap seconds
        "0000-03-03T06:58:12Z",
        "２０２５-03-03T06:58:12Z",  # non-ASCII digits
        "٢٠٢٥-03-03T06:58:12Z",
        "2025-03-03t06:58:12z",
        "2025-03-03T06:58:12",
        "2025-03-03T06:58:12+00:00",
        "2025-03-03T06:58:12.5Z",
        "2025-03-03 06:58:12Z",
        "20250303T065812Z",
        "2025-03-03T06:58:12Z\n",
        "",
    ],
)
def test_malformed_registration_dates_are_refused(text: str) -> None:
    assert parse_date(text) is None
    assert strptime_date(text) is None


@given(
    year=st.integers(0, 9999),
    month=st.integers(0, 13),
    day=st.integers(0, 32),
    hour=st.integers(0, 25),
    minute=st.integers(0, 60),
    second=st.integers(0, 61),
)
def test_registration_dates_are_read_as_strptime_reads_them(
    year: int, month: int, day: int, hour: int, minute: int, second: int
) -> None:
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
    assert parse_date(text) == strptime_date(text)


# --- Token endpoint ----------------------------------------------------------------------


def test_token_is_issued_for_a_valid_assertion(client: httpx.Client, sim: SimulatorProcess) -> None:
    response = token_request(client, sim, assertion(sim))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert len(body["access_token"]) >= 32
    assert response.headers["cache-control"] == "no-store"
    assert response.http_version == "HTTP/1.1"


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"issued_s_ago": 200, "lifetime_s": 100}, "invalid_grant"),  # expired
        ({"aud": "https://services.socialsecurity.be/REST/oauth/v5/token"}, "invalid_grant"),
        ({"lifetime_s": 301}, "invalid_grant"),
        ({"issued_s_ago": -120}, "invalid_grant"),  # iat two minutes ahead
        ({"jti": ""}, "invalid_grant"),
        ({"iss": "self_service_chaman_1_unknown", "sub": "self_service_chaman_1_unknown"}, None),
        ({"sub": "someone-else"}, None),
    ],
    ids=["expired", "audience", "lifetime", "iat-ahead", "no-jti", "unknown-client", "sub"],
)
def test_bad_assertions_are_refused(
    client: httpx.Client, sim: SimulatorProcess, claims: dict[str, Any], error: str | None
) -> None:
    response = token_request(client, sim, assertion(sim, **claims))
    if error is None:  # the client cannot be identified
        assert (response.status_code, oauth_error(response)) == (401, "invalid_client")
    else:
        assert (response.status_code, oauth_error(response)) == (400, error)


def test_a_replayed_jti_is_refused(client: httpx.Client, sim: SimulatorProcess) -> None:
    signed = assertion(sim)
    assert token_request(client, sim, signed).status_code == 200
    replayed = token_request(client, sim, signed)
    assert (replayed.status_code, oauth_error(replayed)) == (400, "invalid_grant")
    assert "replay" in replayed.json()["error_description"]


def test_a_signature_by_another_key_is_refused(client: httpx.Client, sim: SimulatorProcess) -> None:
    stranger = make_client_identity("stranger").key_pem
    response = token_request(client, sim, assertion(sim, key=stranger))
    assert (response.status_code, oauth_error(response)) == (401, "invalid_client")


@pytest.mark.parametrize("algorithm", ["none", "HS256"])
def test_only_rs256_is_accepted(
    client: httpx.Client, sim: SimulatorProcess, algorithm: str
) -> None:
    key = "" if algorithm == "none" else secrets.token_bytes(32)
    response = token_request(client, sim, assertion(sim, key=key, algorithm=algorithm))
    assert (response.status_code, oauth_error(response)) == (401, "invalid_client")


def test_malformed_token_requests_are_refused(client: httpx.Client, sim: SimulatorProcess) -> None:
    missing = client.post(sim.token_url, data={"grant_type": "client_credentials"})
    assert (missing.status_code, oauth_error(missing)) == (400, "invalid_request")
    form = {
        "grant_type": "password",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(sim),
    }
    wrong_grant = client.post(sim.token_url, data=form)
    assert (wrong_grant.status_code, oauth_error(wrong_grant)) == (400, "unsupported_grant_type")
    form |= {"grant_type": "client_credentials", "client_assertion": "not.a.jwt"}
    not_jwt = client.post(sim.token_url, data=form)
    assert (not_jwt.status_code, oauth_error(not_jwt)) == (400, "invalid_request")
    as_json = client.post(sim.token_url, json=form)
    assert (as_json.status_code, oauth_error(as_json)) == (400, "invalid_request")


# --- Bearer tokens and permissions -------------------------------------------------------


def test_bearer_token_missing_invalid_expired(client: httpx.Client, sim: SimulatorProcess) -> None:
    missing = register(client, sim, {"items": [item()]}, None)
    assert (missing.status_code, problem_type(missing)) == (401, "noAccessToken")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    invalid = register(client, sim, {"items": [item()]}, "not-a-token")
    assert (invalid.status_code, problem_type(invalid)) == (401, "invalidAccessToken")
    sim.configure(token_lifetime_s=1)
    token = access_token(client, sim)
    time.sleep(1.5)
    expired = register(client, sim, {"items": [item()]}, token)
    assert (expired.status_code, problem_type(expired)) == (401, "expiredAccessToken")
    assert sim.registrations() == []


def test_a_client_without_permission_gets_403(client: httpx.Client, sim: SimulatorProcess) -> None:
    identity = make_client_identity("no permission")
    client_id = "self_service_chaman_000001_denied"
    sim.add_client(client_id, identity.cert_pem.decode(), permitted=False)
    token = access_token(client, sim, key=identity.key_pem, iss=client_id, sub=client_id)
    response = register(client, sim, {"items": [item()]}, token)
    assert (response.status_code, problem_type(response)) == (403, "missingPermission")
    assert sim.registrations() == []


# --- Schema and size ---------------------------------------------------------------------


def test_schema_problems_are_all_listed(client: httpx.Client, sim: SimulatorProcess) -> None:
    bad_ssin = item() | {"ssin": "8507300332", "type": "ENTER"}
    bad_rest = item() | {
        "registrationDate": "2025-03-03 06:58:12",
        "employer": {"enterpriseNumber": EMPLOYER, "foreignVatNumber": FOREIGN_VAT},
        "placeOfWork": {"coordinates": {"latitude": 91, "longitude": 4.8}},
        "contractualRelationshipReference": "1I1002V9KLZ6Z",
        "capacity": "employee",
    }
    del bad_rest["type"]
    body = {"items": [item(), bad_ssin, bad_rest, "not an item"]}
    response = register(client, sim, body, access_token(client, sim))
    assert (response.status_code, problem_type(response)) == (400, "badRequest")
    issues = response.json()["issues"]
    by_name = {issue["name"]: issue for issue in issues}
    assert set(by_name) == {
        "items[1].ssin",
        "items[1].type",
        "items[2].type",
        "items[2].registrationDate",
        "items[2].employer",
        "items[2].placeOfWork.coordinates.latitude",
        "items[2].contractualRelationshipReference",
        "items[2].capacity",
        "items[3]",
    }
    assert by_name["items[1].ssin"]["value"] == "8507300332"
    assert "value" not in by_name["items[2].type"]  # missing: no value
    assert by_name["items[2].capacity"]["type"].endswith("input-validation:unknownInput")
    assert all(issue["in"] == "body" and issue["title"] for issue in issues)
    assert sim.registrations() == []


def test_by_default_type_is_lowercase_and_the_other_case_is_a_schema_problem(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    assert sim.type_values == "lower"
    token = access_token(client, sim)
    body = {"items": [item(kind="in"), item(kind="IN"), item(kind="out"), item(kind="Out")]}
    refused = register(client, sim, body, token)
    assert (refused.status_code, problem_type(refused)) == (400, "badRequest")
    issues = refused.json()["issues"]
    assert [(i["name"], i["value"], i["detail"]) for i in issues] == [
        ("items[1].type", "IN", "must be one of in, out"),
        ("items[3].type", "Out", "must be one of in, out"),
    ]
    assert all(i["type"] == f"{BELGIF}input-validation:schemaViolation" for i in issues)
    assert sim.registrations() == []  # a 400 refuses the whole call
    accepted = register(client, sim, {"items": [item(kind="in"), item(kind="out")]}, token)
    assert accepted.status_code == 200
    assert [r["item"]["type"] for r in sim.registrations()] == ["in", "out"]


def test_type_values_can_be_changed_at_run_time(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    assert sim.configure(type_values="upper")["type_values"] == "upper"
    token = access_token(client, sim)
    refused = register(client, sim, {"items": [item(kind="in")]}, token)
    assert refused.status_code == 400
    assert refused.json()["issues"][0]["detail"] == "must be one of IN, OUT"
    assert register(client, sim, {"items": [item(kind="OUT")]}, token).status_code == 200
    for wrong in ("mixed", ["lower"], 1):
        with pytest.raises(SimulatorError) as error:
            sim.configure(type_values=wrong)  # type: ignore[arg-type]
        assert error.value.status == 400
    assert sim.admin("GET", "/config")["type_values"] == "upper"


def test_a_simulator_started_for_uppercase_refuses_lowercase_with_a_400(tmp_path: Path) -> None:
    with (
        SimulatorProcess(tmp_path / "onss", type_values="upper") as upper,
        httpx.Client(verify=upper.ssl_context(), timeout=15) as client,
    ):
        assert upper.type_values == "upper"
        token = access_token(client, upper)
        refused = register(client, upper, {"items": [item(kind="in")]}, token)
        assert (refused.status_code, problem_type(refused)) == (400, "badRequest")
        assert refused.headers["content-type"] == "application/problem+json"
        [issue] = refused.json()["issues"]
        assert (issue["name"], issue["value"], issue["in"]) == ("items[0].type", "in", "body")
        accepted = register(client, upper, {"items": [item(kind="IN")]}, token).json()
        assert "createdPresenceRegistration" in accepted["items"][0]
        assert [r["item"]["type"] for r in upper.registrations()] == ["IN"]


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b"{not json", [None]),
        (b"[1, 2]", [None]),
        (b'{"items": []}', ["items"]),
        (b'{"items": {}}', ["items"]),
        (b'{"entries": []}', ["items", "entries"]),
        (b'{"items": [{}]}', [f"items[0].{key}" for key in item()]),
    ],
    ids=["syntax", "array", "empty", "object", "no-items", "empty-item"],
)
def test_bodies_that_are_no_item_list_are_refused(
    client: httpx.Client, sim: SimulatorProcess, body: bytes, names: list[str | None]
) -> None:
    response = register(client, sim, body, access_token(client, sim))
    assert (response.status_code, problem_type(response)) == (400, "badRequest")
    assert [issue.get("name") for issue in response.json()["issues"]] == names


@pytest.mark.parametrize(
    "date", ["2025-02-30T06:58:12Z", "2025-03-03T24:00:00Z", "２０２５-03-03T06:58:12Z"]
)
def test_impossible_dates_are_schema_problems(
    client: httpx.Client, sim: SimulatorProcess, date: str
) -> None:
    body = {"items": [item() | {"registrationDate": date}]}
    response = register(client, sim, body, access_token(client, sim))
    assert (response.status_code, problem_type(response)) == (400, "badRequest")
    issues = response.json()["issues"]
    assert [(i["name"], i["value"]) for i in issues] == [("items[0].registrationDate", date)]


def test_address_and_foreign_employer_pass_the_schema(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    address = {
        "postCode": "1000",
        "municipalityName": "Bruxelles",
        "streetName": "Rue Haute",
        "houseNumber": "12",
        "boxNumber": None,
    }
    entry = item(employer={"foreignVatNumber": FOREIGN_VAT}, declaration=OTHER_DECLARATION)
    entry["placeOfWork"] = {"address": address}
    response = register(client, sim, {"items": [entry]}, access_token(client, sim))
    assert response.status_code == 200, response.text
    assert "createdPresenceRegistration" in response.json()["items"][0]


def test_too_many_items_or_bytes_give_413(client: httpx.Client, sim: SimulatorProcess) -> None:
    token = access_token(client, sim)
    many = register(client, sim, {"items": [item()] * 201}, token)
    assert (many.status_code, problem_type(many)) == (413, "payloadTooLarge")
    huge = json.dumps({"items": [item()], "padding": "x" * (1024 * 1024)}).encode()
    big = register(client, sim, huge, token)
    assert (big.status_code, problem_type(big)) == (413, "payloadTooLarge")
    assert register(client, sim, {"items": [item()] * 200}, token).status_code == 200
    assert [entry["items"] for entry in sim.requests()] == [None, 201, None, 200]


# --- Business checks, ids, remarks -------------------------------------------------------


def test_business_rejections_answer_per_item_in_order(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    now = datetime.now(UTC)
    items = [
        item(),
        item(employer={"enterpriseNumber": "0450905687"}),  # 2: checksum
        item(employer={"enterpriseNumber": OTHER_EMPLOYER}),  # 3: not in this declaration
        item(declaration="9Z9999Z9ZZZ9Z"),  # 4: unknown declaration
        item(ssin="85073003329"),  # 5: checksum
        item(when=now + timedelta(minutes=10)),  # 6: in the future
        item(ssin=make_ssin("054101", 5, born_2000=True), kind="out"),  # BIS, born 2005
        item(employer={"enterpriseNumber": OTHER_EMPLOYER}, declaration=OTHER_DECLARATION),
        item(when=now + timedelta(minutes=4)),  # within the 5 minutes allowed
    ]
    response = register(client, sim, {"items": items}, access_token(client, sim))
    assert response.status_code == 200, response.text
    answers = response.json()["items"]
    assert len(answers) == len(items)
    codes = [
        [e["code"] for e in a["notCreatedPresenceRegistration"]["errors"]]
        if "notCreatedPresenceRegistration" in a
        else None
        for a in answers
    ]
    assert codes == [None, ["2"], ["3"], ["4"], ["5"], ["6"], None, None, None]
    created = [a["createdPresenceRegistration"] for a in answers if codes[answers.index(a)] is None]
    ids = [c["id"] for c in created]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert all(c["validity"] == "pending" for c in created)
    error = answers[4]["notCreatedPresenceRegistration"]["errors"][0]
    assert error == {"code": "5", "description": "invalid ssin"}
    stored = sim.registrations()
    assert [r["id"] for r in stored] == ids
    assert [r["item"] for r in stored] == [items[0], items[6], items[7], items[8]]
    assert all(r["client_id"] == sim.client_id for r in stored)
    assert sim.registrations(after_id=ids[1]) == stored[2:]


def test_several_errors_of_one_item_are_all_given(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    bad = item(ssin="85073003329", employer={"enterpriseNumber": "0450905687"})
    bad["registrationDate"] = utc(datetime.now(UTC) + timedelta(hours=1))
    response = register(client, sim, {"items": [bad]}, access_token(client, sim))
    errors = response.json()["items"][0]["notCreatedPresenceRegistration"]["errors"]
    assert [e["code"] for e in errors] == ["2", "5", "6"]


def test_duplicates_and_late_registrations_are_created_with_remarks(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    token = access_token(client, sim)
    tap = item()
    late = item(kind="out", when=datetime.now(UTC) - timedelta(hours=1))
    first = register(client, sim, {"items": [tap, late]}, token).json()["items"]
    again = register(client, sim, {"items": [tap]}, token).json()["items"]
    remarks = [a["createdPresenceRegistration"]["remarks"] for a in [*first, *again]]
    assert remarks == [[], [LATE], [DUPLICATE]]
    sim.configure(late_threshold_s=7200)
    relaxed = register(client, sim, {"items": [late | {"type": "in"}]}, token).json()["items"]
    assert relaxed[0]["createdPresenceRegistration"]["remarks"] == []
    stored = sim.registrations()
    assert [r["remarks"] for r in stored] == [[], [LATE], [DUPLICATE], []]
    received = [datetime.fromisoformat(r["received_at"]) for r in stored]
    assert received == sorted(received) and received[0].tzinfo is not None


# --- Faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, "tooManyRequests"),
        (500, "internalServerError"),
        (502, "badGateway"),
        (503, "serviceUnavailable"),
    ],
)
def test_status_faults_answer_problems_then_pass(
    client: httpx.Client, sim: SimulatorProcess, status: int, kind: str
) -> None:
    token = access_token(client, sim)
    sim.add_faults({"kind": "status", "status": status, "retry_after": 2, "times": 2})
    answers = [register(client, sim, {"items": [item()]}, token) for _ in range(3)]
    for response in answers[:2]:
        assert (response.status_code, problem_type(response)) == (status, kind)
        assert response.headers["retry-after"] == "2"
    assert answers[2].status_code == 200
    assert len(sim.registrations()) == 1
    logged = [(r["status"], r["fault"]) for r in sim.requests()][1:]
    assert logged == [(status, "status"), (status, "status"), (200, None)]


def test_a_504_fault_without_retry_after(client: httpx.Client, sim: SimulatorProcess) -> None:
    sim.add_faults({"kind": "status", "status": 504})
    response = register(client, sim, {"items": [item()]}, access_token(client, sim))
    assert response.status_code == 504
    assert response.json()["type"] == "about:blank"
    assert "retry-after" not in response.headers


def test_latency_delays_a_normal_answer(client: httpx.Client, sim: SimulatorProcess) -> None:
    token = access_token(client, sim)
    sim.add_faults({"kind": "latency", "seconds": 1.0})
    started = time.monotonic()
    response = register(client, sim, {"items": [item()]}, token)
    assert time.monotonic() - started >= 1.0
    assert response.status_code == 200
    assert len(sim.registrations()) == 1


def test_a_request_held_across_a_reset_is_dropped_not_recorded(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    """A reset ends a test: what an earlier test's latency fault still holds must not
    appear in the next test's registrations."""
    token = access_token(client, sim)
    sim.add_faults({"kind": "latency", "seconds": 1.0})
    held = concurrent.futures.ThreadPoolExecutor(1).submit(
        register, client, sim, {"items": [item()]}, token
    )
    time.sleep(0.3)  # the request is in, and held
    sim.reset()
    with pytest.raises(httpx.RemoteProtocolError):
        held.result(timeout=10)
    assert sim.registrations() == []
    assert register(client, sim, {"items": [item()]}, access_token(client, sim)).status_code == 200
    assert len(sim.registrations()) == 1


def test_drop_closes_without_answer_and_stores_nothing(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    token = access_token(client, sim)
    sim.add_faults({"kind": "drop"})
    with pytest.raises(httpx.RemoteProtocolError):
        register(client, sim, {"items": [item(), item(kind="out")]}, token)
    assert sim.registrations() == []
    assert register(client, sim, {"items": [item()]}, token).status_code == 200
    logged = sim.requests()[1]
    assert (logged["status"], logged["fault"], logged["items"]) == (None, "drop", 2)


def test_drop_after_processing_stores_but_does_not_answer(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    token = access_token(client, sim)
    sim.add_faults({"kind": "drop_after_processing"})
    with pytest.raises(httpx.RemoteProtocolError):
        register(client, sim, {"items": [item(), item(kind="out")]}, token)
    assert len(sim.registrations()) == 2
    resent = register(client, sim, {"items": [item()]}, token)
    assert resent.json()["items"][0]["createdPresenceRegistration"]["remarks"] == [DUPLICATE]
    logged = sim.requests()[1]
    assert (logged["status"], logged["processed_status"]) == (None, 200)


def test_an_outage_answers_503_for_a_while(client: httpx.Client, sim: SimulatorProcess) -> None:
    token = access_token(client, sim)
    sim.add_faults({"kind": "outage", "seconds": 2})
    refused = register(client, sim, {"items": [item()]}, token)
    assert (refused.status_code, problem_type(refused)) == (503, "serviceUnavailable")
    assert refused.headers["retry-after"] == "1"
    token_refused = token_request(client, sim, assertion(sim))
    assert token_refused.status_code == 503
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if register(client, sim, {"items": [item()]}, token).status_code == 200:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the outage did not end")
    assert len(sim.registrations()) == 1


def test_outage_windows_can_be_scheduled(client: httpx.Client, sim: SimulatorProcess) -> None:
    token = access_token(client, sim)
    sim.add_faults({"kind": "outage", "seconds": 1, "start_in_seconds": 1})
    assert sim.admin("GET", "/faults")["outages"][0]["starts_in_s"] > 0
    assert register(client, sim, {"items": [item()]}, token).status_code == 200
    deadline = time.monotonic() + 10
    statuses: list[int] = []
    while time.monotonic() < deadline and statuses[-2:] != [503, 200]:
        status = register(client, sim, {"items": [item()]}, token).status_code
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        time.sleep(0.1)
    assert statuses == [200, 503, 200]


def test_token_faults_leave_registrations_alone(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    token = access_token(client, sim)
    sim.add_faults(
        {"kind": "status", "status": 503, "target": "token"},
        {"kind": "drop", "target": "token"},
    )
    assert register(client, sim, {"items": [item()]}, token).status_code == 200
    assert token_request(client, sim, assertion(sim)).status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        token_request(client, sim, assertion(sim))
    assert token_request(client, sim, assertion(sim)).status_code == 200


def test_bad_fault_rules_are_refused_whole(sim: SimulatorProcess) -> None:
    for rules in (
        [{"kind": "status", "status": 200}],
        [{"kind": "explode"}],
        [{"kind": "drop"}, {"kind": "latency"}],
        [{"kind": "drop", "target": "admin"}],
        [{"kind": "drop", "times": 0}],
    ):
        with pytest.raises(SimulatorError) as refused:
            sim.admin("POST", "/faults", rules)
        assert refused.value.status == 400
    assert sim.admin("GET", "/faults")["queued"] == []


# --- HTTP and TLS ------------------------------------------------------------------------


def test_a_client_without_the_ca_is_refused(sim: SimulatorProcess) -> None:
    with httpx.Client(timeout=10) as untrusting, pytest.raises(httpx.ConnectError) as refused:
        untrusting.get(f"{sim.admin_url}/registrations")
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)


def test_connections_are_kept_alive(sim: SimulatorProcess) -> None:
    port = int(sim.admin_url.rsplit(":", 1)[1].split("/")[0])
    connection = http.client.HTTPSConnection("localhost", port, context=sim.ssl_context())
    try:
        sockets = []
        for _ in range(3):
            connection.request("GET", "/_sim/config")
            response = connection.getresponse()
            assert response.status == 200 and response.version == 11
            assert int(response.headers["Content-Length"]) == len(response.read())
            sockets.append(connection.sock)
        assert sockets[0] is not None and sockets.count(sockets[0]) == 3
    finally:
        connection.close()


def test_unknown_paths_and_methods(client: httpx.Client, sim: SimulatorProcess) -> None:
    unknown = client.get(f"{sim.base_url}/presenceRegistrations")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    url = f"{sim.base_url}/presenceRegistrations/registerInBulk"
    for method in ("GET", "PUT", "DELETE", "OPTIONS", "HEAD"):
        wrong = client.request(method, url)
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    assert client.get(f"{sim.admin_url}/config").status_code == 200  # still the same connection


def test_concurrent_calls_get_distinct_increasing_ids(
    client: httpx.Client, sim: SimulatorProcess
) -> None:
    token = access_token(client, sim)

    def send(worker: int) -> list[int]:
        ids = []
        with httpx.Client(verify=sim.ssl_context(), timeout=15) as own:
            for _ in range(5):
                response = register(own, sim, {"items": [item(kind="in"), item(kind="out")]}, token)
                ids += [a["createdPresenceRegistration"]["id"] for a in response.json()["items"]]
        assert ids == sorted(ids)
        return ids

    with ThreadPoolExecutor(max_workers=6) as pool:
        every = [i for ids in pool.map(send, range(6)) for i in ids]
    assert sorted(every) == [r["id"] for r in sim.registrations()]
    assert len(set(every)) == 60


def test_admin_endpoints_describe_the_state(sim: SimulatorProcess) -> None:
    assert sim.admin("GET", "/declarations")["declarations"][OTHER_DECLARATION] == sorted(
        [OTHER_EMPLOYER, FOREIGN_VAT]
    )
    clients = sim.admin("GET", "/clients")["clients"]
    assert {"client_id": sim.client_id, "permitted": True} in clients
    assert sim.configure(late_threshold_s=60)["late_threshold_s"] == 60
    for path, body in (("/config", {"late_threshold_s": -1}), ("/config", {"nope": 1})):
        with pytest.raises(SimulatorError) as refused:
            sim.admin("POST", path, body)
        assert refused.value.status == 400
    with pytest.raises(SimulatorError) as refused:
        sim.add_client("x", "not a certificate")
    assert refused.value.status == 400


# --- The process itself ------------------------------------------------------------------


def test_cli_writes_its_description_and_stops_cleanly(tmp_path: Path) -> None:
    directory = tmp_path / "sim"
    process = SimulatorProcess(directory)
    with process:
        info = json.loads((directory / "simulator.json").read_text())
        assert info["pid"] == process.pid
        assert info["base_url"].endswith("/REST/presenceRegistration/v1")
        assert info["token_url"] == info["base_url"].split("/REST/")[0] + "/REST/oauth/v5/token"
        assert info["client_id"].startswith("self_service_chaman_")
        for key in ("client_key_file", "ca_file", "client_cert_file"):
            assert Path(info[key]).is_file()
        mode = stat.S_IMODE(os.stat(info["client_key_file"]).st_mode)
        assert mode == 0o600
        assert stat.S_IMODE(os.stat(directory / "server-key.pem").st_mode) == 0o600
        first_client_id, ca = info["client_id"], Path(info["ca_file"]).read_bytes()
        assert process.stop() == 0  # SIGTERM: a clean exit
    assert not (directory / "simulator.json").exists()
    assert "stopping" in process.log_tail()
    with SimulatorProcess(directory) as again:  # the same PKI and technical user
        assert again.client_id == first_client_id
        assert again.ca_file.read_bytes() == ca
