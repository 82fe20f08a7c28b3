"""Connection-level failures over real sockets: each names the host, the port and the cause in plain words.

DNS and TLS failures are permanent and fail in seconds (no retry here, and a class the state machine does
not retry); refused and timed-out connections keep their retries. An HTML page where JSON or a file was
expected is named as one. The TLS servers and the pretend resolver here are shared with
``test_http_redirects.py``.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from reportrelay.auth import StaticHeaders, request_token
from reportrelay.errors import (
    ConfigurationError,
    ProviderProtocolError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from reportrelay.httpclient import ProviderHttp, RetryBudget
from reportrelay_cli.sandbox.server import Request, Response, Simulator, json_response, route
from tests.tls import TestCA, TlsServer

PERMANENT_FAILURE_SECONDS = 10.0

# --------------------------------------------------------------------------------------------------
# Test servers and names


def pretend_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> None:
    """Make ``names`` resolve to the given addresses for urllib3 and the client alike; others as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        key = host.decode() if isinstance(host, bytes) else host
        if isinstance(key, str) and key.lower().rstrip(".") in names:
            return real(names[key.lower().rstrip(".")], port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


class Portal(Simulator):
    """A web portal where an API was expected: sign-in pages, HTML error pages, an HTML report."""

    name = "portal"
    SIGN_IN_PAGE = (
        b"<!DOCTYPE html>\n<html><head><title>Sign in to your account</title></head>"
        b"<body><form action='/login'>...</form></body></html>"
    )

    @route("GET", "/api/status")
    def status(self, request: Request) -> Response:
        return Response(200, self.SIGN_IN_PAGE, {"Content-Type": "text/html; charset=utf-8"})

    @route("GET", "/api/forbidden")
    def forbidden(self, request: Request) -> Response:
        return Response(403, self.SIGN_IN_PAGE, {"Content-Type": "text/html"})

    @route("GET", "/api/mislabelled")
    def mislabelled(self, request: Request) -> Response:
        # Some APIs (PHP ones, notably) label their JSON text/html.
        return Response(200, b'{"status": "DONE"}', {"Content-Type": "text/html"})

    @route("GET", "/api/empty")
    def empty(self, request: Request) -> Response:
        return Response(200, b"", {"Content-Type": "text/html"})

    @route("GET", "/api/report.html", download=True)
    def report(self, request: Request) -> Response:
        return Response(200, b"<!DOCTYPE html>\n<html><body>Q3</body></html>", {"Content-Type": "text/html"})

    @route("GET", "/api/json")
    def json(self, request: Request) -> Response:
        return json_response({"ok": True})


def port_of(simulator: Simulator) -> int:
    port = urlsplit(simulator.base_url).port
    assert port is not None
    return port


def quick(**kwargs: Any) -> dict[str, Any]:
    """Client settings for tests that want no real waiting unless they say so."""
    kwargs.setdefault("budget", RetryBudget(attempts=3, max_total_wait_seconds=5, base_backoff_seconds=0.01))
    return kwargs


# --------------------------------------------------------------------------------------------------
# Refused, not found, timed out


def test_a_refused_connection_names_the_host_the_port_and_the_cause() -> None:
    # given a port nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = ProviderHttp(f"http://127.0.0.1:{port}", StaticHeaders({}), **quick())
    # when a call is made, then it is retried (a refusal may pass) and then says who refused
    with pytest.raises(ProviderUnavailable) as caught:
        http.request("GET", "/api/status", action="check status")
    assert str(caught.value).startswith(
        f"check status: GET /api/status could not connect to 127.0.0.1 port {port}: connection refused"
    )


def test_a_name_that_does_not_resolve_is_permanent_and_fails_in_seconds() -> None:
    # given a connection whose host name does not exist, and the client's real retry budget and sleep
    http = ProviderHttp("https://nonexistent.invalid", StaticHeaders({}))
    started = time.monotonic()
    # when a status check is made
    with pytest.raises(ConfigurationError) as caught:
        http.request("GET", "/api/status", action="check status")
    # then it says the name was not found, naming host and port, and is not retried by anyone
    assert time.monotonic() - started < PERMANENT_FAILURE_SECONDS
    assert str(caught.value) == (
        "check status: GET /api/status could not connect to nonexistent.invalid port 443: name not found "
        "(DNS has no address for nonexistent.invalid); check the host name in base_url"
    )
    assert not caught.value.retryable


def test_a_temporary_dns_failure_is_retried_like_an_unreachable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a resolver that cannot answer just now (EAI_AGAIN), then can
    real = socket.getaddrinfo
    failures = [socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")]

    def flaky(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "vendor.test" and failures:
            raise failures.pop()
        return real("127.0.0.1" if host == "vendor.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    with Portal() as portal:
        http = ProviderHttp(f"http://vendor.test:{port_of(portal)}", StaticHeaders({}), **quick())
        # when a call is made, then the second attempt gets through
        assert http.request("GET", "/api/json", action="check status").json() == {"ok": True}
    assert not failures


def test_a_server_that_never_answers_names_the_read_timeout() -> None:
    # given a server that accepts connections and never answers (the kernel accepts for it)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        http = ProviderHttp(f"http://127.0.0.1:{port}", StaticHeaders({}), timeout=(2, 0.4), **quick())
        # when a queue call is made, then it is not repeated and says how long it waited, for whom
        started = time.monotonic()
        with pytest.raises(ProviderTimeout) as caught:
            http.request("POST", "/api/export", action="queue export", json={})
    assert time.monotonic() - started < 2
    assert str(caught.value) == (
        f"queue export: POST /api/export got no answer in time: 127.0.0.1 port {port} accepted the "
        "connection but sent no answer within 0.4 s (read timeout)"
    )


def test_a_sign_in_that_gets_no_answer_is_safe_to_repeat_but_a_refresh_token_redemption_is_not() -> None:
    # given a sign-in host that accepts connections and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        token_url = f"http://127.0.0.1:{silent.getsockname()[1]}/oauth/token"
        with requests.Session() as session:
            # when a password sign-in gets no answer, then the step may repeat it (nothing changed)
            with pytest.raises(ProviderUnavailable) as caught:
                request_token(
                    session, token_url, timeout=(2, 0.3), verify=True, form={"grant_type": "password"}
                )
            assert "a sign-in changes nothing, so it is safe to repeat" in str(caught.value)
            # and when a refresh-token redemption gets none, it is not (the host may have voided the token)
            with pytest.raises(ProviderTimeout):
                request_token(
                    session,
                    token_url,
                    timeout=(2, 0.3),
                    verify=True,
                    form={"grant_type": "refresh_token"},
                    repeatable=False,
                )


def test_a_connection_that_is_never_accepted_names_the_connect_timeout() -> None:
    # given a listening socket whose backlog is full, so new connections are left unanswered
    with socket.socket() as crowded:
        crowded.bind(("127.0.0.1", 0))
        crowded.listen(0)
        port = crowded.getsockname()[1]
        waiting: list[socket.socket] = []
        try:
            while len(waiting) < 8:
                filler = socket.socket()
                filler.settimeout(0.3)
                waiting.append(filler)
                try:
                    filler.connect(("127.0.0.1", port))
                except TimeoutError:
                    break
            else:
                pytest.skip("this kernel accepts connections beyond the backlog; no connect timeout to see")
            http = ProviderHttp(
                f"http://127.0.0.1:{port}",
                StaticHeaders({}),
                timeout=(0.3, 5),
                **quick(budget=RetryBudget(1)),
            )
            # when a call is made, then it says it could not connect in the time allowed
            with pytest.raises(ProviderUnavailable) as caught:
                http.request("GET", "/api/status", action="check status")
        finally:
            for filler in waiting:
                filler.close()
    assert str(caught.value).startswith(
        f"check status: GET /api/status could not connect to 127.0.0.1 port {port}: timed out after 0.3 s "
        "connecting (connect timeout)"
    )


# --------------------------------------------------------------------------------------------------
# TLS


def _fails_in_seconds(http: ProviderHttp) -> ConfigurationError:
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        http.request("GET", "/api/status", action="check status")
    assert time.monotonic() - started < PERMANENT_FAILURE_SECONDS
    assert not caught.value.retryable
    return caught.value


def test_a_self_signed_certificate_is_not_trusted_and_fails_once_in_seconds(ca: TestCA) -> None:
    # given a vendor whose certificate is self-signed, and the default trust store
    with TlsServer(ca.issue("127.0.0.1", self_signed=True)) as server:
        http = ProviderHttp(f"https://127.0.0.1:{server.port}", StaticHeaders({}))
        # when a call is made, then the handshake failure is permanent: one attempt, in seconds
        error = _fails_in_seconds(http)
        assert server.connections == 1
    assert str(error).startswith(
        f"check status: GET /api/status could not connect to 127.0.0.1 port {server.port}: TLS handshake "
        "failed: certificate not trusted (self-signed certificate)"
    )


def test_a_certificate_from_an_unknown_ca_is_not_trusted(ca: TestCA) -> None:
    # given a vendor whose certificate comes from a private CA nobody gave us
    with TlsServer(ca.issue("127.0.0.1")) as server:
        error = _fails_in_seconds(ProviderHttp(f"https://127.0.0.1:{server.port}", StaticHeaders({})))
    # then it says so, and what to do
    assert "TLS handshake failed: certificate not trusted (unable to get local issuer certificate)" in str(
        error
    )
    assert "the connection must trust that CA" in str(error)


def test_a_certificate_for_another_name_is_a_hostname_mismatch(
    ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given vendor.test (on loopback) presenting a certificate, trusted, but issued to elsewhere.test
    pretend_dns(monkeypatch, {"vendor.test": "127.0.0.1"})
    with TlsServer(ca.issue("elsewhere.test")) as server:
        http = ProviderHttp(f"https://vendor.test:{server.port}", StaticHeaders({}), verify=str(ca.bundle))
        error = _fails_in_seconds(http)
        assert server.requests == []
    # then the message names the host it is not valid for
    assert str(error) == (
        f"check status: GET /api/status could not connect to vendor.test port {server.port}: TLS handshake "
        "failed: hostname mismatch (the server's certificate is not valid for vendor.test); check the host "
        "name in base_url"
    )


def test_the_same_server_with_the_right_ca_and_name_answers(ca: TestCA) -> None:
    # given the CA that issued the vendor's certificate (the counterpart of the failures above)
    with TlsServer(ca.issue("127.0.0.1")) as server:
        http = ProviderHttp(f"https://127.0.0.1:{server.port}", StaticHeaders({}), verify=str(ca.bundle))
        # when a call is made, then it succeeds
        assert http.request("GET", "/api/status", action="check status").json() == {"ok": True}


def test_a_server_with_only_old_tls_versions_is_a_protocol_version_failure(ca: TestCA) -> None:
    # given a server that speaks at most TLS 1.1, where reportrelay needs 1.2 or later
    def old_versions_only(context: ssl.SSLContext) -> None:
        try:
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as error:
            pytest.skip(f"this OpenSSL cannot serve TLS 1.1 ({error})")

    with TlsServer(ca.issue("127.0.0.1"), configure=old_versions_only) as server:
        error = _fails_in_seconds(
            ProviderHttp(f"https://127.0.0.1:{server.port}", StaticHeaders({}), verify=str(ca.bundle))
        )
    assert str(error).startswith(
        f"check status: GET /api/status could not connect to 127.0.0.1 port {server.port}: TLS handshake "
        "failed: protocol version (the server and reportrelay have no TLS version in common"
    )


def test_https_to_a_plain_http_port_is_a_protocol_version_failure_that_suggests_the_scheme() -> None:
    # given a plain HTTP server, addressed with https://
    with Portal() as portal:
        http = ProviderHttp(f"https://127.0.0.1:{port_of(portal)}", StaticHeaders({}))
        error = _fails_in_seconds(http)
    assert "TLS handshake failed: protocol version (the server did not answer in TLS" in str(error)
    assert "check the scheme and port in base_url" in str(error)


# --------------------------------------------------------------------------------------------------
# HTML where JSON or a file was expected

HTML_HINT = "perhaps a sign-in page: check base_url and auth"


@pytest.fixture
def portal() -> Iterator[Portal]:
    with Portal() as running:
        yield running


def test_a_sign_in_page_where_json_was_expected_says_so(portal: Portal) -> None:
    # given a base_url that leads to a sign-in page instead of the API
    http = ProviderHttp(portal.base_url, StaticHeaders({}), **quick())
    # when a status check (which expects JSON) is answered with it, then the error says what it is
    with pytest.raises(ProviderProtocolError) as caught:
        http.request("GET", "/api/status", action="check status")
    assert str(caught.value) == (
        'check status: GET /api/status answered with an HTML page ("Sign in to your account"), ' + HTML_HINT
    )
    assert len(portal.calls("GET", "/api/status")) == 1


def test_an_html_error_page_is_named_rather_than_quoted(portal: Portal) -> None:
    # given a 403 whose body is an HTML page, when the call is made
    http = ProviderHttp(portal.base_url, StaticHeaders({}), **quick())
    with pytest.raises(ProviderRejected) as caught:
        http.request("GET", "/api/forbidden", action="check status")
    # then the message says it was an HTML page, without its markup
    assert str(caught.value) == (
        "check status: GET /api/forbidden answered HTTP 403 with an HTML page "
        '("Sign in to your account"), ' + HTML_HINT
    )


@pytest.mark.parametrize("path", ["/api/mislabelled", "/api/empty"])
def test_json_or_nothing_labelled_html_is_not_mistaken_for_a_page(portal: Portal, path: str) -> None:
    # given an API that labels JSON (or an empty answer) text/html, when it is called, then it passes
    http = ProviderHttp(portal.base_url, StaticHeaders({}), **quick())
    assert http.request("GET", path, action="check status").status_code == 200


def test_a_streamed_html_answer_is_refused_only_when_the_caller_expects_no_html(portal: Portal) -> None:
    # given a download answered with text/html
    http = ProviderHttp(portal.base_url, StaticHeaders({}), **quick())
    # when the report format is HTML (the default for a stream), then the file passes
    with http.request("GET", "/api/report.html", action="download report", stream=True) as response:
        assert b"Q3" in response.content
    # when the caller expects a PDF, say, then it is refused before anything is stored
    with pytest.raises(ProviderProtocolError) as caught:
        http.request("GET", "/api/report.html", action="download report", stream=True, html_ok=False)
    assert (
        str(caught.value) == f"download report: GET /api/report.html answered with an HTML page, {HTML_HINT}"
    )


# ---- the calling function's time limit


def test_a_call_never_outlasts_its_functions_time_limit() -> None:
    # given a server that never answers, a 60 s read timeout, and a function with 8 s left
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        http = ProviderHttp(
            f"http://127.0.0.1:{port}",
            StaticHeaders({}),
            timeout=(2, 60),
            ends_at=time.monotonic() + 8,
            budget=RetryBudget(attempts=5, max_total_wait_seconds=30, base_backoff_seconds=0.5),
        )
        # when a status check (safe to repeat) is made
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable) as caught:
            http.request("GET", "/api/status", action="check status")
    # then its one attempt waited only the 3 s left before the 5 s margin, and no retry was begun after it
    assert time.monotonic() - started < 4.5
    assert str(caught.value) == (
        "check status: stopped after 1 attempt, as the step's function is about to reach its time limit; "
        "the step will be retried"
    )


def test_no_attempt_starts_when_the_function_is_about_to_end() -> None:
    # given a function with 3 s left (less than the 5 s margin)
    calls = []
    http = ProviderHttp("http://127.0.0.1:9", StaticHeaders({}), ends_at=time.monotonic() + 3)
    http.session.request = lambda *args, **kwargs: calls.append(args)  # type: ignore[method-assign]
    # when a queue call would be made
    with pytest.raises(ProviderUnavailable) as caught:
        http.request("POST", "/api/export", action="queue export", json={})
    # then nothing was sent, and the error says why and that the step is retried (nothing was queued)
    assert calls == []
    assert str(caught.value) == (
        "queue export: stopped before calling, as the step's function is about to reach its time limit; "
        "the step will be retried"
    )


def test_a_retry_wait_that_would_outlast_the_function_is_not_begun() -> None:
    # given a vendor that throttles with Retry-After: 30 and a function with 20 s left
    with Throttling() as vendor:
        http = ProviderHttp(
            vendor.base_url,
            StaticHeaders({}),
            ends_at=time.monotonic() + 20,
            budget=RetryBudget(attempts=3, max_total_wait_seconds=120, base_backoff_seconds=0.5),
        )
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match="stopped after 1 attempt, as the step's function"):
            http.request("GET", "/status", action="check status")
    assert time.monotonic() - started < 5


class Throttling(Simulator):
    name = "throttling"

    @route("GET", "/status")
    def status(self, request: Request) -> Response:
        return json_response({"message": "slow down"}, status=429, headers={"Retry-After": "30"})
