"""`badge-gateway uplink check`: the onboarding test an IT person runs before going live,
against production or the ONSS simulation environment, with the configured `[uplink]`.

Steps, in order, each timed; once one fails the later ones are skipped:
- `dns`: the hosts of token_url and base_url resolve;
- `tcp`: a connection to each is accepted;
- `tls`: the handshake verifies (the system's CAs plus `ca_file`); a refused certificate
  is named (unknown issuer, another host name, expired);
- `token`: the OAuth2 JWT flow (`TokenProvider`) with the configured client id and key;
- `registerInBulk`: a call that creates nothing, an empty `items` list. The schema asks
  for at least one item, so the answer expected is 400 (the simulator's too; a 2xx for an
  empty list is as good): the path and the token's scope are right. 401 and 403 are a
  scope or permission problem, 404 (or 405) a wrong base_url;
- `type values`: two probe items that can never be created (each holds only a `type`:
  the configured case, then the other one). The 400's issues tell which case the schema
  refuses (docs/onss-api.md, `[uplink] type_values`). When the service names neither, the
  case is not settled by this server: a warning, not a failure.

Nothing here raises: every step ends as a `StepResult` whose detail is one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway.config import UplinkConfig
from gateway.errors import CredentialError, TokenError
from gateway.system.credentials import key_path, load_private_key
from gateway.uplink.answers import ANSWER_HEADERS, Answer, AnswerLimits, Progress, exchange
from gateway.uplink.client import REGISTER_PATH
from gateway.uplink.payload import TypeValues, wire_type
from gateway.uplink.tls import tls_context
from gateway.uplink.token import TokenProvider

MAX_DETAIL = 300  # characters of one step's detail
OTHER_CASE: dict[TypeValues, TypeValues] = {"lower": "upper", "upper": "lower"}


class StepStatus(enum.Enum):
    PASSED = "passed"
    WARNING = "warning"  # not a failure: something the check could not settle
    FAILED = "failed"
    SKIPPED = "skipped"  # an earlier step failed


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    status: StepStatus
    ms: float | None  # None when skipped
    detail: str  # what was found, or why it failed: one line

    def as_json(self) -> dict[str, Any]:
        ms = None if self.ms is None else round(self.ms, 1)
        return {"step": self.name, "status": self.status.value, "ms": ms, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class CheckReport:
    steps: tuple[StepResult, ...]

    @property
    def passed(self) -> bool:
        return all(step.status in (StepStatus.PASSED, StepStatus.WARNING) for step in self.steps)

    def as_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "steps": [step.as_json() for step in self.steps]}


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: StepStatus
    detail: str


def _ok(detail: str) -> _Outcome:
    return _Outcome(StepStatus.PASSED, detail)


def _failed(detail: str) -> _Outcome:
    return _Outcome(StepStatus.FAILED, detail)


Step = Callable[[], Awaitable[_Outcome]]


async def check_uplink(config: UplinkConfig) -> CheckReport:
    """Run every step against `config`; never raises (but for cancellation)."""
    probe = _Probe(config)
    results: list[StepResult] = []
    try:
        for name, step in probe.steps():
            if results and results[-1].status in (StepStatus.FAILED, StepStatus.SKIPPED):
                results.append(StepResult(name, StepStatus.SKIPPED, None, ""))
                continue
            results.append(await _timed(name, step, probe.step_budget))
    finally:
        await probe.close()
    return CheckReport(tuple(results))


async def _timed(name: str, step: Step, budget: float) -> StepResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(budget):
            outcome = await step()
    except TimeoutError:
        outcome = _failed(f"no answer within {budget:g} s")
    except Exception as error:  # nobody classified it: still one line, never a traceback
        outcome = _failed(f"unexpected {_describe(error)}")
    ms = (time.perf_counter() - started) * 1000
    return StepResult(name, outcome.status, ms, _one_line(outcome.detail))


@dataclass(frozen=True, slots=True)
class _Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def endpoints(config: UplinkConfig) -> list[_Endpoint]:
    """The distinct hosts and ports of token_url and base_url, in that order."""
    found: list[_Endpoint] = []
    for url in (config.token_url, config.base_url):
        parts = urlsplit(str(url))
        endpoint = _Endpoint(parts.hostname or "", parts.port or 443)
        if endpoint not in found:
            found.append(endpoint)
    return found


class _Probe:
    """What the steps share: addresses found, open connections, the HTTP client, the token."""

    def __init__(self, config: UplinkConfig) -> None:
        self.config = config
        self.endpoints = endpoints(config)
        self.step_budget = config.connect_timeout_seconds + config.request_deadline_seconds
        self._limits = AnswerLimits(config.max_answer_bytes, config.request_deadline_seconds)
        self._addresses: dict[_Endpoint, list[str]] = {}
        self._streams: dict[_Endpoint, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self._tls: ssl.SSLContext | None = None
        self._http: httpx.AsyncClient | None = None
        self._tokens: TokenProvider | None = None

    def steps(self) -> list[tuple[str, Step]]:
        return [
            ("dns", self.dns),
            ("tcp", self.tcp),
            ("tls", self.tls),
            ("token", self.token),
            ("registerInBulk", self.register),
            ("type values", self.type_values),
        ]

    async def close(self) -> None:
        for _, writer in self._streams.values():
            writer.close()
        self._streams.clear()
        if self._http is not None:
            await self._http.aclose()

    # --- dns, tcp, tls -------------------------------------------------------------------

    async def dns(self) -> _Outcome:
        found = []
        for endpoint in self.endpoints:
            try:
                addresses = await _resolve(endpoint, self.config.connect_timeout_seconds)
            except TimeoutError:
                wait = self.config.connect_timeout_seconds
                return _failed(f"{endpoint.host}: no DNS answer within {wait:g} s")
            except OSError as error:
                return _failed(f"{endpoint.host} does not resolve: {_reason(error)}")
            self._addresses[endpoint] = addresses
            found.append(f"{endpoint.host} → {', '.join(addresses[:3])}")
        return _ok("; ".join(found))

    async def tcp(self) -> _Outcome:
        connected = []
        for endpoint in self.endpoints:
            outcome = await self._connect(endpoint)
            if outcome.status is StepStatus.FAILED:
                return outcome
            connected.append(outcome.detail)
        return _ok("; ".join(connected))

    async def _connect(self, endpoint: _Endpoint) -> _Outcome:
        wait = self.config.connect_timeout_seconds
        why = "no address"
        for address in self._addresses[endpoint]:
            try:
                async with asyncio.timeout(wait):
                    streams = await asyncio.open_connection(address, endpoint.port)
            except TimeoutError:
                why = f"{address}: no answer within {wait:g} s (a firewall dropping it?)"
                continue
            except ConnectionRefusedError:
                why = f"{address}: connection refused (nothing listens on port {endpoint.port})"
                continue
            except OSError as error:
                why = f"{address}: {_reason(error)}"
                continue
            self._streams[endpoint] = streams
            return _ok(f"{endpoint} ({address})")
        return _failed(f"{endpoint}: {why.removeprefix(endpoint.host + ': ')}")

    async def tls(self) -> _Outcome:
        try:
            self._tls = tls_context(self.config.ca_file)
        except (OSError, ssl.SSLError) as error:
            return _failed(f"ca_file {self.config.ca_file}: cannot be used: {_reason(error)}")
        shaken = []
        for endpoint in self.endpoints:
            outcome = await self._handshake(endpoint, self._tls)
            if outcome.status is StepStatus.FAILED:
                return outcome
            shaken.append(outcome.detail)
        return _ok("; ".join(shaken))

    async def _handshake(self, endpoint: _Endpoint, context: ssl.SSLContext) -> _Outcome:
        _, writer = self._streams.pop(endpoint)
        wait = self.config.connect_timeout_seconds
        try:
            await writer.start_tls(
                context, server_hostname=endpoint.host, ssl_handshake_timeout=wait
            )
        except ssl.SSLCertVerificationError as error:
            return _failed(f"{endpoint}: {self._certificate_problem(endpoint, error)}")
        except ssl.SSLError as error:
            return _failed(f"{endpoint}: TLS handshake failed: {_reason(error)}")
        except TimeoutError:
            return _failed(f"{endpoint}: no TLS handshake within {wait:g} s")
        except OSError as error:
            return _failed(f"{endpoint}: the connection ended during the handshake: {error}")
        else:
            return _ok(f"{endpoint}: {_certificate(writer)}")
        finally:
            writer.close()

    def _certificate_problem(self, endpoint: _Endpoint, error: ssl.SSLCertVerificationError) -> str:
        message = error.verify_message or _reason(error)
        trusted = "the system's CAs" + (
            f" and ca_file {self.config.ca_file}" if self.config.ca_file else ""
        )
        code = error.verify_code
        if code in (2, 18, 19, 20, 21):  # no issuer here, self-signed, unable to verify
            return f"certificate refused: {message} (not signed by a CA in {trusted})"
        if code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            return f"certificate refused: {message} (it is not issued for {endpoint.host})"
        if code in (9, 10):  # not yet valid, expired
            return f"certificate refused: {message} (check this box's clock too)"
        return f"certificate refused: {message}"

    # --- token, registerInBulk -----------------------------------------------------------

    async def token(self) -> _Outcome:
        config = self.config
        if config.client_id is None:
            return _failed("[uplink] client_id is not set")
        try:
            key = load_private_key(key_path(config.private_key))
        except CredentialError as error:
            return _failed(str(error))
        self._http = _http_client(config, self._tls or tls_context(config.ca_file))
        self._tokens = TokenProvider(
            self._http, str(config.token_url), config.client_id, key, self._limits
        )
        try:
            await self._tokens.token()
        except TokenError as error:
            hint = ""
            if error.status == 401:
                hint = f" (is the key's certificate registered for client {config.client_id}?)"
            return _failed(f"{error}{hint}")
        except (httpx.HTTPError, TimeoutError) as error:
            return _failed(f"token request to {config.token_url}: {_describe(error)}")
        return _ok(f"a token for client {config.client_id} from {config.token_url}")

    async def register(self) -> _Outcome:
        answer = await self._post([])
        if answer.status == 400 or answer.success:
            got = (
                "400 for an empty list, as the schema says"
                if answer.status == 400
                else (f"{answer.status} for an empty list")
            )
            return _ok(f"{got}: the path and the token's scope are right")
        return _failed(self._refusal(answer))

    async def type_values(self) -> _Outcome:
        ours = self.config.type_values
        other = OTHER_CASE[ours]
        probes = [{"type": wire_type("IN", ours)}, {"type": wire_type("IN", other)}]
        answer = await self._post(probes)
        if answer.success:
            return _Outcome(
                StepStatus.WARNING,
                f"HTTP {answer.status} for items holding only a `type`: this server does not"
                " check the ONSS schema, the case of `type` is not settled by it",
            )
        if answer.status != 400:
            return _failed(self._refusal(answer))
        return _type_verdict(answer, ours, other)

    async def _post(self, items: list[dict[str, str]]) -> Answer:
        assert self._http is not None and self._tokens is not None  # the token step ran
        token = await self._tokens.token()
        request = self._http.build_request(
            "POST",
            self._register_url,
            json={"items": items},
            headers={**ANSWER_HEADERS, "Authorization": f"Bearer {token}"},
        )
        return await exchange(self._http, request, self._limits, Progress())

    @property
    def _register_url(self) -> str:
        return str(self.config.base_url).rstrip("/") + REGISTER_PATH

    def _refusal(self, answer: Answer) -> str:
        problem = answer.json_object()
        kind = str(problem.get("type") or "")[:80]
        detail = str(problem.get("detail") or problem.get("title") or answer.reason)[:200]
        said = f"HTTP {answer.status}{' ' + kind if kind else ''}: {detail}"
        if answer.status == 401:
            return f"{said} (the API refuses the token the token endpoint issued: its scope)"
        if answer.status == 403:
            return f"{said} (the technical user lacks the scope or permission to register)"
        if answer.status in (404, 405):
            return f"{said} (no registerInBulk at {self._register_url}: check base_url)"
        return said


def _type_verdict(answer: Answer, ours: TypeValues, other: TypeValues) -> _Outcome:
    """Which of the two probe items (ours at 0, the other case at 1) a 400 refuses by type."""
    issues = answer.json_object().get("issues")
    names = {
        str(issue.get("name"))
        for issue in (issues if isinstance(issues, list) else [])
        if isinstance(issue, dict)
    }
    ours_refused, other_refused = "items[0].type" in names, "items[1].type" in names
    sent, alternative = wire_type("IN", ours), wire_type("IN", other)
    if other_refused and not ours_refused:
        return _ok(
            f"{sent!r} accepted and {alternative!r} refused: type_values = {ours!r} is right"
        )
    if ours_refused and not other_refused:
        return _failed(
            f"the service refuses type {sent!r} and accepts {alternative!r}:"
            f' set [uplink] type_values = "{other}"'
        )
    if ours_refused:
        return _failed(f"the service refuses both {sent!r} and {alternative!r}")
    return _Outcome(
        StepStatus.WARNING,
        f"the service's 400 named no issue on `type` ({sent!r} and {alternative!r} sent):"
        " the case is not settled by this server",
    )


def _http_client(config: UplinkConfig, context: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=context,
        timeout=httpx.Timeout(
            connect=config.connect_timeout_seconds,
            read=config.read_timeout_seconds,
            write=config.read_timeout_seconds,
            pool=config.connect_timeout_seconds,
        ),
    )


async def _resolve(endpoint: _Endpoint, wait: float) -> list[str]:
    """The host's addresses. In a daemon thread of its own: a resolver that hangs must not
    hold the command's exit (the event loop's executor would be waited for)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[str]] = loop.create_future()

    def settle(result: list[str] | None, error: OSError | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or [])

    def work() -> None:
        try:
            found = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
            result: tuple[list[str] | None, OSError | None] = (_unique(found), None)
        except OSError as error:
            result = (None, error)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, *result)

    threading.Thread(target=work, name="uplink-check-dns", daemon=True).start()
    async with asyncio.timeout(wait):
        return await future


def _unique(found: list[tuple[Any, ...]]) -> list[str]:
    addresses: list[str] = []
    for *_, sockaddr in found:
        if str(sockaddr[0]) not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses


def _certificate(writer: asyncio.StreamWriter) -> str:
    cert = writer.get_extra_info("peercert") or {}
    tls = writer.get_extra_info("ssl_object")
    version = tls.version() if isinstance(tls, ssl.SSLObject) else None
    subject = dict(pair for rdn in cert.get("subject", ()) for pair in rdn)
    name = subject.get("commonName", "?")
    return f"{version or 'TLS'}, certificate of {name!r} valid until {cert.get('notAfter', '?')}"


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _one_line(text: str) -> str:
    """Printable, one line, bounded: a server's words reach the terminal only so."""
    clean = "".join(c if c.isprintable() else " " for c in text)
    return clean if len(clean) <= MAX_DETAIL else clean[: MAX_DETAIL - 1] + "…"
