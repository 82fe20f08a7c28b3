"""Fetch in a container task (ECS Fargate): the very Fetch step, with no 15-minute limit.

The state machine starts it (``ecs:runTask.sync``) when Fetch in Lambda handed the transfer over: a report
that does not fit in one invocation, or a connection that asks for it (``fetch_in: container``). The
workflow state arrives in ``REPORTRELAY_FETCH_STATE``; what was stored is recorded in the job store, as
Fetch always does, and the state machine's next Fetch (in Lambda) recognises the object and goes on. Why
it failed, if it did, is recorded there too, for that Fetch to report.

The task runs the Lambda bundle itself (downloaded at start, see ``infra/container.py``), so the code is
the same; the entry point is ``python -m reportrelay.container``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

from reportrelay import workflow
from reportrelay.errors import InternalError, ReportRelayError
from reportrelay.names import FETCH_STATE_ENV
from reportrelay.observability import logger
from reportrelay.runtime import Runtime


def run(environ: Mapping[str, str] | None = None) -> int:
    """Fetch the job in ``REPORTRELAY_FETCH_STATE``; 0 when the report is stored, 1 when not."""
    env = os.environ if environ is None else environ
    state = json.loads(env[FETCH_STATE_ENV])
    job_id = str((state.get("job") or {}).get("job_id") or "")
    runtime = Runtime.from_env(env)
    try:
        fetched = workflow.fetch(state, runtime)
    except Exception as error:
        failure = (
            error
            if isinstance(error, ReportRelayError)
            else InternalError(
                f"unexpected {type(error).__name__} in the container fetch; see the task's log"
            )
        )
        logger.exception("container fetch failed", extra={"job_id": job_id, "error_code": failure.code})
        if runtime.jobs is not None and job_id:
            runtime.jobs.record(job_id, {"container_error": {"code": failure.code, "message": str(failure)}})
        return 1
    if not fetched["job"].get("object"):  # a single-use result lost here is not generated again
        message = fetched["job"].get("message") or "the report could not be stored"
        if runtime.jobs is not None and job_id:
            runtime.jobs.record(job_id, {"container_error": {"code": "DownloadFailed", "message": message}})
        return 1
    logger.info("container fetch stored the report", extra={"job_id": job_id})
    return 0


if __name__ == "__main__":
    sys.exit(run())
