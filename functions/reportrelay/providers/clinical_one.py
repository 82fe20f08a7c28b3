"""Oracle Clinical One reporting service, ``ec-reporting-svc`` (seed 004).

Sign-in:  the separate identity service (IDCS) issues a bearer token: OAuth2 password grant with the
          client id and secret as HTTP Basic (auth type ``oauth_password``, absolute ``token_url``,
          ``client_auth: "basic"``). Tokens last 10 minutes and come without a refresh token, so auth.py
          signs in again shortly before expiry, and once more after a 401.
Start:    POST /ec-reporting-svc/rest/v1.0/reports?format=CSV&mode=&reportid=&studyId=
          body ``{"fieldSpecsList": [...], "extFieldSpecsList": [...]}`` -> 202 with an ExecutionLog
          (bare, or wrapped in a BaseResponse ``result``) whose ``id`` is the job id.
          The report id is ``reportid``, all lower case, on this call only.
Status:   GET /ec-reporting-svc/rest/v2.0/reportmetadata/downloadList?studyId&mode&rptId&limit&offset
          -> ``result.reportRunStatus[]`` paged by ``limit``/``offset`` (both required), with ``hasMore``
          a *string* ("true"/"false"). Our run is the entry whose ``downloadId`` is the job id; other
          runs of the same report (older, or other users') are never taken. The server may return fewer
          entries than ``limit`` asked for, so the offset advances by what came back.
          Run-status field and values are not public: several field names are read and the words are
          mapped liberally (``RUN_STATES``); the connection can add words (``run_statuses``) and choose
          whether an unknown word means "keep waiting" or "fail" (``unknown_status``). An entry without
          any status field is taken as ready: the list is documented as the reports ready to download.
Download: GET /ec-reporting-svc/rest/v2.0/reports/download?id=&studyId=&mode=&reportName=&rptKickoffDatetime=
          streams the file (``Content-Disposition: attachment; filename=report.csv``). The report name and
          kickoff time are copied verbatim from the downloadList entry, kept in the handle by ``check``.
Tenant:   tenant-level reports (the HSL report) have no study: ``studyId`` is sent as the word ``null``
          ("making study ID as null"), or left out when the connection says ``tenant_study_id: "omit"``.
Errors:   a BaseResponse ``{"status": "error", "result": ..., "errorData": {"errorCode": "REPT_401",
          "errorMessage": ..., "details": ...}}``; some endpoints name the object ``ErrorResponseData``.
          Both become "REPT_401: <errorMessage> (<details>)" in the failure. A 401 can be an expired token
          or a missing reporting right: sign in once more, then fail quoting the vendor.
Throttle: reporting endpoints answer 429 with retry details in the body (and usually Retry-After); when
          only the body says how long to wait, that is copied into Retry-After for the shared client.
Lost start: a start call whose answer was lost (the step died) is looked for in the download list: the
          one run of the report, study, mode and format kicked off around then that no other job claimed.
There is no API to cancel a report job.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator

from reportrelay.config import Connection, JobRequest
from reportrelay.errors import (
    BadRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ReportRelayError,
)
from reportrelay.httpclient import ProviderHttp, provider_message
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
    range_headers,
    require_format,
    streamed,
)

API = "/ec-reporting-svc/rest"
START_REPORT = f"{API}/v1.0/reports"
DOWNLOAD_LIST = f"{API}/v2.0/reportmetadata/downloadList"
DOWNLOAD = f"{API}/v2.0/reports/download"

#: request.format -> (the vendor's ``format`` word, file extension for a name the server did not give)
FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("CSV", "csv"),
    "pdf": ("PDF", "pdf"),
    "xlsx": ("XLSX", "xlsx"),
    "html": ("HTML", "html"),
    "xport": ("XPORT", "xpt"),
}
MODES = ("active", "test", "training")
FIELD_TYPES = ("list", "date", "date-time", "number", "string", "boolean")

RunState = Literal["pending", "running", "ready", "failed", "cancelled"]
_STATE_OF: dict[str, ReportState] = {
    "pending": ReportState.PENDING,
    "running": ReportState.RUNNING,
    "ready": ReportState.READY,
    "failed": ReportState.FAILED,
    "cancelled": ReportState.CANCELLED,
}
#: Run-status words seen in Oracle services, normalised (lower case, letters only). Not documented.
RUN_STATES: dict[str, ReportState] = {
    **dict.fromkeys(
        ("new", "submitted", "queued", "pending", "scheduled", "waiting", "created", "initiated",
         "notstarted", "open", "accepted"),
        ReportState.PENDING,
    ),
    **dict.fromkeys(
        ("running", "inprogress", "inprocess", "processing", "started", "executing", "generating",
         "wip"),
        ReportState.RUNNING,
    ),
    **dict.fromkeys(
        ("completed", "complete", "success", "succeeded", "successful", "done", "finished", "ready",
         "available", "generated", "downloadable", "completedsuccessfully"),
        ReportState.READY,
    ),
    **dict.fromkeys(
        ("failed", "failure", "error", "errored", "aborted", "completedwitherrors", "completedwitherror",
         "terminated", "timedout", "expired"),
        ReportState.FAILED,
    ),
    **dict.fromkeys(("cancelled", "canceled", "cancel"), ReportState.CANCELLED),
}  # fmt: skip
#: Where a downloadList entry may carry its run status, its failure reason, name and kickoff time.
STATUS_FIELDS = ("status", "rptStatus", "runStatus", "reportStatus", "jobStatus", "executionStatus", "state")
REASON_FIELDS = ("reason", "errorMessage", "statusMessage", "message", "failureReason")
NAME_FIELDS = ("reportName", "rptName", "name")
KICKOFF_FIELDS = ("rptKickoffDatetime", "rptKickoffDateTime", "kickoffDatetime", "kickOffDateTime")

#: A job that an earlier run of submit may have started is looked for among runs kicked off from this long
#: before its start call (clocks disagree) to this long after it (the call may wait in the service).
KICKOFF_SLACK_SECONDS = 120
KICKOFF_WINDOW_SECONDS = 300

_HEX_ID = r"^(?:[0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$"
_OK = (200, 201, 202, 204)
#: Client errors whose BaseResponse body this module reads itself (429 stays with the shared client).
_VENDOR_ERRORS = (400, 401, 403, 404, 405, 406, 409, 410, 415, 422)


class ClinicalOneSettings(ProviderSettings):
    """Connection extras for Clinical One; every field has a default that suits the public docs."""

    page_size: int = Field(default=50, ge=1, le=1000, description="downloadList ``limit`` per page")
    max_pages: int = Field(default=100, ge=1, le=10_000, description="pages read per check at most")
    tenant_study_id: Literal["null", "omit"] = Field(
        default="null",
        description="how a tenant report's missing study goes on the wire: studyId=null, or none",
    )
    run_statuses: dict[str, RunState] = Field(
        default_factory=dict, description="extra run-status words, e.g. {'C': 'ready'}; case-insensitive"
    )
    unknown_status: Literal["wait", "fail"] = Field(
        default="wait", description="what an unrecognised run status means: keep waiting, or fail the job"
    )


class FieldSpec(BaseModel):
    """One entry of ``fieldSpecsList`` / ``extFieldSpecsList``, in the vendor's own camelCase words.

    Passed through as written (``fldId`` or ``fieldId``, ``fieldSequence`` ...); only the fields the
    service cannot do without are checked here.
    """

    model_config = ConfigDict(extra="allow")

    fieldName: str = Field(min_length=1, max_length=255)
    fieldType: str | None = None
    fieldValueList: list[Any]

    @field_validator("fieldType")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value not in FIELD_TYPES:
            raise ValueError(f"must be one of {', '.join(FIELD_TYPES)}")
        return value


class ClinicalOneReport(BaseModel):
    """``{"report_id", "study_id" (null for a tenant report), "mode", "field_specs", "ext_field_specs"}``."""

    model_config = ConfigDict(extra="forbid")

    report_id: str = Field(
        pattern=_HEX_ID,
        description="the reportId from /v1.0/reportmetadata, e.g. E341BB429E7D44E3989D113A504F3BF8",
    )
    study_id: str | None = Field(
        pattern=_HEX_ID, description="the study's id; null for a tenant report (HSL)"
    )
    mode: Literal["active", "test", "training"]
    field_specs: list[FieldSpec] = Field(default_factory=list)
    ext_field_specs: list[FieldSpec] = Field(default_factory=list)


class ClinicalOne(Provider):
    key = "clinical_one"
    settings_model = ClinicalOneSettings
    settings: ClinicalOneSettings

    def __init__(self, connection: Connection, http: ProviderHttp) -> None:
        super().__init__(connection, http)
        # The service states the wait of a 429 in its body; the shared client reads only Retry-After.
        http.session.hooks.setdefault("response", []).append(_retry_after_from_body)
        self._run_states = {
            **RUN_STATES,
            **{_word(word): _STATE_OF[state] for word, state in self.settings.run_statuses.items()},
        }

    @classmethod
    def validate(cls, request: JobRequest) -> None:
        parse_report(ClinicalOneReport, request)
        require_format(request, tuple(FORMATS), "a Clinical One report")
        if request.parameters:
            raise BadRequest(
                "request.parameters: Clinical One reports take no parameters; put filters in "
                "request.report.field_specs (fieldSpecsList) and request.report.ext_field_specs"
            )

    # ---- start the job

    def submit(self, request: JobRequest) -> ReportStatus:
        report = parse_report(ClinicalOneReport, request)
        self.queuing({"owner": uuid.uuid4().hex})
        response = self._call(
            "POST",
            START_REPORT,
            action="start Clinical One report job",
            params={
                "format": FORMATS[request.format][0],
                "mode": report.mode,
                "reportid": report.report_id,  # lower case on this call, unlike rptId elsewhere
                **self._study(report),
            },
            json={
                "fieldSpecsList": [spec.model_dump(exclude_none=True) for spec in report.field_specs],
                "extFieldSpecsList": [spec.model_dump(exclude_none=True) for spec in report.ext_field_specs],
            },
        )
        body = self._json(response, "start Clinical One report job")
        log = body.get("result") if isinstance(body.get("result"), dict) else body
        job_id = log.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise ProviderProtocolError("start Clinical One report job: the ExecutionLog has no job id")
        handle: Handle = {"job_id": job_id}
        kickoff = _first(log, KICKOFF_FIELDS)
        if kickoff:
            handle["kickoff"] = kickoff
        return ReportStatus(ReportState.PENDING, handle=handle)

    # ---- finding a job an earlier run of submit started

    def find_submitted(self, request: JobRequest, hint: Handle, since: float) -> ReportStatus | None:
        """The one run of this report (study, mode, format where listed) kicked off within a few minutes
        of the lost start call and claimed by no other job; None when there is none, or several."""
        report = parse_report(ClinicalOneReport, request)
        wanted_format = FORMATS[request.format][0]
        candidates = []
        for run in self._runs(report):
            kickoff = _epoch(_first(run, KICKOFF_FIELDS))
            listed_format = _first(run, ("rptFormat", "format"))
            earliest, latest = since - KICKOFF_SLACK_SECONDS, since + KICKOFF_WINDOW_SECONDS
            if kickoff is None or not earliest <= kickoff <= latest:
                continue
            if listed_format is not None and listed_format.upper() != wanted_format:
                continue
            candidates.append(run)
        if self.claims is not None:
            namespace = f"clinical_one:{urlsplit(self.connection.base_url).netloc.lower()}:run"
            owner = str(hint.get("owner") or "")
            candidates = [
                run for run in candidates if self.claims.claim(namespace, _id(str(run["downloadId"])), owner)
            ]
        if len(candidates) != 1:
            return None
        run = candidates[0]
        handle: Handle = {"job_id": str(run["downloadId"])}
        kickoff = _first(run, KICKOFF_FIELDS)
        if kickoff:
            handle["kickoff"] = kickoff
        return ReportStatus(ReportState.PENDING, message="found the job in the download list", handle=handle)

    def lost_submission(self, request: JobRequest) -> str:
        report = request.report or {}
        return (
            f"look in the download list of report {report.get('report_id')} (study {report.get('study_id')}, "
            f"mode {report.get('mode')}) for a {FORMATS[request.format][0]} run kicked off then"
        )

    # ---- where it stands

    def check(self, request: JobRequest, handle: Handle) -> ReportStatus:
        report = parse_report(ClinicalOneReport, request)
        job_id = handle["job_id"]
        run = self._find_run(report, job_id)
        if run is None:
            return ReportStatus(
                ReportState.PENDING, message=f"report job {job_id} is not in the download list yet"
            )
        learned: Handle = {}
        name, kickoff = _first(run, NAME_FIELDS), _first(run, KICKOFF_FIELDS)
        if name:
            learned["report_name"] = name
        if kickoff:
            learned["kickoff"] = kickoff
        raw = _first(run, STATUS_FIELDS)
        if raw is None:
            return ReportStatus(ReportState.READY, handle=learned)
        state = self._run_states.get(_word(raw))
        if state is None:
            if self.settings.unknown_status == "fail":
                raise ProviderProtocolError(
                    f"check Clinical One report job {job_id}: unknown run status {raw!r}; "
                    "map it with the connection's run_statuses setting"
                )
            return ReportStatus(
                ReportState.RUNNING,
                message=f"run status {raw!r} is not one reportrelay knows; still waiting "
                "(map it with the connection's run_statuses setting)",
                handle=learned,
            )
        message = None
        if state in (ReportState.FAILED, ReportState.CANCELLED):
            reason = _first(run, REASON_FIELDS)
            message = f"Clinical One report job {job_id} ended with run status {raw!r}" + (
                f": {reason}" if reason else ""
            )
        return ReportStatus(state, message=message, handle=learned)

    def _find_run(self, report: ClinicalOneReport, job_id: str) -> dict[str, Any] | None:
        """Page through the download list until our run's entry turns up (or the list ends)."""
        wanted = _id(job_id)
        return next((run for run in self._runs(report) if _id(str(run["downloadId"])) == wanted), None)

    def _runs(self, report: ClinicalOneReport) -> Iterator[dict[str, Any]]:
        """Every entry of the report's download list with a ``downloadId``, page by page."""
        offset = 0
        for _ in range(self.settings.max_pages):
            params = {
                **self._study(report),
                "mode": report.mode,
                "rptId": report.report_id,
                "limit": self.settings.page_size,
                "offset": offset,
            }
            page = self._json(
                self._call("GET", DOWNLOAD_LIST, action="list Clinical One report runs", params=params),
                "list Clinical One report runs",
            )
            result = page.get("result") if isinstance(page.get("result"), dict) else page
            runs = [run for run in result.get("reportRunStatus") or [] if isinstance(run, dict)]
            yield from (run for run in runs if run.get("downloadId"))
            offset += len(runs)
            if not runs or not _more(result, offset, len(runs), self.settings.page_size):
                return

    # ---- download

    @contextmanager
    def open_result(
        self, request: JobRequest, handle: Handle, resume_from: ResumeFrom | None = None
    ) -> Iterator[ResultStream]:
        report = parse_report(ClinicalOneReport, request)
        params = {
            "id": handle["job_id"],
            **self._study(report),
            "mode": report.mode,
            "reportName": handle.get("report_name"),
            "rptKickoffDatetime": handle.get("kickoff"),  # verbatim, as the list gave it
        }
        response = self._call(
            "GET",
            DOWNLOAD,
            action="download Clinical One report",
            stream=True,
            html_ok=request.format == "html",
            params={name: value for name, value in params.items() if value is not None},
            headers=range_headers(resume_from),
        )
        with response:
            if "json" in response.headers.get("Content-Type", ""):
                # No report format is JSON: a JSON answer is a BaseResponse, possibly an error at 200.
                self._json(response, "download Clinical One report")
                raise ProviderProtocolError(
                    "download Clinical One report: the service answered JSON instead of the report file"
                )
            extension = FORMATS[request.format][1]
            stem = handle.get("report_name") or f"report-{report.report_id}"
            filename = filename_from_response(response, f"{stem}.{extension}")
            if "." not in filename:
                filename = f"{filename}.{extension}"
            yield streamed(response, filename)

    # ---- plumbing

    def _study(self, report: ClinicalOneReport) -> dict[str, str]:
        """The ``studyId`` query value: the study, or for a tenant report ``null`` / nothing."""
        if report.study_id is not None:
            return {"studyId": report.study_id}
        return {"studyId": "null"} if self.settings.tenant_study_id == "null" else {}

    def _call(self, method: str, path: str, *, action: str, **kwargs: Any) -> requests.Response:
        """One reporting-service call; a BaseResponse error becomes an error quoting code, message, details.

        401 is taken here rather than by ProviderHttp so its body can be quoted: it means an expired
        token or a missing reporting right, so sign in once more and then fail with the vendor's words.
        """
        renewed = False
        while True:
            response = self.http.request(method, path, action=action, accept=_OK + _VENDOR_ERRORS, **kwargs)
            if response.status_code in _OK:
                return response
            if response.status_code == 401 and not renewed and self.http.auth.renew():
                renewed = True
                response.close()
                continue
            with response:
                raise _vendor_error(response, action)

    @staticmethod
    def _json(response: requests.Response, action: str) -> dict[str, Any]:
        """The JSON object of an answer; a BaseResponse with status "error" raises even at 2xx."""
        try:
            body = response.json()
        except ValueError:
            raise ProviderProtocolError(f"{action}: the service answered with non-JSON content") from None
        if not isinstance(body, dict):
            raise ProviderProtocolError(
                f"{action}: the service answered {type(body).__name__}, not an object"
            )
        # A BaseResponse saying "error" (an ExecutionLog's own ``status`` is a run status, not this).
        if _error_data(body) or (str(body.get("status", "")).lower() == "error" and "result" in body):
            words = describe_base_response(body) or "the service reported an error without details"
            raise ProviderRejected(f"{action}: {words}")
        return body


def describe_base_response(body: Any) -> str | None:
    """ "REPT_401: <errorMessage> (<details>)" from a BaseResponse, in either of its two spellings."""
    data = _error_data(body)
    if data is None:
        return None
    code = data.get("errorCode")
    message = data.get("errorMessage") or data.get("message")
    details = data.get("details", data.get("Object", data.get("detail")))
    text = " ".join(str(message).split()) if message else "no error message"
    if code:
        text = f"{code}: {text}"
    rendered = _render_details(details)
    if rendered:
        text = f"{text} ({rendered})"
    return text[:600]


def _error_data(body: Any) -> Mapping[str, Any] | None:
    if not isinstance(body, Mapping):
        return None
    for key in ("errorData", "ErrorResponseData", "errorResponseData"):
        if isinstance(body.get(key), Mapping) and body[key]:
            return body[key]
    return None


def _render_details(details: Any) -> str | None:
    if details is None or details == "" or details == {} or details == []:
        return None
    if isinstance(details, str):
        return " ".join(details.split())[:300]
    return json.dumps(details, sort_keys=True, default=str)[:300]


def _vendor_error(response: requests.Response, action: str) -> ReportRelayError:
    """ProviderAuthFailed for a 401 that survived a new sign-in, ProviderRejected for the rest."""
    path = requests.utils.urlparse(response.request.url or response.url).path  # never the query string
    where = f"{action}: {response.request.method} {path} answered HTTP {response.status_code}"
    try:
        words = describe_base_response(response.json())
    except ValueError:
        words = None
    words = words or provider_message(response)
    message = f"{where}: {words}" if words else where
    if response.status_code == 401:
        return ProviderAuthFailed(
            f"{message}; check the connection's credentials and that the user holds the reporting "
            "rights for this study and mode"
        )
    return ProviderRejected(message)


_RETRY_WORDS = re.compile(r"retry\D{0,20}?(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|sec|secs|seconds?)?\b", re.I)
_RETRY_KEYS = ("retryAfter", "retryAfterSeconds", "retry_after", "retryAfterSecs")


def _retry_after_from_body(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """Session hook: a 429 without Retry-After gets one from the retry details in its body."""
    if response.status_code != 429 or response.headers.get("Retry-After"):
        return response
    try:
        body = response.json()
    except ValueError:
        return response
    seconds = retry_seconds_in(body)
    if seconds is not None:
        response.headers["Retry-After"] = str(seconds)
    return response


def retry_seconds_in(body: Any) -> float | None:
    """Seconds to wait, from a numeric retry field or words like "retry after 2 seconds" anywhere in it."""
    if isinstance(body, Mapping):
        for key in _RETRY_KEYS:
            value = body.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
        for value in body.values():
            found = retry_seconds_in(value)
            if found is not None:
                return found
        return None
    if isinstance(body, str):
        match = _RETRY_WORDS.search(body)
        if match:
            amount = float(match.group(1))
            unit = (match.group(2) or "s").lower()
            return amount / 1000 if unit.startswith("m") else amount
    return None


def _first(entry: Mapping[str, Any], fields: tuple[str, ...]) -> str | None:
    for field in fields:
        value = entry.get(field)
        if value is not None and str(value).strip():
            return str(value)
    return None


def _epoch(value: str | None) -> float | None:
    """An ISO date time (``2025-06-04T11:27:52.014Z``) as epoch seconds; one without a zone is UTC."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _word(raw: str) -> str:
    return re.sub(r"[^a-z]", "", raw.lower()) or raw.strip().lower()


def _id(value: str) -> str:
    return value.replace("-", "").strip().upper()


def _more(result: Mapping[str, Any], offset: int, received: int, limit: int) -> bool:
    """Whether another page follows: ``hasMore`` (a string!), else ``totalResults``, else a full page."""
    has_more = result.get("hasMore")
    if isinstance(has_more, bool):
        return has_more
    if isinstance(has_more, str) and has_more.strip():
        return has_more.strip().lower() in ("true", "yes", "y", "1")
    total = result.get("totalResults")
    if isinstance(total, int) and not isinstance(total, bool):
        return offset < total
    return received >= limit
