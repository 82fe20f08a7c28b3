"""Metric Insights: the simulator and the adapter over real HTTP, one test per quirk of the vendor doc."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote

import pytest
import requests

from reportrelay.config import Connection, JobRequest, SecretResolver, parse_job_request
from reportrelay.errors import (
    BadRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderTimeout,
    ReportGenerationFailed,
    ReportRelayError,
)
from reportrelay.providers import open_provider
from reportrelay.providers.base import Handle, ReportState
from reportrelay.providers.declarative import DeclarativeProvider, packaged_provider
from reportrelay_cli.sandbox.metric_insights import MetricInsightsSimulator, sandbox_simulator
from reportrelay_cli.sandbox.server import Faults, json_response
from tests.clock import SkippingClock

APP_KEY = "mi-App-Key-7d21"
API_TOKEN = "mi-personal-api-token-9f3e"
SALES = "/api/element/id/1042/segment/0/download/state"
#: The adapter the registry builds from specs/metric_insights.json.
MetricInsights = packaged_provider("metric_insights")


@pytest.fixture
def sim(vendor_clock: SkippingClock) -> Iterator[MetricInsightsSimulator]:
    with MetricInsightsSimulator(
        clock=vendor_clock,
        applications={"reportrelay": APP_KEY},
        api_tokens={API_TOKEN: "api"},
        generation_seconds=0.3,
        report_size=4096,
    ) as simulator:
        yield simulator


def provider(sim: MetricInsightsSimulator, auth: str = "app_token", **settings: Any) -> DeclarativeProvider:
    """An adapter for the simulator, signed in with an application key or a personal API token, on the
    simulator's clock."""
    auths = {
        "app_token": {
            "type": "app_token",
            "application_id": "reportrelay",
            "application_key": {"env": "MI_KEY"},
            "user": "api",
        },
        "bearer": {"type": "bearer", "token": {"env": "MI_TOKEN"}},
    }
    connection = Connection.model_validate(
        {
            "name": "mi",
            "provider": "metric_insights",
            "base_url": sim.base_url,
            "auth": auths[auth],
            **settings,
        }
    )
    secrets = SecretResolver({"MI_KEY": APP_KEY, "MI_TOKEN": API_TOKEN})
    adapter = open_provider(connection, secrets, clock=sim.clock)
    assert isinstance(adapter, MetricInsights)
    return adapter


def job(element_id: int = 1042, format: str = "pdf", **report: Any) -> JobRequest:
    return parse_job_request(
        {"connection": "mi", "report": {"element_id": element_id, **report}, "format": format}
    )


def held(adapter: DeclarativeProvider, request: JobRequest, handle: Handle) -> threading.Thread:
    """The holder function's work on a thread, as LocalAws runs it; like workflow.hold, errors end it."""

    def hold() -> None:
        with contextlib.suppress(ReportRelayError):
            adapter.hold(request, handle)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def generated(adapter: DeclarativeProvider, request: JobRequest) -> Handle:
    """A session whose file is ready to download."""
    handle = adapter.submit(request).handle
    assert handle is not None
    held(adapter, request, handle).join(timeout=10)
    assert adapter.check(request, handle).state is ReportState.READY
    return handle


def app_token(sim: MetricInsightsSimulator) -> str:
    answer = requests.post(
        f"{sim.base_url}/api/get_token/",
        json={"application_id": "reportrelay", "application_key": APP_KEY, "user": "api"},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def call(sim: MetricInsightsSimulator, url: str, token: str | None, **kwargs: Any) -> requests.Response:
    headers = {"Token": token} if token else {}
    return requests.get(f"{sim.base_url}{url}", headers=headers, timeout=5, **kwargs)


# ---- the simulator, as the vendor document describes it


def test_init_returns_a_url_encoded_token_holding_plus_slash_and_equals(sim: MetricInsightsSimulator) -> None:
    # given a signed-in client
    token = app_token(sim)
    # when it lists the formats and opens a download session
    formats = call(sim, f"{SALES}/formats", token).json()
    encoded = call(sim, f"{SALES}/init", token).json()["token"]
    # then the formats are the plugin's and the token comes URL-encoded, with all three awkward characters
    assert formats == {"status": "OK", "formats": ["image", "pdf", "csv"]}
    assert "%2B" in encoded and "%2F" in encoded and "%3D" in encoded
    assert {"+", "/", "="} <= set(unquote(encoded))


def test_the_simulator_accepts_only_the_exact_token(sim: MetricInsightsSimulator) -> None:
    # given an open session
    token = app_token(sim)
    encoded = call(sim, f"{SALES}/init", token).json()["token"]
    decoded = unquote(encoded)
    # when the token is sent double-encoded, raw (where "+" reads as a space), and encoded once
    double = call(sim, f"{SALES}/check", token, params={"token": encoded})
    raw = call(sim, f"{SALES}/check?token={decoded}", token)
    exact = call(sim, f"{SALES}/check?token={quote(decoded, safe='')}", token)
    # then only the exact token is recognised
    assert double.status_code == raw.status_code == 400
    assert double.json() == {"status": "ERROR", "message": "Invalid token"}
    assert exact.status_code == 200 and exact.json() == {"status": "IN PROGRESS"}


def test_generation_happens_only_while_run_is_held_open(
    sim: MetricInsightsSimulator, vendor_clock: SkippingClock
) -> None:
    # given an open session and more than the generation time passing without a run
    token = app_token(sim)
    session = unquote(call(sim, f"{SALES}/init", token).json()["token"])
    vendor_clock.advance(0.4)
    idle = call(sim, f"{SALES}/check", token, params={"token": session}).json()
    early_get = call(sim, f"{SALES}/get", token, params={"token": session, "format": "pdf"})
    # when run is called
    started = time.monotonic()
    run = call(sim, f"{SALES}/run", token, params={"token": session, "format": "pdf"})
    run_seconds = time.monotonic() - started
    ready = call(sim, f"{SALES}/check", token, params={"token": session}).json()
    # then nothing progressed before it, run answered only once the file was generated
    assert idle == {"status": "IN PROGRESS"}
    assert early_get.status_code == 200 and early_get.json() == {"status": "IN PROGRESS"}
    assert run.json() == {"status": "OK"} and run_seconds >= 0.3
    assert ready == {"status": "READY"}


def test_get_serves_the_file_once_named_after_the_element(sim: MetricInsightsSimulator) -> None:
    # given a generated PowerPoint of an element whose name holds reserved characters
    token = app_token(sim)
    board = "/api/element/id/1043/segment/0/download/state"
    session = unquote(call(sim, f"{board}/init", token).json()["token"])
    call(sim, f"{board}/run", token, params={"token": session, "format": "ppt"})
    # when it is downloaded twice
    first = call(sim, f"{board}/get", token, params={"token": session, "format": "ppt"})
    second = call(sim, f"{board}/get", token, params={"token": session, "format": "ppt"})
    # then the first is the file, named <element-name>.<extension> without reserved characters, and the
    # session is consumed
    assert first.status_code == 200
    assert first.headers["Content-Disposition"] == 'attachment; filename="Board Pack Q1Q2 Final.pptx"'
    assert first.headers["Content-Type"].endswith("presentationml.presentation")
    assert second.status_code == 400 and second.json()["message"] == "Invalid token"
    assert sim.session_list()[0].state == "consumed"


def test_a_session_expires_after_its_lifetime(
    sim: MetricInsightsSimulator, vendor_clock: SkippingClock
) -> None:
    # given sessions that live five minutes
    sim.session_lifetime_seconds = 300
    token = app_token(sim)
    session = unquote(call(sim, f"{SALES}/init", token).json()["token"])
    # when the session is used after that
    vendor_clock.advance(300)
    check = call(sim, f"{SALES}/check", token, params={"token": session})
    # then it answers the document's "Download failed"
    assert check.status_code == 400 and check.json() == {"status": "ERROR", "message": "Download failed"}


def test_a_failed_generation_answers_error_to_run_check_and_get(sim: MetricInsightsSimulator) -> None:
    # given a plugin that fails
    sim.fail_reports = "Tableau server refused the export"
    token = app_token(sim)
    session = unquote(call(sim, f"{SALES}/init", token).json()["token"])
    # when run, check and get are called
    run = call(sim, f"{SALES}/run", token, params={"token": session, "format": "pdf"})
    check = call(sim, f"{SALES}/check", token, params={"token": session})
    get = call(sim, f"{SALES}/get", token, params={"token": session, "format": "pdf"})
    # then each says ERROR
    assert run.status_code == 400 and run.json()["message"] == "Tableau server refused the export"
    assert check.json() == {"status": "ERROR", "message": "Tableau server refused the export"}
    assert get.json() == {"status": "ERROR"}


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/element/id/1042/segment/0/download/state/start", 400, "Invalid state"),
        ("/api/element/id/1044/segment/0/download/state/formats", 400, "No downloads available"),
        ("/api/element/id/2001/segment/0/download/state/init", 400, "Not implemented for this Element Type"),
        ("/api/element/id/1045/segment/0/download/state/formats", 403, "Element not allowed"),
        ("/api/element/id/9999/segment/0/download/state/formats", 404, "Element not found"),
        ("/api/element/id/1042/segment/3/download/state/formats", 404, "Element not found"),
        ("/api/element/id/1042/segment/0/download/state/check", 400, "Invalid token"),
        ("/api/element/id/1042/segment/0/download/state/run?token=x&format=pdf", 400, "Invalid token"),
    ],
)
def test_the_error_table(sim: MetricInsightsSimulator, path: str, status: int, message: str) -> None:
    # given a signed-in client
    token = app_token(sim)
    # when it makes a call the document lists as an error
    answer = call(sim, path, token)
    # then the answer is the document's status and message
    assert answer.status_code == status
    assert answer.json() == {"status": "ERROR", "message": message}


def test_a_format_the_plugin_does_not_offer_is_invalid(sim: MetricInsightsSimulator) -> None:
    # given a session on a report that offers image, pdf and csv
    token = app_token(sim)
    session = unquote(call(sim, f"{SALES}/init", token).json()["token"])
    # when run asks for Excel
    answer = call(sim, f"{SALES}/run", token, params={"token": session, "format": "xls"})
    # then it is refused and nothing runs
    assert answer.status_code == 400 and answer.json()["message"] == "Invalid format"
    assert sim.session_list()[0].state == "initialized"


def test_api_credentials_get_token_bearer_and_412_when_expired(sim: MetricInsightsSimulator) -> None:
    # given a get_token credential, a personal API token, a wrong key and no credential at all
    token = app_token(sim)
    wrong = requests.post(
        f"{sim.base_url}/api/get_token/",
        json={"application_id": "reportrelay", "application_key": "nope", "user": "api"},
        timeout=5,
    )
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    # when the API is called with each, then with both expired
    with_token = call(sim, f"{SALES}/formats", token)
    with_bearer = requests.get(f"{sim.base_url}{SALES}/formats", headers=bearer, timeout=5)
    anonymous = call(sim, f"{SALES}/formats", None)
    sim.expire_api_tokens()
    expired = [
        call(sim, f"{SALES}/formats", token),
        requests.get(f"{sim.base_url}{SALES}/formats", headers=bearer),
    ]
    # then both kinds work until they expire, when they get 412 "Session expired"
    assert wrong.status_code == 401 and anonymous.status_code == 401
    assert with_token.status_code == with_bearer.status_code == 200
    assert [answer.status_code for answer in expired] == [412, 412]
    assert expired[0].json() == {"status": "ERROR", "message": "Session expired"}


def test_throttling_answers_429_in_the_vendor_error_shape(sim: MetricInsightsSimulator) -> None:
    # given the next API call is throttled
    token = app_token(sim)
    sim.faults.throttle_next = 1
    # when the formats are listed twice
    answers = [call(sim, f"{SALES}/formats", token) for _ in range(2)]
    # then the first is a 429 with Retry-After and the second goes through
    assert [answer.status_code for answer in answers] == [429, 200]
    assert answers[0].headers["Retry-After"] == "1" and answers[0].json()["status"] == "ERROR"


def test_sandbox_factory_accepts_the_secret_as_application_key_and_api_token() -> None:
    # given the simulator as `reportrelay sandbox` builds it
    with sandbox_simulator(
        port=0,
        faults=Faults(),
        secret="s3cret",
        generation_seconds=0.1,
        token_lifetime_seconds=60,
        fail_reports=None,
    ) as simulator:
        # when the secret is used as application key and as a personal API token
        got = requests.post(
            f"{simulator.base_url}/api/get_token/",
            json={"application_id": "reportrelay", "application_key": "s3cret", "user": "api"},
            timeout=5,
        )
        bearer = requests.get(
            f"{simulator.base_url}{SALES}/formats", headers={"Authorization": "Bearer s3cret"}, timeout=5
        )
    # then both are accepted
    assert got.status_code == 200 and got.json()["token"] and got.json()["expires"]
    assert bearer.status_code == 200


# ---- the adapter


def test_the_adapter_declares_the_vendor_protocol() -> None:
    # given the adapter class, then it tells the workflow what Metric Insights needs
    assert MetricInsights.key == "metric_insights"
    assert MetricInsights.reauth_statuses == (401, 412)
    assert MetricInsights.sealed_handle_fields == frozenset({"token"})
    assert MetricInsights.holds_request is True
    assert MetricInsights.single_use_result is True


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"report": {}, "format": "pdf"}, "request.report.element_id: Field required"),
        ({"report": {"element_id": 0}, "format": "pdf"}, "request.report.element_id"),
        ({"report": {"element_id": 1, "dimension_id": -1}, "format": "pdf"}, "request.report.dimension_id"),
        ({"report": {"element_id": 1, "document_id": 3}, "format": "pdf"}, "unknown field 'document_id'"),
        ({"report": {"element_id": 1}, "format": "xlsx"}, "image, pdf, apdf, ppt, xls, doc, csv, xml, mhtml"),
        ({"report": {"element_id": 1}, "format": "pdf", "parameters": {"Year": 2025}}, "take no parameters"),
    ],
)
def test_validate_explains_what_is_wrong(document: dict[str, Any], expected: str) -> None:
    # given a request with a bad report, an unknown format key or parameters
    request = parse_job_request({"connection": "mi", **document})
    # when it is validated, then the message names the field and what to do
    with pytest.raises(BadRequest) as raised:
        MetricInsights.validate(request)
    assert expected in str(raised.value)


def test_validate_accepts_every_format_key_of_the_seed_table() -> None:
    # given each format key of the document's table, then validate accepts it (dimension defaults to 0)
    for key in ("image", "pdf", "apdf", "ppt", "xls", "doc", "csv", "xml", "mhtml"):
        MetricInsights.validate(job(format=key))


def test_submit_checks_the_live_formats_before_opening_a_session(sim: MetricInsightsSimulator) -> None:
    # given a report whose plugin offers image, pdf and csv, and a request for Excel (a valid format key)
    adapter = provider(sim)
    MetricInsights.validate(job(format="xls"))
    # when it is submitted
    with pytest.raises(BadRequest) as raised:
        adapter.submit(job(format="xls"))
    # then it fails fast naming the formats available, and no session was opened
    assert "'xls' is not available for element 1042 (segment 0)" in str(raised.value)
    assert "image, pdf, csv" in str(raised.value)
    assert sim.sessions == {}


def test_the_session_token_reaches_the_server_exactly_as_issued(sim: MetricInsightsSimulator) -> None:
    # given a session whose token the server issued URL-encoded, with "+", "/" and "="
    adapter = provider(sim)
    handle = adapter.submit(job()).handle
    assert handle is not None
    (session,) = sim.session_list()
    # when the adapter checks it, runs it and downloads it
    status = adapter.check(job(), handle)
    held(adapter, job(), handle).join(timeout=10)
    with adapter.open_result(job(), handle) as result:
        content = b"".join(result.chunks)
    # then the server recognised the token every time (a double-encoded or raw token is "Invalid token")
    assert {"+", "/", "="} <= set(session.token)
    assert handle["token"] == session.token
    assert status.state is ReportState.RUNNING
    assert len(content) == 4096
    for state in ("check", "run", "get"):
        (logged,) = sim.calls("GET", f"{SALES}/{state}")
        assert logged.query["token"] == session.token


def test_submit_only_opens_the_session_and_hold_generates_the_file(
    sim: MetricInsightsSimulator, vendor_clock: SkippingClock
) -> None:
    # given a submitted report and more than its generation time passing
    adapter = provider(sim)
    handle = adapter.submit(job()).handle
    assert handle is not None
    vendor_clock.advance(0.4)
    # when it is checked before and after the holder runs
    before = adapter.check(job(), handle)
    holder = held(adapter, job(), handle)
    holder.join(timeout=10)
    after = adapter.check(job(), handle)
    # then submit made no run call, nothing was generated without one, and hold's run did it
    assert before.state is ReportState.RUNNING
    assert after.state is ReportState.READY
    assert [entry.path.rsplit("/", 1)[1] for entry in sim.request_log if "/download/" in entry.path] == [
        "formats",
        "init",
        "check",
        "run",
        "check",
    ]


def test_hold_waits_longer_than_the_connections_read_timeout(sim: MetricInsightsSimulator) -> None:
    # given a connection whose read timeout (0.2 s) is shorter than the generation (0.8 s)
    sim.generation_seconds = 0.8
    adapter = provider(sim, timeouts={"read_seconds": 0.2})
    handle = adapter.submit(job()).handle
    assert handle is not None
    # when the holder makes the run call
    adapter.hold(job(), handle)
    # then it waited for the answer with its own long timeout, and the file is ready
    assert adapter.check(job(), handle).state is ReportState.READY
    assert sim.session_list()[0].run_calls == 1


def test_a_run_that_times_out_is_not_repeated(sim: MetricInsightsSimulator) -> None:
    # given a run timeout (0.3 s) shorter than the generation (1 s)
    sim.generation_seconds = 1.0
    adapter = provider(sim, run_timeout_seconds=0.3)
    handle = adapter.submit(job()).handle
    assert handle is not None
    # when the holder makes the run call
    with pytest.raises(ProviderTimeout):
        adapter.hold(job(), handle)
    # then it gave up without starting a second generation on the same session
    assert sim.session_list()[0].run_calls == 1


def test_a_failed_generation_carries_the_providers_message(sim: MetricInsightsSimulator) -> None:
    # given a plugin that fails
    sim.fail_reports = "Power BI capacity is paused"
    adapter = provider(sim)
    handle = adapter.submit(job()).handle
    assert handle is not None
    held(adapter, job(), handle).join(timeout=10)
    # when the status is checked
    status = adapter.check(job(), handle)
    # then it is FAILED in the provider's words
    assert status.state is ReportState.FAILED
    assert (
        status.message
        == "Metric Insights could not generate element 1042 (segment 0): Power BI capacity is paused"
    )


def test_get_before_the_file_is_ready_is_not_taken_for_the_file(sim: MetricInsightsSimulator) -> None:
    # given a session whose run has not finished
    adapter = provider(sim)
    handle = adapter.submit(job()).handle
    assert handle is not None
    # when the result is opened too early
    too_early = pytest.raises(ProviderProtocolError, match="'IN PROGRESS' instead of the file")
    with too_early, adapter.open_result(job(), handle):
        pytest.fail("a status answer was yielded as the report file")
    # then the session was not consumed: once generated, the file can still be fetched
    held(adapter, job(), handle).join(timeout=10)
    with adapter.open_result(job(), handle) as result:
        assert result.filename == "Sales Dashboard.pdf"
        assert b"".join(result.chunks).startswith(b"%PDF")


def test_get_after_a_failed_generation_is_an_error_not_a_file(sim: MetricInsightsSimulator) -> None:
    # given a session whose generation failed
    sim.fail_reports = "Plugin crashed"
    adapter = provider(sim)
    handle = adapter.submit(job()).handle
    assert handle is not None
    held(adapter, job(), handle).join(timeout=10)
    # when the result is opened anyway, then it is a generation failure
    failed = pytest.raises(ReportGenerationFailed, match="answered ERROR instead of the file")
    with failed, adapter.open_result(job(), handle):
        pytest.fail("a status answer was yielded as the report file")


def test_the_result_can_be_downloaded_only_once(sim: MetricInsightsSimulator) -> None:
    # given a generated file that was downloaded
    adapter = provider(sim)
    handle = generated(adapter, job())
    with adapter.open_result(job(), handle) as result:
        first = b"".join(result.chunks)
    # when it is opened again with the same session
    with pytest.raises(ProviderRejected, match="Invalid token"), adapter.open_result(job(), handle):
        pytest.fail("a consumed session served the file again")
    # then the first download was the file the simulator served, and the second got none
    assert sim.served["session-1"] and len(first) == 4096


def test_filename_and_content_type_follow_the_element_and_the_format_table(
    sim: MetricInsightsSimulator,
) -> None:
    # given a PowerPoint of an element whose name holds reserved characters
    adapter = provider(sim)
    request = job(element_id=1043, format="ppt")
    handle = generated(adapter, request)
    # when it is opened
    with adapter.open_result(request, handle) as result:
        content = b"".join(result.chunks)
    # then the name is <element-name>.pptx without the reserved characters
    assert result.filename == "Board Pack Q1Q2 Final.pptx"
    assert result.content_type.endswith("presentationml.presentation")
    assert result.content_length == len(content)


@pytest.mark.parametrize("adapter_knows_the_lifetime", [True, False])
def test_an_expired_session_is_a_clear_failure(
    sim: MetricInsightsSimulator, vendor_clock: SkippingClock, adapter_knows_the_lifetime: bool
) -> None:
    # given sessions that expire after 0.3 s, before the 1 s generation ends
    sim.session_lifetime_seconds = 0.3
    sim.generation_seconds = 1.0
    settings = {"session_lifetime_seconds": 0.3} if adapter_knows_the_lifetime else {}
    adapter = provider(sim, **settings)
    handle = adapter.submit(job()).handle
    assert handle is not None
    holder = held(adapter, job(), handle)
    # when the status is checked after the expiry
    vendor_clock.advance(0.4)
    with pytest.raises(ReportGenerationFailed) as raised:
        adapter.check(job(), handle)
    holder.join(timeout=10)
    # then the failure says the session expired (or, when the lifetime was unknown, quotes the server and
    # names the expiry as a cause), and the held run ended too
    message = str(raised.value)
    if adapter_knows_the_lifetime:
        assert "download session for element 1042 (segment 0) expired" in message
    else:
        assert "HTTP 400: Download failed" in message and "token expired" in message
    assert not holder.is_alive()
    assert handle["token"] not in message


def test_a_session_still_in_progress_past_its_lifetime_fails_instead_of_polling_on(
    sim: MetricInsightsSimulator, vendor_clock: SkippingClock
) -> None:
    # given a server that keeps answering IN PROGRESS (no run was ever made) and a 0.3 s session lifetime
    adapter = provider(sim, session_lifetime_seconds=0.3)
    handle = adapter.submit(job()).handle
    assert handle is not None
    # when it is checked after the lifetime
    vendor_clock.advance(0.35)
    # then the job fails naming the expiry rather than waiting for its deadline
    with pytest.raises(ReportGenerationFailed, match="expired: the server still answered IN PROGRESS"):
        adapter.check(job(), handle)


def test_a_ready_file_fetched_after_the_session_expired_says_so(
    sim: MetricInsightsSimulator, vendor_clock: SkippingClock
) -> None:
    # given a generated file whose 0.5 s session has run out before the download
    sim.session_lifetime_seconds = 0.5
    adapter = provider(sim, session_lifetime_seconds=0.5)
    handle = generated(adapter, job())
    vendor_clock.advance(0.5)
    # when it is opened, then the failure names the expiry and the late download, and no file is served
    late = pytest.raises(ReportGenerationFailed, match="expired: the server answered 'Download failed'")
    with late as raised, adapter.open_result(job(), handle):
        pytest.fail("an expired session served the file")
    assert "sessions last 0.5 s" in str(raised.value)
    assert "the file was ready but was not downloaded in time" in str(raised.value)
    assert "session-1" not in sim.served


def test_an_expired_app_token_is_replaced_after_412(sim: MetricInsightsSimulator) -> None:
    # given a signed-in adapter with an open session
    adapter = provider(sim)
    handle = adapter.submit(job()).handle
    assert handle is not None
    # when its API token expires and it checks the status
    sim.expire_api_tokens()
    status = adapter.check(job(), handle)
    # then it signed in again after the 412 and carried on
    assert status.state is ReportState.RUNNING
    assert sim.expired_refusals == 1 and sim.tokens_issued == 2


def test_a_personal_api_token_is_sent_as_bearer_and_its_expiry_is_an_auth_failure(
    sim: MetricInsightsSimulator,
) -> None:
    # given an adapter using a personal API token
    adapter = provider(sim, auth="bearer")
    handle = adapter.submit(job()).handle
    assert handle is not None
    # when the token expires
    sim.expire_api_tokens()
    with pytest.raises(ProviderAuthFailed) as raised:
        adapter.check(job(), handle)
    # then the calls carried the bearer token, and the failure quotes the server and says what to do
    assert all(entry.headers.get("Authorization") == f"Bearer {API_TOKEN}" for entry in sim.request_log)
    assert "HTTP 412: Session expired" in str(raised.value)
    assert "the personal API token has expired: issue a new one" in str(raised.value)
    assert API_TOKEN not in str(raised.value)


@pytest.mark.parametrize(
    ("element_id", "words"),
    [
        (1044, "HTTP 400: No downloads available"),
        (2001, "HTTP 400: Not implemented for this Element Type"),
        (1045, "HTTP 403: Element not allowed"),
        (9999, "HTTP 404: Element not found"),
    ],
)
def test_provider_errors_are_reported_in_the_providers_words(
    sim: MetricInsightsSimulator, element_id: int, words: str
) -> None:
    # given a request the server refuses
    adapter = provider(sim)
    # when it is submitted, then the error quotes the server
    with pytest.raises(ProviderRejected) as raised:
        adapter.submit(job(element_id=element_id))
    assert words in str(raised.value)
    assert sim.sessions == {}


@pytest.mark.parametrize("state", ["formats", "init", "run"])
def test_an_ok_answer_that_says_error_is_a_refusal_in_the_providers_words(
    sim: MetricInsightsSimulator, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    # given a server whose answer to one state is 200 with {"status": "ERROR"}
    refusal = {"status": "ERROR", "message": "Plugin offline"}
    monkeypatch.setattr(sim, state, lambda request: json_response(refusal))
    adapter = provider(sim)
    # when the report is submitted and its run is held
    with pytest.raises(ProviderRejected) as raised:
        handle = adapter.submit(job()).handle
        assert handle is not None
        adapter.hold(job(), handle)
    # then the call that answered so is refused, quoting the provider
    said = f"/download/state/{state} answered HTTP 200 with status 'ERROR': Plugin offline"
    assert said in str(raised.value)
