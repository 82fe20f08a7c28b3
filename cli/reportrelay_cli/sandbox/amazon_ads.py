"""Amazon Ads reporting API version 3, as Amazon's public documentation describes it.

Sources: "Get started with version 3 reports" (guides/reporting/v3/get-started), the Offline Report API
reference (offline-report-prod-3p) and "Login with Amazon" access tokens.

Sign-in:  POST /auth/o2/token  (Login with Amazon, api.amazon.com; here the same server)
          form ``grant_type=refresh_token&refresh_token=&client_id=&client_secret=``
          -> ``{"access_token": "Atza|...", "refresh_token", "token_type": "bearer", "expires_in": 3600}``
Every call: ``Authorization: Bearer <token>``, ``Amazon-Advertising-API-ClientId: <LwA client id>``,
          ``Amazon-Advertising-API-Scope: <profile id>``.
Create:   POST /reporting/reports, ``Content-Type: application/vnd.createasyncreportrequest.v3+json``,
          ``{"name"?, "startDate", "endDate", "configuration": {"adProduct", "groupBy", "columns",
          "reportTypeId", "timeUnit", "format": "GZIP_JSON", "filters"?}}``
          -> 200, the AsyncReport: ``{"reportId", "status": "PENDING", "configuration", "createdAt",
          "updatedAt", "startDate", "endDate", "name", "url": null, "urlExpiresAt": null, "fileSize": null,
          "generatedAt": null, "failureReason": null}``. An identical request while one is still being
          generated: 425 "Too Early", a duplicate of that report.
Status:   GET /reporting/reports/{reportId} -> the AsyncReport, ``status`` PENDING, PROCESSING, then
          COMPLETED with ``url`` (on S3, another host, presigned: it is fetched without the API's
          credentials), ``urlExpiresAt`` (3600 s by default), ``fileSize`` and ``generatedAt``.
Cancel:   DELETE /reporting/reports/{reportId} "to cancel a report in a PENDING status".
Errors:   AsyncReportingError ``{"code", "detail"}``; 400, 401, 404, 422, 425, 429, 500.
The file: gzip-compressed JSON, an array of one object per row with the requested columns.

Where the documents are silent the simulator assumes, and says so: the FAILED status and its
``failureReason`` (the schema has the field "for failed reports only" but lists no failed status), what
a DELETE of a report past PENDING answers (400), what an expired link answers (S3's 403 AccessDenied
"Request has expired", as XML), and the field checks behind the 400 and 422 answers. The real service
requires HTTPS; the simulator speaks plain HTTP on 127.0.0.1, the file host on a port of its own.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Self
from xml.sax.saxutils import escape

from reportrelay_cli.sandbox.server import (
    Faults,
    HttpError,
    Request,
    Response,
    Simulator,
    TokenIssuingSimulator,
    json_response,
    oauth_error,
    route,
    token_answer,
)

CREATE_TYPE = "application/vnd.createasyncreportrequest.v3+json"
DEFAULT_CLIENTS = {"amzn1.application-oa2-client.sandbox": "sandbox-client-secret"}
DEFAULT_REFRESH_TOKEN = "Atzr|sandbox-refresh-token"
DEFAULT_PROFILE = "1234567890"
#: The Login with Amazon client of ``reportrelay sandbox`` (examples/connections.json).
SANDBOX_CLIENT_ID = "amzn1.application-oa2-client.sandbox"
AD_PRODUCTS = (
    "SPONSORED_PRODUCTS",
    "SPONSORED_BRANDS",
    "SPONSORED_DISPLAY",
    "SPONSORED_TELEVISION",
    "DEMAND_SIDE_PLATFORM",
    "ALL",
)
TIME_UNITS = ("SUMMARY", "DAILY")
MAX_DAYS = 31
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: The S3 bucket the file host pretends to be.
BUCKET_PATH = "/offline-report-storage-us-east-1-prod"


def _iso(moment: float) -> str:
    return (
        datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(moment % 1 * 1000):03d}Z"
    )


class AmazonAdsSimulator(TokenIssuingSimulator):
    """The reporting API (create, status, delete) and Login with Amazon, plus ``storage``, the file host
    the status links point to, served on a second port and started and stopped with this one.

    Every constructor keyword is also an attribute that may be changed while the simulator runs. The file
    host shares ``faults`` (and the lock), so one set of knobs covers the vendor; aim download faults with
    ``faults.only_paths`` as usual.
    """

    name = "amazon_ads"
    logged_headers = (
        *TokenIssuingSimulator.logged_headers,
        "Amazon-Advertising-API-ClientId",
        "Amazon-Advertising-API-Scope",
    )

    def __init__(
        self,
        *,
        port: int = 0,
        storage_port: int = 0,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        clients: Mapping[str, str] | None = None,
        refresh_tokens: Iterable[str] = (DEFAULT_REFRESH_TOKEN,),
        profiles: Iterable[str] = (DEFAULT_PROFILE,),
        token_lifetime_seconds: float = 3600,
        generation_seconds: float = 2.0,
        fail_reports: str | None = None,
        url_lifetime_seconds: float = 3600,
        rows: int = 50,
    ) -> None:
        super().__init__(port=port, faults=faults, clock=clock)
        self.clients: dict[str, str] = dict(clients if clients is not None else DEFAULT_CLIENTS)
        self.refresh_tokens: set[str] = set(refresh_tokens)
        self.profiles: set[str] = set(profiles)
        self.token_lifetime_seconds = token_lifetime_seconds
        self.generation_seconds = generation_seconds
        self.fail_reports = fail_reports
        self.url_lifetime_seconds = url_lifetime_seconds
        self.rows = rows
        #: reportId -> the AsyncReport as stored, plus "_created" (on the clock), "_profile", "_body".
        self.reports: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()
        self.storage = ReportStorage(self, port=storage_port)

    # ---- lifecycle: the file host comes and goes with the API

    def start(self) -> Self:
        super().start()
        try:
            self.storage.start()
        except OSError:  # its port is taken: stop the API too, so nothing is left half-served
            super().stop()
            raise
        return self

    def stop(self) -> None:
        self.storage.stop()
        super().stop()

    def companions(self) -> tuple[Simulator, ...]:
        return (self.storage,)

    def error_body(self, status: int, message: str) -> Any:
        """AsyncReportingError: the HTTP status as a string, and a human-readable description."""
        return {"code": str(status), "detail": message}

    def expire_links(self) -> None:
        """Make every download link handed out so far stop working, as if its hour had passed."""
        self.storage.rotate_signing_key()

    # ---- Login with Amazon: POST /auth/o2/token (refresh_token grant)

    @route("POST", "/auth/o2/token", sign_in=True)
    def issue_token(self, request: Request) -> Response:
        form = request.form()
        client_id = form.get("client_id", "")
        if client_id not in self.clients or self.clients[client_id] != form.get("client_secret"):
            return oauth_error("invalid_client", "Client authentication failed", status=401)
        if form.get("grant_type") != "refresh_token":
            return oauth_error("unsupported_grant_type", "The authorization grant type is not supported")
        refresh_token = form.get("refresh_token", "")
        if refresh_token not in self.refresh_tokens:
            return oauth_error("invalid_grant", "The request has an invalid grant parameter : refresh_token")
        lifetime = self.token_lifetime_seconds
        token = f"Atza|{self.new_token(lifetime)}"
        return token_answer(
            {
                "access_token": token,
                "refresh_token": refresh_token,
                "token_type": "bearer",
                "expires_in": int(lifetime),
            }
        )

    # ---- the reports

    @route("POST", "/reporting/reports")
    def create_report(self, request: Request) -> Response:
        profile = self._authorize(request)
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != CREATE_TYPE:
            raise HttpError(415, f"Content-Type must be {CREATE_TYPE}")
        body = request.json()
        configuration = _checked_request(body)
        now = self.clock()
        with self.lock:
            for report_id, existing in self.reports.items():
                same = existing["_body"] == body and existing["_profile"] == profile
                if same and self._status(existing, now) in ("PENDING", "PROCESSING"):
                    raise HttpError(425, f"The Request is a duplicate of : {report_id}")
            report_id = str(uuid.uuid4())
            report = {
                "reportId": report_id,
                "name": body.get("name"),
                "startDate": body["startDate"],
                "endDate": body["endDate"],
                "configuration": {"filters": None, **configuration},
                "createdAt": _iso(now),
                "updatedAt": _iso(now),
                "status": "PENDING",
                "url": None,
                "urlExpiresAt": None,
                "fileSize": None,
                "generatedAt": None,
                "failureReason": None,
                "_created": now,
                "_profile": profile,
                "_body": body,
            }
            self.reports[report_id] = report
        return json_response(_public(report))

    @route("GET", "/reporting/reports/{reportId}")
    def get_report(self, request: Request) -> Response:
        profile = self._authorize(request)
        report = self._report(request.params["reportId"], profile)
        now = self.clock()
        with self.lock:
            status = self._status(report, now)
            report["status"] = status
            if status in ("COMPLETED", "FAILED") and report["generatedAt"] is None:
                report["generatedAt"] = report["updatedAt"] = _iso(now)
            answer = _public(report)
            if status == "FAILED":
                answer["failureReason"] = report["failureReason"] = (
                    self.fail_reports or "Report generation failed"
                )
            if status == "COMPLETED":
                content = self.content(report["reportId"])
                answer["fileSize"] = report["fileSize"] = len(content)
                answer["url"], expires = self.storage.link(report["reportId"], self.url_lifetime_seconds)
                answer["urlExpiresAt"] = _iso(expires)
        return json_response(answer)

    @route("DELETE", "/reporting/reports/{reportId}")
    def delete_report(self, request: Request) -> Response:
        profile = self._authorize(request)
        report_id = request.params["reportId"]
        report = self._report(report_id, profile)
        with self.lock:
            status = self._status(report, self.clock())
            if status != "PENDING":
                raise HttpError(400, f"Report {report_id} is {status}; only a PENDING report can be deleted")
            del self.reports[report_id]
            self.deleted.add(report_id)
        return json_response({"code": "200", "detail": "Report deleted", "reportId": report_id})

    def content(self, report_id: str) -> bytes:
        """The report file: gzip JSON, the same bytes every time for the same report (gzip mtime 0)."""
        with self.lock:
            report = self.reports[report_id]
        columns = report["configuration"]["columns"]
        generator = random.Random(f"amazon_ads:{report_id}")
        rows = [{column: _cell(column, generator, report) for column in columns} for _ in range(self.rows)]
        return gzip.compress(json.dumps(rows, separators=(",", ":")).encode(), mtime=0)

    # ---- shared checks

    def _authorize(self, request: Request) -> str:
        """Bearer token, client id and profile, as every reporting call needs them; the profile id."""
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        if (
            scheme.lower() != "bearer"
            or not token.strip()
            or not self.token_is_live(token.strip().removeprefix("Atza|"))
        ):
            raise HttpError(401, "Not authorized to access this advertiser", {"WWW-Authenticate": "Bearer"})
        if request.header("amazon-advertising-api-clientid") not in self.clients:
            raise HttpError(401, "Amazon-Advertising-API-ClientId is missing or not a known client")
        profile = request.header("amazon-advertising-api-scope") or ""
        if profile not in self.profiles:
            raise HttpError(403, "Amazon-Advertising-API-Scope is missing or not a profile of this account")
        return profile

    def _report(self, report_id: str, profile: str) -> dict[str, Any]:
        with self.lock:
            report = self.reports.get(report_id)
        if report is None or report["_profile"] != profile:
            raise HttpError(404, f"Report {report_id} was not found")
        return report

    def _status(self, report: dict[str, Any], now: float) -> str:
        """PENDING for the first fifth of the generation time, PROCESSING until it is done, then COMPLETED
        (or FAILED while ``fail_reports`` is set); a finished report stays finished."""
        if report["status"] in ("COMPLETED", "FAILED"):
            return str(report["status"])
        elapsed = now - report["_created"]
        if elapsed >= self.generation_seconds:
            return "FAILED" if self.fail_reports else "COMPLETED"
        return "PENDING" if elapsed < self.generation_seconds / 5 else "PROCESSING"


def _public(report: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in report.items() if not key.startswith("_")}


def _checked_request(body: Any) -> dict[str, Any]:
    """The configuration of a create request, or the 400 / 422 it earns."""
    if not isinstance(body, dict):
        raise HttpError(400, "The request body must be a CreateAsyncReportRequest object")
    for name in ("startDate", "endDate"):
        value = body.get(name)
        if not isinstance(value, str) or not _DATE.match(value):
            raise HttpError(400, f"{name} is required, in YYYY-MM-DD format")
    try:
        start, end = date.fromisoformat(body["startDate"]), date.fromisoformat(body["endDate"])
    except ValueError:
        raise HttpError(400, "startDate and endDate must be dates in YYYY-MM-DD format") from None
    if end < start:
        raise HttpError(422, "endDate must not be before startDate")
    if (end - start).days + 1 > MAX_DAYS:
        raise HttpError(422, f"The date range must not exceed {MAX_DAYS} days")
    configuration = body.get("configuration")
    if not isinstance(configuration, dict):
        raise HttpError(400, "configuration is required")
    if configuration.get("adProduct") not in AD_PRODUCTS:
        raise HttpError(400, f"configuration.adProduct must be one of {', '.join(AD_PRODUCTS)}")
    for name in ("groupBy", "columns"):
        value = configuration.get(name)
        if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
            raise HttpError(400, f"configuration.{name} cannot be null or empty")
    if not isinstance(configuration.get("reportTypeId"), str) or not configuration["reportTypeId"]:
        raise HttpError(400, "configuration.reportTypeId is required")
    if configuration.get("timeUnit") not in TIME_UNITS:
        raise HttpError(400, "configuration.timeUnit must be SUMMARY or DAILY")
    if configuration.get("format") != "GZIP_JSON":
        raise HttpError(400, "configuration.format must be GZIP_JSON")
    if configuration["timeUnit"] == "SUMMARY" and "date" in configuration["columns"]:
        raise HttpError(
            422, "The column 'date' is not supported with timeUnit SUMMARY; use startDate, endDate"
        )
    return dict(configuration)


def _cell(column: str, generator: random.Random, report: Mapping[str, Any]) -> Any:
    if column in ("date", "startDate"):
        return report["startDate"]
    if column == "endDate":
        return report["endDate"]
    if column.endswith("Id"):
        return generator.randrange(10**14, 10**15)
    if column.endswith("Name"):
        return f"Campaign {generator.randrange(1, 100)}"
    if column in ("cost", "costPerClick", "clickThroughRate") or column.startswith("sales"):
        return round(generator.uniform(0, 500), 2)
    return generator.randrange(0, 10000)


# --------------------------------------------------------------------------------------------------
# The file host: presigned links on another origin


class ReportStorage(Simulator):
    """Where the status links point: an S3-like host that serves each report file to a presigned GET.

    Like S3, it refuses a request that also carries an ``Authorization`` header (only one auth mechanism
    is allowed), and answers a link past its expiry or with a wrong signature with 403 and an XML error.
    ``credentials_seen`` counts requests that arrived with any of the API's credentials or headers.
    """

    name = "amazon_ads_storage"
    logged_headers = (
        *Simulator.logged_headers,
        "Amazon-Advertising-API-ClientId",
        "Amazon-Advertising-API-Scope",
        "Cookie",
    )

    def __init__(self, api: AmazonAdsSimulator, *, port: int = 0) -> None:
        super().__init__(port=port, faults=api.faults, clock=api.clock)
        self.api = api
        self.lock = api.lock  # one lock for the counters both servers share
        self.credentials_seen = 0
        self._signing_key = secrets.token_bytes(32)

    def rotate_signing_key(self) -> None:
        with self.lock:
            self._signing_key = secrets.token_bytes(32)

    def link(self, report_id: str, lifetime: float) -> tuple[str, float]:
        """A presigned link to the report's file, and when it expires (epoch seconds)."""
        issued = int(self.clock())
        expires_in = max(1, int(lifetime))
        amz_date = datetime.fromtimestamp(issued, UTC).strftime("%Y%m%dT%H%M%SZ")
        key = f"{report_id}.json.gz"
        signature = self._signature(key, amz_date, expires_in)
        query = (
            f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={amz_date}&X-Amz-Expires={expires_in}"
            f"&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}"
        )
        return f"{self.base_url}{BUCKET_PATH}/{key}?{query}", float(issued + expires_in)

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        code = {400: "InvalidArgument", 403: "AccessDenied", 404: "NoSuchKey"}.get(status, "InternalError")
        if status == 429:
            code = "SlowDown"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
        ).encode()
        return Response(status, body, {"Content-Type": "application/xml", **(headers or {})})

    @route("GET", BUCKET_PATH + "/{key}", download=True)
    def get_object(self, request: Request) -> Response:
        leaked = any(
            request.header(name) is not None
            for name in (
                "authorization",
                "amazon-advertising-api-clientid",
                "amazon-advertising-api-scope",
                "cookie",
            )
        )
        if leaked:
            with self.lock:
                self.credentials_seen += 1
        if request.header("authorization") is not None:
            raise HttpError(
                400,
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
                "string parameter or the Authorization header should be specified",
            )
        key = request.params["key"]
        amz_date, expires = request.query.get("X-Amz-Date", ""), request.query.get("X-Amz-Expires", "")
        if not expires.isdigit() or not hmac.compare_digest(
            request.query.get("X-Amz-Signature", ""), self._signature(key, amz_date, int(expires))
        ):
            raise HttpError(
                403, "The request signature we calculated does not match the signature you provided"
            )
        issued = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        if self.clock() > issued + int(expires):
            raise HttpError(403, "Request has expired")
        report_id = key.removesuffix(".json.gz")
        if report_id not in self.api.reports:
            raise HttpError(404, "The specified key does not exist.")
        content = self.api.content(report_id)
        self.api.record_served(report_id, content)
        return Response(200, content, {"Content-Type": "application/octet-stream"})

    def _signature(self, key: str, amz_date: str, expires_in: int) -> str:
        with self.lock:
            signing_key = self._signing_key
        message = f"GET\n{BUCKET_PATH}/{key}\n{amz_date}\n{expires_in}".encode()
        return hmac.new(signing_key, message, hashlib.sha256).hexdigest()


def sandbox_simulator(
    *,
    port: int,
    faults: Faults,
    secret: str,
    generation_seconds: float,
    token_lifetime_seconds: float,
    fail_reports: str | None,
) -> AmazonAdsSimulator:
    """The simulator as ``reportrelay sandbox`` serves it: client ``SANDBOX_CLIENT_ID`` whose client
    secret and refresh token are the sandbox secret, profile ``DEFAULT_PROFILE``, and the file host on the
    next port (on any free port when ``port`` is 0, as in the demo)."""
    return AmazonAdsSimulator(
        port=port,
        storage_port=port + 1 if port else 0,
        faults=faults,
        clients={SANDBOX_CLIENT_ID: secret},
        refresh_tokens=[secret],
        profiles=[DEFAULT_PROFILE],
        generation_seconds=generation_seconds,
        token_lifetime_seconds=token_lifetime_seconds,
        fail_reports=fail_reports,
    )
