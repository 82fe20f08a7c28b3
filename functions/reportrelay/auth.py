"""How requests to a provider are signed: shared by every provider, chosen by the connection's ``auth``.

Each strategy produces the headers for the next request and says whether signing in again could help
after a 401. Tokens from a sign-in are cached per process (warm Lambdas reuse them) and renewed shortly
before they expire, so a long job never sends a token it knows to be stale.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import requests

from reportrelay.config import (
    AuthConfig,
    BasicAuth,
    BearerAuth,
    Connection,
    HeaderAuth,
    NoAuth,
    OAuthPasswordAuth,
    SecretResolver,
)
from reportrelay.errors import ProviderAuthFailed, ProviderProtocolError, ProviderUnavailable
from reportrelay.httpclient import error_for_response

RENEW_BEFORE_EXPIRY_SECONDS = 60
RENEW_BEFORE_EXPIRY_FRACTION = 0.1  # short-lived tokens renew in their last tenth instead


class Auth(Protocol):
    def headers(self) -> dict[str, str]:
        """Headers that authenticate the next request."""
        ...

    def renew(self) -> bool:
        """Forget the current credentials after a 401; True when a new sign-in might succeed."""
        ...


class StaticHeaders:
    """Credentials that never change: bearer tokens, basic auth, API-key headers, or nothing."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def renew(self) -> bool:
        return False


@dataclass
class IssuedToken:
    value: str
    expires_at: float
    lifetime: float

    def usable(self, now: float) -> bool:
        margin = min(RENEW_BEFORE_EXPIRY_SECONDS, self.lifetime * RENEW_BEFORE_EXPIRY_FRACTION)
        return now < self.expires_at - margin


TokenRequest = Callable[[], IssuedToken]

_token_cache: dict[tuple[str, ...], IssuedToken] = {}
_token_cache_lock = threading.Lock()


class CachedToken:
    """A bearer token obtained by a sign-in call, kept until shortly before it expires or until a 401."""

    def __init__(self, cache_key: tuple[str, ...], request_token: TokenRequest, clock=time.time) -> None:
        self._cache_key = cache_key
        self._request_token = request_token
        self._clock = clock

    def headers(self) -> dict[str, str]:
        with _token_cache_lock:
            token = _token_cache.get(self._cache_key)
            if token is None or not token.usable(self._clock()):
                token = self._request_token()
                _token_cache[self._cache_key] = token
        return {"Authorization": f"Bearer {token.value}"}

    def renew(self) -> bool:
        with _token_cache_lock:
            _token_cache.pop(self._cache_key, None)
        return True


def forget_cached_tokens() -> None:
    """Drop every cached token (tests, and processes that switch accounts)."""
    with _token_cache_lock:
        _token_cache.clear()


def oauth_password_grant(
    session: requests.Session,
    token_url: str,
    form: dict[str, str],
    timeout: tuple[float, float],
    verify: bool,
    clock=time.time,
) -> IssuedToken:
    """POST an OAuth2 password grant and read ``access_token`` / ``expires_in`` from the answer."""
    try:
        response = session.post(token_url, data=form, timeout=timeout, verify=verify)
    except requests.RequestException as error:
        raise ProviderUnavailable(f"sign-in at {_path(token_url)} failed: {type(error).__name__}") from None
    if response.status_code in (400, 401, 403):
        raise ProviderAuthFailed(
            f"sign-in at {_path(token_url)} was refused (HTTP {response.status_code}): "
            f"{_oauth_error_text(response)}; check the connection's username and password secret"
        )
    if response.status_code >= 300:
        raise error_for_response(response, "sign-in")
    try:
        body = response.json()
        value = body["access_token"]
        lifetime = float(body.get("expires_in", 3600))
    except (ValueError, KeyError, TypeError):
        raise ProviderProtocolError(
            f"sign-in at {_path(token_url)} answered without an access_token"
        ) from None
    return IssuedToken(value=str(value), expires_at=clock() + lifetime, lifetime=lifetime)


def _oauth_error_text(response: requests.Response) -> str:
    try:
        body = response.json()
        return str(body.get("error_description") or body.get("error") or body)[:300]
    except ValueError:
        return response.text[:300] or response.reason or "no details"


def _path(url: str) -> str:
    return requests.utils.urlparse(url).path


def build_auth(connection: Connection, secrets: SecretResolver, session: requests.Session) -> Auth:
    """The signing strategy a connection asks for, with its secrets resolved here and nowhere else."""
    config: AuthConfig = connection.auth
    where = f"connections.{connection.name}.auth"
    if isinstance(config, NoAuth):
        return StaticHeaders({})
    if isinstance(config, BearerAuth):
        return StaticHeaders({"Authorization": f"Bearer {secrets.resolve(config.token, f'{where}.token')}"})
    if isinstance(config, BasicAuth):
        password = secrets.resolve(config.password, f"{where}.password")
        pair = base64.b64encode(f"{config.username}:{password}".encode()).decode()
        return StaticHeaders({"Authorization": f"Basic {pair}"})
    if isinstance(config, HeaderAuth):
        value = secrets.resolve(config.value, f"{where}.value")
        return StaticHeaders({config.header: f"{config.prefix}{value}"})
    if isinstance(config, OAuthPasswordAuth):
        form = {"grant_type": "password", "username": config.username, "password": ""}
        if config.password is not None:
            form["password"] = secrets.resolve(config.password, f"{where}.password")
        if config.client_id:
            form["client_id"] = config.client_id
        if config.client_secret is not None:
            form["client_secret"] = secrets.resolve(config.client_secret, f"{where}.client_secret")
        if config.scope:
            form["scope"] = config.scope
        token_url = connection.base_url.rstrip("/") + "/" + config.token_path.lstrip("/")
        timeout = (connection.timeouts.connect_seconds, connection.timeouts.read_seconds)
        return CachedToken(
            cache_key=(connection.name, token_url, config.username),
            request_token=lambda: oauth_password_grant(
                session, token_url, form, timeout, connection.verify_tls
            ),
        )
    raise AssertionError(f"unhandled auth config {type(config).__name__}")
