"""Metric Insights jobs run through statemachines/report.asl.json on moto, against the simulator over HTTP.

Submit lists the formats and opens the download session, the holder function (invoked asynchronously, on a
thread here) keeps ``run`` open, and the state machine polls ``check`` until the file can be fetched.

What every vendor must do (a 429 waited out and the report queued once, a token revoked mid-job replaced,
a download broken half-way fetched again with nothing partial left, no secret anywhere) is the vendor
contract (tests/contract) and the fault matrix (tests/faults), run for Metric Insights too; here is what
is its own.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import JobOutcome, run_job
from reportrelay_cli.sandbox.metric_insights import MetricInsightsSimulator
from tests.conftest import write_connections

APP_KEY = "mi-App-Key-5c8e-workflow"
API_TOKEN = "mi-personal-api-token-workflow-41d0"
DOWNLOAD = "/api/element/id/{elementId}/segment/{dimensionId}/download/state/"


@pytest.fixture
def mi_sim() -> Iterator[MetricInsightsSimulator]:
    with MetricInsightsSimulator(
        applications={"reportrelay": APP_KEY},
        api_tokens={API_TOKEN: "api"},
        generation_seconds=0.5,
        report_size=256 * 1024,
    ) as simulator:
        yield simulator


def mi_connection(base_url: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "provider": "metric_insights",
        "base_url": base_url,
        "auth": {
            "type": "app_token",
            "application_id": "reportrelay",
            "application_key": {"env": "TEST_MI_APP_KEY"},
            "user": "api",
        },
        "poll": {"initial_seconds": 1, "max_seconds": 2},
    }
    body.update(overrides)
    return body


@pytest.fixture
def mi_connections(tmp_path: Path, mi_sim: MetricInsightsSimulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_MI_APP_KEY", APP_KEY)
    monkeypatch.setenv("TEST_MI_API_TOKEN", API_TOKEN)
    return write_connections(
        tmp_path,
        {
            "mi": mi_connection(mi_sim.base_url),
            "mi-bearer": mi_connection(
                mi_sim.base_url, auth={"type": "bearer", "token": {"env": "TEST_MI_API_TOKEN"}}
            ),
            "mi-short-sessions": mi_connection(mi_sim.base_url, session_lifetime_seconds=2),
        },
    )


@pytest.fixture
def local_aws(mi_connections: Path) -> Iterator[LocalAws]:
    with LocalAws(
        {"REPORTRELAY_CONNECTIONS_FILE": str(mi_connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    ) as aws:
        yield aws


def report_request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "connection": "mi",
        "report": {"element_id": 1042, "dimension_id": 0},
        "format": "pdf",
    }
    request.update(overrides)
    return request


def calls(sim: MetricInsightsSimulator, state: str) -> int:
    return len(sim.calls("GET", DOWNLOAD + state))


def stored_bytes(aws: LocalAws, detail: dict[str, Any]) -> bytes:
    stored = detail["object"]
    return aws.client("s3").get_object(Bucket=stored["bucket"], Key=stored["key"])["Body"].read()


def object_count(aws: LocalAws) -> int:
    return aws.client("s3").list_objects_v2(Bucket=aws.bucket).get("KeyCount", 0)


def open_uploads(aws: LocalAws) -> list[dict[str, Any]]:
    return aws.client("s3").list_multipart_uploads(Bucket=aws.bucket).get("Uploads", [])


def history_text(aws: LocalAws, outcome: JobOutcome) -> str:
    history = aws.client("stepfunctions").get_execution_history(executionArn=outcome.execution_arn)
    return json.dumps(history, default=str)


def test_a_report_is_generated_by_the_held_run_polled_fetched_and_announced(local_aws, mi_sim, tmp_path):
    # given an External Report that takes half a second to generate
    # when the job runs through the state machine
    outcome = run_job(local_aws, report_request(output={"key_prefix": "mi/"}), out_dir=tmp_path / "out")
    # then Report Ready describes the stored object, named after the element
    assert outcome.detail_type == "Report Ready", outcome.detail
    detail = outcome.detail
    assert detail["provider"] == "metric_insights" and detail["connection"] == "mi"
    assert detail["polls"] >= 1
    stored = detail["object"]
    assert stored["key"] == f"mi/{detail['job_id']}/Sales Dashboard.pdf"
    assert stored["filename"] == "Sales Dashboard.pdf" and stored["content_type"] == "application/pdf"
    # and the bytes in S3 and in the output folder are exactly what the simulator served
    content = stored_bytes(local_aws, detail)
    assert hashlib.sha256(content).hexdigest() == stored["sha256"] == mi_sim.served["session-1"]
    assert outcome.local_file is not None and outcome.local_file.read_bytes() == content
    # and one session did it: formats and init from submit, run from the holder, check polled, one get
    assert [calls(mi_sim, state) for state in ("formats", "init", "run", "get")] == [1, 1, 1, 1]
    assert calls(mi_sim, "check") >= 1
    assert mi_sim.session_list()[0].run_calls == 1
    assert all("Token" in entry.headers for entry in mi_sim.request_log if "/download/" in entry.path)


def test_a_failed_generation_fails_the_job_with_the_providers_message_and_never_calls_get(local_aws, mi_sim):
    # given a plugin whose exports fail
    mi_sim.fail_reports = "Tableau: the view 'Sales' was deleted"
    # when the job runs
    outcome = run_job(local_aws, report_request())
    # then Report Failed carries the provider's words, get was never called and nothing was stored
    assert outcome.detail_type == "Report Failed" and outcome.execution_status == "FAILED"
    error = outcome.detail["error"]
    assert error["code"] == "ReportGenerationFailed"
    assert "Tableau: the view 'Sales' was deleted" in error["message"]
    assert calls(mi_sim, "get") == 0
    assert object_count(local_aws) == 0


def test_a_format_the_report_does_not_offer_fails_before_a_session_is_opened(local_aws, mi_sim):
    # given a valid format key that this report's plugin does not offer
    # when the job runs
    outcome = run_job(local_aws, report_request(format="xls"))
    # then it fails fast naming the formats available, without opening a download session
    assert outcome.detail_type == "Report Failed"
    assert outcome.detail["error"]["code"] == "BadRequest"
    assert "image, pdf, csv" in outcome.detail["error"]["message"]
    assert calls(mi_sim, "formats") == 1 and calls(mi_sim, "init") == 0


def test_an_expired_download_session_fails_the_job_saying_so(local_aws, mi_sim):
    # given sessions that expire after 2 s and a report that takes 6 s
    mi_sim.session_lifetime_seconds = 2
    mi_sim.generation_seconds = 6
    # when the job runs
    started = time.monotonic()
    outcome = run_job(local_aws, report_request(connection="mi-short-sessions"))
    # then it fails soon after the expiry, saying the download session expired, and never fetches
    assert outcome.detail_type == "Report Failed"
    error = outcome.detail["error"]
    assert error["code"] == "ReportGenerationFailed"
    assert "download session for element 1042 (segment 0) expired" in error["message"]
    assert time.monotonic() - started < 6
    assert calls(mi_sim, "get") == 0
    assert mi_sim.session_list()[0].state == "error"  # the held run ended too


def test_a_download_broken_half_way_restarts_from_init_and_stores_the_second_file(local_aws, mi_sim):
    # given a server that cuts the first download half-way (and the session is consumed by it)
    mi_sim.faults.break_downloads_next = 1
    # when the job runs
    outcome = run_job(local_aws, report_request())
    # then a second session was opened, run and fetched, and its file is what was stored
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert len(mi_sim.session_list()) == 2
    assert [calls(mi_sim, state) for state in ("init", "run", "get")] == [2, 2, 2]
    assert mi_sim.served["session-1"] != mi_sim.served["session-2"]
    assert outcome.detail["object"]["sha256"] == mi_sim.served["session-2"]
    assert hashlib.sha256(stored_bytes(local_aws, outcome.detail)).hexdigest() == mi_sim.served["session-2"]
    # and nothing partial was left behind
    assert object_count(local_aws) == 1
    assert open_uploads(local_aws) == []


def test_the_session_token_never_appears_in_the_execution_history(local_aws, mi_sim):
    # given a job whose session token holds "+", "/" and "="
    outcome = run_job(local_aws, report_request())
    assert outcome.detail_type == "Report Ready", outcome.detail
    (session,) = mi_sim.session_list()
    # when the execution history, the event and the stored object's metadata are read
    text = history_text(local_aws, outcome) + json.dumps(outcome.detail)
    stored = outcome.detail["object"]
    text += json.dumps(
        local_aws.client("s3").head_object(Bucket=stored["bucket"], Key=stored["key"]), default=str
    )
    # then the token is nowhere, raw or encoded, and the handle carried it sealed
    assert {"+", "/", "="} <= set(session.token)
    for form in (session.token, quote(session.token, safe=""), quote(session.token)):
        assert form not in text
    assert '\\"token\\": {\\"sealed\\"' in text
    # and neither is any API credential
    assert APP_KEY not in text and API_TOKEN not in text
    assert not any(token in text for token in mi_sim.issued_tokens)


def test_an_api_token_expiring_mid_job_is_renewed_after_412(local_aws, mi_sim):
    # given API tokens that expire as soon as the download session is open
    mi_sim.generation_seconds = 1.5

    def expire_after_init() -> None:
        deadline = time.monotonic() + 10
        while not mi_sim.sessions and time.monotonic() < deadline:
            time.sleep(0.01)
        mi_sim.expire_api_tokens()

    expirer = threading.Thread(target=expire_after_init)
    expirer.start()
    # when the job runs
    outcome = run_job(local_aws, report_request())
    expirer.join()
    # then the 412 led to a new sign-in and the job carried on in the same session
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert mi_sim.expired_refusals >= 1 and mi_sim.tokens_issued >= 2
    assert len(mi_sim.session_list()) == 1


def test_a_personal_api_token_works_and_its_expiry_fails_the_job_with_what_to_do(local_aws, mi_sim):
    # given a connection signed in with a personal API token
    ready = run_job(local_aws, report_request(connection="mi-bearer"))
    # when the token has expired and another job runs
    mi_sim.expire_api_tokens()
    expired = run_job(local_aws, report_request(connection="mi-bearer"))
    # then the first job used it as a bearer token, and the second fails telling the user what to do
    assert ready.detail_type == "Report Ready", ready.detail
    assert any(entry.headers.get("Authorization") == f"Bearer {API_TOKEN}" for entry in mi_sim.request_log)
    assert expired.detail["error"]["code"] == "ProviderAuthFailed"
    assert "Session expired" in expired.detail["error"]["message"]
    assert "the personal API token has expired: issue a new one" in expired.detail["error"]["message"]
    assert len(mi_sim.session_list()) == 1
