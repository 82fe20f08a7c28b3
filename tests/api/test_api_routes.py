"""Each route of the job API, its success and its error answers, with the ASL executing on moto.

The API handler is called in-process with API Gateway REST proxy events (LocalAws.api); the jobs it
starts run through statemachines/report.asl.json against the DevExpress simulator over real HTTP.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from jsonschema import Draft4Validator, FormatChecker

from infra import constants
from reportrelay import api
from reportrelay.access import Principal
from reportrelay.awsclients import aws_client
from reportrelay.config import JobRequest
from reportrelay.handlers import start_scheduled
from reportrelay.jobs import DynamoDbJobs
from reportrelay.providers.devexpress import DevExpress
from reportrelay.runtime import Runtime
from reportrelay_cli.local.apigateway import rest_event
from reportrelay_cli.local.aws import LambdaContext
from reportrelay_cli.local.runner import run_job
from tests.api.conftest import FINANCE_CALLER, SALES_CALLER, report_request
from tests.conftest import DX_PASSWORD, STATE_RETRY_SCALE, state_retries_scaled

OTHER_CALLER = "arn:aws:iam::123456789012:role/another-service"


def schema_problems(event: dict) -> list[str]:
    """What the event's JSON Schema (schemas/, as deployed to the registry) finds wrong with it."""
    schema = json.loads((constants.SCHEMAS_DIR / constants.SCHEMA_FILES[event["detail-type"]]).read_text())
    return [
        error.message for error in Draft4Validator(schema, format_checker=FormatChecker()).iter_errors(event)
    ]


def executions(aws) -> list[dict]:
    return aws.client("stepfunctions").list_executions(stateMachineArn=aws.state_machine_arn)["executions"]


def events_of(aws, job_id: str, timeout: float = 10) -> list[dict]:
    """The job's events, once its execution has ended.

    The job store says "ready" when DescribeReady has recorded the outcome; it puts the event a moment later.
    """
    deadline = time.monotonic() + timeout
    while any(
        execution["name"] == job_id and execution["status"] == "RUNNING" for execution in executions(aws)
    ):
        assert time.monotonic() < deadline, f"the execution of {job_id} did not end in {timeout}s"
        time.sleep(0.05)
    return [event for event in aws.events() if event["detail"]["job_id"] == job_id]


# ---- POST /reports and GET /reports/{id}


def test_a_job_is_accepted_watched_and_announced_with_a_download_link(job_api, api_aws, devexpress_sim):
    # given a report that takes half a second to generate
    # when it is started over the API
    answer = job_api("POST", "/reports", body=report_request(parameters={"Year": 2025}))
    # then the API answers 202 with the job id and a status URL (also in Location)
    assert answer.status == 202
    accepted = answer.json()
    job_id = accepted["job_id"]
    assert accepted["state"] == "queued" and accepted["replayed"] is False
    assert accepted["status_url"] == f"{api_aws.api_url}/reports/{job_id}" == answer.header("Location")
    # and the job id is the execution's name
    assert [execution["name"] for execution in executions(api_aws)] == [job_id]
    # when the job is watched until it ends
    job = job_api.wait(job_id)
    # then it is ready, with the provider's figures, timestamps and the stored object's size and SHA-256
    (export_id,) = devexpress_sim.exports
    assert job["state"] == "ready" and job["error"] is None
    assert job["source"] == "api" and job["connection"] == "dx" and job["provider"] == "devexpress"
    assert job["report"] == {"document_id": 10} and job["format"] == "pdf"
    assert job["polls"] >= 1 and job["provider_status"] == "READY"
    assert job["object"]["sha256"] == devexpress_sim.served[export_id]
    assert job["object"]["size"] == 64 * 1024
    assert job["created_at"] <= job["queued_at"] <= job["ready_at"] <= job["stored_at"] <= job["finished_at"]
    assert job["links"]["download"] == f"{api_aws.api_url}/reports/{job_id}/download"
    # and the Report Ready event carries the same link for people and chat bots
    (event,) = events_of(api_aws, job_id)
    assert event["detail-type"] == "Report Ready"
    assert event["detail"]["download_url"] == job["links"]["download"]
    assert schema_problems(event) == []
    # and the job and its event say the same cost: what it used on AWS and the estimate
    assert job["cost"] == event["detail"]["cost"]
    assert job["cost"]["s3_bytes_stored"] == 64 * 1024 and job["cost"]["usd"] > 0


def test_a_failed_job_shows_the_providers_reason(job_api, devexpress_sim):
    # given a server whose exports end in Fault
    devexpress_sim.fail_reports = "Parameter 'Year' is out of range"
    # when a job is started and watched
    job = job_api.wait(job_api.start(report_request()))
    # then it is failed, with the provider's words, and has nothing to download
    assert job["state"] == "failed"
    assert job["error"]["code"] == "ReportGenerationFailed"
    assert "Parameter 'Year' is out of range" in job["error"]["message"]
    assert job["object"] is None and job["links"]["download"] is None


def test_the_progress_of_a_running_job_is_visible(job_api, devexpress_sim):
    # given a report that takes a few seconds
    devexpress_sim.generation_seconds = 3
    job_id = job_api.start(report_request())
    # when it is watched while the provider works on it
    job = job_api.wait_for(job_id, lambda job: job["polls"] >= 1)
    # then it shows as running with the provider's status and the poll count, and nothing stored yet
    assert job["state"] == "running" and job["provider_status"] == "RUNNING"
    assert job["queued_at"] and job["object"] is None and job["finished_at"] is None


# ---- idempotency


def test_the_same_client_token_returns_the_same_job_and_queues_the_report_once(
    job_api, api_aws, devexpress_sim
):
    # given a job started with a client token
    request = report_request(client_token="nightly-2025-03-01")
    first = job_api("POST", "/reports", body=request).json()
    # when the same request is sent again, before and after the job finished
    again = job_api("POST", "/reports", body=request).json()
    job_api.wait(first["job_id"])
    later = job_api("POST", "/reports", body=request).json()
    # then each answer names the same job, as a replay, and only one report was queued
    assert again["job_id"] == later["job_id"] == first["job_id"]
    assert (first["replayed"], again["replayed"], later["replayed"]) == (False, True, True)
    assert later["state"] == "ready"
    assert len(executions(api_aws)) == 1
    assert len(devexpress_sim.exports) == 1


def test_the_idempotency_key_header_is_the_same_token(job_api, api_aws):
    # given a job started with an Idempotency-Key header
    first = job_api.start(report_request(), headers={"Idempotency-Key": "abc-123"})
    # when the same request comes with the same token in the body instead
    again = job_api("POST", "/reports", body=report_request(client_token="abc-123")).json()
    # then it is the same job
    assert again["job_id"] == first and again["replayed"] is True
    # and a header and body that disagree are refused, naming both
    clash = job_api(
        "POST", "/reports", body=report_request(client_token="one"), headers={"Idempotency-Key": "two"}
    )
    assert clash.status == 400
    assert "Idempotency-Key" in clash.json()["message"] and "client_token" in clash.json()["message"]
    assert len(executions(api_aws)) == 1


def test_concurrent_posts_with_one_token_start_one_execution(job_api, api_aws, devexpress_sim):
    # given eight clients retrying the same request with the same token at the same moment, each answered
    # by a Lambda environment of its own (here: each its own Runtime, starting the job at once; through
    # LocalAws.api they would wait for its one environment in turn)
    request = JobRequest.model_validate(report_request(client_token="storm"))
    caller = api.Caller(Principal(FINANCE_CALLER, "iam", frozenset({"finance"})), api_aws.api_url)
    answers: list = []
    barrier = threading.Barrier(8)

    def post() -> None:
        runtime = Runtime.from_env()
        barrier.wait()
        answers.append(api.start_job(request, caller, runtime))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every one was told about the same job, exactly one of them as its creator
    assert len(answers) == 8
    job_ids = {job.job_id for job, _ in answers}
    assert len(job_ids) == 1
    assert sorted(created for _, created in answers) == [False] * 7 + [True]
    # and one execution ran, queuing one report
    (job_id,) = job_ids
    assert job_api.wait(job_id)["state"] == "ready"
    assert len(executions(api_aws)) == 1
    assert len(devexpress_sim.exports) == 1


def test_callers_asking_at_once_are_each_answered_as_themselves(job_api, api_aws, devexpress_sim):
    # given a job of finance's and a job of sales'
    finance_job = job_api.start(report_request())
    sales_job = job_api.start(report_request(connection="dx-sales"), identity=SALES_CALLER)
    expected = {FINANCE_CALLER: [finance_job], SALES_CALLER: [sales_job]}
    answers: list = []
    barrier = threading.Barrier(6)

    def list_jobs(caller: str) -> None:
        barrier.wait()
        answer = job_api("GET", "/reports", identity=caller)
        answers.append((caller, answer.status, answer.body))

    # when three of each team's callers list their jobs at the same moment, round after round, with the
    # threads switching every microsecond so that their requests interleave as under load
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(15):
            threads = [threading.Thread(target=list_jobs, args=(caller,)) for caller in list(expected) * 3]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(interval)
    # then every one was answered as itself (as in Lambda, where one environment answers one request at a
    # time): a 200 listing its own team's job and not the other's
    assert len(answers) == 90
    for caller, status, body in answers:
        assert status == 200, body
        assert [job["job_id"] for job in json.loads(body)["jobs"]] == expected[caller], (caller, body)


def test_a_token_reused_for_a_different_request_is_refused(job_api, api_aws):
    # given a token already used for one report
    first = job_api.start(report_request(client_token="monthly"))
    # when it comes with a request for another report
    answer = job_api(
        "POST", "/reports", body=report_request(client_token="monthly", report={"document_id": 11})
    )
    # then 409 says the token names another job, and nothing more was queued
    assert answer.status == 409
    assert answer.json()["code"] == "ClientTokenReused"
    assert first in answer.json()["message"] and "monthly" in answer.json()["message"]
    assert len(executions(api_aws)) == 1


def test_two_sessions_of_one_role_are_two_callers(job_api, api_aws):
    # given a token used by one session of a role (one SSO user of a permission set, say)
    session = "arn:aws:sts::123456789012:assumed-role/report-starter/session-{}"
    first = job_api.start(report_request(client_token="t-1"), identity=session.format("a"))
    # when another session of the same role uses the same token
    again = job_api("POST", "/reports", body=report_request(client_token="t-1"), identity=session.format("b"))
    # then it is a job of its own, owned by that session
    assert again.status == 202 and again.json()["job_id"] != first and again.json()["replayed"] is False
    assert len(executions(api_aws)) == 2


def test_client_tokens_are_scoped_to_the_caller(job_api, api_aws):
    # given a token used by one IAM principal
    mine = job_api.start(report_request(client_token="shared-name"))
    # when another principal happens to use the same token
    theirs = job_api.start(report_request(client_token="shared-name"), identity=OTHER_CALLER)
    # then each gets a job of their own
    assert mine != theirs
    assert len(executions(api_aws)) == 2


# ---- validation: 400 naming the field, nothing queued


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (report_request(connection="nowhere"), "request.connection: unknown connection 'nowhere'"),
        (report_request(format="csv"), "request.format: 'csv' is not available"),
        (report_request(report={"document_id": 10, "dashboard_id": 20}), "request.report"),
        (report_request(report={"document_id": "ten"}), "request.report.document_id"),
        ({"connection": "dx", "format": "pdf"}, "request.report: is required"),
        (report_request(colour="red"), "request.colour: Extra inputs are not permitted"),
        (report_request(output={"key_prefix": "../etc/"}), "request.output.key_prefix: must be a relative"),
        (report_request(deadline_seconds=5), "request.deadline_seconds"),
        (report_request(client_token=""), "request.client_token"),
        (["not", "an", "object"], "request: must be a JSON object"),
        ("{not json", "request: the body is not valid JSON"),
        (None, "request: is required"),
    ],
)
def test_an_invalid_request_is_a_400_naming_the_field_and_queues_nothing(
    job_api, api_aws, devexpress_sim, body, named
):
    # when an invalid job request is posted
    answer = job_api("POST", "/reports", body=body)
    # then the answer is 400 with a message naming the bad field
    assert answer.status == 400, answer.body
    assert answer.json()["code"] == "BadRequest"
    assert named in answer.json()["message"]
    # and nothing was started, stored or queued
    assert executions(api_aws) == []
    assert job_api("GET", "/reports").json()["jobs"] == []
    assert devexpress_sim.exports == {}


def test_a_request_too_large_for_a_job_is_a_413(job_api, api_aws):
    # given parameters far larger than any report needs
    answer = job_api("POST", "/reports", body=report_request(parameters={"Blob": "x" * 40_000}))
    # then the API refuses it and starts nothing
    assert answer.status == 413 and "at most" in answer.json()["message"]
    assert executions(api_aws) == []


def test_a_body_that_is_not_json_is_a_415(job_api):
    answer = job_api("POST", "/reports", body="connection=dx", headers={"Content-Type": "text/plain"})
    assert answer.status == 415 and answer.json()["code"] == "UnsupportedMediaType"


def test_bad_list_parameters_are_400s_naming_them(job_api):
    for query, named in [
        ({"limit": "0"}, "query.limit"),
        ({"limit": "many"}, "query.limit"),
        ({"state": "done"}, "query.state"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor: not a cursor from this listing"),
        ({"cursor": "%%%"}, "cursor: not a cursor from this listing"),
    ]:
        answer = job_api("GET", "/reports", query=query)
        assert answer.status == 400, (query, answer.body)
        assert named in answer.json()["message"]


# ---- auth, unknown ids and routes


def test_a_request_without_any_identity_is_refused(job_api, api_aws):
    # given a request with neither an IAM identity nor a person's token (the people API, signed out)
    for method, path, body in [("POST", "/reports", report_request()), ("GET", "/reports", None)]:
        answer = job_api(method, path, body=body, identity=None)
        # then it is refused as unauthenticated, and nothing is started
        assert answer.status == 401 and answer.json()["code"] == "Unauthenticated"
        assert "sign in" in answer.json()["message"]
    assert executions(api_aws) == []


@pytest.mark.parametrize("job_id", ["0d6f7f38-9a0e-4c4b-9a7e-000000000000", "no such job", "x" * 200, "%2F"])
def test_unknown_job_ids_are_404_on_every_job_route(job_api, job_id):
    for method, suffix in [("GET", ""), ("GET", "/download"), ("DELETE", "")]:
        answer = job_api(method, f"/reports/{job_id}{suffix}")
        assert answer.status == 404, (method, suffix, answer.body)
        assert answer.json()["code"] == "JobNotFound"


def test_an_unknown_route_is_a_404(job_api):
    answer = job_api("GET", "/jobs")
    assert answer.status == 404 and answer.json()["code"] == "NotFound"


# ---- download


def test_the_download_redirects_to_a_fresh_presigned_url_serving_the_stored_bytes(
    job_api, api_aws, devexpress_sim
):
    # given a ready job
    job = job_api.wait(job_api.start(report_request()))
    # when its download is asked for
    answer = job_api("GET", f"/reports/{job['job_id']}/download")
    # then the answer is a redirect to a presigned S3 GET URL that lives 300 seconds
    assert answer.status == 302
    url = answer.header("Location")
    assert answer.json()["url"] == url and answer.json()["expires_in"] == 300
    query = parse_qs(urlparse(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["300"]
    assert urlparse(url).path.endswith(f"/{job['job_id']}/Sales.pdf")
    # and it was signed just now, not when the job finished
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(signed_at.timestamp() - time.time()) < 60
    # and following it downloads exactly the stored bytes, as an attachment with the provider's file name
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == job["object"]["sha256"]
    (export_id,) = devexpress_sim.exports
    assert job["object"]["sha256"] == devexpress_sim.served[export_id]
    assert 'filename="Sales.pdf"' in response.headers["Content-Disposition"]
    assert response.headers["Content-Disposition"].startswith("attachment")


def test_the_download_link_lifetime_is_configurable(job_api, monkeypatch):
    # given a deployment whose links live one minute
    job = job_api.wait(job_api.start(report_request()))
    monkeypatch.setenv("REPORTRELAY_DOWNLOAD_URL_SECONDS", "60")
    # when a download is asked for
    answer = job_api("GET", f"/reports/{job['job_id']}/download")
    # then the link says so
    assert answer.json()["expires_in"] == 60
    assert parse_qs(urlparse(answer.header("Location")).query)["X-Amz-Expires"] == ["60"]


def test_a_download_before_the_job_is_ready_or_after_it_failed_is_a_409(job_api, devexpress_sim):
    # given one job still generating and one failed
    devexpress_sim.generation_seconds = 30
    running = job_api.start(report_request())
    answer = job_api("GET", f"/reports/{running}/download")
    assert answer.status == 409 and "once the job is ready" in answer.json()["message"]
    job_api("DELETE", f"/reports/{running}")
    devexpress_sim.generation_seconds = 0.1
    devexpress_sim.fail_reports = "no data"
    failed = job_api.wait(job_api.start(report_request()))["job_id"]
    # then neither can be downloaded
    for job_id, state in [(running, "cancelled"), (failed, "failed")]:
        answer = job_api("GET", f"/reports/{job_id}/download")
        assert answer.status == 409 and f"is {state}" in answer.json()["message"]


def test_a_download_of_a_report_expired_from_the_bucket_is_a_410(job_api, api_aws):
    # given a ready job whose file the bucket's lifecycle rule has since removed
    job = job_api.wait(job_api.start(report_request()))
    api_aws.client("s3").delete_object(Bucket=job["object"]["bucket"], Key=job["object"]["key"])
    # then the API says so instead of handing out a link to nothing
    answer = job_api("GET", f"/reports/{job['job_id']}/download")
    assert answer.status == 410 and "no longer stored" in answer.json()["message"]


# ---- cancel


def test_cancel_stops_the_execution_announces_cancelled_and_records_it(job_api, api_aws, devexpress_sim):
    # given a job the provider is working on
    devexpress_sim.generation_seconds = 60
    job_id = job_api.start(report_request())
    job_api.wait_for(job_id, lambda job: job["queued_at"] is not None)
    # when it is cancelled
    answer = job_api("DELETE", f"/reports/{job_id}")
    # then the answer is the cancelled job, with error code Cancelled
    assert answer.status == 200, answer.body
    job = answer.json()
    assert job["state"] == "cancelled" and job["finished_at"]
    assert job["error"]["code"] == "Cancelled"
    assert "the provider offers no way to cancel" in job["error"]["message"]
    # and the execution was stopped
    (execution,) = executions(api_aws)
    assert execution["status"] == "ABORTED"
    # and Report Failed was announced with code Cancelled, shaped like the workflow's own events
    (event,) = events_of(api_aws, job_id)
    assert event["detail-type"] == "Report Failed" and event["source"] == "reportrelay"
    assert execution["executionArn"] in event["resources"]
    assert schema_problems(event) == []
    detail = event["detail"]
    assert detail["status"] == "FAILED" and detail["error"]["code"] == "Cancelled"
    assert detail["object"] is None and detail["download_url"] is None
    assert (detail["connection"], detail["provider"], detail["report"]) == (
        "dx",
        "devexpress",
        {"document_id": 10},
    )
    # and the job stays cancelled, a second cancel is a 409, and no secret leaked into any of it
    assert job_api("GET", f"/reports/{job_id}").json()["state"] == "cancelled"
    again = job_api("DELETE", f"/reports/{job_id}")
    assert again.status == 409 and "already cancelled" in again.json()["message"]
    text = json.dumps([job, event]) + answer.body.decode()
    assert DX_PASSWORD not in text and not any(token in text for token in devexpress_sim.valid_tokens)


def test_cancel_asks_the_provider_to_cancel_with_the_jobs_handle(job_api, devexpress_sim, monkeypatch):
    # given a provider whose API can cancel an export
    asked: list = []

    def cancel(self, request, handle):
        asked.append((request.report, handle))
        return True

    monkeypatch.setattr(DevExpress, "cancel", cancel)
    devexpress_sim.generation_seconds = 60
    job_id = job_api.start(report_request())
    job_api.wait_for(job_id, lambda job: job["queued_at"] is not None)
    # when the job is cancelled
    job = job_api("DELETE", f"/reports/{job_id}").json()
    # then the provider was asked, with the export the job queued, and the job says it was cancelled there
    (export_id,) = devexpress_sim.exports
    assert asked == [({"document_id": 10}, {"export_id": export_id})]
    assert "cancelled at the provider too" in job["error"]["message"]


def test_a_refused_cancel_event_is_recorded_and_swept_once(job_api, api_aws, devexpress_sim):
    # given a job the provider is working on, and EventBridge dropping every entry (FailedEntryCount 1)
    devexpress_sim.generation_seconds = 60
    job_id = job_api.start(report_request())
    job_api.wait_for(job_id, lambda job: job["queued_at"] is not None)
    refused = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "no"}]}
    events = aws_client("events")
    events.meta.events.register(
        "before-call.events.PutEvents",
        lambda **_: (SimpleNamespace(status_code=200, headers={}), refused),
        unique_id="refuse-cancel",
    )
    try:
        # when it is cancelled
        answer = job_api("DELETE", f"/reports/{job_id}")
    finally:
        events.meta.events.unregister("before-call.events.PutEvents", unique_id="refuse-cancel")
    # then the cancel succeeds and is recorded with its event waiting in the outbox, and none was sent
    assert answer.status == 200 and answer.json()["state"] == "cancelled", answer.body
    store = DynamoDbJobs(api_aws.jobs_table, lambda: api_aws.client("dynamodb"))
    pending = store.pending_announcement(job_id)
    assert pending is not None and pending.event_id == f"{job_id}/CANCELLED"
    assert events_of(api_aws, job_id) == []
    # when the sweep runs, then exactly one Report Failed (Cancelled) goes out, with that event id
    assert api_aws.sweep()["announced"] == 1
    (event,) = events_of(api_aws, job_id)
    assert event["detail"]["event_id"] == f"{job_id}/CANCELLED"
    assert event["detail"]["error"]["code"] == "Cancelled"
    assert schema_problems(event) == []
    assert api_aws.sweep()["announced"] == 0 and len(events_of(api_aws, job_id)) == 1


def test_cancelling_a_finished_job_is_a_409(job_api, api_aws):
    # given a job that is ready
    job_id = job_api.wait(job_api.start(report_request()))["job_id"]
    # when it is cancelled
    answer = job_api("DELETE", f"/reports/{job_id}")
    # then 409 says it already finished, and it stays ready without a second event
    assert answer.status == 409 and "already ready" in answer.json()["message"]
    assert job_api("GET", f"/reports/{job_id}").json()["state"] == "ready"
    assert [event["detail-type"] for event in events_of(api_aws, job_id)] == ["Report Ready"]


# ---- GET /reports


def test_jobs_are_listed_newest_first_filtered_and_paginated(job_api, devexpress_sim):
    # given three jobs on one connection (one of them failed) and one on another
    first = job_api.wait(job_api.start(report_request()))["job_id"]
    devexpress_sim.fail_reports = "no data"
    failed = job_api.wait(job_api.start(report_request()))["job_id"]
    devexpress_sim.fail_reports = None
    third = job_api.wait(job_api.start(report_request()))["job_id"]
    elsewhere = job_api.wait(job_api.start(report_request(connection="dx-eu")))["job_id"]
    # when all jobs are listed two at a time
    page = job_api("GET", "/reports", query={"limit": "2"}).json()
    rest = job_api("GET", "/reports", query={"limit": "2", "cursor": page["next_cursor"]}).json()
    # then they come newest first across both pages, and the last page says there is no more
    assert [job["job_id"] for job in page["jobs"] + rest["jobs"]] == [elsewhere, third, failed, first]
    assert page["next_cursor"] and rest["next_cursor"] is None

    # and the filters narrow the listing by connection, by state, and by both
    def listed(**query: str) -> list[str]:
        return [job["job_id"] for job in job_api("GET", "/reports", query=query).json()["jobs"]]

    assert listed(connection="dx-eu") == [elsewhere]
    assert listed(connection="dx") == [third, failed, first]
    assert listed(state="failed") == [failed]
    assert listed(connection="dx", state="ready") == [third, first]
    assert listed(connection="nowhere") == []
    # and a filtered listing pages too, refusing a cursor from another listing
    dx_page = job_api("GET", "/reports", query={"connection": "dx", "limit": "1"}).json()
    assert [job["job_id"] for job in dx_page["jobs"]] == [third]
    assert listed(connection="dx", limit="5", cursor=dx_page["next_cursor"]) == [failed, first]
    mixed = job_api("GET", "/reports", query={"connection": "dx-eu", "cursor": dx_page["next_cursor"]})
    assert mixed.status == 400 and "cursor" in mixed.json()["message"]


def test_scheduled_jobs_show_up_in_the_listing(job_api, api_aws):
    # given a schedule firing (EventBridge Scheduler invoking start_scheduled)
    event = {
        "schedule": "daily-sales",
        "scheduled_time": "2025-03-01T06:00:00Z",
        "window": {"window": "yesterday"},
        "request": report_request(parameters={"Day": "{{ first }}"}, team="finance"),
    }
    context = LambdaContext(
        "reportrelay-start-scheduled", "arn:aws:lambda:us-east-1:123456789012:function:x", "1"
    )
    started = start_scheduled.handler(event, context)
    # then the job is listed as started by the schedule, with its rendered request, and runs to ready
    job = job_api.wait(started["job_id"])
    assert job["state"] == "ready" and job["source"] == "schedule"
    listed = job_api("GET", "/reports", query={"state": "ready"}).json()["jobs"]
    assert [job["job_id"] for job in listed] == ["daily-sales-20250301T060000Z"]
    # and it belongs to the schedule's team: its object key starts with it
    assert job["object"]["key"].startswith("finance/daily-sales-20250301T060000Z/")


def test_a_job_whose_execution_ended_unrecorded_is_reconciled_when_watched(job_api, api_aws, devexpress_sim):
    # given a running job whose execution was stopped in the console, and a record that has gone quiet
    devexpress_sim.generation_seconds = 60
    job_id = job_api.start(report_request())
    job_api.wait_for(job_id, lambda job: job["queued_at"] is not None)
    (execution,) = executions(api_aws)
    sfn = api_aws.client("stepfunctions")
    sfn.stop_execution(executionArn=execution["executionArn"])
    while sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "RUNNING":
        time.sleep(0.05)
    later = Runtime.from_env()
    later.clock = lambda: time.time() + api.RECONCILE_AFTER_SECONDS + 60
    # when the job is described
    finance = api.Caller(Principal("finance-operator", "iam", frozenset({"finance"})), api_aws.api_url)
    job = api.describe_job(job_id, finance, later)
    # then it is failed, saying the workflow was stopped outside the API, and stays so
    assert job.state.value == "failed" and job.error["code"] == "Aborted"
    assert job_api("GET", f"/reports/{job_id}").json()["state"] == "failed"


def test_the_api_never_answers_a_bad_event_with_a_5xx(api_aws):
    # given requests API Gateway could pass along that no client should send
    for event in [
        rest_event("POST", "/reports", body=b"\xff\xfe not utf-8"),
        rest_event("GET", "/reports", query={"limit": ["1", "2"]}),
        rest_event("PUT", "/reports"),
    ]:
        # then each is answered with a 4xx
        assert 400 <= api_aws.api(event)["statusCode"] < 500, event


def test_a_job_store_that_is_gone_fails_the_job_before_anything_is_queued_and_says_so(
    api_aws, devexpress_sim, monkeypatch
):
    # given workflow steps whose job store has gone (a missing table: every write fails); the store is
    # where Submit keeps its intent, so without it a report cannot be queued exactly once
    monkeypatch.setenv("REPORTRELAY_JOBS_TABLE", "no-such-table")
    exports_before = len(devexpress_sim.exports)
    # when a job runs through the state machine (its retries' waits shortened: what counts is where it ends)
    with state_retries_scaled(STATE_RETRY_SCALE):
        outcome = run_job(api_aws, report_request())
    # then it fails, after its retries, naming the table, with nothing queued at the vendor, and the
    # failure is announced all the same (straight onto the bus, as no outbox can hold it)
    assert outcome.detail_type == "Report Failed", outcome.detail
    assert outcome.detail["error"]["code"] == "JobStoreUnavailable"
    assert "no-such-table" in outcome.detail["error"]["message"]
    assert len(devexpress_sim.exports) == exports_before


def test_a_failing_aws_service_is_a_503_and_the_same_request_can_be_retried(job_api, api_aws, monkeypatch):
    # given a workflow that cannot be started (its state machine is gone)
    with monkeypatch.context() as patch:
        patch.setenv("REPORTRELAY_STATE_MACHINE_ARN", api_aws.state_machine_arn + "-gone")
        # when a job is asked for with a client token
        refused = job_api("POST", "/reports", body=report_request(client_token="retry-me"))
    # then the answer is a 503 saying a retry with the same token is safe, and nothing ran
    assert refused.status == 503, refused.body
    assert refused.json()["code"] == "ServiceUnavailable"
    assert "same client token" in refused.json()["message"]
    assert executions(api_aws) == []
    # when the same request is sent again once the workflow is back
    again = job_api("POST", "/reports", body=report_request(client_token="retry-me"))
    # then the job the token already named is started, once
    assert again.status == 202, again.body
    assert [execution["name"] for execution in executions(api_aws)] == [again.json()["job_id"]]
    job_api.wait(again.json()["job_id"])


def test_a_job_store_that_cannot_be_read_is_a_503(job_api, monkeypatch):
    # given a job store that answers every request with an error (its table is gone)
    monkeypatch.setenv("REPORTRELAY_JOBS_TABLE", "no-such-table")
    # then every route answers 503 in the API's error shape, never a 500
    for method, path in [
        ("GET", "/reports"),
        ("GET", "/reports/3f0c5a8e-6d1b-4f0e-9a51-2b7c9e1d4a77"),
        ("GET", "/reports/3f0c5a8e-6d1b-4f0e-9a51-2b7c9e1d4a77/download"),
        ("DELETE", "/reports/3f0c5a8e-6d1b-4f0e-9a51-2b7c9e1d4a77"),
    ]:
        answer = job_api(method, path)
        assert answer.status == 503, (method, path, answer.body)
        assert answer.json()["code"] == "JobStoreUnavailable"
    started = job_api("POST", "/reports", body=report_request())
    assert started.status == 503 and started.json()["code"] == "JobStoreUnavailable"


def test_a_job_store_that_cannot_be_read_is_a_console_page_saying_to_try_again(job_api, monkeypatch):
    # given a job store that answers every request with an error (its table is gone)
    monkeypatch.setenv("REPORTRELAY_JOBS_TABLE", "no-such-table")
    # when the console's list and a job's page are opened
    for path in ("/console", "/console/reports/3f0c5a8e-6d1b-4f0e-9a51-2b7c9e1d4a77"):
        answer = job_api("GET", path, headers={"Accept": "text/html"})
        # then each is a page (503) saying to try again, never a 500 or a JSON body
        assert answer.status == 503, (path, answer.body)
        assert answer.header("Content-Type").startswith("text/html")
        assert b"Try again in a moment" in answer.body


def test_share_links_exist_only_where_the_connection_or_the_request_asks_for_them(job_api):
    # given two ready jobs on a connection without share links, one of them asking for them itself
    plain = job_api.wait(job_api.start(report_request(connection="dx-eu")))["job_id"]
    asked = job_api.wait(job_api.start(report_request(connection="dx-eu", output={"share_links": True})))
    # when a link to each is asked for
    refused = job_api("POST", f"/reports/{plain}/links", body={})
    minted = job_api("POST", f"/reports/{asked['job_id']}/links", body={})
    # then only the job whose request asked gets one; the other is refused, saying how to allow it
    assert refused.status == 403 and refused.json()["code"] == "NotAllowed"
    assert "share_links: true" in refused.json()["message"]
    assert minted.status == 201 and "/links/" in minted.json()["url"]
    # and on a connection that allows them (dx), any job of its team may be shared
    on_dx = job_api.wait(job_api.start(report_request()))["job_id"]
    assert job_api("POST", f"/reports/{on_dx}/links", body={}).status == 201
