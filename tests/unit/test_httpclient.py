"""The shared HTTP client over real loopback HTTP: what is retried, what is not, and what errors say."""

from __future__ import annotations

import logging
import time

import pytest

from reportrelay.auth import StaticHeaders
from reportrelay.errors import (
    ProviderAuthFailed,
    ProviderRejected,
    ProviderServerError,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
)
from reportrelay.httpclient import ProviderHttp, RetryBudget
from reportrelay_cli.sandbox.server import HttpError, Request, Response, Simulator, json_response, route


class ScriptedServer(Simulator):
    """Answers each call to /thing with the next scripted (status, headers, body); then 200."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__()
        self.script: list[tuple[int, dict[str, str], object]] = []

    @route("GET", "/thing")
    @route("POST", "/thing")
    def thing(self, request: Request) -> Response:
        if self.script:
            status, headers, body = self.script.pop(0)
            if status == 0:
                time.sleep(float(body))
                return json_response({"late": True})
            raise HttpError(status, str(body), headers)
        return json_response({"ok": True})


class CountingAuth(StaticHeaders):
    def __init__(self) -> None:
        super().__init__({"Authorization": "Bearer t"})
        self.renewals = 0

    def renew(self) -> bool:
        self.renewals += 1
        return True


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def client(server, **kwargs) -> ProviderHttp:
    kwargs.setdefault("budget", RetryBudget(attempts=3, max_total_wait_seconds=5, base_backoff_seconds=0.01))
    return ProviderHttp(server.base_url, kwargs.pop("auth", StaticHeaders({})), **kwargs)


def posts(server) -> int:
    return len(server.calls("POST", "/thing"))


def test_a_post_answered_429_is_retried_after_retry_after_because_nothing_was_done(server):
    server.script = [(429, {"Retry-After": "1"}, "slow down")]
    started = time.monotonic()
    assert client(server).request("POST", "/thing", action="queue").json() == {"ok": True}
    assert time.monotonic() - started >= 1
    assert posts(server) == 2


def test_a_post_answered_500_is_not_retried_because_it_may_have_queued_the_report(server):
    server.script = [(500, {}, "boom")]
    with pytest.raises(ProviderServerError, match="queue: POST /thing answered HTTP 500: boom"):
        client(server).request("POST", "/thing", action="queue")
    assert posts(server) == 1


@pytest.mark.parametrize("status", [502, 504])
def test_a_post_answered_by_a_gateway_is_not_repeated_because_it_may_have_queued_the_report(server, status):
    # given a gateway in front of the provider that gives up on a queue call
    server.script = [(status, {}, "gateway gave up")]
    # when the call is made, then it is sent once and fails as a server error, which Submit does not retry
    with pytest.raises(ProviderServerError, match=f"answered HTTP {status}.*may have taken the request"):
        client(server).request("POST", "/thing", action="queue")
    assert posts(server) == 1


def test_a_get_answered_500_is_retried(server):
    server.script = [(500, {}, "boom"), (502, {}, "bad gateway")]
    assert client(server).request("GET", "/thing", action="check").json() == {"ok": True}
    assert len(server.calls("GET", "/thing")) == 3


def test_a_retry_after_beyond_the_budget_is_handed_to_the_state_machine(server):
    # given a provider asking for a pause longer than one call may wait
    server.script = [(429, {"Retry-After": "120"}, "come back later")]
    # when the call is made, then it fails at once carrying the provider's pause
    started = time.monotonic()
    with pytest.raises(ProviderThrottled) as caught:
        client(server).request("GET", "/thing", action="check")
    assert caught.value.retry_after == 120
    assert time.monotonic() - started < 1


def test_a_401_renews_the_credentials_once(server):
    auth = CountingAuth()
    server.script = [(401, {}, "expired")]
    assert client(server, auth=auth).request("GET", "/thing", action="check").json() == {"ok": True}
    assert auth.renewals == 1
    server.script = [(401, {}, "expired"), (401, {}, "still no")]
    with pytest.raises(ProviderAuthFailed, match="check the connection's credentials"):
        client(server, auth=auth).request("GET", "/thing", action="check")


@pytest.mark.parametrize("status", [400, 403, 404])
def test_client_errors_are_permanent_and_quote_the_provider(server, status):
    server.script = [(status, {}, "Report 10 does not exist")]
    with pytest.raises(ProviderRejected, match=f"HTTP {status}: Report 10 does not exist"):
        client(server).request("GET", "/thing", action="check")
    assert len(server.calls("GET", "/thing")) == 1


def test_a_post_that_times_out_is_not_retried(server):
    server.script = [(0, {}, "1.0")]
    with pytest.raises(ProviderTimeout, match="got no answer in time"):
        client(server, timeout=(2, 0.3)).request("POST", "/thing", action="queue")
    time.sleep(0.8)
    assert posts(server) == 1


def test_a_refused_connection_is_unavailable_and_says_so():
    http = ProviderHttp("http://127.0.0.1:9", StaticHeaders({}), budget=RetryBudget(attempts=1))
    with pytest.raises(ProviderUnavailable, match="could not connect"):
        http.request("POST", "/thing", action="queue")


def test_query_strings_never_appear_in_error_messages(server):
    server.script = [(404, {}, "no such session")]
    with pytest.raises(ProviderRejected) as caught:
        client(server).request("GET", "/thing?token=SECRET-SESSION", action="get")
    assert "SECRET-SESSION" not in str(caught.value)


def test_a_get_that_keeps_failing_with_500_is_reported_as_safe_to_repeat(server):
    # given a status call answered 500 more often than one call retries
    server.script = [(500, {}, "boom")] * 3
    # when it is made, then the error is ProviderUnavailable (any step may retry it), quoting the 500
    with pytest.raises(
        ProviderUnavailable, match=r"check: GET /thing answered HTTP 500: boom.*safe to repeat"
    ):
        client(server).request("GET", "/thing", action="check")
    assert len(server.calls("GET", "/thing")) == 3


def test_a_get_that_keeps_timing_out_is_reported_as_safe_to_repeat(server):
    # given a status call that is answered later than the read timeout, every time
    server.script = [(0, {}, "0.6")] * 2
    # when it is made, then it says it got no answer in time, and that repeating it is safe
    with pytest.raises(ProviderUnavailable, match=r"got no answer in time.*safe to repeat"):
        client(server, timeout=(2, 0.2), budget=RetryBudget(attempts=2, base_backoff_seconds=0.01)).request(
            "GET", "/thing", action="check"
        )


def test_debug_logs_of_requests_leave_out_query_strings(server, caplog):
    # given logging at DEBUG, where urllib3 logs every request line
    caplog.set_level(logging.DEBUG)
    # when a call carries a session token in its query string
    client(server).request("GET", "/thing?token=SECRET-SESSION%2B1", action="get")
    # then the request was logged, without the query string
    assert "GET /thing?<query omitted>" in caplog.text
    assert "SECRET-SESSION" not in caplog.text
