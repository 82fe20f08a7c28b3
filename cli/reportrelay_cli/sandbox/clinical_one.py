"""Oracle Clinical One reporting service (``ec-reporting-svc``) and its identity service (seed 004).

Identity: POST /oauth2/v1/token  form ``grant_type=password&username=&password=[&scope=]`` with the client
          id and secret as HTTP Basic -> ``{"access_token", "token_type": "Bearer", "expires_in": 600}``.
          Tokens last 10 minutes and are never refreshed (no refresh token; that grant is refused).
Catalog:  GET  /ec-reporting-svc/rest/v1.0/reportmetadata?studyId=&mode=  -> the reports one may run
Start:    POST /ec-reporting-svc/rest/v1.0/reports?format=CSV&mode=&reportid=&studyId=
          body ``{"fieldSpecsList": [...], "extFieldSpecsList": [...]}`` -> 202 with an ExecutionLog whose
          ``id`` is the job id. ``reportid`` is lower case; ``reportId`` is "Insufficient parameters".
Status:   GET  /ec-reporting-svc/rest/v2.0/reportmetadata/downloadList?studyId&mode&rptId&limit&offset
          -> ``{"status": "success", "result": {"hasMore": "false", "totalResults", "count", "limit",
          "offset", "reportId", "reportRunStatus": [{"downloadId", "reportName", "rptFormat",
          "rptKickoffDatetime", "status", ...}]}}``; limit and offset are required, ``hasMore`` is a string.
Download: GET  /ec-reporting-svc/rest/v2.0/reports/download?id=&studyId=&mode=&reportName=&rptKickoffDatetime=
          -> the file, ``Content-Disposition: attachment; filename=<name>.csv`` (unquoted, as documented).
Errors:   BaseResponse ``{"status": "error", "result": null, "errorData": {"errorCode": "REPT_401",
          "errorMessage", "details"}}`` (``error_shape="ErrorResponseData"`` spells the object the other
          documented way) on 400/401/404, and on 429 with retry details (and Retry-After).

Where the documents are silent the simulator picks, and offers knobs to vary, what the client must not
depend on: the run-status field and words (``status_field``, ``status_words``), whether unfinished runs
are listed at all (``list_only_finished``), the largest page served (``max_page_size``), the list order
(``newest_first``), the ExecutionLog envelope (``wrap_execution_log``), how a tenant report's missing
study is written (``tenant_study_id``), whether the download insists on the report name and kickoff
time (``require_run_details``), and whether a 429 carries Retry-After or only body details
(``retry_after_header``). The real service is HTTPS on the tenant's host; this is HTTP on 127.0.0.1.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from reportrelay_cli.sandbox.server import (
    Faults,
    HttpError,
    Request,
    Response,
    TokenIssuingSimulator,
    basic_credentials,
    deterministic_bytes,
    json_response,
    oauth_error,
    route,
    token_answer,
)

API = "/ec-reporting-svc/rest"
DEFAULT_STUDY_ID = "CFD8129A430A473C8A02F4BA5DAAD865"
SUBJECT_DATA_EXTRACT = "E341BB429E7D44E3989D113A504F3BF8"
HSL_REPORT = "5A1C0E7B9D2F4A6B8C3D1E0F2A4B6C8D"
MODES = ("test", "active", "training")

DEFAULT_USERS = {"api": "sandbox-password"}
DEFAULT_CLIENTS = {"reportrelay": "sandbox-client-secret"}
DEFAULT_STUDIES: dict[str, dict[str, str]] = {DEFAULT_STUDY_ID: {"name": "ONC-301"}}
DEFAULT_REPORTS: dict[str, dict[str, Any]] = {
    SUBJECT_DATA_EXTRACT: {
        "name": "Subject Data Extract",
        "level": "study",
        "formats": ("CSV", "XLSX", "XPORT"),
    },
    HSL_REPORT: {"name": "HSL Report", "level": "tenant", "formats": ("CSV", "PDF")},
}
#: The simulator's run states -> the word the list shows. The real words are not public.
DEFAULT_STATUS_WORDS = {
    "queued": "SUBMITTED",
    "running": "IN PROGRESS",
    "done": "COMPLETED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
}
TOKEN_DENIED = "Unauthorized: the access token is missing, invalid or expired"
NO_ACCESS = "Unauthorized: User does not have access to the requested resource"
NO_ACCESS_DETAILS = "User role is missing required permission REPORTING_VIEW. Field: userId"

ErrorShape = Literal["errorData", "ErrorResponseData"]
TenantStudyId = Literal["either", "null", "omit"]


class FileKind(NamedTuple):
    content_type: str
    extension: str
    magic: bytes


FILE_KINDS: dict[str, FileKind] = {
    "CSV": FileKind("text/csv", "csv", b""),
    "PDF": FileKind("application/pdf", "pdf", b"%PDF-1.7\n"),
    "XLSX": FileKind(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx", b"PK\x03\x04"
    ),
    "HTML": FileKind("text/html", "html", b"<!DOCTYPE html>\n"),
    "XPORT": FileKind("application/octet-stream", "xpt", b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!"),
}


class ReportingError(HttpError):
    """An error the reporting service answers as a BaseResponse with a code, a message and details."""

    def __init__(
        self, status: int, message: str, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, message, headers)
        self.details = details


def _reporting(handler: Callable[[Any, Request], Response]) -> Callable[[Any, Request], Response]:
    """Turn a ReportingError raised anywhere in a handler into the vendor's BaseResponse error."""

    @functools.wraps(handler)
    def answer(self: ClinicalOneSimulator, request: Request) -> Response:
        try:
            return handler(self, request)
        except ReportingError as failure:
            body = self.base_response_error(failure.status, failure.message, failure.details)
            return json_response(body, failure.status, failure.headers)

    return answer


class ClinicalOneSimulator(TokenIssuingSimulator):
    """Identity token, report catalog, start, paged download list and download.

    Every constructor keyword is also an attribute that may be changed while the simulator runs.
    """

    name = "clinical_one"

    def __init__(
        self,
        *,
        port: int = 0,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        users: Mapping[str, str] | None = None,
        clients: Mapping[str, str] | None = None,
        required_scope: str | None = None,
        studies: Mapping[str, Mapping[str, str]] | None = None,
        reports: Mapping[str, Mapping[str, Any]] | None = None,
        forbidden_reports: Iterable[str] = (),
        token_lifetime_seconds: float = 600,
        generation_seconds: float = 2.0,
        fail_reports: str | None = None,
        cancel_reports: str | None = None,
        report_size: int = 16 * 1024,
        status_field: str | None = "status",
        status_words: Mapping[str, str] | None = None,
        list_only_finished: bool = False,
        max_page_size: int = 50,
        newest_first: bool = True,
        error_shape: ErrorShape = "errorData",
        wrap_execution_log: bool = False,
        tenant_study_id: TenantStudyId = "either",
        require_run_details: bool = False,
        retry_after_header: bool = True,
    ) -> None:
        super().__init__(port=port, faults=faults, clock=clock)
        self.users = dict(users if users is not None else DEFAULT_USERS)
        self.clients = dict(clients if clients is not None else DEFAULT_CLIENTS)
        self.required_scope = required_scope
        self.studies = {key: dict(value) for key, value in (studies or DEFAULT_STUDIES).items()}
        self.reports = {key: dict(value) for key, value in (reports or DEFAULT_REPORTS).items()}
        self.forbidden_reports = set(forbidden_reports)
        self.token_lifetime_seconds = token_lifetime_seconds
        self.generation_seconds = generation_seconds
        self.fail_reports = fail_reports
        self.cancel_reports = cancel_reports
        self.report_size = report_size
        self.status_field = status_field
        self.status_words = {**DEFAULT_STATUS_WORDS, **(status_words or {})}
        self.list_only_finished = list_only_finished
        self.max_page_size = max_page_size
        self.newest_first = newest_first
        self.error_shape: ErrorShape = error_shape
        self.wrap_execution_log = wrap_execution_log
        self.tenant_study_id: TenantStudyId = tenant_study_id
        self.require_run_details = require_run_details
        self.retry_after_header = retry_after_header
        #: job id -> {id, report_id, report_name, study_id, mode, format, field_specs, ext_field_specs,
        #: kickoff, created_at, state ("queued" | "running" | "done" | "failed" | "cancelled"), reason, user,
        #: seeded}
        self.runs: dict[str, dict[str, Any]] = {}
        #: (method, path, time.monotonic()) of every request, throttled ones included, to time retries.
        self.arrivals: list[tuple[str, str, float]] = []
        #: Runs started and neither downloaded nor failed count as active; above this many, a start is
        #: answered 429 (a per-account limit as a client meets it). ``peak_active_runs`` is the most seen.
        self.max_active_runs: int | None = None
        self.peak_active_runs = 0

    # ---- knobs and views for tests

    @property
    def started_runs(self) -> list[dict[str, Any]]:
        """Runs started through the API (not the ones ``add_run`` seeded), oldest first."""
        with self.lock:
            return [dict(run) for run in self.runs.values() if not run["seeded"]]

    def add_run(
        self,
        report_id: str = SUBJECT_DATA_EXTRACT,
        study_id: str | None = DEFAULT_STUDY_ID,
        mode: str = "active",
        *,
        state: str = "done",
        report_format: str = "CSV",
        reason: str | None = None,
        user: str = "another.user",
    ) -> str:
        """Another run of a report (an older one, or someone else's) that shares the download list."""
        return self._new_run(
            report_id,
            study_id,
            mode,
            report_format,
            [],
            [],
            state=state,
            reason=reason,
            user=user,
            seeded=True,
        )

    def arrival_times(self, method: str, path: str) -> list[float]:
        """When each request to one endpoint arrived (monotonic clock), oldest first."""
        with self.lock:
            return [at for m, p, at in self.arrivals if (m, p) == (method.upper(), path)]

    def _record(self, request: Request) -> None:
        super()._record(request)
        with self.lock:
            self.arrivals.append((request.method, request.path, time.monotonic()))

    # ---- error bodies

    def base_response_error(self, status: int, message: str, details: Any = None) -> dict[str, Any]:
        """The documented BaseResponse, with the error object under the configured spelling."""
        result = None
        if status == 429:
            retry_after = self.faults.throttle_retry_after
            details = "Rate limit exceeded for the reporting service"
            if retry_after is not None:
                details += f"; retry after {retry_after} seconds"
                result = {"retryAfterSeconds": retry_after}
        error = {"errorCode": f"REPT_{status}", "errorMessage": message, "details": details}
        return {"status": "error", "result": result, self.error_shape: error}

    def error_body(self, status: int, message: str) -> Any:
        return self.base_response_error(status, message)

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        headers = dict(headers or {})
        if status == 429 and not self.retry_after_header:
            headers.pop("Retry-After", None)
        return json_response(self.error_body(status, message), status, headers)

    # ---- identity service: POST /oauth2/v1/token

    @route("POST", "/oauth2/v1/token", sign_in=True)
    def issue_token(self, request: Request) -> Response:
        client = basic_credentials(request.header("authorization"))
        if client is None or self.clients.get(client[0]) != client[1]:
            challenge = {"WWW-Authenticate": 'Basic realm="identity"'}
            return oauth_error(
                "invalid_client", "Client authentication failed.", status=401, headers=challenge
            )
        form = request.form()
        grant = form.get("grant_type")
        if grant == "refresh_token":
            return oauth_error("unsupported_grant_type", "Refresh tokens are not issued; sign in again.")
        if grant != "password":
            return oauth_error("unsupported_grant_type", "grant_type must be 'password'.")
        if self.required_scope and self.required_scope not in form.get("scope", "").split():
            return oauth_error("invalid_scope", f"The scope {self.required_scope} is required.")
        username, password = form.get("username", ""), form.get("password", "")
        if username not in self.users or self.users[username] != password:
            return oauth_error("invalid_grant", "Invalid user name or password.")
        lifetime = self.token_lifetime_seconds
        body = {"access_token": self.new_token(lifetime), "token_type": "Bearer", "expires_in": int(lifetime)}
        return token_answer(body)

    # ---- catalog: GET /v1.0/reportmetadata

    @route("GET", f"{API}/v1.0/reportmetadata")
    @_reporting
    def report_catalog(self, request: Request) -> Response:
        self._authorize(request)
        study_id = _study_param(request.query)
        level = "tenant" if study_id is None else "study"
        if study_id is not None:
            self._known_study(study_id)
        listed = [
            {
                "reportId": report_id,
                "reportName": report["name"],
                "reportType": level.title(),
                "rptSeq": index,
            }
            for index, (report_id, report) in enumerate(self.reports.items(), start=1)
            if report["level"] == level
        ]
        return json_response({"status": "success", "result": listed})

    # ---- start a job: POST /v1.0/reports

    @route("POST", f"{API}/v1.0/reports")
    @_reporting
    def start_report(self, request: Request) -> Response:
        self._authorize(request)
        query = request.query
        report_id = query.get("reportid")
        if not report_id:
            misspelt = [name for name in query if name.lower() == "reportid"]
            hint = f" (got '{misspelt[0]}'; the parameter is 'reportid', in lower case)" if misspelt else ""
            raise ReportingError(
                400, "Insufficient parameters", f"Query parameter reportid is required{hint}."
            )
        report = self._report(report_id)
        mode = self._mode(query, required=True)
        study_id = self._study_for(report, query)
        report_format = query.get("format", "").upper()
        if report_format not in report["formats"]:
            raise ReportingError(
                400,
                "Invalid parameters",
                f"format '{query.get('format', '')}' is not available for {report['name']}; "
                f"use one of {', '.join(report['formats'])}.",
            )
        field_specs, ext_field_specs = _field_specs(request)
        with self.lock:
            active = sum(
                1
                for run in self.runs.values()
                if not run["seeded"] and not run.get("downloaded") and self._settled(run)["state"] != "failed"
            )
            if self.max_active_runs is not None and active >= self.max_active_runs:
                raise ReportingError(
                    429,
                    "Too many requests",
                    "Too many report jobs running for this user.",
                    {"Retry-After": "1"},
                )
            self.peak_active_runs = max(self.peak_active_runs, active + 1)
            job_id = self._new_run(report_id, study_id, mode, report_format, field_specs, ext_field_specs)
        log = self._execution_log(self.runs[job_id])
        return json_response({"status": "success", "result": log} if self.wrap_execution_log else log, 202)

    # ---- the paged list: GET /v2.0/reportmetadata/downloadList

    @route("GET", f"{API}/v2.0/reportmetadata/downloadList")
    @_reporting
    def download_list(self, request: Request) -> Response:
        self._authorize(request)
        query = request.query
        limit, offset = _paging(query)
        mode = self._mode(query, required=False)
        report_id = query.get("rptId")
        if report_id:
            report = self._report(report_id)
            study_id = self._study_for(report, query)
        else:
            study_id = _study_param(query)
        with self.lock:
            runs = [self._settled(run) for run in self.runs.values()]
        runs = [
            run
            for run in runs
            if (not report_id or run["report_id"] == report_id)
            and run["study_id"] == study_id
            and (mode is None or run["mode"] == mode)
            and (not self.list_only_finished or run["state"] in ("done", "failed", "cancelled"))
        ]
        runs.sort(key=lambda run: run["created_at"], reverse=self.newest_first)
        page = runs[offset : offset + min(limit, self.max_page_size)]
        result = {
            "hasMore": "true" if offset + len(page) < len(runs) else "false",
            "totalResults": len(runs),
            "count": len(page),
            "limit": limit,
            "offset": offset,
            "reportId": report_id,
            "reportRunStatus": [self._list_entry(run) for run in page],
        }
        return json_response({"status": "success", "result": result})

    # ---- download: GET /v2.0/reports/download

    @route("GET", f"{API}/v2.0/reports/download", download=True)
    @_reporting
    def download(self, request: Request) -> Response:
        self._authorize(request)
        query = request.query
        job_id = query.get("id")
        if not job_id:
            raise ReportingError(400, "Insufficient parameters", "id (the report job id) is mandatory.")
        with self.lock:
            stored = self.runs.get(job_id.upper())
            run = self._settled(stored) if stored is not None else None
        if run is None:
            raise ReportingError(404, "Not found", f"No report job {job_id}.")
        report = self._report(run["report_id"])
        mode = self._mode(query, required=False)
        study_id = self._study_for(report, query)
        if (mode is not None and mode != run["mode"]) or study_id != run["study_id"]:
            raise ReportingError(404, "Not found", f"No report job {job_id} in this study and mode.")
        self._check_run_detail(query, "reportName", run["report_name"])
        self._check_run_detail(query, "rptKickoffDatetime", run["kickoff"])
        if run["state"] == "failed":
            raise ReportingError(400, "Invalid parameters", f"Report job {job_id} failed: {run['reason']}")
        if run["state"] != "done":
            word = self._status_word(run["state"])
            raise ReportingError(400, "Invalid parameters", f"Report job {job_id} is not ready ({word}).")
        kind = FILE_KINDS[run["format"]]
        content = _report_content(f"clinical_one:{job_id}", kind, self.report_size)
        self.record_served(job_id, content)
        with self.lock:
            self.runs[job_id.upper()]["downloaded"] = True
        stamp = run["kickoff"].replace("-", "").replace(":", "").split(".")[0]
        filename = f"{run['report_name'].replace(' ', '_')}_{stamp}.{kind.extension}"
        headers = {
            "Content-Type": kind.content_type,
            "Content-Disposition": f"attachment; filename={filename}",
        }
        return Response(200, content, headers)

    # ---- shared checks

    def _authorize(self, request: Request) -> None:
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        token = token.strip()
        if not (scheme.lower() == "bearer" and token and self.token_is_live(token)):
            denied = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            raise ReportingError(401, TOKEN_DENIED, None, denied)

    def _report(self, report_id: str) -> dict[str, Any]:
        report = self.reports.get(report_id.upper())
        if report is None:
            raise ReportingError(404, "Not found", f"Report {report_id} does not exist.")
        if report_id.upper() in self.forbidden_reports:
            raise ReportingError(401, NO_ACCESS, NO_ACCESS_DETAILS)
        return report

    def _mode(self, query: Mapping[str, str], *, required: bool) -> str | None:
        mode = query.get("mode")
        if mode is None and not required:
            return None
        if mode not in MODES:
            raise ReportingError(
                400, "Invalid parameters", f"mode '{mode or ''}' is not one of test, active, training."
            )
        return mode

    def _known_study(self, study_id: str) -> None:
        if study_id.upper() not in self.studies:
            raise ReportingError(404, "Not found", f"Study {study_id} does not exist or is not yours to see.")

    def _study_for(self, report: Mapping[str, Any], query: Mapping[str, str]) -> str | None:
        """The run's study from ``studyId``; a tenant report has none, written as this tenant expects."""
        raw = query.get("studyId")
        if report["level"] == "tenant":
            if raw is None and self.tenant_study_id == "null":
                raise ReportingError(
                    400,
                    "Insufficient parameters",
                    f"studyId is required; send studyId=null for {report['name']}.",
                )
            if raw is not None and raw.lower() == "null" and self.tenant_study_id == "omit":
                raise ReportingError(400, "Invalid parameters", "studyId 'null' is not a study id.")
            if raw not in (None, "", "null"):
                raise ReportingError(
                    400, "Invalid parameters", f"{report['name']} is a tenant report; studyId must be null."
                )
            return None
        if raw in (None, "", "null"):
            raise ReportingError(
                400, "Insufficient parameters", f"{report['name']} is a study report; studyId is required."
            )
        self._known_study(raw)
        return raw.upper()

    def _check_run_detail(self, query: Mapping[str, str], name: str, expected: str) -> None:
        value = query.get(name)
        if value is None:
            if self.require_run_details:
                raise ReportingError(400, "Insufficient parameters", f"{name} is required.")
            return
        if value != expected:
            raise ReportingError(400, "Invalid parameters", f"{name} does not match the report job.")

    # ---- runs

    def _new_run(
        self,
        report_id: str,
        study_id: str | None,
        mode: str,
        report_format: str,
        field_specs: list[Any],
        ext_field_specs: list[Any],
        *,
        state: str = "queued",
        reason: str | None = None,
        user: str = "api",
        seeded: bool = False,
    ) -> str:
        job_id = uuid.uuid4().hex.upper()
        with self.lock:
            # Strictly increasing times, so "newest first" is well defined even for runs made together.
            latest = max((run["created_at"] for run in self.runs.values()), default=0.0)
            created_at = max(self.clock(), latest + 0.001)
            self.runs[job_id] = {
                "id": job_id,
                "report_id": report_id.upper(),
                "report_name": self.reports[report_id.upper()]["name"],
                "study_id": study_id.upper() if study_id else None,
                "mode": mode,
                "format": report_format,
                "field_specs": field_specs,
                "ext_field_specs": ext_field_specs,
                "kickoff": _iso_millis(created_at),
                "created_at": created_at,
                "state": state,
                "reason": reason,
                "user": user,
                "seeded": seeded,
            }
        return job_id

    def _settled(self, run: dict[str, Any]) -> dict[str, Any]:
        """The run as of now: queued for the first third of generation, then running, then finished.

        The outcome (done; failed when ``fail_reports`` is set; cancelled, as an administrator would,
        when ``cancel_reports`` is) is decided when first observed after generation and then stays.
        Seeded runs keep the state they were given. Call with the lock held.
        """
        if not run["seeded"] and run["state"] in ("queued", "running"):
            elapsed = self.clock() - run["created_at"]
            if elapsed >= self.generation_seconds:
                if self.fail_reports:
                    run["state"], run["reason"] = "failed", self.fail_reports
                elif self.cancel_reports:
                    run["state"], run["reason"] = "cancelled", self.cancel_reports
                else:
                    run["state"], run["reason"] = "done", None
            elif elapsed >= self.generation_seconds / 3:
                run["state"] = "running"
        return dict(run)

    def _status_word(self, state: str) -> str:
        """The configured word for a run state; states the knob leaves out keep their default word."""
        return self.status_words.get(state, DEFAULT_STATUS_WORDS[state])

    def _execution_log(self, run: Mapping[str, Any]) -> dict[str, Any]:
        log: dict[str, Any] = {
            "id": run["id"],
            "rptId": run["report_id"],
            "studyId": run["study_id"],
            "mode": run["mode"],
            "rptFormat": run["format"],
            "rptKickoffDatetime": run["kickoff"],
            "reason": None,
            "recCount": None,
            "fileStorageId": None,
            "objectVersionNumber": 1,
            "operationType": "INSERT",
        }
        if self.status_field:
            log[self.status_field] = self._status_word(run["state"])
        return log

    def _list_entry(self, run: Mapping[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "downloadId": run["id"],
            "reportName": run["report_name"],
            "rptFormat": run["format"],
            "rptKickoffDatetime": run["kickoff"],
            "userName": run["user"],
            "currSearchSpec": "",
            "currSortSpec": "",
        }
        if self.status_field:
            entry[self.status_field] = self._status_word(run["state"])
        if run["state"] in ("failed", "cancelled"):
            entry["reason"] = run["reason"]
        if run["state"] == "done":
            entry["recCount"] = max(1, self.report_size // 64)
        return entry


def _study_param(query: Mapping[str, str]) -> str | None:
    raw = query.get("studyId")
    return None if raw in (None, "", "null") else raw.upper()


def _paging(query: Mapping[str, str]) -> tuple[int, int]:
    if "limit" not in query or "offset" not in query:
        raise ReportingError(400, "Insufficient parameters", "limit and offset are required.")
    try:
        limit, offset = int(query["limit"]), int(query["offset"])
    except ValueError:
        raise ReportingError(400, "Invalid parameters", "limit and offset must be integers.") from None
    if limit < 1 or offset < 0:
        raise ReportingError(400, "Invalid parameters", "limit must be positive and offset not negative.")
    return limit, offset


def _field_specs(request: Request) -> tuple[list[Any], list[Any]]:
    """``fieldSpecsList`` and ``extFieldSpecsList`` from the body, each entry checked for its shape."""
    try:
        body = request.json()
    except HttpError as failure:
        raise ReportingError(400, "Invalid parameters", failure.message) from None
    if not isinstance(body, dict):
        raise ReportingError(400, "Invalid parameters", "The body must be a JSON object.")
    lists = []
    for name in ("fieldSpecsList", "extFieldSpecsList"):
        specs = body.get(name, [])
        if not isinstance(specs, list) or not all(
            isinstance(spec, dict)
            and isinstance(spec.get("fieldName"), str)
            and isinstance(spec.get("fieldValueList"), list)
            for spec in specs
        ):
            raise ReportingError(
                400, "Invalid parameters", f"{name} must be a list of {{fieldName, fieldValueList}} objects."
            )
        lists.append(specs)
    return lists[0], lists[1]


def _report_content(seed: str, kind: FileKind, size: int) -> bytes:
    """The same bytes for the same job every time: CSV rows for CSV, magic plus noise for the rest."""
    if kind.extension != "csv":
        return deterministic_bytes(seed, size, kind.magic)
    rows = random.Random(seed)
    lines = ["STUDYID,SITEID,SUBJID,VISIT,FORM,ITEM,VALUE"]
    length = len(lines[0]) + 1
    while length < size:
        line = (
            f"ONC-301,SITE{rows.randint(1, 40):03d},S{rows.randint(1, 9999):04d},"
            f"VISIT {rows.randint(1, 12)},VITALS,SYSBP,{rows.randint(90, 180)}"
        )
        lines.append(line)
        length += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def _iso_millis(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sandbox_simulator(
    *,
    port: int,
    faults: Faults,
    secret: str,
    generation_seconds: float,
    token_lifetime_seconds: float,
    fail_reports: str | None,
) -> ClinicalOneSimulator:
    """The simulator as ``reportrelay sandbox`` serves it.

    User ``api`` and client ``reportrelay`` both use the sandbox secret; two older runs of the Subject
    Data Extract already sit in the download list, so a client that takes the wrong run shows up.
    """
    simulator = ClinicalOneSimulator(
        port=port,
        faults=faults,
        users={"api": secret},
        clients={"reportrelay": secret},
        generation_seconds=generation_seconds,
        token_lifetime_seconds=token_lifetime_seconds,
        fail_reports=fail_reports,
    )
    simulator.add_run(SUBJECT_DATA_EXTRACT, DEFAULT_STUDY_ID, "active")
    simulator.add_run(SUBJECT_DATA_EXTRACT, DEFAULT_STUDY_ID, "active", state="failed", reason="Timed out")
    return simulator
