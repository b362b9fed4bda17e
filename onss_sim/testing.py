"""Run the simulator as a real process for a test, and talk to its /_sim/ endpoints.

    with SimulatorProcess(tmp_path / "onss") as onss:
        onss.admin("POST", "/faults", [{"kind": "status", "status": 503, "times": 2}])
        ...  # point the gateway at onss.base_url, onss.token_url, onss.ca_file, onss.client_id
        assert len(onss.registrations()) == 3

TLS verification is always on: every call trusts the simulator's own CA file, nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from onss_sim.__main__ import INFO_FILE
from onss_sim.checks import DEFAULT_TYPE_VALUES

STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
ADMIN_TIMEOUT_S = 10.0


class SimulatorError(RuntimeError):
    """The simulator did not start, or an admin call failed (`status`, `body`)."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class SimulatorProcess:
    """`python -m onss_sim --dir DIR` in its own process, for as long as the context lasts."""

    def __init__(
        self,
        directory: Path,
        *,
        declarations: Sequence[str] = (),
        workplaces: Sequence[str] = (),
        type_values: str = DEFAULT_TYPE_VALUES,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        """`declarations` are extra `DECL:EMPLOYER[,EMPLOYER]` arguments; `type_values`
        the case of `type` it accepts ("lower": in/out, "upper": IN/OUT), which a gateway
        pointed at it must send (`[uplink] type_values`, see `type_values` below);
        `workplaces` extra Checkinatwork `WORKPLACE:COMPANY[,COMPANY]` arguments;
        `environment` variables added to the process's (libfaketime's, for a test that
        crosses midnight with the box)."""
        self.directory = Path(directory)
        self.log_file = self.directory / "simulator.log"
        self._declarations = list(declarations)
        self._workplaces = list(workplaces)
        self._type_values = type_values
        self._startup_timeout_s = startup_timeout_s
        self._environment = {**os.environ, **(environment or {})}
        self._process: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None
        self.info: dict[str, Any] = {}

    # --- Lifetime ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the process and wait (bounded) until it has written simulator.json."""
        if self._process is not None:
            raise SimulatorError("already started")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "onss_sim", "--dir", str(self.directory)]
        command += ["--type-values", self._type_values]
        for declaration in self._declarations:
            command += ["--declaration", declaration]
        for workplace in self._workplaces:
            command += ["--workplace", workplace]
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=log, env=self._environment)
        try:
            self.info = self._wait_for_info()
        except BaseException:
            self.stop()
            raise
        self._client = httpx.Client(verify=self.ssl_context(), timeout=ADMIN_TIMEOUT_S)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; the exit status (None if never started)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait(STOP_TIMEOUT_S)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _wait_for_info(self) -> dict[str, Any]:
        assert self._process is not None
        path = self.directory / INFO_FILE
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SimulatorError(
                    f"the simulator exited ({self._process.returncode}): {self.log_tail()}"
                )
            info = _read_info(path)
            if info is not None and info.get("pid") == self._process.pid:
                return info
            time.sleep(0.05)
        raise SimulatorError(f"no {path} after {self._startup_timeout_s} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- What simulator.json says --------------------------------------------------------

    @property
    def base_url(self) -> str:
        return str(self.info["base_url"])

    @property
    def token_url(self) -> str:
        return str(self.info["token_url"])

    @property
    def soap_url(self) -> str:
        """The Checkinatwork SOAP endpoint, PresenceRegistration v1."""
        return str(self.info["soap_url"])

    @property
    def admin_url(self) -> str:
        return str(self.info["admin_url"])

    @property
    def ca_file(self) -> Path:
        return Path(self.info["ca_file"])

    @property
    def client_id(self) -> str:
        return str(self.info["client_id"])

    @property
    def client_key_file(self) -> Path:
        return Path(self.info["client_key_file"])

    @property
    def client_cert_file(self) -> Path:
        return Path(self.info["client_cert_file"])

    @property
    def type_values(self) -> str:
        """The case of `type` it accepts at start: the gateway's `[uplink] type_values`."""
        return str(self.info["type_values"])

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the simulator's CA (and only it)."""
        return ssl.create_default_context(cafile=os.fspath(self.ca_file))

    # --- Admin endpoints -----------------------------------------------------------------

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        """Call /_sim/<path>; the decoded JSON answer, or SimulatorError if not 2xx."""
        if self._client is None:
            raise SimulatorError("the simulator is not running")
        url = f"{self.admin_url}/{path.lstrip('/')}"
        response = self._client.request(method, url, json=json)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if not response.is_success:
            raise SimulatorError(
                f"{method} {url}: {response.status_code}", response.status_code, body
            )
        return body

    def registrations(self, after_id: int | None = None) -> list[dict[str, Any]]:
        """Every registration created, in order (those with an id above `after_id`)."""
        path = "/registrations" if after_id is None else f"/registrations?after_id={after_id}"
        return list(self.admin("GET", path)["registrations"])

    def presences(self, after_id: int | None = None) -> list[dict[str, Any]]:
        """Every Checkinatwork presence created, in order (those with an id above `after_id`)."""
        path = "/presences" if after_id is None else f"/presences?after_id={after_id}"
        return list(self.admin("GET", path)["presences"])

    def add_workplace(self, workplace: str, companies: Sequence[str]) -> None:
        self.admin("POST", "/workplaces", {"workplace": workplace, "companies": companies})

    def set_today(self, day: date | None) -> date:
        """Make `day` the simulator's Checkinatwork today (None: the real one); it turns at
        real midnight in Brussels. Returns the simulated today."""
        body = {"date": None if day is None else day.isoformat()}
        return date.fromisoformat(self.admin("POST", "/clock", body)["today"])

    def today(self) -> date:
        """The simulator's Checkinatwork today (Europe/Brussels, with any offset)."""
        return date.fromisoformat(self.admin("GET", "/clock")["today"])

    def requests(self) -> list[dict[str, Any]]:
        """The log of token and registerInBulk requests, in order."""
        return list(self.admin("GET", "/requests")["requests"])

    def add_faults(self, *rules: dict[str, Any]) -> dict[str, Any]:
        return dict(self.admin("POST", "/faults", list(rules)))

    def clear_faults(self) -> None:
        self.admin("DELETE", "/faults")

    def configure(self, **settings: float | str) -> dict[str, Any]:
        """token_lifetime_s, late_threshold_s, future_tolerance_s, type_values,
        validation_delay_s."""
        return dict(self.admin("POST", "/config", settings))

    def add_client(self, client_id: str, certificate_pem: str, permitted: bool = True) -> None:
        body = {"client_id": client_id, "certificate_pem": certificate_pem, "permitted": permitted}
        self.admin("POST", "/clients", body)

    def add_declaration(self, declaration: str, employers: Sequence[str]) -> None:
        self.admin("POST", "/declarations", {"declaration": declaration, "employers": employers})

    def reset(self) -> None:
        """Forget registrations, presences, the simulated date, the request log and faults
        (clients, declarations, workplaces, configuration stay)."""
        self.admin("POST", "/reset")


def _read_info(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
