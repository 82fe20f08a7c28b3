"""Slots handed over, not polled for: jobs beyond a connection's limit wait in line on a task token.

Executed state machine against the DevExpress simulator, which refuses (429) exports beyond its limit.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reportrelay import workflow
from reportrelay.slots import ConcurrencySlots
from reportrelay_cli.local.aws import LocalAws
from tests.api.conftest import ACCESS_POLICY, JobApi
from tests.conftest import DX_PASSWORD, devexpress_connection, wait_for_executions, write_connections

WAIT_FOR_SLOT = "reportrelay-wait-for-slot"
SUBMIT = "reportrelay-submit"


@pytest.fixture
def one_slot(tmp_path, devexpress_sim, monkeypatch) -> Iterator[tuple[LocalAws, collections.Counter]]:
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    devexpress_sim.max_active_exports = 1
    devexpress_sim.generation_seconds = 1.0
    connection = devexpress_connection(devexpress_sim.base_url, max_concurrent_jobs=1, teams=["finance"])
    path = write_connections(tmp_path, {"dx": connection})
    environment = {
        "REPORTRELAY_CONNECTIONS_FILE": str(path),
        "REPORTRELAY_ACCESS": json.dumps(ACCESS_POLICY),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    with LocalAws(environment) as aws:
        invoked: collections.Counter = collections.Counter()
        aws.after_invoke.append(lambda name: invoked.update([name]))
        yield aws, invoked


def request(order: int, **extra: Any) -> dict[str, Any]:
    return {
        "connection": "dx",
        "report": {"document_id": 10},
        "format": "pdf",
        "parameters": {"Order": str(order)},
        **extra,
    }


def line(aws: LocalAws) -> list[str]:
    return ConcurrencySlots(aws.claims_table, lambda: aws.client("dynamodb")).line("dx")


def wait_until(condition, seconds: float = 30) -> None:
    ends = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < ends, "timed out"
        time.sleep(0.05)


def test_waiting_jobs_are_handed_the_slot_in_arrival_order_without_polling(one_slot, devexpress_sim):
    aws, invoked = one_slot
    # given a connection with one slot, held by a first job that is not ready before the four others
    # have arrived one after another and joined the line (however loaded the machine)
    devexpress_sim.generation_seconds = 600
    executions = [aws.start(request(0))]
    wait_until(lambda: len(devexpress_sim.exports) == 1)
    for order in range(1, 5):
        executions.append(aws.start(request(order)))
        wait_until(lambda order=order: len(line(aws)) == order)
    devexpress_sim.generation_seconds = 1.0
    # when they all run to the end
    statuses = wait_for_executions(aws, executions, timeout_seconds=120)
    # then every job succeeded, one export at a time, queued at the vendor in the order the jobs arrived
    assert statuses == ["SUCCEEDED"] * 5
    assert devexpress_sim.peak_active_exports == 1
    exports = sorted(devexpress_sim.exports.values(), key=lambda export: export["created_at"])
    orders = [{item["name"]: item["value"] for item in export["parameters"]}["Order"] for export in exports]
    assert orders == ["0", "1", "2", "3", "4"]
    # and each waiting job joined the line once and was woken once: no polling for the slot
    assert invoked[WAIT_FOR_SLOT] == 4
    assert invoked[SUBMIT] == 5 + 4
    # and nothing is left: no slot held, nobody in line
    items = aws.client("dynamodb").scan(TableName=aws.claims_table)["Items"]
    held = [item["claim"]["S"] for item in items if item["claim"]["S"].startswith(("slot#", "waiter#"))]
    assert held == [] and line(aws) == []


def test_the_slot_of_a_holder_that_died_passes_on_once_its_lease_ran_out(
    one_slot, devexpress_sim, monkeypatch
):
    aws, invoked = one_slot
    # given the slot held by a job that died without giving it back, its lease running out in 3 s, and
    # waiters that look again by themselves every 2 s (the safety net under the hand-over)
    monkeypatch.setattr(workflow, "SLOT_WAKE_SECONDS", 2)
    lease_ends = int(time.time()) + 3
    aws.client("dynamodb").put_item(
        TableName=aws.claims_table,
        Item={"claim": {"S": "slot#dx#0"}, "owner": {"S": "dead"}, "expires_at": {"N": str(lease_ends)}},
    )
    # when a job arrives
    execution = aws.start(request(1))
    # then it waits in line until the lease ran out, then takes the slot and succeeds
    assert wait_for_executions(aws, [execution], timeout_seconds=60) == ["SUCCEEDED"]
    export = next(iter(devexpress_sim.exports.values()))
    assert export["created_at"] >= lease_ends
    assert 1 <= invoked[WAIT_FOR_SLOT] <= 4


def test_a_cancelled_holder_hands_its_slot_to_the_next_in_line(one_slot, devexpress_sim):
    aws, _ = one_slot
    api = JobApi(aws)
    # given a holder whose report never finishes, and a job waiting in line behind it (DevExpress cannot
    # cancel an export, so its own limit would still count the holder's: it is lifted here)
    devexpress_sim.max_active_exports = None
    devexpress_sim.generation_seconds = 1e9
    holder = api.start(request(0))
    wait_until(lambda: len(devexpress_sim.exports) == 1)
    devexpress_sim.generation_seconds = 1.0
    waiting = api.start(request(1))
    wait_until(lambda: len(line(aws)) == 1)
    # when the holder is cancelled through the job API
    answer = api("DELETE", f"/reports/{holder}")
    assert answer.status == 200, answer.body
    # then the waiting job is handed the slot at once and its report becomes ready
    assert api.wait(waiting, timeout=30)["state"] == "ready"
    assert line(aws) == []


def test_a_job_stopped_while_waiting_in_line_is_passed_over(one_slot, devexpress_sim):
    aws, _ = one_slot
    # given a holder that is not ready before two jobs are waiting in line behind it
    devexpress_sim.generation_seconds = 600
    holder = aws.start(request(0))
    wait_until(lambda: len(devexpress_sim.exports) == 1)
    first = aws.start(request(1))
    wait_until(lambda: len(line(aws)) == 1)
    second = aws.start(request(2))
    wait_until(lambda: len(line(aws)) == 2)
    # when the first in line is stopped (its token then answers TaskTimedOut) before a slot is free
    aws.client("stepfunctions").stop_execution(executionArn=first, error="Cancelled", cause="test")
    devexpress_sim.generation_seconds = 1.0
    # then, once the holder is done, the slot goes to the second, which succeeds; the stopped job never
    # queued anything at the vendor, and nobody is left in line
    assert wait_for_executions(aws, [holder, second], timeout_seconds=60) == ["SUCCEEDED"] * 2
    orders = sorted(
        {item["name"]: item["value"] for item in export["parameters"]}["Order"]
        for export in devexpress_sim.exports.values()
    )
    assert orders == ["0", "2"]
    assert line(aws) == []
