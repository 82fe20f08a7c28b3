"""The submit intent: the workflow's submit step against each simulator, with a job store on moto.

A run of the step that dies after the queue call (``tests.aws_faults.dies_after_queue_call``) leaves its
attempt's intent open; the next run of the same attempt must not call the queue endpoint again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from reportrelay import jobs, workflow
from reportrelay.auth import forget_cached_tokens
from reportrelay.config import SecretResolver
from reportrelay.errors import ProviderServerError, ProviderThrottled, SubmitUncertain
from reportrelay.jobs import INTENT_NOT_QUEUED, INTENT_QUEUED, DynamoDbJobs
from reportrelay.runtime import Runtime, Settings, load_connections
from reportrelay.timestamps import iso_timestamp
from reportrelay_cli.local.aws import FunctionDied
from tests.aws_faults import dies_after_queue_call
from tests.faults.kits import KITS, Kit

TABLE = "jobs-intent"
#: The providers whose submit is one queue call answered with an id (no holder, no snapshot needed).
QUEUE_CALL_PROVIDERS = ("clinical_one", "devexpress", "myreports", "torus")
RECONCILED = {"torus", "clinical_one"}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        import boto3

        boto3.client("dynamodb", region_name="us-east-1").create_table(**jobs.create_table_request(TABLE))
        yield


@pytest.fixture(params=QUEUE_CALL_PROVIDERS)
def kit(request: pytest.FixtureRequest) -> Kit:
    return KITS[request.param]


@pytest.fixture
def simulator(kit: Kit) -> Iterator[Any]:
    forget_cached_tokens()
    with kit.make_simulator() as sim:
        yield sim


def _runtime(kit: Kit, sim: Any, *, jobs_table: str | None = TABLE) -> Runtime:
    body, values = kit.connection(sim, "unit")
    document = json.dumps({"connections": {"unit": body}})
    settings = Settings(
        bucket=None, connections_file=None, connections_document=document, jobs_table=jobs_table
    )
    return Runtime(
        settings=settings, connections=load_connections(settings), secrets=SecretResolver(environ=values)
    )


def _state(kit: Kit, runtime: Runtime, job_id: str = "job-1", **job: Any) -> dict[str, Any]:
    request = kit.request("unit")
    accepted = {"job_id": job_id, "accepted_at": iso_timestamp(runtime.clock()), **job}
    return {"request": request, "job": accepted}


def _queue_calls(kit: Kit, sim: Any) -> int:
    return sum(1 for call in sim.calls("POST") if re.search(kit.submit_path, call.path))


def _store(runtime: Runtime) -> DynamoDbJobs:
    store = runtime.jobs
    assert store is not None
    return store


def _die_after_queue_call(state: dict[str, Any], runtime: Runtime) -> None:
    with dies_after_queue_call() as died, pytest.raises(FunctionDied):
        workflow.submit(state, runtime)
    assert died.fired == 1


def test_an_open_intent_is_reconciled_or_fails_without_calling_the_queue_endpoint_again(
    aws: None, kit: Kit, simulator: Any
) -> None:
    # Given a run of submit that died after the provider answered its queue call
    runtime = _runtime(kit, simulator)
    state = _state(kit, runtime)
    _die_after_queue_call(state, runtime)
    assert _queue_calls(kit, simulator) == 1 and kit.queued(simulator) == 1
    # When the state machine runs the same attempt again
    if kit.provider in RECONCILED:
        submitted = workflow.submit(state, runtime)
        # Then it found the report at the provider and recorded that
        assert submitted["job"]["handle"]
        intent = _store(runtime).open_intent("job-1", 0, iso_timestamp(runtime.clock()))
        assert intent is not None and intent.outcome == INTENT_QUEUED
        # (what the step used is added to the job after it, by the workflow's metering)
        assert intent.result == {name: value for name, value in submitted["job"].items() if name != "usage"}
        assert _store(runtime).get("job-1").handle == submitted["job"]["handle"]
    else:
        # Then it fails saying where the report may be, and what to look for
        with pytest.raises(
            SubmitUncertain, match=f"a report may have been queued at {kit.provider}"
        ) as failed:
            workflow.submit(state, runtime)
        assert not failed.value.retryable
        assert json.dumps(kit.report, sort_keys=True) in str(failed.value)
    # Either way the queue endpoint was not called a second time
    assert _queue_calls(kit, simulator) == 1 and kit.queued(simulator) == 1


def test_a_restart_is_a_new_attempt_and_queues_again(aws: None, kit: Kit, simulator: Any) -> None:
    # Given attempt 0 died after its queue call
    runtime = _runtime(kit, simulator)
    _die_after_queue_call(_state(kit, runtime), runtime)
    # When the job restarts (a single-use result was lost): attempt 1
    submitted = workflow.submit(_state(kit, runtime, restarts=1), runtime)
    # Then a new report is queued for the new attempt
    assert submitted["job"]["handle"]
    assert _queue_calls(kit, simulator) == 2


def test_a_closed_intent_does_not_block_and_a_queued_one_returns_its_result(
    aws: None, kit: Kit, simulator: Any
) -> None:
    runtime = _runtime(kit, simulator)
    store = _store(runtime)
    # Given an intent closed as "not queued"
    assert store.open_intent("job-1", 0, iso_timestamp(runtime.clock())) is None
    assert store.close_intent("job-1", 0, INTENT_NOT_QUEUED)
    # When submit runs, then it queues, once
    submitted = workflow.submit(_state(kit, runtime), runtime)
    assert _queue_calls(kit, simulator) == 1
    # And run again (its answer was lost), it returns what it recorded without calling the provider
    again = workflow.submit(_state(kit, runtime), runtime)
    assert again["job"] == submitted["job"]
    assert _queue_calls(kit, simulator) == 1


def test_a_queue_call_refused_with_429_closes_the_intent_so_the_retry_queues(
    aws: None, kit: Kit, simulator: Any
) -> None:
    # Given the provider throttles the queue call (it says it did nothing)
    runtime = _runtime(kit, simulator)
    simulator.faults.only_paths = kit.submit_path
    simulator.faults.throttle_next = 10
    with pytest.raises(ProviderThrottled):
        workflow.submit(_state(kit, runtime), runtime)
    assert kit.queued(simulator) == 0
    # When the state machine retries, then the report is queued
    simulator.faults.throttle_next = 0
    submitted = workflow.submit(_state(kit, runtime), runtime)
    assert submitted["job"]["handle"] and kit.queued(simulator) == 1


def test_a_queue_call_answered_500_leaves_the_intent_open(aws: None, kit: Kit, simulator: Any) -> None:
    # Given a 500 to the queue call: the provider may have queued the report
    runtime = _runtime(kit, simulator)
    simulator.faults.only_paths = kit.submit_path
    simulator.faults.server_errors_next = 1
    simulator.faults.server_error_status = 500
    with pytest.raises(ProviderServerError):
        workflow.submit(_state(kit, runtime), runtime)
    calls = _queue_calls(kit, simulator)
    # When the step runs again for the same attempt, then it does not call the queue endpoint again
    try:
        workflow.submit(_state(kit, runtime), runtime)
    except SubmitUncertain:
        assert kit.provider not in RECONCILED or kit.queued(simulator) == 0
    assert _queue_calls(kit, simulator) == calls


def test_without_a_job_store_submit_behaves_as_before(kit: Kit, simulator: Any) -> None:
    # Given a deployment without a job table: no intent, and a re-run queues again (documented)
    runtime = _runtime(kit, simulator, jobs_table=None)
    workflow.submit(_state(kit, runtime), runtime)
    workflow.submit(_state(kit, runtime), runtime)
    assert _queue_calls(kit, simulator) == 2


def test_the_job_view_ignores_the_intent(aws: None) -> None:
    # Given a job whose item carries an intent with a hint and a result
    store = DynamoDbJobs(TABLE, lambda: __import__("boto3").client("dynamodb", region_name="us-east-1"))
    store.record("job-9", {"state": jobs.JobState.RUNNING}, created_at="2026-01-01T00:00:00Z")
    assert store.open_intent("job-9", 0, "2026-01-01T00:00:01Z") is None
    assert store.mark_queuing("job-9", 0, "2026-01-01T00:00:02Z", {"owner": "x"})
    assert not store.mark_queuing("job-9", 0, "2026-01-01T00:00:03Z", {"owner": "y"})  # one run gets there
    assert store.close_intent("job-9", 0, INTENT_QUEUED, result={"job_id": "job-9", "handle": {"id": 1}})
    # When the job is read, then it is the job as before, with the recorded handle
    job = store.get("job-9")
    assert job is not None and job.state is jobs.JobState.RUNNING and job.handle == {"id": 1}
    assert not any(name.startswith("submit_intent") for name in vars(job))
