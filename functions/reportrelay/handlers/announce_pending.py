"""Lambda handler that announces the outcomes waiting in the job table's outbox (see reportrelay.outbox).

Invoked every five minutes by an EventBridge rule (with its Scheduled Event). ``{"after_seconds": N}``
sweeps younger announcements too (the local runner's ``LocalAws.sweep`` sends it; the rule never does).
"""

from __future__ import annotations

import time
from typing import Any

from reportrelay import outbox
from reportrelay.awsclients import aws_client
from reportrelay.errors import ConfigurationError
from reportrelay.jobs import jobs_from_env
from reportrelay.observability import logger, metrics, tracer
from reportrelay.runtime import Settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    store = jobs_from_env()
    if store is None:
        raise ConfigurationError("REPORTRELAY_JOBS_TABLE is not set: there is no outbox to sweep")
    after = event.get("after_seconds") if isinstance(event, dict) else None
    swept = outbox.sweep(
        store,
        aws_client("events"),
        Settings.from_env().event_bus,
        now=time.time(),
        after_seconds=float(after) if isinstance(after, int | float) else outbox.SWEEP_AFTER_SECONDS,
    )
    return swept.to_dict()
