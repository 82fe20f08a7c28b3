"""Submit queues at most one report per attempt when its Lambda dies or its answer is lost (issue 11.1).

Executed through statemachines/report.asl.json on moto, every provider against its simulator:
- the submit function dies right after the provider answered the queue call (``Runtime.ExitError``,
  retried): the next run finds the report (Torus, Clinical One) or fails with SubmitUncertain;
- Lambda answers a successful submit invocation with ``Lambda.ServiceException`` (retried): the next run
  returns what the first one recorded.
Every case: at most one report queued at the simulator, one completion event, and a job store that agrees.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reportrelay.auth import forget_cached_tokens
from reportrelay.jobs import DynamoDbJobs, JobState
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import JobOutcome, run_job
from tests.aws_faults import dies_after_queue_call, lambda_error_after_invoke
from tests.conftest import write_connections
from tests.faults.kits import KITS, Kit

#: Providers whose API can show the report a lost queue call made; the others fail with SubmitUncertain.
RECONCILED = {"torus", "clinical_one"}


@pytest.fixture(params=sorted(KITS))
def kit(request: pytest.FixtureRequest) -> Kit:
    return KITS[request.param]


@pytest.fixture
def deployed(kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalAws, Any]]:
    forget_cached_tokens()
    with kit.make_simulator() as simulator:
        body, values = kit.connection(simulator, "once")
        body["poll"] = {"initial_seconds": 1, "max_seconds": 2}
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        path = write_connections(tmp_path, {"once": body})
        with LocalAws({"REPORTRELAY_CONNECTIONS_FILE": str(path), "POWERTOOLS_LOG_LEVEL": "WARNING"}) as aws:
            yield aws, simulator


def _run(aws: LocalAws, kit: Kit, job_id: str) -> JobOutcome:
    request = kit.request("once")
    return run_job(aws, request, job_id=job_id, poll_interval=0.1)


def _stored_job(aws: LocalAws, job_id: str) -> Any:
    return DynamoDbJobs(aws.jobs_table, lambda: aws.client("dynamodb")).get(job_id)


def _events_for(aws: LocalAws, job_id: str) -> list[dict[str, Any]]:
    return [event for event in aws.events() if event["detail"].get("job_id") == job_id]


def _submit_errors(aws: LocalAws, outcome: JobOutcome) -> list[str]:
    history = aws.client("stepfunctions").get_execution_history(executionArn=outcome.execution_arn)["events"]
    return [
        event["taskFailedEventDetails"]["error"]
        for event in history
        if event["type"] == "TaskFailed" and "taskFailedEventDetails" in event
    ]


def test_a_submit_that_dies_after_the_queue_call_never_queues_a_second_report(
    kit: Kit, deployed: tuple[LocalAws, Any]
) -> None:
    # Given a submit function that dies right after the provider answered its queue call
    aws, simulator = deployed
    job_id = f"dies-{kit.provider}"
    with dies_after_queue_call() as died:
        # When the job runs (the state machine retries the Runtime.ExitError)
        outcome = _run(aws, kit, job_id)
    # Then the fault hit, the provider queued one report, and the job either found it or failed saying so
    assert died.fired == 1
    assert "Runtime.ExitError" in _submit_errors(aws, outcome)
    assert kit.queued(simulator) <= 1
    stored = _stored_job(aws, job_id)
    events = _events_for(aws, job_id)
    assert len({event["id"] for event in events}) >= 1
    if kit.provider in RECONCILED:
        assert outcome.detail_type == "Report Ready", outcome.detail
        assert kit.queued(simulator) == 1
        assert stored.state is JobState.READY
    else:
        assert outcome.detail_type == "Report Failed"
        error = outcome.detail["error"]
        assert error["code"] == "SubmitUncertain", error
        assert f"a report may have been queued at {kit.provider}" in error["message"]
        assert json.dumps(kit.report, sort_keys=True) in error["message"]
        assert stored.state is JobState.FAILED
        assert stored.error["code"] == "SubmitUncertain"
        assert {event["detail-type"] for event in events} == {"Report Failed"}


def test_a_lost_answer_from_a_successful_submit_returns_what_it_recorded(
    kit: Kit, deployed: tuple[LocalAws, Any]
) -> None:
    # Given Lambda answering the first, successful submit invocation with a ServiceException
    aws, simulator = deployed
    job_id = f"lost-{kit.provider}"
    with lambda_error_after_invoke(aws) as lost:
        # When the job runs (the state machine retries Lambda.ServiceException)
        outcome = _run(aws, kit, job_id)
    # Then the retry took the recorded result: one report queued, the job ready, everywhere
    assert lost.fired == 1
    assert "Lambda.ServiceException" in _submit_errors(aws, outcome)
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert kit.queued(simulator) == 1
    stored = _stored_job(aws, job_id)
    assert stored.state is JobState.READY
    assert stored.object == outcome.detail["object"]
    assert {event["detail-type"] for event in _events_for(aws, job_id)} == {"Report Ready"}
