"""OAuth2 client credentials with a signed JWT client assertion (docs/onss-api.md,
"Authentication").

The access token is cached and renewed a margin before it expires; a 401 from the
service invalidates it so the next request asks for a fresh one. The token request is read
like any answer (capped, one deadline); its refusals carry the endpoint's Retry-After.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from gateway.errors import TokenError
from gateway.uplink.answers import ANSWER_HEADERS, AnswerLimits, Progress, exchange

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # seconds, the most the ONSS accepts
RENEW_MARGIN = 60  # seconds before expiry


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: float  # time.monotonic()
    fetched_at: float  # time.monotonic()


class TokenProvider:
    def __init__(
        self,
        http: httpx.AsyncClient,
        token_url: str,
        client_id: str,
        key: RSAPrivateKey,
        limits: AnswerLimits | None = None,
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._client_id = client_id
        self._key = key
        self._limits = limits or AnswerLimits()
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": self._token_url,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"typ": "JWT"})

    async def token(self) -> str:
        """The cached token, or a fresh one. Raises TokenError (refused, with the
        endpoint's Retry-After), httpx.HTTPError or TimeoutError (no answer)."""
        async with self._lock:
            if self._token is None or time.monotonic() >= self._token.expires_at:
                self._token = await self._fetch()
            return self._token.value

    def fetched_since(self, monotonic: float) -> bool:
        """Whether the current token was fetched at or after `monotonic`."""
        return self._token is not None and self._token.fetched_at >= monotonic

    def invalidate(self) -> None:
        self._token = None

    async def _fetch(self) -> _Token:
        asked_at = time.monotonic()
        request = self._http.build_request(
            "POST",
            self._token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(),
            },
            headers=ANSWER_HEADERS,
        )
        answer = await exchange(self._http, request, self._limits, Progress())
        body = answer.json_object()
        if answer.status != 200:
            reason = body.get("error_description") or body.get("error") or answer.reason
            raise TokenError(
                f"token endpoint: HTTP {answer.status}: {str(reason)[:300]}",
                answer.status,
                answer.retry_after(),
            )
        value, lifetime = body.get("access_token"), body.get("expires_in")
        if (
            not isinstance(value, str)
            or isinstance(lifetime, bool)
            or not isinstance(lifetime, int | float)
            or not 0 < lifetime < 10**9
        ):
            why = answer.problem or "an answer without access_token/expires_in"
            raise TokenError(f"token endpoint: {why}", 200)
        expires = asked_at + max(lifetime - RENEW_MARGIN, lifetime / 2)
        return _Token(value, expires, asked_at)
