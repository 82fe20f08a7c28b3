"""Metric Insights External Report Download API, MI v7.2.1+ (seed 001).

One endpoint, five states, all GET:  /api/element/id/{elementId}/segment/{dimensionId}/download/state/...
  formats                   -> {"status": "OK", "formats": ["image", "pdf", "csv"]}   (submit)
  init                      -> {"status": "OK", "token": "<URL-encoded token>"}      (submit)
  run?token=&format=        -> {"status": "OK"} after up to 30 minutes                 (hold)
  check?token=              -> {"status": "IN PROGRESS" | "READY" | "ERROR"}           (check)
  get?token=&format=        -> the file, Content-Disposition "<element-name>.<ext>"   (open_result)
Errors: {"status": "ERROR", "message": ...} with 400 (Invalid state, Invalid token, No downloads
available, Invalid format, Not implemented for this Element Type, Download failed), 403 (Element not
allowed), 404 (Element not found).

Sign-in (public docs; auth.py): ``app_token`` (POST /api/get_token/ -> header ``Token``) or ``bearer`` (a
personal API token). An expired credential answers 412 "Session expired", so 412 means "sign in again".

Quirks, and where they are handled:
- ``init``'s token is URL-encoded: it is decoded once here and encoded once by ``requests`` as the
  ``token`` query value, so tokens holding ``+``, ``/`` or ``=`` reach the server intact.
- The token is the download session's credential: it is sealed before it enters the workflow state.
- ``run`` generates the file only while its request stays open (up to 30 minutes): ``submit`` only lists the
  formats and opens the session, ``hold`` (a separate, asynchronously invoked function) makes the ``run``
  call with its own long read timeout, and the state machine polls ``check`` meanwhile.
- The session expires 5 minutes after ``init`` and the file is discarded with it; an expired session is a
  failure naming the expiry, never a poll loop that waits for the job deadline.
- ``get`` works once per session (single-use result: a failed store restarts the job from ``init``), and
  answers ``{"status": "IN PROGRESS"}`` or ``{"status": "ERROR"}`` as JSON when there is no file.
- After ``check`` says ERROR, ``get`` must not be called: the job fails with the provider's message.
- Formats are plugin-driven: the request's format is checked against ``formats`` before ``init``.
There is no API to cancel a download session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple
from urllib.parse import unquote

import requests
from pydantic import BaseModel, ConfigDict, Field, model_validator

from reportrelay.config import JobRequest
from reportrelay.errors import (
    BadRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ReportGenerationFailed,
    ReportRelayError,
)
from reportrelay.httpclient import error_for_response, provider_message
from reportrelay.providers.base import (
    Handle,
    Provider,
    ProviderSettings,
    ReportState,
    ReportStatus,
    ResultStream,
    ResumeFrom,
    filename_from_response,
    parse_report,
    streamed,
)


class FileType(NamedTuple):
    extension: str
    content_type: str


_OOXML = "application/vnd.openxmlformats-officedocument"
#: The seed's "Supported File Formats" table: format key -> file extension (and its usual MIME type).
FORMATS: dict[str, FileType] = {
    "image": FileType("png", "image/png"),
    "pdf": FileType("pdf", "application/pdf"),
    "apdf": FileType("pdf", "application/pdf"),
    "ppt": FileType("pptx", f"{_OOXML}.presentationml.presentation"),
    "xls": FileType("xlsx", f"{_OOXML}.spreadsheetml.sheet"),
    "doc": FileType("docx", f"{_OOXML}.wordprocessingml.document"),
    "csv": FileType("csv", "text/csv"),
    "xml": FileType("xml", "application/xml"),
    "mhtml": FileType("mhtml", "multipart/related"),
}

CHECK_STATES = {
    "IN PROGRESS": ReportState.RUNNING,
    "READY": ReportState.READY,
    "ERROR": ReportState.FAILED,
}

SESSION_LIFETIME_SECONDS = 300.0
"""The seed: "The session is identified by a token issued in init and expires after 5 minutes." """

MAX_RUN_SECONDS = 870.0
"""The held ``run`` call's read timeout: 14.5 minutes, inside the 15-minute Lambda limit."""


class MetricInsightsReport(BaseModel):
    """``{"element_id": 1042, "dimension_id": 0}``: an External Report, unsegmented by default."""

    model_config = ConfigDict(extra="forbid")

    element_id: int = Field(ge=1, description="the External Report's element id")
    dimension_id: int = Field(default=0, ge=0, description="dimension value id; 0 for unsegmented")

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        unknown = sorted(set(data) - set(cls.model_fields)) if isinstance(data, dict) else []
        if unknown:
            raise ValueError(
                f"unknown field {', '.join(map(repr, unknown))}; a Metric Insights report is "
                '{"element_id": <External Report id>, "dimension_id": <dimension value id, default 0>}'
            )
        return data


class MetricInsightsSettings(ProviderSettings):
    """Connection settings beyond the common ones; the defaults follow the vendor document."""

    run_timeout_seconds: float = Field(
        default=MAX_RUN_SECONDS,
        gt=0,
        le=MAX_RUN_SECONDS,
        description="read timeout of the held run call (the connection's read timeout is for short calls)",
    )
    session_lifetime_seconds: float = Field(
        default=SESSION_LIFETIME_SECONDS,
        gt=0,
        le=3600,
        description="how long a download session lives after init",
    )


class MetricInsights(Provider):
    key = "metric_insights"
    settings_model = MetricInsightsSettings
    reauth_statuses = (401, 412)
    sealed_handle_fields = frozenset({"token"})
    holds_request = True
    single_use_result = True

    settings: MetricInsightsSettings

    @classmethod
    def validate(cls, request: JobRequest) -> None:
        parse_report(MetricInsightsReport, request)
        if request.format not in FORMATS:
            raise BadRequest(
                f"request.format: '{request.format}' is not a Metric Insights format key; "
                f"choose one of {', '.join(FORMATS)} (the External Report's plugin decides which it offers)"
            )
        if request.parameters:
            raise BadRequest(
                "request.parameters: Metric Insights External Report downloads take no parameters; "
                "filters are configured on the element in Metric Insights, and segments are chosen "
                "with request.report.dimension_id"
            )

    def submit(self, request: JobRequest) -> ReportStatus:
        report = parse_report(MetricInsightsReport, request)
        offered = self._formats(report)
        if request.format not in offered:
            raise BadRequest(
                f"request.format: '{request.format}' is not available for {_element(report)}; "
                f"its plugin offers {', '.join(offered) if offered else 'no formats'}"
            )
        body = _ok_body(self._get(report, "init", action="open download session"), "open download session")
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise ProviderProtocolError("open download session: Metric Insights answered without a token")
        # Decoded once here; requests encodes it once as a query value. Never quote it again.
        handle = {"token": unquote(token), "initialized_at": time.time()}
        return ReportStatus(ReportState.PENDING, handle=handle)

    def lost_submission(self, request: JobRequest) -> str:
        report = request.report or {}
        return (
            f"a run of element {report.get('element_id')} segment {report.get('dimension_id', 0)} may be "
            "generating in Metric Insights; its download session expires on its own and the API cannot "
            "find it again"
        )

    def hold(self, request: JobRequest, handle: Handle) -> None:
        """Make the ``run`` call and keep it open until the file is generated (or generation fails)."""
        report = parse_report(MetricInsightsReport, request)
        response = self._get(
            report,
            "run",
            action="generate report",
            params={"token": handle["token"], "format": request.format},
            accept=(200, 400),
            # A repeated run could start a second generation: retry only answers that prove it was not
            # processed (429, 503, no connection), never a timeout or a 500.
            idempotent=False,
            timeout=(self.connection.timeouts.connect_seconds, self.settings.run_timeout_seconds),
        )
        if response.status_code == 400:
            raise self._session_ended(response, "generate report", report, handle)
        _ok_body(response, "generate report")

    def check(self, request: JobRequest, handle: Handle) -> ReportStatus:
        report = parse_report(MetricInsightsReport, request)
        response = self._get(
            report,
            "check",
            action="check download status",
            params={"token": handle["token"]},
            accept=(200, 400),
        )
        if response.status_code == 400:
            raise self._session_ended(response, "check download status", report, handle)
        body = _json(response, "check download status")
        raw = body.get("status") if isinstance(body, dict) else None
        state = CHECK_STATES.get(str(raw).strip().upper().replace("_", " ")) if raw is not None else None
        if state is None:
            raise ProviderProtocolError(f"check download status: unknown status {raw!r}")
        if state is ReportState.FAILED:
            words = body.get("message")
            return ReportStatus(
                state,
                message=f"Metric Insights could not generate {_element(report)}: "
                + (words if isinstance(words, str) and words else "check answered ERROR"),
            )
        if state is ReportState.RUNNING and self._age(handle) >= self.settings.session_lifetime_seconds:
            # The seed: "If the token expires before run finishes, the file is discarded."
            raise ReportGenerationFailed(self._expired_message(report, handle, "still answered IN PROGRESS"))
        return ReportStatus(state)

    @contextmanager
    def open_result(
        self, request: JobRequest, handle: Handle, resume_from: ResumeFrom | None = None
    ) -> Iterator[ResultStream]:
        report = parse_report(MetricInsightsReport, request)
        response = self._get(
            report,
            "get",
            action="download report",
            params={"token": handle["token"], "format": request.format},
            accept=(200, 400),
            idempotent=False,  # the session is consumed by the first get that reaches the server
            stream=True,
            html_ok=request.format == "mhtml",  # a web archive may be served as text/html
        )
        with response:
            if response.status_code == 400:
                raise self._session_ended(response, "download report", report, handle)
            if "json" in response.headers.get("Content-Type", "").lower():
                raise _not_a_file(_json(response, "download report"), report)
            file_type = FORMATS[request.format]
            filename = filename_from_response(response, f"element-{report.element_id}.{file_type.extension}")
            if "." not in filename:
                filename = f"{filename}.{file_type.extension}"
            result = streamed(response, filename)
            if result.content_type == "application/octet-stream":
                result.content_type = file_type.content_type
            yield result

    # ---- helpers

    def _formats(self, report: MetricInsightsReport) -> list[str]:
        body = _ok_body(self._get(report, "formats", action="list report formats"), "list report formats")
        formats = body.get("formats")
        if not isinstance(formats, list):
            raise ProviderProtocolError(
                "list report formats: Metric Insights answered without a formats list"
            )
        return [str(item).lower() for item in formats]

    def _get(
        self, report: MetricInsightsReport, state: str, *, action: str, **kwargs: Any
    ) -> requests.Response:
        path = f"/api/element/id/{report.element_id}/segment/{report.dimension_id}/download/state/{state}"
        try:
            return self.http.request("GET", path, action=action, **kwargs)
        except ProviderAuthFailed as error:
            if self.connection.auth.type != "bearer":
                raise
            # Still refused after signing in again: a personal API token past its expiry cannot be renewed.
            raise ProviderAuthFailed(
                f"{error}; the personal API token has expired: issue a new one (Admin > System > API Tokens) "
                "and update the connection's secret"
            ) from None

    def _age(self, handle: Handle) -> float:
        started = handle.get("initialized_at")
        return time.time() - float(started) if isinstance(started, int | float) else 0.0

    def _session_ended(
        self, response: requests.Response, action: str, report: MetricInsightsReport, handle: Handle
    ) -> ReportRelayError:
        """A 400 for a session that worked before: expired, consumed, or generation aborted."""
        words = provider_message(response) or f"HTTP {response.status_code}"
        if self._age(handle) >= self.settings.session_lifetime_seconds:
            downloading = action == "download report"
            return ReportGenerationFailed(
                self._expired_message(report, handle, f"answered '{words}'", downloading=downloading)
            )
        if words.strip().lower() == "download failed":
            return ReportGenerationFailed(
                f"{error_for_response(response, action)} (the download session for {_element(report)} "
                "ended: its token expired, generation was aborted, or no file was produced)"
            )
        return error_for_response(response, action)

    def _expired_message(
        self, report: MetricInsightsReport, handle: Handle, what: str, *, downloading: bool = False
    ) -> str:
        lifetime = self.settings.session_lifetime_seconds
        why = (
            "the file was ready but was not downloaded in time"
            if downloading
            else "the report takes longer to generate than a download session allows"
        )
        return (
            f"the Metric Insights download session for {_element(report)} expired: the server {what} "
            f"{_seconds(self._age(handle))} s after init, and sessions last {_seconds(lifetime)} s, "
            f"so the file was discarded; {why}"
        )


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _element(report: MetricInsightsReport) -> str:
    return f"element {report.element_id} (segment {report.dimension_id})"


def _json(response: requests.Response, action: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProviderProtocolError(f"{action}: Metric Insights answered with non-JSON content") from None


def _ok_body(response: requests.Response, action: str) -> dict[str, Any]:
    """The JSON body of a 200 answer, which still says ``"status": "ERROR"`` when the call failed."""
    body = _json(response, action)
    if not isinstance(body, dict):
        raise ProviderProtocolError(
            f"{action}: Metric Insights answered {type(body).__name__}, not an object"
        )
    if str(body.get("status", "OK")).upper() == "ERROR":
        raise ProviderRejected(
            f"{action}: Metric Insights answered ERROR: {body.get('message') or 'no details'}"
        )
    return body


def _not_a_file(body: Any, report: MetricInsightsReport) -> ReportRelayError:
    """``get`` answered a status instead of the file."""
    status = body.get("status") if isinstance(body, dict) else body
    if str(status).upper() == "ERROR":
        words = body.get("message") if isinstance(body, dict) else None
        return ReportGenerationFailed(
            f"download report: Metric Insights answered ERROR instead of the file for {_element(report)}"
            + (f": {words}" if words else "; generation failed")
        )
    return ProviderProtocolError(
        f"download report: Metric Insights answered {status!r} instead of the file for {_element(report)} "
        "although check said READY"
    )
