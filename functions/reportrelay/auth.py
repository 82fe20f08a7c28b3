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
from datetime import UTC, datetime
from typing import Any, Protocol

import requests

from reportrelay.config import (
    AppTokenAuth,
    AuthConfig,
    BasicAuth,
    BearerAuth,
    Connection,
    HeaderAuth,
    NoAuth,
    OAuthClientCredentialsAuth,
    OAuthPasswordAuth,
    OAuthRefreshTokenAuth,
    SecretResolver,
)
from reportrelay.errors import (
    ConfigurationError,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from reportrelay.httpclient import error_for_response, html_page_error, transport_error
from reportrelay.observability import logger

RENEW_BEFORE_EXPIRY_SECONDS = 60
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600.0
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
#: Refresh tokens a login host handed back in place of the configured one (rotating refresh tokens).
_rotated_refresh_tokens: dict[tuple[str, ...], str] = {}
_rotated_lock = threading.Lock()  # separate: sign-ins run while _token_cache_lock is held


class CachedToken:
    """A bearer token obtained by a sign-in call, kept until shortly before it expires or until a 401."""

    def __init__(
        self,
        cache_key: tuple[str, ...],
        request_token: TokenRequest,
        *,
        header: str = "Authorization",
        prefix: str = "Bearer ",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache_key = cache_key
        self._request_token = request_token
        self._header = header
        self._prefix = prefix
        self._clock = clock

    def headers(self) -> dict[str, str]:
        with _token_cache_lock:
            token = _token_cache.get(self._cache_key)
            if token is None or not token.usable(self._clock()):
                token = self._request_token()
                _token_cache[self._cache_key] = token
        return {self._header: f"{self._prefix}{token.value}"}

    def renew(self) -> bool:
        with _token_cache_lock:
            _token_cache.pop(self._cache_key, None)
        return True


def forget_cached_tokens() -> None:
    """Drop every cached token (tests, and processes that switch accounts)."""
    with _token_cache_lock:
        _token_cache.clear()
    with _rotated_lock:
        _rotated_refresh_tokens.clear()


def request_token(
    session: requests.Session,
    token_url: str,
    *,
    timeout: tuple[float, float],
    verify: bool,
    form: dict[str, str] | None = None,
    json_body: dict[str, str] | None = None,
    basic: tuple[str, str] | None = None,
    token_field: str = "access_token",
    clock: Callable[[], float] = time.time,
    repeatable: bool = True,
) -> tuple[IssuedToken, dict[str, Any]]:
    """POST a sign-in request and read the token and its lifetime; returns the whole answer too.

    A sign-in with credentials changes nothing at the vendor, so one that got no answer or broke off is
    ``ProviderUnavailable``: the step repeats it. A refresh-token redemption is not ``repeatable``: a host
    that rotates refresh tokens may have voided the one sent before its answer was lost.
    """
    where = f"sign-in at {_path(token_url)}"
    try:
        response = session.post(
            token_url,
            data=form,
            json=json_body,
            auth=basic,
            timeout=timeout,
            verify=verify,
            allow_redirects=False,
        )
    except requests.RequestException as error:
        failure = transport_error(error, action="sign-in", method="POST", url=token_url, timeout=timeout)
        if repeatable and isinstance(failure, ProviderTimeout | ProviderServerError):
            raise ProviderUnavailable(
                f"{failure} (a sign-in changes nothing, so it is safe to repeat)"
            ) from None
        raise failure from None
    if response.status_code in (400, 401, 403):
        raise ProviderAuthFailed(
            f"{where} was refused (HTTP {response.status_code}): {_sign_in_error_text(response)}; "
            "check the connection's credentials and their secrets"
        )
    if response.status_code >= 300:
        raise error_for_response(response, "sign-in")
    if (page := html_page_error(response, "sign-in")) is not None:
        raise page
    try:
        body = response.json()
        value = body[token_field]
    except (ValueError, KeyError, TypeError):
        raise ProviderProtocolError(f"{where} answered without a {token_field}") from None
    now = clock()
    lifetime = _lifetime_seconds(body, now)
    return IssuedToken(value=str(value), expires_at=now + lifetime, lifetime=lifetime), body


def _lifetime_seconds(body: dict[str, Any], now: float) -> float:
    """``expires_in`` seconds (OAuth2), or ``expires`` as seconds, epoch or ISO time; one hour if absent."""
    if isinstance(body.get("expires_in"), int | float | str):
        try:
            return max(0.0, float(body["expires_in"]))
        except ValueError:
            pass
    expires = body.get("expires")
    if isinstance(expires, int | float):
        return max(0.0, expires - now) if expires > 1e9 else float(expires)
    if isinstance(expires, str):
        try:
            moment = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        except ValueError:
            return DEFAULT_TOKEN_LIFETIME_SECONDS
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, moment.timestamp() - now)
    return DEFAULT_TOKEN_LIFETIME_SECONDS


def _sign_in_error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300] or response.reason or "no details"
    if isinstance(body, dict):
        return str(body.get("error_description") or body.get("message") or body.get("error") or body)[:300]
    return str(body)[:300]


def _path(url: str) -> str:
    return requests.utils.urlparse(url).path


def build_auth(
    connection: Connection,
    secrets: SecretResolver,
    session: requests.Session,
    *,
    verify: bool | str | None = None,
) -> Auth:
    """The signing strategy a connection asks for, with its secrets resolved here and nowhere else.

    ``verify`` is the connection's TLS verification (``reportrelay.tls``); by default its ``verify_tls``.
    """
    config: AuthConfig = connection.auth
    tls = connection.verify_tls if verify is None else verify
    where = f"connections.{connection.name}.auth"

    def secret(ref: Any, field: str) -> str:
        return secrets.resolve(ref, f"{where}.{field}")

    if isinstance(config, NoAuth):
        return StaticHeaders({})
    if isinstance(config, BearerAuth):
        return StaticHeaders({"Authorization": f"Bearer {secret(config.token, 'token')}"})
    if isinstance(config, BasicAuth):
        pair = base64.b64encode(f"{config.username}:{secret(config.password, 'password')}".encode()).decode()
        return StaticHeaders({"Authorization": f"Basic {pair}"})
    if isinstance(config, HeaderAuth):
        return StaticHeaders({config.header: f"{config.prefix}{secret(config.value, 'value')}"})

    timeout = (connection.timeouts.connect_seconds, connection.timeouts.read_seconds)
    token_url = _absolute(connection.base_url, config.token_url)
    if isinstance(config, AppTokenAuth):
        body = {
            "application_id": config.application_id,
            "application_key": secret(config.application_key, "application_key"),
            "user": config.user,
        }
        return CachedToken(
            cache_key=(connection.name, token_url, config.user),
            request_token=lambda: request_token(
                session,
                token_url,
                timeout=timeout,
                verify=tls,
                json_body=body,
                token_field="token",
            )[0],
            header=config.header,
            prefix="",
        )

    form: dict[str, str] = {}
    basic = None
    if config.client_id:
        client_secret = secret(config.client_secret, "client_secret") if config.client_secret else ""
        if config.client_auth == "basic":
            basic = (config.client_id, client_secret)
        else:
            form["client_id"] = config.client_id
            if config.client_secret:
                form["client_secret"] = client_secret
    if config.scope:
        form["scope"] = config.scope
    if isinstance(config, OAuthPasswordAuth):
        form.update(grant_type="password", username=config.username, password="")
        if config.password is not None:
            form["password"] = secret(config.password, "password")
        subject = config.username
    elif isinstance(config, OAuthClientCredentialsAuth):
        form["grant_type"] = "client_credentials"
        subject = config.client_id or ""
    elif isinstance(config, OAuthRefreshTokenAuth):
        return _refresh_token_auth(connection, config, secrets, session, form, basic, token_url, timeout, tls)
    else:
        raise AssertionError(f"unhandled auth config {type(config).__name__}")

    def sign_in() -> IssuedToken:
        return request_token(session, token_url, timeout=timeout, verify=tls, form=form, basic=basic)[0]

    return CachedToken(cache_key=(connection.name, token_url, config.type, subject), request_token=sign_in)


def _refresh_token_auth(
    connection: Connection,
    config: OAuthRefreshTokenAuth,
    secrets: SecretResolver,
    session: requests.Session,
    form: dict[str, str],
    basic: tuple[str, str] | None,
    token_url: str,
    timeout: tuple[float, float],
    tls: bool | str,
) -> CachedToken:
    """Refresh-token grant that survives rotation: a login host may void each refresh token it redeems.

    The replacement is used by this process from then on and written back to the connection's secret, so
    the job's next step (another Lambda) and the next job start from it. When a refresh token is refused,
    the secret is read again once: another process may have rotated it in the meantime.
    """
    field = f"connections.{connection.name}.auth.refresh_token"
    cache_key = (connection.name, token_url, config.type, config.client_id or "")

    def current_refresh_token(fresh: bool = False) -> str:
        with _rotated_lock:
            rotated = None if fresh else _rotated_refresh_tokens.get(cache_key)
        return rotated or secrets.resolve(config.refresh_token, field, fresh=fresh)

    def redeem(refresh_token: str) -> tuple[IssuedToken, dict[str, Any]]:
        return request_token(
            session,
            token_url,
            timeout=timeout,
            verify=tls,
            form={**form, "grant_type": "refresh_token", "refresh_token": refresh_token},
            basic=basic,
            repeatable=False,
        )

    def sign_in() -> IssuedToken:
        presented = current_refresh_token()
        try:
            token, answer = redeem(presented)
        except ProviderAuthFailed:
            stored = current_refresh_token(fresh=True)
            if stored == presented:
                raise
            presented = stored
            token, answer = redeem(presented)
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != presented:
            with _rotated_lock:
                _rotated_refresh_tokens[cache_key] = rotated
            try:
                secrets.keep_rotated(config.refresh_token, rotated, field)
            except ConfigurationError as error:
                # This step goes on with the new token; the next process may be refused and say why.
                logger.warning("rotated refresh token not stored", extra={"error": str(error)})
        return token

    return CachedToken(cache_key=cache_key, request_token=sign_in)


def _absolute(base_url: str, url: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    return base_url.rstrip("/") + "/" + url.lstrip("/")
