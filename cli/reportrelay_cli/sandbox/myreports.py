"""MyReports (Xarios call reporting), as seed 002 and the vendor's public API reference describe it.

Sign-in:  POST /connect/token  (the login host, login.xarios.cloud; here the same server)
          form ``grant_type=refresh_token&refresh_token=&client_id=&client_secret=`` (or Basic client auth)
          -> ``{"access_token", "expires_in", "token_type": "Bearer", "refresh_token", "scope"}``.
          The one-off authorization-code step a person performs is not simulated: refresh tokens are given.
Create:   POST {prefix}/v1.0/workspaces/{ws}/reports/{reportId}/requests
          ``{"reportId", "filterId"?, "dateFilter": {"presetName"} | {"start", "end"},
          "additionalConditions"?}``
          -> ``{"data": {"requestId", "locale", "reportId", "referenceDate", "dateFilter", "startTime",
          "endTime"}, "status": "success", "timestamp"}``
Status:   GET  {prefix}/v1.0/workspaces/{ws}/reports/{reportId}/{results|requests}/{requestId}
          -> ``{"data": {"dateCreated", "tenantId", "requestId", "reportId", "status": "Complete",
          "statusMessage": "Report processing complete", "reportTemplateName"}, "status": "success", ...}``
Data:     GET  {prefix}/v1.0/workspaces/{ws}/reports/{reportId}/{results|requests}/{requestId}/data
          -> the seed's document: ``request`` (with ``displayFields``), ``rowLimitExceeded``, ``totalCount``,
          ``data[]`` (records omit the fields they have no value for, and carry ``docId``, which is not a
          display field), ``summary[]``, ``status: 1``, ``statusMessage``, ``rowLimit``.
Errors:   401 with no body ("HTTP/1.1 401 Unauthorised") when the token is missing, invalid or expired.

The documents contradict themselves on paths (templates ``/v1.0/.../results/``, examples
``/api/v1.0/.../requests/``): the simulator serves one ``api_prefix`` (default "/api") and both segments
unless ``results_segments`` narrows them. Where the documents are silent the simulator assumes, and says so:
statuses other than "Complete" (``progress_statuses``, ``failed_status``, "Cancelled"), the error body
``{"status": "error", "message", "timestamp"}``, the known preset names, and a data call made before
the request is complete (a document without records, ``status: 0``). The real service requires HTTPS.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from reportrelay_cli.sandbox.server import (
    JSON_CONTENT_TYPE,
    Faults,
    HttpError,
    Request,
    Response,
    TokenIssuingSimulator,
    basic_credentials,
    empty_response,
    json_response,
    oauth_error,
    route,
    token_answer,
)

DEFAULT_WORKSPACE = "00000000-0000-0000-0000-000000000001"
DEFAULT_REPORT = "00000000-0000-0000-0000-000000000001"
DEFAULT_CLIENTS = {"reportrelay": "sandbox-client-secret"}
DEFAULT_REFRESH_TOKEN = "sandbox-refresh-token"
SANDBOX_CLIENT_ID = "reportrelay-sandbox"
TENANT_ID = "00000000-0000-0000-0000-000000000000"
SCOPE = "openid offline_access onboarding"
#: The seed's CallListByUserSegmented display fields, in order.
CALL_LIST_FIELDS: tuple[str, ...] = (
    "connId", "start", "userName", "userNum", "cli", "cliName", "hgNum", "callType", "callDir", "ans", "ref",
    "lost", "ring", "duration", "calledUserNum", "calledUserName", "callUserName", "callUserNum", "hgName",
)  # fmt: skip
DEFAULT_REPORTS: dict[tuple[str, str], dict[str, Any]] = {
    (DEFAULT_WORKSPACE, DEFAULT_REPORT): {
        "name": "CallListByUserSegmented",
        "display_fields": CALL_LIST_FIELDS,
    },
}
#: ThisYear and ThisQuarter (with their units) are the documents' examples; the other names are assumed.
PRESET_UNITS: dict[str, int] = {
    "Today": 3, "Yesterday": 3, "ThisWeek": 4, "LastWeek": 4, "ThisMonth": 7, "LastMonth": 7,
    "ThisQuarter": 5, "LastQuarter": 5, "ThisYear": 6, "LastYear": 6,
}  # fmt: skip
COMPLETE_MESSAGE = "Report processing complete"
CANCELLED_STATUS = "Cancelled"  # assumed, like the failed status: the documents show only "Complete"
PROCESSING_MESSAGE = "Report processing"
DATA_COMPLETE = 1
DATA_PROCESSING = 0  # assumed: the seed shows only the complete value


class MyReportsSimulator(TokenIssuingSimulator):
    """Report requests (create, status, data) behind refresh-token OAuth or static bearer tokens.

    Every constructor keyword is also an attribute that may be changed while the simulator runs.
    """

    name = "myreports"
    logged_headers = ("Authorization", "Content-Type", "Accept", "Accept-Encoding")

    def __init__(
        self,
        *,
        port: int = 0,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        clients: Mapping[str, str] | None = None,
        refresh_tokens: Iterable[str] = (DEFAULT_REFRESH_TOKEN,),
        rotate_refresh_tokens: bool = False,
        static_tokens: Iterable[str] = (),
        token_lifetime_seconds: float = 3600,
        api_prefix: str = "/api",
        results_segments: Sequence[str] = ("results", "requests"),
        reports: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
        generation_seconds: float = 2.0,
        progress_statuses: Sequence[str] = ("Queued", "Processing"),
        complete_status: str = "Complete",
        failed_status: str = "Failed",
        fail_reports: str | None = None,
        cancel_reports: str | None = None,
        row_count: int = 25,
        row_limit: int = 1_000_000,
        rows: Sequence[Mapping[str, Any]] | None = None,
        data_status: tuple[Any, str] | None = None,
        incomplete_downloads_next: int = 0,
        gzip_data: bool = False,
        record_csv: bool = False,
    ) -> None:
        super().__init__(port=port, faults=faults, clock=clock)
        self.clients: dict[str, str] = dict(clients if clients is not None else DEFAULT_CLIENTS)
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.static_tokens: set[str] = set(static_tokens)
        self.token_lifetime_seconds = token_lifetime_seconds
        self.api_prefix = api_prefix
        self.results_segments = tuple(results_segments)
        source = reports if reports is not None else DEFAULT_REPORTS
        self.reports: dict[tuple[str, str], dict[str, Any]] = {
            key: dict(value) for key, value in source.items()
        }
        self.generation_seconds = generation_seconds
        #: Shown by successive status checks while generating (the last one repeats; "Processing" when
        #: empty); only "Complete" is documented, so tests put other words here.
        self.progress_statuses = tuple(progress_statuses)
        self.complete_status = complete_status
        self.failed_status = failed_status
        #: Requests that finish generating while set end in ``failed_status``, with this status message.
        self.fail_reports = fail_reports
        #: Requests that finish generating while set end "Cancelled" (as an administrator cancelling them
        #: would), with this status message; ``fail_reports`` wins when both are set. Either way the data
        #: call is then answered 400 with the message.
        self.cancel_reports = cancel_reports
        self.row_count = row_count
        self.row_limit = row_limit
        #: Records served instead of generated ones (for quoting tests).
        self.rows = [dict(row) for row in rows] if rows is not None else None
        #: ``(status, statusMessage)`` written into a finished document instead of ``(1, "... complete")``.
        self.data_status = data_status
        #: The next N downloads of a finished request serve half its records with ``status: 0``.
        self.incomplete_downloads_next = incomplete_downloads_next
        self.gzip_data = gzip_data
        #: Also record, under ``<requestId>.csv`` in ``served``, the SHA-256 of the finished document's
        #: records written as CSV the way the issue asks for it (display fields as columns, one row per
        #: record), built here independently of the adapter, so the demo can check a CSV it stored.
        self.record_csv = record_csv
        #: requestId -> {request_id, workspace_id, report_id, body, created_at, date_created, checks,
        #: status, status_message, cancelled, document (bytes, once finished), compressed}
        self.requests: dict[str, dict[str, Any]] = {}
        self.refresh_grants_refused = 0
        self._refresh_tokens: set[str] = set(refresh_tokens)

    # ---- knobs

    @property
    def refresh_tokens(self) -> set[str]:
        """The refresh tokens the login host accepts now (rotation replaces each one when it is used)."""
        with self.lock:
            return set(self._refresh_tokens)

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        """401 has no body ("HTTP/1.1 401 Unauthorised"); other errors use the success answers' envelope."""
        if status == 401:
            return empty_response(401, headers)
        return json_response(
            {"status": "error", "message": message, "timestamp": _timestamp()}, status, headers
        )

    # ---- 1. the login host: POST /connect/token (refresh_token grant)

    @route("POST", "/connect/token", sign_in=True)
    def issue_token(self, request: Request) -> Response:
        form = request.form()
        client_id, client_secret = _client_credentials(request, form)
        if client_id not in self.clients or self.clients[client_id] != client_secret:
            return oauth_error("invalid_client")
        if form.get("grant_type") != "refresh_token":
            return oauth_error("unsupported_grant_type")
        presented = form.get("refresh_token", "")
        with self.lock:
            if presented not in self._refresh_tokens:
                self.refresh_grants_refused += 1
                return oauth_error("invalid_grant")
            refresh_token = presented
            if self.rotate_refresh_tokens:
                self._refresh_tokens.discard(presented)
                refresh_token = secrets.token_urlsafe(32)
                self._refresh_tokens.add(refresh_token)
            access_token = self.new_token(self.token_lifetime_seconds)
        body = {
            "access_token": access_token,
            "expires_in": int(self.token_lifetime_seconds),
            "token_type": "Bearer",
            "refresh_token": refresh_token,
            "scope": SCOPE,
        }
        return token_answer(body)

    # ---- 2. create a report request

    @route("POST", "/api/v1.0/workspaces/{workspaceId}/reports/{reportId}/requests")
    @route("POST", "/v1.0/workspaces/{workspaceId}/reports/{reportId}/requests")
    def create_request(self, request: Request) -> Response:
        self._check_prefix(request)
        self._authorize(request)
        workspace_id, report_id = request.params["workspaceId"], request.params["reportId"]
        self._report(workspace_id, report_id)
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "The request body must be a JSON object.")
        if body.get("reportId") not in (None, report_id):
            raise HttpError(400, f"reportId '{body['reportId']}' does not match the report in the path.")
        date_filter, start, end = _date_filter(body.get("dateFilter"))
        filter_id = body.get("filterId")
        if filter_id is not None and not isinstance(filter_id, str):
            raise HttpError(400, "filterId must be a string.")
        conditions = body.get("additionalConditions", [])
        if not isinstance(conditions, list) or not all(isinstance(item, dict) for item in conditions):
            raise HttpError(400, "additionalConditions must be a list of objects.")
        request_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        with self.lock:
            self.requests[request_id] = {
                "request_id": request_id,
                "workspace_id": workspace_id,
                "report_id": report_id,
                "body": body,
                "created_at": self.clock(),
                "date_created": _timestamp(now),
                "checks": 0,
                "status": self._progress_word(0),
                "status_message": PROCESSING_MESSAGE,
                "cancelled": False,
                "document": None,
                "compressed": None,
            }
        data = {
            "requestId": request_id,
            "locale": "en-GB",
            "reportId": report_id,
            "referenceDate": now.isoformat(),
            "dateFilter": date_filter,
            "startTime": (start or now.replace(month=1, day=1, hour=0, minute=0, second=0)).isoformat(),
            "endTime": (end or now).isoformat(),
        }
        return _success(data)

    # ---- 3. the request's status

    @route("GET", "/api/v1.0/workspaces/{workspaceId}/reports/{reportId}/{segment}/{requestId}")
    @route("GET", "/v1.0/workspaces/{workspaceId}/reports/{reportId}/{segment}/{requestId}")
    def request_status(self, request: Request) -> Response:
        record = self._request_record(request)
        with self.lock:
            finished = self._settle(record)
            if not finished:
                record["status"] = self._progress_word(record["checks"])
            record["checks"] += 1
            report = self.reports[(record["workspace_id"], record["report_id"])]
            data = {
                "dateCreated": record["date_created"],
                "tenantId": TENANT_ID,
                "requestId": request.params["requestId"],
                "reportId": record["report_id"],
                "status": record["status"],
                "statusMessage": record["status_message"],
                "reportTemplateName": report["name"],
            }
        return _success(data)

    # ---- 4. the request's result data: one JSON document

    @route(
        "GET",
        "/api/v1.0/workspaces/{workspaceId}/reports/{reportId}/{segment}/{requestId}/data",
        download=True,
    )
    @route(
        "GET", "/v1.0/workspaces/{workspaceId}/reports/{reportId}/{segment}/{requestId}/data", download=True
    )
    def request_data(self, request: Request) -> Response:
        record = self._request_record(request)
        request_id = request.params["requestId"]
        with self.lock:
            finished = self._settle(record)
            failed = self._ended_without_data(record)
            document = record["document"]
            compressed = record["compressed"]
        if failed:
            raise HttpError(400, record["status_message"])
        if not finished:
            document, compressed = self._build_document(request_id, record, DATA_PROCESSING, records=0), None
        elif self._take("incomplete_downloads_next", self):
            total = len(self.rows) if self.rows is not None else min(self.row_count, self.row_limit)
            document = self._build_document(request_id, record, DATA_PROCESSING, records=total // 2)
            compressed = None
        headers = {"Content-Type": JSON_CONTENT_TYPE}
        body = document
        if self.gzip_data and "gzip" in (request.header("accept-encoding") or "").lower():
            body = compressed if compressed is not None else gzip.compress(document, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return Response(200, body, headers)

    # ---- shared checks

    def _progress_word(self, checks: int) -> str:
        """The status an unfinished request shows after ``checks`` status checks: the next of
        ``progress_statuses`` (the last one repeats), or "Processing" when there are none."""
        words = self.progress_statuses or ("Processing",)
        return words[min(checks, len(words) - 1)]

    def _check_prefix(self, request: Request) -> None:
        if not request.path.startswith(f"{self.api_prefix}/v1.0/"):
            raise HttpError(404, f"No such endpoint: {request.method} {request.path}")

    def _authorize(self, request: Request) -> None:
        """Every API call needs ``Authorization: Bearer <token>``: a live issued token or a static one."""
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HttpError(401, "Unauthorised", {"WWW-Authenticate": "Bearer"})
        if token in self.static_tokens or self.token_is_live(token):
            return
        raise HttpError(401, "Unauthorised", {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def _report(self, workspace_id: str, report_id: str) -> dict[str, Any]:
        if not any(key[0] == workspace_id for key in self.reports):
            raise HttpError(404, f"Workspace '{workspace_id}' was not found.")
        report = self.reports.get((workspace_id, report_id))
        if report is None:
            raise HttpError(404, f"Report '{report_id}' was not found in workspace '{workspace_id}'.")
        return report

    def _request_record(self, request: Request) -> dict[str, Any]:
        self._check_prefix(request)
        if request.params["segment"] not in self.results_segments:
            raise HttpError(404, f"No such endpoint: {request.method} {request.path}")
        self._authorize(request)
        workspace_id, report_id = request.params["workspaceId"], request.params["reportId"]
        self._report(workspace_id, report_id)
        with self.lock:
            record = self.requests.get(request.params["requestId"])
        if record is None or (record["workspace_id"], record["report_id"]) != (workspace_id, report_id):
            raise HttpError(404, f"Report request '{request.params['requestId']}' was not found.")
        return record

    def _settle(self, record: dict[str, Any]) -> bool:
        """True once generated; the outcome (and the document) is fixed the first time that is observed.

        Called with the lock held. The document is built here, before anyone downloads it, so a download
        only sends bytes that already exist. ``fail_reports`` and then ``cancel_reports`` end it without one.
        """
        if record["document"] is not None or self._ended_without_data(record):
            return True
        if self.clock() - record["created_at"] < self.generation_seconds:
            return False
        if self.fail_reports:
            record["status"], record["status_message"] = self.failed_status, self.fail_reports
            return True
        if self.cancel_reports:
            record["status"], record["status_message"] = CANCELLED_STATUS, self.cancel_reports
            record["cancelled"] = True
            return True
        record["status"], record["status_message"] = self.complete_status, COMPLETE_MESSAGE
        request_id = record["request_id"]
        status, message = self.data_status or (DATA_COMPLETE, COMPLETE_MESSAGE)
        record["document"] = self._build_document(request_id, record, status, message=message)
        self.record_served(request_id, record["document"])
        if self.record_csv:
            self.record_served(f"{request_id}.csv", csv_rendering(record["document"]))
        if self.gzip_data:
            record["compressed"] = gzip.compress(record["document"], compresslevel=1)
        return True

    def _ended_without_data(self, record: dict[str, Any]) -> bool:
        """Failed (its status is ``failed_status``) or cancelled: no document, and a data call is a 400."""
        return record["status"] == self.failed_status or record["cancelled"]

    def _build_document(
        self,
        request_id: str,
        record: dict[str, Any],
        status: Any,
        *,
        message: str = PROCESSING_MESSAGE,
        records: int | None = None,
    ) -> bytes:
        """The seed's document, written record by record: the head, ``data[]``, then the tail."""
        report = self.reports[(record["workspace_id"], record["report_id"])]
        if self.rows is not None:
            total = len(self.rows)
            served: Iterator[dict[str, Any]] = iter(self.rows[: self.row_limit])
        else:
            total = self.row_count
            served = _call_records(request_id, min(self.row_count, self.row_limit))
        limit = min(total, self.row_limit) if records is None else records
        date_filter = record["body"].get("dateFilter") or {}
        head = {
            "requestId": request_id,
            "tenantId": TENANT_ID,
            "request": {
                "requestId": request_id,
                "dateCreated": record["date_created"],
                "tenantId": TENANT_ID,
                "reportId": record["report_id"],
                "reportTemplateName": report["name"],
                "filterConditions": [],
                "sortFields": [{"fieldName": "start", "direction": 1}],
                "displayFields": [
                    {"fieldName": name, "mandatory": False} for name in report["display_fields"]
                ],
                "childDisplayFields": [],
                "ignoreDisplayFields": False,
                "metadata": {
                    "reportName": None,
                    "dateFilter": date_filter,
                    "filterId": record["body"].get("filterId"),
                    "additionalFilters": record["body"].get("additionalConditions", []),
                    "timeZoneAbbreviation": "BST",
                },
                "source": "api.onboarding",
                "pageSize": -1,
                "batchSize": -1,
                "rowLimit": self.row_limit,
                "timeZoneId": "Europe/London",
                "countryCode": "GB",
                "locale": "en-GB",
                "maxRows": 0,
            },
            "effort": 210.17,
            "queryDuration": 2076,
            "totalDuration": 2121,
            "queryCount": 2053,
            "rowLimitExceeded": total > self.row_limit,
            "totalCount": total,
        }
        out = io.BytesIO()
        out.write(json.dumps(head, ensure_ascii=False).encode()[:-1])
        out.write(b', "data": [')
        totals = {"ans": 0, "ref": 0, "lost": 0, "ring": 0.0, "duration": 0.0}
        for number, row in enumerate(served):
            if number >= limit:
                break
            if number:
                out.write(b", ")
            out.write(json.dumps(row, ensure_ascii=False).encode())
            for name in totals:
                if type(value := row.get(name)) in (int, float):
                    totals[name] += value
        tail = {"summary": [totals], "status": status, "statusMessage": message, "rowLimit": self.row_limit}
        out.write(b"], ")
        out.write(json.dumps(tail, ensure_ascii=False).encode()[1:])
        return out.getvalue()


# --------------------------------------------------------------------------------------------------
# Helpers


_USERS = (
    ("Test User 1", "101"),
    ("Test User 2", "102"),
    ("O'Brien, Siobhán", "103"),
    ('Sam "The Voice" Lee', "104"),
    ("Zoë Ångström", "105"),
    ("李小龙", "106"),
)
_CLI_NAMES = ("", "Unknown", "Reception, Front Desk", "Night line\nafter 6pm", 'Café ☕ "Le Bon"')


def _call_records(request_id: str, count: int) -> Iterator[dict[str, Any]]:
    """Call records like the seed's: the same for the same request id, with fields missing at random."""
    rng = random.Random(f"myreports:{request_id}")
    moment = datetime(2025, 9, 18, 11, 16, 31)
    for _ in range(count):
        # One draw per record, sliced into the choices, keeps a million records quick to make.
        bits = rng.getrandbits(128)
        moment -= timedelta(seconds=5 + bits % 900)
        user, number = _USERS[(bits >> 10) % len(_USERS)]
        row: dict[str, Any] = {
            "connId": _guid(rng.getrandbits(128)),
            "start": moment.isoformat(),
            "userName": user,
            "userNum": number,
        }
        if (bits >> 14) % 10 < 7:
            row["cli"] = f"+1{2000000000 + (bits >> 20) % 8000000000}"
            row["cliName"] = _CLI_NAMES[(bits >> 54) % len(_CLI_NAMES)]
        queue = (bits >> 58) & 1
        if queue:
            row["hgNum"] = "200"
        row["callType"] = 1 + ((bits >> 59) & 1)
        row["callDir"] = 1 + (bits >> 60) % 3
        outcome = ("ans", "ans", "ref", "lost", None)[(bits >> 63) % 5]
        if outcome:
            row[outcome] = 1
        row["ring"] = float((bits >> 66) % 31)
        row["duration"] = float((bits >> 71) % 901)
        row["calledUserNum"] = f"+1{2000000000 + (bits >> 81) % 8000000000}"
        if (bits >> 115) & 1:
            row["calledUserName"] = "Unknown" if (bits >> 116) & 1 else user
        if (bits >> 117) & 1:
            row["callUserName"] = user
        row["callUserNum"] = number
        if queue:
            row["hgName"] = "Queue 200"
        row["docId"] = _guid(rng.getrandbits(128))
        yield row


def csv_rendering(document: bytes) -> bytes:
    """The records of a results document as CSV: a header of the display fields, then one row per record.

    Cells hold the record's value for each display field (empty when the record lacks it; other fields
    such as ``docId`` are left out), booleans as true/false and objects or lists as JSON text; RFC 4180
    quoting, CRLF line ends, UTF-8. The whole document is parsed at once: meant for sandbox-sized results.
    """
    parsed = json.loads(document)
    fields = [item["fieldName"] for item in parsed["request"]["displayFields"]]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(fields)
    for row in parsed["data"]:
        writer.writerow([_cell(row.get(field)) for field in fields])
    return text.getvalue().encode("utf-8")


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def _guid(value: int) -> str:
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _date_filter(value: Any) -> tuple[dict[str, Any], datetime | None, datetime | None]:
    """The request's dateFilter, checked, as the create answer echoes it, with its start and end if fixed."""
    if not isinstance(value, dict):
        raise HttpError(400, 'dateFilter is required: {"presetName": ...} or {"start": ..., "end": ...}.')
    preset = value.get("presetName")
    if preset is not None:
        if preset not in PRESET_UNITS:
            raise HttpError(400, f"'{preset}' is not a valid preset date filter.")
        units = {
            "units": PRESET_UNITS[preset],
            "offset": 0,
            "length": 1,
            "roundingMode": 1,
            "daysOfWeek": 127,
        }
        return {"presetName": preset, "presetFilterObject": units, "daysOfWeek": 127}, None, None
    try:
        start = datetime.fromisoformat(str(value["start"]))
        end = datetime.fromisoformat(str(value["end"]))
        later = start > end
    except (KeyError, ValueError, TypeError):
        raise HttpError(400, "dateFilter start and end must be ISO 8601 date-times.") from None
    if later:
        raise HttpError(400, "dateFilter start must not be after end.")
    return {"start": start.isoformat(), "end": end.isoformat()}, start, end


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """The client id and secret from HTTP Basic auth when it is sent (an undecodable one is no client),
    else from the form. Characters outside the base64 alphabet are skipped, not refused."""
    header = request.header("authorization")
    if (header or "").partition(" ")[0].lower() == "basic":
        return basic_credentials(header, strict=False) or ("", "")
    return form.get("client_id", ""), form.get("client_secret", "")


def _success(data: Any) -> Response:
    return json_response({"data": data, "status": "success", "timestamp": _timestamp()})


def _timestamp(moment: datetime | None = None) -> str:
    """.NET's round-trip form: seven fractional digits and Z."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def sandbox_simulator(
    *,
    port: int,
    faults: Faults,
    secret: str,
    generation_seconds: float,
    token_lifetime_seconds: float,
    fail_reports: str | None,
) -> MyReportsSimulator:
    """The simulator as ``reportrelay sandbox`` serves it.

    Client ``reportrelay-sandbox`` whose client secret and refresh token are both the sandbox secret; the
    secret is also accepted as a static bearer token, so either auth type of the docs works. Finished
    results are also recorded as CSV (``record_csv``), so a CSV the demo stored can be checked too.
    """
    return MyReportsSimulator(
        port=port,
        faults=faults,
        clients={SANDBOX_CLIENT_ID: secret},
        refresh_tokens=[secret],
        static_tokens=[secret],
        generation_seconds=generation_seconds,
        token_lifetime_seconds=token_lifetime_seconds,
        fail_reports=fail_reports,
        record_csv=True,
    )
