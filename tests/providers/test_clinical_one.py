"""The Clinical One adapter against its simulator over real HTTP: the protocol, its quirks, its errors."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from reportrelay.auth import build_auth
from reportrelay.config import Connection, JobRequest, SecretResolver
from reportrelay.errors import BadRequest, ProviderAuthFailed, ProviderProtocolError, ProviderRejected
from reportrelay.httpclient import ProviderHttp
from reportrelay.providers import provider_class
from reportrelay.providers.base import Handle, ReportState, ReportStatus
from reportrelay.providers.hooks.clinical_one import (
    DOWNLOAD,
    DOWNLOAD_LIST,
    START_REPORT,
    ClinicalOne,
    describe_base_response,
    retry_seconds_in,
)
from reportrelay_cli.sandbox.clinical_one import (
    DEFAULT_STUDY_ID,
    HSL_REPORT,
    NO_ACCESS,
    NO_ACCESS_DETAILS,
    SUBJECT_DATA_EXTRACT,
    ClinicalOneSimulator,
    sandbox_simulator,
)
from reportrelay_cli.sandbox.server import Faults, json_response
from tests.clock import SkippingClock

PASSWORD = "c1-User-Passw0rd-7d1e"
CLIENT_SECRET = "c1-Client-Secret-4b2a"
SECRETS = SecretResolver({"C1_PASSWORD": PASSWORD, "C1_CLIENT_SECRET": CLIENT_SECRET})
STUDY_REPORT = {"report_id": SUBJECT_DATA_EXTRACT, "study_id": DEFAULT_STUDY_ID, "mode": "active"}
TENANT_REPORT = {"report_id": HSL_REPORT, "study_id": None, "mode": "active"}
SITE_FILTER = {
    "fldId": "546A79C296BE11EABB370242AC130002",
    "fieldType": "list",
    "fieldName": "siteId",
    "fieldValueList": ["549AD8CA793C46688ECF6332C8926319"],
}


@pytest.fixture
def sim(vendor_clock: SkippingClock) -> Iterator[ClinicalOneSimulator]:
    with ClinicalOneSimulator(
        clock=vendor_clock,
        users={"api": PASSWORD},
        clients={"reportrelay": CLIENT_SECRET},
        generation_seconds=0.2,
        report_size=4096,
    ) as simulator:
        yield simulator


def connection(sim: ClinicalOneSimulator, **settings: Any) -> Connection:
    return Connection.model_validate(
        {
            "name": "c1",
            "provider": "clinical_one",
            "base_url": sim.base_url,
            "auth": {
                "type": "oauth_password",
                "token_url": f"{sim.base_url}/oauth2/v1/token",
                "client_id": "reportrelay",
                "client_secret": {"env": "C1_CLIENT_SECRET"},
                "client_auth": "basic",
                "username": "api",
                "password": {"env": "C1_PASSWORD"},
            },
            **settings,
        }
    )


def adapter(sim: ClinicalOneSimulator, *, sleeps: list[float] | None = None, **settings: Any) -> ClinicalOne:
    """The adapter as open_provider builds it, with the shared client's pauses recorded instead of slept."""
    conn = connection(sim, **settings)
    session = requests.Session()
    sleep = sleeps.append if sleeps is not None else time.sleep
    http = ProviderHttp(conn.base_url, build_auth(conn, SECRETS, session), session=session, sleep=sleep)
    return ClinicalOne(conn, http)


def job(report: dict[str, Any] | None = None, report_format: str = "csv", **fields: Any) -> JobRequest:
    return JobRequest.model_validate(
        {"connection": "c1", "report": report or STUDY_REPORT, "format": report_format, **fields}
    )


def follow(provider: ClinicalOne, request: JobRequest, handle: Handle) -> tuple[ReportStatus, Handle]:
    """Check until the run is finished (or 5 s pass), merging what each check learns into the handle."""
    deadline = time.monotonic() + 5
    while True:
        status = provider.check(request, handle)
        handle = {**handle, **(status.handle or {})}
        if status.state.finished or time.monotonic() > deadline:
            return status, handle
        time.sleep(0.05)


def sign_in(sim: ClinicalOneSimulator) -> str:
    answer = requests.post(
        f"{sim.base_url}/oauth2/v1/token",
        data={"grant_type": "password", "username": "api", "password": PASSWORD},
        auth=("reportrelay", CLIENT_SECRET),
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def list_calls(sim: ClinicalOneSimulator) -> list[dict[str, str]]:
    return [entry.query for entry in sim.calls("GET", DOWNLOAD_LIST)]


# ---- the request document


def test_the_registry_finds_the_adapter() -> None:
    # given the provider key used in connections
    # when the registry resolves it
    # then it is this module's class
    assert provider_class("clinical_one") is ClinicalOne


def test_study_and_tenant_requests_validate() -> None:
    # given a study report with filters and a tenant report without a study
    study = job({**STUDY_REPORT, "field_specs": [SITE_FILTER], "ext_field_specs": [SITE_FILTER]})
    tenant = job(TENANT_REPORT, "pdf")
    # when they are validated
    # then both pass
    ClinicalOne.validate(study)
    ClinicalOne.validate(tenant)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"report": {**STUDY_REPORT, "report_id": "Subject Data Extract"}}, "request.report.report_id"),
        (
            {"report": {"report_id": SUBJECT_DATA_EXTRACT, "mode": "active"}},
            "request.report.study_id: Field required",
        ),
        ({"report": {**STUDY_REPORT, "mode": "production"}}, "'active', 'test' or 'training'"),
        ({"report": {**STUDY_REPORT, "document_id": 10}}, "request.report.document_id"),
        ({"report": {**STUDY_REPORT, "field_specs": [{"fieldName": "siteId"}]}}, "fieldValueList"),
        (
            {"report": {**STUDY_REPORT, "field_specs": [{**SITE_FILTER, "fieldType": "set"}]}},
            "list, date, date-time, number, string, boolean",
        ),
        ({"format": "docx"}, "csv, pdf, xlsx, html, xport"),
        ({"parameters": {"Site": "001"}}, "put filters in request.report.field_specs"),
    ],
)
def test_invalid_requests_say_what_is_wrong(change: dict[str, Any], expected: str) -> None:
    # given a request with one thing wrong
    document = {"connection": "c1", "report": STUDY_REPORT, "format": "csv", **change}
    # when it is validated
    with pytest.raises(BadRequest) as failure:
        ClinicalOne.validate(JobRequest.model_validate(document))
    # then the message names the field and what would work
    assert expected in str(failure.value)


# ---- the identity service


def test_identity_service_issues_ten_minute_tokens_and_no_refresh(sim: ClinicalOneSimulator) -> None:
    # given the identity service with its default token lifetime
    sim.token_lifetime_seconds = 600
    url = f"{sim.base_url}/oauth2/v1/token"
    user = {"grant_type": "password", "username": "api", "password": PASSWORD}
    # when a client signs a user in, without client auth, with a wrong password, and asks to refresh
    good = requests.post(url, data=user, auth=("reportrelay", CLIENT_SECRET), timeout=5)
    no_client = requests.post(url, data=user, timeout=5)
    wrong = requests.post(url, data={**user, "password": "x"}, auth=("reportrelay", CLIENT_SECRET), timeout=5)
    refresh = requests.post(
        url,
        data={"grant_type": "refresh_token", "refresh_token": "r"},
        auth=("reportrelay", CLIENT_SECRET),
        timeout=5,
    )
    # then only the first gets a token: ten minutes, no refresh token; the rest get OAuth2 errors
    body = good.json()
    assert body["expires_in"] == 600 and body["token_type"] == "Bearer" and "refresh_token" not in body
    assert no_client.status_code == 401 and no_client.json()["error"] == "invalid_client"
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert refresh.status_code == 400 and refresh.json()["error"] == "unsupported_grant_type"


def test_adapter_signs_in_at_the_absolute_token_url_with_basic_client_auth(sim: ClinicalOneSimulator) -> None:
    # given a connection whose token_url is an absolute URL with client_auth basic
    provider = adapter(sim)
    # when it starts a job
    provider.submit(job())
    # then it signed in once at the identity path, the client as Basic, and called the API with the token
    (token_call,) = sim.calls("POST", "/oauth2/v1/token")
    assert token_call.headers["Authorization"].startswith("Basic ")
    (start,) = sim.calls("POST", START_REPORT)
    assert start.headers["Authorization"] == f"Bearer {next(iter(sim.valid_tokens))}"


def test_a_token_that_expired_mid_job_is_replaced_once(sim: ClinicalOneSimulator) -> None:
    # given a job started with a token that the identity service then expires
    provider = adapter(sim)
    request = job()
    handle = dict(provider.submit(request).handle or {})
    sim.revoke_tokens()
    # when the job is checked and downloaded
    status, handle = follow(provider, request, handle)
    with provider.open_result(request, handle) as result:
        content = b"".join(result.chunks)
    # then one call was refused, a new token was obtained, and the job carried on
    assert status.state is ReportState.READY
    assert sim.tokens_refused == 1 and sim.tokens_issued == 2
    assert hashlib.sha256(content).hexdigest() == sim.served[handle["job_id"]]


# ---- starting a job


def test_the_start_call_wants_reportid_in_lower_case(sim: ClinicalOneSimulator) -> None:
    # given a signed-in client
    token = sign_in(sim)
    query = {"format": "CSV", "mode": "active", "studyId": DEFAULT_STUDY_ID}
    body = {"fieldSpecsList": [], "extFieldSpecsList": []}
    headers = {"Authorization": f"Bearer {token}"}
    # when it names the report reportId, then reportid
    camel = requests.post(
        f"{sim.base_url}{START_REPORT}",
        params={**query, "reportId": SUBJECT_DATA_EXTRACT},
        json=body,
        headers=headers,
        timeout=5,
    )
    lower = requests.post(
        f"{sim.base_url}{START_REPORT}",
        params={**query, "reportid": SUBJECT_DATA_EXTRACT},
        json=body,
        headers=headers,
        timeout=5,
    )
    # then only the lower-case spelling starts a job, answered 202 with an ExecutionLog
    assert camel.status_code == 400
    assert camel.json()["errorData"]["errorMessage"] == "Insufficient parameters"
    assert "'reportid', in lower case" in camel.json()["errorData"]["details"]
    assert lower.status_code == 202 and lower.json()["id"] in sim.runs


def test_submit_sends_the_documented_query_and_body(sim: ClinicalOneSimulator) -> None:
    # given a study report with one filter in each list
    request = job(
        {
            **STUDY_REPORT,
            "field_specs": [SITE_FILTER],
            "ext_field_specs": [{**SITE_FILTER, "fieldName": "Site"}],
        }
    )
    # when the adapter starts it
    status = adapter(sim).submit(request)
    # then the query has format in upper case and reportid in lower case, and the filters went as written
    (start,) = sim.calls("POST", START_REPORT)
    assert start.query == {
        "format": "CSV",
        "mode": "active",
        "reportid": SUBJECT_DATA_EXTRACT,
        "studyId": DEFAULT_STUDY_ID,
    }
    (run,) = sim.started_runs
    assert run["field_specs"] == [SITE_FILTER]
    assert run["ext_field_specs"][0]["fieldName"] == "Site"
    assert status.state is ReportState.PENDING and status.handle == {
        "job_id": run["id"],
        "kickoff": run["kickoff"],
    }


@pytest.mark.parametrize("wrapped", [False, True])
def test_the_job_id_is_read_from_a_bare_or_wrapped_execution_log(
    sim: ClinicalOneSimulator, wrapped: bool
) -> None:
    # given a service answering the ExecutionLog bare (documented) or inside a BaseResponse
    sim.wrap_execution_log = wrapped
    # when a job is started
    status = adapter(sim).submit(job())
    # then the handle holds the job id either way
    (run,) = sim.started_runs
    assert (status.handle or {})["job_id"] == run["id"]


# ---- finding the run in the download list


def test_a_run_is_followed_from_submitted_to_ready(
    sim: ClinicalOneSimulator, vendor_clock: SkippingClock
) -> None:
    # given a started job that takes 1.5 s (SUBMITTED for its first third)
    sim.generation_seconds = 1.5
    provider = adapter(sim)
    request = job()
    handle = dict(provider.submit(request).handle or {})
    # when it is checked at once, then past the first third, then at the end
    early = provider.check(request, handle)
    vendor_clock.advance(0.7)
    middle = provider.check(request, handle)
    vendor_clock.advance(0.8)
    done = provider.check(request, handle)
    # then it goes SUBMITTED -> IN PROGRESS -> COMPLETED, and the entry's name and kickoff are learned
    assert [early.state, middle.state, done.state] == [
        ReportState.PENDING,
        ReportState.RUNNING,
        ReportState.READY,
    ]
    (run,) = sim.started_runs
    assert done.handle == {"report_name": "Subject Data Extract", "kickoff": run["kickoff"]}


def test_the_list_is_paged_by_what_came_back_until_our_run_is_found(sim: ClinicalOneSimulator) -> None:
    # given a server that serves at most two entries a page, and five newer runs of the same report
    sim.max_page_size = 2
    sim.generation_seconds = 0
    provider = adapter(sim)
    request = job()
    handle = dict(provider.submit(request).handle or {})
    newer = [sim.add_run() for _ in range(5)]
    # when the adapter checks
    status = provider.check(request, handle)
    # then it asked offset 0, 2, 4 (not 0, 50) with both limit and offset, and found its own run on page 3
    assert status.state is ReportState.READY
    assert [(call["offset"], call["limit"]) for call in list_calls(sim)] == [
        ("0", "50"),
        ("2", "50"),
        ("4", "50"),
    ]
    assert handle["job_id"] not in newer


def test_has_more_is_a_string_and_false_means_the_last_page(sim: ClinicalOneSimulator) -> None:
    # given a one-page list (hasMore "false") holding another run but not yet ours
    sim.list_only_finished = True
    sim.generation_seconds = 5
    sim.add_run()
    provider = adapter(sim)
    request = job()
    handle = dict(provider.submit(request).handle or {})
    # when it is checked once
    status = provider.check(request, handle)
    # then exactly one page was asked for: the string "false" is not a truthy "more"
    assert status.state is ReportState.PENDING
    assert [call["offset"] for call in list_calls(sim)] == ["0"]


def test_other_runs_of_the_same_report_are_never_taken(sim: ClinicalOneSimulator) -> None:
    # given finished runs of the same report before and after ours, and ours failing
    sim.add_run()
    sim.fail_reports = "ORA-01555: snapshot too old"
    provider = adapter(sim)
    request = job()
    handle = dict(provider.submit(request).handle or {})
    sim.add_run()
    # when the adapter follows its own job
    status, _ = follow(provider, request, handle)
    # then it reports its own run's failure with the service's reason, not a neighbour's success
    assert status.state is ReportState.FAILED
    assert status.message == (
        f"Clinical One report job {handle['job_id']} ended with run status 'FAILED': "
        "ORA-01555: snapshot too old"
    )


def test_a_run_not_listed_yet_is_pending(sim: ClinicalOneSimulator, vendor_clock: SkippingClock) -> None:
    # given a service that lists finished runs only
    sim.list_only_finished = True
    sim.generation_seconds = 0.6
    provider = adapter(sim)
    request = job()
    handle = dict(provider.submit(request).handle or {})
    # when it is checked before and after generation
    before = provider.check(request, handle)
    vendor_clock.advance(0.6)
    after = provider.check(request, handle)
    # then it waits, saying why, and is ready once listed
    assert before.state is ReportState.PENDING and "not in the download list yet" in (before.message or "")
    assert after.state is ReportState.READY


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("status", {"queued": "Queued", "running": "Running", "done": "Success", "failed": "Error"}),
        ("rptStatus", {"queued": "NEW", "running": "PROCESSING", "done": "Completed", "failed": "Failure"}),
        ("runStatus", {"queued": "pending", "running": "in_progress", "done": "DONE", "failed": "ABORTED"}),
        (
            "jobStatus",
            {"queued": "SCHEDULED", "running": "EXECUTING", "done": "SUCCEEDED", "failed": "ERRORED"},
        ),
    ],
)
def test_run_status_words_are_read_liberally(
    sim: ClinicalOneSimulator, field: str, words: dict[str, str]
) -> None:
    # given a service with its own run-status field and vocabulary
    sim.status_field = field
    sim.status_words = words
    sim.generation_seconds = 0.3
    provider = adapter(sim)
    request = job()
    # when one job is followed to its end, and another that fails
    first = dict(provider.submit(request).handle or {})
    early = provider.check(request, first)
    ready, _ = follow(provider, request, first)
    sim.fail_reports = "Report query failed"
    failed, _ = follow(provider, request, dict(provider.submit(request).handle or {}))
    # then each word maps to the state it means
    assert early.state in (ReportState.PENDING, ReportState.RUNNING)
    assert ready.state is ReportState.READY
    assert failed.state is ReportState.FAILED and failed.message.endswith(
        f"'{words['failed']}': Report query failed"
    )


def test_an_unknown_run_status_waits_fails_or_maps_as_the_connection_says(sim: ClinicalOneSimulator) -> None:
    # given a service whose finished runs say "C"
    sim.status_words = {"done": "C"}
    sim.generation_seconds = 0
    request = job()
    handle = dict(adapter(sim).submit(request).handle or {})
    # when adapters with each unknown-status setting check it
    waiting = adapter(sim).check(request, handle)
    with pytest.raises(ProviderProtocolError) as failure:
        adapter(sim, unknown_status="fail").check(request, handle)
    mapped = adapter(sim, run_statuses={"c": "ready"}).check(request, handle)
    # then by default it keeps waiting and says so; "fail" fails; a mapping makes it ready
    assert waiting.state is ReportState.RUNNING and "'C' is not one reportrelay knows" in (
        waiting.message or ""
    )
    assert "unknown run status 'C'" in str(failure.value) and "run_statuses" in str(failure.value)
    assert mapped.state is ReportState.READY


def test_an_entry_without_any_status_is_ready(sim: ClinicalOneSimulator) -> None:
    # given a service whose list entries carry no status at all and list finished runs only
    sim.status_field = None
    sim.list_only_finished = True
    sim.generation_seconds = 0
    provider = adapter(sim)
    request = job()
    handle = dict(provider.submit(request).handle or {})
    # when it is checked
    status = provider.check(request, handle)
    # then being listed means ready to download
    assert status.state is ReportState.READY


# ---- the download


def test_the_download_names_the_run_exactly_as_the_list_did(sim: ClinicalOneSimulator) -> None:
    # given a service that insists on the report name and kickoff time, and a finished run
    sim.require_run_details = True
    provider = adapter(sim)
    request = job()
    _, handle = follow(provider, request, dict(provider.submit(request).handle or {}))
    # when the report is downloaded
    with provider.open_result(request, handle) as result:
        content = b"".join(result.chunks)
    # then the query carried id, study, mode, name and kickoff verbatim, and the file is the one served
    (run,) = sim.started_runs
    (download,) = sim.calls("GET", DOWNLOAD)
    assert download.query == {
        "id": run["id"],
        "studyId": DEFAULT_STUDY_ID,
        "mode": "active",
        "reportName": "Subject Data Extract",
        "rptKickoffDatetime": run["kickoff"],
    }
    assert hashlib.sha256(content).hexdigest() == sim.served[run["id"]]
    assert content.startswith(b"STUDYID,SITEID,SUBJID")
    assert result.filename.startswith("Subject_Data_Extract_") and result.filename.endswith(".csv")
    assert result.content_type == "text/csv"


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        (
            {
                "status": "error",
                "result": None,
                "errorData": {"errorCode": "REPT_500", "errorMessage": "Storage down"},
            },
            ProviderRejected,
            "download Clinical One report: REPT_500: Storage down",
        ),
        (
            {"status": "success", "result": {}},
            ProviderProtocolError,
            "answered JSON instead of the report file",
        ),
    ],
)
def test_a_json_answer_to_the_download_is_never_taken_for_the_report(
    sim: ClinicalOneSimulator, answer: dict[str, Any], error: type[Exception], words: str
) -> None:
    # given a finished run whose download answers 200 with a BaseResponse instead of the file
    provider = adapter(sim)
    request = job()
    _, handle = follow(provider, request, dict(provider.submit(request).handle or {}))
    sim.download = lambda request: json_response(answer)  # type: ignore[method-assign]
    # when it is opened
    with pytest.raises(error) as failure, provider.open_result(request, handle):
        pass
    # then the job fails in the service's words (or saying what came instead) rather than storing JSON
    assert words in str(failure.value)


@pytest.mark.parametrize("tenant_study_id", ["null", "omit"])
def test_a_tenant_report_has_no_study_written_as_the_tenant_expects(
    sim: ClinicalOneSimulator, tenant_study_id: str
) -> None:
    # given a service that insists on one way of writing "no study", and an adapter set the same way
    sim.tenant_study_id = tenant_study_id  # type: ignore[assignment]
    provider = adapter(sim, tenant_study_id=tenant_study_id)
    request = job(TENANT_REPORT, "pdf")
    # when the HSL report is fetched
    status, handle = follow(provider, request, dict(provider.submit(request).handle or {}))
    with provider.open_result(request, handle) as result:
        content = b"".join(result.chunks)
    # then every call wrote the study that way and the file arrived
    expected = {"studyId": "null"} if tenant_study_id == "null" else {}
    calls = sim.calls("POST", START_REPORT) + sim.calls("GET", DOWNLOAD_LIST) + sim.calls("GET", DOWNLOAD)
    assert all({k: v for k, v in call.query.items() if k == "studyId"} == expected for call in calls)
    assert status.state is ReportState.READY and content.startswith(b"%PDF-1.7")
    assert result.filename.startswith("HSL_Report_") and result.filename.endswith(".pdf")


def test_a_tenant_report_written_the_wrong_way_is_refused_in_the_vendors_words(
    sim: ClinicalOneSimulator,
) -> None:
    # given a service that wants studyId=null for tenant reports and an adapter that leaves it out
    sim.tenant_study_id = "null"
    # when the HSL report is started
    with pytest.raises(ProviderRejected) as failure:
        adapter(sim, tenant_study_id="omit").submit(job(TENANT_REPORT))
    # then the refusal quotes the BaseResponse
    assert (
        "REPT_400: Insufficient parameters (studyId is required; send studyId=null for HSL Report.)"
        in str(failure.value)
    )


# ---- errors


@pytest.mark.parametrize("shape", ["errorData", "ErrorResponseData"])
def test_a_missing_reporting_right_fails_quoting_code_message_and_details(
    sim: ClinicalOneSimulator, shape: str
) -> None:
    # given a user without the right to run the report, and either spelling of the error object
    sim.forbidden_reports = {SUBJECT_DATA_EXTRACT}
    sim.error_shape = shape  # type: ignore[assignment]
    # when the job is started
    with pytest.raises(ProviderAuthFailed) as failure:
        adapter(sim).submit(job())
    # then after one new sign-in it fails with the vendor's code, message and details, and started nothing
    message = str(failure.value)
    assert f"REPT_401: {NO_ACCESS} ({NO_ACCESS_DETAILS})" in message
    assert message.startswith(f"start Clinical One report job: POST {START_REPORT} answered HTTP 401")
    assert sim.tokens_issued == 2 and sim.started_runs == []


def test_rejections_name_the_path_never_the_query(sim: ClinicalOneSimulator) -> None:
    # given a study the user cannot see
    request = job({**STUDY_REPORT, "study_id": "0" * 32})
    # when the job is started
    with pytest.raises(ProviderRejected) as failure:
        adapter(sim).submit(request)
    # then the message quotes the service and shows the path only
    message = str(failure.value)
    assert f"POST {START_REPORT} answered HTTP 404: REPT_404: Not found (Study {'0' * 32}" in message
    assert "?" not in message and "reportid=" not in message


def test_describe_base_response_reads_both_spellings_and_object_details() -> None:
    # given the two documented spellings, one with details as an object, and a success body
    error_data = {
        "status": "error",
        "errorData": {"errorCode": "REPT_400", "errorMessage": "Invalid parameters"},
    }
    other = {
        "status": "error",
        "result": None,
        "ErrorResponseData": {
            "errorCode": "C1-003",
            "errorMessage": "Cannot modify object after a study version has been approved",
            "details": {"field": "studyVersion"},
        },
    }
    # when they are described
    # then each reads "code: message (details)", and a success has nothing to say
    assert describe_base_response(error_data) == "REPT_400: Invalid parameters"
    assert describe_base_response(other) == (
        'C1-003: Cannot modify object after a study version has been approved ({"field": "studyVersion"})'
    )
    assert describe_base_response({"status": "success", "result": {}}) is None


# ---- throttling


@pytest.mark.parametrize(("header", "expected_pause"), [(True, 3.0), (False, 2.0)])
def test_a_429_is_honoured_from_retry_after_or_from_the_body(
    sim: ClinicalOneSimulator, header: bool, expected_pause: float
) -> None:
    # given a throttled start call whose wait is stated in Retry-After and the body, or in the body only
    sim.faults.throttle_next = 1
    sim.faults.throttle_retry_after = int(expected_pause)
    sim.retry_after_header = header
    sleeps: list[float] = []
    # when the adapter starts a job
    adapter(sim, sleeps=sleeps).submit(job())
    # then it waited exactly as long as the service asked, and started one job with two calls
    assert sleeps == [expected_pause]
    assert len(sim.calls("POST", START_REPORT)) == 2 and len(sim.started_runs) == 1


def test_the_429_body_states_the_wait(sim: ClinicalOneSimulator) -> None:
    # given a throttled list call without Retry-After
    sim.faults.throttle_next = 1
    sim.faults.throttle_retry_after = 4
    sim.retry_after_header = False
    token = sign_in(sim)
    # when it is called
    answer = requests.get(
        f"{sim.base_url}{DOWNLOAD_LIST}",
        params={"limit": 10, "offset": 0},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    # then the BaseResponse carries the retry details and no header does
    body = answer.json()
    assert answer.status_code == 429 and "Retry-After" not in answer.headers
    assert body["errorData"]["errorCode"] == "REPT_429"
    assert body["errorData"]["details"].endswith("retry after 4 seconds") and retry_seconds_in(body) == 4.0


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        ({"result": {"retryAfter": 7}}, 7.0),
        ({"errorData": {"details": "Quota exceeded. Retry after 30 seconds."}}, 30.0),
        ({"errorData": {"details": "retry in 1500 ms"}}, 1.5),
        ({"errorData": {"errorMessage": "Too many requests"}}, None),
    ],
)
def test_retry_details_are_read_from_fields_or_words(body: dict[str, Any], seconds: float | None) -> None:
    # given a 429 body in one of several forms
    # when its wait is read
    # then it is the stated number of seconds, or none
    assert retry_seconds_in(body) == seconds


# ---- the rest of the surface


def test_there_is_no_cancel(sim: ClinicalOneSimulator) -> None:
    # given a started job
    provider = adapter(sim)
    request = job()
    handle = dict(provider.submit(request).handle or {})
    # when it is cancelled
    # then the adapter says the API cannot
    assert provider.cancel(request, handle) is False


def test_the_catalog_lists_study_and_tenant_reports(sim: ClinicalOneSimulator) -> None:
    # given a signed-in client
    headers = {"Authorization": f"Bearer {sign_in(sim)}"}
    url = f"{sim.base_url}/ec-reporting-svc/rest/v1.0/reportmetadata"
    # when it lists a study's reports and the tenant's
    study = requests.get(
        url, params={"studyId": DEFAULT_STUDY_ID, "mode": "active"}, headers=headers, timeout=5
    )
    tenant = requests.get(url, params={"studyId": "null", "mode": "active"}, headers=headers, timeout=5)
    # then each shows the reports of its level with their ids
    assert [item["reportId"] for item in study.json()["result"]] == [SUBJECT_DATA_EXTRACT]
    assert [item["reportName"] for item in tenant.json()["result"]] == ["HSL Report"]


def test_the_sandbox_simulator_uses_the_secret_for_user_and_client() -> None:
    # given the simulator as the sandbox serves it
    simulator = sandbox_simulator(
        port=0,
        faults=Faults(),
        secret="s3cret",
        generation_seconds=1,
        token_lifetime_seconds=600,
        fail_reports=None,
    )
    # when it is inspected
    # then the user and the client share the secret, and older runs already fill the download list
    assert simulator.users == {"api": "s3cret"} and simulator.clients == {"reportrelay": "s3cret"}
    assert len(simulator.runs) == 2 and simulator.started_runs == []
