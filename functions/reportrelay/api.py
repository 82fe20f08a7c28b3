"""What the job API does: start, describe, list, cancel and download jobs, and tell what a job did. No HTTP
here, only the rules.

The HTTP edge (``reportrelay.handlers.api``) parses requests into these calls and turns their answers and
errors into responses. The job store (``reportrelay.jobs``) is the memory; Step Functions runs the jobs;
S3 holds the files; EventBridge hears about cancellations, which the state machine cannot announce
itself (a stopped execution runs no more states).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reportrelay import links, outbox
from reportrelay.access import NotAllowed, Principal
from reportrelay.activity import KINDS, Kind, Recorder, failed_words
from reportrelay.config import Connection, JobRequest
from reportrelay.errors import BadRequest, ConfigurationError, ReportRelayError
from reportrelay.executions import AtProvider, AwsCallFailed, JobExecutions, StoredObjectGone
from reportrelay.jobs import (
    MAX_REQUEST_JSON,
    ClientToken,
    DynamoDbJobs,
    Job,
    JobState,
    TokenReused,
    execution_arn_for,
    outcome_fields,
    request_fingerprint,
)
from reportrelay.observability import logger
from reportrelay.providers import provider_class
from reportrelay.runtime import Runtime, read_secret_string
from reportrelay.timestamps import iso_timestamp, parse_timestamp
from reportrelay.workflow import describe_outcome

CANCELLED_CODE = "Cancelled"
EVENT_SOURCE = outbox.EVENT_SOURCE
# Step Functions execution names (our job ids): 1-80 of letters, digits, '-' and '_'.
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
StateName = Literal["queued", "running", "ready", "failed", "cancelled"]
RECONCILE_AFTER_SECONDS = 15 * 60
"""An unfinished job whose record has not moved for this long is checked against its execution."""


# ---- errors the HTTP edge maps to status codes


class JobNotFound(ReportRelayError):
    """No job has this id (404)."""


class JobConflict(ReportRelayError):
    """The job's state forbids this (409): cancelling a finished job, downloading an unready one."""


class ClientTokenReused(JobConflict):
    """The client token already named a job asked for with a different request (409)."""


class RequestTooLarge(ReportRelayError):
    """The job request is larger than a job may carry (413)."""


class ReportExpired(ReportRelayError):
    """The job was ready, but its file has since expired from the bucket (410)."""


class ServiceUnavailable(ReportRelayError):
    """An AWS service we depend on refused or failed; nothing changed that the client cannot retry (503)."""

    retryable = True


# ---- what the API answers with


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoredObject(_Model):
    """The stored report, as in the ``Report Ready`` event."""

    bucket: str
    key: str
    size: int = Field(ge=0, description="bytes stored")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the stored bytes, lower-case hex")
    content_type: str
    filename: str
    checksum_crc64nvme: str | None = Field(
        default=None,
        description="S3's own full-object CRC64NVME of the object, base64 (GetObjectAttributes reports it)",
    )


class JobError(_Model):
    code: str = Field(description="the error's name, e.g. ProviderRejected, DeadlineExceeded, Cancelled")
    message: str = Field(description="what happened, in the provider's own words where it gave any")


class CostPrices(_Model):
    region: str
    read_on: str = Field(description="when the prices were read from AWS's pricing pages")
    source: str


class JobCost(_Model):
    """What the finished job used on AWS and its estimate at list prices, as in its completion event."""

    state_transitions: float = Field(ge=0, description="states entered, as Step Functions bills them")
    lambda_invocations: float = Field(ge=0)
    lambda_gb_seconds: float = Field(ge=0, description="each step's duration x its function's memory")
    s3_put_requests: float = Field(ge=0, description="PUT, COPY, POST and LIST requests, multipart included")
    s3_get_requests: float = Field(ge=0, description="GET, HEAD and the other reads")
    s3_bytes_stored: float = Field(ge=0)
    usd: float = Field(ge=0, description="the estimate: list prices in one Region, before free tiers")
    usd_by_driver: dict[str, float]
    prices: CostPrices


class JobLinks(_Model):
    status: str = Field(description="GET this job")
    download: str | None = Field(description="GET the report (a redirect to S3); null until the job is ready")


class JobView(_Model):
    """A job as the API shows it."""

    job_id: str = Field(description="the job's id: its Step Functions execution name")
    state: StateName = Field(
        description="queued (accepted, or queued at the provider), running (generating or being stored), "
        "ready (stored), failed, cancelled"
    )
    source: str = Field(description="what started the job: api, schedule, or workflow (started directly)")
    team: str | None = Field(
        description="the team the job runs for: only it (and the admin team) sees the job"
    )
    owner: str | None = Field(
        description="who started it: an IAM principal ARN with its session, person:<sub>, or schedule:<name>"
    )
    connection: str | None
    provider: str | None
    report: dict[str, Any] | None = Field(description="the request's report reference")
    format: str | None
    request: dict[str, Any] | None = Field(
        description="the job request as accepted (connection, report, format, parameters, output, team, "
        "deadline_seconds; never its client token): POST it to /reports to run the job again. Requests "
        "hold no secrets (connections hold the credentials). Null for a job whose request is not recorded"
    )
    provider_status: str | None = Field(description="the provider's status as last checked")
    progress: float | None = Field(description="percent complete as the provider reports it, where it does")
    message: str | None = Field(description="the provider's latest message, where it gave one")
    polls: int = Field(ge=0, description="status checks so far")
    created_at: str = Field(description="when the job was accepted (ISO 8601, UTC)")
    updated_at: str
    queued_at: str | None = Field(description="when the provider queued the report")
    ready_at: str | None = Field(description="when the provider reported it ready")
    stored_at: str | None = Field(description="when the file was stored in S3")
    finished_at: str | None = Field(description="when the job reached ready, failed or cancelled")
    deadline_at: str | None = Field(
        description="when the workflow gives up on the job (DeadlineExceeded, cancelled at the provider "
        "where it can): created_at plus the request's deadline_seconds, else its connection's (default "
        "24 h); null when neither is known"
    )
    object: StoredObject | None = Field(description="the stored file; null unless ready")
    error: JobError | None = Field(description="why the job failed or was cancelled")
    cost: JobCost | None = Field(
        default=None,
        description="once it finished: what the job used on AWS (its cost drivers) and an estimate in US "
        "dollars at list prices (reportrelay/costs.py); a retried step's failed attempts are not counted",
    )
    links: JobLinks


class JobAccepted(_Model):
    job_id: str
    state: StateName
    status_url: str = Field(description="GET this to watch the job")
    replayed: bool = Field(description="true when the client token named a job that already existed")


class JobList(_Model):
    jobs: list[JobView]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class DownloadLink(_Model):
    url: str = Field(description="a presigned S3 GET URL (also the Location header)")
    expires_in: int = Field(description="seconds the URL stays valid")
    filename: str
    size: int
    sha256: str


class LinkView(_Model):
    link_id: str = Field(description="DELETE /reports/{job_id}/links/{link_id} revokes it")
    url: str = Field(description="opens the report without signing in, until it expires or is revoked")
    expires_at: str = Field(description="when the link stops working (ISO 8601, UTC)")


class LinkRevoked(_Model):
    link_id: str
    revoked: bool


class JobEvent(_Model):
    """One thing the job did, in plain words (``reportrelay.activity``); figures only where they apply."""

    at: str = Field(description="when (ISO 8601, UTC, milliseconds)")
    step: str = Field(
        description="who did it: a workflow step (Submit, Check, Fetch, Conclude), or the job API (Cancel, "
        "and Reconcile when it found the job's execution ended unrecorded)"
    )
    kind: Kind = Field(
        description="state (the job moved on: queued, generating, ready, downloading, stored, failed, "
        "cancelled), wait (the next check in wait_seconds), retry (attempt of attempts, after "
        "wait_seconds), restart (regenerating after a lost single-use download: attempt of attempts), "
        "progress (percent)"
    )
    message: str = Field(description='e.g. "vendor answered 429, retrying in 8 s (attempt 2 of 5)"')
    attempt: int | None = Field(default=None, ge=1, description="retry and restart: this attempt's number")
    attempts: int | None = Field(default=None, ge=1, description="retry and restart: the most there will be")
    wait_seconds: float | None = Field(default=None, ge=0, description="wait and retry: the wait before it")
    percent: float | None = Field(default=None, description="progress (and waits, where the vendor says)")


class JobEvents(_Model):
    job_id: str
    events: list[JobEvent] = Field(description="oldest first; with after=, only those after that cursor")
    next: str | None = Field(
        description="pass as ?after= to get only later events (live following); null only when the job "
        "has no events at all"
    )


@dataclass(frozen=True)
class Caller:
    """Who is asking (a principal with its teams) and where the API lives, for links."""

    principal: Principal
    base_url: str
    people_url: str | None = None

    @property
    def identity(self) -> str:
        return self.principal.id


# ---- the operations


def start_job(
    request: JobRequest, caller: Caller, runtime: Runtime, *, idempotency_key: str | None = None
) -> tuple[Job, bool]:
    """Validate the request fully, store the job and start its execution; ``(job, created)``.

    Nothing is queued unless the request is valid for its connection and provider. With a client token
    (the body's ``client_token`` or the ``Idempotency-Key`` header), the same caller sending the same
    request again gets the same job back, however often and however concurrently it asks.
    """
    token_value = _client_token(request, idempotency_key)
    connection = _usable_connection(request.connection, caller.principal, runtime)
    team = caller.principal.team_for(connection, request.team)
    provider_class(connection.provider).validate(request)
    request = request.model_copy(update={"team": team})
    document = request.model_dump(mode="json", exclude={"client_token"}, exclude_defaults=True)
    size = len(json.dumps(document, sort_keys=True, separators=(",", ":")))
    if size > MAX_REQUEST_JSON:
        raise RequestTooLarge(
            f"request: {size} bytes of JSON; a job request may have at most {MAX_REQUEST_JSON}"
        )
    store = _store(runtime)
    state_machine = _state_machine_arn(runtime)
    job_id = str(uuid.uuid4())
    now = iso_timestamp(runtime.clock())
    new = Job(
        job_id=job_id,
        state=JobState.QUEUED,
        created_at=now,
        updated_at=now,
        source="api",
        connection=request.connection,
        provider=connection.provider,
        request=document,
        execution_arn=execution_arn_for(state_machine, job_id),
        owner=caller.principal.id,
        team=team,
    )
    token = None
    if token_value is not None:
        token = ClientToken(caller.identity, token_value, request_fingerprint(document))
    try:
        job, created = store.create(new, token)
    except TokenReused as error:
        raise ClientTokenReused(str(error)) from None
    if job.state is JobState.QUEUED and not job.started:
        _start_execution(job, runtime, store, keep_for_retry=token is not None)
    if created:
        logger.info(
            "job accepted",
            extra={
                "job_id": job.job_id,
                "connection": job.connection,
                "team": team,
                "owner": caller.identity,
            },
        )
    return job, created


def describe_job(job_id: str, caller: Caller, runtime: Runtime) -> Job:
    """The job as last recorded, checked against its execution when the record has gone quiet."""
    store = _store(runtime)
    job = _visible(store, job_id, caller)
    if not job.state.finished and _started(job) and _quiet_for(job, runtime) > RECONCILE_AFTER_SECONDS:
        return _reconcile(job, runtime, store)
    return job


def list_jobs(
    caller: Caller,
    runtime: Runtime,
    *,
    connection: str | None = None,
    state: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[Job], str | None]:
    """The caller's teams' jobs (every job for the admin team), newest first."""
    principal = caller.principal
    teams = None if principal.admin else sorted(principal.teams)
    if teams == []:
        return [], None
    page = _store(runtime).list(
        teams=teams,
        connection=connection,
        state=JobState(state) if state else None,
        limit=limit,
        cursor=cursor,
    )
    return page.jobs, page.cursor


def cancel_job(job_id: str, caller: Caller, runtime: Runtime) -> Job:
    """Stop the execution, cancel at the provider where it can, record and announce the cancellation."""
    store = _store(runtime)
    job = _visible(store, job_id, caller)
    if job.state.finished:
        raise JobConflict(
            f"job {job_id} is already {job.state.value}; only a queued or running job can be cancelled"
        )
    if _started(job):
        _stop_execution(job, runtime)
    at_provider = _cancel_at_provider(job, runtime)
    message = "the job was cancelled through the job API; " + _AT_PROVIDER[at_provider]
    error = {"code": CANCELLED_CODE, "message": message}
    pending = _cancelled_announcement(job, error, runtime)
    if not store.finish(job_id, {"state": JobState.CANCELLED, "error": error}, announcement=pending):
        finished = _get(store, job_id)
        raise JobConflict(
            f"job {job_id} is already {finished.state.value}; it finished while being cancelled"
        )
    Recorder(store, job_id, "Cancel", runtime.clock).state(
        f"cancelled through the job API; {_AT_PROVIDER[at_provider]}"
    )
    # Recorded with its event first: a put that fails leaves it in the outbox for the sweep to send.
    outbox.announce(store, runtime.client("events"), runtime.settings.event_bus, pending)
    logger.info(
        "job cancelled", extra={"job_id": job_id, "at_provider": at_provider, "cancelled_by": caller.identity}
    )
    return _get(store, job_id)


def job_events(job_id: str, caller: Caller, runtime: Runtime, *, after: str | None = None) -> JobEvents:
    """What the job did, oldest first; with ``after`` (an earlier answer's ``next``), only what came since.

    The job store keeps the latest entries of a long story (``reportrelay.jobs``), so a follower that
    fell far behind finds a gap, never an error.
    """
    store = _store(runtime)
    _visible(store, job_id, caller)
    since = _events_position(after) if after is not None else 0
    kept = [entry for entry in store.activity(job_id) if entry.get("kind") in KINDS]
    newer = [entry for entry in kept if int(entry["n"]) > since]
    # Nothing new answers the same cursor again; only a job with no events at all has none.
    cursor = _events_cursor(int(newer[-1]["n"])) if newer else (after if kept else None)
    fields = set(JobEvent.model_fields)
    events = [JobEvent.model_validate({k: v for k, v in entry.items() if k in fields}) for entry in newer]
    return JobEvents(job_id=job_id, events=events, next=cursor)


_EVENTS_CURSOR = "events:"


def _events_cursor(number: int) -> str:
    return base64.urlsafe_b64encode(f"{_EVENTS_CURSOR}{number}".encode()).decode().rstrip("=")


def _events_position(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    number = text[len(_EVENTS_CURSOR) :] if text.startswith(_EVENTS_CURSOR) else ""
    if not number.isdigit() or len(number) > 12:
        raise BadRequest(
            "query.after: not a cursor from this job's events (next); leave it out to start from the first"
        )
    return int(number)


def download_link(job_id: str, caller: Caller, runtime: Runtime) -> tuple[str, int, dict[str, Any]]:
    """``(presigned URL, seconds it lives, stored object)`` for a ready job, signed now, not hours ago."""
    return _presigned(_visible(_store(runtime), job_id, caller), runtime)


def mint_link(job_id: str, caller: Caller, runtime: Runtime, *, seconds: int | None = None) -> LinkView:
    """A share link to the job's report, where its connection or its request allows share links."""
    store = _store(runtime)
    job = _visible(store, job_id, caller)
    seconds = links.DEFAULT_LINK_SECONDS if seconds is None else seconds
    if not 60 <= seconds <= links.MAX_LINK_SECONDS:
        raise BadRequest(f"request.expires_in: {seconds} s; a link lives 60 s to 7 days (604800 s)")
    if not _share_links_allowed(job, runtime):
        raise NotAllowed(
            f"share links are not enabled for job {job_id}: its connection '{job.connection}' or its request "
            "must ask for them (share_links: true)"
        )
    now = runtime.clock()
    claims = links.LinkClaims(links.new_link_id(), job.job_id, int(now) + seconds)
    token = links.sign(claims, links.link_key(read_secret=read_secret_string))
    store.put_link(
        links.link_record(claims, team=job.team, minted_by=caller.identity, created_at=iso_timestamp(now))
    )
    logger.info(
        "share link minted",
        extra={"job_id": job_id, "link_id": claims.link_id, "minted_by": caller.identity, "seconds": seconds},
    )
    base = caller.people_url or caller.base_url
    return LinkView(
        link_id=claims.link_id, url=f"{base}/links/{token}", expires_at=iso_timestamp(claims.expires_at)
    )


def revoke_link(job_id: str, link_id: str, caller: Caller, runtime: Runtime) -> LinkRevoked:
    """Revoke one share link of a job the caller sees; it stops working at once."""
    store = _store(runtime)
    job = _visible(store, job_id, caller)
    record = store.link(link_id) if re.fullmatch(r"[0-9a-f]{32}", link_id) else None
    if record is None or record.get("job_id") != job.job_id:
        raise JobNotFound(f"job {job_id} has no share link '{link_id[:64]}'")
    store.revoke_link(link_id, iso_timestamp(runtime.clock()))
    logger.info(
        "share link revoked", extra={"job_id": job_id, "link_id": link_id, "revoked_by": caller.identity}
    )
    return LinkRevoked(link_id=link_id, revoked=True)


def open_link(token: str, runtime: Runtime) -> tuple[str, int, dict[str, Any]]:
    """Follow a share link: its signature, expiry and revocation checked, then a fresh presigned URL."""
    claims = links.verify(token, links.link_key(read_secret=read_secret_string), runtime.clock())
    store = _store(runtime)
    record = store.link(claims.link_id)
    if record is None or record.get("job_id") != claims.job_id or record.get("revoked_at"):
        raise links.LinkGone("this link was revoked; ask whoever shared it for a new one")
    job = store.get(claims.job_id)
    if job is None:
        raise links.LinkGone("the report this link pointed to is no longer kept")
    logger.info(
        "share link used",
        extra={"job_id": job.job_id, "link_id": claims.link_id, "minted_by": record.get("minted_by")},
    )
    return _presigned(job, runtime)


def _presigned(job: Job, runtime: Runtime) -> tuple[str, int, dict[str, Any]]:
    job_id = job.job_id
    if job.state is not JobState.READY or not job.object:
        raise JobConflict(
            f"job {job_id} is {job.state.value}; its report can be downloaded once the job is ready"
        )
    seconds = runtime.settings.download_url_seconds
    try:
        url = _executions(runtime).presign(job.object, seconds)
    except StoredObjectGone:
        raise ReportExpired(
            f"job {job_id}'s report is no longer stored (reports expire from the bucket); run the job again"
        ) from None
    except AwsCallFailed:
        raise ServiceUnavailable(f"S3 could not be asked about job {job_id}'s report; try again") from None
    return url, seconds, job.object


def job_view(job: Job, base_url: str, connections: Any = None) -> JobView:
    """The job as the API shows it; ``connections`` (the runtime's) give a connection's own deadline."""
    request = job.request or {}
    status_url = f"{base_url}/reports/{job.job_id}"
    return JobView(
        job_id=job.job_id,
        state=job.state.value,
        source=job.source,
        team=job.team,
        owner=job.owner,
        connection=job.connection,
        provider=job.provider,
        report=request.get("report") if isinstance(request.get("report"), dict) else None,
        format=request.get("format") if isinstance(request.get("format"), str) else None,
        request=_shown_request(job.request),
        provider_status=job.provider_status,
        progress=job.progress,
        message=job.message,
        polls=job.polls,
        created_at=job.created_at,
        updated_at=job.updated_at,
        queued_at=job.queued_at,
        ready_at=job.ready_at,
        stored_at=job.stored_at,
        finished_at=job.finished_at,
        deadline_at=_deadline_at(job, connections),
        object=StoredObject.model_validate(job.object) if job.object else None,
        error=JobError.model_validate(job.error) if job.error else None,
        cost=JobCost.model_validate(job.cost) if job.cost else None,
        links=JobLinks(
            status=status_url, download=f"{status_url}/download" if job.state is JobState.READY else None
        ),
    )


def _shown_request(request: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The request to run again: what the store kept (the API keeps no client token), never a token."""
    if not isinstance(request, Mapping) or not request.get("connection"):
        return None
    return {name: value for name, value in request.items() if name != "client_token"}


def _deadline_at(job: Job, connections: Any) -> str | None:
    """created_at + the deadline Submit applies: the request's deadline_seconds, else the connection's.

    The workflow counts from its execution's start, a moment after the API created the job, so this is
    at most that moment early: never later than the real deadline.
    """
    created = parse_timestamp(job.created_at)
    seconds = (job.request or {}).get("deadline_seconds")
    if not isinstance(seconds, int) and connections is not None and job.connection:
        try:
            seconds = (
                connections.get(job.connection).deadline_seconds if job.connection in connections else None
            )
        except ReportRelayError:
            seconds = None
    if created is None or not isinstance(seconds, int):
        return None
    return iso_timestamp(created + seconds)


def valid_job_id(job_id: str) -> bool:
    """Only an execution name can be a job id; anything else is unknown without asking the store."""
    return bool(JOB_ID_PATTERN.match(job_id))


# ---- helpers


def _client_token(request: JobRequest, header: str | None) -> str | None:
    if header is not None and request.client_token is not None and header != request.client_token:
        raise BadRequest(
            "Idempotency-Key: differs from the body's client_token; "
            "send one of them, or the same value in both"
        )
    return header if header is not None else request.client_token


def _store(runtime: Runtime) -> DynamoDbJobs:
    store = runtime.jobs
    if store is None:
        raise ConfigurationError("REPORTRELAY_JOBS_TABLE is not set: the job API has no job store")
    return store


def _state_machine_arn(runtime: Runtime) -> str:
    if not runtime.settings.state_machine_arn:
        raise ConfigurationError(
            "REPORTRELAY_STATE_MACHINE_ARN is not set: the job API has no workflow to start"
        )
    return runtime.settings.state_machine_arn


def _usable_connection(name: str, principal: Principal, runtime: Runtime) -> Connection:
    """The named connection; an unknown name's message lists only the connections the caller may use.

    Whether the caller may use a known one is ``Principal.team_for``'s to say (403 naming it).
    """
    if name in runtime.connections:
        return runtime.connections.get(name)
    usable = [
        known for known in runtime.connections.names() if principal.may_use(runtime.connections.get(known))
    ]
    raise BadRequest(
        f"request.connection: unknown connection '{name}' (yours: {', '.join(usable) or 'none'})"
    )


def _visible(store: DynamoDbJobs, job_id: str, caller: Caller) -> Job:
    """The job, if the caller's teams may see it; another team's job is as unknown as a missing one."""
    job = _get(store, job_id)
    if not caller.principal.may_see(job.team):
        raise JobNotFound(f"no job has the id '{job_id[:80]}'")
    return job


def _share_links_allowed(job: Job, runtime: Runtime) -> bool:
    output = (job.request or {}).get("output") or {}
    if isinstance(output, dict) and output.get("share_links") is True:
        return True
    return bool(job.connection in runtime.connections and runtime.connections.get(job.connection).share_links)


def _get(store: DynamoDbJobs, job_id: str) -> Job:
    job = store.get(job_id) if valid_job_id(job_id) else None
    if job is None:
        raise JobNotFound(f"no job has the id '{job_id[:80]}'")
    return job


def _started(job: Job) -> bool:
    """Whether the job has an execution: the API's once started; any other's, since it exists at all."""
    return job.started or job.source != "api"


def _execution_of(job: Job, runtime: Runtime) -> str:
    return job.execution_arn or execution_arn_for(_state_machine_arn(runtime), job.job_id)


def _executions(runtime: Runtime) -> JobExecutions:
    settings = runtime.settings
    return JobExecutions(settings.state_machine_arn, settings.cancel_function, client=runtime.client)


def _start_execution(job: Job, runtime: Runtime, store: DynamoDbJobs, *, keep_for_retry: bool) -> None:
    """Start the job's execution, named by its id: starting it twice with the same input starts it once."""
    try:
        _executions(runtime).start(job.job_id, job.request or {})
    except AwsCallFailed as failed:
        logger.warning(
            "execution not started", extra={"job_id": job.job_id, "error": failed.code or "unknown"}
        )
        if not keep_for_retry:
            failure = {"code": "StartFailed", "message": "the workflow could not be started; ask again"}
            store.finish(job.job_id, {"state": JobState.FAILED, "error": failure})
        raise ServiceUnavailable(
            "the workflow could not be started; try again"
            + (" with the same client token" if keep_for_retry else "")
        ) from None
    store.mark_started(job.job_id)


def _stop_execution(job: Job, runtime: Runtime) -> None:
    """Stop the execution; a JobConflict when it had already ended by itself."""
    try:
        status = _executions(runtime).stop(
            _execution_of(job, runtime), CANCELLED_CODE, "cancelled through the job API"
        )
    except AwsCallFailed:
        raise ServiceUnavailable(
            f"the workflow of job {job.job_id} could not be stopped; try again"
        ) from None
    if status is not None and status != "ABORTED":
        raise JobConflict(
            f"job {job.job_id} finished before it could be cancelled (its workflow {status.lower()})"
        )


_AT_PROVIDER = {
    "cancelled": "the report was cancelled at the provider too",
    "unsupported": "the provider offers no way to cancel, so it may still generate the report",
    "failed": "cancelling at the provider failed, so it may still generate the report",
    "not_queued": "no provider handle had been recorded yet, so there was nothing to cancel there",
}


def _cancel_at_provider(job: Job, runtime: Runtime) -> AtProvider:
    """What became of the report at the provider: a key of ``_AT_PROVIDER``. Never raises."""
    if not job.handle or not job.request:
        return "not_queued"
    return _executions(runtime).cancel_at_provider(job.job_id)


def _cancelled_announcement(job: Job, error: Mapping[str, str], runtime: Runtime) -> outbox.Announcement:
    """``Report Failed`` with code Cancelled, shaped exactly as the workflow's own failure events, with its
    own event id (``<job id>/CANCELLED``)."""
    state = {
        "request": job.request or {"connection": job.connection},
        "job": {
            "job_id": job.job_id,
            "provider": job.provider,
            "polls": job.polls,
            "queued_at": job.queued_at,
            "ready_at": job.ready_at,
        },
        "error": {"Error": error["code"], "Cause": error["message"]},
    }
    outcome = describe_outcome(state, runtime.settings.link_base_url)
    detail = {**outcome["detail"], "event_id": outbox.event_id(job.job_id, JobState.CANCELLED.value)}
    return outbox.announcement(
        job.job_id,
        outcome["detail_type"],
        detail,
        now=runtime.clock(),
        resources=(_execution_of(job, runtime),),
    )


def _quiet_for(job: Job, runtime: Runtime) -> float:
    updated = parse_timestamp(job.updated_at)
    return 0.0 if updated is None else runtime.clock() - updated


def _reconcile(job: Job, runtime: Runtime, store: DynamoDbJobs) -> Job:
    """A job whose execution ended without the workflow recording it (stopped in the console, timed out)."""
    execution = _executions(runtime).describe(_execution_of(job, runtime))
    if execution is None:
        return job
    status = execution.get("status")
    if status == "RUNNING":
        return job
    if status == "SUCCEEDED":
        try:
            detail = json.loads(execution.get("output") or "{}")
        except json.JSONDecodeError:
            return job
        fields = outcome_fields(detail)
    else:
        error = {
            "ABORTED": ("Aborted", "the workflow was stopped outside the job API"),
            "TIMED_OUT": ("States.Timeout", "the workflow ran out of time"),
        }.get(
            status or "",
            (execution.get("error") or "States.Runtime", execution.get("cause") or "the workflow failed"),
        )
        fields = {"state": JobState.FAILED, "error": {"code": error[0], "message": error[1]}}
    if store.finish(job.job_id, fields) and status != "SUCCEEDED":
        Recorder(store, job.job_id, "Reconcile", runtime.clock).state(failed_words(str(error[1])))
    return store.get(job.job_id) or job
