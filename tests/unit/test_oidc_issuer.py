"""The sandbox OpenID Connect issuer over real HTTP: discovery, the PKCE sign-in, tokens PyJWT trusts."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from reportrelay_cli.sandbox.oidc import OidcClient, OidcIssuer, OidcUser

ALICE_PASSWORD = "alice-Passw0rd-9d3e"
WEB = "web"  # a public client, as a browser app or the CLI would be
SCRIPT = "script"  # a confidential client with a secret
SCRIPT_SECRET = "script-Secret-5b1a"
CALLBACK = "http://127.0.0.1:54321/callback"
TIMEOUT = 5
PASSWORD_GRANT = {"grant_type": "password", "username": "alice", "password": ALICE_PASSWORD, "client_id": WEB}


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    users = {"alice": OidcUser(ALICE_PASSWORD, groups=("finance", "admins"), email="alice@example.com")}
    clients = {
        WEB: OidcClient(allow_any_loopback_redirect=True),
        SCRIPT: OidcClient(redirect_uris=("https://app.example/cb",), secret=SCRIPT_SECRET),
    }
    with OidcIssuer(users=users, clients=clients) as simulator:
        yield simulator


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge, computed here rather than by the code under test."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(challenge: str | None, **overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": WEB,
        "redirect_uri": CALLBACK,
        "scope": "openid email",
        "state": "state-8f2",
        "nonce": "nonce-41c",
        "code_challenge_method": "S256",
    }
    if challenge is not None:
        params["code_challenge"] = challenge
    params.update(overrides)
    return params


class FormReader(HTMLParser):
    """The fields of the page's form and the ids present, as a browser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"] or "")
        if tag == "input" and attributes.get("name"):
            self.fields[attributes["name"] or ""] = attributes.get("value") or ""


def read_form(page: str) -> FormReader:
    reader = FormReader()
    reader.feed(page)
    return reader


def sign_in(issuer: OidcIssuer, challenge: str, password: str = ALICE_PASSWORD) -> requests.Response:
    """Open the sign-in page, fill it in as a person would and submit it, without following the redirect."""
    page = requests.get(f"{issuer.issuer}/authorize", params=authorize_params(challenge), timeout=TIMEOUT)
    assert page.status_code == 200, page.text
    fields = {**read_form(page.text).fields, "username": "alice", "password": password}
    return requests.post(f"{issuer.issuer}/authorize", data=fields, allow_redirects=False, timeout=TIMEOUT)


def code_from(answer: requests.Response) -> str:
    assert answer.status_code == 302, answer.text
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def exchange(issuer: OidcIssuer, code: str, verifier: str, **overrides: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "client_id": WEB,
        "code_verifier": verifier,
        **overrides,
    }
    return requests.post(f"{issuer.issuer}/token", data=form, timeout=TIMEOUT)


def verify(issuer: OidcIssuer, token: str, audience: str = WEB) -> dict[str, Any]:
    """What a relying party does: find the key in the published JWKS, then check signature and claims."""
    discovery = requests.get(f"{issuer.issuer}/.well-known/openid-configuration", timeout=TIMEOUT).json()
    jwks_uri = discovery["jwks_uri"]
    key = jwt.PyJWKClient(jwks_uri).get_signing_key_from_jwt(token)
    return jwt.decode(token, key, audience=audience, issuer=issuer.issuer, algorithms=["RS256"])


def test_discovery_and_jwks_describe_the_issuer(issuer: OidcIssuer) -> None:
    # given a running issuer
    # when a relying party reads its discovery document and key set
    discovery = requests.get(f"{issuer.base_url}/.well-known/openid-configuration", timeout=TIMEOUT)
    config = discovery.json()
    keys = requests.get(config["jwks_uri"], timeout=TIMEOUT).json()["keys"]
    # then the document names the issuer (the base URL, no trailing slash) and its endpoints
    assert discovery.status_code == 200
    assert config["issuer"] == issuer.issuer == issuer.base_url and not issuer.issuer.endswith("/")
    assert config["authorization_endpoint"] == f"{issuer.issuer}/authorize"
    assert config["token_endpoint"] == f"{issuer.issuer}/token"
    assert config["jwks_uri"] == f"{issuer.issuer}/jwks.json"
    assert config["response_types_supported"] == ["code"]
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["grant_types_supported"] == ["authorization_code", "password"]
    assert "public" in config["subject_types_supported"] and "openid" in config["scopes_supported"]
    # and the key set holds one RSA signing key under the issuer's kid
    assert len(keys) == 1
    key = keys[0]
    assert {key["kty"], key["kid"], key["use"], key["alg"]} == {"RSA", issuer.kid, "sig", "RS256"}
    assert key["e"] == "AQAB" and len(base64.urlsafe_b64decode(key["n"] + "==")) == 256


def test_the_authorization_code_flow_with_pkce_gives_tokens_a_jwt_library_verifies(
    issuer: OidcIssuer,
) -> None:
    # given a public client with a PKCE pair
    verifier, challenge = pkce_pair()
    # when the sign-in page is opened
    page = requests.get(f"{issuer.issuer}/authorize", params=authorize_params(challenge), timeout=TIMEOUT)
    # then it is an HTML form with the user name, password and sign-in button, carrying the request
    form = read_form(page.text)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert {"username", "password", "sign-in"} <= form.ids
    assert form.fields["code_challenge"] == challenge and form.fields["state"] == "state-8f2"
    # when alice submits her password
    answer = sign_in(issuer, challenge)
    # then the browser is sent back to the redirect URI with a code and the state
    location = urlsplit(answer.headers["Location"])
    returned = parse_qs(location.query)
    assert answer.status_code == 302
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    assert returned["state"] == ["state-8f2"] and returned["iss"] == [issuer.issuer]
    # when the code is exchanged with the verifier
    tokens = exchange(issuer, returned["code"][0], verifier)
    # then the answer is a bearer token pair that is not to be cached
    body = tokens.json()
    assert tokens.status_code == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert tokens.headers["Cache-Control"] == "no-store"
    # and the id token verifies against the published keys, with alice's groups, email and the nonce
    id_claims = verify(issuer, body["id_token"])
    assert id_claims["sub"] == "alice" and id_claims["aud"] == WEB and id_claims["token_use"] == "id"
    assert id_claims["cognito:groups"] == ["finance", "admins"]
    assert id_claims["email"] == "alice@example.com" and id_claims["nonce"] == "nonce-41c"
    assert id_claims["exp"] - id_claims["iat"] == 3600 and id_claims["auth_time"] <= id_claims["iat"]
    assert jwt.get_unverified_header(body["id_token"])["kid"] == issuer.kid
    # and the access token does too, naming the client and the scope granted
    access_claims = verify(issuer, body["access_token"])
    assert access_claims["token_use"] == "access" and access_claims["client_id"] == WEB
    assert access_claims["scope"] == "openid email" and access_claims["cognito:groups"] == [
        "finance",
        "admins",
    ]
    # and the sign-in was recorded, without the password anywhere in the request log
    assert [(s.username, s.method, s.succeeded) for s in issuer.sign_ins] == [("alice", "form", True)]
    assert issuer.calls("POST", "/authorize") and issuer.calls("POST", "/token")
    assert ALICE_PASSWORD not in repr(issuer.request_log) and verifier not in repr(issuer.request_log)


def test_a_wrong_password_shows_the_form_again(issuer: OidcIssuer) -> None:
    # given a PKCE pair
    _, challenge = pkce_pair()
    # when alice types the wrong password
    answer = sign_in(issuer, challenge, password="not-her-password")
    # then the form comes back with a message and 401, still carrying the request, and no code is issued
    form = read_form(answer.text)
    assert answer.status_code == 401 and "Location" not in answer.headers
    assert "The user name or password is incorrect." in answer.text
    assert {"username", "password", "sign-in", "error"} <= form.ids
    assert form.fields["code_challenge"] == challenge and form.fields["username"] == "alice"
    assert issuer.sign_ins[-1].succeeded is False


def test_a_wrong_code_verifier_is_refused(issuer: OidcIssuer) -> None:
    # given a code issued for one PKCE challenge
    _, challenge = pkce_pair()
    code = code_from(sign_in(issuer, challenge))
    # when it is exchanged with another verifier
    other_verifier, _ = pkce_pair()
    answer = exchange(issuer, code, other_verifier)
    # then the grant is refused
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_a_code_works_once(issuer: OidcIssuer) -> None:
    # given a code that has been exchanged
    verifier, challenge = pkce_pair()
    code = code_from(sign_in(issuer, challenge))
    first = exchange(issuer, code, verifier)
    # when it is exchanged again
    second = exchange(issuer, code, verifier)
    # then only the first exchange gave tokens
    assert first.status_code == 200
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "overrides",
    [{"redirect_uri": "http://127.0.0.1:54321/other"}, {"client_id": SCRIPT, "client_secret": SCRIPT_SECRET}],
    ids=["other-redirect-uri", "other-client"],
)
def test_a_code_is_bound_to_its_client_and_redirect_uri(
    issuer: OidcIssuer, overrides: dict[str, str]
) -> None:
    # given a code issued to the public client for one redirect URI
    verifier, challenge = pkce_pair()
    code = code_from(sign_in(issuer, challenge))
    # when it is exchanged with the right verifier but another redirect URI, or by another client
    answer = exchange(issuer, code, verifier, **overrides)
    # then the grant is refused
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_an_expired_code_is_refused(issuer: OidcIssuer) -> None:
    # given codes that expire at once
    issuer.code_lifetime_seconds = 0
    verifier, challenge = pkce_pair()
    code = code_from(sign_in(issuer, challenge))
    # when one is exchanged
    answer = exchange(issuer, code, verifier)
    # then the grant is refused
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"client_id": "nobody"}, "Unknown client_id"),
        ({"redirect_uri": "https://evil.example/cb"}, "is not registered"),
        ({"redirect_uri": "http://localhost:54321/callback"}, "is not registered"),
        ({"redirect_uri": f"{CALLBACK}#fragment"}, "is not registered"),
        ({"client_id": SCRIPT, "redirect_uri": "https://app.example/cb/other"}, "is not registered"),
    ],
    ids=["unknown-client", "foreign-redirect", "localhost-is-not-loopback", "fragment", "not-exact-match"],
)
def test_a_bad_client_or_redirect_uri_gets_an_error_page_not_a_redirect(
    issuer: OidcIssuer, overrides: dict[str, str], message: str
) -> None:
    # given a sign-in request whose client or redirect URI cannot be trusted
    _, challenge = pkce_pair()
    params = authorize_params(challenge, **overrides)
    # when it is opened
    answer = requests.get(f"{issuer.issuer}/authorize", params=params, allow_redirects=False, timeout=TIMEOUT)
    # then an HTML error page answers 400, and the browser is not sent anywhere
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8" and message in answer.text


@pytest.mark.parametrize(
    "challenge, overrides, error",
    [
        (None, {}, "invalid_request"),
        ("x" * 43, {"code_challenge_method": "plain"}, "invalid_request"),
        ("x" * 43, {"response_type": "token"}, "unsupported_response_type"),
        ("x" * 43, {"scope": "email"}, "invalid_scope"),
    ],
    ids=["missing-code-challenge", "plain-pkce", "implicit-flow", "no-openid-scope"],
)
def test_a_bad_request_to_a_trusted_redirect_uri_is_sent_back_as_an_error(
    issuer: OidcIssuer, challenge: str | None, overrides: dict[str, str], error: str
) -> None:
    # given a request from a registered client and redirect URI, but without S256 PKCE or otherwise wrong
    params = authorize_params(challenge, **overrides)
    # when it is opened
    answer = requests.get(f"{issuer.issuer}/authorize", params=params, allow_redirects=False, timeout=TIMEOUT)
    # then the browser goes back to the client with the error and the state, and no form is shown
    location = urlsplit(answer.headers["Location"])
    returned = parse_qs(location.query)
    assert answer.status_code == 302 and location.netloc == "127.0.0.1:54321"
    assert returned["error"] == [error] and returned["state"] == ["state-8f2"] and "code" not in returned


def test_the_password_grant_gives_verifiable_tokens(issuer: OidcIssuer) -> None:
    # given a user and a client added after the issuer started
    issuer.add_user("bob", OidcUser("bob-Passw0rd-2c7d", groups=("ops",)))
    issuer.add_client("cli", OidcClient())
    # when a script signs in with the password grant
    answer = requests.post(
        f"{issuer.issuer}/token",
        data={
            "grant_type": "password",
            "username": "bob",
            "password": "bob-Passw0rd-2c7d",
            "client_id": "cli",
        },
        timeout=TIMEOUT,
    )
    # then the id token verifies, for bob, with his group and no email or nonce
    claims = verify(issuer, answer.json()["id_token"], audience="cli")
    assert answer.status_code == 200
    assert claims["sub"] == "bob" and claims["cognito:groups"] == ["ops"]
    assert "email" not in claims and "nonce" not in claims
    assert verify(issuer, answer.json()["access_token"], audience="cli")["scope"] == "openid"


def test_a_confidential_client_must_send_its_secret(issuer: OidcIssuer) -> None:
    # given the password grant for a client that has a secret
    form = {"grant_type": "password", "username": "alice", "password": ALICE_PASSWORD, "client_id": SCRIPT}
    token_url = f"{issuer.issuer}/token"
    # when it is sent without the secret, with it in HTTP Basic, and with it in the form
    without = requests.post(token_url, data=form, timeout=TIMEOUT)
    basic = requests.post(token_url, data=form, auth=(SCRIPT, SCRIPT_SECRET), timeout=TIMEOUT)
    posted = requests.post(token_url, data={**form, "client_secret": SCRIPT_SECRET}, timeout=TIMEOUT)
    # then only the authenticated requests succeed, and the secret is not logged
    assert without.status_code == 401 and without.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in without.headers
    assert basic.status_code == 200 and posted.status_code == 200
    assert SCRIPT_SECRET not in repr(issuer.request_log)


@pytest.mark.parametrize(
    "form, status, error",
    [
        (PASSWORD_GRANT | {"password": "wrong"}, 400, "invalid_grant"),
        (PASSWORD_GRANT | {"client_id": "nobody"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": WEB}, 400, "unsupported_grant_type"),
        (PASSWORD_GRANT | {"scope": "openid admin"}, 400, "invalid_scope"),
    ],
    ids=["wrong-password", "unknown-client", "unsupported-grant", "unknown-scope"],
)  # fmt: skip
def test_token_errors_follow_rfc_6749(
    issuer: OidcIssuer, form: dict[str, str], status: int, error: str
) -> None:
    # given a token request that cannot be granted
    # when it is sent
    answer = requests.post(f"{issuer.issuer}/token", data=form, timeout=TIMEOUT)
    # then the answer is the RFC 6749 JSON error
    assert answer.status_code == status and answer.json()["error"] == error


def test_tokens_made_by_the_helpers_fail_to_verify_when_they_should(issuer: OidcIssuer) -> None:
    # given an id token from issue_token that is valid, and others that are expired, foreign or forged
    good = issuer.issue_token("alice", audience=WEB)
    expired = issuer.issue_token("alice", audience=WEB, lifetime_seconds=-60)
    foreign = issuer.issue_token("alice", audience=WEB, iss="https://elsewhere.example")
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = issuer.sign({**claims, "cognito:groups": ["admins"]}, key=issuer.other_key())
    # when a relying party verifies them
    # then only the good one passes, and each of the others fails for its own reason
    assert verify(issuer, good)["cognito:groups"] == ["finance", "admins"]
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(issuer, expired)
    with pytest.raises(jwt.InvalidIssuerError):
        verify(issuer, foreign)
    with pytest.raises(jwt.InvalidSignatureError):
        verify(issuer, forged)


def test_revoking_tokens_rotates_the_key(issuer: OidcIssuer) -> None:
    # given a token signed before the issuer revokes its tokens
    token = issuer.issue_token("alice", audience=WEB)
    old_kid = issuer.kid
    # when it revokes them
    issuer.revoke_tokens()
    # then a new key is published and the old token no longer verifies
    assert issuer.kid != old_kid
    with pytest.raises(jwt.PyJWKClientError):
        verify(issuer, token)
