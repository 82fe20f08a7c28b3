"""Lambda handler: EventBridge Scheduler's target. Fills in the schedule's date window and starts the job.

The window has to be worked out when the schedule fires ("last month" moves), which Scheduler cannot
do, so Scheduler invokes this function with the schedule's template (see ``reportrelay.schedules``) and
this function starts the state machine with the concrete request. The job id comes from the schedule
and the time the run was due, so a retried invocation finds the job already started instead of
starting it twice.

Environment: ``REPORTRELAY_STATE_MACHINE_ARN``, the state machine to start (set by CDK).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from reportrelay.awsclients import aws_client
from reportrelay.errors import ConfigurationError
from reportrelay.jobs import execution_arn_for, jobs_from_env, started_fields
from reportrelay.names import STATE_MACHINE_ARN_ENV
from reportrelay.observability import logger, tracer
from reportrelay.schedules import ScheduledJob, scheduled_job


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    job = scheduled_job(event, now=datetime.now(UTC))
    logger.set_correlation_id(job.job_id)
    logger.append_keys(job_id=job.job_id)
    execution_arn = start_job(job, _state_machine_arn())
    _record_in_job_store(job, execution_arn, owner=f"schedule:{event.get('schedule')}")
    return {"job_id": job.job_id, "execution_arn": execution_arn}


def _record_in_job_store(job: ScheduledJob, execution_arn: str, *, owner: str) -> None:
    """Let ``GET /reports`` show scheduled jobs from the start (when the deployment has a job store).

    Recorded after the start, so a job is never listed that has no execution; the workflow's own records
    fill in its state. A store that fails costs the listing an early entry, never the report.
    """
    store = jobs_from_env()
    if store is None:
        return
    try:
        store.record(job.job_id, {**started_fields("schedule", job.request, execution_arn), "owner": owner})
    except Exception as error:
        logger.warning("scheduled job not recorded in the job store", extra={"error": type(error).__name__})


def start_job(job: ScheduledJob, state_machine_arn: str, client: Any = None) -> str:
    """Start the job's execution (named by its job id); an already started one is not started again."""
    if client is None:
        client = aws_client("stepfunctions")
    try:
        execution_arn: str = client.start_execution(
            stateMachineArn=state_machine_arn, name=job.job_id, input=json.dumps(job.request)
        )["executionArn"]
    except client.exceptions.ExecutionAlreadyExists:
        execution_arn = execution_arn_for(state_machine_arn, job.job_id)
        logger.info("scheduled job already started", extra={"execution_arn": execution_arn})
        return execution_arn
    logger.info(
        "scheduled job started",
        extra={"execution_arn": execution_arn, "first": str(job.window.first), "last": str(job.window.last)},
    )
    return execution_arn


def _state_machine_arn() -> str:
    arn = os.environ.get(STATE_MACHINE_ARN_ENV)
    if not arn:
        raise ConfigurationError(
            f"{STATE_MACHINE_ARN_ENV} is not set: the scheduler has no workflow to start"
        )
    return arn
