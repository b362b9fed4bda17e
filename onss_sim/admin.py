"""The simulator's own endpoints under /_sim/ (JSON, no authentication; see README.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

from onss_sim.checks import TYPE_VALUES
from onss_sim.faults import FaultSpecError
from onss_sim.messages import Reply, Request, json_reply, problem
from onss_sim.soap_book import real_now
from onss_sim.state import Config, Simulator

PREFIX = "/_sim"

Endpoint = Callable[[Simulator, Request], Reply]


class InputError(ValueError):
    """The admin request is malformed; str(error) says why."""


def _json_body(request: Request) -> Any:
    try:
        return request.json()
    except ValueError as error:
        raise InputError(str(error)) from None


def _object_body(request: Request, allowed: set[str]) -> dict[str, Any]:
    body = _json_body(request)
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InputError(f"unknown field(s): {', '.join(unknown)}")
    return body


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InputError(f"{name} must be a non-empty string")
    return value


# --- Registrations and requests ----------------------------------------------------------


def get_registrations(sim: Simulator, request: Request) -> Reply:
    after = request.query.get("after_id", [])
    try:
        after_id = int(after[0]) if after else None
    except ValueError:
        raise InputError("after_id must be an integer") from None
    with sim.lock:
        created = sim.book.created(after_id)
    return json_reply(200, {"registrations": created})


def get_presences(sim: Simulator, request: Request) -> Reply:
    after = request.query.get("after_id", [])
    try:
        after_id = int(after[0]) if after else None
    except ValueError:
        raise InputError("after_id must be an integer") from None
    with sim.lock:
        listed = sim.presences.listed(real_now(), after_id)
    return json_reply(200, {"presences": listed})


def get_requests(sim: Simulator, request: Request) -> Reply:
    with sim.lock:
        logged = list(sim.requests)
    return json_reply(200, {"requests": logged})


def post_reset(sim: Simulator, request: Request) -> Reply:
    with sim.lock:
        sim.reset()
    return json_reply(200, {"reset": True})


# --- Faults ------------------------------------------------------------------------------


def get_faults(sim: Simulator, request: Request) -> Reply:
    with sim.lock:
        return json_reply(200, sim.faults.describe(time.monotonic()))


def post_faults(sim: Simulator, request: Request) -> Reply:
    spec = _json_body(request)
    with sim.lock:
        try:
            sim.faults.add(spec, time.monotonic())
        except FaultSpecError as error:
            raise InputError(str(error)) from None
        return json_reply(200, sim.faults.describe(time.monotonic()))


def delete_faults(sim: Simulator, request: Request) -> Reply:
    with sim.lock:
        sim.faults.clear()
        return json_reply(200, sim.faults.describe(time.monotonic()))


# --- Clients, declarations, configuration ------------------------------------------------


def get_clients(sim: Simulator, request: Request) -> Reply:
    with sim.lock:
        clients = [
            {"client_id": c.client_id, "permitted": c.permitted}
            for c in sim.tokens.clients.values()
        ]
    return json_reply(200, {"clients": clients})


def post_clients(sim: Simulator, request: Request) -> Reply:
    body = _object_body(request, {"client_id", "certificate_pem", "permitted"})
    client_id, pem = _string(body, "client_id"), _string(body, "certificate_pem")
    permitted = body.get("permitted", True)
    if not isinstance(permitted, bool):
        raise InputError("permitted must be true or false")
    with sim.lock:
        try:
            sim.tokens.add_client(client_id, pem, permitted)
        except ValueError as error:
            raise InputError(f"certificate_pem: {error}") from None
    return json_reply(200, {"client_id": client_id, "permitted": permitted})


def get_declarations(sim: Simulator, request: Request) -> Reply:
    with sim.lock:
        known = {key: sorted(value) for key, value in sim.book.declarations.items()}
    return json_reply(200, {"declarations": known})


def post_declarations(sim: Simulator, request: Request) -> Reply:
    body = _object_body(request, {"declaration", "employers"})
    declaration = _string(body, "declaration")
    employers = _strings(body, "employers")
    with sim.lock:
        sim.book.set_declaration(declaration, employers)
    return json_reply(200, {"declaration": declaration, "employers": sorted(set(employers))})


def get_workplaces(sim: Simulator, request: Request) -> Reply:
    with sim.lock:
        known = {key: sorted(value) for key, value in sim.presences.workplaces.items()}
    return json_reply(200, {"workplaces": known})


def post_workplaces(sim: Simulator, request: Request) -> Reply:
    body = _object_body(request, {"workplace", "companies"})
    workplace = _string(body, "workplace")
    companies = _strings(body, "companies")
    with sim.lock:
        sim.presences.set_workplace(workplace, companies)
    return json_reply(200, {"workplace": workplace, "companies": sorted(set(companies))})


def _strings(body: dict[str, Any], name: str) -> list[str]:
    values = body.get(name)
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise InputError(f"{name} must be a list of non-empty strings")
    return values


def _clock(sim: Simulator) -> Reply:
    now = real_now()
    book = sim.presences
    return json_reply(200, {"today": book.today(now).isoformat(), "offset_days": book.offset_days})


def get_clock(sim: Simulator, request: Request) -> Reply:
    with sim.lock:
        return _clock(sim)


def post_clock(sim: Simulator, request: Request) -> Reply:
    body = _object_body(request, {"date"})
    given = body.get("date")
    try:
        day = None if given is None else date.fromisoformat(given)
    except (TypeError, ValueError):
        raise InputError("date must be YYYY-MM-DD, or null for the real date") from None
    with sim.lock:
        try:
            sim.presences.set_today(day, real_now())
        except ValueError as error:
            raise InputError(str(error)) from None
        return _clock(sim)


def get_config(sim: Simulator, request: Request) -> Reply:
    with sim.lock:
        return json_reply(200, sim.config.as_json())


def post_config(sim: Simulator, request: Request) -> Reply:
    body = _object_body(request, set(Config().as_json()))
    settings = {name: _setting(name, value) for name, value in body.items()}
    with sim.lock:
        for name, value in settings.items():
            setattr(sim.config, name, value)
        return json_reply(200, sim.config.as_json())


def _setting(name: str, value: Any) -> float | str:
    if name == "type_values":
        if not isinstance(value, str) or value not in TYPE_VALUES:
            raise InputError(f"type_values must be one of {', '.join(TYPE_VALUES)}")
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be a number of seconds")
    if value < 0 or (value == 0 and name != "validation_delay_s"):
        raise InputError(f"{name} must be a positive number of seconds")
    return float(value)


# --- Routing -----------------------------------------------------------------------------


def _guarded(endpoint: Endpoint) -> Endpoint:
    def guarded(sim: Simulator, request: Request) -> Reply:
        try:
            return endpoint(sim, request)
        except InputError as error:
            return problem(400, "badRequest", str(error))

    return guarded


ROUTES: dict[str, dict[str, Endpoint]] = {
    f"{PREFIX}/{name}": {method: _guarded(endpoint) for method, endpoint in methods.items()}
    for name, methods in {
        "registrations": {"GET": get_registrations},
        "presences": {"GET": get_presences},
        "workplaces": {"GET": get_workplaces, "POST": post_workplaces},
        "clock": {"GET": get_clock, "POST": post_clock},
        "requests": {"GET": get_requests},
        "reset": {"POST": post_reset},
        "faults": {"GET": get_faults, "POST": post_faults, "DELETE": delete_faults},
        "clients": {"GET": get_clients, "POST": post_clients},
        "declarations": {"GET": get_declarations, "POST": post_declarations},
        "config": {"GET": get_config, "POST": post_config},
    }.items()
}
