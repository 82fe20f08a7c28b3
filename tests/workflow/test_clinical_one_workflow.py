"""Clinical One jobs run through statemachines/report.asl.json on moto, against the simulator over HTTP.

What every vendor must do (a 429 waited out and the report queued once, a token revoked mid-job replaced,
a download broken half-way fetched again with nothing partial left, no secret anywhere) is the vendor
contract (tests/contract) and the fault matrix (tests/faults), run for Clinical One too; here is what is
its own."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reportrelay.providers.hooks.clinical_one import DOWNLOAD_LIST, START_REPORT
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import JobOutcome, run_job
from reportrelay_cli.sandbox.clinical_one import (
    DEFAULT_STUDY_ID,
    HSL_REPORT,
    NO_ACCESS,
    NO_ACCESS_DETAILS,
    SUBJECT_DATA_EXTRACT,
    ClinicalOneSimulator,
)
from tests.conftest import write_connections

PASSWORD = "c1-Workflow-Passw0rd-93af"
CLIENT_SECRET = "c1-Workflow-Client-Secret-5e07"


@pytest.fixture
def c1_sim() -> Iterator[ClinicalOneSimulator]:
    with ClinicalOneSimulator(
        users={"api": PASSWORD}, clients={"reportrelay": CLIENT_SECRET}, generation_seconds=0.5
    ) as simulator:
        yield simulator


def c1_connection(base_url: str, **settings: Any) -> dict[str, Any]:
    """The connection a user writes: identity service at an absolute URL, client as HTTP Basic."""
    return {
        "provider": "clinical_one",
        "base_url": base_url,
        "auth": {
            "type": "oauth_password",
            "token_url": f"{base_url}/oauth2/v1/token",
            "client_id": "reportrelay",
            "client_secret": {"env": "TEST_C1_CLIENT_SECRET"},
            "client_auth": "basic",
            "username": "api",
            "password": {"env": "TEST_C1_PASSWORD"},
        },
        "poll": {"initial_seconds": 1, "max_seconds": 2},
        **settings,
    }


@pytest.fixture
def c1_connections(tmp_path: Path, c1_sim: ClinicalOneSimulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_C1_PASSWORD", PASSWORD)
    monkeypatch.setenv("TEST_C1_CLIENT_SECRET", CLIENT_SECRET)
    url = c1_sim.base_url
    return write_connections(
        tmp_path,
        {
            "c1": c1_connection(url),
            "c1-omit": c1_connection(url, tenant_study_id="omit"),
            "c1-strict": c1_connection(url, unknown_status="fail"),
            "c1-mapped": c1_connection(url, run_statuses={"C": "ready"}),
        },
    )


@pytest.fixture
def aws(c1_connections: Path) -> Iterator[LocalAws]:
    with LocalAws(
        {"REPORTRELAY_CONNECTIONS_FILE": str(c1_connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    ) as local:
        yield local


def report_request(connection: str = "c1", **report: Any) -> dict[str, Any]:
    return {
        "connection": connection,
        "report": {
            "report_id": SUBJECT_DATA_EXTRACT,
            "study_id": DEFAULT_STUDY_ID,
            "mode": "active",
            **report,
        },
        "format": "csv",
    }


def once_started(sim: ClinicalOneSimulator, action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` in the background as soon as the job has been started at the service."""

    def wait_then_act() -> None:
        deadline = time.monotonic() + 10
        while not sim.started_runs and time.monotonic() < deadline:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=wait_then_act)
    thread.start()
    return thread


def stored_bytes(aws: LocalAws, outcome: JobOutcome) -> bytes:
    stored = (outcome.detail or {})["object"]
    return aws.client("s3").get_object(Bucket=stored["bucket"], Key=stored["key"])["Body"].read()


def test_a_study_report_is_started_found_among_other_runs_fetched_and_announced(
    aws: LocalAws, c1_sim: ClinicalOneSimulator, tmp_path: Path
) -> None:
    # given older runs of the same report, newer ones arriving after ours, two entries a page,
    # and a service that insists on the report name and kickoff time for the download
    older = [c1_sim.add_run(), c1_sim.add_run(state="failed", reason="Timed out")]
    c1_sim.max_page_size = 2
    c1_sim.require_run_details = True
    newer: list[str] = []
    adder = once_started(c1_sim, lambda: newer.extend(c1_sim.add_run() for _ in range(3)))
    # when the job runs through the state machine
    outcome = run_job(aws, report_request(), out_dir=tmp_path / "out")
    adder.join()
    # then Report Ready describes the stored CSV
    assert outcome.detail_type == "Report Ready", outcome.detail
    detail = outcome.detail or {}
    assert detail["provider"] == "clinical_one" and detail["status"] == "READY"
    (run,) = c1_sim.started_runs
    stored = detail["object"]
    assert stored["key"] == f"{detail['job_id']}/{stored['filename']}"
    assert stored["filename"].startswith("Subject_Data_Extract_") and stored["content_type"] == "text/csv"
    # and the bytes in S3 are exactly what the service served for our run, and only ours was downloaded
    content = stored_bytes(aws, outcome)
    assert hashlib.sha256(content).hexdigest() == stored["sha256"] == c1_sim.served[run["id"]]
    assert set(c1_sim.served) == {run["id"]} and not set(c1_sim.served) & set(older + newer)
    assert outcome.local_file is not None and outcome.local_file.read_bytes() == content
    # and the list was paged by what came back, with reportid lower case on the start call only
    assert any(call.query["offset"] == "2" for call in c1_sim.calls("GET", DOWNLOAD_LIST))
    assert "reportid" in c1_sim.calls("POST", START_REPORT)[0].query


@pytest.mark.parametrize(("connection", "wire"), [("c1", "null"), ("c1-omit", "omit")])
def test_a_tenant_report_is_fetched_with_the_study_written_as_the_tenant_expects(
    aws: LocalAws, c1_sim: ClinicalOneSimulator, connection: str, wire: str
) -> None:
    # given a service that accepts only one way of writing "no study" for tenant reports
    c1_sim.tenant_study_id = wire  # type: ignore[assignment]
    request = {**report_request(connection, report_id=HSL_REPORT, study_id=None), "format": "pdf"}
    # when the HSL report job runs on the connection written the same way
    outcome = run_job(aws, request)
    # then it is stored whole
    assert outcome.detail_type == "Report Ready", outcome.detail
    (run,) = c1_sim.started_runs
    assert run["study_id"] is None
    assert (outcome.detail or {})["object"]["sha256"] == c1_sim.served[run["id"]]
    assert (outcome.detail or {})["object"]["content_type"] == "application/pdf"


def test_a_failed_run_is_announced_with_the_services_reason(
    aws: LocalAws, c1_sim: ClinicalOneSimulator
) -> None:
    # given a service whose run fails, next to an older run of the same report that succeeded
    c1_sim.add_run()
    c1_sim.fail_reports = "ORA-01013: user requested cancel of current operation"
    # when the job runs
    outcome = run_job(aws, report_request())
    # then Report Failed carries the run status and the service's reason, and nothing was stored
    assert outcome.detail_type == "Report Failed" and outcome.execution_status == "FAILED"
    error = (outcome.detail or {})["error"]
    (run,) = c1_sim.started_runs
    assert error == {
        "code": "ReportGenerationFailed",
        "message": f"Clinical One report job {run['id']} ended with run status 'FAILED': "
        "ORA-01013: user requested cancel of current operation",
    }
    assert aws.client("s3").list_objects_v2(Bucket=aws.bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize("shape", ["errorData", "ErrorResponseData"])
def test_a_base_response_error_reaches_the_event_with_code_message_and_details(
    aws: LocalAws, c1_sim: ClinicalOneSimulator, shape: str
) -> None:
    # given a user without the reporting right, answered in either spelling of the error object
    c1_sim.forbidden_reports = {SUBJECT_DATA_EXTRACT}
    c1_sim.error_shape = shape  # type: ignore[assignment]
    # when the job runs
    outcome = run_job(aws, report_request())
    # then Report Failed quotes the service's code, message and details, and no job was started
    error = (outcome.detail or {})["error"]
    assert error["code"] == "ProviderAuthFailed"
    assert f"REPT_401: {NO_ACCESS} ({NO_ACCESS_DETAILS})" in error["message"]
    assert c1_sim.started_runs == []


def test_tokens_expiring_during_a_long_job_are_replaced_before_use(
    aws: LocalAws, c1_sim: ClinicalOneSimulator
) -> None:
    # given tokens that live one second (ten minutes in real life) and a report that takes three
    c1_sim.token_lifetime_seconds = 1
    c1_sim.generation_seconds = 3
    # when the job runs
    outcome = run_job(aws, report_request())
    # then new tokens were obtained along the way and the report arrived
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert c1_sim.tokens_issued >= 3
    assert len(c1_sim.started_runs) == 1


def test_a_429_stating_its_wait_only_in_the_body_is_honoured(
    aws: LocalAws, c1_sim: ClinicalOneSimulator
) -> None:
    # given the download list throttled once after the start, with a two-second wait stated in the body only
    c1_sim.retry_after_header = False
    c1_sim.faults.throttle_retry_after = 2

    def throttle_next_call() -> None:
        c1_sim.faults.throttle_next = 1

    throttler = once_started(c1_sim, throttle_next_call)
    # when the job runs
    outcome = run_job(aws, report_request())
    throttler.join()
    # then the list was asked again only after the stated two seconds, and the job finished
    assert outcome.detail_type == "Report Ready", outcome.detail
    times = c1_sim.arrival_times("GET", DOWNLOAD_LIST)
    assert len(times) >= 2 and times[1] - times[0] >= 2


@pytest.mark.parametrize(
    ("connection", "detail_type", "code"),
    [("c1-strict", "Report Failed", "ProviderProtocolError"), ("c1-mapped", "Report Ready", None)],
)
def test_an_unknown_run_status_fails_or_maps_as_the_connection_says(
    aws: LocalAws, c1_sim: ClinicalOneSimulator, connection: str, detail_type: str, code: str | None
) -> None:
    # given a service whose finished runs say "C", a word reportrelay does not know
    c1_sim.status_words = {"done": "C"}
    # when the job runs on a connection that fails on unknown words, or that maps "C" to ready
    outcome = run_job(aws, report_request(connection))
    # then it fails naming the word and the setting, or it is fetched
    assert outcome.detail_type == detail_type, outcome.detail
    error = (outcome.detail or {})["error"]
    if code:
        assert error["code"] == code and "unknown run status 'C'" in error["message"]
    else:
        assert error is None
