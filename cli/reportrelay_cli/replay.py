"""Scheduled starts that failed: read from the schedules' dead-letter queue, said why, and started again.

Two kinds of message land in the queue (``infra/schedules.py``):

* from EventBridge Scheduler, when Lambda refused the invoke (no permission, no function, throttled past
  the retry policy): the body is the schedule's target input, the event ``start_scheduled`` takes, and
  message attributes say why: ``ERROR_CODE``, ``ERROR_MESSAGE``, ``SCHEDULE_ARN``, ``SCHEDULED_TIME``,
  ``TARGET_ARN``, ``RETRY_ATTEMPTS``, ``EXHAUSTED_RETRY_CONDITION`` (when the retry policy ran out) and
  ``IS_PAYLOAD_TRUNCATED``;
* from Lambda, when the function failed the run and its retries (Scheduler invokes it asynchronously):
  an invocation record whose ``requestPayload`` is the event and whose ``responsePayload`` holds the
  ``errorType`` and ``errorMessage``.

Replaying invokes the function synchronously with the original event, so the outcome is known, and deletes
the message only when the function succeeded. The function names the job after the schedule and the time
the run was due, so replaying a run that started after all starts nothing twice
(``ExecutionAlreadyExists``), and a replay covers the dates the run was due for, not today's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

# The stack outputs (infra/stack.py) the command falls back on.
QUEUE_URL_OUTPUT = "ScheduleDeadLetterQueueUrl"
FUNCTION_OUTPUT = "StartScheduledFunctionName"
DEFAULT_STACK = "ReportRelay"  # infra.constants.DEFAULT_STACK_NAME
DEFAULT_LIMIT = 100
# How long a message read stays hidden from other readers: longer than a run of the command (each invoke
# is bounded by the function's 30 s timeout); the messages kept are released at the end.
HOLD_SECONDS = 900
_BATCH = 10  # SQS's most per receive


class ReplayError(Exception):
    """AWS could not be reached or refused: one line saying what to do, no traceback."""


@dataclass(frozen=True)
class DeadLetter:
    """One failed start as read from the queue: what it was for, why it failed, what to invoke again."""

    message_id: str
    receipt_handle: str
    schedule: str
    scheduled_time: str
    sender: str  # "scheduler" (the invoke was refused) or "lambda" (the function failed)
    reason: str
    event: dict[str, Any] | None  # None: it cannot be replayed, for ``unreplayable``
    unreplayable: str | None = None


@dataclass(frozen=True)
class Invoked:
    """A synchronous invoke's outcome: the function's answer, or its error as ``Type: message``."""

    ok: bool
    answer: Any = None
    error: str = ""


Invoke = Callable[[str, Mapping[str, Any]], Invoked]


@dataclass
class Summary:
    read: int = 0
    replayed: list[str] = field(default_factory=list)  # message ids, deleted
    kept: list[str] = field(default_factory=list)  # message ids, still in the queue


def read_dead_letter(message: Mapping[str, Any]) -> DeadLetter:
    """A received SQS message (with ``MessageAttributeNames=["All"]``) as a DeadLetter."""
    attributes = {
        name: str(value.get("StringValue", ""))
        for name, value in message.get("MessageAttributes", {}).items()
    }
    try:
        body: Any = json.loads(message.get("Body", ""))
    except ValueError:
        body = None
    unreplayable = None
    if isinstance(body, dict) and "requestContext" in body and "requestPayload" in body:
        sender, event = "lambda", body["requestPayload"]
        response = body.get("responsePayload") if isinstance(body.get("responsePayload"), dict) else {}
        context = body["requestContext"] if isinstance(body["requestContext"], dict) else {}
        reason = f"{response.get('errorType', 'Error')}: {response.get('errorMessage', '(no message)')}"
        if context.get("condition"):
            reason += f" ({context['condition']} after {context.get('approximateInvokeCount', '?')} attempts)"
    else:
        sender, event = "scheduler", body
        reason = f"{attributes.get('ERROR_CODE', 'Error')}: {attributes.get('ERROR_MESSAGE', '(no message)')}"
        if attributes.get("EXHAUSTED_RETRY_CONDITION"):
            reason += (
                f" ({attributes['EXHAUSTED_RETRY_CONDITION']} reached after "
                f"{attributes.get('RETRY_ATTEMPTS', '?')} retries)"
            )
        if attributes.get("IS_PAYLOAD_TRUNCATED") == "true":
            unreplayable = "Scheduler truncated the event; start this run through the job API instead"
        elif isinstance(event, dict) and attributes.get("SCHEDULED_TIME"):
            # Keep the time the run was due, so the replay covers its dates and gets its job id.
            due = event.get("scheduled_time")
            if not isinstance(due, str) or not due or due.startswith("<aws."):
                event = {**event, "scheduled_time": attributes["SCHEDULED_TIME"]}
    if not isinstance(event, dict) or not isinstance(event.get("schedule"), str):
        event, unreplayable = None, unreplayable or "not a scheduled start (no 'schedule' in its event)"
    elif not isinstance(event.get("scheduled_time"), str) or event["scheduled_time"].startswith("<aws."):
        # Replayed without it, the run would cover the dates as of now and start under a new job id.
        unreplayable = unreplayable or "the time the run was due is unknown; start it through the job API"
    schedule = (event or {}).get("schedule") or attributes.get("SCHEDULE_ARN", "").rpartition("/")[2] or "?"
    scheduled_time = (event or {}).get("scheduled_time") or attributes.get("SCHEDULED_TIME") or "?"
    return DeadLetter(
        message_id=str(message.get("MessageId", "")),
        receipt_handle=str(message.get("ReceiptHandle", "")),
        schedule=schedule,
        scheduled_time=str(scheduled_time),
        sender=sender,
        reason=reason,
        event=event if unreplayable is None else None,
        unreplayable=unreplayable,
    )


def replay(
    sqs: Any,
    queue_url: str,
    *,
    invoke: Invoke | None,
    function: str,
    out: TextIO,
    dry_run: bool = False,
    limit: int = DEFAULT_LIMIT,
) -> Summary:
    """Replay up to ``limit`` messages of the queue, one line each on ``out``; ``dry_run`` only reads.

    A message is deleted only when its invoke succeeded; the others are made visible again at the end.
    """
    summary = Summary()
    held: dict[str, DeadLetter] = {}  # received and not deleted: released however the run ends
    try:
        for batch in _receive(sqs, queue_url, limit):
            held.update((letter.message_id, letter) for letter in batch)
            for letter in batch:
                summary.read += 1
                if _replay_one(sqs, queue_url, letter, invoke, function, out, dry_run, summary):
                    del held[letter.message_id]
    finally:
        _release(sqs, queue_url, list(held.values()))
    return summary


def _replay_one(
    sqs: Any,
    queue_url: str,
    letter: DeadLetter,
    invoke: Invoke | None,
    function: str,
    out: TextIO,
    dry_run: bool,
    summary: Summary,
) -> bool:
    """Say what the message is and replay it; True when it was replayed and deleted."""
    print(
        f"{letter.schedule} due {letter.scheduled_time}: failed in {letter.sender}: {letter.reason}", file=out
    )
    if letter.event is None:
        print(f"  kept: cannot replay: {letter.unreplayable}", file=out)
        summary.kept.append(letter.message_id)
        return False
    if dry_run or invoke is None:
        print(f"  would invoke {function} with {json.dumps(letter.event, sort_keys=True)}", file=out)
        return False
    invoked = invoke(function, letter.event)
    if not invoked.ok:
        print(f"  kept: the function failed again: {invoked.error}", file=out)
        summary.kept.append(letter.message_id)
        return False
    with _aws("deleting the replayed message"):
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=letter.receipt_handle)
    print(f"  replayed: job {_job_id(invoked.answer)} (message deleted)", file=out)
    summary.replayed.append(letter.message_id)
    return True


def _receive(sqs: Any, queue_url: str, limit: int) -> Iterator[list[DeadLetter]]:
    """Batches of messages until the queue has no new one or ``limit`` is reached, each message once."""
    seen: set[str] = set()
    while len(seen) < limit:
        with _aws(f"reading {queue_url}"):
            batch = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(_BATCH, limit - len(seen)),
                VisibilityTimeout=HOLD_SECONDS,
                WaitTimeSeconds=1,  # long polling: asks every SQS server, not a sample
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        new = [message for message in batch if message["MessageId"] not in seen]
        if not new:
            return
        seen.update(message["MessageId"] for message in new)
        yield [read_dead_letter(message) for message in new]


def _release(sqs: Any, queue_url: str, letters: list[DeadLetter]) -> None:
    """Make the messages kept visible again now, rather than when their hold runs out."""
    for start in range(0, len(letters), _BATCH):
        entries = [
            {"Id": str(number), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
            for number, letter in enumerate(letters[start : start + _BATCH])
        ]
        with _aws("releasing the messages kept"):
            sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


def _job_id(answer: Any) -> str:
    return str(answer.get("job_id", "?")) if isinstance(answer, dict) else "?"


def lambda_invoker(client: Any) -> Invoke:
    """Invoke through Lambda, synchronously; a FunctionError is a failed replay, not an AWS error."""

    def invoke(function: str, event: Mapping[str, Any]) -> Invoked:
        with _aws(f"invoking {function}"):
            response = client.invoke(
                FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
            )
        raw = response["Payload"].read()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode("utf-8", "replace")
        if response.get("FunctionError"):
            if isinstance(answer, dict):
                return Invoked(False, error=f"{answer.get('errorType')}: {answer.get('errorMessage')}")
            return Invoked(False, error=f"{response['FunctionError']}: {answer}")
        return Invoked(True, answer=answer)

    return invoke


@dataclass(frozen=True)
class Clients:
    sqs: Any
    lambda_: Any
    cloudformation: Any


def clients(region: str | None) -> Clients:
    """boto3 clients from a fresh session (credentials and region as the AWS CLI finds them)."""
    with _aws("connecting to AWS"):
        import boto3

        session = boto3.session.Session(region_name=region)
        return Clients(session.client("sqs"), session.client("lambda"), session.client("cloudformation"))


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    with _aws(f"reading stack {stack}"):
        (found,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    return {output["OutputKey"]: output["OutputValue"] for output in found.get("Outputs", [])}


_QUEUE_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_DENIED = {"AccessDenied", "AccessDeniedException", "AuthorizationError", "KMS.AccessDeniedException"}
_BAD_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
}


@contextmanager
def _aws(doing: str) -> Iterator[None]:
    """Turn what boto3 raises into a ReplayError that says what was being done and what to do."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        yield
    except NoCredentialsError:
        raise ReplayError(
            f"{doing}: no AWS credentials found: set AWS_PROFILE (or run aws sso login) and try again"
        ) from None
    except NoRegionError:
        raise ReplayError(f"{doing}: no AWS region: pass --region or set AWS_REGION") from None
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", "")).splitlines()[0:1]
        text = message[0] if message else code
        if code in _QUEUE_MISSING:
            raise ReplayError(f"{doing}: no such queue (check the URL, the region and the account)") from None
        if code in _DENIED:
            raise ReplayError(f"{doing}: access denied: {text}") from None
        if code in _BAD_CREDENTIALS:
            raise ReplayError(f"{doing}: AWS refused the credentials ({code}): sign in again") from None
        raise ReplayError(f"{doing}: {code}: {text}") from None
    except BotoCoreError as error:
        raise ReplayError(f"{doing}: {error}") from None
