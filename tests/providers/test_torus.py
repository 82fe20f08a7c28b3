"""The Torus simulator and adapter over real HTTP: the seed's endpoints, and the quirks of finding our run."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from reportrelay.claims import CLAIMS_TABLE_ENV, MemoryClaims
from reportrelay.config import Connection, JobRequest, SecretResolver
from reportrelay.errors import (
    BadRequest,
    ConfigurationError,
    ProviderProtocolError,
    ProviderRejected,
    ProviderServerError,
)
from reportrelay.httpclient import RetryBudget
from reportrelay.providers import open_provider, provider_class
from reportrelay.providers.base import Handle, ReportState, ReportStatus
from reportrelay.providers.declarative import DeclarativeProvider
from reportrelay.providers.spec import percent
from reportrelay_cli.sandbox.torus import API_USER, XLSX_CONTENT_TYPE, TorusSimulator
from tests.clock import SkippingClock

TOKEN = "torus-api-token-5b2e7c"
REPORT_LIST = "/api/tenant/mergedreport/list/get/{tenantId}"
QUEUE = "/api/tenant/mergedreport/queuefordownload"
QUEUE_LIST = "/api/tenant/report/queue/list/get"
DOWNLOAD = "/api/file/download/report/{fileGuid}"
BOBS = 'Bob\'s "Q3" Sales & Returns'


@pytest.fixture
def sim(vendor_clock: SkippingClock) -> Iterator[TorusSimulator]:
    simulator = TorusSimulator(
        tokens={TOKEN: API_USER}, generation_seconds=0.3, report_size=4096, clock=vendor_clock
    )
    with simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _no_claims_table(monkeypatch: pytest.MonkeyPatch) -> None:
    # Adapters here get their claim store explicitly; none may come from the environment.
    monkeypatch.delenv(CLAIMS_TABLE_ENV, raising=False)


def connection(sim: TorusSimulator, **overrides: Any) -> Connection:
    body: dict[str, Any] = {
        "name": "torus",
        "provider": "torus",
        "base_url": sim.base_url,
        "tenant_id": 69,
        "auth": {"type": "bearer", "token": {"env": "TORUS_TOKEN"}},
    }
    body.update(overrides)
    return Connection.model_validate({key: value for key, value in body.items() if value is not None})


def adapter(sim: TorusSimulator, claims: MemoryClaims | None = None, **overrides: Any) -> DeclarativeProvider:
    provider = open_provider(
        connection(sim, **overrides), SecretResolver({"TORUS_TOKEN": TOKEN}), claims=claims or MemoryClaims()
    )
    assert isinstance(provider, provider_class("torus"))
    return provider


def job(report: dict[str, Any] | None = None, **overrides: Any) -> JobRequest:
    body: dict[str, Any] = {
        "connection": "torus",
        "report": {"name": "MI_Report"} if report is None else report,
        "format": "xlsx",
    }
    body.update(overrides)
    return JobRequest.model_validate(body)


def follow(
    provider: DeclarativeProvider, request: JobRequest, status: ReportStatus, handle: Handle | None = None
) -> tuple[ReportStatus, Handle, list]:
    """Check until the report is finished, carrying the handle as the workflow does."""
    handle = {**(handle or {}), **(status.handle or {})}
    seen = [status]
    deadline = time.monotonic() + 10
    while not status.state.finished and time.monotonic() < deadline:
        time.sleep(0.05)
        status = provider.check(request, handle)
        handle.update(status.handle or {})
        seen.append(status)
    return status, handle, seen


def fetch(provider: DeclarativeProvider, request: JobRequest, handle: Handle) -> tuple[bytes, str, str]:
    with provider.open_result(request, handle) as result:
        return b"".join(result.chunks), result.filename, result.content_type


def api(sim: TorusSimulator, method: str, path: str, token: str | None = TOKEN, **kwargs: Any):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    return requests.request(method, f"{sim.base_url}{path}", headers=headers, timeout=5, **kwargs)


def queue(sim: TorusSimulator, report_id: Any = 1087, tenant: str | None = "69", **body: Any):
    headers = {"TorusTenantId": tenant} if tenant is not None else {}
    return api(sim, "POST", QUEUE, json={"reportId": report_id, "reportType": 1, **body}, headers=headers)


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# ---------------------------------------------------------------------------------------------------
# The simulator, as the seed describes the endpoints


def test_report_list_filters_by_name_ignoring_case_with_doubled_quotes(sim: TorusSimulator) -> None:
    # given the tenant's merged reports
    # when they are listed by the seed's filter, a name with a doubled quote, and without a filter
    upper = api(
        sim, "GET", "/api/tenant/mergedreport/list/get/69?$filter=tolower('MI_REPORT') eq tolower(Name)"
    )
    bobs = api(
        sim,
        "GET",
        "/api/tenant/mergedreport/list/get/69",
        params={"$filter": "tolower('bob''s \"q3\" sales & returns') eq tolower(Name)"},
    )
    everything = api(sim, "GET", "/api/tenant/mergedreport/list/get/69")
    # then the filter matches names case-insensitively, and each item has the seed's fields
    assert [report["id"] for report in upper.json()] == [1087]
    assert upper.json()[0]["tenantId"] == 69 and upper.json()[0]["isDeleted"] is False
    assert [report["name"] for report in bobs.json()] == [BOBS]
    assert {report["id"] for report in everything.json()} == {1087, 1088, 1089, 1090}


@pytest.mark.parametrize(
    "odata_filter",
    [
        "tolower('Bob's') eq tolower(Name)",  # a quote inside the literal not doubled
        'tolower("MI_Report") eq tolower(Name)',  # double quotes are not OData string literals
        "tolower('Bob''s \"Q3\" Sales ",  # what is left when '&' is not encoded
        "Name like 'MI%'",
    ],
)
def test_report_list_rejects_malformed_filters(sim: TorusSimulator, odata_filter: str) -> None:
    # given a filter the OData grammar cannot parse
    # when the list is asked for with it
    answer = api(sim, "GET", "/api/tenant/mergedreport/list/get/69", params={"$filter": odata_filter})
    # then the server refuses it with an ASP.NET-style message
    assert answer.status_code == 400
    assert answer.json()["Message"].startswith("The query specified in the URI is not valid.")


def test_every_call_needs_the_bearer_token_and_a_tenant_the_user_has(sim: TorusSimulator) -> None:
    # given no token, a wrong token, and a tenant that does not exist
    # when the report list is asked for
    missing = api(sim, "GET", "/api/tenant/mergedreport/list/get/69", token=None)
    wrong = api(sim, "GET", "/api/tenant/mergedreport/list/get/69", token="nope")
    no_tenant = api(sim, "GET", "/api/tenant/mergedreport/list/get/71")
    # then the first two are 401 and the last 403
    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == {"Message": "Authorization has been denied for this request."}
    assert no_tenant.status_code == 403


def test_queue_call_needs_the_tenant_header_and_answers_with_nothing(sim: TorusSimulator) -> None:
    # given queue calls without the TorusTenantId header, with another report type, for another
    # tenant's report, and a good one with the id as the seed's template quotes it
    no_header = queue(sim, tenant=None)
    wrong_type = queue(sim, reportType=2)
    other_tenant = queue(sim, report_id=2087)
    good = queue(sim, report_id="1087")
    sim.queue_answer = "null"
    good_null = queue(sim)
    # then only the good ones queue a run, and their answers hold nothing usable
    assert no_header.status_code == 400 and "TorusTenantId" in no_header.json()["Message"]
    assert wrong_type.status_code == 400
    assert other_tenant.status_code == 404
    assert good.status_code == 200 and good.content == b""
    assert good_null.status_code == 200 and good_null.json() is None
    assert len(sim.queued) == 2


def test_a_queued_run_goes_pending_running_finished_and_downloads_as_excel(sim: TorusSimulator) -> None:
    # given a queued merged report
    sim.generation_seconds = 0.5
    queue(sim)
    (run_id,) = sim.queued
    # when the queue is polled until the run is Finished
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        (run,) = api(sim, "GET", QUEUE_LIST).json()
        seen.append((run["status"], run["progress"]))
        if run["status"] == "Finished":
            break
        time.sleep(0.03)
    download = api(sim, "GET", f"/api/file/download/report/{run['fileGuid']}")
    # then it went Pending -> Running (with percentages) -> Finished with a fileGuid, like the seed's entry
    statuses = [status for status, _ in seen]
    assert statuses[0] == "Pending" and "Running" in statuses and statuses[-1] == "Finished"
    assert all(progress.endswith("%") for _, progress in seen)
    assert run["scheduledTaskRunNowId"] == run_id and run["name"] == "MI_Report"
    assert run["queuedBy"] == API_USER and run["tenantSubDomainName"] == "benefitsforme"
    assert run["message"] == "Report task successfully ran" and run["progress"] == "100%"
    assert run["dateStarted"] and run["dateFinished"]
    # and the file is Excel, named after the report, and recorded
    assert download.headers["Content-Type"] == XLSX_CONTENT_TYPE
    assert download.headers["Content-Disposition"].startswith('attachment; filename="MI_Report.xlsx"')
    assert download.content.startswith(b"PK\x03\x04") and len(download.content) == 4096
    assert sha256(download.content) == sim.served[str(run_id)]


def test_queue_list_shows_the_users_last_seven_days_and_filters_on_minutes(sim: TorusSimulator) -> None:
    # given runs queued eight days, two hours and a moment ago, and one queued by another user
    sim.tokens["other-token"] = "someone else"
    old = sim.add_run(1087, age_seconds=8 * 24 * 3600)
    earlier = sim.add_run(1087, age_seconds=2 * 3600)
    recent = sim.add_run(1087)
    sim.add_run(1087, user="someone else")
    bound = (sim.server_time() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    # when the list is asked for by default, filtered on the minute, and filtered with seconds
    default = api(sim, "GET", QUEUE_LIST).json()
    filtered = api(sim, "GET", QUEUE_LIST, params={"$filter": f"DateQueued gt datetime'{bound}'"}).json()
    seconds = api(sim, "GET", QUEUE_LIST, params={"$filter": f"DateQueued gt datetime'{bound}:00'"})
    # then the default is this user's last 7 days, newest first; the filter keeps the later runs;
    # and a date not in the seed's YYYY-MM-DDTHH:MM format is refused
    assert [run["scheduledTaskRunNowId"] for run in default] == [recent, earlier]
    assert old not in [run["scheduledTaskRunNowId"] for run in default]
    assert [run["scheduledTaskRunNowId"] for run in filtered] == [recent]
    assert seconds.status_code == 400 and "YYYY-MM-DDTHH:MM" in seconds.json()["Message"]


def test_fail_and_cancel_knobs_end_runs_in_error_and_cancelled(sim: TorusSimulator) -> None:
    # given runs set to fail, and one cancelled by an administrator while it runs
    sim.fail_reports = "Timeout expired while running merged report"
    failing = sim.add_run(1087, generation_seconds=0)
    cancelled = sim.add_run(1088, generation_seconds=60)
    sim.cancel(cancelled, "Cancelled by an administrator")
    # when the queue is listed
    runs = {run["scheduledTaskRunNowId"]: run for run in api(sim, "GET", QUEUE_LIST).json()}
    # then the statuses and messages say so, without files
    assert runs[failing]["status"] == "Error" and runs[failing]["fileGuid"] is None
    assert runs[failing]["message"] == "Timeout expired while running merged report"
    assert runs[cancelled]["status"] == "Cancelled"
    assert runs[cancelled]["message"] == "Cancelled by an administrator"


# ---------------------------------------------------------------------------------------------------
# The adapter: validation and settings


@pytest.mark.parametrize(
    ("report", "overrides", "words"),
    [
        ({"name": "MI_Report"}, {"format": "pdf"}, "'pdf' is not available for a Torus merged report"),
        ({"name": "MI_Report"}, {"parameters": {"Year": 2025}}, "takes no parameters"),
        ({}, {}, "give exactly one of 'name'"),
        ({"name": "MI_Report", "report_id": 1087}, {}, "give exactly one of 'name'"),
        ({"name": "   "}, {}, "'name' must not be blank"),
        ({"report_id": "1087"}, {}, "request.report.report_id"),
        ({"report_id": 1087, "document_id": 3}, {}, "request.report.document_id"),
    ],
)
def test_validate_explains_what_is_wrong(report: dict, overrides: dict, words: str) -> None:
    # given a request Torus cannot serve
    # when it is validated
    with pytest.raises(BadRequest) as raised:
        provider_class("torus").validate(job(report, **overrides))
    # then the message names the problem
    assert words in str(raised.value)


def test_xlsx_by_name_or_id_is_valid() -> None:
    # given the two ways to name a report, asking for Excel (in any case)
    # when they are validated, then nothing is raised
    provider_class("torus").validate(job({"name": "Monthly Sales & Returns"}))
    provider_class("torus").validate(job({"report_id": 1087}, format="XLSX"))


def test_connection_needs_an_integer_tenant_id(sim: TorusSimulator) -> None:
    # given connections without a tenant id, with one as text, and with an unknown setting
    # when adapters are opened for them
    # then each is a configuration error naming the field
    for overrides, field in (({"tenant_id": None}, "tenant_id"), ({"tenant_id": "69"}, "tenant_id")):
        with pytest.raises(ConfigurationError, match=field):
            adapter(sim, **overrides)
    with pytest.raises(ConfigurationError, match="tenant"):
        adapter(sim, tenant=69)


# ---------------------------------------------------------------------------------------------------
# The adapter against the simulator


def test_name_with_quotes_and_ampersand_is_found_through_the_odata_filter(sim: TorusSimulator) -> None:
    # given a report whose name has a single quote, double quotes and an ampersand
    provider = adapter(sim)
    request = job({"name": BOBS})
    # when the job is submitted
    status = provider.submit(request)
    # then the filter the server received is the seed's, with the inner quote doubled, intact
    lookup = sim.calls("GET", REPORT_LIST)[-1]
    assert lookup.path == "/api/tenant/mergedreport/list/get/69"
    assert lookup.query == {"$filter": "tolower('Bob''s \"Q3\" Sales & Returns') eq tolower(Name)"}
    # and report 1089 was queued with the tenant header, the run is ours and the file keeps the name
    (run_id,) = sim.queued
    assert sim.runs[run_id]["_report_id"] == 1089
    (queued,) = sim.calls("POST", QUEUE)
    assert queued.headers["TorusTenantId"] == "69"
    final, handle, _ = follow(provider, request, status)
    content, filename, content_type = fetch(provider, request, handle)
    assert final.state is ReportState.READY and handle["run_id"] == run_id
    assert filename == f"{BOBS}.xlsx" and content_type == XLSX_CONTENT_TYPE
    assert sha256(content) == sim.served[str(run_id)]


def test_report_by_id_is_looked_up_for_its_name(sim: TorusSimulator) -> None:
    # given a report asked for by id
    provider = adapter(sim)
    request = job({"report_id": 1088})
    # when it runs
    final, handle, _ = follow(provider, request, provider.submit(request))
    # then the unfiltered list gave its name, and the run of that report was followed
    assert "$filter" not in sim.calls("GET", REPORT_LIST)[-1].query
    (run_id,) = sim.queued
    assert sim.runs[run_id]["_report_id"] == 1088
    assert final.state is ReportState.READY and handle["report_name"] == "Monthly Sales & Returns"


@pytest.mark.parametrize(
    ("report", "words"),
    [
        ({"name": "No Such Report"}, "Torus tenant 69 has no merged report named 'No Such Report'"),
        ({"report_id": 2087}, "Torus tenant 69 has no merged report with id 2087"),
        ({"name": "claims summary"}, "several merged reports named 'claims summary' (ids 1090, 1091)"),
    ],
)
def test_unknown_or_ambiguous_reports_are_refused_before_queueing(
    sim: TorusSimulator, report: dict, words: str
) -> None:
    # given a second report whose name differs only in case, and requests for missing or ambiguous reports
    sim.reports[1091] = {**sim.reports[1090], "id": 1091, "name": "CLAIMS SUMMARY"}
    # when they are submitted
    with pytest.raises(ProviderRejected) as raised:
        adapter(sim).submit(job(report))
    # then they are refused in Torus's terms and nothing was queued
    assert words in str(raised.value)
    assert sim.queued == []


def test_progress_percentages_are_reported(sim: TorusSimulator) -> None:
    # given a run that stays at 45% until released
    sim.stall_at_percent = 45
    provider = adapter(sim)
    request = job()
    status = provider.submit(request)
    handle = dict(status.handle or {})
    # when it is checked while running, then after release
    deadline = time.monotonic() + 5
    while status.state is not ReportState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
        status = provider.check(request, handle)
    running = status
    sim.stall_at_percent = None
    final, _, _ = follow(provider, request, running, handle)
    # then "45%" became 45.0 with the provider's message, and Finished became 100
    assert (running.state, running.progress, running.message) == (
        ReportState.RUNNING,
        45.0,
        "Report task is running",
    )
    assert (final.state, final.progress) == (ReportState.READY, 100.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("45%", 45.0), ("100%", 100.0), ("0%", 0.0), (" 12.5 % ", 12.5), ("7", 7.0), (63, 63.0), ("n/a", None)],
)
def test_progress_text_is_read_liberally(raw: Any, expected: float | None) -> None:
    assert percent(raw) == expected


def test_an_older_finished_run_of_the_same_report_is_never_taken(sim: TorusSimulator) -> None:
    # given a finished run of the report queued seconds earlier (the same minute), and our run listed late
    older = sim.add_run(1087, age_seconds=2, generation_seconds=0.1)
    sim.listing_delay_seconds = 0.4
    provider = adapter(sim)
    request = job()
    # when the job is submitted (our run not yet listed) and checked to the end
    status = provider.submit(request)
    final, handle, _ = follow(provider, request, status)
    content, _, _ = fetch(provider, request, handle)
    # then submit did not take the finished run; check found ours and its file was fetched
    assert status.state is ReportState.PENDING and "run_id" not in (status.handle or {})
    assert str(older) in status.handle["known"]
    (ours,) = sim.queued
    assert final.state is ReportState.READY and handle["run_id"] == ours != older
    assert sha256(content) == sim.served[str(ours)]


def test_an_older_running_run_of_the_same_report_is_never_taken(sim: TorusSimulator) -> None:
    # given a run of the report queued a moment ago that finishes before ours does
    older = sim.add_run(1087, age_seconds=0.5, generation_seconds=0.7)
    sim.generation_seconds = 0.8
    provider = adapter(sim)
    request = job()
    # when the job runs to the end
    status = provider.submit(request)
    final, handle, seen = follow(provider, request, status)
    content, _, _ = fetch(provider, request, handle)
    # then the older run finished first, and the job still waited for its own run and fetched that
    (ours,) = sim.queued
    assert sim.runs[older]["status"] == "Finished"
    assert any(step.state is ReportState.RUNNING for step in seen)
    assert handle["run_id"] == ours != older
    assert final.state is ReportState.READY and sha256(content) == sim.served[str(ours)]


def test_two_jobs_of_the_same_report_queued_at_once_each_get_their_own_run(sim: TorusSimulator) -> None:
    # given two jobs of the same report sharing a claim store, both queued before either run is listed
    sim.listing_delay_seconds = 0.3
    claims = MemoryClaims()
    first, second = adapter(sim, claims), adapter(sim, claims)
    request = job()
    first_status = first.submit(request)
    second_status = second.submit(request)
    # when both are followed to the end (the second sees both new runs)
    first_final, first_handle, _ = follow(first, request, first_status)
    second_final, second_handle, _ = follow(second, request, second_status)
    first_file, _, _ = fetch(first, request, first_handle)
    second_file, _, _ = fetch(second, request, second_handle)
    # then each claimed a different run and fetched that run's file
    assert "run_id" not in first_status.handle and "run_id" not in second_status.handle
    assert {first_handle["run_id"], second_handle["run_id"]} == set(sim.queued)
    assert first_final.state is second_final.state is ReportState.READY
    assert sha256(first_file) == sim.served[str(first_handle["run_id"])]
    assert sha256(second_file) == sim.served[str(second_handle["run_id"])]
    assert first_file != second_file
    assert sorted(claims.owners.values()) == sorted([first_handle["owner"], second_handle["owner"]])


def test_the_oldest_new_run_is_claimed_first_so_a_later_job_is_not_starved(sim: TorusSimulator) -> None:
    # given job X queued run a but could not list it; then job Y, whose snapshot already has run a,
    # queued run b and could not list it either (one 429 after each queue call, no retries)
    sim.throttle_list_after_queue = 1
    claims = MemoryClaims()
    x, y = adapter(sim, claims), adapter(sim, claims)
    for provider in (x, y):
        provider.http.budget = RetryBudget(attempts=1)
    request = job()
    x_status = x.submit(request)
    y_status = y.submit(request)
    run_a, run_b = sim.queued
    assert "run_id" not in x_status.handle and "run_id" not in y_status.handle
    assert y_status.handle["known"] == [str(run_a)]
    # when X checks first (it may take a or b) and then Y (it may only take b)
    x_check = x.check(request, x_status.handle)
    y_check = y.check(request, y_status.handle)
    # then X took the older run, leaving Y its only candidate
    assert (x_check.handle or {}).get("run_id") == run_a
    assert (y_check.handle or {}).get("run_id") == run_b


def test_without_a_claim_store_several_new_runs_are_not_guessed_at(
    sim: TorusSimulator, vendor_clock: SkippingClock
) -> None:
    # given two jobs of the same report queued at once, and no claim store anywhere
    sim.listing_delay_seconds = 0.2
    first = open_provider(connection(sim), SecretResolver({"TORUS_TOKEN": TOKEN}))
    request = job()
    status = first.submit(request)
    adapter(sim).submit(request)
    vendor_clock.advance(0.2)
    # when the first checks
    with pytest.raises(ConfigurationError) as raised:
        first.check(request, dict(status.handle or {}))
    # then it refuses to pick one, naming the missing setting
    assert "REPORTRELAY_CLAIMS_TABLE" in str(raised.value)


def test_a_run_of_the_same_name_in_another_tenant_is_not_ours(sim: TorusSimulator) -> None:
    # given tenant 70 also has a "MI_Report", queued by the same user right after our snapshot
    sim.listing_delay_seconds = 0.2
    provider = adapter(sim)
    request = job()
    status = provider.submit(request)
    other = sim.add_run(2087, generation_seconds=0.1)
    # when the job is followed
    _, handle, _ = follow(provider, request, status)
    # then the other tenant's run was left alone
    (ours,) = sim.queued
    assert handle["run_id"] == ours != other


def test_a_listing_throttled_after_the_queue_call_neither_fails_nor_requeues(sim: TorusSimulator) -> None:
    # given every listing right after the queue call answers 429 (the client gives up after three)
    sim.throttle_list_after_queue = 3
    provider = adapter(sim)
    request = job()
    # when the job is submitted and followed
    status = provider.submit(request)
    final, handle, _ = follow(provider, request, status)
    # then submit still succeeded (the run left to check), the report was queued exactly once, and found
    assert status.state is ReportState.PENDING and "run_id" not in status.handle
    assert len(sim.calls("POST", QUEUE)) == 1 and len(sim.queued) == 1
    assert final.state is ReportState.READY and handle["run_id"] == sim.queued[0]


def test_the_queue_call_is_retried_after_a_429_and_queued_once(sim: TorusSimulator) -> None:
    # given the queue call answers 429 with Retry-After: 1 once
    sim.throttle_queue_next = 1
    provider = adapter(sim)
    # when the job is submitted
    started = time.monotonic()
    status = provider.submit(job())
    # then the call was repeated after the pause and one run was queued, and found
    assert len(sim.calls("POST", QUEUE)) == 2 and len(sim.queued) == 1
    assert time.monotonic() - started >= 1
    assert status.handle["run_id"] == sim.queued[0]


def test_a_queue_call_answered_with_500_is_not_repeated(sim: TorusSimulator) -> None:
    # given a queue call that queues the run and then answers 500
    sim.queue_errors_next = 1
    provider = adapter(sim)
    # when the job is submitted
    with pytest.raises(ProviderServerError) as raised:
        provider.submit(job())
    # then the call was made once, and the error says the report may be queued all the same
    assert len(sim.calls("POST", QUEUE)) == 1
    assert "HTTP 500: An error has occurred." in str(raised.value)
    assert "Torus may have queued the report all the same" in str(raised.value)


def test_a_server_clock_hours_behind_ours_does_not_hide_our_run(sim: TorusSimulator) -> None:
    # given a server writing dates five hours behind our clock, with an older run in the snapshot
    sim.clock_offset_seconds = -5 * 3600
    sim.add_run(1088, age_seconds=120, generation_seconds=1)
    provider = adapter(sim)
    request = job()
    # when the job runs
    status = provider.submit(request)
    final, handle, _ = follow(provider, request, status)
    # then it found its run, and every filter was one minute before a date the server itself wrote
    (ours,) = sim.queued
    assert final.state is ReportState.READY and handle["run_id"] == ours
    ours_minute = datetime.strptime(sim.runs[ours]["dateQueued"][:16], "%Y-%m-%dT%H:%M")
    expected = (ours_minute - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    assert handle["since"] == expected
    assert sim.calls("GET", QUEUE_LIST)[-1].query == {"$filter": f"DateQueued gt datetime'{expected}'"}
    # and the snapshot was the server's default 7 days, the listing after queueing one minute before
    # the newest run the snapshot had
    (older,) = (run for run in sim.runs.values() if run["scheduledTaskRunNowId"] != ours)
    older_minute = datetime.strptime(older["dateQueued"][:16], "%Y-%m-%dT%H:%M")
    snapshot_bound = (older_minute - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    filters = [call.query.get("$filter") for call in sim.calls("GET", QUEUE_LIST)]
    assert filters[:2] == [None, f"DateQueued gt datetime'{snapshot_bound}'"]
    our_now = datetime.now(UTC).replace(tzinfo=None)  # what a client trusting its own clock would use
    assert datetime.strptime(expected, "%Y-%m-%dT%H:%M") < our_now - timedelta(hours=4)


def test_error_status_fails_with_the_providers_message(sim: TorusSimulator) -> None:
    # given runs that end in Error
    sim.fail_reports = "Timeout expired while running merged report"
    provider = adapter(sim)
    request = job()
    # when the job is followed
    final, _, _ = follow(provider, request, provider.submit(request))
    # then it failed with the provider's words and the run named
    assert final.state is ReportState.FAILED
    (ours,) = sim.queued
    assert final.message == (
        f"Torus run {ours} of merged report 'MI_Report' ended in Error: "
        "Timeout expired while running merged report"
    )


def test_cancelled_status_is_reported_as_cancelled(sim: TorusSimulator) -> None:
    # given a run an administrator cancels while it runs
    sim.generation_seconds = 30
    provider = adapter(sim)
    request = job()
    status = provider.submit(request)
    sim.cancel(sim.queued[0], "Cancelled by an administrator")
    # when it is checked
    final, _, _ = follow(provider, request, status)
    # then the job sees CANCELLED with the provider's message
    assert final.state is ReportState.CANCELLED
    assert final.message.endswith("was cancelled: Cancelled by an administrator")


def test_finished_without_a_file_guid_is_a_failure_not_a_download(sim: TorusSimulator) -> None:
    # given a run that is Finished but carries no fileGuid
    sim.generation_seconds = 0
    provider = adapter(sim)
    request = job()
    status = provider.submit(request)
    with sim.lock:
        sim.runs[sim.queued[0]]["fileGuid"] = None
    # when it is checked
    final = provider.check(request, dict(status.handle or {}))
    # then it failed, saying so
    assert final.state is ReportState.FAILED and "no fileGuid" in (final.message or "")


def test_a_queued_run_that_never_appears_fails_after_the_grace_period(sim: TorusSimulator) -> None:
    # given a server that accepts the queue call but never lists the run
    sim.drop_queued = True
    provider = adapter(sim, queue_entry_grace_seconds=60)
    request = job()
    status = provider.submit(request)
    handle = dict(status.handle or {})
    # when it is checked soon after, and again as if 61 seconds had passed
    early = provider.check(request, handle)
    handle["queued_at"] -= 61
    with pytest.raises(ProviderProtocolError) as raised:
        provider.check(request, handle)
    # then it waited at first, then gave up explaining why
    assert early.state is ReportState.PENDING
    assert "no new run of it appeared in the download queue within 60 seconds" in str(raised.value)


def test_a_custom_auth_header_is_supported(sim: TorusSimulator) -> None:
    # given a Torus site that takes its token in a custom header
    sim.auth_header = "X-Torus-Key"
    provider = adapter(sim, auth={"type": "header", "header": "X-Torus-Key", "value": {"env": "TORUS_TOKEN"}})
    request = job()
    # when the job runs
    final, handle, _ = follow(provider, request, provider.submit(request))
    # then every call carried the header, and the file was fetched
    assert final.state is ReportState.READY
    assert all(call.headers.get("X-Torus-Key") == TOKEN for call in sim.request_log)
    assert fetch(provider, request, handle)[0]


def test_cancel_is_not_offered(sim: TorusSimulator) -> None:
    # given a queued job; when it is cancelled; then the adapter says Torus cannot
    provider = adapter(sim)
    status = provider.submit(job())
    assert provider.cancel(job(), dict(status.handle or {})) is False
