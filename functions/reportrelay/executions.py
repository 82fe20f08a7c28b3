"""The job API's AWS calls beyond the job store: the workflow's executions, the cancel function, and the
presigned links to stored reports.

``reportrelay.api`` holds the rules and words; this module only calls AWS and says what came back, in
terms the rules need (started or already there, the status a stop settled on, an object that is gone),
raising ``AwsCallFailed`` with the service's error code for anything else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reportrelay.awsclients import aws_client, aws_error_code
from reportrelay.observability import logger

#: What ``cancel_at_provider`` can say became of the report at the vendor.
AtProvider = Literal["cancelled", "unsupported", "failed", "not_queued"]
STOP_ATTEMPTS = 4
#: How long a stop may take to show in the execution's status (at once in AWS; a moment later in moto).
SETTLE_CHECKS, SETTLE_INTERVAL_SECONDS = 20, 0.1


class AwsCallFailed(Exception):
    """An AWS call the API depends on failed; ``code`` is the service's error code ("" when none)."""

    def __init__(self, code: str) -> None:
        super().__init__(code or "no error code")
        self.code = code


class StoredObjectGone(Exception):
    """The report's object is no longer in the bucket (its lifecycle rule expired it)."""


@dataclass(frozen=True)
class JobExecutions:
    """A job's workflow as the API drives it: Step Functions, the cancel function, S3 presigning."""

    state_machine_arn: str | None
    cancel_function: str | None
    client: Any = aws_client

    def start(self, job_id: str, document: Mapping[str, Any]) -> bool:
        """Start the job's execution, named by its id; False when it was started already (same name)."""
        try:
            self.client("stepfunctions").start_execution(
                stateMachineArn=self.state_machine_arn,
                name=job_id,
                input=json.dumps(document, sort_keys=True, separators=(",", ":")),
            )
        except Exception as error:
            if aws_error_code(error) == "ExecutionAlreadyExists":
                return False
            raise AwsCallFailed(aws_error_code(error)) from None
        return True

    def stop(self, execution_arn: str, error: str, cause: str) -> str | None:
        """Stop the execution; the status it settled on (ABORTED, or how it had ended by itself), None
        when it does not exist. An execution started a moment ago may not be stoppable yet: retried."""
        sfn = self.client("stepfunctions")
        attempt = 1
        while True:
            try:
                sfn.stop_execution(executionArn=execution_arn, error=error, cause=cause)
                return settled_status(sfn, execution_arn)
            except Exception as failure:
                if aws_error_code(failure) == "ExecutionDoesNotExist":
                    return None
                if attempt == STOP_ATTEMPTS:
                    raise AwsCallFailed(aws_error_code(failure)) from None
            time.sleep(0.2 * attempt)
            attempt += 1

    def describe(self, execution_arn: str) -> dict[str, Any] | None:
        """The execution's description; None when Step Functions cannot say (the caller keeps its record)."""
        try:
            described: dict[str, Any] = self.client("stepfunctions").describe_execution(
                executionArn=execution_arn
            )
        except Exception:
            return None
        return described

    def cancel_at_provider(self, job_id: str) -> AtProvider:
        """Ask the workflow's cancel function (it holds the vendor credentials; the API does not) to cancel
        the report at the vendor, and wait for its answer. Never raises."""
        if not self.cancel_function:
            logger.error(
                "no cancel function configured (REPORTRELAY_CANCEL_FUNCTION)", extra={"job_id": job_id}
            )
            return "failed"
        try:
            answer = self.client("lambda").invoke(
                FunctionName=self.cancel_function, Payload=json.dumps({"job_id": job_id}).encode()
            )
            result = json.loads(answer["Payload"].read() or b"{}")
        except Exception as error:
            logger.warning(
                "cancel function not invoked", extra={"job_id": job_id, "error": aws_error_code(error)}
            )
            return "failed"
        outcome = (
            result.get("at_provider")
            if isinstance(result, dict) and not answer.get("FunctionError")
            else None
        )
        return outcome if outcome in ("cancelled", "unsupported", "failed", "not_queued") else "failed"

    def presign(self, stored: Mapping[str, str], seconds: int) -> str:
        """A GET link to the stored object, signed now with SigV4 (KMS-encrypted objects need it), after
        checking the object is still there."""
        s3 = self.client("s3", signature_version="s3v4")
        try:
            s3.head_object(Bucket=stored["bucket"], Key=stored["key"])
        except Exception as error:
            if aws_error_code(error) in ("404", "NoSuchKey", "NotFound"):
                raise StoredObjectGone(stored["key"]) from None
            raise AwsCallFailed(aws_error_code(error)) from None
        url: str = s3.generate_presigned_url(
            "get_object", Params={"Bucket": stored["bucket"], "Key": stored["key"]}, ExpiresIn=seconds
        )
        return url


def settled_status(sfn: Any, execution_arn: str) -> str:
    """The execution's status once a stop has taken effect."""
    for _ in range(SETTLE_CHECKS):
        status: str = sfn.describe_execution(executionArn=execution_arn)["status"]
        if status != "RUNNING":
            return status
        time.sleep(SETTLE_INTERVAL_SECONDS)
    return status
