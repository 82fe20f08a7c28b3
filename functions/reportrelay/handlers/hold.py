"""Lambda handler that holds a provider's long generation request open (see workflow.hold).

Invoked asynchronously by the submit step for providers whose report is generated only while one
request stays open (Metric Insights' ``run``); the state machine meanwhile polls with the check step.
"""

from __future__ import annotations

from typing import Any

from reportrelay import workflow
from reportrelay.handlers import run_step
from reportrelay.observability import logger, tracer


@logger.inject_lambda_context(correlation_id_path="job.job_id")
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_step(workflow.hold, event, context)
