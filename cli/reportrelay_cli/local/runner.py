"""Run one job through the state machine on emulated AWS and bring the stored file home."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportrelay_cli.local.aws import LocalAws


@dataclass(frozen=True)
class Progress:
    state: str
    status: str | None
    progress: float | None
    polls: int
    elapsed_seconds: float
    message: str | None = None


@dataclass
class JobOutcome:
    execution_arn: str
    execution_status: str
    detail_type: str | None
    detail: dict[str, Any] | None
    local_file: Path | None
    seconds: float

    @property
    def ready(self) -> bool:
        return self.detail_type == "Report Ready"


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C while a started job was being followed: the job may still be queued at the provider."""

    def __init__(self, job_id: str, execution_arn: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id
        self.execution_arn = execution_arn


def run_job(
    aws: LocalAws,
    request: Any,
    *,
    out_dir: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    job_id: str | None = None,
    poll_interval: float = 0.2,
) -> JobOutcome:
    """Start the job, follow its execution until it ends, then copy the stored report to ``out_dir``.

    Ctrl-C while following the job raises JobInterrupted, naming the job that was started.
    """
    started = time.monotonic()
    job_id = job_id or str(uuid.uuid4())
    execution_arn = aws.start(request, job_id)
    last: Progress | None = None
    sfn = aws.client("stepfunctions")
    try:
        while True:
            description = sfn.describe_execution(executionArn=execution_arn)
            if on_progress is not None:
                current = _progress(sfn, execution_arn, time.monotonic() - started)
                if current is not None and current != last and _changed(current, last):
                    on_progress(current)
                    last = current
            if description["status"] != "RUNNING":
                break
            time.sleep(poll_interval)
    except KeyboardInterrupt:
        # The emulation goes with this process: stop the execution, so no step runs once it is gone.
        # Only the local execution: what the provider was asked to make is left to the provider.
        with contextlib.suppress(Exception):
            sfn.stop_execution(executionArn=execution_arn, error="Interrupted", cause="Ctrl-C")
        raise JobInterrupted(job_id, execution_arn) from None
    event = completion_event(aws, execution_arn)
    local_file = None
    detail = event["detail"] if event else None
    if event and event["detail-type"] == "Report Ready" and out_dir is not None:
        local_file = _download(aws, detail["object"], out_dir)
    return JobOutcome(
        execution_arn=execution_arn,
        execution_status=description["status"],
        detail_type=event["detail-type"] if event else None,
        detail=detail,
        local_file=local_file,
        seconds=time.monotonic() - started,
    )


def _changed(current: Progress, last: Progress | None) -> bool:
    if last is None:
        return True
    return (current.state, current.status, current.progress, current.polls) != (
        last.state,
        last.status,
        last.progress,
        last.polls,
    )


def _progress(sfn: Any, execution_arn: str, elapsed: float) -> Progress | None:
    """The latest state entered, and the job's status as the last submit or check left it."""
    events = sfn.get_execution_history(executionArn=execution_arn)["events"]
    events.sort(key=lambda event: event["id"], reverse=True)
    entered = next((e for e in events if e["type"].endswith("StateEntered")), None)
    exited = next(
        (
            e
            for e in events
            if e["type"] == "TaskStateExited" and e["stateExitedEventDetails"]["name"] in ("Submit", "Check")
        ),
        None,
    )
    if entered is None:
        return None
    job: dict[str, Any] = {}
    if exited is not None:
        job = json.loads(exited["stateExitedEventDetails"].get("output") or "{}").get("job") or {}
    return Progress(
        state=entered["stateEnteredEventDetails"]["name"],
        status=job.get("status"),
        progress=job.get("progress"),
        polls=job.get("polls", 0),
        elapsed_seconds=elapsed,
        message=job.get("message"),
    )


def completion_event(aws: LocalAws, execution_arn: str) -> dict[str, Any] | None:
    """The event the execution announced, allowing a moment for it to reach the tap queue."""
    for _ in range(50):
        for event in aws.events():
            if execution_arn in event.get("resources", []):
                return event
        time.sleep(0.05)
    return None


def _download(aws: LocalAws, stored: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / stored["filename"]
    aws.client("s3").download_file(stored["bucket"], stored["key"], str(target))
    return target
