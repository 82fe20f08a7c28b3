"""Redirects on our terms, over real HTTP: same origin with credentials, another origin only when allowed
and then with none, never to loopback / link-local / private addresses from a vendor on a public name,
never from https to http."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from reportrelay.auth import build_auth, forget_cached_tokens
from reportrelay.config import Connection, SecretResolver
from reportrelay.errors import (
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderServerError,
)
from reportrelay.httpclient import MAX_REDIRECTS, ProviderHttp, RetryBudget
from reportrelay_cli.sandbox.server import (
    Request,
    Response,
    Simulator,
    file_response,
    json_response,
    route,
    token_answer,
)
from tests.tls import TestCA, TlsServer
from tests.unit.test_network_errors import port_of, pretend_dns

SECRET = "s3cret-value"
ACCESS_TOKEN = "vendor-access-token"
SESSION_TOKEN = "vendor-session-token"
COOKIE = "cookie-secret"
#: Every header that may carry a credential, in lower case.
CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key", "token", "x-tenant"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Recording(Simulator):
    """A simulator that keeps every request it routes, with all its headers and its body."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []

    def see(self, request: Request) -> None:
        with self.lock:
            self.seen.append(Seen(request.method, request.path, dict(request.headers), request.body))

    def at(self, path: str) -> list[Seen]:
        with self.lock:
            return [entry for entry in self.seen if entry.path == path]


class Vendor(Recording):
    """The provider: signs in, answers /start with ``redirect`` (status, Location) and a cookie."""

    name = "vendor"

    def __init__(self) -> None:
        super().__init__()
        self.redirect: tuple[int, str] = (302, "/final")
        self.token_redirect: str | None = None
        self.final_status = 200
        self.sign_ins = 0

    @route("POST", "/oauth/token", sign_in=True)
    def oauth_token(self, request: Request) -> Response:
        self.see(request)
        if self.token_redirect is not None:
            return Response(302, b"", {"Location": self.token_redirect})
        with self.lock:
            self.sign_ins += 1
        return token_answer({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600})

    @route("POST", "/api/get_token/", sign_in=True)
    def app_token(self, request: Request) -> Response:
        self.see(request)
        with self.lock:
            self.sign_ins += 1
        return json_response({"token": SESSION_TOKEN})

    @route("GET", "/start")
    @route("POST", "/start")
    @route("PUT", "/start")
    def redirecting(self, request: Request) -> Response:
        self.see(request)
        status, location = self.redirect
        return Response(status, b"", {"Location": location, "Set-Cookie": f"vendor_session={COOKIE}; Path=/"})

    @route("GET", "/final")
    @route("POST", "/final")
    @route("PUT", "/final")
    def final(self, request: Request) -> Response:
        self.see(request)
        return json_response({"method": request.method, "body": request.body.decode()}, self.final_status)

    @route("GET", "/loop")
    def loop(self, request: Request) -> Response:
        self.see(request)
        return Response(302, b"", {"Location": "/loop"})


class Elsewhere(Recording):
    """Another origin (a file host, say) that records what reaches it."""

    name = "elsewhere"

    def __init__(self) -> None:
        super().__init__()
        self.status = 200

    @route("GET", "/file")
    @route("POST", "/file")
    def file(self, request: Request) -> Response:
        self.see(request)
        if self.status != 200:
            return self.error(self.status, "no entry")
        return file_response(b"%PDF-1.7 report", "application/pdf", "report.pdf")


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    forget_cached_tokens()
    yield
    forget_cached_tokens()


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    with Vendor() as running:
        yield running


@pytest.fixture
def elsewhere() -> Iterator[Elsewhere]:
    with Elsewhere() as running:
        yield running


def quick() -> dict[str, Any]:
    return {"budget": RetryBudget(attempts=3, max_total_wait_seconds=5, base_backoff_seconds=0.01)}


def bearer_client(base_url: str, **kwargs: Any) -> ProviderHttp:
    return client({"type": "bearer", "token": {"env": "SECRET"}}, base_url, **kwargs)


def client(auth: dict[str, Any], base_url: str, **kwargs: Any) -> ProviderHttp:
    """A client signed in the way a connection with this ``auth`` is, against ``base_url``."""
    # Test vendors on made-up public names ("vendor.test") are served over plain http on loopback.
    connection = Connection.model_validate(
        {
            "name": "redirects",
            "provider": "devexpress",
            "base_url": base_url,
            "auth": auth,
            "allow_plain_http": True,
        }
    )
    session = requests.Session()
    signing = build_auth(connection, SecretResolver(environ={"SECRET": SECRET}), session)
    return ProviderHttp(base_url, signing, session=session, **{**quick(), **kwargs})


def file_url(elsewhere: Elsewhere, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port_of(elsewhere)}/file"


def origin_of(simulator: Simulator, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port_of(simulator)}"


def assert_no_credential(seen: Seen) -> None:
    leaked = {name for name in seen.headers if name in CREDENTIAL_HEADERS}
    assert not leaked, f"{seen.path} received {leaked}"
    secrets = (
        SECRET,
        ACCESS_TOKEN,
        SESSION_TOKEN,
        COOKIE,
        base64.b64encode(f"api:{SECRET}".encode()).decode(),
    )
    for name, value in seen.headers.items():
        assert not any(secret in value for secret in secrets), f"{name} carries a secret"
    assert seen.body == b""


# --------------------------------------------------------------------------------------------------
# Same origin


def test_a_same_origin_redirect_is_followed_with_the_credentials_and_cookies(vendor: Vendor) -> None:
    # given a vendor that redirects /start to /final on its own origin
    http = bearer_client(vendor.base_url)
    # when /start is asked for
    response = http.request("GET", "/start", action="check status")
    # then /final answered, and got the credentials and the cookie set along the way
    assert response.json() == {"method": "GET", "body": ""}
    (final,) = vendor.at("/final")
    assert final.headers["authorization"] == f"Bearer {SECRET}"
    assert f"vendor_session={COOKIE}" in final.headers["cookie"]


def test_a_vendor_on_a_public_name_follows_its_own_redirects(
    vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a vendor on a name (resolving to loopback here) that redirects on its own origin
    pretend_dns(monkeypatch, {"vendor.test": "127.0.0.1"})
    vendor.redirect = (301, f"{origin_of(vendor, 'vendor.test')}/final")
    http = bearer_client(origin_of(vendor, "vendor.test"))
    # when it is called, then the redirect is followed with the credentials
    assert http.request("GET", "/start", action="check status").status_code == 200
    assert vendor.at("/final")[0].headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("status", "method", "then"),
    [
        (303, "POST", "GET"),
        (303, "PUT", "GET"),
        (302, "POST", "GET"),
        (301, "POST", "GET"),
        (307, "POST", "POST"),
        (308, "PUT", "PUT"),
    ],
)
def test_a_redirect_changes_the_method_only_as_its_status_says(
    vendor: Vendor, status: int, method: str, then: str
) -> None:
    # given a request with a body, redirected on the same origin with this status
    vendor.redirect = (status, "/final")
    http = bearer_client(vendor.base_url)
    # when it is sent
    answer = http.request(method, "/start", action="queue export", json={"report": 10}).json()
    # then 303 (and a POST's 301/302) go on with GET and no body; 307/308 keep the method and the body
    assert answer["method"] == then
    assert answer["body"] == ('{"report": 10}' if then == method else "")


def test_a_post_redirected_to_an_answer_that_fails_is_not_sent_again(vendor: Vendor) -> None:
    # given a queue call that the vendor took (303 to the result) whose result answers 503
    vendor.redirect = (303, "/final")
    vendor.final_status = 503
    http = bearer_client(vendor.base_url)
    # when it is sent, then the POST is not repeated, and the failure is not one Submit repeats either
    with pytest.raises(ProviderServerError, match="may have taken the request"):
        http.request("POST", "/start", action="queue export", json={})
    assert [entry.method for entry in vendor.at("/start")] == ["POST"]


def test_more_than_five_redirects_are_refused(vendor: Vendor) -> None:
    # given a vendor that redirects /loop to itself forever
    http = bearer_client(vendor.base_url)
    # when it is called, then the client gives up after five redirects
    with pytest.raises(ProviderProtocolError, match=f"redirected more than {MAX_REDIRECTS} times"):
        http.request("GET", "/loop", action="check status")
    assert len(vendor.at("/loop")) == MAX_REDIRECTS + 1


def test_a_redirect_the_caller_accepts_is_returned_as_it_is(vendor: Vendor, elsewhere: Elsewhere) -> None:
    # given a caller that wants to see the 302 itself
    vendor.redirect = (302, file_url(elsewhere))
    http = bearer_client(vendor.base_url)
    # when the call is answered with it, then it is handed over and not followed
    response = http.request("GET", "/start", action="find download", accept=(200, 302))
    assert response.status_code == 302
    assert response.headers["Location"] == file_url(elsewhere)
    assert elsewhere.seen == []


# --------------------------------------------------------------------------------------------------
# Another origin


def test_a_redirect_to_another_origin_is_refused_by_default_naming_both_origins(
    vendor: Vendor, elsewhere: Elsewhere
) -> None:
    # given a vendor that redirects to another origin the connection does not allow
    vendor.redirect = (302, file_url(elsewhere))
    http = bearer_client(vendor.base_url)
    # when it is called, then the step fails, naming both origins and the setting that allows it
    with pytest.raises(ProviderProtocolError) as caught:
        http.request("GET", "/start", action="download report", stream=True)
    message = str(caught.value)
    assert message.startswith(
        f"download report: GET /start was redirected (HTTP 302) from {vendor.base_url} to "
        f"{origin_of(elsewhere)}, another origin, which this connection does not allow"
    )
    assert 'add it to the connection\'s redirect_hosts (e.g. "redirect_hosts": ["127.0.0.1"])' in message
    assert not caught.value.retryable
    assert elsewhere.seen == []


AUTHS: dict[str, tuple[dict[str, Any], str, str]] = {
    # auth type: (connection auth, the header it signs with, that header's value)
    "bearer": ({"type": "bearer", "token": {"env": "SECRET"}}, "authorization", f"Bearer {SECRET}"),
    "basic": (
        {"type": "basic", "username": "api", "password": {"env": "SECRET"}},
        "authorization",
        "Basic " + base64.b64encode(f"api:{SECRET}".encode()).decode(),
    ),
    "header": (
        {"type": "header", "header": "X-Api-Key", "value": {"env": "SECRET"}},
        "x-api-key",
        SECRET,
    ),
    "app_token": (
        {
            "type": "app_token",
            "application_id": "reportrelay",
            "application_key": {"env": "SECRET"},
            "user": "api",
        },
        "token",
        SESSION_TOKEN,
    ),
    "oauth_password": (
        {"type": "oauth_password", "username": "api", "password": {"env": "SECRET"}},
        "authorization",
        f"Bearer {ACCESS_TOKEN}",
    ),
    "oauth_client_credentials": (
        {"type": "oauth_client_credentials", "client_id": "reportrelay", "client_secret": {"env": "SECRET"}},
        "authorization",
        f"Bearer {ACCESS_TOKEN}",
    ),
    "oauth_refresh_token": (
        {"type": "oauth_refresh_token", "client_id": "reportrelay", "refresh_token": {"env": "SECRET"}},
        "authorization",
        f"Bearer {ACCESS_TOKEN}",
    ),
}


@pytest.mark.parametrize("kind", sorted(AUTHS))
def test_an_allowed_redirect_reaches_the_other_host_without_any_credential(
    vendor: Vendor, elsewhere: Elsewhere, kind: str
) -> None:
    # given a connection signing with this auth type, allowed to follow redirects to the file host
    # (the same host name on another port: the session's cookies for it would be sent if it were asked)
    auth, header, value = AUTHS[kind]
    vendor.redirect = (302, file_url(elsewhere))
    http = client(auth, vendor.base_url, redirect_hosts=[f"127.0.0.1:{port_of(elsewhere)}"])
    # when the download is asked for, with a provider header of its own
    with http.request(
        "GET", "/start", action="download report", stream=True, headers={"X-Tenant": "tenant-7"}
    ) as response:
        assert response.content == b"%PDF-1.7 report"
    # then the vendor got the credential, and the file host got the request without any credential
    (start,) = vendor.at("/start")
    assert start.headers[header] == value
    (arrived,) = elsewhere.at("/file")
    assert_no_credential(arrived)
    assert arrived.headers["user-agent"].startswith("reportrelay/")


def test_redirect_hosts_come_from_the_connection(vendor: Vendor, elsewhere: Elsewhere) -> None:
    # given a connection that lists the file host in its redirect_hosts
    connection = Connection.model_validate(
        {
            "name": "redirects",
            "provider": "devexpress",
            "base_url": vendor.base_url,
            "auth": {"type": "bearer", "token": {"env": "SECRET"}},
            "redirect_hosts": [f"127.0.0.1:{port_of(elsewhere)}"],
        }
    )
    session = requests.Session()
    signing = build_auth(connection, SecretResolver(environ={"SECRET": SECRET}), session)
    http = ProviderHttp.for_connection(connection, signing, session=session)
    vendor.redirect = (307, file_url(elsewhere))
    # when a redirect to it is answered, then it is followed, without the credential
    assert http.request("GET", "/start", action="download report").status_code == 200
    assert_no_credential(elsewhere.at("/file")[0])


def test_a_host_listed_without_a_port_is_allowed_on_any_port(
    vendor: Vendor, elsewhere: Elsewhere, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a file host by name, listed without a port
    pretend_dns(monkeypatch, {"files.test": "127.0.0.1"})
    vendor.redirect = (302, file_url(elsewhere, "files.test"))
    http = bearer_client(vendor.base_url, redirect_hosts=["Files.Test"])
    # when the vendor redirects to it, then it is followed
    assert http.request("GET", "/start", action="download report").status_code == 200
    assert_no_credential(elsewhere.at("/file")[0])


def test_a_body_is_never_sent_to_another_origin(vendor: Vendor, elsewhere: Elsewhere) -> None:
    # given a POST that the vendor redirects with 307 (keep the body) to an allowed file host
    vendor.redirect = (307, file_url(elsewhere))
    http = bearer_client(vendor.base_url, redirect_hosts=["127.0.0.1"])
    # when it is sent, then it is refused rather than re-sent there
    with pytest.raises(ProviderProtocolError, match="keeping the request body: a body is re-sent only to"):
        http.request("POST", "/start", action="queue export", json={"password": SECRET})
    assert elsewhere.seen == []


def test_a_401_from_the_other_origin_does_not_sign_in_again(vendor: Vendor, elsewhere: Elsewhere) -> None:
    # given an allowed file host that wants credentials it will never get
    elsewhere.status = 401
    vendor.redirect = (302, file_url(elsewhere))
    http = client(AUTHS["oauth_password"][0], vendor.base_url, redirect_hosts=["127.0.0.1"])
    # when the download is asked for, then it fails saying no credentials go there, after one sign-in
    with pytest.raises(ProviderAuthFailed, match="which is sent no credentials"):
        http.request("GET", "/start", action="download report")
    assert vendor.sign_ins == 1


def test_a_sign_in_call_is_never_redirected(vendor: Vendor, elsewhere: Elsewhere) -> None:
    # given a token endpoint that redirects to another host, even one allowed for downloads
    vendor.token_redirect = file_url(elsewhere)
    http = client(AUTHS["oauth_password"][0], vendor.base_url, redirect_hosts=["127.0.0.1"])
    # when a call needs a sign-in, then the password never leaves for the other host
    with pytest.raises(
        ProviderProtocolError, match=r"sign-in: POST /oauth/token answered HTTP 302, a redirect"
    ):
        http.request("GET", "/final", action="check status")
    assert elsewhere.seen == []


# --------------------------------------------------------------------------------------------------
# Addresses that are never redirected to from a vendor on a public name

PRIVATE_TARGETS = [
    ("http://127.0.0.1:{port}/file", "127.0.0.1, a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
    ("http://10.0.0.1/report", "10.0.0.1, a private address"),
    ("http://172.16.5.4/", "172.16.5.4, a private address"),
    ("http://192.168.1.1/", "192.168.1.1, a private address"),
    ("http://0.0.0.0:{port}/file", "0.0.0.0, an unspecified address"),
    ("http://[::1]:{port}/file", "::1, a loopback address"),
    ("http://[fe80::1]/", "fe80::1, a link-local address"),
    ("http://[fd00::1]/", "fd00::1, a private address"),
    ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254, a link-local address"),
    ("http://localhost:{port}/file", "localhost, which resolves to"),
    ("http://2130706433:{port}/file", "2130706433, which resolves to 127.0.0.1, a loopback address"),
    (
        "http://metadata.test/latest/",
        "metadata.test, which resolves to 169.254.169.254, a link-local address",
    ),
    ("http://intranet.test/", "intranet.test, which resolves to 10.0.0.1, a private address"),
]


@pytest.mark.parametrize(("target", "why"), PRIVATE_TARGETS)
def test_a_vendor_on_a_public_name_cannot_redirect_to_a_private_address(
    vendor: Vendor, elsewhere: Elsewhere, monkeypatch: pytest.MonkeyPatch, target: str, why: str
) -> None:
    # given a vendor on a name (that happens to live on loopback here), redirecting to a private address
    # which the connection even lists as allowed
    pretend_dns(
        monkeypatch,
        {"vendor.test": "127.0.0.1", "metadata.test": "169.254.169.254", "intranet.test": "10.0.0.1"},
    )
    location = target.format(port=port_of(elsewhere))
    vendor.redirect = (302, location)
    http = bearer_client(origin_of(vendor, "vendor.test"), redirect_hosts=[urlsplit(location).hostname or ""])
    # when it is called, then the redirect is refused, saying why, and nothing is sent there
    with pytest.raises(ProviderProtocolError) as caught:
        http.request("GET", "/start", action="download report")
    message = str(caught.value)
    assert f"from {origin_of(vendor, 'vendor.test')} to " in message
    assert f": {why}" in message
    assert "are never followed when the connection's base_url is not on one" in message
    assert elsewhere.seen == []


# --------------------------------------------------------------------------------------------------
# https


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def test_a_redirect_from_https_to_http_is_refused(ca: TestCA, elsewhere: Elsewhere) -> None:
    # given a vendor on https redirecting to plain http (on a host the connection allows)
    def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return 302, {"Location": file_url(elsewhere)}, b""

    with TlsServer(ca.issue("127.0.0.1"), answer) as server:
        base_url = f"https://127.0.0.1:{server.port}"
        http = bearer_client(base_url, verify=str(ca.bundle), redirect_hosts=["127.0.0.1"])
        # when it is called, then the redirect is refused: the request would travel unencrypted
        with pytest.raises(ProviderProtocolError) as caught:
            http.request("GET", "/start", action="download report")
    assert str(caught.value) == (
        f"download report: GET /start was redirected (HTTP 302) from {base_url} to {origin_of(elsewhere)}: "
        "a redirect from https to http is never followed (the request would travel unencrypted)"
    )
    assert elsewhere.seen == []


def test_a_same_origin_redirect_over_https_is_followed(ca: TestCA) -> None:
    # given a vendor on https that redirects /start to /final
    def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path == "/start":
            return 308, {"Location": "/final"}, b""
        return 200, {}, b'{"ok": true}'

    with TlsServer(ca.issue("127.0.0.1"), answer) as server:
        http = bearer_client(f"https://127.0.0.1:{server.port}", verify=str(ca.bundle))
        # when it is called, then /final answers, with the credentials, over the same verified TLS
        assert http.request("GET", "/start", action="check status").json() == {"ok": True}
    assert [(path, headers.get("authorization")) for _, path, headers in server.requests] == [
        ("/start", f"Bearer {SECRET}"),
        ("/final", f"Bearer {SECRET}"),
    ]
