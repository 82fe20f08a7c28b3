"""DevExpress Report and Dashboard Server, as its HTTP API document describes it (seed 003).

Sign-in:   POST /oauth/token  form ``grant_type=password&username=&password=``
           -> ``{"access_token", "token_type": "bearer", "expires_in": 1199}``; no refresh token.
           "Starting with the version 19.1.5, you can use the guest account with a blank password."
Report:    POST /api/documents/export/report/{documentId}    -> ``{"exportId": "<32 hex>"}``
           GET  /api/documents/export/status/{exportId}      -> ``{"taskStatus": "InProgress"}`` ...
           GET  /api/documents/export/result/{exportId}      -> the file
Dashboard: POST /api/documents/export/dashboard/{documentId} -> the file itself
           ("The Export Dashboard task returns the resulting document or an error.")

Where the document is silent, the vendor's public example code is followed: the exportId is a GUID
in "N" form and the status is ``{"taskStatus": ...}`` with the enum Fault=0, InProgress=1, Complete=2.
Older servers answer the bare string or integer, which ``status_form`` reproduces. The result's headers
are not documented; the simulator sends a Content-Disposition so clients can be tested both ways.
The real server requires HTTPS; the simulator speaks plain HTTP on 127.0.0.1.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

from reportrelay_cli.sandbox.server import (
    Faults,
    HttpError,
    Request,
    Response,
    TokenIssuingSimulator,
    deterministic_bytes,
    file_response,
    json_response,
    oauth_error,
    route,
    token_answer,
)

StatusForm = Literal["object", "string", "integer"]
STATUS_FORMS: tuple[str, ...] = ("object", "string", "integer")
#: The task status enum of the vendor's example code.
TASK_STATUS_CODES = {"Fault": 0, "InProgress": 1, "Complete": 2}

DEFAULT_USERS = {"api": "sandbox-password"}
DEFAULT_DOCUMENTS: dict[int, dict[str, str]] = {
    10: {"name": "Sales", "type": "report"},
    11: {"name": "Inventory", "type": "report"},
    20: {"name": "Operations", "type": "dashboard"},
}
DENIED = "Authorization has been denied for this request."


class FileKind(NamedTuple):
    """How one export format is served: its content type, file extension and leading magic bytes."""

    content_type: str
    extension: str
    magic: bytes


_PDF = FileKind("application/pdf", "pdf", b"%PDF-1.7\n")
_XLSX = FileKind("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx", b"PK\x03\x04")
#: "The exportFormat option accepts the following values: pdf, html, xlsx, docx"
REPORT_FORMATS: dict[str, FileKind] = {
    "pdf": _PDF,
    "html": FileKind("text/html", "html", b"<!DOCTYPE html>\n"),
    "xlsx": _XLSX,
    "docx": FileKind(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx", b"PK\x03\x04"
    ),
}
#: "The ExportFormat option accepts the following values: pdf, image, xlsx" (image is refined by "format").
DASHBOARD_FORMATS: tuple[str, ...] = ("pdf", "image", "xlsx")
#: "format": "png" | "jpeg" | "gif"
IMAGE_FORMATS: dict[str, FileKind] = {
    "png": FileKind("image/png", "png", b"\x89PNG\r\n\x1a\n"),
    "jpeg": FileKind("image/jpeg", "jpeg", b"\xff\xd8\xff\xe0"),
    "gif": FileKind("image/gif", "gif", b"GIF89a"),
}


class DevExpressSimulator(TokenIssuingSimulator):
    """The report export flow (queue, poll, download) and the synchronous dashboard export.

    Every constructor keyword is also an attribute that may be changed while the simulator runs.
    """

    name = "devexpress"

    def __init__(
        self,
        *,
        port: int = 0,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        users: Mapping[str, str] | None = None,
        allow_guest: bool = True,
        documents: Mapping[int, Mapping[str, str]] | None = None,
        token_lifetime_seconds: float = 1199,
        status_form: StatusForm = "object",
        generation_seconds: float = 2.0,
        fail_reports: str | None = None,
        report_size: int = 64 * 1024,
        dashboard_seconds: float = 0.0,
    ) -> None:
        super().__init__(port=port, faults=faults, clock=clock)
        if status_form not in STATUS_FORMS:
            raise ValueError(f"status_form must be one of {', '.join(STATUS_FORMS)}, not {status_form!r}")
        self.users: dict[str, str] = dict(users if users is not None else DEFAULT_USERS)
        self.allow_guest = allow_guest
        source = documents if documents is not None else DEFAULT_DOCUMENTS
        self.documents: dict[int, dict[str, str]] = {int(key): dict(value) for key, value in source.items()}
        self.token_lifetime_seconds = token_lifetime_seconds
        self.status_form: StatusForm = status_form
        self.generation_seconds = generation_seconds
        self.fail_reports = fail_reports
        self.report_size = report_size
        self.dashboard_seconds = dashboard_seconds
        #: exportId -> {document_id, document_name, format, options, parameters, size, created_at,
        #: status ("InProgress" | "Complete" | "Fault"), error}
        self.exports: dict[str, dict[str, Any]] = {}
        #: One record per dashboard file served: {key, document_id, format, options, parameters, sha256}.
        self.dashboard_exports: list[dict[str, Any]] = []
        self.served_last_dashboard: str | None = None
        #: Exports queued and not yet downloaded count as active; above this many, new exports get 429
        #: (how a real server's per-account limit looks to a client).
        self.max_active_exports: int | None = None
        self.peak_active_exports = 0

    # ---- knobs

    def error_body(self, status: int, message: str) -> Any:
        """ASP.NET Web API's error shape, which the server's API answers with."""
        return {"Message": message}

    # ---- 1. the token: POST /oauth/token (password grant)

    @route("POST", "/oauth/token", sign_in=True)
    def issue_token(self, request: Request) -> Response:
        form = request.form()
        if form.get("grant_type") != "password":
            return oauth_error("unsupported_grant_type", "grant_type must be 'password'")
        username, password = form.get("username", ""), form.get("password", "")
        guest = self.allow_guest and username.lower() == "guest" and password == ""
        if not guest and (username not in self.users or self.users[username] != password):
            return oauth_error("invalid_grant", "The user name or password is incorrect.")
        lifetime = self.token_lifetime_seconds
        body = {"access_token": self.new_token(lifetime), "token_type": "bearer", "expires_in": int(lifetime)}
        return token_answer(body)

    # ---- 2. export a report: queue, check the status, download

    @route("POST", "/api/documents/export/report/{documentId}")
    def export_report(self, request: Request) -> Response:
        self._authorize(request)
        document_id, document = self._document(request.params["documentId"], "report")
        options, parameters = _export_body(request)
        export_format = _export_format(options, tuple(REPORT_FORMATS))
        export_id = uuid.uuid4().hex
        with self.lock:
            active = sum(1 for export in self.exports.values() if not export.get("downloaded"))
            if self.max_active_exports is not None and active >= self.max_active_exports:
                raise HttpError(
                    429, "Too many export tasks in progress for this account.", {"Retry-After": "1"}
                )
            self.peak_active_exports = max(self.peak_active_exports, active + 1)
            self.exports[export_id] = {
                "document_id": document_id,
                "document_name": document["name"],
                "format": export_format,
                "options": options,
                "parameters": parameters,
                "size": self.report_size,
                "created_at": self.clock(),
                "status": "InProgress",
                "error": None,
            }
        return json_response({"exportId": export_id})

    @route("GET", "/api/documents/export/status/{exportId}")
    def export_status(self, request: Request) -> Response:
        self._authorize(request)
        export = self._settled(request.params["exportId"])
        status = export["status"]
        if self.status_form == "string":
            return json_response(status)
        if self.status_form == "integer":
            return json_response(TASK_STATUS_CODES[status])
        body = {"taskStatus": status}
        if status == "Fault":
            body["errorMessage"] = export["error"]
        return json_response(body)

    @route("GET", "/api/documents/export/result/{exportId}", download=True)
    def export_result(self, request: Request) -> Response:
        self._authorize(request)
        export_id = request.params["exportId"]
        export = self._settled(export_id)
        if export["status"] == "InProgress":
            raise HttpError(400, f"The export task is not complete yet (exportId {export_id}).")
        if export["status"] == "Fault":
            raise HttpError(400, export["error"])
        kind = REPORT_FORMATS[export["format"]]
        # Seeded by the export id, so repeated downloads serve the same bytes.
        content = deterministic_bytes(f"devexpress:report:{export_id}", export["size"], kind.magic)
        self.record_served(export_id, content)
        with self.lock:
            self.exports[export_id]["downloaded"] = True
        return file_response(content, kind.content_type, f"{export['document_name']}.{kind.extension}")

    # ---- 3. export a dashboard: the answer is the file

    @route("POST", "/api/documents/export/dashboard/{documentId}", download=True)
    def export_dashboard(self, request: Request) -> Response:
        self._authorize(request)
        document_id, document = self._document(request.params["documentId"], "dashboard")
        options, parameters = _export_body(request)
        export_format = _export_format(options, DASHBOARD_FORMATS)
        kind = _dashboard_kind(export_format, options)
        if self.dashboard_seconds > 0:
            time.sleep(self.dashboard_seconds)
        if self.fail_reports:
            raise HttpError(500, self.fail_reports)
        with self.lock:
            number = 1 + sum(1 for done in self.dashboard_exports if done["document_id"] == document_id)
            key = f"dashboard-{document_id}-{number}"
            content = deterministic_bytes(f"devexpress:{key}", self.report_size, kind.magic)
            digest = self.record_served(key, content)
            self.served_last_dashboard = digest
            self.dashboard_exports.append(
                {
                    "key": key,
                    "document_id": document_id,
                    "format": export_format,
                    "options": options,
                    "parameters": parameters,
                    "sha256": digest,
                }
            )
        return file_response(content, kind.content_type, f"{document['name']}.{kind.extension}")

    # ---- shared checks

    def _authorize(self, request: Request) -> None:
        """Every /api call needs ``Authorization: Bearer <token>`` with a live token (RFC 6750 answers)."""
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(401, DENIED, {"WWW-Authenticate": "Bearer"})
        if not self.token_is_live(token.strip()):
            raise HttpError(401, DENIED, {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def _document(self, raw_id: str, expected_type: str) -> tuple[int, dict[str, str]]:
        try:
            document_id = int(raw_id)
        except ValueError:
            raise HttpError(404, f"Document '{raw_id}' was not found.") from None
        document = self.documents.get(document_id)
        if document is None:
            raise HttpError(404, f"Document {document_id} was not found.")
        actual_type = document.get("type", "report")
        if actual_type != expected_type:
            raise HttpError(
                400,
                f"Document {document_id} ({document.get('name')}) is a {actual_type}, not a {expected_type}; "
                f"export it with /api/documents/export/{actual_type}/{document_id}.",
            )
        return document_id, document

    def _settled(self, export_id: str) -> dict[str, Any]:
        """The export's record, finished once ``generation_seconds`` have passed since it was queued.

        The outcome (Complete, or Fault when ``fail_reports`` is set) is decided the first time it is
        observed after that and then stays, like a real finished task.
        """
        with self.lock:
            export = self.exports.get(export_id)
            if export is None:
                raise HttpError(404, f"Export task {export_id} was not found.")
            generated = self.clock() - export["created_at"] >= self.generation_seconds
            if export["status"] == "InProgress" and generated:
                if self.fail_reports:
                    export["status"], export["error"] = "Fault", self.fail_reports
                else:
                    export["status"] = "Complete"
            return dict(export)


def _export_body(request: Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``{"exportOptions": {...}, "documentParameters": [...]}`` from the body, checked for shape."""
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("exportOptions"), dict):
        raise HttpError(400, "The request body must be a JSON object with an 'exportOptions' object.")
    parameters = body.get("documentParameters") or []
    if not isinstance(parameters, list) or not all(isinstance(item, dict) for item in parameters):
        raise HttpError(400, 'documentParameters must be a list of {"name", "value"} objects.')
    return body["exportOptions"], parameters


def _export_format(options: dict[str, Any], allowed: tuple[str, ...]) -> str:
    value = options.get("exportFormat")
    if not isinstance(value, str) or value.lower() not in allowed:
        choices = ", ".join(allowed)
        raise HttpError(400, f"exportOptions.exportFormat must be one of: {choices} (got {value!r}).")
    return value.lower()


def _dashboard_kind(export_format: str, options: dict[str, Any]) -> FileKind:
    if export_format == "pdf":
        return _PDF
    if export_format == "xlsx":
        return _XLSX
    image_format = options.get("format", "png")
    if not isinstance(image_format, str) or image_format.lower() not in IMAGE_FORMATS:
        choices = ", ".join(IMAGE_FORMATS)
        raise HttpError(400, f"exportOptions.format must be one of: {choices} (got {image_format!r}).")
    resolution = options.get("resolution")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)):
        raise HttpError(400, f"exportOptions.resolution must be an integer (got {resolution!r}).")
    return IMAGE_FORMATS[image_format.lower()]


def sandbox_simulator(
    *,
    port: int,
    faults: Faults,
    secret: str,
    generation_seconds: float,
    token_lifetime_seconds: float,
    fail_reports: str | None,
) -> DevExpressSimulator:
    """The simulator as ``reportrelay sandbox`` serves it: user ``api`` with the sandbox secret."""
    return DevExpressSimulator(
        port=port,
        faults=faults,
        users={"api": secret},
        generation_seconds=generation_seconds,
        token_lifetime_seconds=token_lifetime_seconds,
        fail_reports=fail_reports,
    )
