"""Lambda handler for the WaitForSlot task (see reportrelay.workflow.wait_for_slot).

Invoked by the state machine with the task's token (``lambda:invoke.waitForTaskToken``): it puts the job
in its connection's line and returns; the task waits until a job that gives a slot back sends that token.
"""

from __future__ import annotations

from typing import Any

from reportrelay import workflow
from reportrelay.handlers import run_step
from reportrelay.observability import logger, tracer


@logger.inject_lambda_context(correlation_id_path="state.job.job_id")
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_step(workflow.wait_for_slot, event, context)
