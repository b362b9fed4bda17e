"""`open_uplink`: the uplink built from the configuration. TLS always verified (the system's
CAs, plus an optional extra bundle), HTTP/1.1 keep-alive, timeouts on every phase."""

from __future__ import annotations

import ssl

import httpx

from gateway.clock import Clock
from gateway.config import UplinkConfig
from gateway.journal import UplinkQueue
from gateway.system.credentials import key_path, load_private_key
from gateway.uplink.client import OnssClient
from gateway.uplink.sender import Uplink, UplinkPolicy
from gateway.uplink.token import TokenProvider


def open_uplink(
    config: UplinkConfig, journal: UplinkQueue, clock: Clock
) -> tuple[Uplink, httpx.AsyncClient]:
    """The uplink and its HTTP client (close it on stop). Raises CredentialError."""
    assert config.client_id is not None  # the configuration requires it when enabled
    key = load_private_key(key_path(config.private_key))
    tls = ssl.create_default_context()
    if config.ca_file is not None:
        tls.load_verify_locations(cafile=config.ca_file)
    http = httpx.AsyncClient(
        verify=tls,
        timeout=httpx.Timeout(
            connect=config.connect_timeout_seconds,
            read=config.read_timeout_seconds,
            write=config.read_timeout_seconds,
            pool=config.connect_timeout_seconds,
        ),
        limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
    )
    tokens = TokenProvider(http, config.token_url, config.client_id, key)
    policy = UplinkPolicy(
        batch_size=config.batch_size,
        late_after_ns=int(config.late_after_minutes * 60e9),
        backoff_initial=config.backoff_initial_seconds,
        backoff_max=config.backoff_max_seconds,
    )
    uplink = Uplink(
        journal=journal,
        clock=clock,
        client=OnssClient(http, config.base_url, tokens),
        policy=policy,
    )
    return uplink, http
