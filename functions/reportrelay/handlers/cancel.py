"""Lambda handler that cancels a stopped job's report at its provider (see workflow.cancel_at_provider).

Invoked synchronously by the job API's cancel route: the API function holds no vendor credential, so
the vendor call is made by this workflow function, which does.
"""

from __future__ import annotations

from typing import Any

from reportrelay import workflow
from reportrelay.handlers import run_step
from reportrelay.observability import logger, tracer


@logger.inject_lambda_context(correlation_id_path="job_id")
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_step(workflow.cancel_at_provider, event, context)
