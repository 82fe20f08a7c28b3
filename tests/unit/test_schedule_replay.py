"""``reportrelay schedules replay``: failed scheduled starts read from the dead-letter queue and run again.

SQS and Step Functions are moto's. Lambda is not (moto runs function code in Docker): the function is the
real ``start_scheduled`` handler run in this process behind Lambda's synchronous Invoke contract (the
answer as the payload, or ``FunctionError`` with ``errorType`` and ``errorMessage``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from reportrelay.handlers import start_scheduled
from reportrelay_cli import replay
from reportrelay_cli.main import main

REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTION = "reportrelay-start-scheduled"
GROUP = "SchedulesGroup-1ABC"


class Context:
    function_name = FUNCTION
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}"
    aws_request_id = "request-1"


class LocalStartFunction:
    """The start function behind the subset of the Lambda client the replay uses."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        self.calls.append({"function": FunctionName, "type": InvocationType, "event": json.loads(Payload)})
        try:
            answer = start_scheduled.handler(json.loads(Payload), Context())
        except Exception as error:
            failure = {"errorType": type(error).__name__, "errorMessage": str(error)}
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": _stream(failure)}
        return {"StatusCode": 200, "Payload": _stream(answer)}


def _stream(document: Any) -> io.BytesIO:
    return io.BytesIO(json.dumps(document).encode())


def event(schedule: str, due: str, window: str = "last_month") -> dict[str, Any]:
    """What Scheduler delivers to the function: the target input with the scheduled time filled in."""
    return {
        "schedule": schedule,
        "scheduled_time": due,
        "window": {"window": window, "timezone": "Europe/London"},
        "request": {
            "connection": "acme-dx",
            "report": {"document_id": 10},
            "format": "pdf",
            "parameters": {"From": "{{ first }}", "To": "{{ last }}"},
            "team": "finance",
        },
    }


def scheduler_dead_letter(body: dict[str, Any], code: str, message: str) -> dict[str, Any]:
    """SendMessage arguments for a message as EventBridge Scheduler puts it in a schedule's DLQ."""
    attributes = {
        "ERROR_CODE": code,
        "ERROR_MESSAGE": message,
        "EXECUTION_ID": "f0c1d2e3-0000-4000-8000-000000000001",
        "EXHAUSTED_RETRY_CONDITION": "MaximumRetryAttempts",
        "IS_PAYLOAD_TRUNCATED": "false",
        "RETRY_ATTEMPTS": "3",
        "SCHEDULED_TIME": body["scheduled_time"],
        "SCHEDULE_ARN": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{GROUP}/{body['schedule']}",
        "TARGET_ARN": Context.invoked_function_arn,
    }
    return {
        "MessageBody": json.dumps(body),
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    }


def lambda_dead_letter(body: dict[str, Any], error_type: str, error_message: str) -> dict[str, Any]:
    """SendMessage arguments for Lambda's on-failure record of an asynchronous invoke the function failed."""
    record = {
        "version": "1.0",
        "timestamp": "2025-03-01T06:03:12.000Z",
        "requestContext": {
            "requestId": "e2c9a1f0-0000-4000-8000-000000000002",
            "functionArn": f"{Context.invoked_function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": body,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": error_type, "errorMessage": error_message},
    }
    return {"MessageBody": json.dumps(record)}


THROTTLED = event("monthly-sales", "2025-03-01T06:00:00Z")
START_REFUSED = event("daily-ledger", "2025-03-02T05:00:00Z", window="yesterday")
BROKEN = event("weekly-bad", "2025-03-03T07:00:00Z", window="fortnight")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A queue holding three failed starts, and the state machine the start function starts."""
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="reportrelay",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/reportrelay",
        )["stateMachineArn"]
        monkeypatch.setenv(start_scheduled.STATE_MACHINE_ARN_ENV, machine)
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="reportrelay-schedule-dlq")["QueueUrl"]
        for arguments in (
            scheduler_dead_letter(THROTTLED, "TooManyRequestsException", "Rate Exceeded."),
            lambda_dead_letter(START_REFUSED, "ThrottlingException", "Rate exceeded"),
            scheduler_dead_letter(BROKEN, "ResourceNotFoundException", "Function not found"),
        ):
            sqs.send_message(QueueUrl=queue_url, **arguments)
        yield {"sqs": sqs, "sfn": sfn, "machine": machine, "queue_url": queue_url}


def messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message visible now (each made visible again at once)."""
    found: dict[str, dict[str, Any]] = {}
    for _ in range(5):
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, MessageAttributeNames=["All"]
        ).get("Messages", [])
        found.update({message["MessageId"]: message for message in batch})
    return list(found.values())


def execution_names(aws: dict[str, Any]) -> list[str]:
    executions = aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]
    return sorted(execution["name"] for execution in executions)


def test_a_replay_starts_each_run_again_with_its_event_and_deletes_only_what_started(
    aws: dict[str, Any],
) -> None:
    # given three failed starts: two whose cause has passed, one whose template the function rejects
    function = LocalStartFunction()
    out = io.StringIO()

    # when they are replayed
    summary = replay.replay(
        aws["sqs"], aws["queue_url"], invoke=replay.lambda_invoker(function), function=FUNCTION, out=out
    )

    # then the function was invoked synchronously with each original event
    assert [call["type"] for call in function.calls] == ["RequestResponse"] * 3
    assert {call["function"] for call in function.calls} == {FUNCTION}
    assert sorted(call["event"]["schedule"] for call in function.calls) == sorted(
        [THROTTLED["schedule"], START_REFUSED["schedule"], BROKEN["schedule"]]
    )
    for call in function.calls:
        original = {e["schedule"]: e for e in (THROTTLED, START_REFUSED, BROKEN)}[call["event"]["schedule"]]
        assert call["event"] == original
    # and the two runs started, for the dates they were due for
    assert execution_names(aws) == ["daily-ledger-20250302T050000Z", "monthly-sales-20250301T060000Z"]
    # and only the failed one is left, visible at once for the next attempt
    (left,) = messages(aws["sqs"], aws["queue_url"])
    assert json.loads(left["Body"])["schedule"] == "weekly-bad"
    assert (len(summary.replayed), summary.kept) == (2, [left["MessageId"]])
    # and each line says which schedule, when it was due, why it failed and what the replay did
    text = out.getvalue()
    assert (
        "monthly-sales due 2025-03-01T06:00:00Z: failed in scheduler: TooManyRequestsException: "
        "Rate Exceeded. (MaximumRetryAttempts reached after 3 retries)"
    ) in text
    assert (
        "daily-ledger due 2025-03-02T05:00:00Z: failed in lambda: ThrottlingException: Rate exceeded "
        "(RetriesExhausted after 3 attempts)"
    ) in text
    assert "replayed: job monthly-sales-20250301T060000Z (message deleted)" in text
    assert "kept: the function failed again: ConfigurationError: unknown window 'fortnight'" in text


def test_replaying_a_run_that_started_after_all_starts_nothing_twice(aws: dict[str, Any]) -> None:
    # given the throttled run started meanwhile (a later delivery got through)
    start_scheduled.handler(THROTTLED, Context())
    # when the queue is replayed
    replay.replay(
        aws["sqs"],
        aws["queue_url"],
        invoke=replay.lambda_invoker(LocalStartFunction()),
        function=FUNCTION,
        out=io.StringIO(),
    )
    # then its replay found it started (the job id is the schedule and due time): one execution, and
    # its message is gone
    assert execution_names(aws).count("monthly-sales-20250301T060000Z") == 1
    assert "monthly-sales" not in [
        json.loads(m["Body"]).get("schedule") for m in messages(aws["sqs"], aws["queue_url"])
    ]


def test_a_dry_run_says_what_it_would_replay_and_changes_nothing(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    before = {m["MessageId"] for m in messages(aws["sqs"], aws["queue_url"])}
    # when the command runs with --dry-run
    code = main(["schedules", "replay", "--queue-url", aws["queue_url"], "--dry-run", "--region", REGION])
    # then it exits 0, shows each message, and every message is still there and visible; nothing started
    assert code == 0
    output = capsys.readouterr()
    assert output.out.count("  would invoke the start function with ") == 3
    assert "weekly-bad due 2025-03-03T07:00:00Z: failed in scheduler: ResourceNotFoundException" in output.out
    assert "dry run: 3 message(s) read; nothing invoked or deleted" in output.err
    assert {m["MessageId"] for m in messages(aws["sqs"], aws["queue_url"])} == before
    assert execution_names(aws) == []


def test_max_limits_how_many_are_read(aws: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["schedules", "replay", "--queue-url", aws["queue_url"], "--dry-run", "--max", "1"])
    assert code == 0
    assert "dry run: 1 message(s) read" in capsys.readouterr().err


def test_a_message_without_its_due_time_is_kept_not_replayed_as_of_now(aws: dict[str, Any]) -> None:
    # given a message whose scheduled time is still Scheduler's placeholder and no SCHEDULED_TIME
    sqs, queue_url = aws["sqs"], aws["queue_url"]
    sqs.purge_queue(QueueUrl=queue_url)
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event("x", "<aws.scheduler.scheduled-time>")))
    function = LocalStartFunction()
    out = io.StringIO()
    # when replayed / then nothing is invoked (it would cover the wrong dates) and it is kept
    summary = replay.replay(
        sqs, queue_url, invoke=replay.lambda_invoker(function), function=FUNCTION, out=out
    )
    assert function.calls == [] and len(summary.kept) == 1
    assert "kept: cannot replay: the time the run was due is unknown" in out.getvalue()


def test_the_due_time_comes_from_scheduler_s_attribute_when_the_body_lacks_it() -> None:
    body = event("monthly-sales", "<aws.scheduler.scheduled-time>")
    arguments = scheduler_dead_letter({**body, "scheduled_time": "2025-03-01T06:00:00Z"}, "X", "y")
    message = {
        "MessageId": "1",
        "ReceiptHandle": "r",
        "Body": json.dumps(body),
        "MessageAttributes": arguments["MessageAttributes"],
    }
    letter = replay.read_dead_letter(message)
    assert letter.event is not None and letter.event["scheduled_time"] == "2025-03-01T06:00:00Z"


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("reportrelay: error: ")
    return err


def test_a_queue_that_does_not_exist_is_one_line_and_exit_2(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = aws["queue_url"].replace("reportrelay-schedule-dlq", "nowhere")
    assert main(["schedules", "replay", "--queue-url", missing, "--function", FUNCTION]) == 2
    assert "no such queue (check the URL, the region and the account)" in one_line_error(capsys)


def test_a_function_that_does_not_exist_stops_the_replay_and_keeps_the_messages(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # given moto's Lambda, where no function is deployed
    assert main(["schedules", "replay", "--queue-url", aws["queue_url"], "--function", "gone"]) == 2
    assert "invoking gone: ResourceNotFoundException" in one_line_error(capsys)
    assert len(messages(aws["sqs"], aws["queue_url"])) == 3


def test_a_stack_that_does_not_exist_is_one_line_and_exit_2(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedules", "replay", "--stack", "NoSuchStack"]) == 2
    assert "reading stack NoSuchStack: ValidationError" in one_line_error(capsys)


def test_no_credentials_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/reportrelay-schedule-dlq"
    assert main(["schedules", "replay", "--queue-url", url, "--function", FUNCTION, "--region", REGION]) == 2
    assert "no AWS credentials found" in one_line_error(capsys)


class Refusing:
    """An SQS client that refuses every call with ``code``."""

    def __init__(self, code: str) -> None:
        self.code = code

    def receive_message(self, **_: Any) -> dict[str, Any]:
        raise ClientError(
            {"Error": {"Code": self.code, "Message": "User: x is not authorized"}}, "ReceiveMessage"
        )


@pytest.mark.parametrize(
    ("code", "said"),
    [
        ("AccessDenied", "access denied: User: x is not authorized"),
        ("ExpiredToken", "AWS refused the credentials (ExpiredToken): sign in again"),
        ("AWS.SimpleQueueService.NonExistentQueue", "no such queue"),
    ],
)
def test_aws_refusals_say_what_to_do(code: str, said: str) -> None:
    with pytest.raises(replay.ReplayError, match=said.replace("(", r"\(").replace(")", r"\)")):
        replay.replay(Refusing(code), "https://q", invoke=None, function=FUNCTION, out=io.StringIO())
