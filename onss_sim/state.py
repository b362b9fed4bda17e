"""Everything the simulator remembers, behind one lock (the HTTP server is threaded).

The parts (tokens, book, faults) are not thread-safe themselves: every use holds `lock`.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from onss_sim.checks import DEFAULT_TYPE_VALUES
from onss_sim.faults import FaultPlan
from onss_sim.registrations import RegistrationBook, Rules
from onss_sim.soap_book import DEFAULT_VALIDATION_DELAY_S, PresenceBook
from onss_sim.tokens import TokenService


@dataclass
class Config:
    """Settings changeable at run time through POST /_sim/config."""

    token_lifetime_s: float = 600.0
    late_threshold_s: float = 900.0
    future_tolerance_s: float = 300.0
    type_values: str = DEFAULT_TYPE_VALUES  # the case of `type` accepted: lower or upper
    # Checkinatwork: a presence is validated (VALIDATED or FAILED) this long after creation
    validation_delay_s: float = DEFAULT_VALIDATION_DELAY_S

    def rules(self) -> Rules:
        return Rules(self.late_threshold_s, self.future_tolerance_s)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Urls:
    """Where the simulator answers, as a client must write it (the token URL is the `aud`)."""

    origin: str  # https://127.0.0.1:PORT

    @property
    def base(self) -> str:
        return f"{self.origin}/REST/presenceRegistration/v1"

    @property
    def token(self) -> str:
        return f"{self.origin}/REST/oauth/v5/token"

    @property
    def soap(self) -> str:
        """The Checkinatwork SOAP endpoint (the WSDL's address path)."""
        return f"{self.origin}/PresenceRegistration/v1"

    @property
    def admin(self) -> str:
        return f"{self.origin}/_sim"


class Simulator:
    """The simulated ONSS: clients and tokens, registrations (REST) and presences (SOAP),
    faults, the request log."""

    def __init__(self, urls: Urls) -> None:
        self.lock = threading.Lock()
        self.urls = urls
        self.config = Config()
        self.tokens = TokenService(urls.token)
        self.book = RegistrationBook()
        self.presences = PresenceBook()
        self.faults = FaultPlan()
        self.requests: list[dict[str, Any]] = []
        self.generation = 0  # reset() counts up: a request held across it is dropped

    def log_request(
        self,
        method: str,
        path: str,
        status: int | None,
        items: int | None,
        at: datetime,
        **more: Any,
    ) -> None:
        """Append to the request log (caller holds the lock)."""
        entry = {
            "seq": len(self.requests) + 1,
            "time": at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "method": method,
            "path": path,
            "status": status,
            "items": items,
            **more,
        }
        self.requests.append(entry)

    def reset(self) -> None:
        """Forget registrations, presences, the simulated date, the request log and faults
        (caller holds the lock). A
        request still held by a latency fault is dropped when it wakes, not recorded in
        the fresh state: it belongs to the test that injected the fault."""
        self.generation += 1
        self.book.forget()
        self.presences.forget()
        self.requests.clear()
        self.faults.clear()
