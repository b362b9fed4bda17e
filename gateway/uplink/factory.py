"""`open_uplink`: the uplink built from the configuration. TLS always verified (the system's
CAs, plus an optional extra bundle), HTTP/1.1 keep-alive, timeouts on every phase, one
deadline for each whole request and a cap on each answer's size (`answers.AnswerLimits`)."""

from __future__ import annotations

import httpx

from gateway.clock import Clock
from gateway.config import UplinkConfig
from gateway.journal import UplinkQueue
from gateway.system.credentials import key_path, load_private_key
from gateway.uplink.answers import AnswerLimits
from gateway.uplink.client import OnssClient
from gateway.uplink.sender import Uplink, UplinkPolicy
from gateway.uplink.tls import tls_context
from gateway.uplink.token import TokenProvider


def open_uplink(
    config: UplinkConfig, journal: UplinkQueue, clock: Clock
) -> tuple[Uplink, httpx.AsyncClient]:
    """The uplink and its HTTP client (close it on stop). Raises CredentialError."""
    assert config.client_id is not None  # the configuration requires it when enabled
    key = load_private_key(key_path(config.private_key))
    http = httpx.AsyncClient(
        verify=tls_context(config.ca_file),
        timeout=httpx.Timeout(
            connect=config.connect_timeout_seconds,
            read=config.read_timeout_seconds,
            write=config.read_timeout_seconds,
            pool=config.connect_timeout_seconds,
        ),
        limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
    )
    limits = AnswerLimits(config.max_answer_bytes, config.request_deadline_seconds)
    tokens = TokenProvider(http, config.token_url, config.client_id, key, limits)
    policy = UplinkPolicy(
        batch_size=config.batch_size,
        late_after_ns=int(config.late_after_minutes * 60e9),
        backoff_initial=config.backoff_initial_seconds,
        backoff_max=config.backoff_max_seconds,
        type_values=config.type_values,
    )
    uplink = Uplink(
        journal=journal,
        clock=clock,
        client=OnssClient(http, config.base_url, tokens, limits),
        policy=policy,
    )
    return uplink, http
