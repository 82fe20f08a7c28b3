"""No lost event: the outcome is recorded with its event in the job store (the outbox) and announced from
there. PutEvents failing during Conclude (an error, or FailedEntryCount 1) leaves the execution ending as the
job did, the job store showing the outcome with its announcement pending, and no event; the sweep
(``LocalAws.sweep``, the announce-pending function) then delivers exactly one, with its event id, and a
second sweep nothing. A Conclude that dies after recording is run again and announces once.

Executed through statemachines/report.asl.json on moto, against the DevExpress simulator over HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from reportrelay.awsclients import aws_client
from reportrelay.jobs import DynamoDbJobs, JobState
from reportrelay_cli.local.aws import FunctionDied, LocalAws
from tests.conftest import describe_when_ended

READY_REQUEST = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"}
FAILING_REQUEST = {"connection": "no-such-connection", "report": {"document_id": 10}, "format": "pdf"}


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RefusingEventBridge:
    """While armed, every PutEvents from the functions fails: with a 500, or taken with FailedEntryCount 1."""

    how: str
    armed: bool = True
    refused: int = 0

    def before_call(self, **_: Any) -> Any:
        if not self.armed:
            return None
        self.refused += 1
        if self.how == "error":
            raise ClientError({"Error": {"Code": "InternalException", "Message": "boom"}}, "PutEvents")
        failed = {"ErrorCode": "InternalFailure", "ErrorMessage": "EventBridge could not take the entry"}
        return _Http(200), {"FailedEntryCount": 1, "Entries": [failed]}


@pytest.fixture
def refusing(request: pytest.FixtureRequest, local_aws: LocalAws) -> Iterator[RefusingEventBridge]:
    """The functions' own (cached) events client, refusing PutEvents until disarmed."""
    fault = RefusingEventBridge(request.param)
    events = aws_client("events")
    events.meta.events.register("before-call.events.PutEvents", fault.before_call, unique_id="refusing")
    try:
        yield fault
    finally:
        events.meta.events.unregister("before-call.events.PutEvents", unique_id="refusing")


def store(aws: LocalAws) -> DynamoDbJobs:
    return DynamoDbJobs(aws.jobs_table, lambda: aws.client("dynamodb"))


def run(aws: LocalAws, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    arn = aws.start(request)
    return arn.rsplit(":", 1)[1], describe_when_ended(aws, [arn], timeout_seconds=120)[arn]


def events_of(aws: LocalAws, job_id: str) -> list[dict[str, Any]]:
    return [event for event in aws.events() if event["detail"]["job_id"] == job_id]


@pytest.mark.parametrize("refusing", ["error", "failed_entry"], indirect=True)
@pytest.mark.parametrize(
    ("request_body", "status", "state", "detail_type"),
    [
        (READY_REQUEST, "SUCCEEDED", JobState.READY, "Report Ready"),
        (FAILING_REQUEST, "FAILED", JobState.FAILED, "Report Failed"),
    ],
    ids=["ready", "failed"],
)
def test_a_refused_announcement_is_swept_and_delivered_exactly_once(
    local_aws: LocalAws,
    refusing: RefusingEventBridge,
    request_body: dict[str, Any],
    status: str,
    state: JobState,
    detail_type: str,
) -> None:
    # given EventBridge refusing every PutEvents
    # when a job runs to its end
    job_id, execution = run(local_aws, request_body)
    # then the execution ends as the job did, though its event could not be put
    assert execution["status"] == status, execution
    assert refusing.refused >= 1
    # and the job store has the outcome, with its event waiting in the outbox
    job = store(local_aws).get(job_id)
    assert job is not None and job.state is state
    pending = store(local_aws).pending_announcement(job_id)
    assert pending is not None and pending.event_id == f"{job_id}/{state.value.upper()}"
    assert pending.detail_type == detail_type and pending.attempts >= 1
    # and nothing was announced
    time.sleep(0.2)
    assert events_of(local_aws, job_id) == []

    # when EventBridge takes events again and the sweep runs
    refusing.armed = False
    swept = local_aws.sweep()
    # then exactly one event is delivered, with the outcome's event id, and the outbox is empty
    assert swept["announced"] >= 1, swept
    (event,) = events_of(local_aws, job_id)
    assert event["detail-type"] == detail_type
    assert event["detail"]["event_id"] == pending.event_id
    assert event["detail"]["status"] == state.value.upper()
    assert execution["executionArn"] in event["resources"]
    if status == "SUCCEEDED":  # the execution's output is the same event detail
        assert json.loads(execution["output"]) == event["detail"]
    assert store(local_aws).pending_announcement(job_id) is None
    assert store(local_aws).get(job_id).state is state
    # and a second sweep sends nothing
    assert local_aws.sweep()["announced"] == 0
    assert len(events_of(local_aws, job_id)) == 1


def test_an_accepted_announcement_leaves_nothing_for_the_sweep(local_aws: LocalAws) -> None:
    job_id, execution = run(local_aws, READY_REQUEST)
    assert execution["status"] == "SUCCEEDED"
    (event,) = events_of(local_aws, job_id)
    assert event["detail"]["event_id"] == f"{job_id}/READY"
    assert store(local_aws).pending_announcement(job_id) is None
    assert local_aws.sweep(after_seconds=0)["announced"] == 0
    assert len(events_of(local_aws, job_id)) == 1


def test_a_conclude_that_dies_after_recording_is_run_again_and_announces_once(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a Conclude whose runtime dies right after it recorded the outcome (once)
    died = threading.Event()
    original = DynamoDbJobs.finish

    def finish_then_die(self: DynamoDbJobs, *args: Any, **kwargs: Any) -> bool:
        recorded = original(self, *args, **kwargs)
        if not died.is_set():
            died.set()
            raise FunctionDied("Runtime exited with error: signal: killed (after recording the outcome)")
        return recorded

    monkeypatch.setattr(DynamoDbJobs, "finish", finish_then_die)
    # when a job runs to its end
    job_id, execution = run(local_aws, READY_REQUEST)
    # then the state machine ran Conclude again, which found the outcome recorded and announced it once
    assert died.is_set()
    assert execution["status"] == "SUCCEEDED", execution
    (event,) = events_of(local_aws, job_id)
    assert event["detail"]["event_id"] == f"{job_id}/READY"
    assert json.loads(execution["output"]) == event["detail"]
    assert store(local_aws).get(job_id).state is JobState.READY
    assert store(local_aws).pending_announcement(job_id) is None
    assert local_aws.sweep()["announced"] == 0
