"""Torus tenant merged MI reports, as the vendor's endpoint note describes them (seed 000).

Find:     GET  /api/tenant/mergedreport/list/get/{tenant_id}?$filter=tolower('{name}') eq tolower(Name)
          -> ``[{"id": 1087, "name": "MI_Report", "tenantId": 69, ...}]`` ("note the single quotation marks")
Queue:    POST /api/tenant/mergedreport/queuefordownload   header ``TorusTenantId: {tenant_id}``
          body ``{"reportId": "{merged_report_id}", "reportType": 1}`` ("reportType is always 1");
          the answer says nothing useful (an empty body here, or ``null`` with ``queue_answer="null"``)
Poll:     GET  /api/tenant/report/queue/list/get?$filter=DateQueued gt datetime'2025-09-12T00:00'
          -> the signed-in user's downloads, the last 7 days by default, each with
          ``scheduledTaskRunNowId``, ``name``, ``status`` (Pending, Running, Finished, Cancelled, Error),
          ``progress`` ("45%"), ``message``, ``dateQueued`` ..., and ``fileGuid`` once Finished
Download: GET  /api/file/download/report/{file_guid}       -> the Excel file

Where the note is silent the simulator picks what an ASP.NET Web API service would do: errors are
``{"Message": "..."}``, an OData filter it cannot parse is a 400, dates are written without a time zone
in the server's own clock (``clock_offset_seconds`` moves that clock away from ours, as a server
keeping local time or a skewed clock would), and the download names the file in both ``filename``
and ``filename*`` like ASP.NET Core's ``File(...)``. The filter on the queue list accepts only the
note's minute-precision date format. Authentication is not public: the simulator takes a bearer token,
or the token in a custom header (``auth_header``).

Knobs for the quirks a client must survive: ``older_runs`` (runs of the same report queued before the
client's, finished or still running), ``listing_delay_seconds`` (a new run shows in the list late),
``queue_delay_seconds`` (a slow queue call, so two clients' runs land together), ``drop_queued`` (the
queue call is accepted but no run ever appears), ``stall_at_percent``, ``fail_reports`` (runs end in
Error with that message), ``cancel_reports`` (runs end Cancelled), ``throttle_queue_next`` and
``throttle_list_after_queue`` (429s aimed at the queue call and at the listings that follow it), and
``queue_errors_next`` (the queue call queues the run, then answers 500 all the same).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from reportrelay_cli.sandbox.server import (
    Faults,
    HttpError,
    Request,
    Response,
    Simulator,
    deterministic_bytes,
    empty_response,
    json_response,
    route,
)

API_USER = "Useraccount for API client"
DEFAULT_TOKENS = {"sandbox-token": API_USER}
DEFAULT_TENANTS = {69: "benefitsforme", 70: "otherbenefits"}
DEFAULT_REPORTS: tuple[dict[str, Any], ...] = (
    {"id": 1087, "name": "MI_Report", "tenantId": 69},
    {"id": 1088, "name": "Monthly Sales & Returns", "tenantId": 69},
    {"id": 1089, "name": 'Bob\'s "Q3" Sales & Returns', "tenantId": 69},
    {"id": 1090, "name": "Claims Summary", "tenantId": 69},
    {"id": 2087, "name": "MI_Report", "tenantId": 70},
)
DENIED = "Authorization has been denied for this request."
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_MAGIC = b"PK\x03\x04"
DEFAULT_WINDOW = timedelta(days=7)
PENDING_FRACTION = 0.2  # the first fifth of a run's generation time is spent Pending
RUN_IDS_START = 59398

QueueAnswer = Literal["empty", "null"]

# OData string literal: single quotes, a quote inside doubled.
_LITERAL = r"'((?:[^']|'')*)'"
_NAME_FILTERS = (
    re.compile(rf"tolower\(\s*{_LITERAL}\s*\)\s+eq\s+tolower\(\s*Name\s*\)"),
    re.compile(rf"tolower\(\s*Name\s*\)\s+eq\s+tolower\(\s*{_LITERAL}\s*\)"),
    re.compile(rf"Name\s+eq\s+{_LITERAL}"),
)
_ID_FILTER = re.compile(r"Id\s+eq\s+(\d+)")
_DATE_FILTER = re.compile(r"DateQueued\s+(gt|ge|lt|le)\s+datetime'([^']*)'")
_MINUTE_FORMAT = "%Y-%m-%dT%H:%M"
_MINUTE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


class TorusSimulator(Simulator):
    """Merged-report lookup, the download queue and file download for one Torus site.

    Every constructor keyword is also an attribute that may be changed while the simulator runs.
    """

    name = "torus"

    def __init__(
        self,
        *,
        port: int = 0,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        tokens: Mapping[str, str] | None = None,
        auth_header: str | None = None,
        tenants: Mapping[int, str] | None = None,
        reports: Iterable[Mapping[str, Any]] | None = None,
        generation_seconds: float = 2.0,
        fail_reports: str | None = None,
        cancel_reports: str | None = None,
        stall_at_percent: int | None = None,
        listing_delay_seconds: float = 0.0,
        queue_delay_seconds: float = 0.0,
        drop_queued: bool = False,
        clock_offset_seconds: float = 0.0,
        queue_answer: QueueAnswer = "empty",
        throttle_queue_next: int = 0,
        throttle_list_after_queue: int = 0,
        queue_errors_next: int = 0,
        report_size: int = 32 * 1024,
        older_runs: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(port=port, faults=faults, clock=clock)
        #: bearer token (or custom-header value) -> the user it signs in
        self.tokens: dict[str, str] = dict(tokens if tokens is not None else DEFAULT_TOKENS)
        self.auth_header = auth_header
        self.tenants: dict[int, str] = dict(tenants if tenants is not None else DEFAULT_TENANTS)
        self.reports: dict[int, dict[str, Any]] = {
            int(report["id"]): _merged_report(report) for report in (reports or DEFAULT_REPORTS)
        }
        self.generation_seconds = generation_seconds
        self.fail_reports = fail_reports
        self.cancel_reports = cancel_reports
        self.stall_at_percent = stall_at_percent
        self.listing_delay_seconds = listing_delay_seconds
        self.queue_delay_seconds = queue_delay_seconds
        self.drop_queued = drop_queued
        self.clock_offset_seconds = clock_offset_seconds
        self.queue_answer: QueueAnswer = queue_answer
        self.throttle_queue_next = throttle_queue_next
        self.throttle_list_after_queue = throttle_list_after_queue
        self.queue_errors_next = queue_errors_next
        self.report_size = report_size
        #: scheduledTaskRunNowId -> the run, with private fields (``_created``, ``_user``, ...)
        self.runs: dict[int, dict[str, Any]] = {}
        #: ids of the runs created by queue calls (not the pre-seeded ones), in order
        self.queued: list[int] = []
        self._next_id = RUN_IDS_START
        self._throttle_lists = 0
        for run in older_runs:
            self.add_run(**run)

    @property  # type: ignore[override]
    def logged_headers(self) -> tuple[str, ...]:
        """The base's headers, the tenant header, and the custom auth header when there is one."""
        custom = (self.auth_header,) if self.auth_header else ()
        return (*Simulator.logged_headers, "TorusTenantId", *custom)

    def error_body(self, status: int, message: str) -> Any:
        """ASP.NET Web API's error shape."""
        return {"Message": message}

    # ---- knobs

    def add_run(
        self,
        report_id: int,
        *,
        age_seconds: float = 0.0,
        generation_seconds: float | None = None,
        status: Literal["Finished", "Error", "Cancelled"] | None = None,
        message: str | None = None,
        user: str = API_USER,
    ) -> int:
        """Put a run in the queue as if queued ``age_seconds`` ago; returns its scheduledTaskRunNowId.

        It is generated like any other run (``generation_seconds``, this simulator's by default) and
        ends with ``status`` (Finished unless told otherwise), so an older run can still be Running
        when a client queues the same report, and finish before the client's own run does.
        """
        report = self.reports[int(report_id)]
        created = self.clock() - age_seconds
        with self.lock:
            run_id = self._next_id
            self._next_id += 1
            queued = self.server_time(created)
            self.runs[run_id] = {
                "tenantId": report["tenantId"],
                "tenantSubDomainName": self.tenants.get(report["tenantId"], ""),
                "scheduledTaskRunNowId": run_id,
                "name": report["name"],
                "queuedBy": user,
                "status": "Pending",
                "progress": "0%",
                "message": "Report task is queued",
                "dateQueued": _odata_time(queued),
                "dateStarted": None,
                "dateFinished": None,
                "fileGuid": None,
                "isViewed": False,
                "viewType": None,
                "_report_id": report["id"],
                "_created": created,
                "_queued": queued,
                "_user": user,
                "_generation": self.generation_seconds if generation_seconds is None else generation_seconds,
                "_outcome": (status, message) if status else None,
                "_visible_at": created,
            }
        return run_id

    def revoke_tokens(self) -> None:
        """Withdraw every API token, as an administrator rotating them mid-job would (static tokens cannot
        be renewed by the client, so the next call is refused for good)."""
        with self.lock:
            self.tokens.clear()

    def cancel(self, run_id: int, message: str = "Report task was cancelled") -> None:
        """Cancel a run as an administrator would, whatever it was doing."""
        with self.lock:
            run = self.runs[run_id]
            if run["status"] in ("Pending", "Running"):
                run["_outcome"] = ("Cancelled", message)
                run["_generation"] = 0.0

    def server_time(self, epoch: float | None = None) -> datetime:
        """The server's clock, as it writes dates: no time zone, ``clock_offset_seconds`` from ours."""
        moment = datetime.fromtimestamp(self.clock() if epoch is None else epoch, UTC).replace(tzinfo=None)
        return moment + timedelta(seconds=self.clock_offset_seconds)

    def run_for(self, file_guid: str) -> dict[str, Any] | None:
        with self.lock:
            return next((run for run in self.runs.values() if run["fileGuid"] == file_guid), None)

    # ---- 1. find the merged report id by name

    @route("GET", "/api/tenant/mergedreport/list/get/{tenantId}")
    def list_merged_reports(self, request: Request) -> Response:
        self._authorize(request)
        tenant_id = self._tenant(request.params["tenantId"])
        reports = [report for report in self.reports.values() if report["tenantId"] == tenant_id]
        odata_filter = request.query.get("$filter")
        if odata_filter is not None:
            keep = _report_filter(odata_filter)
            reports = [report for report in reports if keep(report)]
        return json_response(reports)

    # ---- 2. queue the merged report for download

    @route("POST", "/api/tenant/mergedreport/queuefordownload")
    def queue_for_download(self, request: Request) -> Response:
        self._authorize(request)
        if self._take("throttle_queue_next", self):
            raise HttpError(429, "Too many requests; slow down", {"Retry-After": "1"})
        header = request.header("TorusTenantId")
        if header is None:
            raise HttpError(400, "The TorusTenantId header is required.")
        tenant_id = self._tenant(header)
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "The request body must be a JSON object.")
        report_id = _integer(body.get("reportId"))
        if report_id is None:
            raise HttpError(400, "reportId must be the id of a merged report.")
        if _integer(body.get("reportType")) != 1:
            raise HttpError(400, "reportType must be 1 (merged report).")
        report = self.reports.get(report_id)
        if report is None or report["tenantId"] != tenant_id or report["isDeleted"]:
            raise HttpError(404, f"Merged report {report_id} was not found for tenant {tenant_id}.")
        if self.queue_delay_seconds > 0:
            time.sleep(self.queue_delay_seconds)
        run_id = self.add_run(report_id, user=self._user(request))
        with self.lock:
            run = self.runs[run_id]
            run["_visible_at"] = (
                float("inf") if self.drop_queued else self.clock() + self.listing_delay_seconds
            )
            self.queued.append(run_id)
            self._throttle_lists = self.throttle_list_after_queue
        if self._take("queue_errors_next", self):
            raise HttpError(500, "An error has occurred.")
        return json_response(None) if self.queue_answer == "null" else empty_response()

    # ---- 3. poll the signed-in user's download queue

    @route("GET", "/api/tenant/report/queue/list/get")
    def queue_list(self, request: Request) -> Response:
        self._authorize(request)
        with self.lock:
            if self._throttle_lists > 0:
                self._throttle_lists -= 1
                raise HttpError(429, "Too many requests; slow down", {"Retry-After": "1"})
        user = self._user(request)
        keep = _date_filter(request.query.get("$filter"))
        now = self.clock()
        oldest = self.server_time(now) - DEFAULT_WINDOW
        with self.lock:
            listed = [
                self._settled(run, now)
                for run in self.runs.values()
                if run["_user"] == user and run["_visible_at"] <= now and run["_queued"] > oldest
            ]
        listed = [run for run in listed if keep(run["_queued"])]
        listed.sort(key=lambda run: run["_queued"], reverse=True)
        return json_response([_public(run) for run in listed])

    # ---- 4. download the Excel file

    @route("GET", "/api/file/download/report/{fileGuid}", download=True)
    def download(self, request: Request) -> Response:
        self._authorize(request)
        file_guid = request.params["fileGuid"]
        run = self.run_for(file_guid)
        if run is None or run["_user"] != self._user(request):
            raise HttpError(404, f"File {file_guid} was not found.")
        # Seeded by the run, so repeated downloads serve the same bytes and different runs differ.
        content = deterministic_bytes(
            f"torus:run:{run['scheduledTaskRunNowId']}", self.report_size, XLSX_MAGIC
        )
        self.record_served(str(run["scheduledTaskRunNowId"]), content)
        with self.lock:
            run["isViewed"] = True
        headers = {
            "Content-Type": XLSX_CONTENT_TYPE,
            "Content-Disposition": _disposition(f"{run['name']}.xlsx"),
        }
        return Response(200, content, headers)

    # ---- shared checks

    def _authorize(self, request: Request) -> None:
        self._user(request)

    def _user(self, request: Request) -> str:
        if self.auth_header:
            token = (request.header(self.auth_header) or "").strip()
        else:
            scheme, _, token = (request.header("authorization") or "").partition(" ")
            token = token.strip() if scheme.lower() == "bearer" else ""
        user = self.tokens.get(token) if token else None
        if user is None:
            raise HttpError(401, DENIED, {"WWW-Authenticate": "Bearer"})
        return user

    def _tenant(self, raw: str) -> int:
        tenant_id = _integer(raw)
        if tenant_id is None or tenant_id not in self.tenants:
            raise HttpError(403, f"You do not have access to tenant '{raw}'.")
        return tenant_id

    def _settled(self, run: dict[str, Any], now: float) -> dict[str, Any]:
        """Move the run along Pending -> Running (progress) -> its outcome, as time has passed."""
        if run["status"] in ("Finished", "Error", "Cancelled"):
            return run
        generation = run["_generation"]
        elapsed = now - run["_created"]
        pending = generation * PENDING_FRACTION
        started = run["_queued"] + timedelta(seconds=pending)
        if elapsed < pending:
            return run
        run["dateStarted"] = _odata_time(started)
        stalled = self.stall_at_percent is not None and run["_outcome"] is None
        if elapsed < generation or stalled:
            share = (elapsed - pending) / max(generation - pending, 1e-9)
            percent = self.stall_at_percent if stalled else min(99, int(share * 100))
            run.update(status="Running", progress=f"{percent}%", message="Report task is running")
            return run
        status, message = run["_outcome"] or self._outcome()
        run["dateFinished"] = _odata_time(run["_queued"] + timedelta(seconds=generation))
        if status == "Finished":
            run.update(
                status="Finished",
                progress="100%",
                message="Report task successfully ran",
                fileGuid=str(uuid.uuid4()),
            )
        else:
            run.update(status=status, message=message or f"Report task ended: {status}")
        return run

    def _outcome(self) -> tuple[str, str | None]:
        if self.fail_reports:
            return "Error", self.fail_reports
        if self.cancel_reports:
            return "Cancelled", self.cancel_reports
        return "Finished", None


def _merged_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """A merged report as the list endpoint returns it (the seed's example fields)."""
    return {
        "id": int(report["id"]),
        "name": str(report["name"]),
        "description": str(report.get("description", report["name"])),
        "tenantId": int(report["tenantId"]),
        "limitTenantAccess": False,
        "limitRoleAccess": False,
        "limitUserAccess": False,
        "isScheduled": True,
        "scheduleSource": 1,
        "reportSources": None,
        "reportConditions": None,
        "reportColumns": None,
        "reportAccess": None,
        "adminUserDetails": None,
        "isDeleted": bool(report.get("isDeleted", False)),
    }


def _public(run: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in run.items() if not key.startswith("_")}


def _integer(value: Any) -> int | None:
    """An id sent as a number or as digits in a string (the note's template quotes it)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _odata_time(moment: datetime) -> str:
    """``2025-09-12T08:33:42.97``: .NET's round-trip form, trailing zeros of the fraction dropped."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3].rstrip("0").rstrip(".")
    return text


def _invalid_query(odata_filter: str, why: str) -> HttpError:
    return HttpError(400, f"The query specified in the URI is not valid. {why} in '{odata_filter}'.")


def _report_filter(odata_filter: str) -> Any:
    """The subset of OData the merged-report list needs: a name (case-insensitive or exact) or an id."""
    text = odata_filter.strip()
    for pattern in _NAME_FILTERS:
        found = pattern.fullmatch(text)
        if found:
            wanted = found.group(1).replace("''", "'")
            if pattern is _NAME_FILTERS[2]:
                return lambda report: report["name"] == wanted
            return lambda report: report["name"].lower() == wanted.lower()
    found = _ID_FILTER.fullmatch(text)
    if found:
        wanted_id = int(found.group(1))
        return lambda report: report["id"] == wanted_id
    raise _invalid_query(odata_filter, "Syntax error: expected tolower('name') eq tolower(Name)")


def _date_filter(odata_filter: str | None) -> Any:
    """``DateQueued gt datetime'YYYY-MM-DDTHH:MM'``; only the note's minute-precision format is accepted."""
    if odata_filter is None:
        return lambda queued: True
    found = _DATE_FILTER.fullmatch(odata_filter.strip())
    if not found:
        raise _invalid_query(odata_filter, "Syntax error: expected DateQueued gt datetime'YYYY-MM-DDTHH:MM'")
    operator, literal = found.groups()
    if not _MINUTE_PATTERN.fullmatch(literal):
        raise _invalid_query(
            odata_filter, f"Unrecognized datetime '{literal}': use the format YYYY-MM-DDTHH:MM"
        )
    try:
        bound = datetime.strptime(literal, _MINUTE_FORMAT)
    except ValueError:
        raise _invalid_query(odata_filter, f"Unrecognized datetime '{literal}'") from None
    compare = {
        "gt": lambda queued: queued > bound,
        "ge": lambda queued: queued >= bound,
        "lt": lambda queued: queued < bound,
        "le": lambda queued: queued <= bound,
    }
    return compare[operator]


def _disposition(filename: str) -> str:
    """Both ``filename`` (quotes escaped, non-ASCII as ``_``) and ``filename*``, like ASP.NET Core."""
    plain = "".join(char if char.isascii() and char.isprintable() else "_" for char in filename)
    plain = plain.replace("\\", "\\\\").replace('"', '\\"')
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def sandbox_simulator(
    *,
    port: int,
    faults: Faults,
    secret: str,
    generation_seconds: float,
    token_lifetime_seconds: float,
    fail_reports: str | None,
) -> TorusSimulator:
    """The simulator as ``reportrelay sandbox`` serves it: the sandbox secret is the API user's bearer
    token (static, so ``token_lifetime_seconds`` does not apply), and the example report already has an
    older finished run and one still running, which the client must leave alone."""
    return TorusSimulator(
        port=port,
        faults=faults,
        tokens={secret: API_USER},
        generation_seconds=generation_seconds,
        fail_reports=fail_reports,
        older_runs=(
            {"report_id": 1088, "age_seconds": 3600, "generation_seconds": 60},
            {"report_id": 1088, "age_seconds": 300, "generation_seconds": 900},
        ),
    )
