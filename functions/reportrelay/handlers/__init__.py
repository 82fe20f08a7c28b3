"""Lambda entry points, one module per workflow step, and the error boundary they share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reportrelay.awsclients import unavailable
from reportrelay.errors import InternalError, ReportRelayError
from reportrelay.observability import logger
from reportrelay.runtime import Runtime

Step = Callable[[dict[str, Any], Runtime], dict[str, Any]]


def ends_at(context: Any) -> float | None:
    """When Lambda will stop this invocation, on the ``time.monotonic()`` clock (None without a context)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return time.monotonic() + remaining() / 1000 if callable(remaining) else None


def run_step(step: Step, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run one step; errors of our own pass through by name, anything else becomes InternalError.

    An AWS service that throttled or failed (S3, Secrets Manager, KMS, ...) becomes ``AwsUnavailable``,
    which the state machine retries. Other unexpected exceptions are logged here with their traceback and
    replaced by a message that names only their type, so nothing they carried (a URL, a header) reaches
    the execution history or events.
    """
    try:
        runtime = Runtime.from_env()
        runtime.ends_at = ends_at(context)
        runtime.memory_mb = int(getattr(context, "memory_limit_in_mb", 0) or 0)
        runtime.step_started = time.monotonic()
        return step(event, runtime)
    except ReportRelayError as error:
        logger.info("step ended with an error", extra={"step": step.__name__, "error_code": error.code})
        raise
    except Exception as error:
        transient = unavailable(error)
        if transient is not None:
            logger.warning("an AWS service failed", extra={"step": step.__name__, "error": str(transient)})
            raise transient from None
        logger.exception("unexpected error", extra={"step": step.__name__})
        request_id = getattr(context, "aws_request_id", "unknown")
        raise InternalError(
            f"unexpected {type(error).__name__} in the {step.__name__} step; "
            f"see the function's log for request id {request_id}"
        ) from None
