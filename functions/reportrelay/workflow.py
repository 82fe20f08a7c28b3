"""The steps of a job, one function each, called by the Lambda handlers.

Every step takes the workflow state ``{"request": {...}, "job": {...}}`` and returns it updated. The state
machine decides the order; these functions decide what each step means. The state only ever holds ids,
timestamps and small handles: never a secret and never report content.

Each step also tells the job's story as it goes (``reportrelay.activity``, read by ``GET
/reports/{id}/events``): what it did, each wait, every retry of its HTTP client (through the recorder it
hands the client) and of itself by the state machine (``records_retries``), and restarts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from reportrelay import costs, errors, objectkeys, outbox
from reportrelay.activity import (
    Recorder,
    cause_words,
    check_words,
    failed_words,
    queued_words,
    restart_words,
    seconds_words,
    stored_words,
)
from reportrelay.awsclients import aws_error_code
from reportrelay.config import JobRequest, parse_job_request
from reportrelay.errors import (
    BadRequest,
    ConfigurationError,
    DeadlineExceeded,
    DownloadFailed,
    DownloadInterrupted,
    InternalError,
    ProviderAuthFailed,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ReportCancelled,
    ReportGenerationFailed,
    ReportRelayError,
    SubmitUncertain,
    TransferOutOfTime,
)
from reportrelay.httpclient import ProviderHttp
from reportrelay.jobs import (
    INTENT_NOT_QUEUED,
    INTENT_QUEUED,
    DynamoDbJobs,
    Job,
    SubmitIntent,
    duration_key,
    outcome_fields,
    progress_fields,
)
from reportrelay.observability import logger, metrics
from reportrelay.poll_policy import Expected, expected_window, next_wait_seconds
from reportrelay.providers import open_provider, provider_class
from reportrelay.providers.base import Handle, Provider, ReportState, ReportStatus, ResultStream, ResumeFrom
from reportrelay.runtime import Runtime
from reportrelay.slots import Waiter
from reportrelay.timestamps import iso_timestamp, parse_timestamp
from reportrelay.transfer import (
    Checkpoint,
    ObjectExists,
    PendingObject,
    Resumption,
    StoredObject,
    TransferPaused,
    abandon,
    restore,
    same_checksum,
    stream_to_s3,
)

State = dict[str, Any]


MAX_RESTARTS = 2
WAITING_FOR_SLOT = "WAITING_FOR_SLOT"
SLOT_WAKE_SECONDS = 900
"""The longest a job waits in line before it looks again itself: the safety net under the hand-over, for a
holder that died without giving its slot back (its lease runs out) or a hand-over that could not tell."""
HISTORY_EVENT_LIMIT = 25_000
"""A Standard execution's history holds at most this many events; a job that would need more goes on in a
fresh execution (``_continued``)."""
HISTORY_EVENTS_AT_START = 20  # Begin, Accept, Submit (its retries aside), IsReportReady
HISTORY_EVENTS_PER_CHECK = 12
"""WaitForReport (entered, exited), Check (entered, scheduled, started, succeeded, exited), IsReportReady
(entered, exited): 9; with room for a retried Check's failed attempt."""
HISTORY_EVENTS_SPARE = 500  # for what follows the last check: Fetch over invocations, Conclude, retries
WAITER_GONE = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
"""What Step Functions answers to a token whose task no longer waits (it timed out, or was stopped)."""


def metered(
    transitions: Callable[[State], int], *, stores: bool = False
) -> Callable[[Callable[[State, Runtime], State]], Any]:
    """Add what the step used to the job's usage (``reportrelay.costs``): the state transitions it takes
    (``transitions`` of its input), its invocation and GB-seconds, and, for the step that ``stores``, the
    S3 requests it made (only that step opens an S3 client)."""

    def wrap(step: Callable[[State, Runtime], State]) -> Callable[[State, Runtime], State]:
        @functools.wraps(step)
        def run(state: State, runtime: Runtime) -> State:
            started = time.monotonic()
            counting = costs.counting_s3(runtime.s3) if stores else contextlib.nullcontext(Counter())
            with counting as calls:
                result = step(state, runtime)
            job = result.get("job")
            if not isinstance(job, dict):
                return result
            used = _invocation(runtime, started, transitions(state))
            stored, before = job.get("object"), (state.get("job") or {}).get("object")
            if isinstance(stored, dict) and not before:
                used["s3_bytes_stored"] = stored.get("size") or 0
            return {**result, "job": costs.add(job, **used, **costs.s3_usage(calls))}

        return run

    return wrap


def _invocation(runtime: Runtime, started: float, transitions: int) -> dict[str, float]:
    seconds = time.monotonic() - started
    return {
        "state_transitions": transitions,
        "lambda_invocations": 1,
        "lambda_gb_seconds": seconds * runtime.memory_mb / 1024,
    }


def _submit_transitions(state: State) -> int:
    """Begin, Accept, Submit and IsReportReady the first time; Submit and IsReportReady again after a
    restart, and WaitForSlot too after a wait for a slot."""
    job = state.get("job") if isinstance(state.get("job"), dict) else {}
    if not job.get("usage"):
        return 4
    return 3 if job.get("status") == WAITING_FOR_SLOT else 2


def records_progress(step: Callable[[State, Runtime], State]) -> Callable[[State, Runtime], State]:
    """After the step, note how far the job got in the job store (when the deployment has one)."""

    @functools.wraps(step)
    def recorded(state: State, runtime: Runtime) -> State:
        result = step(state, runtime)
        _record(runtime, result)
        return result

    return recorded


class StepRetry(NamedTuple):
    """One Retry of a Task state: the errors it takes, and its IntervalSeconds, MaxAttempts, BackoffRate
    and MaxDelaySeconds."""

    errors: frozenset[str]
    interval: float
    max_attempts: int
    rate: float
    max_delay: float


_VENDOR_TROUBLE = frozenset(
    {"ProviderUnavailable", "ProviderServerError", "ProviderTimeout", "ProviderThrottled"}
)
#: The state machine's Retry of each step for the errors a vendor causes, as statemachines/report.asl.json
#: has them (a test holds the two together).
STEP_RETRIES: dict[str, StepRetry] = {
    "Submit": StepRetry(frozenset({"ProviderThrottled", "ProviderUnavailable"}), 5, 5, 2, 300),
    "Check": StepRetry(_VENDOR_TROUBLE, 5, 6, 2, 300),
    "Fetch": StepRetry(_VENDOR_TROUBLE | {"DownloadInterrupted"}, 2, 4, 3, 300),
}


def records_retries(
    name: str,
) -> Callable[[Callable[[State, Runtime], State]], Callable[[State, Runtime], State]]:
    """A step that fails in a way the state machine retries says so in the job's activity, with the
    attempt numbers and the longest the state machine waits before it (its Retry adds jitter)."""

    def decorate(step: Callable[[State, Runtime], State]) -> Callable[[State, Runtime], State]:
        @functools.wraps(step)
        def recorded(state: State, runtime: Runtime) -> State:
            try:
                return step(state, runtime)
            except Exception as error:
                _record_step_retry(name, state, runtime, error)
                raise

        return recorded

    return decorate


def _record_step_retry(name: str, state: State, runtime: Runtime, error: Exception) -> None:
    rule = STEP_RETRIES.get(name)
    recorder = _recorder(runtime, state, name)
    if rule is None or not isinstance(error, ReportRelayError) or error.code not in rule.errors:
        return
    if recorder.store is None:
        return
    try:
        failures = recorder.store.count_step_failure(recorder.job_id, name, _visit(state))
    except Exception as failure:
        logger.warning(
            "step failure not counted", extra={"job_id": recorder.job_id, "error": _named(failure)}
        )
        return
    if failures > rule.max_attempts:
        return  # the state machine gives up: Conclude records why the job failed
    wait = min(rule.max_delay, rule.interval * rule.rate ** (failures - 1))
    attempt, attempts = failures + 1, rule.max_attempts + 1
    within = seconds_words(wait)
    message = f"{cause_words(error)}, retrying {name} within {within} (attempt {attempt} of {attempts})"
    recorder.retry(message, attempt, attempts, wait)


def _visit(state: State) -> str:
    """What tells one run of a step from the next: the state machine's Retry sends the same input again."""
    job = state.get("job") if isinstance(state.get("job"), dict) else {}
    moves = [job.get(name) for name in ("status", "polls", "restarts", "slot_waits", "queued_at")]
    moves.append((job.get("transfer") or {}).get("invocations"))
    return hashlib.sha256(json.dumps(moves, default=str).encode()).hexdigest()[:16]


def _recorder(runtime: Runtime, state: State, step: str) -> Recorder:
    job = state.get("job") if isinstance(state.get("job"), dict) else {}
    return Recorder(runtime.jobs, job.get("job_id"), step, runtime.clock)


def _opened(provider: Provider, recorder: Recorder | None) -> Provider:
    """The adapter, its HTTP client telling the recorder of every retry."""
    http = getattr(provider, "http", None)
    if recorder is not None and isinstance(http, ProviderHttp):
        http.on_retry = recorder.http_retry
    return provider


def _record(runtime: Runtime, state: State) -> None:
    """The job API reads progress from the store; a store that fails must never fail the report."""
    store = runtime.jobs
    if store is None:
        return
    job_id, fields, accepted_at = progress_fields(state)
    if not job_id:
        return
    try:
        store.record(job_id, fields, created_at=accepted_at)
    except Exception as error:
        logger.warning("job progress not recorded", extra={"job_id": job_id, "error": _named(error)})


def _record_outcome(
    runtime: Runtime, outcome: dict[str, Any], state: State
) -> tuple[outbox.Announcement | None, bool]:
    """Record the outcome and its announcement in one write: (what to announce, whether it is in the outbox).

    A job that had finished before (cancelled, or this step run again after it recorded) announces what
    still waits in its outbox, if anything does. A store that fails or is missing does not fail the
    report: the outcome is then announced directly, with nothing to fall back on (see ``_announce``).
    """
    detail = outcome["detail"]
    job_id = detail.get("job_id")
    pending = outbox.announcement(
        str(job_id or ""),
        outcome["detail_type"],
        detail,
        now=runtime.clock(),
        resources=(str(state.get("execution_arn") or ""),),
    )
    store = runtime.jobs
    if store is None or not job_id:
        return pending, False
    accepted_at = (state.get("job") or {}).get("accepted_at")
    try:
        if store.finish(job_id, outcome_fields(detail), created_at=accepted_at, announcement=pending):
            if detail.get("error"):  # said once, and never after a cancel the job API recorded first
                _recorder(runtime, state, "Conclude").state(failed_words(detail["error"]["message"]))
            return pending, True
        logger.info("job had already finished (cancelled, or concluded before)", extra={"job_id": job_id})
        return store.pending_announcement(job_id), True
    except Exception as error:
        logger.warning("job outcome not recorded", extra={"job_id": job_id, "error": _named(error)})
        return pending, False


def _announce(runtime: Runtime, pending: outbox.Announcement | None, in_outbox: bool) -> None:
    """Put the outcome on the bus. From the outbox, a failed put is the sweep's to send again; without it,
    the step fails (OutcomeNotAnnounced) for the state machine to run it again."""
    if pending is None:
        return
    events = runtime.client("events")
    store = runtime.jobs if in_outbox else None
    if outbox.announce(store, events, runtime.settings.event_bus, pending) or in_outbox:
        return
    raise outbox.OutcomeNotAnnounced(
        f"the outcome of job {pending.job_id} could be neither recorded in the job store nor put on the "
        "event bus"
    )


def _named(error: Exception) -> str:
    """Our own errors' messages are safe to log; anything else is named by its type only."""
    return f"{error.code}: {error}" if isinstance(error, ReportRelayError) else type(error).__name__


@records_progress
@records_retries("Submit")
@metered(_submit_transitions)
def submit(state: State, runtime: Runtime) -> State:
    """Validate the request and ask the provider for the report (exactly once per attempt)."""
    recorder = _recorder(runtime, state, "Submit")
    submitted = _submit(state, runtime, recorder)
    job = submitted["job"]
    if job.get("status") == WAITING_FOR_SLOT:
        return submitted  # the line is joined, and said so, by wait_for_slot
    recorder.state(queued_words(job.get("handle"), _sealed_fields(job)))
    if job.get("status") == ReportState.READY.value:
        recorder.state("ready; downloading")
    else:
        recorder.wait(f"first check in {seconds_words(job['wait_seconds'])}", job["wait_seconds"])
    return submitted


def _sealed_fields(job: dict[str, Any]) -> frozenset[str]:
    """The handle's sealed fields (each a dict holding its ciphertext): never named in the activity."""
    return frozenset(name for name, value in (job.get("handle") or {}).items() if isinstance(value, dict))


def _submit(state: State, runtime: Runtime, recorder: Recorder) -> State:
    request = parse_job_request(state.get("request"))
    connection = runtime.connections.get(request.connection)
    provider_class(connection.provider).validate(request)
    now = runtime.clock()
    earlier = state.get("job") or {}  # set by Accept; more on a restart or after waiting for a slot
    accepted_at = parse_timestamp(earlier.get("accepted_at")) or now
    deadline_seconds = request.deadline_seconds or connection.deadline_seconds
    job = {
        **earlier,
        "connection": request.connection,
        "provider": connection.provider,
        "deadline_at": earlier.get("deadline_at") or iso_timestamp(accepted_at + deadline_seconds),
    }
    if connection.max_concurrent_jobs and job.get("slot") is None:
        job["slot_limit"] = connection.max_concurrent_jobs  # for the steps that know no connections
        slot = _take_slot(job, connection.max_concurrent_jobs, runtime, now)
        if slot is None:
            return {**state, "job": _waiting_for_slot(job, now)}
        job["slot"] = slot
    provider = _opened(
        open_provider(
            connection, runtime.secrets, runtime.claims, ends_at=runtime.ends_at, clock=runtime.clock
        ),
        recorder,
    )
    job = {**job, "handle": {}, "polls": job.get("polls", 0), "queued_at": iso_timestamp(now)}
    expected = _expected(runtime, request)
    if expected is not None:
        job["expected"] = expected.to_dict()
    store = runtime.jobs
    if store is None:
        # No job table, no intent: a run of this step that dies after the queue call cannot be told
        # from one that never made it, and the state machine's retry may queue the report again.
        return _queue(state, job, request, provider, runtime, now)
    return _submit_once(state, job, request, provider, runtime, store, now)


# ---- submitting exactly once: the submit intent (reportrelay.jobs.SubmitIntent)


def _submit_once(
    state: State,
    job: dict[str, Any],
    request: JobRequest,
    provider: Provider,
    runtime: Runtime,
    store: DynamoDbJobs,
    now: float,
) -> State:
    """Queue the report at most once per attempt, however often the state machine runs this step.

    An attempt (the job's restart count) opens an intent before anything else, notes "queuing" with the
    adapter's hint right before the queue call, and closes it when it knows: "not queued" (the call
    certainly did nothing) or "queued" with the step's result. A run that finds its attempt's intent
    already open learned nothing of its predecessor's queue call: it returns a closed intent's result,
    queues when the predecessor never got to the call, and otherwise asks the provider to find the
    report (``find_submitted``), failing with SubmitUncertain when it cannot.
    """
    job_id, attempt = job["job_id"], int(job.get("restarts", 0))
    earlier = store.open_intent(job_id, attempt, iso_timestamp(now))
    if earlier is not None and earlier.outcome == INTENT_QUEUED and earlier.result:
        logger.info("submit re-entered after it had queued the report", extra={"job_id": job_id})
        return {**state, "job": earlier.result}
    if earlier is not None and earlier.may_have_queued:
        logger.warning("submit re-entered after a queue call of unknown outcome", extra={"job_id": job_id})
        return _reconcile(state, job, request, provider, runtime, store, now, earlier)
    marked: list[str] = []

    def mark_queuing(hint: Handle) -> None:
        at = iso_timestamp(runtime.clock())
        if not store.mark_queuing(job_id, attempt, at, hint):
            raise SubmitUncertain(
                f"another run of submit attempt {attempt} of job {job_id} reached the queue call first; "
                "this one does not queue the report again"
            )
        marked.append(at)

    provider.before_queue = mark_queuing
    try:
        submitted = _queue(state, job, request, provider, runtime, now)
    except Exception as error:
        if not marked or _certainly_not_queued(error):
            _close_intent(store, job_id, attempt, INTENT_NOT_QUEUED)
        raise
    _close_intent(store, job_id, attempt, INTENT_QUEUED, submitted["job"])
    return submitted


def _queue(
    state: State, job: dict[str, Any], request: JobRequest, provider: Provider, runtime: Runtime, now: float
) -> State:
    status = provider.submit(request)
    logger.info("report queued", extra={"job_id": job.get("job_id"), "provider": provider.key})
    submitted = _with_status(state, job, status, runtime, provider, now)
    if provider.holds_request:
        provider.queuing({})  # the held request is what makes the provider generate the report
        runtime.start_holder(submitted)
    return submitted


def _reconcile(
    state: State,
    job: dict[str, Any],
    request: JobRequest,
    provider: Provider,
    runtime: Runtime,
    store: DynamoDbJobs,
    now: float,
    intent: SubmitIntent,
) -> State:
    """Find the report an earlier run of this attempt may have queued, or fail saying what to look for."""
    queuing_at = intent.queuing_at or intent.opened_at
    status = provider.find_submitted(request, intent.hint or {}, parse_timestamp(queuing_at) or now)
    if status is None:
        where = provider.lost_submission(request)
        raise SubmitUncertain(
            f"a report may have been queued at {provider.key} (connection '{request.connection}') around "
            f"{queuing_at} for report {json.dumps(request.report, sort_keys=True)} ({request.format}): "
            "a run of the submit step reached the queue call and ended before it learned the outcome, and "
            f"the provider could not show whether it queued one; to avoid a second report, none is queued "
            f"now. {where[:1].upper()}{where[1:]}"
        )
    logger.info("found the report an earlier submit queued", extra={"job_id": job["job_id"]})
    submitted = _with_status(state, {**job, "queued_at": queuing_at}, status, runtime, provider, now)
    _close_intent(store, job["job_id"], intent.attempt, INTENT_QUEUED, submitted["job"])
    return submitted


#: After the queue call was made, these prove the provider queued nothing: it refused the request (4xx,
#: 429, 503), or the request never reached it (no connection, no name, no TLS session).
_NOTHING_QUEUED = (
    ProviderThrottled,
    ProviderUnavailable,
    ProviderRejected,
    ProviderAuthFailed,
    BadRequest,
    ConfigurationError,
)


def _certainly_not_queued(error: Exception) -> bool:
    """ProviderServerError (a 500, a broken connection), ProviderTimeout (no answer), ProviderProtocolError
    (an answer not understood) and anything unexpected leave the intent open: the call may have queued."""
    return isinstance(error, _NOTHING_QUEUED)


def _close_intent(
    store: DynamoDbJobs, job_id: str, attempt: int, outcome: str, result: dict[str, Any] | None = None
) -> None:
    """Best effort: an intent left open only makes a later re-entry look at the provider (or fail safe)."""
    try:
        store.close_intent(job_id, attempt, outcome, result=result)
    except ReportRelayError as error:
        logger.warning("submit intent not closed", extra={"job_id": job_id, "error": _named(error)})


def _take_slot(job: dict[str, Any], limit: int, runtime: Runtime, now: float) -> int | None:
    deadline = parse_timestamp(job["deadline_at"])
    if now >= deadline:
        raise DeadlineExceeded(
            f"the job waited for one of the {limit} concurrent-job slots of connection '{job['connection']}' "
            f"until its deadline {job['deadline_at']}; nothing was queued at the provider"
        )
    return runtime.slots.take(job["connection"], limit, job["job_id"], now=now, lease_until=deadline)


def _waiting_for_slot(job: dict[str, Any], now: float) -> dict[str, Any]:
    """Wait in line: ``wait_seconds`` is only the safety net (the WaitForSlot task's timeout), at most
    ``SLOT_WAKE_SECONDS`` and never past the deadline; a slot handed over ends the wait at once."""
    waits = job.get("slot_waits", 0) + 1
    seconds_left = parse_timestamp(job["deadline_at"]) - now
    wait = max(1, min(SLOT_WAKE_SECONDS, math.ceil(seconds_left)))
    return {**job, "status": WAITING_FOR_SLOT, "slot_waits": waits, "wait_seconds": wait}


def wait_for_slot(event: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """Join the connection's line with the WaitForSlot task's token, then hand over any free slot: one
    given back just before the job joined would otherwise wait for the next job to finish."""
    state, token = event["state"], str(event["task_token"])
    job = state["job"]
    limit = int(job["slot_limit"])
    waiter = Waiter(job["job_id"], token, parse_timestamp(job["deadline_at"]))
    place = runtime.slots.join_line(job["connection"], waiter)
    _recorder(runtime, state, "WaitForSlot").wait(
        f"all {limit} concurrent-job slots of connection '{job['connection']}' are taken: number {place} "
        "in line, handed a slot as soon as one is given back",
        job["wait_seconds"],
    )
    handed = _hand_over_slots(job["connection"], limit, runtime)
    return {"place": place, "handed": len(handed)}


def _hand_over_slots(connection_name: str, limit: int, runtime: Runtime) -> list[tuple[str, int]]:
    sfn = runtime.client("stepfunctions")

    def send(waiter: Waiter, slot: int) -> bool:
        try:
            sfn.send_task_success(taskToken=waiter.token, output=json.dumps(slot))
        except Exception as error:
            if aws_error_code(error) in WAITER_GONE:
                return False
            # Kept for it: the waiter finds the slot its own when its safety-net timeout wakes it.
            logger.warning("slot handed over but not told", extra={"job_id": waiter.job_id})
        return True

    handed = runtime.slots.hand_over(connection_name, limit, now=runtime.clock(), send=send)
    for job_id, slot in handed:
        logger.info("slot handed over", extra={"job_id": job_id, "slot": slot})
    return handed


def hold(state: State, runtime: Runtime) -> State:
    """Keep the provider's long generation request open until it answers (asynchronous holder)."""
    request, job, provider, handle = resume(state, runtime)
    try:
        provider.hold(request, handle)
    except ReportRelayError as error:
        # The check step learns the outcome from the provider; this is only for the operator.
        logger.warning(
            "held request ended with an error", extra={"job_id": job.get("job_id"), "error": str(error)}
        )
    return state


@records_progress
@records_retries("Check")
@metered(lambda state: 3)  # WaitForReport, Check, IsReportReady
def check(state: State, runtime: Runtime) -> State:
    """Ask where the report stands; work out how long to wait before asking again."""
    recorder = _recorder(runtime, state, "Check")
    checked, throttled = _check(state, runtime, recorder)
    job = checked["job"]
    wait = float(job.get("wait_seconds") or 0)
    if throttled is not None:
        recorder.wait(
            f"{cause_words(throttled)} to the status check, next check in {seconds_words(wait)}", wait
        )
    elif job.get("status") == ReportState.READY.value:
        recorder.state("ready; downloading")
    else:
        before = (state.get("job") or {}).get("status")
        if job.get("status") == ReportState.RUNNING.value and before != ReportState.RUNNING.value:
            recorder.state("the vendor is generating the report")
        percent = job.get("progress")
        recorder.wait(check_words(str(job.get("status")), percent, wait), wait, percent=percent)
    return checked


def _check(state: State, runtime: Runtime, recorder: Recorder) -> tuple[State, ProviderThrottled | None]:
    request, job, provider, handle = resume(state, runtime, recorder)
    now = runtime.clock()
    if now >= parse_timestamp(job["deadline_at"]):
        _abandon(request, job, handle, provider)
    events = job.get("history_events", HISTORY_EVENTS_AT_START) + HISTORY_EVENTS_PER_CHECK
    job = {**job, "polls": job.get("polls", 0) + 1, "history_events": events}
    job.pop("continue_as_new", None)  # present only when this check continues in a fresh execution
    try:
        status = provider.check(request, handle)
    except ProviderThrottled as throttled:
        # No news is not bad news: keep the last known state and come back when the provider says.
        status = ReportStatus(
            ReportState(job.get("status", "PENDING")), job.get("progress"), job.get("message")
        )
        waited = _with_status(
            state, job, status, runtime, provider, now, retry_after=throttled.retry_after or 0
        )
        return waited, throttled
    return _with_status(state, job, status, runtime, provider, now), None


@records_progress
@records_retries("Fetch")
@metered(lambda state: 2, stores=True)  # Fetch, IsStored
def fetch(state: State, runtime: Runtime) -> State:
    """Stream the finished report into S3; either the whole file is stored or nothing is.

    Run again on the same job (a retry, a Lambda that died after storing), it stores nothing twice: the
    job's key is fixed in the job store before the first byte, an object already stored there is
    recognised and returned without downloading, and completion only succeeds on an empty key.

    A file the provider serves in byte ranges is fetched over as many invocations as it takes: near the
    end of its time (or when the download breaks) Fetch checkpoints in the job store and the state
    machine runs it again (``TRANSFERRING``), to go on from the checkpoint with a ``Range`` request.
    """
    recorder = _recorder(runtime, state, "Fetch")
    request, job, provider, handle = resume(state, runtime, recorder)
    job_id = job["job_id"]
    record = runtime.jobs.get(job_id) if runtime.jobs is not None else None  # read once, for both below
    stored = _stored_before(runtime, job_id, record)
    if stored is not None:
        logger.info("report was already stored; not downloading it again", extra={"job_id": job_id})
        return _with_object(state, job, stored, runtime, recorder)
    if job.get("status") == IN_CONTAINER and not runtime.settings.in_container:
        raise _container_failure(runtime, state)  # the container ran, and stored nothing
    if _may_hand_over(runtime) and provider.connection.fetch_in == "container":
        return _hand_over(
            state, job, f"connection {provider.connection.name} fetches in a container", recorder
        )
    resumption = _restored(runtime, job_id, provider, record)
    read, resumed = 0, False
    try:
        resume_from = None
        if resumption is not None:
            resume_from = ResumeFrom(resumption.checkpoint.size, resumption.checkpoint.validator)
        with provider.open_result(request, handle, resume_from) as result:
            resumption = _still_resumable(runtime, job_id, resumption, result)
            resumed = resumption is not None
            key = _fixed_key(runtime, job_id, object_key(request, job_id, result.filename))
            resumable = result.validator is not None and _may_resume(runtime, provider)

            def counted() -> Any:
                nonlocal read
                for chunk in result.chunks:
                    read += len(chunk)
                    yield chunk

            try:
                stored = stream_to_s3(
                    counted(),
                    s3_client=runtime.s3,
                    bucket=runtime.bucket,
                    key=key,
                    content_type=result.content_type,
                    filename=result.filename,
                    expected_size=result.content_length,
                    expected_sha256=result.sha256,
                    stop_at=_stop_at(runtime, provider),
                    before_completion=lambda pending: _note_pending(runtime, job_id, pending),
                    validator=result.validator if resumable else None,
                    on_checkpoint=(lambda point: _save_checkpoint(runtime, job_id, point))
                    if resumable
                    else None,
                    resume=resumption,
                    give_up_early=_may_hand_over(runtime) and not provider.single_use_result,
                )
            except ObjectExists:
                stored = _stored_before(runtime, job_id)
                if stored is None:
                    raise InternalError(
                        f"s3://{runtime.bucket}/{key} holds an object this job's Fetch did not record"
                    ) from None
    except TransferPaused as paused:
        going_on = _going_on(state, job, paused, read)
        point = paused.checkpoint
        percent = round(100 * point.size / point.expected_size, 1) if point.expected_size else None
        recorder.progress(going_on["job"]["message"], percent)
        return going_on
    except TransferOutOfTime as error:
        if not _may_hand_over(runtime) or provider.single_use_result:
            raise  # a single-use result was consumed: only its connection's fetch_in can choose a container
        return _hand_over(state, job, str(error), recorder)
    except Exception as error:
        permanent = isinstance(error, ReportRelayError) and not error.retryable
        if permanent or not provider.single_use_result:
            raise
        stored = _stored_before(runtime, job_id)  # S3 may have completed the upload and lost its answer
        if stored is not None:
            logger.info("report was stored before the error; keeping it", extra={"job_id": job_id})
            return _with_object(state, job, stored, runtime, recorder)
        reason = str(error) if isinstance(error, ReportRelayError) else type(error).__name__
        if job.get("restarts", 0) >= MAX_RESTARTS:
            # Retrying the download cannot work (the provider served its one copy): say what kept happening.
            raise DownloadFailed(
                f"{reason}; the provider serves each result once and the report was generated "
                f"{MAX_RESTARTS + 1} times, so the job gives up"
            ) from None
        # The provider will not serve this result again: generate it afresh rather than retry the download.
        logger.warning("single-use result lost; restarting the job", extra={"job_id": job_id})
        restarted = {**job, "status": "RESTART", "restarts": job.get("restarts", 0) + 1, "message": reason}
        recorder.restart(
            restart_words(error, read, restarted["restarts"], MAX_RESTARTS),
            restarted["restarts"],
            MAX_RESTARTS,
        )
        return {**state, "job": restarted}
    logger.info("report stored", extra={"job_id": job_id, "size": stored.size})
    spanned = resumed or "transfer" in job  # over several invocations: say what it took
    stored_job = {**job, "transfer": _tally(job, read, stored.size)} if spanned else job
    return _with_object(state, stored_job, stored, runtime, recorder)


#: The job's status while its transfer goes on over several Fetch invocations (byte ranges).
TRANSFERRING = "TRANSFERRING"

#: Invocations in a row that may end without storing a single part before the job gives up.
MAX_STALLED_INVOCATIONS = 3


def _may_resume(runtime: Runtime, provider: Provider) -> bool:
    """Whether a transfer may span invocations: a job store to checkpoint in, a result served again."""
    return runtime.jobs is not None and not provider.single_use_result


def _restored(runtime: Runtime, job_id: str, provider: Provider, record: Job | None) -> Resumption | None:
    """The job's transfer checkpoint, if there is one whose upload S3 still holds."""
    if not _may_resume(runtime, provider):
        return None
    checkpoint = Checkpoint.from_dict(record.transfer_checkpoint if record is not None else None)
    if checkpoint is None:
        return None
    if checkpoint.expected_size is not None and checkpoint.size >= checkpoint.expected_size:
        abandon(runtime.s3, runtime.bucket, checkpoint)  # nothing left to ask for: start afresh
        return None
    resumption = restore(runtime.s3, runtime.bucket, checkpoint)
    if resumption is None:
        logger.warning("transfer checkpoint's upload is gone; starting again", extra={"job_id": job_id})
    return resumption


def _still_resumable(
    runtime: Runtime, job_id: str, resumption: Resumption | None, result: ResultStream
) -> Resumption | None:
    """The resumption, if the provider served the rest of the same file; None when it served it whole.

    A whole file (200) answers a Range whose If-Range no longer matches: the file changed, so the parts
    stored of the old one are dropped and the transfer starts again on this very answer.
    """
    if resumption is None:
        return None
    checkpoint = resumption.checkpoint
    if result.offset == checkpoint.size and result.validator == checkpoint.validator:
        return resumption
    abandon(runtime.s3, runtime.bucket, checkpoint)
    if result.offset != 0:
        raise DownloadInterrupted(
            f"asked for the file from byte {checkpoint.size}, the provider served it from byte "
            f"{result.offset}; the stored parts were dropped and the transfer starts again"
        )
    logger.warning(
        "the file changed since the transfer's checkpoint; starting again", extra={"job_id": job_id}
    )
    return None


def _save_checkpoint(runtime: Runtime, job_id: str, checkpoint: Checkpoint) -> None:
    """Keep the checkpoint in the job store; a job that finished meanwhile (cancelled) stops the transfer."""
    if runtime.jobs is not None and not runtime.jobs.record(
        job_id, {"transfer_checkpoint": checkpoint.to_dict()}
    ):
        raise ReportCancelled(
            "the job was cancelled while its report was being stored: the upload was aborted and nothing "
            "was stored"
        )


def _going_on(state: State, job: dict[str, Any], paused: TransferPaused, read: int) -> State:
    """Ask the state machine for another Fetch, to go on from the checkpoint."""
    checkpoint = paused.checkpoint
    tally = _tally(job, read, None)
    previous = (job.get("transfer") or {}).get("stored", 0)
    tally["stalled"] = 0 if checkpoint.size > previous else (job.get("transfer") or {}).get("stalled", 0) + 1
    if tally["stalled"] >= MAX_STALLED_INVOCATIONS:
        raise TransferOutOfTime(
            f"{MAX_STALLED_INVOCATIONS} invocations in a row stored nothing of the file (it stands at "
            f"{checkpoint.size} bytes): the provider serves it too slowly to store even one part per run"
        )
    tally["stored"] = checkpoint.size
    total = f" of {checkpoint.expected_size / 1048576:.1f} MiB" if checkpoint.expected_size else ""
    logger.info(
        "transfer goes on in a new invocation", extra={"job_id": job["job_id"], "stored": checkpoint.size}
    )
    message = f"stored {checkpoint.size / 1048576:.1f} MiB{total}; going on in a new invocation"
    return {**state, "job": {**job, "status": TRANSFERRING, "message": message, "transfer": tally}}


def _tally(job: dict[str, Any], read: int, size: int | None) -> dict[str, Any]:
    """The transfer's figures over its invocations: how many, bytes read, and (once done) bytes re-read."""
    before = job.get("transfer") or {}
    tally = {**before, "invocations": before.get("invocations", 0) + 1, "read": before.get("read", 0) + read}
    if size is not None:
        tally["reread"] = max(0, tally["read"] - size)
        tally.pop("stalled", None)
    return tally


#: The job's status while a container task fetches its report (reportrelay.container).
IN_CONTAINER = "IN_CONTAINER"


def _may_hand_over(runtime: Runtime) -> bool:
    """Whether this Fetch may pass the transfer to a container task: in a Lambda of a deployment with one."""
    return runtime.settings.fetch_container and not runtime.settings.in_container


def _hand_over(state: State, job: dict[str, Any], reason: str, recorder: Recorder) -> State:
    """Ask the state machine to run this Fetch in a container task, with no time limit."""
    logger.info("moving the transfer to a container task", extra={"job_id": job["job_id"]})
    recorder.state(f"downloading in a container task instead: {reason}")
    return {**state, "job": {**job, "status": IN_CONTAINER, "message": f"fetching in a container: {reason}"}}


def _container_failure(runtime: Runtime, state: State) -> ReportRelayError:
    """Why the container task stored nothing: what it recorded, else what the state machine saw."""
    job_id = state["job"]["job_id"]
    record = runtime.jobs.get(job_id) if runtime.jobs is not None else None
    recorded = record.container_error if record is not None else None
    if recorded:
        kind = getattr(errors, str(recorded.get("code")), None)
        error_class = kind if isinstance(kind, type) and issubclass(kind, ReportRelayError) else InternalError
        return error_class(f"in the container task: {recorded.get('message')}")
    caught = state.get("container_error")
    if isinstance(caught, dict):
        return InternalError(f"the container task failed: {describe_error(caught)['message']}")
    return InternalError("the container task ended without storing the report; see its log")


#: Fetch stops this long (plus one read timeout, the longest a chunk can take) before its function's end.
FETCH_STOP_MARGIN_SECONDS = 15.0


def _stop_at(runtime: Runtime, provider: Provider) -> float | None:
    if runtime.ends_at is None:
        return None
    return runtime.ends_at - provider.connection.timeouts.read_seconds - FETCH_STOP_MARGIN_SECONDS


def _with_object(
    state: State, job: dict[str, Any], stored: StoredObject, runtime: Runtime, recorder: Recorder
) -> State:
    """The state with the stored object (and the job out of the container or the transfer loop)."""
    recorder.state(stored_words(stored.size, stored.bucket, stored.key))
    stored_job = {**job, "object": stored.to_dict(), "stored_at": iso_timestamp(runtime.clock())}
    if job.get("status") in (IN_CONTAINER, TRANSFERRING):
        stored_job.update(status=ReportState.READY.value, message=None)
    return {**state, "job": stored_job}


def _fixed_key(runtime: Runtime, job_id: str, key: str) -> str:
    """The job's one object key: the first Fetch's choice, whatever the file is called later."""
    store = runtime.jobs
    return key if store is None else store.fix_object_key(job_id, key)


def _note_pending(runtime: Runtime, job_id: str, pending: PendingObject) -> None:
    """Note the upload in the job store, or refuse to complete it for a job that finished meanwhile."""
    if runtime.jobs is not None and not runtime.jobs.add_pending_object(job_id, pending.to_dict()):
        raise ReportCancelled(
            "the job was cancelled while its report was being stored: the upload was aborted and nothing "
            "was stored"
        )


def _stored_before(runtime: Runtime, job_id: str, record: Job | None = None) -> StoredObject | None:
    """The object an earlier Fetch of this job stored, recognised by S3's checksum of it; None if none.

    The job store lists the uploads Fetch was about to complete; the one whose size and full-object
    CRC64NVME the object at the job's key has is the one that was completed (S3 checked that checksum
    against the bytes it stored before it made the object). Only the object's attributes are read.
    """
    if record is None and runtime.jobs is not None:
        record = runtime.jobs.get(job_id)  # afresh: a failed completion may have been noted meanwhile
    if record is None or not record.object_key or not record.pending_objects:
        return None
    try:
        attributes = runtime.s3.get_object_attributes(
            Bucket=runtime.bucket, Key=record.object_key, ObjectAttributes=["Checksum", "ObjectSize"]
        )
    except ClientError as error:
        if aws_error_code(error) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    reported = attributes.get("Checksum") or {}
    for pending in record.pending_objects:
        checksum = str(pending.get("checksum_crc64nvme"))
        if (
            pending.get("size") == attributes.get("ObjectSize")
            and reported.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
            and same_checksum(reported.get("ChecksumCRC64NVME"), checksum)
        ):
            return StoredObject(
                bucket=runtime.bucket,
                key=record.object_key,
                size=int(pending["size"]),
                sha256=str(pending["sha256"]),
                content_type=str(pending["content_type"]),
                filename=str(pending["filename"]),
                checksum_crc64nvme=checksum,
            )
    return None


def object_key(request: JobRequest, job_id: str, filename: str) -> str:
    """``<team>/<key_prefix><job id>/<provider's file name>``: in the team's space, unique per job.

    The team is set by whoever started the job (the API from the caller, a schedule from its own
    ``team``), never by the key prefix, so no prefix can leave the team's space.

    Every part is checked and the provider's file name cleaned by ``reportrelay.objectkeys``, so the
    key fits S3's 1,024 bytes and has no empty, dot or invisible-character segment.
    """
    return objectkeys.object_key(request.team, request.output.key_prefix, job_id, filename)


def resume(
    state: State, runtime: Runtime, recorder: Recorder | None = None
) -> tuple[JobRequest, dict[str, Any], Provider, Handle]:
    """The request, the job, a signed-in adapter (telling ``recorder`` of its retries), and the handle
    with its sealed fields opened."""
    request = parse_job_request(state.get("request"))
    job = state.get("job") or {}
    if "handle" not in job:
        raise BadRequest("the workflow state has no provider handle: the job was never submitted")
    connection = runtime.connections.get(request.connection)
    handle = runtime.sealer.unseal(job["handle"], job["job_id"])
    provider = open_provider(
        connection, runtime.secrets, runtime.claims, ends_at=runtime.ends_at, clock=runtime.clock
    )
    return request, job, _opened(provider, recorder), handle


def _with_status(
    state: State,
    job: dict[str, Any],
    status: ReportStatus,
    runtime: Runtime,
    provider: Provider,
    now: float,
    retry_after: float | None = None,
) -> State:
    if status.state is ReportState.FAILED:
        raise ReportGenerationFailed(
            status.message or "the provider reports that generating the report failed"
        )
    if status.state is ReportState.CANCELLED:
        raise ReportCancelled(status.message or "the report was cancelled at the provider")
    job = {
        **job,
        "status": status.state.value,
        "progress": status.progress,
        "message": status.message,
        "handle": runtime.sealer.seal(
            {**job.get("handle", {}), **(status.handle or {})}, provider.sealed_handle_fields, job["job_id"]
        ),
    }
    if status.state is ReportState.READY:
        job["ready_at"] = iso_timestamp(now)
        job["wait_seconds"] = 0
        started, finished = status.started_at, status.finished_at
        if started is not None and finished is not None and finished > started:
            job["vendor_generation_seconds"] = round(finished - started, 3)
        return {**state, "job": job}
    elapsed = now - (parse_timestamp(job.get("queued_at")) or now)
    if retry_after is None:
        job["unfinished_at_seconds"] = round(elapsed, 3)  # a lower bound of its duration (learned_bounds)
    job["wait_seconds"] = next_wait_seconds(
        provider.connection.poll,
        job.get("polls", 0),
        elapsed_seconds=elapsed,
        progress=status.progress,
        retry_after=retry_after,
        seconds_left=max(0.0, parse_timestamp(job["deadline_at"]) - now),
        expected=Expected.from_dict(job.get("expected")),
    )
    next_check = job.get("history_events", 0) + HISTORY_EVENTS_PER_CHECK + HISTORY_EVENTS_SPARE
    if next_check > HISTORY_EVENT_LIMIT:
        job = _continued(state, job, runtime)
    return {**state, "job": job}


def _continued(state: State, job: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """Go on in a fresh execution before this one's history is full: the state machine starts it (same job
    id, this state carried over; ``continue_as_new``, present only then, routes IsReportReady there) and
    ends this one; the job store and the job's activity name the execution the job now runs in, so the API
    follows, cancels and reconciles that one.
    """
    number = int(job.get("continuations", 0)) + 1
    name = f"{job['job_id']}-continued-{number}"
    current = str(state.get("execution_arn") or "")
    arn = f"{current.rsplit(':', 1)[0]}:{name}" if current.count(":") >= 7 else ""
    job = {**job, "continue_as_new": True, "continuations": number, "next_execution": name}
    job = costs.add(job, state_transitions=4)  # ContinueAsNew, Continued; Begin, Resume in the next one
    job["history_events"] = HISTORY_EVENTS_AT_START
    if runtime.jobs is not None and arn:
        try:
            runtime.jobs.record(job["job_id"], {"execution_arn": arn})
        except ReportRelayError as error:
            logger.warning("continuation not recorded", extra={"job_id": job["job_id"], "error": str(error)})
    _recorder(runtime, state, "Check").state(
        f"continues in a fresh execution ({name}) before this one's history of "
        f"{HISTORY_EVENT_LIMIT} events is full"
    )
    return job


def _expected(runtime: Runtime, request: JobRequest) -> Expected | None:
    """When this report is likely ready, from how long it took the last times (best effort: none when
    the job store cannot say)."""
    if runtime.jobs is None:
        return None
    try:
        runs = runtime.jobs.duration_bounds(duration_key(request.connection, request.report, request.format))
    except ReportRelayError as error:
        logger.warning("no duration history: the job store could not be read", extra={"error": str(error)})
        return None
    return expected_window([duration for _, duration in runs], [earliest for earliest, _ in runs])


def learned_duration(job: Mapping[str, Any]) -> float | None:
    """How long a ready report took to generate: the vendor's own time where it reported one (finished -
    started, which our polling does not stretch), else queued -> ready as we saw it; None when unknown."""
    bounds = learned_bounds(job)
    return None if bounds is None else bounds[1]


def learned_bounds(job: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(earliest, duration)``: the vendor's own time is exact (both); as we saw it, the report took
    more than when a check last found it unfinished (0 when none did) and at most queued -> ready."""
    vendor = job.get("vendor_generation_seconds")
    if isinstance(vendor, int | float) and not isinstance(vendor, bool) and vendor > 0:
        return float(vendor), float(vendor)
    queued, ready = parse_timestamp(job.get("queued_at")), parse_timestamp(job.get("ready_at"))
    if queued is None or ready is None or ready <= queued:
        return None
    unfinished = job.get("unfinished_at_seconds")
    earliest = (
        float(unfinished) if isinstance(unfinished, int | float) and not isinstance(unfinished, bool) else 0.0
    )
    return min(max(earliest, 0.0), ready - queued), ready - queued


def _remember_duration(state: State, runtime: Runtime) -> None:
    """A report that became ready adds how long it took (``learned_bounds``) to its history."""
    job = state.get("job") or {}
    bounds = learned_bounds(job)
    if runtime.jobs is None or bounds is None:
        return
    try:
        request = parse_job_request(state.get("request"))
        key = duration_key(request.connection, request.report, request.format)
        runtime.jobs.record_duration(key, bounds[1], earliest=bounds[0])
    except ReportRelayError as error:
        logger.warning("duration not remembered", extra={"job_id": job.get("job_id"), "error": str(error)})


def cancel_at_provider(event: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """Cancel a stopped job's report at its provider: ``{"at_provider": cancelled | unsupported | failed |
    not_queued}`` (the job API words each for the user).

    The job API stops the execution and then asks this workflow function, which alone holds the vendor
    credentials, to cancel what the provider still has queued. It reads the handle from the job store.
    """
    job_id = str(event.get("job_id") or "")
    store = runtime.jobs
    job = store.get(job_id) if store is not None and job_id else None
    if job is not None:
        _drop_open_upload(runtime, job.job_id, job.transfer_checkpoint)
        _give_back_slots_of_stopped(job, runtime)
    if job is None or not job.handle or not job.request:
        return {"at_provider": "not_queued"}
    try:
        state = {"request": job.request, "job": {"job_id": job.job_id, "handle": job.handle}}
        request, _, provider, handle = resume(state, runtime)
        cancelled = provider.cancel(request, handle)
    except Exception as error:
        code = error.code if isinstance(error, ReportRelayError) else type(error).__name__
        logger.warning("cancel at provider failed", extra={"job_id": job_id, "error": code})
        return {"at_provider": "failed"}
    return {"at_provider": "cancelled" if cancelled else "unsupported"}


def _give_back_slots_of_stopped(job: Job, runtime: Runtime) -> None:
    """A stopped execution never concludes: its slot (or its place in line) is given back here."""
    name = (job.request or {}).get("connection") if isinstance(job.request, dict) else None
    if not name:
        return
    try:
        limit = runtime.connections.get(name).max_concurrent_jobs
    except ReportRelayError:
        return
    if limit:
        _give_back_slot(name, limit, job.job_id, runtime)


def _abandon(request: JobRequest, job: dict[str, Any], handle: Handle, provider: Provider) -> None:
    cancelled = False
    try:
        cancelled = provider.cancel(request, handle)
    except ReportRelayError as error:
        logger.warning("cancel at provider failed", extra={"job_id": job.get("job_id"), "error": error.code})
    at_provider = (
        "cancelled at the provider" if cancelled else "the provider offers no cancel, so it may still run"
    )
    raise DeadlineExceeded(
        f"the report was not ready by its deadline {job['deadline_at']} after {job.get('polls', 0)} checks; "
        f"{at_provider}"
    )


def conclude(state: State, runtime: Runtime) -> dict[str, Any]:
    """Record the job's outcome with its completion event (the outbox), announce it, release the job's slot,
    and record its figures as metrics; returns the event.

    Run again (a retry after the function died), it records nothing twice and announces what still waits.
    An announcement EventBridge refused stays in the outbox for the sweep (``reportrelay.outbox``): the
    step still succeeds, so the execution ends as the job did.
    """
    job = state.get("job") if isinstance(state.get("job"), dict) else {}
    # DescribeReady or DescribeFailure, then Done or ReportFailed; the time Conclude took so far.
    used = _invocation(runtime, runtime.step_started or time.monotonic(), 2)
    state = {**state, "job": costs.add(job, **used)}
    outcome = describe_outcome(state, runtime.settings.link_base_url)
    pending, in_outbox = _record_outcome(runtime, outcome, state)
    if pending is not None and pending.event_id == outcome["detail"].get("event_id"):
        # Run again after it recorded: the recorded event is the outcome (its cost counted that run).
        outcome = {"detail_type": pending.detail_type, "detail": pending.detail}
    detail = outcome["detail"]
    _announce(runtime, pending, in_outbox)
    _release_slot(state, runtime)
    if detail["status"] == "READY":
        _remember_duration(state, runtime)
    if detail["status"] != "READY" and runtime.jobs is not None:
        record = runtime.jobs.get(detail["job_id"])
        _drop_open_upload(runtime, detail["job_id"], record.transfer_checkpoint if record else None)
    metrics.add_metric(
        name="ReportsReady" if detail["status"] == "READY" else "ReportsFailed",
        unit=MetricUnit.Count,
        value=1,
    )
    if detail["object"]:
        metrics.add_metric(name="BytesFetched", unit=MetricUnit.Bytes, value=detail["object"]["size"])
    accepted_at = parse_timestamp((state.get("job") or {}).get("accepted_at"))
    if accepted_at:
        metrics.add_metric(name="JobDuration", unit=MetricUnit.Seconds, value=runtime.clock() - accepted_at)
    logger.info(
        "job concluded",
        extra={
            "job_id": detail["job_id"],
            "status": detail["status"],
            "error_code": (detail["error"] or {}).get("code"),
        },
    )
    return outcome


def _drop_open_upload(runtime: Runtime, job_id: str, checkpoint: Any) -> None:
    """Abort the upload a failed or cancelled job left open for its next Fetch (best effort: the bucket's
    lifecycle rule removes it after a day anyway)."""
    point = Checkpoint.from_dict(checkpoint)
    if point is None or not runtime.settings.bucket:
        return
    logger.info("aborting the job's unfinished upload", extra={"job_id": job_id})
    abandon(runtime.s3, runtime.bucket, point)


def _release_slot(state: State, runtime: Runtime) -> None:
    """Leave the line if the job waited in it, give its slot back, and hand free slots to the line."""
    job = state.get("job") or {}
    if not job.get("slot_limit") or (job.get("slot") is None and not job.get("slot_waits")):
        return
    _give_back_slot(job["connection"], int(job["slot_limit"]), job["job_id"], runtime)


def _give_back_slot(connection_name: str, limit: int, job_id: str, runtime: Runtime) -> None:
    try:
        runtime.slots.give_back(connection_name, limit, job_id)
        _hand_over_slots(connection_name, limit, runtime)
    except ReportRelayError as error:
        # The lease runs out on its own, and waiters wake to look again; the outcome must not depend on it.
        logger.warning("concurrency slot not released", extra={"job_id": job_id, "error": str(error)})


def describe_outcome(state: State, api_url: str | None = None) -> dict[str, Any]:
    """The completion event: ``Report Ready``, or ``Report Failed`` when the state carries an error.

    With the job API's URL, a ready report's event links to ``GET /reports/{id}/download``, which always
    answers with a freshly signed link (people and chat bots click it long after the event was sent).
    ``event_id`` is the same every time the outcome is described (see ``reportrelay.outbox``).
    """
    request = state.get("request") if isinstance(state.get("request"), dict) else {}
    job = state.get("job") or {}
    error = describe_error(state["error"]) if state.get("error") else None
    status = "FAILED" if error else "READY"
    detail = {
        "job_id": job.get("job_id"),
        "status": status,
        "connection": request.get("connection"),
        "provider": job.get("provider"),
        "report": request.get("report"),
        "format": request.get("format"),
        "object": None if error else job.get("object"),
        "error": error,
        "polls": job.get("polls", 0),
        "queued_at": job.get("queued_at"),
        "ready_at": job.get("ready_at"),
        "stored_at": None if error else job.get("stored_at"),
        "event_id": outbox.event_id(str(job["job_id"]), status) if job.get("job_id") else None,
        "download_url": (
            f"{api_url}/reports/{job['job_id']}/download"
            if api_url and not error and job.get("job_id")
            else None
        ),
        "cost": costs.estimate(job.get("usage") or {}),
    }
    return {"detail_type": "Report Failed" if error else "Report Ready", "detail": detail}


_STATES_ERROR_MESSAGES = {
    "States.Timeout": "a step of the workflow timed out",
    "States.TaskFailed": "a step of the workflow failed",
    "States.Runtime": "the workflow hit a runtime error",
}


def describe_error(caught: dict[str, Any]) -> dict[str, str]:
    """``{"code", "message"}`` from a Step Functions Catch result (``Error`` and ``Cause``)."""
    code = str(caught.get("Error") or "InternalError")
    cause = caught.get("Cause")
    message = None
    if isinstance(cause, str) and cause.startswith("{"):
        try:
            parsed = json.loads(cause)
            message = parsed.get("errorMessage")
            code = parsed.get("errorType") or code
        except (json.JSONDecodeError, AttributeError):
            message = None
    if not message:
        message = cause if isinstance(cause, str) and cause else _STATES_ERROR_MESSAGES.get(code, code)
    return {"code": code, "message": message}
