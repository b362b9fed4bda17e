"""The OAuth2 token endpoint: client credentials with a signed JWT (RFC 7523), and bearer checks.

Not thread-safe: the caller holds the simulator's lock. Times are wall-clock seconds
(`time.time()`), the clock of JWT claims.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHM = "RS256"
MAX_ASSERTION_LIFETIME_S = 300
MAX_IAT_AHEAD_S = 60
EXPIRED_TOKENS_KEPT_S = 24 * 3600  # an expired token is still recognised as "expired" this long


class TokenError(Exception):
    """The token request is refused: an RFC 6749 §5.2 error."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class AccessDenied(Exception):  # noqa: N818 (reads as "raise AccessDenied")
    """The bearer token is missing, unknown or expired: `problem` names the belgif type."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True)
class Client:
    """A registered technical user."""

    client_id: str
    certificate_pem: str
    public_key: RSAPublicKey
    permitted: bool


@dataclass(frozen=True)
class AccessToken:
    client_id: str
    expires_at: float


def invalid_request(description: str) -> TokenError:
    return TokenError(400, "invalid_request", description)


def invalid_client(description: str) -> TokenError:
    return TokenError(401, "invalid_client", description)


def invalid_grant(description: str) -> TokenError:
    return TokenError(400, "invalid_grant", description)


class TokenService:
    """Registered clients, the jtis seen, the access tokens handed out."""

    def __init__(self, token_url: str) -> None:
        self.token_url = token_url
        self.clients: dict[str, Client] = {}
        self._jtis: dict[str, float] = {}  # jti -> exp of its assertion
        self._tokens: dict[str, AccessToken] = {}

    def add_client(self, client_id: str, certificate_pem: str, permitted: bool) -> Client:
        """Register (or replace) a client; ValueError if the certificate holds no RSA key."""
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        key = certificate.public_key()
        if not isinstance(key, RSAPublicKey):
            raise ValueError("the certificate's key must be RSA (assertions are RS256)")
        client = Client(client_id, certificate_pem, key, permitted)
        self.clients[client_id] = client
        return client

    def issue(self, form: Mapping[str, list[str]], now: float, lifetime_s: float) -> dict[str, Any]:
        """The token answer for a form-encoded request; TokenError if refused."""
        assertion = _assertion_of(form)
        client = self._client_of(assertion)
        claims = _verified_claims(assertion, client)
        self._check_claims(claims, now)
        self._remember_jti(claims["jti"], claims["exp"], now)
        token = secrets.token_urlsafe(32)
        self._tokens[token] = AccessToken(client.client_id, now + lifetime_s)
        self._forget_old_tokens(now)
        # expires_in is rounded down: a client never believes a token lives longer than it does
        return {"access_token": token, "token_type": "Bearer", "expires_in": int(lifetime_s)}

    def authenticate(self, authorization: str | None, now: float) -> Client:
        """The client a bearer token was issued to; AccessDenied if there is no valid one."""
        if not authorization:
            raise AccessDenied("noAccessToken", "no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AccessDenied("noAccessToken", "the Authorization header holds no Bearer token")
        record = self._tokens.get(token)
        if record is None:
            raise AccessDenied("invalidAccessToken", "unknown access token")
        if record.expires_at <= now:
            raise AccessDenied("expiredAccessToken", "the access token has expired")
        return self.clients[record.client_id]

    def _client_of(self, assertion: str) -> Client:
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.InvalidTokenError as error:
            raise invalid_request(f"client_assertion is not a JWT: {error}") from None
        if header.get("alg") != ALGORITHM:
            raise invalid_client(f"the assertion must be signed {ALGORITHM}")
        issuer, subject = claims.get("iss"), claims.get("sub")
        if not isinstance(issuer, str) or issuer != subject:
            raise invalid_client("iss and sub must both be the client id")
        client = self.clients.get(issuer)
        if client is None:
            raise invalid_client(f"unknown client {issuer}")
        return client

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        exp, iat, jti = _number(claims, "exp"), _number(claims, "iat"), claims.get("jti")
        if exp is None or iat is None:
            raise invalid_grant("exp and iat are required, as numbers")
        if exp <= now:
            raise invalid_grant("the assertion has expired")
        if exp - iat > MAX_ASSERTION_LIFETIME_S:
            raise invalid_grant(f"the assertion lives over {MAX_ASSERTION_LIFETIME_S} s")
        if iat > now + MAX_IAT_AHEAD_S:
            raise invalid_grant("the assertion was issued in the future (iat)")
        nbf = _number(claims, "nbf")
        if "nbf" in claims and (nbf is None or nbf > now + MAX_IAT_AHEAD_S):
            raise invalid_grant("the assertion is not valid yet (nbf)")
        if not _audience_matches(claims.get("aud"), self.token_url):
            raise invalid_grant(f"aud must be {self.token_url}")
        if not isinstance(jti, str) or not jti:
            raise invalid_grant("jti is required")
        if jti in self._jtis:
            raise invalid_grant("jti already used (replayed assertion)")

    def _remember_jti(self, jti: str, exp: float, now: float) -> None:
        self._jtis = {seen: until for seen, until in self._jtis.items() if until > now}
        self._jtis[jti] = exp

    def _forget_old_tokens(self, now: float) -> None:
        horizon = now - EXPIRED_TOKENS_KEPT_S
        self._tokens = {key: t for key, t in self._tokens.items() if t.expires_at > horizon}


def _assertion_of(form: Mapping[str, list[str]]) -> str:
    values = {}
    for name in ("grant_type", "client_assertion_type", "client_assertion"):
        given = form.get(name, [])
        if len(given) != 1 or not given[0]:
            raise invalid_request(f"{name} is required, once")
        values[name] = given[0]
    if values["grant_type"] != "client_credentials":
        raise TokenError(400, "unsupported_grant_type", "grant_type must be client_credentials")
    if values["client_assertion_type"] != ASSERTION_TYPE:
        raise invalid_request(f"client_assertion_type must be {ASSERTION_TYPE}")
    return values["client_assertion"]


def _verified_claims(assertion: str, client: Client) -> dict[str, Any]:
    """The claims, once the signature is checked against the client's certificate."""
    try:
        payload = jwt.PyJWS().decode(assertion, client.public_key, algorithms=[ALGORITHM])
    except jwt.InvalidTokenError as error:
        raise invalid_client(f"bad assertion signature: {error}") from None
    claims = json.loads(payload)
    if not isinstance(claims, dict):
        raise invalid_request("the assertion's payload must be a JSON object")
    return claims


def _audience_matches(audience: Any, token_url: str) -> bool:
    if isinstance(audience, str):
        return audience == token_url
    return isinstance(audience, list) and token_url in audience


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
