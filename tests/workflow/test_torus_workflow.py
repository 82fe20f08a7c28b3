"""Torus jobs executed through statemachines/report.asl.json on moto, against the simulator over HTTP."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import JobOutcome, Progress, run_job
from reportrelay_cli.sandbox.torus import API_USER, XLSX_CONTENT_TYPE, TorusSimulator

TOKEN = "torus-Workflow-Token-83d1"
BOBS = 'Bob\'s "Q3" Sales & Returns'
QUEUE = "/api/tenant/mergedreport/queuefordownload"


@pytest.fixture
def torus_sim() -> Iterator[TorusSimulator]:
    with TorusSimulator(tokens={TOKEN: API_USER}, generation_seconds=0.5) as simulator:
        yield simulator


@pytest.fixture
def torus_aws(
    tmp_path: Path, torus_sim: TorusSimulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalAws]:
    monkeypatch.setenv("TEST_TORUS_TOKEN", TOKEN)
    connections = {
        "torus": {
            "provider": "torus",
            "base_url": torus_sim.base_url,
            "tenant_id": 69,
            "auth": {"type": "bearer", "token": {"env": "TEST_TORUS_TOKEN"}},
            "poll": {"initial_seconds": 1, "max_seconds": 2},
        }
    }
    path = tmp_path / "connections.json"
    path.write_text(json.dumps({"connections": connections}), encoding="utf-8")
    with LocalAws({"REPORTRELAY_CONNECTIONS_FILE": str(path), "POWERTOOLS_LOG_LEVEL": "WARNING"}) as aws:
        yield aws


def report_request(report: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    request = {"connection": "torus", "report": report or {"name": "MI_Report"}, "format": "xlsx"}
    request.update(overrides)
    return request


def stored_sha256(aws: LocalAws, outcome: JobOutcome) -> str:
    stored = outcome.detail["object"]
    body = aws.client("s3").get_object(Bucket=stored["bucket"], Key=stored["key"])["Body"].read()
    return hashlib.sha256(body).hexdigest()


def submitted_handle(aws: LocalAws, outcome: JobOutcome) -> dict[str, Any]:
    """The provider handle as the Submit step left it in the workflow state."""
    events = aws.client("stepfunctions").get_execution_history(executionArn=outcome.execution_arn)["events"]
    (submit,) = (
        event
        for event in events
        if event["type"] == "TaskStateExited" and event["stateExitedEventDetails"]["name"] == "Submit"
    )
    return json.loads(submit["stateExitedEventDetails"]["output"])["job"]["handle"]


def test_a_report_by_name_is_found_queued_polled_fetched_and_announced(torus_aws, torus_sim, tmp_path):
    # given a report whose name needs OData quoting and URL encoding
    request = report_request({"name": BOBS}, output={"key_prefix": "mi/"})
    # when the job runs through the state machine
    outcome = run_job(torus_aws, request, out_dir=tmp_path / "out")
    # then Report Ready describes the stored file, named after the report, as Excel
    assert outcome.detail_type == "Report Ready", outcome.detail
    detail = outcome.detail
    assert detail["provider"] == "torus" and detail["status"] == "READY" and detail["polls"] >= 1
    (run_id,) = torus_sim.queued
    stored = detail["object"]
    assert stored["key"] == f"mi/{detail['job_id']}/{BOBS}.xlsx"
    assert stored["content_type"] == XLSX_CONTENT_TYPE
    # and the bytes in S3 and in the output folder are exactly what the simulator served for our run
    assert stored_sha256(torus_aws, outcome) == stored["sha256"] == torus_sim.served[str(run_id)]
    assert hashlib.sha256(outcome.local_file.read_bytes()).hexdigest() == stored["sha256"]
    # and the lookup filter arrived intact, the report was queued once with the tenant header
    (lookup,) = torus_sim.calls("GET", "/api/tenant/mergedreport/list/get/{tenantId}")
    assert lookup.query["$filter"] == "tolower('Bob''s \"Q3\" Sales & Returns') eq tolower(Name)"
    (queued,) = torus_sim.calls("POST", QUEUE)
    assert queued.headers["TorusTenantId"] == "69"
    # and the bearer token appears nowhere in the execution history or the event
    history = torus_aws.client("stepfunctions").get_execution_history(executionArn=outcome.execution_arn)
    assert TOKEN not in json.dumps(history, default=str) + json.dumps(detail)


def test_progress_is_reported_while_the_run_is_running(torus_aws, torus_sim):
    # given a run that holds at 45% until the job has reported it
    torus_sim.stall_at_percent = 45
    seen: list[Progress] = []

    def on_progress(progress: Progress) -> None:
        seen.append(progress)
        if progress.progress == 45.0:
            torus_sim.stall_at_percent = None

    # when the job runs
    outcome = run_job(torus_aws, report_request(), on_progress=on_progress)
    # then the workflow state carried RUNNING at 45.0 before the report was ready
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert any(p.status == "RUNNING" and p.progress == 45.0 for p in seen)


def test_an_error_status_fails_the_job_with_the_providers_message(torus_aws, torus_sim):
    # given runs that end in Error
    torus_sim.fail_reports = "Timeout expired while running merged report"
    # when the job runs
    outcome = run_job(torus_aws, report_request())
    # then Report Failed carries Torus's words, and nothing was stored
    assert outcome.detail_type == "Report Failed" and outcome.execution_status == "FAILED"
    error = outcome.detail["error"]
    assert error["code"] == "ReportGenerationFailed"
    assert "ended in Error: Timeout expired while running merged report" in error["message"]
    assert outcome.detail["object"] is None
    assert torus_aws.client("s3").list_objects_v2(Bucket=torus_aws.bucket).get("KeyCount", 0) == 0


def test_a_cancelled_run_fails_the_job_as_cancelled(torus_aws, torus_sim):
    # given runs that end Cancelled
    torus_sim.cancel_reports = "Cancelled by an administrator"
    # when the job runs
    outcome = run_job(torus_aws, report_request())
    # then Report Failed says ReportCancelled, in Torus's words
    assert outcome.detail_type == "Report Failed"
    assert outcome.detail["error"]["code"] == "ReportCancelled"
    assert "was cancelled: Cancelled by an administrator" in outcome.detail["error"]["message"]


def test_older_finished_and_running_runs_of_the_report_are_left_alone(torus_aws, torus_sim):
    # given a run of the report that finished seconds ago, one still running that finishes before
    # ours, and our own run listed only after a delay
    finished = torus_sim.add_run(1087, age_seconds=3, generation_seconds=0.5)
    running = torus_sim.add_run(1087, age_seconds=0.5, generation_seconds=1.5)
    torus_sim.listing_delay_seconds = 1.2
    torus_sim.generation_seconds = 2.0
    # when the job runs
    outcome = run_job(torus_aws, report_request())
    # then the file stored is our run's, not either older run's
    assert outcome.detail_type == "Report Ready", outcome.detail
    (ours,) = torus_sim.queued
    assert torus_sim.runs[running]["status"] == "Finished"
    assert outcome.detail["object"]["sha256"] == torus_sim.served[str(ours)]
    assert str(finished) not in torus_sim.served and str(running) not in torus_sim.served


def test_two_jobs_of_the_same_report_at_once_each_get_their_own_run(torus_aws, torus_sim):
    # given two jobs of the same report started together, whose runs are listed only after both queued
    torus_sim.listing_delay_seconds = 1.0
    outcomes: list[JobOutcome] = []

    def run() -> None:
        outcomes.append(run_job(torus_aws, report_request()))

    threads = [threading.Thread(target=run) for _ in range(2)]
    # when both run through the state machine
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then neither submit could tell its run (both snapshots empty, no run listed yet)
    assert [outcome.detail_type for outcome in outcomes] == ["Report Ready", "Report Ready"]
    for outcome in outcomes:
        handle = submitted_handle(torus_aws, outcome)
        assert handle["known"] == [] and "run_id" not in handle
    # and each stored a different run's file, exactly as served
    assert len(torus_sim.queued) == 2
    digests = {outcome.detail["object"]["sha256"] for outcome in outcomes}
    assert digests == {torus_sim.served[str(run_id)] for run_id in torus_sim.queued}
    # and the claims table records one owner per run
    items = torus_aws.client("dynamodb").scan(TableName=torus_aws.claims_table)["Items"]
    assert sorted(item["claim"]["S"].rsplit("#", 1)[1] for item in items) == sorted(
        map(str, torus_sim.queued)
    )
    assert len({item["owner"]["S"] for item in items}) == 2


def test_a_429_on_the_queue_call_is_honoured_and_the_report_queued_once(torus_aws, torus_sim):
    # given the queue call answers 429 with Retry-After: 1 once
    torus_sim.throttle_queue_next = 1
    # when the job runs
    started = time.monotonic()
    outcome = run_job(torus_aws, report_request())
    # then the call was repeated after the pause, one run was queued, and its file stored
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert len(torus_sim.calls("POST", QUEUE)) == 2 and len(torus_sim.queued) == 1
    assert time.monotonic() - started >= 1
    assert outcome.detail["object"]["sha256"] == torus_sim.served[str(torus_sim.queued[0])]


def test_listings_throttled_after_the_queue_call_never_queue_a_second_report(torus_aws, torus_sim):
    # given every listing right after the queue call answers 429 until the submit step gives up on it
    torus_sim.throttle_list_after_queue = 3
    # when the job runs
    outcome = run_job(torus_aws, report_request())
    # then submit was not retried: one queue call, one run, found by the check step and stored
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert len(torus_sim.calls("POST", QUEUE)) == 1 and len(torus_sim.queued) == 1
    assert outcome.detail["object"]["sha256"] == torus_sim.served[str(torus_sim.queued[0])]
