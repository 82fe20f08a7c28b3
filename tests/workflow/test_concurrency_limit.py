"""A connection's concurrent-job limit: jobs beyond it wait their turn instead of meeting 429s."""

from __future__ import annotations

import time

import pytest

from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import run_job
from tests.clock import SkippingClock
from tests.conftest import DX_PASSWORD, devexpress_connection, wait_for_executions, write_connections
from tests.faults.matrix import functions_on

JOBS = 6
LIMIT = 2
DEADLINE_SKIPPED_SECONDS = 59


@pytest.fixture
def limited_aws(tmp_path, devexpress_sim, monkeypatch):
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    connection = devexpress_connection(devexpress_sim.base_url, max_concurrent_jobs=LIMIT)
    path = write_connections(tmp_path, {"dx": connection})
    with LocalAws({"REPORTRELAY_CONNECTIONS_FILE": str(path), "POWERTOOLS_LOG_LEVEL": "WARNING"}) as aws:
        yield aws


def test_many_jobs_against_a_limited_account_all_finish_within_the_limit(limited_aws, devexpress_sim):
    # given a server that refuses more than two active exports per account, and a connection limited to two
    devexpress_sim.max_active_exports = LIMIT
    devexpress_sim.generation_seconds = 1.0
    request = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"}
    # when six jobs start at once
    statuses = wait_for_executions(limited_aws, [limited_aws.start(request) for _ in range(JOBS)])
    # then every job succeeded, two exports ran at once (the limit, not fewer), and the server never had to
    # say 429: a refused export would be a seventh POST (the simulator itself never holds more than two)
    assert statuses == ["SUCCEEDED"] * JOBS
    assert len(devexpress_sim.exports) == JOBS
    assert devexpress_sim.peak_active_exports == LIMIT
    export_posts = devexpress_sim.calls("POST", "/api/documents/export/report/{id}")
    assert len(export_posts) == JOBS
    # and every slot was given back
    items = limited_aws.client("dynamodb").scan(TableName=limited_aws.claims_table)["Items"]
    assert not [item for item in items if item["claim"]["S"].startswith("slot#")]


def test_a_job_that_finds_no_free_slot_before_its_deadline_fails_saying_so(limited_aws, devexpress_sim):
    # given both slots held by jobs that will not finish
    dynamodb = limited_aws.client("dynamodb")
    for number in range(LIMIT):
        dynamodb.put_item(
            TableName=limited_aws.claims_table,
            Item={"claim": {"S": f"slot#dx#{number}"}, "owner": {"S": f"other-{number}"},
                  "expires_at": {"N": str(int(time.time()) + 3600)}},
        )  # fmt: skip
    request = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf", "deadline_seconds": 60}
    # when a job runs with a one-minute deadline, on a functions' clock that has already gone 59 s of it
    # (the job is accepted at the execution's real start; the wait in line is its last second, not a minute)
    clock = SkippingClock()
    clock.advance_to(time.time() + DEADLINE_SKIPPED_SECONDS)
    with functions_on(clock):
        outcome = run_job(limited_aws, request)
    # then it waited in line, and failed with DeadlineExceeded, having queued nothing at the provider
    assert outcome.detail["error"]["code"] == "DeadlineExceeded"
    assert "slots" in outcome.detail["error"]["message"]
    history = limited_aws.client("stepfunctions").get_execution_history(executionArn=outcome.execution_arn)
    entered = [
        event["stateEnteredEventDetails"]["name"]
        for event in history["events"]
        if event["type"].endswith("StateEntered")
    ]
    assert "WaitForSlot" in entered
    assert devexpress_sim.exports == {}
