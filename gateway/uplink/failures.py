"""How a call that got no answer failed, named for the outage evidence and classified:
shared by the REST client (`client.py`) and the Checkinatwork SOAP client
(`gateway.checkinatwork.client`), which must agree on when a request may have reached the
ONSS."""

from __future__ import annotations

import ssl

import httpx

from gateway.errors import AmbiguousError, RetryableError


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:300]}" if str(error) else type(error).__name__


def network_failure(error: httpx.HTTPError | TimeoutError, sent: bool) -> RetryableError:
    """Name the cause (for the outage evidence) and whether the ONSS may have the request:
    yes once it was written in full (or the failure is one that only follows sending)."""
    after_sending = httpx.ReadTimeout | httpx.RemoteProtocolError | httpx.ReadError
    kind = AmbiguousError if sent or isinstance(error, after_sending) else RetryableError
    return kind(cause(error), describe(error))


def cause(error: BaseException) -> str:
    if isinstance(error, httpx.TimeoutException | TimeoutError):
        return "timeout"
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "tls"
    text = " ".join(str(e) for e in chain).lower()
    if "name or service not known" in text or "name resolution" in text or "nodename" in text:
        return "dns"
    if isinstance(error, httpx.ConnectError):
        return "tcp"
    return "connection"
