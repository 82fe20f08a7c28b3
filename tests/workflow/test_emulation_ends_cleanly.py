"""One emulation's executions never reach into the next one's AWS.

moto runs each execution on a thread of its own, which outlives the emulation. One left running went on
invoking its functions in the next emulation, whose tables have the same names: a job API test listed a
job it had not started. LocalAws now stops what is still running as it ends, waits for the function
running at the stop to return (as in Lambda, a stop does not cut a running function short), and runs no
function after that.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reportrelay.handlers import check, submit
from reportrelay_cli.local.aws import LocalAws

REQUEST = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"}
SUBMIT_SECONDS = 1.5
WATCH_SECONDS = 3.0


def test_an_execution_left_running_ends_with_its_emulation(
    dx_connections: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an execution still running as its emulation ends, in the middle of a slow Submit
    started, returned = threading.Event(), threading.Event()
    ran_after_the_end: list[str] = []
    ended = threading.Event()
    original_submit, original_check = submit.handler, check.handler

    def slow_submit(event: Any, context: Any) -> Any:
        if ended.is_set():
            ran_after_the_end.append("submit")
        started.set()
        time.sleep(SUBMIT_SECONDS)
        try:
            return original_submit(event, context)
        finally:
            returned.set()

    def watched_check(event: Any, context: Any) -> Any:
        if ended.is_set():
            ran_after_the_end.append("check")
        return original_check(event, context)

    monkeypatch.setattr(submit, "handler", slow_submit)
    monkeypatch.setattr(check, "handler", watched_check)
    environment = {"REPORTRELAY_CONNECTIONS_FILE": str(dx_connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    with LocalAws(environment) as aws:
        aws.start(REQUEST, "left-running")
        assert started.wait(30), "Submit never ran"
        # when the emulation ends
    ended.set()
    # then the Submit running at the end had returned, and the execution was stopped
    assert returned.is_set()
    # and in the next emulation, nothing of it runs and its tables hold nothing of it
    with LocalAws(environment) as fresh:
        time.sleep(WATCH_SECONDS)
        items = fresh.client("dynamodb").scan(TableName=fresh.jobs_table)["Items"]
        executions = fresh.client("stepfunctions").list_executions(stateMachineArn=fresh.state_machine_arn)
    assert ran_after_the_end == []
    assert items == []
    assert executions["executions"] == []
