"""Long jobs never hit the history limit: before it, a job goes on in a fresh execution (issue 15, item 3).

Executed state machine with a small history limit injected, against the DevExpress simulator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from reportrelay import workflow
from reportrelay.jobs import DynamoDbJobs
from reportrelay_cli.local.aws import LocalAws
from tests.api.conftest import ACCESS_POLICY, JobApi
from tests.conftest import DX_PASSWORD, describe_when_ended, devexpress_connection, write_connections


@pytest.fixture
def aws(tmp_path, devexpress_sim, monkeypatch) -> Iterator[LocalAws]:
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    connection = devexpress_connection(
        devexpress_sim.base_url, teams=["finance"], poll={"initial_seconds": 1, "max_seconds": 1}
    )
    path = write_connections(tmp_path, {"dx": connection})
    environment = {
        "REPORTRELAY_CONNECTIONS_FILE": str(path),
        "REPORTRELAY_ACCESS": json.dumps(ACCESS_POLICY),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    with LocalAws(environment) as local:
        yield local


def executions_of(aws: LocalAws, job_id: str) -> list[dict]:
    sfn = aws.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=aws.state_machine_arn)["executions"]
    return sorted((e for e in listed if e["name"].startswith(job_id)), key=lambda e: e["startDate"])


def test_a_job_near_the_history_limit_continues_in_a_new_execution_and_finishes_once(
    aws, devexpress_sim, monkeypatch
):
    # given a history limit that three status checks fill (20 events to begin, 12 per check, none spare),
    # and a report that takes about eight checks to generate
    monkeypatch.setattr(workflow, "HISTORY_EVENT_LIMIT", 60)
    monkeypatch.setattr(workflow, "HISTORY_EVENTS_SPARE", 0)
    devexpress_sim.generation_seconds = 8.0
    api = JobApi(aws)
    # when a job runs through the job API
    job_id = api.start({"connection": "dx", "report": {"document_id": 10}, "format": "pdf"})
    job = api.wait(job_id, timeout=90)
    # then it is ready, and was queued once at the vendor
    assert job["state"] == "ready", job
    assert len(devexpress_sim.exports) == 1
    # and it ran in a chain of executions of the same job, each started by the one before it, every
    # one but the last ending in Continued, and no execution failed on its history
    chain = executions_of(aws, job_id)
    ended = describe_when_ended(aws, [e["executionArn"] for e in chain], timeout_seconds=30)
    chain = [{**e, "status": ended[e["executionArn"]]["status"]} for e in chain]
    assert len(chain) >= 3
    assert [e["name"] for e in chain] == [job_id] + [f"{job_id}-continued-{n}" for n in range(1, len(chain))]
    assert {e["status"] for e in chain} == {"SUCCEEDED"}
    sfn = aws.client("stepfunctions")
    for execution in chain[:-1]:
        events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
        assert len(events) <= 60 + 12  # the limit, and the hand-over into the next one
        assert any(e.get("stateEnteredEventDetails", {}).get("name") == "Continued" for e in events)
    # and exactly one Report Ready was announced, by the last execution
    deadline = time.monotonic() + 10
    while (
        not [e for e in aws.events() if e["detail"].get("job_id") == job_id] and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    announced = [e for e in aws.events() if e["detail"].get("job_id") == job_id]
    assert [e["detail-type"] for e in announced] == ["Report Ready"]
    # and the job store names the execution the job finished in (the API follows and cancels that one),
    # and the job's activity says each time it went on in another
    record = DynamoDbJobs(aws.jobs_table, lambda: aws.client("dynamodb")).get(job_id)
    assert record is not None and record.execution_arn == chain[-1]["executionArn"]
    events = api("GET", f"/reports/{job_id}/events").json()["events"]
    continued = [e["message"] for e in events if "continues in a fresh execution" in e["message"]]
    assert len(continued) == len(chain) - 1
