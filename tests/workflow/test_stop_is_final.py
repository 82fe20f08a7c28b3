"""A stopped execution stays ABORTED, as in AWS, whatever its running task does after the stop.

moto's interpreter lets an error raised by the task that was running when StopExecution came overwrite the
stop: a stop that lands just as a Lambda task starts makes the task pop its state's input where it expects
its resource, and the execution ends FAILED (``'dict' object has no attribute 'region'``). A cancelled job
then came back FAILED and the job API answered "finished before it could be cancelled". LocalAws keeps a
stop final; these tests stop an execution at that moment, and after a Submit invocation ran.
"""

from __future__ import annotations

from typing import Any

import pytest
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ServiceResource

from reportrelay_cli.local.aws import LocalAws
from tests.conftest import describe_when_ended

REQUEST = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"}


def _ended_aborted(aws: LocalAws, execution_arn: str) -> tuple[str, set[str]]:
    described = describe_when_ended(aws, [execution_arn], timeout_seconds=60)[execution_arn]
    history = aws.client("stepfunctions").get_execution_history(executionArn=execution_arn)["events"]
    return described["status"], {event["type"] for event in history}


def test_a_stop_that_lands_as_a_task_starts_ends_the_execution_aborted(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an execution stopped in the instant its Submit task evaluates its resource
    sfn = local_aws.client("stepfunctions")
    stopped: list[str] = []
    original_eval = ServiceResource.eval

    def stop_then_eval(resource: Any, env: Any) -> None:
        if not stopped:
            stopped.append(env.states.context_object.context_object_data["Execution"]["Id"])
            sfn.stop_execution(executionArn=stopped[0], error="Cancelled", cause="stopped as a task starts")
        original_eval(resource, env)

    monkeypatch.setattr(ServiceResource, "eval", stop_then_eval)
    execution_arn = local_aws.start(REQUEST, "stopped-as-a-task-starts")
    # when the execution ends
    status, kinds = _ended_aborted(local_aws, execution_arn)
    # then it was aborted, and its history says so and records no failure
    assert stopped == [execution_arn]
    assert status == "ABORTED"
    assert "ExecutionAborted" in kinds
    assert "ExecutionFailed" not in kinds


def test_an_execution_stopped_while_its_task_runs_ends_aborted(local_aws: LocalAws) -> None:
    # given a job whose execution is stopped while its Submit invocation is running
    sfn = local_aws.client("stepfunctions")
    execution: dict[str, str] = {}

    def stop_during_submit(function_name: str) -> None:
        if function_name == "reportrelay-submit" and execution:
            sfn.stop_execution(executionArn=execution["arn"], error="Cancelled", cause="stopped mid-task")

    local_aws.after_invoke.append(stop_during_submit)
    execution["arn"] = local_aws.start(REQUEST, "stopped-mid-task")
    # when the execution ends
    status, kinds = _ended_aborted(local_aws, execution["arn"])
    # then it was aborted, and its history says so and records no failure
    assert status == "ABORTED"
    assert "ExecutionAborted" in kinds
    assert "ExecutionFailed" not in kinds
