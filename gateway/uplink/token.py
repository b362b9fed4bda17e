"""OAuth2 client credentials with a signed JWT client assertion (docs/onss-api.md,
"Authentication").

The access token is cached and renewed a margin before it expires; a 401 from the
service invalidates it so the next request asks for a fresh one.
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
from gateway.uplink.answers import json_object

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # seconds, the most the ONSS accepts
RENEW_MARGIN = 60  # seconds before expiry


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: float  # time.monotonic()


class TokenProvider:
    def __init__(
        self, http: httpx.AsyncClient, token_url: str, client_id: str, key: RSAPrivateKey
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._client_id = client_id
        self._key = key
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
        async with self._lock:
            if self._token is None or time.monotonic() >= self._token.expires_at:
                self._token = await self._fetch()
            return self._token.value

    def invalidate(self) -> None:
        self._token = None

    async def _fetch(self) -> _Token:
        asked_at = time.monotonic()
        response = await self._http.post(
            self._token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(),
            },
            headers={"Accept": "application/json"},
        )
        body = json_object(response)
        if response.status_code != 200:
            reason = body.get("error_description") or body.get("error") or response.reason_phrase
            raise TokenError(
                f"token endpoint: HTTP {response.status_code}: {reason}", response.status_code
            )
        value, lifetime = body.get("access_token"), body.get("expires_in")
        if not isinstance(value, str) or not isinstance(lifetime, int | float) or lifetime <= 0:
            raise TokenError("token endpoint: answer without access_token/expires_in", 200)
        return _Token(value, asked_at + max(lifetime - RENEW_MARGIN, lifetime / 2))
