"""The two ONSS endpoints over HTTP: the token endpoint and registerInBulk, with injected faults."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

from onss_sim import faults
from onss_sim.checks import item_count, schema_issues, syntax_issue
from onss_sim.messages import (
    Reply,
    Request,
    dropped,
    json_reply,
    oauth_error,
    problem,
    status_problem,
)
from onss_sim.state import Simulator
from onss_sim.tokens import AccessDenied, TokenError

TOKEN_PATH = "/REST/oauth/v5/token"  # noqa: S105 (a URL path, not a secret)
REGISTER_PATH = "/REST/presenceRegistration/v1/presenceRegistrations/registerInBulk"
MAX_ITEMS = 200
FORM = "application/x-www-form-urlencoded"
NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))

Endpoint = Callable[[Simulator, Request], Reply]


def token(sim: Simulator, request: Request) -> Reply:
    return _with_faults(sim, request, faults.TOKEN, _token)


def register_in_bulk(sim: Simulator, request: Request) -> Reply:
    return _with_faults(sim, request, faults.REGISTER, _register)


def _with_faults(sim: Simulator, request: Request, target: str, endpoint: Endpoint) -> Reply:
    with sim.lock:
        fault = sim.faults.take(target, time.monotonic())
        generation = sim.generation
    if fault is None:
        return endpoint(sim, request)
    if fault.kind in (faults.STATUS, faults.OUTAGE):
        detail = "simulated outage" if fault.kind == faults.OUTAGE else "injected fault"
        return replace(status_problem(fault.status, detail, fault.retry_after), fault=fault.kind)
    if fault.kind == faults.LATENCY:
        time.sleep(fault.seconds)
        if sim.generation != generation:  # reset meanwhile
            return dropped(fault.kind)
        return replace(endpoint(sim, request), fault=fault.kind)
    if fault.kind == faults.DROP:
        return dropped(fault.kind)
    if fault.kind == faults.REFUSE_SSIN:
        return replace(
            _refuse_ssin(fault.ssin, request) or endpoint(sim, request), fault=fault.kind
        )
    processed = endpoint(sim, request)  # drop_after_processing: the ambiguous case
    return replace(dropped(fault.kind), client_id=processed.client_id, status=processed.status)


def _refuse_ssin(ssin: str | None, request: Request) -> Reply | None:
    """400 naming every item with this ssin, as a stricter ONSS schema would; else None."""
    try:
        items = request.json().get("items", [])
    except (ValueError, AttributeError):
        return None
    issues = [
        {
            "type": "urn:problem-type:belgif:input-validation:schemaViolation",
            "title": "Input value is invalid with respect to the schema",
            "detail": "refused by an injected schema rule",
            "in": "body",
            "name": f"items[{index}].ssin",
            "value": ssin,
        }
        for index, item in enumerate(items if isinstance(items, list) else [])
        if isinstance(item, dict) and item.get("ssin") == ssin
    ]
    return _bad_request(issues) if issues else None


def _media_type(request: Request) -> str | None:
    value = request.header("content-type")
    return value.split(";")[0].strip().lower() if value else None


# --- Token -------------------------------------------------------------------------------


def _token(sim: Simulator, request: Request) -> Reply:
    if _media_type(request) != FORM:
        return oauth_error(400, "invalid_request", f"Content-Type must be {FORM}")
    try:
        form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except ValueError as error:  # UnicodeDecodeError is a ValueError
        return oauth_error(400, "invalid_request", f"unreadable form: {error}")
    with sim.lock:
        try:
            grant = sim.tokens.issue(form, time.time(), sim.config.token_lifetime_s)
        except TokenError as error:
            return oauth_error(error.status, error.error, error.description)
    return json_reply(200, grant, NO_STORE)


# --- registerInBulk ----------------------------------------------------------------------


def _register(sim: Simulator, request: Request) -> Reply:
    media_type = _media_type(request)
    if media_type is not None and media_type != "application/json":
        return problem(415, None, "Content-Type must be application/json")
    with sim.lock:
        try:
            client = sim.tokens.authenticate(request.header("authorization"), time.time())
        except AccessDenied as denied:
            return _unauthorized(denied)
    if not client.permitted:
        detail = f"client {client.client_id} may not register presences"
        return replace(problem(403, "missingPermission", detail), client_id=client.client_id)
    reply = _checked_register(sim, request, client.client_id)
    return replace(reply, client_id=client.client_id)


def _unauthorized(denied: AccessDenied) -> Reply:
    challenge = "Bearer" if denied.problem == "noAccessToken" else 'Bearer error="invalid_token"'
    return problem(401, denied.problem, denied.detail, (("WWW-Authenticate", challenge),))


def _checked_register(sim: Simulator, request: Request, client_id: str) -> Reply:
    try:
        body = request.json()
    except ValueError as error:
        return _bad_request([syntax_issue(str(error))])
    count = item_count(body)
    if count is not None and count > MAX_ITEMS:
        return payload_too_large(f"at most {MAX_ITEMS} items per call ({count} sent)")
    with sim.lock:
        type_values = sim.config.type_values
    issues = schema_issues(body, type_values)
    if issues:
        return _bad_request(issues)
    with sim.lock:
        answers = sim.book.register(
            body["items"], client_id, request.received_at, sim.config.rules()
        )
    return json_reply(200, {"items": answers})


def _bad_request(issues: list[dict[str, Any]]) -> Reply:
    return problem(400, "badRequest", "The input message is incorrect", issues=issues)


def payload_too_large(detail: str) -> Reply:
    return problem(413, "payloadTooLarge", detail)
