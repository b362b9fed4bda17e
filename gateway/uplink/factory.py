"""`open_uplink`: the uplink built from the configuration, for the site's channel. TLS always
verified (the system's CAs, plus an optional extra bundle), HTTP/1.1 keep-alive, timeouts
on every phase, one deadline for each whole request and a cap on each answer's size
(`answers.AnswerLimits`). The service is CIaO's REST one (`CiaoService`); Checkinatwork's
comes from gateway.checkinatwork (`open_presence_service`), handed in by the caller, since
this package never imports it."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from gateway.clock import Clock
from gateway.config import UplinkConfig
from gateway.journal import UplinkQueue
from gateway.system.credentials import key_path, load_private_key
from gateway.uplink.answers import AnswerLimits
from gateway.uplink.ciao import CiaoService
from gateway.uplink.client import OnssClient
from gateway.uplink.sender import Uplink, UplinkPolicy
from gateway.uplink.service import Service
from gateway.uplink.tls import tls_context
from gateway.uplink.token import TokenProvider

# The service the uplink sends to, built on the uplink's HTTP client and limits.
ServiceFactory = Callable[[httpx.AsyncClient, AnswerLimits], Service]


def open_uplink(
    config: UplinkConfig,
    journal: UplinkQueue,
    clock: Clock,
    service: ServiceFactory | None = None,
) -> tuple[Uplink, httpx.AsyncClient]:
    """The uplink and its HTTP client (close it on stop); CIaO's service unless another is
    given. Raises CredentialError."""
    make_service = service or (lambda http, limits: ciao_service(config, http, limits))
    limits = AnswerLimits(config.max_answer_bytes, config.request_deadline_seconds)
    http = http_client(config)
    chosen = make_service(http, limits)  # a key that cannot be read raises: nothing opened yet
    policy = UplinkPolicy(
        batch_size=config.batch_size,
        late_after_ns=int(config.late_after_minutes * 60e9),
        backoff_initial=config.backoff_initial_seconds,
        backoff_max=config.backoff_max_seconds,
    )
    return Uplink(journal=journal, clock=clock, service=chosen, policy=policy), http


def http_client(config: UplinkConfig) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=tls_context(config.ca_file),
        timeout=httpx.Timeout(
            connect=config.connect_timeout_seconds,
            read=config.read_timeout_seconds,
            write=config.read_timeout_seconds,
            pool=config.connect_timeout_seconds,
        ),
        limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
    )


def ciao_service(config: UplinkConfig, http: httpx.AsyncClient, limits: AnswerLimits) -> Service:
    assert config.client_id is not None  # the configuration requires it for CIaO
    key = load_private_key(key_path(config.private_key))
    tokens = TokenProvider(http, config.token_url, config.client_id, key, limits)
    client = OnssClient(http, config.base_url, tokens, limits)
    return CiaoService(client, config.type_values)
