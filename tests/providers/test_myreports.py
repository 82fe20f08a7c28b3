"""MyReports: the simulator and the adapter over real HTTP, one test per quirk of the vendor's API."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from reportrelay.config import Connections, JobRequest, SecretResolver, parse_job_request
from reportrelay.errors import (
    BadRequest,
    ConfigurationError,
    DownloadInterrupted,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ReportGenerationFailed,
)
from reportrelay.providers import open_provider, provider_class
from reportrelay.providers.base import ReportState, ReportStatus
from reportrelay.providers.declarative import DeclarativeProvider
from reportrelay.transforms.json_records import JsonRecords, RawSource
from reportrelay_cli.sandbox.cli import EXAMPLES, SANDBOX_PROVIDERS, _point_at
from reportrelay_cli.sandbox.myreports import (
    CALL_LIST_FIELDS,
    DEFAULT_REPORT,
    DEFAULT_WORKSPACE,
    MyReportsSimulator,
    sandbox_simulator,
)
from reportrelay_cli.sandbox.server import Faults
from tests.clock import SkippingClock

CLIENT_ID = "reportrelay"
CLIENT_SECRET = "mr-client-Secret-5b1d"
REFRESH_TOKEN = "mr-refresh-Token-93fa"
STATIC_TOKEN = "mr-static-Token-0c47"
SECRETS = {
    "MR_CLIENT_SECRET": CLIENT_SECRET,
    "MR_REFRESH_TOKEN": REFRESH_TOKEN,
    "MR_STATIC_TOKEN": STATIC_TOKEN,
}
API = f"/api/v1.0/workspaces/{DEFAULT_WORKSPACE}/reports/{DEFAULT_REPORT}"
#: The MyReports adapter: the class the provider registry builds from specs/myreports.json.
MyReports: type[DeclarativeProvider] = provider_class("myreports")  # type: ignore[assignment]


@pytest.fixture
def sim(vendor_clock: SkippingClock) -> Iterator[MyReportsSimulator]:
    with MyReportsSimulator(
        clock=vendor_clock,
        clients={CLIENT_ID: CLIENT_SECRET},
        refresh_tokens=[REFRESH_TOKEN],
        static_tokens=[STATIC_TOKEN],
        generation_seconds=0.2,
        row_count=5,
    ) as simulator:
        yield simulator


def oauth(sim: MyReportsSimulator) -> dict[str, Any]:
    return {
        "type": "oauth_refresh_token",
        "token_url": f"{sim.base_url}/connect/token",  # absolute: the login host is a different host
        "client_id": CLIENT_ID,
        "client_secret": {"env": "MR_CLIENT_SECRET"},
        "refresh_token": {"env": "MR_REFRESH_TOKEN"},
    }


def adapter(sim: MyReportsSimulator, auth: dict[str, Any] | None = None, **settings: Any) -> MyReports:
    body = {"provider": "myreports", "base_url": sim.base_url, "auth": auth or oauth(sim), **settings}
    connection = Connections.from_document({"connections": {"mr": body}}).get("mr")
    provider = open_provider(connection, SecretResolver(SECRETS))
    assert isinstance(provider, MyReports)
    return provider


def job(format: str = "json", parameters: dict[str, Any] | None = None, **report: Any) -> JobRequest:
    body = {
        "workspace_id": DEFAULT_WORKSPACE,
        "report_id": DEFAULT_REPORT,
        "date_filter": {"preset": "ThisQuarter"},
        **report,
    }
    return parse_job_request(
        {"connection": "mr", "report": body, "format": format, "parameters": parameters or {}}
    )


def until_finished(provider: MyReports, request: JobRequest) -> tuple[dict[str, Any], list[ReportStatus]]:
    handle = provider.submit(request).handle
    assert handle is not None
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = provider.check(request, handle)
        seen.append(status)
        if status.state.finished:
            return handle, seen
        time.sleep(0.05)
    raise AssertionError(f"the report never finished: {seen}")


def download(provider: MyReports, request: JobRequest, handle: dict[str, Any]) -> tuple[Any, bytes]:
    with provider.open_result(request, handle) as result:
        return result, b"".join(result.chunks)


def token(sim: MyReportsSimulator, refresh_token: str = REFRESH_TOKEN, **form: str) -> requests.Response:
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **form,
    }
    return requests.post(f"{sim.base_url}/connect/token", data=data, timeout=5)


def api(
    sim: MyReportsSimulator, method: str, path: str, bearer: str | None, **kwargs: Any
) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.request(method, f"{sim.base_url}{path}", headers=headers, timeout=5, **kwargs)


def csv_rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))


# --------------------------------------------------------------------------------------------------
# The simulator, as the documents describe the service


def test_refresh_grant_issues_bearer_tokens_and_rotation_voids_the_used_refresh_token(sim):
    # given a login host that rotates refresh tokens
    sim.rotate_refresh_tokens = True
    # when the client refreshes, then refreshes again with the old and with the new refresh token
    first = token(sim)
    replayed = token(sim)
    second = token(sim, first.json()["refresh_token"])
    # then the first answer is an OAuth2 token answer with a new refresh token, the old one is void
    body = first.json()
    assert first.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["access_token"] and body["refresh_token"] != REFRESH_TOKEN
    assert replayed.status_code == 400 and replayed.json() == {"error": "invalid_grant"}
    assert second.status_code == 200
    assert api(sim, "GET", f"{API}/results/none", second.json()["access_token"]).status_code == 404


def test_login_host_refuses_a_wrong_client_grant_or_refresh_token(sim):
    # given a client secret, a grant type and a refresh token the login host does not know
    # when each is used
    wrong_client = token(sim, client_secret="nope")
    wrong_grant = token(sim, grant_type="authorization_code")
    wrong_refresh = token(sim, "not-a-refresh-token")
    basic = requests.post(
        f"{sim.base_url}/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN},
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=5,
    )
    # then each is the matching OAuth2 error; client credentials may also come as Basic auth
    assert (wrong_client.status_code, wrong_client.json()) == (400, {"error": "invalid_client"})
    assert wrong_grant.json() == {"error": "unsupported_grant_type"}
    assert wrong_refresh.json() == {"error": "invalid_grant"}
    assert basic.status_code == 200


def test_api_answers_401_without_a_body_when_the_token_is_missing_invalid_or_expired(sim, vendor_clock):
    # given no token, a made-up token, and a token that lived its hour
    expired = token(sim).json()["access_token"]
    vendor_clock.advance(sim.token_lifetime_seconds)
    body = {"reportId": DEFAULT_REPORT, "dateFilter": {"presetName": "ThisQuarter"}}
    # when each creates a report request
    answers = [
        api(sim, "POST", f"{API}/requests", bearer, json=body) for bearer in (None, "made-up", expired)
    ]
    # then each is a bare 401 ("HTTP/1.1 401 Unauthorised"), and nothing was created
    assert [answer.status_code for answer in answers] == [401, 401, 401]
    assert all(answer.content == b"" for answer in answers)
    assert sim.requests == {}


def test_a_request_is_created_polled_and_its_data_document_downloaded(sim, vendor_clock):
    # given a static bearer token
    body = {"reportId": DEFAULT_REPORT, "dateFilter": {"presetName": "ThisYear"}, "additionalConditions": []}
    # when a request is created and polled before and after generation, and its data downloaded
    created = api(sim, "POST", f"{API}/requests", STATIC_TOKEN, json=body).json()
    request_id = created["data"]["requestId"]
    early = api(sim, "GET", f"{API}/results/{request_id}", STATIC_TOKEN).json()
    vendor_clock.advance(sim.generation_seconds)
    late = api(sim, "GET", f"{API}/results/{request_id}", STATIC_TOKEN).json()
    data = api(sim, "GET", f"{API}/results/{request_id}/data", STATIC_TOKEN)
    # then the answers have the documents' envelope and the document is the seed's shape
    assert created["status"] == "success" and created["timestamp"].endswith("Z")
    assert created["data"]["dateFilter"]["presetFilterObject"]["units"] == 6  # ThisYear, as in the seed
    assert (early["data"]["status"], late["data"]["status"]) == ("Queued", "Complete")
    assert late["data"]["statusMessage"] == "Report processing complete"
    assert late["data"]["reportTemplateName"] == "CallListByUserSegmented"
    document = data.json()
    assert document["status"] == 1 and document["rowLimitExceeded"] is False
    assert document["totalCount"] == len(document["data"]) == 5
    assert [field["fieldName"] for field in document["request"]["displayFields"]] == list(CALL_LIST_FIELDS)
    assert all("docId" in record for record in document["data"])
    assert hashlib.sha256(data.content).hexdigest() == sim.served[request_id]


def test_both_path_variants_are_served_unless_narrowed(sim):
    # given a finished request
    sim.generation_seconds = 0
    body = {"reportId": DEFAULT_REPORT, "dateFilter": {"presetName": "ThisQuarter"}}
    request_id = api(sim, "POST", f"{API}/requests", STATIC_TOKEN, json=body).json()["data"]["requestId"]
    # when its status is read under /results/ and /requests/, then with only /requests/ and no /api served
    both = [
        api(sim, "GET", f"{API}/{word}/{request_id}", STATIC_TOKEN).status_code
        for word in ("results", "requests")
    ]
    sim.api_prefix, sim.results_segments = "", ("requests",)
    bare = API.removeprefix("/api")
    narrowed = [
        api(sim, "GET", f"{path}/{request_id}", STATIC_TOKEN).status_code
        for path in (f"{API}/requests", f"{bare}/results", f"{bare}/requests")
    ]
    # then both answer by default; narrowed, only the one variant does
    assert both == [200, 200]
    assert narrowed == [404, 404, 200]


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        (API, {"dateFilter": {"presetName": "NextCentury"}}, 400, "not a valid preset date filter"),
        (
            API,
            {"dateFilter": {"start": "2025-02-01", "end": "2025-01-01"}},
            400,
            "start must not be after end",
        ),
        (API, {"reportId": "other", "dateFilter": {"presetName": "ThisYear"}}, 400, "does not match"),
        (API, {}, 400, "dateFilter is required"),
        (
            f"/api/v1.0/workspaces/{DEFAULT_WORKSPACE}/reports/missing-report",
            {"dateFilter": {"presetName": "ThisYear"}},
            404,
            "Report",
        ),
    ],
)
def test_bad_create_requests_are_refused_in_the_envelope(sim, path, body, status, words):
    # given a request the service cannot run
    # when it is created
    answer = api(sim, "POST", f"{path}/requests", STATIC_TOKEN, json=body)
    # then it is refused with {"status": "error", "message": ...} and nothing is queued
    assert answer.status_code == status
    assert answer.json()["status"] == "error" and words in answer.json()["message"]
    assert sim.requests == {}


def test_sandbox_factory_accepts_the_secret_as_client_secret_refresh_token_and_static_token():
    # given the simulator as `reportrelay sandbox` builds it
    with sandbox_simulator(
        port=0,
        faults=Faults(),
        secret="s3cret",
        generation_seconds=0,
        token_lifetime_seconds=60,
        fail_reports=None,
    ) as simulator:
        # when the secret is used as each kind of credential
        issued = requests.post(
            f"{simulator.base_url}/connect/token",
            data={"grant_type": "refresh_token", "refresh_token": "s3cret"},
            auth=("reportrelay-sandbox", "s3cret"),
            timeout=5,
        )
        static = api(simulator, "GET", f"{API}/results/x", "s3cret")
    # then both work (the unknown request id is the only complaint)
    assert issued.status_code == 200 and issued.json()["expires_in"] == 60
    assert static.status_code == 404


def test_the_sandbox_serves_the_example_connection_and_request_and_checks_their_csv(monkeypatch):
    # given myreports as `reportrelay sandbox` and `reportrelay demo` serve it, with the example files
    (entry,) = [provider for provider in SANDBOX_PROVIDERS if provider.key == "myreports"]
    assert (entry.port, entry.connection, entry.request_file) == (
        8704,
        "sandbox-myreports",
        "myreports-report.json",
    )
    document = json.loads((EXAMPLES / "connections.json").read_text(encoding="utf-8"))
    body = document["connections"][entry.connection]
    assert body["base_url"] == "http://127.0.0.1:8704" and body["auth"]["type"] == "oauth_refresh_token"
    request = parse_job_request(json.loads((EXAMPLES / entry.request_file).read_text(encoding="utf-8")))
    monkeypatch.setenv("SANDBOX_SECRET", "sandbox-Secret-77e0")
    with entry.build(0, Faults(), {"generation_seconds": 0}) as simulator:
        _point_at(body, simulator.base_url)
        connection = Connections.from_document({"connections": {entry.connection: body}}).get(
            entry.connection
        )
        provider = open_provider(connection, SecretResolver({"SANDBOX_SECRET": "sandbox-Secret-77e0"}))
        assert isinstance(provider, MyReports)
        # when the example request runs through the adapter
        handle, _ = until_finished(provider, request)
        result, content = download(provider, request, handle)
    # then it signed in with the refresh token, and the CSV is the simulator's own rendering of its records
    assert request.format == "csv" and result.filename.endswith(".csv")
    assert simulator.tokens_issued == 1
    assert hashlib.sha256(content).hexdigest() == simulator.served[f"{handle['request_id']}.csv"]
    assert (
        csv_rows(content)[0] == list(CALL_LIST_FIELDS) and len(csv_rows(content)) == 1 + simulator.row_count
    )


# --------------------------------------------------------------------------------------------------
# The adapter: validation and settings


@pytest.mark.parametrize(
    ("request_body", "words"),
    [
        ({"drop": "workspace_id"}, "request.report.workspace_id: Field required"),
        ({"report": {"workspace_id": "a/b"}}, "request.report.workspace_id: must be a MyReports id"),
        ({"report": {"filter_id": "x?y"}}, "request.report.filter_id: must be a MyReports id"),
        ({"report": {"date_filter": {}}}, "give either 'preset' (such as ThisQuarter) or both"),
        ({"report": {"date_filter": {"preset": "This Quarter"}}}, "date_filter.preset: must be the name"),
        ({"report": {"date_filter": {"preset": "ThisYear", "start": "2025-01-01"}}}, "not both"),
        ({"report": {"date_filter": {"start": "2025-01-01"}}}, "both 'start' and 'end'"),
        (
            {"report": {"date_filter": {"start": "2025-13-01", "end": "2025-12-31"}}},
            "date_filter.start: '2025-13-01'",
        ),
        (
            {"report": {"date_filter": {"start": "2025-03-01", "end": "2025-02-01"}}},
            "'start' (2025-03-01) must not be after 'end' (2025-02-01)",
        ),
        (
            {"report": {"date_filter": {"start": "2025-01-01T00:00:00+01:00", "end": "2025-02-01"}}},
            "both with a UTC offset or both without",
        ),
        ({"report": {"additional_conditions": ["userNum = 101"]}}, "additional_conditions.0"),
        ({"report": {"document_id": 10}}, "report.document_id: Extra inputs are not permitted"),
        (
            {"format": "pdf"},
            "request.format: 'pdf' is not available for MyReports results; choose one of json, csv",
        ),
        ({"parameters": {"Year": 2025}}, "request.parameters: MyReports reports take no parameters"),
    ],
)
def test_validate_names_the_field_and_says_what_is_wrong(request_body, words):
    # given a request with one thing wrong
    report = {
        "workspace_id": DEFAULT_WORKSPACE,
        "report_id": DEFAULT_REPORT,
        "date_filter": {"preset": "ThisYear"},
    }
    report.update(request_body.get("report", {}))
    report.pop(request_body.get("drop", ""), None)
    document = {"connection": "mr", "report": report, "format": request_body.get("format", "csv")}
    document["parameters"] = request_body.get("parameters", {})
    # when it is validated
    with pytest.raises(BadRequest) as raised:
        provider_class("myreports").validate(parse_job_request(document))
    # then the message names the field
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("settings", "words"),
    [({"api_prefix": "api"}, "api_prefix"), ({"results_segment": "x"}, "results_segment")],
)
def test_bad_connection_settings_are_configuration_errors(sim, settings, words):
    # given a connection with a wrong path setting
    # when an adapter is made for it
    with pytest.raises(ConfigurationError) as raised:
        adapter(sim, **settings)
    # then the setting is named
    assert f"connections.mr.{words}" in str(raised.value)


def test_the_create_body_carries_the_filter_dates_and_conditions(sim):
    # given a fixed range given as dates, a filter id and an additional condition
    condition = {"fieldName": "userNum", "operator": "=", "values": ["101"]}
    request = job(
        filter_id="00000000-0000-0000-0000-000000000007",
        date_filter={"start": "2025-07-01", "end": "2025-10-01T00:00:00"},
        additional_conditions=[condition],
    )
    # when it is submitted
    handle = adapter(sim).submit(request).handle
    # then the body is the documents' shape, dates as ISO date-times, and the handle only holds the id
    assert sim.requests[handle["request_id"]]["body"] == {
        "reportId": DEFAULT_REPORT,
        "filterId": "00000000-0000-0000-0000-000000000007",
        "dateFilter": {"start": "2025-07-01T00:00:00", "end": "2025-10-01T00:00:00"},
        "additionalConditions": [condition],
    }
    assert list(handle) == ["request_id"]


def test_an_unknown_preset_is_refused_in_the_providers_words(sim):
    # given a preset name that is well formed but unknown to the service
    # when it is submitted
    with pytest.raises(ProviderRejected) as raised:
        adapter(sim).submit(job(date_filter={"preset": "NextCentury"}))
    # then the error quotes the provider
    assert "'NextCentury' is not a valid preset date filter" in str(raised.value)


# --------------------------------------------------------------------------------------------------
# Quirk: the path variants


def test_path_variants_are_connection_settings(sim):
    # given a service that answers only /v1.0/.../requests/{id} (no /api; "requests", as the seed's example)
    sim.api_prefix, sim.results_segments = "", ("requests",)
    # when the default adapter and one configured for it check a request
    default = adapter(sim)
    configured = adapter(sim, api_prefix="", results_segment="requests")
    with pytest.raises(ProviderRejected) as raised:
        default.submit(job())
    handle, seen = until_finished(configured, job())
    _, content = download(configured, job(), handle)
    # then the default one gets 404 and the configured one completes and downloads
    assert "HTTP 404" in str(raised.value)
    assert seen[-1].state is ReportState.READY
    assert hashlib.sha256(content).hexdigest() == sim.served[handle["request_id"]]
    assert {entry.path.split("/")[-2] for entry in sim.calls("GET")} >= {"requests"}
    assert all(not entry.path.startswith("/api/") for entry in sim.calls("GET"))


# --------------------------------------------------------------------------------------------------
# Quirk: only "Complete" is documented


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("Complete", ReportState.READY),
        ("Completed", ReportState.READY),
        ("succeeded", ReportState.READY),
        ("Done", ReportState.READY),
        (1, ReportState.READY),
        ("Failed", ReportState.FAILED),
        ("ERROR", ReportState.FAILED),
        ("Faulted", ReportState.FAILED),
        ("Cancelled", ReportState.CANCELLED),
        ("Canceled", ReportState.CANCELLED),
        ("Queued", ReportState.PENDING),
        ("Pending", ReportState.PENDING),
        ("Not Started", ReportState.PENDING),
        ("Processing", ReportState.RUNNING),
        ("Crunching numbers", ReportState.RUNNING),
        (0, ReportState.RUNNING),
        (True, ReportState.RUNNING),
    ],
)
def test_status_values_are_mapped_liberally(raw, state):
    # given a status value, documented or not / when it is mapped / then unknown ones mean "still running"
    assert ReportState(MyReports.spec.check.state_of(raw)) is state


def test_unknown_statuses_keep_polling_with_the_status_message(sim):
    # given a service that says words no document mentions, then "Succeeded"
    sim.progress_statuses = ("Initialising", "Crunching numbers")
    sim.complete_status = "Succeeded"
    # when the adapter polls it
    _, seen = until_finished(adapter(sim), job())
    # then the unknown words are RUNNING with the provider's message, and "Succeeded" is READY
    assert seen[0] == ReportStatus(ReportState.RUNNING, message="Report processing")
    assert {status.state for status in seen[:-1]} == {ReportState.RUNNING}
    assert seen[-1].state is ReportState.READY


def test_a_failed_status_carries_the_providers_status_message(sim):
    # given a service whose report fails with a message, in a word of its own
    sim.fail_reports = "Query timeout after 300 seconds"
    sim.failed_status = "Error"
    # when the adapter polls it
    handle, seen = until_finished(adapter(sim), job())
    # then the state is FAILED and the message quotes the provider
    assert seen[-1].state is ReportState.FAILED
    assert seen[-1].message == (
        f"MyReports report request {handle['request_id']} ended with status 'Error': "
        "Query timeout after 300 seconds"
    )


def test_a_cancelled_status_is_cancelled(sim):
    # given a service that reports the request cancelled
    sim.progress_statuses = ("Cancelled",)
    sim.generation_seconds = 60
    provider = adapter(sim)
    handle = provider.submit(job()).handle
    # when it is checked
    status = provider.check(job(), handle)
    # then the job ends as cancelled, in the provider's word
    assert status.state is ReportState.CANCELLED and "'Cancelled'" in status.message


def test_a_simulator_without_progress_words_says_processing(sim):
    # given a simulator configured with no progress words, and a request still generating
    sim.progress_statuses = ()
    sim.generation_seconds = 60
    provider = adapter(sim)
    handle = provider.submit(job()).handle
    # when it is checked
    status = provider.check(job(), handle)
    # then the simulator answers its "Processing" fallback (it once failed with a 500), which is running
    assert status.state is ReportState.RUNNING
    assert sim.requests[handle["request_id"]]["status"] == "Processing"


# --------------------------------------------------------------------------------------------------
# Quirk: one JSON document of up to a million rows, streamed as JSON or CSV


def test_json_passes_the_document_through_unchanged(sim):
    # given a finished request
    provider = adapter(sim)
    handle, _ = until_finished(provider, job("json"))
    # when the result is downloaded as JSON
    result, content = download(provider, job("json"), handle)
    # then the bytes are exactly those served, with the announced length
    assert hashlib.sha256(content).hexdigest() == sim.served[handle["request_id"]]
    assert result.filename == f"myreports-{handle['request_id']}.json"
    assert result.content_type == "application/json"
    assert result.content_length == len(content)


def test_a_compressed_document_is_stored_decompressed(sim):
    # given a service that gzips its data answers
    sim.gzip_data = True
    provider = adapter(sim)
    handle, _ = until_finished(provider, job("json"))
    # when the result is downloaded as JSON
    result, content = download(provider, job("json"), handle)
    # then the stored bytes are the document itself, and the compressed length is not announced as its length
    assert sim.calls("GET", f"{API}/results/{{id}}/data")[-1].headers["Accept-Encoding"].count("gzip")
    assert hashlib.sha256(content).hexdigest() == sim.served[handle["request_id"]]
    assert result.content_length is None
    assert json.loads(content)["status"] == 1


def test_csv_columns_are_the_display_fields_and_missing_fields_are_empty(sim, caplog):
    # given a finished request whose records omit fields and carry docId (not a display field)
    provider = adapter(sim)
    handle, _ = until_finished(provider, job("csv"))
    # when the result is downloaded as CSV
    with caplog.at_level(logging.INFO, logger="reportrelay.providers.declarative"):
        result, content = download(provider, job("csv"), handle)
    # then the header is the display fields in order, and each row is its record's values, as written
    records = json.loads(api(sim, "GET", f"{API}/results/{handle['request_id']}/data", STATIC_TOKEN).content)[
        "data"
    ]
    rows = csv_rows(content)
    assert rows[0] == list(CALL_LIST_FIELDS) and "docId" not in rows[0]
    expected = [
        ["" if record.get(name) is None else str(record[name]) for name in CALL_LIST_FIELDS]
        for record in records
    ]
    assert rows[1:] == expected
    assert rows[1][CALL_LIST_FIELDS.index("ring")].endswith(".0")  # 1.0 stays 1.0
    assert (
        result.filename.endswith(".csv")
        and result.content_type == "text/csv"
        and result.content_length is None
    )
    assert content.endswith(b"\r\n")
    # and the fields left out are named in the log
    (note,) = [record for record in caplog.records if "left out of the CSV" in record.getMessage()]
    assert note.fields == ["docId"]


def test_csv_quoting_survives_commas_quotes_newlines_and_unicode(sim):
    # given records whose values need quoting, in every JSON type
    sim.rows = [
        {
            "connId": "a,b",
            "start": 'say "hi"',
            "userName": "line1\nline2",
            "userNum": "Zoë 李 ☎",
            "cli": "\r\n",
        },
        {"connId": "", "start": None, "userName": True, "userNum": False, "cli": {"x": [1, "y"]}},
        {
            "connId": 12345678901234567890,
            "start": 1.5e-7,
            "userName": -0.0,
            "userNum": [1, 2],
            "cli": " lead",
        },
    ]
    sim.reports[(DEFAULT_WORKSPACE, DEFAULT_REPORT)]["display_fields"] = (
        "connId",
        "start",
        "userName",
        "userNum",
        "cli",
    )
    provider = adapter(sim)
    handle, _ = until_finished(provider, job("csv"))
    # when the result is downloaded as CSV
    _, content = download(provider, job("csv"), handle)
    # then a CSV reader gets every value back: null empty, true/false, nested as JSON, numbers as written
    assert csv_rows(content) == [
        ["connId", "start", "userName", "userNum", "cli"],
        ["a,b", 'say "hi"', "line1\nline2", "Zoë 李 ☎", "\r\n"],
        ["", "", "true", "false", '{"x": [1, "y"]}'],
        ["12345678901234567890", "1.5E-7", "-0.0", "[1, 2]", " lead"],
    ]
    assert b'"say ""hi"""' in content and "Zoë 李 ☎".encode() in content


def test_csv_without_display_fields_takes_the_first_records_keys(sim):
    # given a report that lists no display fields
    sim.reports[(DEFAULT_WORKSPACE, DEFAULT_REPORT)]["display_fields"] = ()
    sim.rows = [{"b": 1, "a": 2}, {"a": 3, "c": 4}]
    provider = adapter(sim)
    handle, _ = until_finished(provider, job("csv"))
    # when the result is downloaded as CSV
    _, content = download(provider, job("csv"), handle)
    # then the columns are the first record's keys, in its order
    assert csv_rows(content) == [["b", "a"], ["1", "2"], ["", "3"]]


def test_csv_of_no_records_is_the_header_alone(sim):
    # given a report with no records in its date range
    sim.rows = []
    provider = adapter(sim)
    handle, _ = until_finished(provider, job("csv"))
    # when the result is downloaded as CSV
    _, content = download(provider, job("csv"), handle)
    # then the file is the header
    assert csv_rows(content) == [list(CALL_LIST_FIELDS)]


def drain_traced(chunks: Iterator[bytes]) -> tuple[int, str, int]:
    """Consume a chunk iterator measuring only its allocations; returns size, SHA-256 and peak bytes."""
    digest = hashlib.sha256()
    size = 0
    tracemalloc.start()
    try:
        for chunk in chunks:
            size += len(chunk)
            digest.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return size, digest.hexdigest(), peak


@pytest.mark.parametrize(("format", "rows"), [("csv", 50_000), ("json", 50_000)])
def test_a_large_result_streams_in_bounded_memory(sim, format, rows):
    # given a finished request of many records (the document is built before the download starts)
    sim.row_count = rows
    sim.generation_seconds = 0
    provider = adapter(sim)
    handle, _ = until_finished(provider, job(format))
    document_size = len(sim.requests[handle["request_id"]]["document"])
    # when the result is streamed, measuring the memory its iterator allocates
    with provider.open_result(job(format), handle) as result:
        size, sha256, peak = drain_traced(result.chunks)
    # then memory stayed at a few MiB while tens of MB went through
    assert document_size > 15 * 2**20
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    if format == "json":
        assert sha256 == sim.served[handle["request_id"]] and size == document_size
    else:
        assert size > 5 * 2**20


def test_row_limit_exceeded_is_logged_and_the_file_still_delivered(sim, caplog):
    # given a report with more records than the service's row limit
    sim.row_count, sim.row_limit = 8, 5
    provider = adapter(sim)
    handle, _ = until_finished(provider, job("csv"))
    # when the result is downloaded as CSV
    with caplog.at_level(logging.WARNING, logger="reportrelay.providers.declarative"):
        _, content = download(provider, job("csv"), handle)
    # then the file holds the rows up to the limit, and a warning says the limit was exceeded
    assert len(csv_rows(content)) == 1 + 5
    (warning,) = [record for record in caplog.records if "row limit exceeded" in record.getMessage()]
    assert warning.levelno == logging.WARNING
    assert (warning.row_limit, warning.total_count, warning.records) == (5, 8, 5)


@pytest.mark.parametrize("format", ["json", "csv"])
def test_an_unfinished_document_is_never_stored_and_a_later_one_is(sim, format):
    # given a finished request whose next download still says "processing" (status 0) over half the records
    provider = adapter(sim)
    handle, _ = until_finished(provider, job(format))
    sim.incomplete_downloads_next = 1
    # when it is downloaded twice
    with provider.open_result(job(format), handle) as result, pytest.raises(DownloadInterrupted) as raised:
        for _ in result.chunks:
            pass
    _, content = download(provider, job(format), handle)
    # then the first iteration raised before it ended (so nothing is stored) and says why; the second is whole
    assert "not complete (status 0 (Report processing), complete is 1); nothing was stored" in str(
        raised.value
    )
    if format == "json":
        assert hashlib.sha256(content).hexdigest() == sim.served[handle["request_id"]]
    else:
        assert len(csv_rows(content)) == 1 + 5


@pytest.mark.parametrize("format", ["json", "csv"])
def test_a_document_that_says_it_failed_fails_the_job(sim, format):
    # given a service whose finished document carries a failure status
    sim.data_status = ("Error", "Query failed: database offline")
    provider = adapter(sim)
    handle, _ = until_finished(provider, job(format))
    # when it is downloaded
    with provider.open_result(job(format), handle) as result, pytest.raises(ReportGenerationFailed) as raised:
        for _ in result.chunks:
            pass
    # then the failure quotes the document's status and message
    assert "say status 'Error' (Query failed: database offline)" in str(raised.value)


class _Raw:
    """A response's raw stream, for documents the simulator would never send."""

    def __init__(self, content: bytes) -> None:
        self._body = io.BytesIO(content)

    def read(self, size: int, decode_content: bool = True) -> bytes:
        return self._body.read(size)


class _Response:
    def __init__(self, content: bytes) -> None:
        self.raw = _Raw(content)


@pytest.mark.parametrize(
    ("content", "error", "words"),
    [
        (b'{"data": [{"a": 1}, {"a": 2', DownloadInterrupted, "ended after 1 records; nothing was stored"),
        (b'{"data": [{"a": 1}], "status": tru', ProviderProtocolError, "is not valid JSON"),
        (b'{"data": [1, 2], "status": 1}', ProviderProtocolError, "data[] of request r-1 holds a number"),
    ],
)
def test_broken_documents_are_errors_not_files(content, error, words):
    # given a document cut short, one that is not JSON, and one whose data are not records
    transform = MyReports.spec.download.transform
    assert transform is not None
    source = RawSource(_Response(content), keep=False)  # type: ignore[arg-type]
    document = JsonRecords(source, "request r-1", records=transform.records, columns=transform.columns)
    # when it is turned into CSV / then the error says what is wrong
    with pytest.raises(error) as raised:
        list(document.csv_chunks())
    assert words in str(raised.value)


# --------------------------------------------------------------------------------------------------
# Quirk: refresh-token OAuth at a separate login host, or a static bearer token


def test_a_token_that_expires_mid_job_is_refreshed_and_the_job_carries_on(sim):
    # given a job queued with one access token, which then stops working
    provider = adapter(sim)
    handle = provider.submit(job()).handle
    sim.revoke_tokens()
    # when the job carries on
    status = provider.check(job(), handle)
    # then the 401 led to one refresh grant and the check went through
    assert status.state in (ReportState.PENDING, ReportState.RUNNING, ReportState.READY)
    assert (sim.tokens_refused, sim.tokens_issued) == (1, 2)
    assert len(sim.requests) == 1


def test_a_rotated_refresh_token_is_used_for_the_next_refresh(sim):
    # given a login host that replaces the refresh token at every use
    sim.rotate_refresh_tokens = True
    provider = adapter(sim)
    handle = provider.submit(job()).handle
    # when the access token has to be refreshed twice more
    sim.revoke_tokens()
    provider.check(job(), handle)
    sim.revoke_tokens()
    provider.check(job(), handle)
    # then every refresh used the latest refresh token
    assert sim.tokens_issued == 3 and sim.refresh_grants_refused == 0
    assert REFRESH_TOKEN not in sim.refresh_tokens


def test_a_static_bearer_token_works_and_a_wrong_one_is_an_auth_failure(sim):
    # given a connection with the static token, and one with a wrong token
    good = adapter(sim, {"type": "bearer", "token": {"env": "MR_STATIC_TOKEN"}})
    bad = adapter(sim, {"type": "bearer", "token": {"env": "MR_REFRESH_TOKEN"}})
    # when each submits
    handle = good.submit(job()).handle
    with pytest.raises(ProviderAuthFailed) as raised:
        bad.submit(job())
    # then the good one queued a request without signing in; the bad one says to check the credentials
    assert handle["request_id"] in sim.requests and sim.tokens_issued == 0
    assert "check the connection's credentials" in str(raised.value)
    assert REFRESH_TOKEN not in str(raised.value)


def test_credentials_are_sent_as_authorization_bearer(sim):
    # given the documents' misspelt "Authorisation" header
    # when the adapter calls the API
    adapter(sim).submit(job())
    # then it sends the standard Authorization header with a bearer token
    (post,) = sim.calls("POST", f"{API}/requests")
    assert post.headers["Authorization"].startswith("Bearer ")
