"""DevExpress Report and Dashboard Server HTTP API (seed 003).

Sign-in:   POST /oauth/token  (password grant; ``expires_in`` 1199 s, no refresh token) -> auth.py
Report:    POST /api/documents/export/report/{documentId}   -> {"exportId": "<32 hex>"}
           GET  /api/documents/export/status/{exportId}     -> {"taskStatus": ...}, or the bare value
           GET  /api/documents/export/result/{exportId}     -> the file
Dashboard: POST /api/documents/export/dashboard/{documentId} -> the file itself, no polling

The status comes in three shapes depending on the server version: ``{"taskStatus": "Complete"}``,
the bare string ``"Complete"``, or the bare enum value ``2`` (Fault=0, InProgress=1, Complete=2).
The result's headers are not documented, so the file extension comes from the requested format.
There is no API to cancel an export.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reportrelay.config import JobRequest
from reportrelay.errors import BadRequest, ProviderProtocolError
from reportrelay.providers.base import (
    Handle,
    Provider,
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

REPORT_FORMATS = ("pdf", "html", "xlsx", "docx")
DASHBOARD_FORMATS = ("pdf", "image", "xlsx")
IMAGE_FORMATS = ("png", "jpeg", "gif")

TASK_STATES = {
    "fault": ReportState.FAILED,
    "inprogress": ReportState.RUNNING,
    "complete": ReportState.READY,
    0: ReportState.FAILED,
    1: ReportState.RUNNING,
    2: ReportState.READY,
}


class DevExpressReport(BaseModel):
    """``{"document_id": 10}`` for a report, ``{"dashboard_id": 20}`` for a dashboard."""

    model_config = ConfigDict(extra="forbid")

    document_id: int | None = Field(default=None, ge=1)
    dashboard_id: int | None = Field(default=None, ge=1)
    export_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_document(self) -> DevExpressReport:
        if (self.document_id is None) == (self.dashboard_id is None):
            raise ValueError("give exactly one of 'document_id' (a report) or 'dashboard_id' (a dashboard)")
        return self


class DevExpress(Provider):
    key = "devexpress"

    @classmethod
    def validate(cls, request: JobRequest) -> None:
        report = parse_report(DevExpressReport, request)
        if report.document_id is not None:
            require_format(request, REPORT_FORMATS, "a DevExpress report")
            return
        require_format(request, DASHBOARD_FORMATS, "a DevExpress dashboard")
        image_format = report.export_options.get("format", "png")
        if request.format == "image" and image_format not in IMAGE_FORMATS:
            raise BadRequest(
                f"request.report.export_options.format: choose one of {', '.join(IMAGE_FORMATS)}"
            )

    def submit(self, request: JobRequest) -> ReportStatus:
        report = parse_report(DevExpressReport, request)
        if report.dashboard_id is not None:
            # The dashboard export answers with the file itself: fetching it is the export.
            return ReportStatus(ReportState.READY, handle={"dashboard_id": report.dashboard_id})
        self.queuing({})
        response = self.http.request(
            "POST",
            f"/api/documents/export/report/{report.document_id}",
            action="queue report export",
            json=self._export_body(request, report),
        )
        body = _json(response)
        export_id = body.get("exportId") if isinstance(body, dict) else body
        if not isinstance(export_id, str) or not export_id:
            raise ProviderProtocolError("queue report export: the server answered without an exportId")
        return ReportStatus(ReportState.PENDING, handle={"export_id": export_id})

    def lost_submission(self, request: JobRequest) -> str:
        # The HTTP API lists no exports: only the Report Server's own console shows them.
        document = (request.report or {}).get("document_id")
        return (
            f"check the Report Server's export tasks for an export of document {document} "
            f"({request.format}); the HTTP API cannot list exports"
        )

    def check(self, request: JobRequest, handle: Handle) -> ReportStatus:
        if "dashboard_id" in handle:
            return ReportStatus(ReportState.READY)
        response = self.http.request(
            "GET", f"/api/documents/export/status/{handle['export_id']}", action="check export status"
        )
        body = _json(response)
        raw = body.get("taskStatus") if isinstance(body, dict) else body
        key = raw.lower() if isinstance(raw, str) else raw
        state = TASK_STATES.get(key) if isinstance(key, str | int) and not isinstance(key, bool) else None
        if state is None:
            raise ProviderProtocolError(f"check export status: unknown task status {raw!r}")
        message = None
        if state is ReportState.FAILED:
            detail = _fault_detail(body)
            message = f"DevExpress export {handle['export_id']} ended in Fault" + (
                f": {detail}" if detail else ""
            )
        return ReportStatus(state, message=message)

    @contextmanager
    def open_result(
        self, request: JobRequest, handle: Handle, resume_from: ResumeFrom | None = None
    ) -> Iterator[ResultStream]:
        report = parse_report(DevExpressReport, request)
        if "dashboard_id" in handle:
            response = self.http.request(
                "POST",
                f"/api/documents/export/dashboard/{handle['dashboard_id']}",
                action="export dashboard",
                idempotent=True,  # a synchronous export queues nothing, so repeating it is harmless
                stream=True,
                html_ok=False,  # dashboards export as PDF, images or XLSX: an HTML page is a sign-in page
                json=self._export_body(request, report),
            )
            fallback = f"dashboard-{handle['dashboard_id']}"
        else:
            response = self.http.request(
                "GET",
                f"/api/documents/export/result/{handle['export_id']}",
                action="download export",
                stream=True,
                html_ok=request.format == "html",
                headers=range_headers(resume_from),
            )
            fallback = f"report-{report.document_id}"
        with response:
            extension = self._extension(request, report)
            filename = filename_from_response(response, f"{fallback}.{extension}")
            if "." not in filename:
                filename = f"{filename}.{extension}"
            yield streamed(response, filename)

    @staticmethod
    def _export_body(request: JobRequest, report: DevExpressReport) -> dict[str, Any]:
        return {
            "exportOptions": {**report.export_options, "exportFormat": request.format},
            "documentParameters": [
                {"name": name, "value": value} for name, value in request.parameters.items()
            ],
        }

    @staticmethod
    def _extension(request: JobRequest, report: DevExpressReport) -> str:
        if request.format == "image":
            return str(report.export_options.get("format", "png"))
        return request.format


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        method, path = response.request.method, response.request.path_url.split("?")[0]
        raise ProviderProtocolError(f"{method} {path} answered with non-JSON content") from None


def _fault_detail(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for key in ("errorMessage", "message", "error", "faultMessage"):
        if isinstance(body.get(key), str) and body[key]:
            return body[key]
    return None
