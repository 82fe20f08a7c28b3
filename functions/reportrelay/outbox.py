"""Every outcome announced, at least once: the job store is the outbox, EventBridge is told from there.

Whoever ends a job (the workflow's conclude step, the job API's cancel) records the outcome and its event
in one write (``DynamoDbJobs.finish(..., announcement=...)``), then calls ``announce``. A PutEvents that
fails, by an error or by ``FailedEntryCount`` > 0, leaves the announcement where it is; ``sweep`` (the
announce-pending function, every few minutes) sends whatever has waited too long, oldest first, and
reports the oldest wait as a metric, which raises an alarm past 15 minutes. An announcement leaves the
outbox only once EventBridge took it, and only if it is still the same event (by its id).

Delivery is at least once: a sweep can overlap a conclude that is still announcing, or an announcement
can be taken by EventBridge and its clearing fail. Every event's detail carries ``event_id``
(``<job id>/<READY|FAILED|CANCELLED>``, one outcome per job), the same on every attempt, so consumers
drop duplicates by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from reportrelay.awsclients import aws_error_code
from reportrelay.errors import ReportRelayError
from reportrelay.jobs import Announcement, DynamoDbJobs
from reportrelay.observability import logger, metrics
from reportrelay.timestamps import iso_timestamp, parse_timestamp

__all__ = [
    "EVENT_SOURCE",
    "Announcement",
    "OutcomeNotAnnounced",
    "SweepResult",
    "announce",
    "announcement",
    "event_id",
    "sweep",
]

EVENT_SOURCE = "reportrelay"
#: The sweep leaves younger announcements alone: their own conclude (or cancel) is most likely still on it.
SWEEP_AFTER_SECONDS = 120.0
SWEEP_LIMIT = 200


class OutcomeNotAnnounced(ReportRelayError):
    """Neither the job store (the outbox) nor the event bus took the outcome: nothing would announce it
    later, so the step fails for the state machine to run it again."""

    retryable = True


def event_id(job_id: str, outcome: str) -> str:
    """The outcome's stable event id: one job has one outcome (READY, FAILED or CANCELLED)."""
    return f"{job_id}/{outcome.upper()}"


def announcement(
    job_id: str,
    detail_type: str,
    detail: dict[str, Any],
    *,
    now: float,
    resources: tuple[str, ...] = (),
) -> Announcement:
    """The announcement of an outcome whose ``detail`` already carries its ``event_id``."""
    return Announcement(
        job_id=job_id,
        event_id=str(detail["event_id"]),
        detail_type=detail_type,
        detail=detail,
        since=iso_timestamp(now),
        resources=tuple(resource for resource in resources if resource),
    )


def announce(store: DynamoDbJobs | None, events_client: Any, bus: str | None, pending: Announcement) -> bool:
    """Put one announcement on the bus; True when EventBridge took it. Never raises.

    On success the announcement leaves the outbox (only if it is still the one waiting there); on failure
    it stays, with the attempt counted and the entry's error code kept, for ``sweep`` to send again.
    """
    entry: dict[str, Any] = {
        "Source": EVENT_SOURCE,
        "DetailType": pending.detail_type,
        "Detail": json.dumps(pending.detail),
    }
    if pending.resources:
        entry["Resources"] = list(pending.resources)
    if bus:
        entry["EventBusName"] = bus
    error = _put(events_client, entry)
    context = {"job_id": pending.job_id, "event_id": pending.event_id}
    if error is not None:
        logger.warning("event not announced; it waits in the outbox", extra={**context, "error": error})
        if store is not None:
            try:
                store.note_announce_failed(pending.job_id, pending.event_id, error)
            except ReportRelayError as problem:
                logger.warning("failed announcement not noted", extra={**context, "error": problem.code})
        return False
    logger.info("event announced", extra={**context, "detail_type": pending.detail_type})
    if store is not None:
        try:
            store.clear_announcement(pending.job_id, pending.event_id)
        except ReportRelayError as problem:
            # Sent, but still in the outbox: the sweep sends it again, and consumers drop the duplicate.
            logger.warning("announced event not cleared", extra={**context, "error": problem.code})
    return True


def _put(events_client: Any, entry: dict[str, Any]) -> str | None:
    """None when EventBridge took the entry, else what went wrong (an AWS error code or the entry's)."""
    try:
        answer = events_client.put_events(Entries=[entry])
    except Exception as error:
        return aws_error_code(error) or type(error).__name__
    if answer.get("FailedEntryCount", 0):
        failed = (answer.get("Entries") or [{}])[0]
        return str(failed.get("ErrorCode") or "FailedEntry")
    return None


@dataclass(frozen=True)
class SweepResult:
    announced: int
    failed: int
    waiting: int  # still in the outbox afterwards (failed, or too young to sweep)
    oldest_pending_seconds: float  # how long the oldest announcement has waited (0: none waits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "announced": self.announced,
            "failed": self.failed,
            "waiting": self.waiting,
            "oldest_pending_seconds": self.oldest_pending_seconds,
        }


def sweep(
    store: DynamoDbJobs,
    events_client: Any,
    bus: str | None,
    *,
    now: float,
    after_seconds: float = SWEEP_AFTER_SECONDS,
    limit: int = SWEEP_LIMIT,
) -> SweepResult:
    """Announce every announcement that has waited ``after_seconds`` or more, oldest first.

    Publishes ``OldestPendingAnnouncementSeconds`` (what waited longest before this sweep; 0 when nothing
    waits), ``AnnouncementsSwept`` and ``AnnouncementsFailed``. A job store that cannot be read raises
    (the function's errors alarm); a put that fails does not (it stays pending, and its age alarms).
    """
    waiting = store.pending_announcements(limit=limit)
    oldest = max((now - (parse_timestamp(each.since) or now) for each in waiting), default=0.0)
    announced = failed = 0
    for pending in waiting:
        if now - (parse_timestamp(pending.since) or now) < after_seconds:
            break  # oldest first: the rest are younger still
        if announce(store, events_client, bus, pending):
            announced += 1
        else:
            failed += 1
    metrics.add_metric(name="OldestPendingAnnouncementSeconds", unit=MetricUnit.Seconds, value=oldest)
    metrics.add_metric(name="AnnouncementsSwept", unit=MetricUnit.Count, value=announced)
    metrics.add_metric(name="AnnouncementsFailed", unit=MetricUnit.Count, value=failed)
    result = SweepResult(announced, failed, len(waiting) - announced, round(max(oldest, 0.0), 3))
    logger.info("outbox swept", extra=result.to_dict())
    return result
