"""Lambda handler for the submit step (see reportrelay.workflow.submit)."""

from __future__ import annotations

from typing import Any

from reportrelay import workflow
from reportrelay.handlers import run_step
from reportrelay.observability import logger, tracer


@logger.inject_lambda_context(correlation_id_path="job.job_id")
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_step(workflow.submit, event, context)
