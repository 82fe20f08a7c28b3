"""Lambda handler of the job API (API Gateway REST proxy, IAM auth): each route parses, calls reportrelay.api.

The OpenAPI document (``docs/openapi.json``) is generated from these routes by ``openapi_document()``;
``scripts/openapi.py`` rewrites it and a test fails when the committed one differs. Every answer a route
can give is declared there, errors included, so that a fuzzer can hold the API to its document. The web
console's pages and forms (``/console...``, rendered by ``reportrelay.console``) are routes here too, for
people on the people API; being HTML for browsers, they are left out of the document.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache, wraps
from html import escape
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import urlencode

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import (
    APIKey,
    APIKeyIn,
    Example,
    OpenIdConnect,
    Server,
    ServerVariable,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reportrelay import api, console, links, people
from reportrelay.access import (
    ACCESS_ENV,
    ACCESS_FILE_ENV,
    AccessPolicy,
    MachineIdentities,
    NotAllowed,
    Principal,
    Unauthenticated,
    iam_tag_reader,
    person_principal,
)
from reportrelay.awsclients import aws_client
from reportrelay.config import JobRequest, describe_validation_error
from reportrelay.errors import BadRequest, ReportRelayError
from reportrelay.jobs import JobStoreUnavailable
from reportrelay.observability import logger, tracer
from reportrelay.runtime import Runtime

API_TITLE = "reportrelay job API"
API_VERSION = "1.0.0"
SECURITY_SCHEME = "sigv4"
PEOPLE_SCHEME = "oidc"
MAX_PAGE = 100
LIST_PARAMETERS = ("connection", "state", "limit", "cursor")
EVENTS_PARAMETERS = ("after",)
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"

app = APIGatewayRestResolver(enable_validation=True)


class ApiError(BaseModel):
    """Every error answer: a code (the error's name) and a message that names the bad field, if any."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="e.g. BadRequest, JobNotFound, JobConflict, ClientTokenReused")
    message: str


class AccessDenied(BaseModel):
    """403: API Gateway's own answer to a request IAM did not allow (``{"message": ...}``, or ``Message``
    for an explicit deny), or an ApiError when the function itself finds no IAM identity."""

    model_config = ConfigDict(extra="allow")

    message: str | None = None
    Message: str | None = None
    code: str | None = None


class LinkOptions(BaseModel):
    """How long a share link lives."""

    model_config = ConfigDict(extra="forbid")

    expires_in: int = Field(
        default=links.DEFAULT_LINK_SECONDS,
        ge=60,
        le=links.MAX_LINK_SECONDS,
        description="seconds (60 to 604800)",
    )


def _error(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": ApiError}}}


def _ok(description: str, model: type[BaseModel], **headers: str) -> OpenAPIResponse:
    answer: OpenAPIResponse = {"description": description, "content": {"application/json": {"model": model}}}
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return answer


UNAUTHENTICATED = _error(
    "People: no bearer token or session cookie, or one that does not verify (expired, another issuer or "
    "audience, unsigned, tampered); the message says which"
)
FORBIDDEN: OpenAPIResponse = {
    "description": "The request was not signed (SigV4) by an IAM principal allowed to call this API, or "
    "the caller's teams may not use the connection named (the message names it)",
    "content": {"application/json": {"model": AccessDenied}},
}
NOT_FOUND = _error("No job has this id")
BAD_REQUEST = _error("The request is invalid; the message names each bad field")
UNAVAILABLE = _error("An AWS service the API depends on failed; retrying is safe")
THROTTLED = _error("Too many requests: API Gateway's throttling for the stage (retry with backoff)")


def _responses(answers: dict[int, OpenAPIResponse]) -> dict[int, OpenAPIResponse]:
    """A route's own answers plus the 403, 429 and 503 every route can give, in status order."""
    every_route = {401: UNAUTHENTICATED, 403: FORBIDDEN, 429: THROTTLED, 503: UNAVAILABLE}
    return dict(sorted({**every_route, **answers}.items()))


REQUEST_EXAMPLES = {
    "report": Example(
        summary="A DevExpress report as PDF, retried safely with a client token",
        value={
            "connection": "acme-dx",
            "report": {"document_id": 10},
            "format": "pdf",
            "parameters": {"Year": 2025},
            "output": {"key_prefix": "finance/"},
            "client_token": "finance-2025-sales",
        },
    ),
    "dashboard": Example(
        summary="A DevExpress dashboard as PNG",
        value={
            "connection": "acme-dx",
            "report": {"dashboard_id": 20, "export_options": {"format": "png"}},
            "format": "image",
        },
    ),
}

JobId = Annotated[str, Path(description="the job's id, as POST /reports answered it")]


# ---- routes


@app.post(
    "/reports",
    status_code=202,
    summary="Start a report job",
    description="Validates the job request against its connection and provider, then starts the workflow. "
    "With a client token (body `client_token` or header `Idempotency-Key`), asking again with the same "
    "request returns the same job instead of queuing the report again; the same token with a different "
    "request is refused with 409. Tokens are scoped to the caller (a principal with its session).",
    operation_id="startJob",
    tags=["jobs"],
    responses=_responses(
        {
            202: {
                **_ok("Accepted: the job is queued", api.JobAccepted, Location="the job's status URL"),
                "links": {
                    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/job_id"}}
                    for name, operation in (
                        ("Watch", "getJob"),
                        ("Download", "downloadJob"),
                        ("Cancel", "cancelJob"),
                    )
                },
            },
            400: BAD_REQUEST,
            409: _error("The client token was already used for a different request"),
            413: _error("The job request is too large"),
            415: _error("The body is not JSON"),
        }
    ),
)
def start_job(
    request: Annotated[
        JobRequest,
        Body(
            description="the job request (see the README's job request table)",
            openapi_examples=REQUEST_EXAMPLES,
        ),
    ],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key", min_length=1, max_length=64, description="alternative to client_token"
        ),
    ] = None,
) -> Response[api.JobAccepted]:
    caller = _caller()
    job, created = api.start_job(request, caller, _runtime(), idempotency_key=idempotency_key)
    status_url = f"{caller.base_url}/reports/{job.job_id}"
    body = api.JobAccepted(
        job_id=job.job_id, state=job.state.value, status_url=status_url, replayed=not created
    )
    return _json(HTTPStatus.ACCEPTED, body, Location=status_url)


@app.get(
    "/reports",
    summary="List recent jobs",
    description="Newest first; filter by connection and/or state; follow `next_cursor` for older jobs.",
    operation_id="listJobs",
    tags=["jobs"],
    responses=_responses({200: _ok("A page of jobs", api.JobList), 400: BAD_REQUEST}),
)
def list_jobs(
    connection: Annotated[
        str | None, Query(min_length=1, max_length=128, description="only this connection")
    ] = None,
    state: Annotated[api.StateName | None, Query(description="only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="jobs per page")] = 20,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=2048, description="from next_cursor")
    ] = None,
) -> Response[api.JobList]:
    caller = _caller()
    jobs, next_cursor = api.list_jobs(
        caller, _runtime(), connection=connection, state=state, limit=limit, cursor=cursor
    )
    connections = _runtime().connections
    views = [api.job_view(job, caller.base_url, connections) for job in jobs]
    body = api.JobList(jobs=views, next_cursor=next_cursor)
    return _json(HTTPStatus.OK, body)


@app.get(
    "/reports/<job_id>",
    summary="Watch a job",
    description="State, the provider's progress and message, polls, timestamps, the stored file's size and "
    "SHA-256 once ready, and the error once failed or cancelled.",
    operation_id="getJob",
    tags=["jobs"],
    responses=_responses({200: _ok("The job", api.JobView), 404: NOT_FOUND}),
)
def get_job(job_id: JobId) -> Response[api.JobView]:
    caller, runtime = _caller(), _runtime()
    job = api.describe_job(job_id, caller, runtime)
    return _json(HTTPStatus.OK, api.job_view(job, caller.base_url, runtime.connections))


@app.get(
    "/reports/<job_id>/events",
    summary="Follow what a job did",
    description="The job's activity in plain words, oldest first: each state it moved to, each wait before "
    "the next check, every retry as it happened (with its cause, wait and attempt numbers), every restart "
    "after a lost single-use download. Pass the answer's `next` as `after` to get only what came since "
    "(poll it to follow a running job live). A long story keeps its milestones and its latest retries and "
    "waits. Figures a kind has no use for are left out.",
    operation_id="getJobEvents",
    tags=["jobs"],
    responses=_responses({200: _ok("The job's events", api.JobEvents), 400: BAD_REQUEST, 404: NOT_FOUND}),
)
def get_job_events(
    job_id: JobId,
    after: Annotated[
        str | None, Query(min_length=1, max_length=64, description="an earlier answer's next")
    ] = None,
) -> Response[Any]:  # not Response[JobEvents]: that would put back the figures left out
    answer = api.job_events(job_id, _caller(), _runtime(), after=after)
    events = [event.model_dump(mode="json", exclude_none=True) for event in answer.events]
    return _json(HTTPStatus.OK, answer, events=events)


@app.get(
    "/reports/<job_id>/download",
    summary="Download a ready job's report",
    description="Redirects to a presigned S3 URL signed just now, valid for a few minutes "
    "(REPORTRELAY_DOWNLOAD_URL_SECONDS, default 300): follow the redirect (curl -L) without re-signing. "
    "Links in events and chat stay usable because this endpoint, not the link, does the signing.",
    operation_id="downloadJob",
    tags=["jobs"],
    responses=_responses(
        {
            302: _ok(
                "Found: the presigned URL is in Location (and the body)", api.DownloadLink, Location="the URL"
            ),
            404: NOT_FOUND,
            409: _error("The job is not ready (yet, or ever)"),
            410: _error("The report has expired from the bucket"),
        }
    ),
)
def download_job(job_id: JobId) -> Response[Any]:
    try:
        caller = _caller()
    except Unauthenticated:
        sign_in = _browser_sign_in(f"/reports/{job_id}/download")
        if sign_in is None:
            raise
        return sign_in
    url, seconds, stored = api.download_link(job_id, caller, _runtime())
    body = api.DownloadLink(
        url=url, expires_in=seconds, filename=stored["filename"], size=stored["size"], sha256=stored["sha256"]
    )
    return _json(HTTPStatus.FOUND, body, Location=url)


@app.delete(
    "/reports/<job_id>",
    summary="Cancel a job",
    description="Stops the workflow, cancels at the provider where its API allows, and announces "
    "`Report Failed` with error code `Cancelled`. A job that already finished cannot be cancelled (409).",
    operation_id="cancelJob",
    tags=["jobs"],
    responses=_responses(
        {
            200: _ok("Cancelled: the job as it now stands", api.JobView),
            404: NOT_FOUND,
            409: _error("The job had already finished"),
        }
    ),
)
def cancel_job(job_id: JobId) -> Response[api.JobView]:
    caller, runtime = _caller(), _runtime()
    job = api.cancel_job(job_id, caller, runtime)
    return _json(HTTPStatus.OK, api.job_view(job, caller.base_url, runtime.connections))


@app.post(
    "/reports/<job_id>/links",
    status_code=201,
    summary="Share a job's report",
    description="Mints a signed, expiring link to this job's report that opens without signing in "
    "(default 24 h, at most 7 days), where the job's connection (`share_links`) or its request "
    "(`output.share_links`) allows share links. Minting and every use are logged with who and which job.",
    operation_id="shareJob",
    tags=["links"],
    responses=_responses(
        {
            201: _ok("The link", api.LinkView),
            400: BAD_REQUEST,
            404: NOT_FOUND,
            415: _error("The body is not JSON"),
        }
    ),
)
def share_job(
    job_id: JobId,
    options: Annotated[LinkOptions | None, Body(description="how long the link lives")] = None,
) -> Response[api.LinkView]:
    caller = _caller()
    seconds = options.expires_in if options is not None else None
    return _json(HTTPStatus.CREATED, api.mint_link(job_id, caller, _runtime(), seconds=seconds))


@app.delete(
    "/reports/<job_id>/links/<link_id>",
    summary="Revoke a share link",
    description="The link stops working at once (410 to whoever follows it).",
    operation_id="revokeLink",
    tags=["links"],
    responses=_responses({200: _ok("Revoked", api.LinkRevoked), 404: NOT_FOUND}),
)
def revoke_link(
    job_id: JobId, link_id: Annotated[str, Path(description="as POST .../links answered it")]
) -> Response[api.LinkRevoked]:
    caller = _caller()
    return _json(HTTPStatus.OK, api.revoke_link(job_id, link_id, caller, _runtime()))


@app.get(
    "/links/<token>",
    summary="Open a share link",
    description="Redirects to a presigned S3 URL signed just now; no sign-in. A changed link answers 403, "
    "an expired or revoked one 410, each with a page a person can read.",
    operation_id="openLink",
    tags=["links"],
    security=[{}],
    responses={
        302: {"description": "Found: the presigned URL is in Location"},
        403: {
            "description": "The link was changed (a page); on the IAM API, a request not signed with SigV4",
            "content": {"text/html": {}, "application/json": {"model": AccessDenied}},
        },
        404: _error("Not a link: the token has characters no link has"),
        409: {"description": "The report is not ready", "content": {"text/html": {}}},
        410: {"description": "The link expired or was revoked", "content": {"text/html": {}}},
        429: THROTTLED,
        503: UNAVAILABLE,
    },
)
def open_link(token: Annotated[str, Path(description="the link's token")]) -> Response[Any]:
    try:
        url, _, _ = api.open_link(token, _runtime())
    except links.LinkTampered as error:
        return _page(HTTPStatus.FORBIDDEN, "This link is not valid", str(error))
    except links.LinkGone as error:
        return _page(HTTPStatus.GONE, "This link no longer works", str(error))
    except api.ReportExpired as error:
        return _page(HTTPStatus.GONE, "This report is no longer kept", str(error))
    except api.JobConflict as error:
        return _page(HTTPStatus.CONFLICT, "This report is not ready yet", str(error))
    return _redirect(url)


@app.get(
    people.CALLBACK_PATH,
    summary="Finish signing in",
    description="Where the identity provider sends a person back after signing in (authorization code "
    "with PKCE); sets the session cookie and redirects to the page the sign-in started from.",
    operation_id="signInCallback",
    tags=["people"],
    security=[{}],
    responses={
        302: {"description": "Signed in: back to where the sign-in started"},
        400: BAD_REQUEST,
        401: {"description": "The sign-in failed", "content": {"text/html": {}}},
        429: THROTTLED,
        503: UNAVAILABLE,
    },
)
def sign_in_callback(
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> Response[Any]:
    verifier = _verifier()
    if verifier is None:
        return _page(
            HTTPStatus.UNAUTHORIZED, "Sign-in is not set up", "people cannot sign in to this deployment"
        )
    query = {name: value for name, value in (("code", code), ("state", state), ("error", error)) if value}
    try:
        done = people.finish_sign_in(verifier, _people_url(), query, app.current_event.headers)
    except Unauthenticated as refused:
        return _page(HTTPStatus.UNAUTHORIZED, "Sign-in failed", str(refused))
    return _redirect(done.location, done.cookies)


# ---- the web console (reportrelay.console): pages for people, on the people API; not in the document


def _console_route(route: Callable[..., Response[Any]]) -> Callable[..., Response[Any]]:
    """A console page: an AWS service that fails is a page saying to try again (503), not JSON."""

    @wraps(route)
    def page(*args: Any, **kwargs: Any) -> Response[Any]:
        try:
            return route(*args, **kwargs)
        except (api.ServiceUnavailable, JobStoreUnavailable) as failed:
            return _console_message(
                None, HTTPStatus.SERVICE_UNAVAILABLE, "Try again in a moment", str(failed)
            )

    return page


@dataclass(frozen=True)
class ConsolePost:
    """A console form that was posted by a signed-in person and passed its CSRF check."""

    caller: api.Caller
    runtime: Runtime
    page: console.Page
    cookie: str | None
    form: dict[str, str]


def _console_post(action: Callable[..., Response[Any]]) -> Callable[..., Response[Any]]:
    """A console form's action: sign-in and the form's CSRF token checked first, then ``action`` with the
    post and the route's path parameters (the route's signature is those parameters alone)."""

    @wraps(action)
    def posted(**path: str) -> Response[Any]:
        caller = _console_caller()
        if isinstance(caller, Response):
            return caller
        runtime = _runtime()
        page, cookie = _console_page(caller)
        form = _console_form(page)
        if isinstance(form, Response):
            return form
        return action(ConsolePost(caller, runtime, page, cookie, form), **path)

    parameters = list(inspect.signature(action).parameters.values())[1:]
    posted.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return posted


@app.get("/console", include_in_schema=False)
@_console_route
def console_list() -> Response[Any]:
    caller = _console_caller()
    if isinstance(caller, Response):
        return caller
    runtime = _runtime()
    page, cookie = _console_page(caller)
    try:
        filters = console.Filters.from_query(app.current_event.query_string_parameters or {})
    except ValueError as bad:
        return _console_list(page, cookie, caller, runtime, console.Filters(), problem=str(bad), status=400)
    return _console_list(page, cookie, caller, runtime, filters)


@app.get("/console/reports/<job_id>", include_in_schema=False)
@_console_route
def console_job(job_id: str) -> Response[Any]:
    caller = _console_caller()
    if isinstance(caller, Response):
        return caller
    page, cookie = _console_page(caller)
    return _console_job(page, cookie, job_id, caller, _runtime())


@app.post("/console/reports", include_in_schema=False)
@_console_route
@_console_post
def console_start(post: ConsolePost) -> Response[Any]:
    caller, runtime, page, cookie, form = post.caller, post.runtime, post.page, post.cookie, post.form
    filters = console.Filters()
    try:
        request = JobRequest.model_validate(console.request_from_form(form))
        job, _ = api.start_job(request, caller, runtime)
    except ValueError as bad:  # a ValidationError is one too
        problem = describe_validation_error(bad, "request") if isinstance(bad, ValidationError) else str(bad)
        return _console_list(page, cookie, caller, runtime, filters, form=form, problem=problem, status=400)
    except (BadRequest, NotAllowed, api.JobConflict, api.RequestTooLarge) as refused:
        status = next(status for kind, status in _STATUS if isinstance(refused, kind))
        return _console_list(
            page, cookie, caller, runtime, filters, form=form, problem=str(refused), status=status.value
        )
    return _see_other(page.url(f"/console/reports/{job.job_id}"))


@app.post("/console/reports/<job_id>/cancel", include_in_schema=False)
@_console_route
@_console_post
def console_cancel(post: ConsolePost, job_id: str) -> Response[Any]:
    caller, runtime, page, cookie = post.caller, post.runtime, post.page, post.cookie
    try:
        api.cancel_job(job_id, caller, runtime)
    except api.JobConflict as refused:
        return _console_job(page, cookie, job_id, caller, runtime, problem=str(refused), status=409)
    except api.JobNotFound as unknown:
        return _console_message(page, HTTPStatus.NOT_FOUND, "No such job", str(unknown))
    return _see_other(page.url(f"/console/reports/{job_id}"))


@app.post("/console/reports/<job_id>/rerun", include_in_schema=False)
@_console_route
@_console_post
def console_rerun(post: ConsolePost, job_id: str) -> Response[Any]:
    caller, runtime, page, cookie, form = post.caller, post.runtime, post.page, post.cookie, post.form
    try:
        earlier = api.job_view(api.describe_job(job_id, caller, runtime), caller.base_url)
        if earlier.request is None:
            raise api.JobConflict(
                f"job {job_id} has no recorded request to run again; start one from the form"
            )
        again = {**earlier.request, "client_token": form.get("client_token", "")[:64] or None}
        job, _ = api.start_job(JobRequest.model_validate(again), caller, runtime)
    except api.JobNotFound as unknown:
        return _console_message(page, HTTPStatus.NOT_FOUND, "No such job", str(unknown))
    except ValidationError as bad:
        problem = describe_validation_error(bad, "request")
        return _console_job(page, cookie, job_id, caller, runtime, problem=problem, status=400)
    except (BadRequest, NotAllowed, api.JobConflict, api.RequestTooLarge) as refused:
        status = next(status for kind, status in _STATUS if isinstance(refused, kind))
        return _console_job(page, cookie, job_id, caller, runtime, problem=str(refused), status=status.value)
    return _see_other(page.url(f"/console/reports/{job.job_id}"))


@app.get("/console/static/<name>", include_in_schema=False)
def console_static(name: str) -> Response[Any]:
    found = console.static_file(name)
    if found is None:
        return _json(
            HTTPStatus.NOT_FOUND, ApiError(code="NotFound", message=f"the console has no file '{name[:64]}'")
        )
    text, content_type = found
    return Response(
        status_code=HTTPStatus.OK.value,
        content_type=content_type,
        body=text,
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


# ---- errors: every one an ApiError body with a status the document declares


_STATUS: list[tuple[type[Exception], HTTPStatus]] = [
    (Unauthenticated, HTTPStatus.UNAUTHORIZED),
    (NotAllowed, HTTPStatus.FORBIDDEN),
    (api.JobNotFound, HTTPStatus.NOT_FOUND),
    (api.JobConflict, HTTPStatus.CONFLICT),
    (api.RequestTooLarge, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (api.ReportExpired, HTTPStatus.GONE),
    (BadRequest, HTTPStatus.BAD_REQUEST),
    (api.ServiceUnavailable, HTTPStatus.SERVICE_UNAVAILABLE),
    (JobStoreUnavailable, HTTPStatus.SERVICE_UNAVAILABLE),
]


@app.exception_handler([error for error, _ in _STATUS])
def _known_error(error: ReportRelayError) -> Response[ApiError]:
    status = next(status for kind, status in _STATUS if isinstance(error, kind))
    headers = (
        {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status is HTTPStatus.UNAUTHORIZED else {}
    )
    return _json(status, ApiError(code=error.code, message=str(error)), **headers)


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response[ApiError]:
    return _json(
        HTTPStatus.BAD_REQUEST, ApiError(code="BadRequest", message=describe_request_errors(error.errors()))
    )


@app.exception_handler(RequestUnsupportedContentType)
def _not_json(error: RequestUnsupportedContentType) -> Response[ApiError]:
    return _json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, ApiError(code="UnsupportedMediaType", message=_JSON_ONLY))


@app.exception_handler(UnicodeDecodeError)
def _not_utf8(error: UnicodeDecodeError) -> Response[ApiError]:
    return _json(
        HTTPStatus.BAD_REQUEST, ApiError(code="BadRequest", message="request: the body is not UTF-8 JSON")
    )


@app.not_found
def _no_route(error: NotFoundError) -> Response[ApiError]:
    return _json(
        HTTPStatus.NOT_FOUND, ApiError(code="NotFound", message="no such route; see docs/openapi.json")
    )


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response[ApiError]:
    """A bug or a broken deployment: logged with its traceback, answered without any of its details."""
    logger.exception("unexpected error in the job API")
    request_id = getattr(app.lambda_context, "aws_request_id", "unknown")
    message = f"unexpected {type(error).__name__}; see the API function's log for request id {request_id}"
    if isinstance(error, ReportRelayError):
        message = f"{error.code}: {error}"
    return _json(HTTPStatus.INTERNAL_SERVER_ERROR, ApiError(code="InternalError", message=message))


_JSON_ONLY = "the body must be JSON (Content-Type: application/json)"
_LOCATIONS = {"body": "request", "query": "query", "header": "header", "path": "path"}


def describe_request_errors(errors: list[dict[str, Any]]) -> str:
    """One line naming every bad field as the user wrote it: ``request.format: ...; query.limit: ...``."""
    problems = []
    for item in errors:
        where, *rest = [str(part) for part in item.get("loc", ())] or ["request"]
        if item.get("type") == "json_invalid":
            problems.append("request: the body is not valid JSON")
            continue
        path = ".".join([_LOCATIONS.get(where, where), *rest])
        message = str(item.get("msg", "is invalid")).removeprefix("Value error, ")
        if item.get("type") == "missing":
            message = "is required"
        if item.get("type") in ("model_attributes_type", "dict_type") and not rest:
            message = "must be a JSON object with 'connection', 'report' and 'format'"
        problems.append(f"{path}: {message}")
    return "; ".join(dict.fromkeys(problems)) or "request: invalid"


# ---- plumbing


def _runtime() -> Runtime:
    """One Runtime per invocation (its clients and connections), made when a route first needs it."""
    if "runtime" not in app.context:
        app.append_context(runtime=Runtime.from_env())
    runtime: Runtime = app.context["runtime"]
    return runtime


def _caller() -> api.Caller:
    """Who is asking: the IAM principal API Gateway verified, or a person whose token verifies here."""
    arn = app.current_event.request_context.identity.user_arn
    principal = _machines().principal(arn) if arn else _person(app.current_event.headers)
    settings = _runtime().settings
    base_url = (settings.api_url or _here()) if arn else _people_url()
    return api.Caller(principal=principal, base_url=base_url, people_url=settings.people_url)


def _person(headers: Mapping[str, str]) -> Principal:
    token = people.bearer_token(headers) or people.session_token(headers)
    if token is None:
        raise Unauthenticated(
            "sign in: send 'Authorization: Bearer <token>' from the identity provider, "
            "or call the IAM API with AWS SigV4"
        )
    verifier = _verifier()
    if verifier is None:
        raise Unauthenticated("people cannot sign in to this deployment: call the IAM API with AWS SigV4")
    return person_principal(verifier.verify(token), _policy())


def _browser_sign_in(return_to: str) -> Response[Any] | None:
    """A signed-out browser (it asks for HTML and sends no bearer token) is sent to sign in first."""
    headers = app.current_event.headers
    verifier = _verifier()
    if verifier is None or "text/html" not in (headers.get("accept") or "") or people.bearer_token(headers):
        return None
    start = people.start_sign_in(verifier.settings, _people_url(), return_to)
    return _redirect(start.location, [start.cookie])


def _here() -> str:
    """This API's URL as the request reached it (API Gateway's domain and stage)."""
    context = app.current_event.request_context
    return f"https://{context.domain_name}/{context.stage}" if context.domain_name and context.stage else ""


def _people_url() -> str:
    return _runtime().settings.people_url or _here()


def _policy() -> AccessPolicy:
    return _access(os.environ.get(ACCESS_ENV, ""), os.environ.get(ACCESS_FILE_ENV, ""))[0]


def _machines() -> MachineIdentities:
    return _access(os.environ.get(ACCESS_ENV, ""), os.environ.get(ACCESS_FILE_ENV, ""))[1]


@lru_cache(maxsize=1)
def _access(document: str, file: str) -> tuple[AccessPolicy, MachineIdentities]:
    """The access policy and the IAM caller lookup (its tag cache), once per process and policy."""
    policy = AccessPolicy.from_env({ACCESS_ENV: document, ACCESS_FILE_ENV: file})
    return policy, MachineIdentities(policy, iam_tag_reader(aws_client("iam")))


def _verifier() -> people.TokenVerifier | None:
    """The verifier of the deployment's issuer (None: people cannot sign in); its keys cached per process."""
    settings = people.OidcSettings.from_env()
    return None if settings is None else _verifier_for(settings)


@lru_cache(maxsize=1)
def _verifier_for(settings: people.OidcSettings) -> people.TokenVerifier:
    return people.TokenVerifier(settings)


def _redirect(location: str, cookies: list[str] | None = None) -> Response[Any]:
    headers: dict[str, str | list[str]] = {"Location": location, "Cache-Control": "no-store"}
    if cookies:
        headers["Set-Cookie"] = cookies
    return Response(status_code=HTTPStatus.FOUND.value, headers=headers)


# ---- the console's plumbing


def _console_caller() -> api.Caller | Response[Any]:
    """The signed-in person; a signed-out browser is sent to sign in (back to this page afterwards)."""
    try:
        return _caller()
    except Unauthenticated as refused:
        verifier = _verifier()
        if verifier is None:
            return _console_message(
                None,
                HTTPStatus.UNAUTHORIZED,
                "Sign-in is not set up",
                f"{refused}. The console is for people who sign in with the deployment's identity provider.",
            )
        event = app.current_event
        if event.http_method != "GET":
            return _console_message(
                None, HTTPStatus.UNAUTHORIZED, "Signed out", f"{refused}; open the console again to sign in"
            )
        query = urlencode(event.query_string_parameters or {})
        start = people.start_sign_in(
            verifier.settings, _people_url(), event.path + (f"?{query}" if query else "")
        )
        return _redirect(start.location, [start.cookie])


def _console_page(caller: api.Caller) -> tuple[console.Page, str | None]:
    """The pages' frame for this caller, and the CSRF cookie to set when the browser has none yet."""
    token, new = console.csrf_token(console.cookies(app.current_event.headers))
    cookie = console.csrf_cookie(new, caller.base_url) if new else None
    principal = caller.principal
    who = f"{principal.name or principal.id} ({', '.join(sorted(principal.teams)) or 'no team'})"
    return console.Page(caller.base_url, who, token), cookie


def _console_form(page: console.Page) -> dict[str, str] | Response[Any]:
    """The POSTed form, once its CSRF token and origin check out; else a 403 page."""
    event = app.current_event
    try:
        form = console.parse_form(event.body, bool(event.is_base64_encoded))
        console.check_form(form, console.cookies(event.headers), event.headers.get("origin"), page.base_url)
    except ValueError as bad:
        return _console_message(page, HTTPStatus.BAD_REQUEST, "This form could not be read", str(bad))
    except console.FormRefused as refused:
        return _console_message(page, HTTPStatus.FORBIDDEN, "This form was refused", str(refused))
    return form


def _console_list(
    page: console.Page,
    cookie: str | None,
    caller: api.Caller,
    runtime: Runtime,
    filters: console.Filters,
    *,
    form: dict[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response[Any]:
    """The list page: the caller's teams' jobs that pass the filters, a page of about PAGE_SIZE."""
    jobs: list[dict[str, Any]] = []
    cursor = filters.cursor
    try:
        for _ in range(10):  # a date filter skips pages; ten store pages at most per answer
            found, cursor = api.list_jobs(
                caller,
                runtime,
                connection=filters.connection,
                state=filters.state,
                limit=console.PAGE_SIZE,
                cursor=cursor,
            )
            views = [
                api.job_view(job, caller.base_url, runtime.connections).model_dump(mode="json")
                for job in found
            ]
            jobs += [view for view in views if filters.admits(view["created_at"])]
            if any(filters.before_since(view["created_at"]) for view in views):
                cursor = None
            if cursor is None or len(jobs) >= console.PAGE_SIZE:
                break
    except BadRequest as bad:  # a cursor that is not one of ours
        problem, cursor = str(bad), None
        status = 400
    usable = [
        name
        for name in runtime.connections.names()
        if caller.principal.may_use(runtime.connections.get(name))
    ]
    html = console.list_page(
        page, jobs, filters, connections=usable, next_cursor=cursor, form=form, problem=problem
    )
    return _console_html(status, html, cookie)


def _console_job(
    page: console.Page,
    cookie: str | None,
    job_id: str,
    caller: api.Caller,
    runtime: Runtime,
    *,
    problem: str | None = None,
    status: int = 200,
) -> Response[Any]:
    try:
        job = api.job_view(api.describe_job(job_id, caller, runtime), caller.base_url, runtime.connections)
        events = api.job_events(job_id, caller, runtime)
    except api.JobNotFound as unknown:
        return _console_message(page, HTTPStatus.NOT_FOUND, "No such job", str(unknown))
    shown = {
        "events": [event.model_dump(mode="json", exclude_none=True) for event in events.events],
        "next": events.next,
    }
    return _console_html(
        status, console.job_page(page, job.model_dump(mode="json"), shown, problem=problem), cookie
    )


def _console_message(page: console.Page | None, status: HTTPStatus, title: str, text: str) -> Response[Any]:
    return _console_html(status.value, console.message_page(page, title, text), None)


def _console_html(status: int, html: str, cookie: str | None) -> Response[Any]:
    headers: dict[str, str | list[str]] = dict(console.PAGE_HEADERS)
    if cookie:
        headers["Set-Cookie"] = [cookie]
    return Response(status_code=status, content_type="text/html; charset=utf-8", body=html, headers=headers)


def _see_other(location: str) -> Response[Any]:
    """After a console form: the browser GETs the page it names (303)."""
    return Response(
        status_code=HTTPStatus.SEE_OTHER.value, headers={"Location": location, "Cache-Control": "no-store"}
    )


def _page(status: HTTPStatus, title: str, text: str) -> Response[str]:
    """A plain page for a person who followed a link in a browser."""
    body = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title>"
        f"<body><h1>{escape(title)}</h1><p>{escape(text)}</p></body></html>"
    )
    return Response(
        status_code=status.value,
        content_type="text/html; charset=utf-8",
        body=body,
        headers={"Cache-Control": "no-store"},
    )


def _json(
    status: HTTPStatus, body: BaseModel, *, events: list[dict[str, Any]] | None = None, **headers: str
) -> Response[Any]:
    """The model as JSON; ``events`` replaces its events (each with its unset figures left out)."""
    document = body.model_dump(mode="json")
    if events is not None:
        document["events"] = events
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=document,
        headers={"Cache-Control": "no-store", **headers},
    )


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    refused = _refuse_non_json(event) or _refuse_unknown_query(event)
    return refused if refused is not None else app.resolve(event, context)


def _refuse_unknown_query(event: dict[str, Any]) -> dict[str, Any] | None:
    """400 for a query parameter no route knows: ``?stat=ready`` is a typo, not a request for everything."""
    path = str(event.get("path", ""))
    if event.get("httpMethod") == "GET" and path == "/reports":
        known = LIST_PARAMETERS
    elif event.get("httpMethod") == "GET" and path.startswith("/reports/") and path.endswith("/events"):
        known = EVENTS_PARAMETERS
    elif path.startswith("/reports/"):
        known = ()
    else:
        return None
    given = {
        **(event.get("queryStringParameters") or {}),
        **(event.get("multiValueQueryStringParameters") or {}),
    }
    unknown = sorted(name for name in given if name not in known)
    if not unknown:
        return None
    accepted = f"(known: {', '.join(known)})" if known else "(this route takes none)"
    message = "; ".join(f"query.{name}: unknown parameter {accepted}" for name in unknown)
    return _raw(HTTPStatus.BAD_REQUEST, ApiError(code="BadRequest", message=message))


def _refuse_non_json(event: dict[str, Any]) -> dict[str, Any] | None:
    """415 for a body that says it is not JSON, before any parser (form, multipart) tries to read it."""
    headers = {str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()}
    media_type = headers.get("content-type", "").split(";")[0].strip()
    if not event.get("body") or media_type in ("", "application/json"):
        return None
    if media_type == FORM_MEDIA_TYPE and str(event.get("path", "")).startswith("/console/"):
        return None  # the console's forms, read by their routes
    return _raw(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, ApiError(code="UnsupportedMediaType", message=_JSON_ONLY))


def _raw(status: HTTPStatus, body: ApiError) -> dict[str, Any]:
    """A proxy integration answer made before the resolver runs."""
    return {
        "statusCode": status.value,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, "Cache-Control": "no-store"},
        "body": body.model_dump_json(),
        "isBase64Encoded": False,
    }


# ---- the OpenAPI document


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI 3.1 document, from the routes above, as committed in docs/openapi.json.

    Powertools declares a 422 for its own validation errors on every route; this API answers those
    with 400 (naming the field), so the 422s and their schemas are taken out again.
    """
    document: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title=API_TITLE,
            version=API_VERSION,
            description="Start, watch, download, share and cancel reportrelay report jobs. Machines sign "
            "requests to the IAM API with AWS SigV4 (awscurl, or any AWS SDK's signer); people call the "
            "people API with a bearer token from the deployment's identity provider, or click links in a "
            "browser and sign in. Every caller acts for its teams and sees only their jobs.",
            servers=[
                Server(
                    url="https://{api_id}.execute-api.{region}.amazonaws.com/{stage}",
                    variables={
                        "api_id": ServerVariable(
                            default="example", description="the RestApi id (stack output)"
                        ),
                        "region": ServerVariable(default="us-east-1"),
                        "stage": ServerVariable(default="v1"),
                    },
                )
            ],
            security_schemes={
                SECURITY_SCHEME: APIKey(
                    name="Authorization",
                    in_=APIKeyIn.header,
                    description="Machines: AWS Signature Version 4 on the IAM API (API Gateway AWS_IAM "
                    "authorization); the caller is the principal ARN with its role session",
                    openapi_extensions={"x-amazon-apigateway-authtype": "awsSigv4"},
                ),
                PEOPLE_SCHEME: OpenIdConnect(
                    openIdConnectUrl="https://{issuer}/.well-known/openid-configuration",
                    description="People: an ID or access token of the deployment's OIDC issuer (a Cognito "
                    "user pool by default) as 'Authorization: Bearer', or the session cookie a browser gets "
                    "from signing in, on the people API; teams come from the token's groups claim",
                ),
            },
            security=[{SECURITY_SCHEME: []}, {PEOPLE_SCHEME: []}],
        )
    )
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    unused = True
    while unused:  # powertools' own error schemas, once nothing refers to them any more
        unused = False
        for name in ("HTTPValidationError", "ResponseValidationError", "ValidationError"):
            others = {key: value for key, value in schemas.items() if key != name}
            if name in schemas and f"#/components/schemas/{name}" not in json.dumps(
                [document["paths"], others]
            ):
                del schemas[name]
                unused = True
    return document
