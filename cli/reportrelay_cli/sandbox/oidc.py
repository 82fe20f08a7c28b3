"""A small, real OpenID Connect issuer: the local stand-in for Cognito or any other identity provider.

It lets people sign in on one machine, and lets tests check a relying party against the real protocol
rather than a mock: tokens are RS256 JWTs a standard library verifies against the published JWKS.

Discovery: GET  /.well-known/openid-configuration
Keys:      GET  /jwks.json                      -> ``{"keys": [{"kty": "RSA", "kid", "use": "sig", ...}]}``
Sign-in:   GET  /authorize?response_type=code&client_id&redirect_uri&scope&state&code_challenge
                &code_challenge_method=S256[&nonce]  -> an HTML form (``username``, ``password``, ``sign-in``)
           POST /authorize (the form)            -> 302 to ``redirect_uri?code=&state=&iss=``
Tokens:    POST /token  ``grant_type=authorization_code`` (PKCE S256 required) or ``grant_type=password``
           -> ``{"access_token", "id_token", "token_type": "Bearer", "expires_in"}``

What the standards leave open follows OAuth 2.1 and Cognito: PKCE with S256 is mandatory, codes are
single-use and live 60 seconds, the groups are a list under ``cognito:groups`` (configurable), both
tokens carry ``token_use``. A bad client or redirect URI gets an error page, never a redirect (RFC 6749
section 4.1.2.1), so the form cannot be used to bounce a browser to an unregistered address. Plain HTTP on
127.0.0.1 and no persistence: test tooling, not an identity service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from reportrelay_cli.sandbox.server import (
    Faults,
    Request,
    Response,
    Simulator,
    basic_credentials,
    json_response,
    oauth_error,
    route,
    token_answer,
)

HTML_CONTENT_TYPE = "text/html; charset=utf-8"
SCOPES_SUPPORTED: tuple[str, ...] = ("openid", "email", "profile")
DEFAULT_SCOPE = "openid"
STANDARD_CLAIMS: tuple[str, ...] = (
    "iss",
    "sub",
    "aud",
    "iat",
    "exp",
    "auth_time",
    "nonce",
    "email",
    "token_use",
)
CODE_LIFETIME_SECONDS = 60.0
WRONG_CREDENTIALS = "The user name or password is incorrect."
#: RFC 7636 section 4.1: 43 to 128 unreserved characters; an S256 challenge is 43 base64url characters.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
#: Form and query fields masked in the request log, in case a client sends them in a query string.
_SECRET_FIELDS = frozenset({"password", "client_secret", "code_verifier", "code"})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})


@dataclass(frozen=True)
class OidcUser:
    """A user who can sign in; the user name (the mapping key) becomes the tokens' ``sub``."""

    password: str
    groups: tuple[str, ...] = ()
    email: str | None = None


@dataclass(frozen=True)
class OidcClient:
    """A registered relying party. No ``secret`` makes it a public client (a browser or CLI app).

    Redirect URIs match by exact string. ``allow_any_loopback_redirect`` also accepts any
    ``http://127.0.0.1:<port>/...`` (or ``[::1]``) address, as RFC 8252 section 7.3 allows native apps,
    so a test can listen on a free port without registering it first.
    """

    redirect_uris: tuple[str, ...] = ()
    secret: str | None = None
    allow_any_loopback_redirect: bool = False

    def allows_redirect(self, uri: str) -> bool:
        """True for a registered redirect URI or, when allowed, a loopback one; never with a fragment."""
        try:
            parts = urlsplit(uri)
            _ = parts.port  # raises ValueError for a port that is not a number in range
        except ValueError:
            return False
        if "#" in uri:
            return False  # RFC 6749 section 3.1.2: a redirection endpoint has no fragment
        if uri in self.redirect_uris:
            return True
        return (
            self.allow_any_loopback_redirect
            and parts.scheme == "http"
            and parts.hostname in _LOOPBACK_HOSTS
            and parts.username is None
        )


class SignIn(NamedTuple):
    """One sign-in attempt as the issuer saw it (never the password): who, through which client, how."""

    username: str
    client_id: str
    method: str  # "form" (the /authorize page) or "password" (the password grant)
    succeeded: bool


@dataclass(frozen=True)
class _AuthorizationRequest:
    """The checked parameters of one /authorize request, carried through the form in hidden fields."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    code_challenge: str
    nonce: str | None

    def hidden_fields(self) -> dict[str, str]:
        fields = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
        }
        if self.state is not None:
            fields["state"] = self.state
        if self.nonce is not None:
            fields["nonce"] = self.nonce
        return fields


@dataclass(frozen=True)
class _PendingCode:
    """An authorization code waiting to be exchanged, bound to everything the token request must repeat."""

    username: str
    request: _AuthorizationRequest
    auth_time: int
    expires_at: float


class _Refused(Exception):
    """Raised while checking a request; carries the complete answer (an error page, redirect or JSON)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class OidcIssuer(Simulator):
    """An OpenID Connect provider with the authorization-code flow (PKCE S256) and the password grant.

    Users and clients may be added while it runs (``add_user``, ``add_client``). ``issue_token`` and
    ``sign`` make tokens without HTTP, for tests of a token verifier: expired, foreign, tampered.
    """

    name = "oidc"

    def __init__(
        self,
        *,
        users: Mapping[str, OidcUser] | None = None,
        clients: Mapping[str, OidcClient] | None = None,
        port: int = 0,
        token_lifetime_seconds: float = 3600,
        groups_claim: str = "cognito:groups",
        faults: Faults | None = None,
    ) -> None:
        super().__init__(port=port, faults=faults)
        self.users: dict[str, OidcUser] = dict(users or {})
        self.clients: dict[str, OidcClient] = dict(clients or {})
        self.token_lifetime_seconds = token_lifetime_seconds
        self.groups_claim = groups_claim
        #: How long an authorization code may wait for its exchange; tests may shorten it.
        self.code_lifetime_seconds = CODE_LIFETIME_SECONDS
        #: Every sign-in attempt through the form or the password grant, oldest first.
        self.sign_ins: list[SignIn] = []
        self.tokens_issued = 0
        self._codes: dict[str, _PendingCode] = {}
        self._key, self.kid = _new_signing_key()

    # ---- configuration and test helpers

    @property
    def issuer(self) -> str:
        """The ``iss`` of every token: the base URL, without a trailing slash."""
        return self.base_url

    def add_user(self, name: str, user: OidcUser) -> None:
        with self.lock:
            self.users[name] = user

    def add_client(self, client_id: str, client: OidcClient) -> None:
        with self.lock:
            self.clients[client_id] = client

    @property
    def jwks(self) -> dict[str, Any]:
        """The public half of the signing key as a JWK set, as ``/jwks.json`` serves it."""
        with self.lock:
            key, kid = self._key, self.kid
        return {"keys": [_public_jwk(key.public_key(), kid)]}

    def issue_token(
        self, user: str, *, audience: str, lifetime_seconds: float | None = None, **claims: Any
    ) -> str:
        """An id token for a known user, signed here, without HTTP.

        ``claims`` override or extend the defaults (``iss="https://elsewhere"``, ``exp=...``); a claim
        given as None is left out. A negative ``lifetime_seconds`` makes a token that has already expired.
        """
        now = int(self.clock())
        lifetime = self.token_lifetime_seconds if lifetime_seconds is None else lifetime_seconds
        body = self._claims(user, audience=audience, token_use="id", lifetime=lifetime, auth_time=now)
        body.update(claims)
        return self.sign({name: value for name, value in body.items() if value is not None})

    def sign(
        self,
        claims: dict[str, Any],
        *,
        key: PrivateKeyTypes | str | bytes | None = None,
        headers: dict[str, Any] | None = None,
        algorithm: str = "RS256",
    ) -> str:
        """Any claims signed as a JWT: with the issuer's key, or ``key`` (``other_key()``, say) to forge one.

        The header names the issuer's ``kid`` unless ``headers`` says otherwise (a header given as None
        is left out), so a token signed with another key looks like ours until its signature is checked.
        ``algorithm="none"`` makes an unsigned token.
        """
        with self.lock:
            own_key, kid = self._key, self.kid
        header = {name: value for name, value in {"kid": kid, **(headers or {})}.items() if value is not None}
        signing_key = None if algorithm == "none" else (key if key is not None else own_key)
        return jwt.encode(claims, signing_key, algorithm=algorithm, headers=header)

    @staticmethod
    def other_key() -> rsa.RSAPrivateKey:
        """A fresh RSA-2048 private key that is not the issuer's, for tokens that must fail to verify."""
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def rotate_key(self) -> None:
        """Sign with a new key and publish only that one: tokens signed before stop verifying."""
        key, kid = _new_signing_key()
        with self.lock:
            self._key, self.kid = key, kid

    def revoke_tokens(self) -> None:
        """JWTs cannot be recalled, so the key is rotated instead, and codes not yet exchanged are dropped."""
        self.rotate_key()
        with self.lock:
            self._codes.clear()

    def error_body(self, status: int, message: str) -> Any:
        """RFC 6749's error shape, for the answers the base class makes (404, 405, 429, 5xx)."""
        if status in (429, 503):
            code = "temporarily_unavailable"
        elif status >= 500:
            code = "server_error"
        else:
            code = "invalid_request"
        return {"error": code, "error_description": message}

    # ---- discovery and keys

    @route("GET", "/.well-known/openid-configuration")
    def discovery(self, request: Request) -> Response:
        issuer = self.issuer
        return json_response(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks.json",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code", "password"],
                "scopes_supported": list(SCOPES_SUPPORTED),
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                    "none",
                ],
                "claims_supported": [*STANDARD_CLAIMS, self.groups_claim],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    @route("GET", "/jwks.json")
    def jwks_endpoint(self, request: Request) -> Response:
        return json_response(self.jwks)

    # ---- the authorization endpoint: the sign-in form

    @route("GET", "/authorize", sign_in=True)
    def authorize_page(self, request: Request) -> Response:
        try:
            wanted = self._authorization_request(request.query)
        except _Refused as refusal:
            return refusal.response
        return _html_response(200, _sign_in_page(wanted))

    @route("POST", "/authorize", sign_in=True)
    def authorize_submit(self, request: Request) -> Response:
        form = request.form()
        try:
            wanted = self._authorization_request(form)  # the hidden fields are checked again, not trusted
        except _Refused as refusal:
            return refusal.response
        username = form.get("username", "")
        if not self._password_matches(username, form.get("password", "")):
            self._record_sign_in(username, wanted.client_id, "form", succeeded=False)
            page = _sign_in_page(wanted, username=username, message=WRONG_CREDENTIALS)
            return _html_response(401, page)
        self._record_sign_in(username, wanted.client_id, "form", succeeded=True)
        code = secrets.token_urlsafe(32)
        pending = _PendingCode(username, wanted, int(self.clock()), self.clock() + self.code_lifetime_seconds)
        with self.lock:
            self._codes[code] = pending
        answer = {"code": code, "state": wanted.state, "iss": self.issuer}
        return _redirect(wanted.redirect_uri, answer)

    def _authorization_request(self, fields: Mapping[str, str]) -> _AuthorizationRequest:
        """The request checked in RFC 6749's order: a bad client or redirect URI gets an error page; once
        the redirect URI is trusted, every other problem is sent back to it as ``error=...``."""
        client_id = fields.get("client_id", "")
        with self.lock:
            client = self.clients.get(client_id)
        if not client_id or client is None:
            raise _Refused(_error_page(f"Unknown client_id {client_id!r}: this client is not registered."))
        redirect_uri = fields.get("redirect_uri", "")
        if not redirect_uri or not client.allows_redirect(redirect_uri):
            message = f"The redirect_uri {redirect_uri!r} is not registered for client {client_id!r}."
            raise _Refused(_error_page(message))
        state = fields.get("state")

        def refuse(error: str, description: str) -> _Refused:
            answer = {"error": error, "error_description": description, "state": state, "iss": self.issuer}
            return _Refused(_redirect(redirect_uri, answer))

        response_type = fields.get("response_type")
        if not response_type:
            raise refuse("invalid_request", "response_type is required; it must be 'code'")
        if response_type != "code":
            message = f"only response_type=code is supported, not {response_type!r}"
            raise refuse("unsupported_response_type", message)
        scope = fields.get("scope") or DEFAULT_SCOPE
        problem = _scope_problem(scope)
        if problem is not None:
            raise refuse("invalid_scope", problem)
        challenge = fields.get("code_challenge")
        if not challenge:
            raise refuse("invalid_request", "code_challenge is required: PKCE with S256 (OAuth 2.1)")
        method = fields.get("code_challenge_method")
        if method != "S256":
            raise refuse("invalid_request", f"code_challenge_method must be S256, not {method!r}")
        if not _S256_CHALLENGE.fullmatch(challenge):
            raise refuse("invalid_request", "code_challenge must be 43 base64url characters (S256)")
        return _AuthorizationRequest(client_id, redirect_uri, scope, state, challenge, fields.get("nonce"))

    # ---- the token endpoint

    @route("POST", "/token", sign_in=True)
    def token_endpoint(self, request: Request) -> Response:
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return oauth_error("invalid_request", "send the parameters as application/x-www-form-urlencoded")
        form = request.form()
        try:
            client_id = self._authenticate_client(request, form)
            grant = form.get("grant_type")
            if grant == "authorization_code":
                return self._exchange_code(client_id, form)
            if grant == "password":
                return self._password_grant(client_id, form)
        except _Refused as refusal:
            return refusal.response
        if not grant:
            return oauth_error("invalid_request", "grant_type is required")
        return oauth_error("unsupported_grant_type", f"grant_type {grant!r} is not supported here")

    def _authenticate_client(self, request: Request, form: Mapping[str, str]) -> str:
        """The client's id, after checking its secret (HTTP Basic or ``client_secret``) if it has one."""
        header = request.header("authorization")
        if header is not None:
            basic = basic_credentials(header)
            if basic is None:
                raise _Refused(_client_refused("the Authorization header is not HTTP Basic credentials"))
            if "client_secret" in form:
                raise _Refused(oauth_error("invalid_request", "authenticate the client one way, not two"))
            # RFC 6749 section 2.3.1: the id and secret are form-encoded before they are put in Basic.
            client_id, secret = unquote_plus(basic[0]), unquote_plus(basic[1])
            if form.get("client_id", client_id) != client_id:
                raise _Refused(_client_refused("client_id differs from the one in the Authorization header"))
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret")
        with self.lock:
            client = self.clients.get(client_id)
        if not client_id or client is None:
            raise _Refused(_client_refused(f"unknown client {client_id!r}"))
        if client.secret is None:
            if secret:
                raise _Refused(_client_refused("this is a public client; it has no secret to send"))
        elif secret is None or not hmac.compare_digest(secret.encode(), client.secret.encode()):
            raise _Refused(_client_refused("the client secret is missing or wrong"))
        return client_id

    def _exchange_code(self, client_id: str, form: Mapping[str, str]) -> Response:
        code = form.get("code")
        if not code:
            return oauth_error("invalid_request", "code is required")
        with self.lock:
            pending = self._codes.pop(code, None)  # single use: even a failed exchange spends it
        if pending is None or self.clock() > pending.expires_at:
            return oauth_error("invalid_grant", "the code is unknown, expired or already used")
        wanted = pending.request
        if wanted.client_id != client_id:
            return oauth_error("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != wanted.redirect_uri:
            return oauth_error("invalid_grant", "redirect_uri differs from the one the code was issued for")
        verifier = form.get("code_verifier", "")
        if not _VERIFIER.fullmatch(verifier) or not hmac.compare_digest(
            _s256(verifier), wanted.code_challenge
        ):
            return oauth_error("invalid_grant", "code_verifier does not match the code_challenge (PKCE)")
        if pending.username not in self.users:
            return oauth_error("invalid_grant", "the user who signed in no longer exists")
        return self._tokens(pending.username, client_id, wanted.scope, pending.auth_time, wanted.nonce)

    def _password_grant(self, client_id: str, form: Mapping[str, str]) -> Response:
        username, password = form.get("username"), form.get("password")
        if not username or password is None:
            return oauth_error("invalid_request", "username and password are required")
        scope = form.get("scope") or DEFAULT_SCOPE
        problem = _scope_problem(scope)
        if problem is not None:
            return oauth_error("invalid_scope", problem)
        succeeded = self._password_matches(username, password)
        self._record_sign_in(username, client_id, "password", succeeded=succeeded)
        if not succeeded:
            return oauth_error("invalid_grant", WRONG_CREDENTIALS)
        return self._tokens(username, client_id, scope, int(self.clock()), None)

    def _tokens(
        self, username: str, client_id: str, scope: str, auth_time: int, nonce: str | None
    ) -> Response:
        lifetime = self.token_lifetime_seconds
        id_claims = self._claims(
            username, audience=client_id, token_use="id", lifetime=lifetime, auth_time=auth_time
        )
        access_claims = self._claims(
            username, audience=client_id, token_use="access", lifetime=lifetime, auth_time=auth_time
        )
        access_claims.update(client_id=client_id, scope=scope)
        if nonce is not None:
            id_claims["nonce"] = access_claims["nonce"] = nonce
        with self.lock:
            self.tokens_issued += 1
        return token_answer(
            {
                "access_token": self.sign(access_claims),
                "id_token": self.sign(id_claims),
                "token_type": "Bearer",
                "expires_in": int(lifetime),
            }
        )

    # ---- shared pieces

    def _claims(
        self, username: str, *, audience: str, token_use: str, lifetime: float, auth_time: int
    ) -> dict[str, Any]:
        with self.lock:
            user = self.users.get(username)
        if user is None:
            known = ", ".join(sorted(self.users)) or "none"
            raise ValueError(f"no user {username!r} at this issuer (known: {known}); add_user() first")
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": username,
            "aud": audience,
            "iat": now,
            "exp": int(now + lifetime),
            "auth_time": auth_time,
            "token_use": token_use,
            "jti": secrets.token_hex(16),
            self.groups_claim: list(user.groups),
        }
        if user.email is not None:
            claims["email"] = user.email
        return claims

    def _password_matches(self, username: str, password: str) -> bool:
        with self.lock:
            user = self.users.get(username)
        expected = user.password if user is not None else secrets.token_hex(16)
        return hmac.compare_digest(password.encode(), expected.encode()) and user is not None

    def _record_sign_in(self, username: str, client_id: str, method: str, *, succeeded: bool) -> None:
        with self.lock:
            self.sign_ins.append(SignIn(username, client_id, method, succeeded))

    def _record(self, request: Request) -> None:
        """Log as the base class does, with any secret in the query or a Basic header masked."""
        query = {name: "***" if name in _SECRET_FIELDS else value for name, value in request.query.items()}
        headers = dict(request.headers)
        basic = basic_credentials(headers.get("authorization"))
        if basic is not None:
            headers["authorization"] = f"Basic {unquote_plus(basic[0])}:***"
        super()._record(replace(request, query=query, headers=headers))


# --------------------------------------------------------------------------------------------------
# Keys, PKCE and scopes


def _new_signing_key() -> tuple[rsa.RSAPrivateKey, str]:
    """A fresh RSA-2048 key and its ``kid``: the RFC 7638 thumbprint, so the id names the key itself."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = _public_jwk(key.public_key(), "")
    canonical = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    return key, _b64url(hashlib.sha256(canonical.encode()).digest())


def _public_jwk(public_key: rsa.RSAPublicKey, kid: str) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": _b64url(_unsigned_bytes(numbers.n)),
        "e": _b64url(_unsigned_bytes(numbers.e)),
    }


def _unsigned_bytes(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _s256(verifier: str) -> str:
    """RFC 7636 section 4.2: BASE64URL(SHA256(ASCII(code_verifier)))."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _scope_problem(scope: str) -> str | None:
    """Why a requested scope is refused, or None: it must include openid and name only known scopes."""
    requested = scope.split()
    unknown = [name for name in requested if name not in SCOPES_SUPPORTED]
    if unknown:
        return f"unknown scope {' '.join(unknown)!r}; supported: {' '.join(SCOPES_SUPPORTED)}"
    if "openid" not in requested:
        return "scope must include openid: this issuer serves OpenID Connect sign-ins"
    return None


# --------------------------------------------------------------------------------------------------
# Answers


def _client_refused(description: str) -> Response:
    """RFC 6749 section 5.2: a failed client authentication is 401 with a Basic challenge."""
    return oauth_error(
        "invalid_client", description, status=401, headers={"WWW-Authenticate": 'Basic realm="oidc"'}
    )


def _redirect(redirect_uri: str, parameters: Mapping[str, str | None]) -> Response:
    """302 to the redirect URI with ``parameters`` added to the query it already has."""
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(name, value) for name, value in parameters.items() if value is not None]
    location = urlunsplit(parts._replace(query=urlencode(query)))
    return Response(302, b"", {"Location": location, "Cache-Control": "no-store"})


def _html_response(status: int, page: str) -> Response:
    return Response(
        status, page.encode("utf-8"), {"Content-Type": HTML_CONTENT_TYPE, "Cache-Control": "no-store"}
    )


def _error_page(message: str) -> Response:
    """The page shown instead of a redirect when the redirect target cannot be trusted."""
    body = f'<h1>Sign-in request refused</h1>\n<p id="error" role="alert">{html.escape(message)}</p>'
    return _html_response(400, _page("Sign-in request refused", body))


def _sign_in_page(wanted: _AuthorizationRequest, *, username: str = "", message: str | None = None) -> str:
    hidden = "\n".join(
        f'    <input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in wanted.hidden_fields().items()
    )
    alert = f'<p id="error" role="alert">{html.escape(message)}</p>\n' if message else ""
    body = (
        f"<h1>Sign in</h1>\n<p>to continue to <strong>{html.escape(wanted.client_id)}</strong></p>\n{alert}"
        '<form method="post" action="/authorize">\n'
        f"{hidden}\n"
        '    <p><label for="username">User name</label><br>\n'
        f'    <input id="username" name="username" value="{html.escape(username)}" autocomplete="username"'
        " required autofocus></p>\n"
        '    <p><label for="password">Password</label><br>\n'
        '    <input id="password" name="password" type="password" autocomplete="current-password"'
        " required></p>\n"
        '    <p><button id="sign-in" type="submit">Sign in</button></p>\n'
        "</form>"
    )
    return _page("Sign in", body)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)} - reportrelay sandbox</title>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def sandbox_issuer(*, port: int, secret: str) -> OidcIssuer:
    """The issuer as ``reportrelay sandbox`` serves it: user ``alice`` in ``finance``, signing in with the
    sandbox secret, and the public client ``reportrelay-local`` redirecting to any loopback address."""
    return OidcIssuer(
        port=port,
        users={"alice": OidcUser(password=secret, groups=("finance",), email="alice@example.com")},
        clients={"reportrelay-local": OidcClient(allow_any_loopback_redirect=True)},
    )
