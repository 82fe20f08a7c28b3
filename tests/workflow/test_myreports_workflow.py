"""MyReports jobs executed through statemachines/report.asl.json on moto, against the simulator over HTTP.

What every vendor must do is the vendor contract (tests/contract) and the fault matrix (tests/faults),
run for MyReports too (no secret anywhere among them); here is what is MyReports' own."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reportrelay import auth
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import JobOutcome, run_job
from reportrelay_cli.sandbox.myreports import (
    CALL_LIST_FIELDS,
    DEFAULT_REPORT,
    DEFAULT_WORKSPACE,
    MyReportsSimulator,
)
from tests.conftest import write_connections

CLIENT_ID = "reportrelay"
CLIENT_SECRET = "mr-wf-client-Secret-2e7a"
REFRESH_TOKEN = "mr-wf-refresh-Token-8d13"
STATIC_TOKEN = "mr-wf-static-Token-f06b"


@pytest.fixture
def mr_sim() -> Iterator[MyReportsSimulator]:
    with MyReportsSimulator(
        clients={CLIENT_ID: CLIENT_SECRET},
        refresh_tokens=[REFRESH_TOKEN],
        static_tokens=[STATIC_TOKEN],
        generation_seconds=0.5,
        row_count=40,
    ) as simulator:
        yield simulator


def mr_connection(base_url: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "provider": "myreports",
        "base_url": base_url,
        "auth": {
            "type": "oauth_refresh_token",
            "token_url": f"{base_url}/connect/token",
            "client_id": CLIENT_ID,
            "client_secret": {"env": "TEST_MR_CLIENT_SECRET"},
            "refresh_token": {"env": "TEST_MR_REFRESH_TOKEN"},
        },
        "poll": {"initial_seconds": 1, "max_seconds": 2},
    }
    body.update(overrides)
    return body


@pytest.fixture
def mr_connections(tmp_path: Path, mr_sim: MyReportsSimulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_MR_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("TEST_MR_REFRESH_TOKEN", REFRESH_TOKEN)
    monkeypatch.setenv("TEST_MR_STATIC_TOKEN", STATIC_TOKEN)
    url = mr_sim.base_url
    return write_connections(
        tmp_path,
        {
            "mr": mr_connection(url),
            "mr-static": mr_connection(
                url, auth={"type": "bearer", "token": {"env": "TEST_MR_STATIC_TOKEN"}}
            ),
            "mr-variant": mr_connection(url, api_prefix="", results_segment="requests"),
        },
    )


@pytest.fixture
def mr_aws(mr_connections: Path) -> Iterator[LocalAws]:
    with LocalAws(
        {"REPORTRELAY_CONNECTIONS_FILE": str(mr_connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    ) as aws:
        yield aws


def report_request(connection: str = "mr", format: str = "json", **report: Any) -> dict[str, Any]:
    return {
        "connection": connection,
        "report": {
            "workspace_id": DEFAULT_WORKSPACE,
            "report_id": DEFAULT_REPORT,
            "date_filter": {"preset": "ThisQuarter"},
            **report,
        },
        "format": format,
    }


def stored_bytes(aws: LocalAws, outcome: JobOutcome) -> bytes:
    stored = outcome.detail["object"]
    return aws.client("s3").get_object(Bucket=stored["bucket"], Key=stored["key"])["Body"].read()


def stored_csv_rows(aws: LocalAws, outcome: JobOutcome) -> list[list[str]]:
    return list(csv.reader(io.StringIO(stored_bytes(aws, outcome).decode("utf-8"), newline="")))


def object_count(aws: LocalAws) -> int:
    return aws.client("s3").list_objects_v2(Bucket=aws.bucket).get("KeyCount", 0)


def open_uploads(aws: LocalAws) -> list[Any]:
    return aws.client("s3").list_multipart_uploads(Bucket=aws.bucket).get("Uploads", [])


def only_request_id(sim: MyReportsSimulator) -> str:
    (request_id,) = sim.requests
    return request_id


def test_a_json_result_is_requested_polled_stored_unchanged_and_announced(mr_aws, mr_sim):
    # given a report that takes half a second to generate
    # when the job runs through the state machine
    outcome = run_job(mr_aws, {**report_request(), "output": {"key_prefix": "calls/"}})
    # then Report Ready describes the stored object
    assert outcome.detail_type == "Report Ready", outcome.detail
    detail = outcome.detail
    assert (detail["status"], detail["provider"], detail["connection"]) == ("READY", "myreports", "mr")
    request_id = only_request_id(mr_sim)
    stored = detail["object"]
    assert stored["key"] == f"calls/{detail['job_id']}/myreports-{request_id}.json"
    assert stored["content_type"] == "application/json"
    # and the bytes in S3 are exactly the document the simulator served
    content = stored_bytes(mr_aws, outcome)
    assert hashlib.sha256(content).hexdigest() == stored["sha256"] == mr_sim.served[request_id]
    assert len(mr_sim.calls("POST", "/api/v1.0/workspaces/{w}/reports/{r}/requests")) == 1


def test_a_csv_result_has_one_row_per_record_under_the_display_fields(mr_aws, mr_sim):
    # given a report whose records omit some fields
    # when the job asks for CSV
    outcome = run_job(mr_aws, report_request(format="csv"))
    # then the stored CSV is the records under the display fields, in order
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert outcome.detail["object"]["content_type"] == "text/csv"
    rows = stored_csv_rows(mr_aws, outcome)
    records = json.loads(mr_sim.requests[only_request_id(mr_sim)]["document"])["data"]
    assert rows[0] == list(CALL_LIST_FIELDS)
    assert rows[1:] == [["" if r.get(f) is None else str(r[f]) for f in CALL_LIST_FIELDS] for r in records]


def test_a_failed_request_fails_the_job_with_the_providers_message(mr_aws, mr_sim):
    # given a service whose report fails
    mr_sim.fail_reports = "Report processing failed: the data source timed out"
    # when the job runs
    outcome = run_job(mr_aws, report_request())
    # then Report Failed carries the provider's words, and nothing was stored
    assert outcome.detail_type == "Report Failed" and outcome.execution_status == "FAILED"
    error = outcome.detail["error"]
    assert error["code"] == "ReportGenerationFailed"
    assert (
        "ended with status 'Failed': Report processing failed: the data source timed out" in error["message"]
    )
    assert object_count(mr_aws) == 0


def test_undocumented_statuses_are_waited_through_until_a_ready_word(mr_aws, mr_sim):
    # given a service that says words no document mentions, then "Succeeded"
    mr_sim.progress_statuses = ("Initialising", "Crunching numbers")
    mr_sim.complete_status = "Succeeded"
    mr_sim.generation_seconds = 2.5
    # when the job runs
    outcome = run_job(mr_aws, report_request())
    # then it kept polling and fetched the report
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert outcome.detail["polls"] >= 2
    assert outcome.detail["object"]["sha256"] == mr_sim.served[only_request_id(mr_sim)]


def test_the_path_variant_of_the_seeds_example_works_when_configured(mr_aws, mr_sim):
    # given a service that answers only /v1.0/.../requests/{id}, and a connection configured for it
    mr_sim.api_prefix, mr_sim.results_segments = "", ("requests",)
    # when the job runs
    outcome = run_job(mr_aws, report_request(connection="mr-variant"))
    # then it completes, every call on that path
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert outcome.detail["object"]["sha256"] == mr_sim.served[only_request_id(mr_sim)]
    api_calls = [entry for entry in mr_sim.request_log if entry.path != "/connect/token"]
    assert api_calls and all(entry.path.startswith("/v1.0/") for entry in api_calls)
    assert all("/results/" not in entry.path for entry in api_calls)


def test_a_result_over_the_row_limit_is_still_delivered(mr_aws, mr_sim):
    # given a report with more records than the service's row limit
    mr_sim.row_count, mr_sim.row_limit = 30, 12
    # when the job asks for CSV
    outcome = run_job(mr_aws, report_request(format="csv"))
    # then the file holds the rows up to the limit
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert len(stored_csv_rows(mr_aws, outcome)) == 1 + 12


def test_a_document_still_processing_is_not_stored_and_the_download_retried(mr_aws, mr_sim):
    # given a service whose first download of the finished request still says "processing"
    mr_sim.incomplete_downloads_next = 1
    # when the job runs
    outcome = run_job(mr_aws, report_request())
    # then the fetch was retried and the complete document stored, once, with no upload left open
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert outcome.detail["object"]["sha256"] == mr_sim.served[only_request_id(mr_sim)]
    assert len(mr_sim.calls("GET", "/api/v1.0/workspaces/{w}/reports/{r}/results/{id}/data")) == 2
    assert object_count(mr_aws) == 1 and open_uploads(mr_aws) == []


def test_a_document_that_says_it_failed_fails_the_job_and_stores_nothing(mr_aws, mr_sim):
    # given a service whose finished document carries a failure status
    mr_sim.data_status = ("Error", "Query failed: database offline")
    # when the job runs
    outcome = run_job(mr_aws, report_request(format="csv"))
    # then the job fails in the document's words, without retrying, and nothing is stored
    assert outcome.detail["error"]["code"] == "ReportGenerationFailed"
    assert "status 'Error' (Query failed: database offline)" in outcome.detail["error"]["message"]
    assert len(mr_sim.calls("GET", "/api/v1.0/workspaces/{w}/reports/{r}/results/{id}/data")) == 1
    assert object_count(mr_aws) == 0 and open_uploads(mr_aws) == []


def test_an_access_token_about_to_expire_is_refreshed_before_use(mr_aws, mr_sim):
    # given access tokens that live one second, and a report that takes three
    mr_sim.token_lifetime_seconds = 1
    mr_sim.generation_seconds = 3
    # when the job runs
    outcome = run_job(mr_aws, report_request())
    # then new tokens were obtained along the way, before the service had to refuse an expired one
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert mr_sim.tokens_issued >= 3 and mr_sim.tokens_refused == 0


class NothingRemembered(dict):
    """Every step runs in a fresh Lambda process: no rotated refresh token survives in memory."""

    def get(self, key: Any, default: Any = None) -> Any:
        return default


def test_rotated_refresh_tokens_survive_from_one_step_to_the_next(
    mr_aws, mr_sim, mr_connections, monkeypatch
):
    # given a login host that replaces the refresh token at every use, short-lived access tokens, a
    # connection whose refresh token lives in Secrets Manager, and steps that remember nothing in memory
    mr_sim.rotate_refresh_tokens = True
    mr_sim.token_lifetime_seconds = 1
    mr_sim.generation_seconds = 2.5
    secrets = mr_aws.client("secretsmanager")
    secrets.create_secret(
        Name="mr/rotating", SecretString=json.dumps({"refresh_token": REFRESH_TOKEN, "note": "kept"})
    )
    document = json.loads(mr_connections.read_text())
    document["connections"]["mr"]["auth"]["refresh_token"] = {"secret": "mr/rotating", "key": "refresh_token"}
    mr_connections.write_text(json.dumps(document))
    monkeypatch.setattr(auth, "_rotated_refresh_tokens", NothingRemembered())
    # when the job runs (each step signs in again with a fresh adapter)
    outcome = run_job(mr_aws, report_request())
    # then every refresh used the latest refresh token, which the secret now holds beside its other fields
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert mr_sim.tokens_issued >= 3 and mr_sim.refresh_grants_refused == 0
    stored = json.loads(secrets.get_secret_value(SecretId="mr/rotating")["SecretString"])
    assert stored["refresh_token"] in mr_sim.refresh_tokens and stored["refresh_token"] != REFRESH_TOKEN
    assert stored["note"] == "kept"


def test_a_static_bearer_token_connection_works_without_signing_in(mr_aws, mr_sim):
    # given a connection with a static bearer token
    # when the job runs
    outcome = run_job(mr_aws, report_request(connection="mr-static"))
    # then the report is stored and the login host never asked
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert mr_sim.tokens_issued == 0 and mr_sim.calls("POST", "/connect/token") == []


def test_an_unknown_preset_fails_in_the_providers_words(mr_aws, mr_sim):
    # given a well-formed preset name the service does not know
    # when the job runs
    outcome = run_job(mr_aws, report_request(date_filter={"preset": "NextCentury"}))
    # then Report Failed quotes the service, and no request exists
    assert outcome.detail["error"]["code"] == "ProviderRejected"
    assert "'NextCentury' is not a valid preset date filter" in outcome.detail["error"]["message"]
    assert mr_sim.requests == {}


def test_a_date_range_backwards_is_refused_before_calling_the_service(mr_aws, mr_sim):
    # given a range whose start is after its end
    request = report_request(date_filter={"start": "2025-10-01", "end": "2025-07-01"})
    # when the job runs
    outcome = run_job(mr_aws, request)
    # then it fails as a bad request naming the field, and the service was never called
    assert outcome.detail["error"]["code"] == "BadRequest"
    assert "request.report.date_filter" in outcome.detail["error"]["message"]
    assert "must not be after 'end'" in outcome.detail["error"]["message"]
    assert mr_sim.request_log == []
