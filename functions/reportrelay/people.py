"""People signing in: OIDC bearer tokens verified, and the authorization-code flow (PKCE) for browsers.

The issuer is set per deployment (a Cognito user pool by default, any OIDC identity provider by setting;
locally the sandbox's issuer). A person's credential is an ID or access token from that issuer, sent as
``Authorization: Bearer <jwt>`` by scripts, or kept by a browser in an HttpOnly session cookie after the
sign-in flow below. Either way it is verified here, every time: signature (keys from the issuer's JWKS,
RS256/ES256 only, never ``none``), issuer, audience (or, for access tokens, ``client_id``), expiry.

Browser flow: a signed-out person opening a download link is sent to the issuer's authorization endpoint
with a PKCE challenge; the verifier, the state and where to come back to wait in a short-lived HttpOnly
cookie; the issuer redirects to ``/auth/callback``, which checks the state, exchanges the code (with the
verifier) for tokens, keeps the ID token in the session cookie and redirects back to the link.

Settings (environment):
``REPORTRELAY_OIDC_ISSUER``, ``REPORTRELAY_OIDC_CLIENT_ID`` (the audience), ``REPORTRELAY_OIDC_JWKS_URL``
(default ``<issuer>/.well-known/jwks.json``), ``REPORTRELAY_OIDC_AUTHORIZATION_URL`` and
``REPORTRELAY_OIDC_TOKEN_URL`` (default from the issuer's discovery document), ``REPORTRELAY_OIDC_SCOPES``
(default ``openid email profile``), ``REPORTRELAY_PEOPLE_URL`` (this API as people reach it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import requests

from reportrelay import names
from reportrelay.access import Unauthenticated
from reportrelay.errors import ConfigurationError

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384"]
LEEWAY_SECONDS = 30
SESSION_COOKIE = "reportrelay_session"
SIGN_IN_COOKIE = "reportrelay_sign_in"
SIGN_IN_SECONDS = 600
CALLBACK_PATH = "/auth/callback"
HTTP_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    jwks_url: str
    authorization_url: str | None = None
    token_url: str | None = None
    scopes: str = "openid email profile"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OidcSettings | None:
        """The deployment's issuer; None where people cannot sign in (machines only)."""
        env = os.environ if environ is None else environ
        issuer = (env.get(names.OIDC_ISSUER_ENV) or "").rstrip("/")
        if not issuer:
            return None
        client_id = env.get(names.OIDC_CLIENT_ID_ENV) or ""
        if not client_id:
            raise ConfigurationError(
                f"{names.OIDC_CLIENT_ID_ENV} is not set: tokens of issuer " + issuer + " cannot be checked"
            )
        return cls(
            issuer=issuer,
            client_id=client_id,
            jwks_url=env.get(names.OIDC_JWKS_URL_ENV) or f"{issuer}/.well-known/jwks.json",
            authorization_url=env.get(names.OIDC_AUTHORIZATION_URL_ENV) or None,
            token_url=env.get(names.OIDC_TOKEN_URL_ENV) or None,
            scopes=env.get(names.OIDC_SCOPES_ENV) or "openid email profile",
        )


@dataclass
class TokenVerifier:
    """Verifies the issuer's JWTs; keys come from its JWKS (cached, fetched again for an unknown kid)."""

    settings: OidcSettings
    clock: Callable[[], float] = time.time
    _jwks: jwt.PyJWKClient | None = field(default=None, init=False, repr=False)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; ``Unauthenticated`` with one line saying what is wrong otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise Unauthenticated(f"the token's algorithm {algorithm!r} is not accepted (signed tokens only)")
        try:
            key = self._keys().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise Unauthenticated(
                f"the issuer's keys could not be fetched from {self.settings.jwks_url}"
            ) from None
        except jwt.PyJWTError:
            raise Unauthenticated("the token is signed with a key the issuer does not publish") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                issuer=self.settings.issuer,
                options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired; sign in again") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                f"the token was issued by another issuer, not {self.settings.issuer}"
            ) from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"the token has no '{error.claim}' claim") from None
        except jwt.PyJWTError:
            raise Unauthenticated("the token is malformed or its signature does not verify") from None
        if not self._for_us(claims):
            raise Unauthenticated(f"the token is for another audience, not {self.settings.client_id}")
        return claims

    def _for_us(self, claims: Mapping[str, Any]) -> bool:
        """ID tokens name us in ``aud``; Cognito access tokens have no ``aud`` but a ``client_id``."""
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if self.settings.client_id in audiences:
            return True
        return not audiences and claims.get("client_id") == self.settings.client_id

    def _keys(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            self._jwks = jwt.PyJWKClient(self.settings.jwks_url, cache_keys=True, lifespan=300, timeout=10)
        return self._jwks


# ---- the browser flow


@dataclass(frozen=True)
class SignInStart:
    """Where to send the browser, and the cookie that remembers this sign-in until the callback."""

    location: str
    cookie: str


@dataclass(frozen=True)
class SignInDone:
    """Where to send the browser back to, and the cookies that keep it signed in."""

    location: str
    cookies: list[str]


def bearer_token(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = (_header(headers, "authorization") or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def session_token(headers: Mapping[str, str]) -> str | None:
    return _cookies(headers).get(SESSION_COOKIE) or None


def start_sign_in(settings: OidcSettings, people_url: str, return_to: str) -> SignInStart:
    """Send the browser to the issuer with a PKCE challenge; ``return_to`` is a path of this API."""
    if not return_to.startswith("/") or return_to.startswith("//"):
        return_to = "/"
    verifier = _b64(secrets.token_bytes(32))
    state = _b64(secrets.token_bytes(16))
    challenge = _b64(hashlib.sha256(verifier.encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": people_url + CALLBACK_PATH,
            "scope": settings.scopes,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    remembered = _b64(json.dumps({"s": state, "v": verifier, "r": return_to}).encode())
    cookie = _cookie(SIGN_IN_COOKIE, remembered, people_url, SIGN_IN_SECONDS)
    return SignInStart(f"{_endpoints(settings)[0]}?{query}", cookie)


def finish_sign_in(
    verifier: TokenVerifier,
    people_url: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
) -> SignInDone:
    """The issuer came back with a code: check the state, exchange the code, keep the ID token."""
    if query.get("error"):
        raise Unauthenticated(f"the sign-in was refused by the identity provider: {query['error'][:100]}")
    try:
        remembered = json.loads(base64.urlsafe_b64decode(_padded(_cookies(headers)[SIGN_IN_COOKIE])))
        state, code_verifier, return_to = remembered["s"], remembered["v"], remembered["r"]
    except (KeyError, ValueError, TypeError):
        raise Unauthenticated(
            "this sign-in was not started here (or took too long); open the link again"
        ) from None
    if not secrets.compare_digest(str(query.get("state") or ""), str(state)) or not query.get("code"):
        raise Unauthenticated(
            "the sign-in answer does not match the sign-in started here; open the link again"
        )
    tokens = _exchange(verifier.settings, people_url, query["code"], code_verifier)
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str):
        raise Unauthenticated("the identity provider answered without an ID token")
    claims = verifier.verify(id_token)
    lifetime = max(0, int(claims["exp"] - time.time()))
    return SignInDone(
        location=people_url + return_to,
        cookies=[
            _cookie(SESSION_COOKIE, id_token, people_url, lifetime),
            _cookie(SIGN_IN_COOKIE, "", people_url, 0),
        ],
    )


def _exchange(settings: OidcSettings, people_url: str, code: str, code_verifier: str) -> dict[str, Any]:
    try:
        answer = requests.post(
            _endpoints(settings)[1],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": people_url + CALLBACK_PATH,
                "client_id": settings.client_id,
                "code_verifier": code_verifier,
            },
            timeout=HTTP_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.RequestException:
        raise Unauthenticated("the identity provider could not be reached to finish the sign-in") from None
    if answer.status_code != 200:
        raise Unauthenticated(f"the identity provider refused the sign-in code (HTTP {answer.status_code})")
    try:
        tokens: dict[str, Any] = answer.json()
    except ValueError:
        raise Unauthenticated("the identity provider's token answer is not JSON") from None
    return tokens


_DISCOVERED: dict[str, tuple[str, str]] = {}


def _endpoints(settings: OidcSettings) -> tuple[str, str]:
    """(authorization URL, token URL): as set, or from the issuer's discovery document."""
    if settings.authorization_url and settings.token_url:
        return settings.authorization_url, settings.token_url
    if settings.issuer not in _DISCOVERED:
        try:
            document = requests.get(
                f"{settings.issuer}/.well-known/openid-configuration", timeout=HTTP_TIMEOUT_SECONDS
            ).json()
            _DISCOVERED[settings.issuer] = (document["authorization_endpoint"], document["token_endpoint"])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            raise ConfigurationError(
                f"the issuer {settings.issuer} publishes no usable discovery document; set "
                "REPORTRELAY_OIDC_AUTHORIZATION_URL and REPORTRELAY_OIDC_TOKEN_URL"
            ) from None
    authorization, token = _DISCOVERED[settings.issuer]
    return settings.authorization_url or authorization, settings.token_url or token


def _cookie(name: str, value: str, people_url: str, max_age: int) -> str:
    """HttpOnly, SameSite=Lax (the issuer's redirect back is a top-level GET), Secure unless plain http."""
    parts = urlsplit(people_url)
    attributes = [
        f"{name}={value}",
        f"Path={parts.path or '/'}",
        f"Max-Age={max_age}",
        "HttpOnly",
        "SameSite=Lax",
    ]
    if parts.scheme == "https":
        attributes.append("Secure")
    return "; ".join(attributes)


def _cookies(headers: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in (_header(headers, "cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name and name not in found:
            found[name] = value
    return found


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)
