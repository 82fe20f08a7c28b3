"""MyReports: Xarios call reporting at ``https://api.{na,eu,uk,au}.myreports.cloud`` (seed 002).

Sign-in:  OAuth2 at a separate login host (public docs: https://login.xarios.cloud/connect/token). A person
          authorises once (authorization code); from then on refresh-token grants buy access tokens
          -> auth.py ``oauth_refresh_token``, which adopts a rotated refresh token. A static bearer token
          (auth ``bearer``) works too. The header is ``Authorization: Bearer`` (the docs misspell it
          "Authorisation"). 401 "Unauthorised" when the token is missing, invalid or expired.
Create:   POST {api}/v1.0/workspaces/{ws}/reports/{reportId}/requests
          {"reportId", "filterId"?, "dateFilter": {"presetName"} | {"start", "end"},
           "additionalConditions": [...]}
          -> {"data": {"requestId", ...}, "status": "success", "timestamp"}
Status:   GET  {api}/v1.0/workspaces/{ws}/reports/{reportId}/results/{requestId}
          -> {"data": {"status": "Complete", "statusMessage": "Report processing complete", ...},
              "status": "success"}
Data:     GET  {api}/v1.0/workspaces/{ws}/reports/{reportId}/results/{requestId}/data
          -> ONE JSON document: {"request": {... "displayFields": [{"fieldName"}], ...}, "rowLimitExceeded",
             "totalCount", "data": [rows], "summary": [...], "status": 1, "statusMessage", "rowLimit"}

Quirks handled here:
- The documents contradict themselves on paths: the templates say ``/v1.0/.../results/{id}``, the examples
  call ``/api/v1.0/.../requests/{id}``. Both parts are connection settings (``api_prefix``, default "/api";
  ``results_segment``, default "results"), used for the status and the data calls alike.
- Only "Complete" is a documented status. The mapping is liberal: Complete/Completed/Succeeded... -> READY,
  Failed/Error... -> FAILED (with statusMessage), Cancelled... -> CANCELLED, Queued/Pending... -> PENDING,
  and any other value -> RUNNING with statusMessage as the message.
- A result holds up to ``rowLimit`` (1,000,000) rows in one document, so it is never loaded whole
  (``reportrelay.transforms.json_records``, the facts and verdict below are this vendor's): ijson reads
  the response's raw stream event by event. Format "json" passes the bytes through unchanged; format "csv"
  writes one row per record, with the report's display fields (``request.displayFields[].fieldName``, which
  precede ``data`` in the document) as columns. Fields a record lacks are empty cells; fields outside the
  display fields (``docId``) are left out. Without display fields, the first record's keys are the columns.
- The document has its own ``status`` (1 = complete), after the rows. Anything else means nothing is stored:
  a failure word fails the job with ``statusMessage``; "still processing" (or an unknown value) is retried
  as an interrupted download. ``rowLimitExceeded`` is logged as a warning; the file is still delivered.
- No cancel endpoint is documented, so ``cancel`` stays the base's "not possible".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reportrelay.config import JobRequest
from reportrelay.errors import (
    BadRequest,
    DownloadInterrupted,
    ProviderProtocolError,
    ProviderRejected,
    ReportCancelled,
    ReportGenerationFailed,
)
from reportrelay.providers.base import (
    Handle,
    Provider,
    ProviderSettings,
    ReportState,
    ReportStatus,
    ResultStream,
    ResumeFrom,
    content_type_of,
    decoded_length,
    filename_from_response,
    parse_report,
    require_format,
)
from reportrelay.transforms.json_records import JsonRecords, RawSource

log = logging.getLogger(__name__)

API_VERSION = "v1.0"
FORMATS = ("json", "csv")
#: The results document's ``status`` when the data is complete (the seed's only example value).
DATA_COMPLETE = 1

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.~-]{0,127}$")
_PRESET = re.compile(r"^[A-Za-z][A-Za-z0-9]{1,63}$")

# Status words, compared without case, spaces, "_" or "-". Only "Complete" is documented.
_READY_WORDS = {"complete", "completed", "succeeded", "success", "successful", "done", "finished", "ready"}
_FAILED_WORDS = {"failed", "failure", "error", "errored", "faulted", "fault"}
_CANCELLED_WORDS = {"cancelled", "canceled", "aborted"}
_PENDING_WORDS = {"queued", "pending", "new", "submitted", "created", "waiting", "notstarted", "scheduled"}


def status_state(raw: Any) -> ReportState:
    """A MyReports status value as a report state; unknown values count as still running."""
    if isinstance(raw, bool):
        return ReportState.RUNNING
    if isinstance(raw, int | Decimal):
        return ReportState.READY if raw == DATA_COMPLETE else ReportState.RUNNING
    word = re.sub(r"[\s_-]", "", str(raw)).lower()
    if word in _READY_WORDS:
        return ReportState.READY
    if word in _FAILED_WORDS:
        return ReportState.FAILED
    if word in _CANCELLED_WORDS:
        return ReportState.CANCELLED
    if word in _PENDING_WORDS:
        return ReportState.PENDING
    return ReportState.RUNNING


# --------------------------------------------------------------------------------------------------
# What the user asks for, and how the connection reaches the API


def _an_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(
            "must be a MyReports id such as 00000000-0000-0000-0000-000000000001 "
            "(letters, digits, '-', '_', '.', '~'; at most 128 characters)"
        )
    return value


class DateFilter(BaseModel):
    """``{"preset": "ThisQuarter"}`` or ``{"start": "2025-07-01", "end": "2025-10-01"}`` (ISO 8601)."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None = None
    start: str | None = None
    end: str | None = None

    @field_validator("preset")
    @classmethod
    def _preset_name(cls, value: str | None) -> str | None:
        if value is not None and not _PRESET.fullmatch(value):
            raise ValueError(
                "must be the name of a MyReports preset date filter, such as ThisQuarter or ThisYear"
            )
        return value

    @field_validator("start", "end")
    @classmethod
    def _iso_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    f"'{value}' is not an ISO 8601 date or date-time, "
                    "such as 2025-07-01 or 2025-07-01T09:00:00+01:00"
                ) from None
        return value

    @model_validator(mode="after")
    def _preset_or_range(self) -> DateFilter:
        if self.preset is not None:
            if self.start is not None or self.end is not None:
                raise ValueError("give either 'preset' or 'start' and 'end', not both")
            return self
        if self.start is None or self.end is None:
            raise ValueError("give either 'preset' (such as ThisQuarter) or both 'start' and 'end'")
        start, end = datetime.fromisoformat(self.start), datetime.fromisoformat(self.end)
        if (start.tzinfo is None) != (end.tzinfo is None):
            raise ValueError("give 'start' and 'end' both with a UTC offset or both without one")
        if start > end:
            raise ValueError(f"'start' ({self.start}) must not be after 'end' ({self.end})")
        return self

    def body(self) -> dict[str, str]:
        """The API's ``dateFilter``; a bare date becomes midnight in the report's time zone."""
        if self.preset is not None:
            return {"presetName": self.preset}
        assert self.start is not None and self.end is not None
        return {
            "start": datetime.fromisoformat(self.start).isoformat(),
            "end": datetime.fromisoformat(self.end).isoformat(),
        }


class MyReportsReport(BaseModel):
    """The ``report`` of a job request: which report of which workspace, over which dates, filtered how."""

    model_config = ConfigDict(extra="forbid")

    workspace_id: str
    report_id: str
    filter_id: str | None = None
    date_filter: DateFilter
    additional_conditions: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("workspace_id", "report_id", "filter_id")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return None if value is None else _an_id(value)

    def request_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"reportId": self.report_id}
        if self.filter_id is not None:
            body["filterId"] = self.filter_id
        body["dateFilter"] = self.date_filter.body()
        body["additionalConditions"] = self.additional_conditions
        return body


class MyReportsSettings(ProviderSettings):
    """Connection settings: where the API's paths start, and which word names a request's results."""

    api_prefix: str = Field(
        default="/api", description='"/api" (as the examples call it) or "" (as the templates)'
    )
    results_segment: Literal["results", "requests"] = Field(
        default="results", description="the path segment before {requestId} in the status and data calls"
    )

    @field_validator("api_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError("must be empty or a path such as /api")
        return value


# --------------------------------------------------------------------------------------------------
# The adapter


class MyReports(Provider):
    key = "myreports"
    settings_model = MyReportsSettings
    settings: MyReportsSettings

    @classmethod
    def validate(cls, request: JobRequest) -> None:
        parse_report(MyReportsReport, request)
        require_format(request, FORMATS, "MyReports results")
        if request.parameters:
            raise BadRequest(
                "request.parameters: MyReports reports take no parameters; narrow them with "
                "report.filter_id, report.date_filter and report.additional_conditions"
            )

    def submit(self, request: JobRequest) -> ReportStatus:
        report: MyReportsReport = parse_report(MyReportsReport, request)
        self.queuing({})
        response = self.http.request(
            "POST", f"{self._report_path(report)}/requests", action="create report request",
            json=report.request_body(),
        )  # fmt: skip
        body = _json(response, "create report request")
        data = body.get("data") if isinstance(body, dict) else None
        request_id = data.get("requestId") if isinstance(data, dict) else None
        if request_id is None and isinstance(body, dict):
            request_id = body.get("requestId")
        if not isinstance(request_id, str) or not request_id:
            raise ProviderProtocolError(
                "create report request: MyReports answered without a requestId" + _envelope_words(body)
            )
        return ReportStatus(ReportState.PENDING, handle={"request_id": request_id})

    def lost_submission(self, request: JobRequest) -> str:
        # The documented API reads a request by its id only: there is no list of requests to search.
        report = request.report or {}
        return (
            f"look in myreports workspace {report.get('workspace_id')} for a request of report "
            f"{report.get('report_id')} created then; the API cannot list requests"
        )

    def check(self, request: JobRequest, handle: Handle) -> ReportStatus:
        report: MyReportsReport = parse_report(MyReportsReport, request)
        request_id = handle["request_id"]
        response = self.http.request(
            "GET", self._results_path(report, request_id), action="check report status"
        )
        body = _json(response, "check report status")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("status") in (None, ""):
            if isinstance(body, dict) and status_state(body.get("status")) is ReportState.FAILED:
                raise ProviderRejected(
                    f"check report status: MyReports refused request {request_id}" + _envelope_words(body)
                )
            raise ProviderProtocolError("check report status: MyReports answered without data.status")
        raw, words = data["status"], data.get("statusMessage")
        state = status_state(raw)
        message = words if isinstance(words, str) and words else None
        if state is ReportState.FAILED:
            message = f"MyReports report request {request_id} ended with status '{raw}'" + (
                f": {message}" if message else ""
            )
        elif state is ReportState.CANCELLED:
            message = f"MyReports report request {request_id} was cancelled ('{raw}')" + (
                f": {message}" if message else ""
            )
        elif state is not ReportState.READY and message is None:
            message = f"status '{raw}'"
        return ReportStatus(state, message=message)

    @contextmanager
    def open_result(
        self, request: JobRequest, handle: Handle, resume_from: ResumeFrom | None = None
    ) -> Iterator[ResultStream]:
        report: MyReportsReport = parse_report(MyReportsReport, request)
        request_id = handle["request_id"]
        response = self.http.request(
            "GET", f"{self._results_path(report, request_id)}/data", action="download report results",
            stream=True, headers={"Accept": "application/json"}, html_ok=False,
        )  # fmt: skip
        with response:
            document = ResultsDocument(RawSource(response, keep=request.format == "json"), request_id)
            base = filename_from_response(response, f"myreports-{request_id}.json").rsplit(".", 1)[0]
            if request.format == "csv":
                yield ResultStream(
                    chunks=document.csv_chunks(), filename=f"{base}.csv", content_type="text/csv"
                )
                return
            yield ResultStream(
                chunks=document.json_chunks(),
                filename=f"{base}.json",
                content_type=content_type_of(response, f"{base}.json"),
                content_length=decoded_length(response),
            )

    def _report_path(self, report: MyReportsReport) -> str:
        workspace, report_id = quote(report.workspace_id, safe=""), quote(report.report_id, safe="")
        return f"{self.settings.api_prefix}/{API_VERSION}/workspaces/{workspace}/reports/{report_id}"

    def _results_path(self, report: MyReportsReport, request_id: str) -> str:
        return f"{self._report_path(report)}/{self.settings.results_segment}/{quote(request_id, safe='')}"


# --------------------------------------------------------------------------------------------------
# Reading the results document as it arrives: reportrelay.transforms.json_records, with MyReports' facts

_RawSource = RawSource
#: The results document's own top-level facts, and the names they are kept under.
RESULT_FACTS = {
    "rowLimitExceeded": "row_limit_exceeded",
    "rowLimit": "row_limit",
    "totalCount": "total_count",
    "status": "status",
    "statusMessage": "status_message",
    "message": "status_message",
}


class ResultsDocument(JsonRecords):
    """A results document: records in ``data``, CSV columns from ``request.displayFields[].fieldName``,
    stored only when its own ``status`` says complete."""

    def __init__(self, source: RawSource, request_id: str) -> None:
        super().__init__(
            source,
            f"request {request_id}",
            records="data",
            columns="request.displayFields.item.fieldName",
            facts=RESULT_FACTS,
            verdict=_results_verdict,
            log=log,
        )
        self.request_id = request_id


def _results_verdict(document: JsonRecords) -> None:
    """Raise unless the document says it is complete, so an unfinished result is never stored."""
    facts, request_id = document.facts, document.label.removeprefix("request ")
    if facts.get("row_limit_exceeded") is True:
        log.warning(
            "MyReports row limit exceeded: the stored file holds only the rows up to the limit",
            extra={
                "request_id": request_id,
                "row_limit": _count(facts.get("row_limit")),
                "total_count": _count(facts.get("total_count")),
                "records": document.records,
            },
        )
    status, words = facts.get("status"), facts.get("status_message")
    if status is None or isinstance(status, bool):
        log.warning(
            "the results document has no status; storing it as it is", extra={"request_id": request_id}
        )
        return
    state = status_state(status)
    said = f"status {status!r}" + (f" ({words})" if isinstance(words, str) and words else "")
    if state is ReportState.READY:
        return
    if state is ReportState.FAILED:
        raise ReportGenerationFailed(f"MyReports results of request {request_id} say {said}")
    if state is ReportState.CANCELLED:
        raise ReportCancelled(f"MyReports results of request {request_id} say {said}")
    raise DownloadInterrupted(
        f"MyReports results of request {request_id} are not complete ({said}, complete is "
        f"{DATA_COMPLETE}); nothing was stored"
    )


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | Decimal) and not isinstance(value, bool) else None


def _json(response: requests.Response, action: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProviderProtocolError(f"{action}: MyReports answered with non-JSON content") from None


def _envelope_words(body: Any) -> str:
    """``: <message>`` from an answer's envelope (``{"status": "error", "message": ...}``), if it has one."""
    if isinstance(body, dict):
        for key in ("message", "statusMessage", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return f": {body[key][:300]}"
    return ""
