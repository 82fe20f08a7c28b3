"""Torus tenant merged MI reports (seed 000).

Find:     GET  /api/tenant/mergedreport/list/get/{tenantId}?$filter=tolower('{name}') eq tolower(Name)
          -> ``[{"id": 1087, "name": "MI_Report", "tenantId": 69, ...}]``
Queue:    POST /api/tenant/mergedreport/queuefordownload   header ``TorusTenantId: {tenantId}``
          body ``{"reportId": 1087, "reportType": 1}`` ("reportType is always 1") -> nothing usable
Poll:     GET  /api/tenant/report/queue/list/get?$filter=DateQueued gt datetime'YYYY-MM-DDTHH:MM'
          -> the signed-in user's downloads (the last 7 days unless filtered):
          ``[{"scheduledTaskRunNowId", "name", "tenantId", "status", "progress": "45%", "message",
          "dateQueued", "fileGuid", ...}]``; status is Pending, Running, Finished, Cancelled or Error
Download: GET  /api/file/download/report/{fileGuid}        -> the Excel file

Quirks handled here:
- A report is named by ``name`` (an OData string literal: single quotes, a quote inside doubled, the
  whole filter URL-encoded so ``&`` and ``"`` survive) or by ``report_id`` (looked up in the unfiltered
  list, because queue entries carry the report's name, not its id).
- The queue call answers with no id, so the adapter finds its own run in the queue: it lists the queue
  before queueing (the *snapshot*: every run of this report that already exists, finished or not, is
  never ours), queues once, and lists again. A new run of this report is ours only once a claim in the
  shared claim store says so (first writer wins), so two jobs queueing the same report at once never
  take the same run. A run that is not listed yet is looked for again by ``check``; one that never
  appears fails the job after ``queue_entry_grace_seconds``.
- Once the report is queued nothing in ``submit`` may fail in a way the state machine retries, since a
  retried submit would queue the report again: listing or claiming problems leave the run to ``check``.
  A queue call answered with a 500 or not at all may have queued the report: the job fails, saying so.
- The queue filter takes minute precision and the dates carry no time zone. Our clock and the server's
  may disagree, so bounds come from the server's own dates: one minute before the newest run in the
  snapshot while looking for our run, then one minute before our run's own ``dateQueued``.
- Submitted exactly once: the snapshot and the claim owner are the submit intent's hint, recorded
  before the queue call, so a run of the submit step that died after it is found again by
  ``find_submitted`` exactly as ``submit`` would have found it.
- The merged-report list, the queue list and the download are plain; only the queue call needs the
  ``TorusTenantId`` header (the tenant id is in the list path). Torus has no cancel call.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from reportrelay.claims import ClaimsUnavailable
from reportrelay.config import JobRequest
from reportrelay.errors import (
    BadRequest,
    ConfigurationError,
    ProviderProtocolError,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ReportRelayError,
)
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

REPORT_FORMATS = ("xlsx",)
REPORT_TYPE_MERGED = 1
REPORT_LIST_PATH = "/api/tenant/mergedreport/list/get/{tenant_id}"
QUEUE_PATH = "/api/tenant/mergedreport/queuefordownload"
QUEUE_LIST_PATH = "/api/tenant/report/queue/list/get"
DOWNLOAD_PATH = "/api/file/download/report/{file_guid}"

QUEUE_STATES = {
    "pending": ReportState.PENDING,
    "running": ReportState.RUNNING,
    "finished": ReportState.READY,
    "cancelled": ReportState.CANCELLED,
    "canceled": ReportState.CANCELLED,
    "error": ReportState.FAILED,
}

_DATE_MINUTE = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})")
_PERCENT = re.compile(r"\s*(\d+(?:[.,]\d+)?)\s*%?\s*")


class TorusReport(BaseModel):
    """``{"name": "Monthly Sales & Returns"}`` or ``{"report_id": 1087}``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=256)
    report_id: StrictInt | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_report(self) -> TorusReport:
        if (self.name is None) == (self.report_id is None):
            raise ValueError("give exactly one of 'name' (the merged report's name) or 'report_id' (its id)")
        if self.name is not None and not self.name.strip():
            raise ValueError("'name' must not be blank")
        return self


class TorusSettings(ProviderSettings):
    """The connection's Torus fields: ``tenant_id`` (required) and how long a queued run may stay unlisted."""

    tenant_id: StrictInt = Field(ge=1, description="the Torus tenant the merged reports belong to")
    queue_entry_grace_seconds: StrictInt = Field(
        default=600,
        ge=10,
        le=24 * 3600,
        description="fail when a queued report has not appeared in the download queue after this long",
    )


@dataclass(frozen=True)
class QueueEntry:
    """One run in the download queue, read liberally (field names in any case)."""

    run_id: Any
    name: str
    tenant_id: int | None
    status: str
    progress: Any
    message: str | None
    date_queued: str | None
    file_guid: str | None

    @classmethod
    def parse(cls, raw: Any) -> QueueEntry | None:
        """The entry, or None for an item without a run id (nothing could ever be matched to it)."""
        if not isinstance(raw, Mapping):
            return None
        fields = {str(key).lower(): value for key, value in raw.items()}
        run_id = fields.get("scheduledtaskrunnowid")
        if run_id is None or isinstance(run_id, bool):
            return None
        return cls(
            run_id=run_id,
            name=str(fields.get("name") or ""),
            tenant_id=_integer(fields.get("tenantid")),
            status=str(fields.get("status") or ""),
            progress=fields.get("progress"),
            message=_text(fields.get("message")),
            date_queued=_text(fields.get("datequeued")),
            file_guid=_text(fields.get("fileguid")),
        )

    @property
    def age_order(self) -> tuple[str, int, str]:
        """Oldest first: by dateQueued (ISO text compares in time order), then by id."""
        number = _integer(self.run_id)
        return (self.date_queued or "", number if number is not None else -1, str(self.run_id))


class Torus(Provider):
    key = "torus"
    settings_model = TorusSettings
    settings: TorusSettings

    _clock = staticmethod(time.time)

    @classmethod
    def validate(cls, request: JobRequest) -> None:
        parse_report(TorusReport, request)
        require_format(request, REPORT_FORMATS, "a Torus merged report (Torus delivers Excel)")
        if request.parameters:
            names = ", ".join(sorted(request.parameters))
            raise BadRequest(
                "request.parameters: a Torus merged report takes no parameters (the queue call sends only "
                f"the report id); remove {names}"
            )

    # ---- submit: snapshot, queue once, find our run

    def submit(self, request: JobRequest) -> ReportStatus:
        report_id, report_name = self._find_report(parse_report(TorusReport, request))
        snapshot = self._queue_list(since=None)
        handle: Handle = {
            "report_id": report_id,
            "report_name": report_name,
            "known": sorted(str(entry.run_id) for entry in snapshot if self._same_report(entry, report_name)),
            "since": _newest_minute_before(snapshot),
            "owner": uuid.uuid4().hex,
        }
        self.queuing(handle)  # the snapshot and owner let a later run of this step find the run exactly
        try:
            self.http.request(
                "POST",
                QUEUE_PATH,
                action="queue merged report",
                headers={"TorusTenantId": str(self.settings.tenant_id)},
                json={"reportId": report_id, "reportType": REPORT_TYPE_MERGED},
            )
        except (ProviderServerError, ProviderTimeout) as error:
            # Not retried (ProviderHttp and the state machine agree): Torus may have queued it anyway.
            raise type(error)(
                f"{error}; Torus may have queued the report all the same, so reportrelay does not queue it "
                "again: look for the run in Torus's download queue before retrying the job"
            ) from None
        handle["queued_at"] = self._clock()
        # The report is queued. From here on, failing would make the state machine queue it again.
        try:
            entry = self._resolve(handle)
        except ReportRelayError:
            entry = None
        if entry is None:
            return ReportStatus(ReportState.PENDING, message=self._unlisted_message(handle), handle=handle)
        return self._status(entry, handle, {**handle, **self._ownership(entry, handle)})

    def find_submitted(self, request: JobRequest, hint: Handle, since: float) -> ReportStatus | None:
        """The run an earlier run of this submit queued: found as ``submit`` finds its own (same snapshot,
        same owner, so a run it had already claimed is claimed again); not listed yet, ``check`` goes on
        looking for it until ``queue_entry_grace_seconds`` have passed."""
        handle = {**hint, "queued_at": since}
        entry = self._resolve(handle)
        if entry is None:
            return ReportStatus(ReportState.PENDING, message=self._unlisted_message(handle), handle=handle)
        return self._status(entry, handle, {**handle, **self._ownership(entry, handle)})

    def lost_submission(self, request: JobRequest) -> str:
        return "look for a new run of the merged report in Torus's download queue"

    def check(self, request: JobRequest, handle: Handle) -> ReportStatus:
        if "run_id" not in handle:
            return self._check_unresolved(handle)
        entries = self._queue_list(since=handle.get("since"))
        entry = next((entry for entry in entries if str(entry.run_id) == str(handle["run_id"])), None)
        if entry is None:
            raise ProviderProtocolError(
                f"Torus run {handle['run_id']} of merged report '{handle['report_name']}' is no longer in "
                "the download queue; it may have been deleted"
            )
        return self._status(entry, handle, {})

    @contextmanager
    def open_result(
        self, request: JobRequest, handle: Handle, resume_from: ResumeFrom | None = None
    ) -> Iterator[ResultStream]:
        file_guid = handle.get("file_guid")
        if not file_guid:
            raise ProviderProtocolError("download report file: the job has no Torus fileGuid yet")
        response = self.http.request(
            "GET",
            DOWNLOAD_PATH.format(file_guid=quote(str(file_guid), safe="")),
            action="download report file",
            stream=True,
            html_ok=False,  # merged MI reports are workbooks
            headers=range_headers(resume_from),
        )
        with response:
            filename = filename_from_response(response, f"{handle.get('report_name') or 'report'}.xlsx")
            if "." not in filename:
                filename = f"{filename}.xlsx"
            yield streamed(response, filename)

    # ---- finding the report

    def _find_report(self, report: TorusReport) -> tuple[int, str]:
        """The merged report's id and name (the queue lists runs by name)."""
        tenant = self.settings.tenant_id
        path = REPORT_LIST_PATH.format(tenant_id=tenant)
        if report.name is not None:
            odata = f"tolower({_odata_string(report.name)}) eq tolower(Name)"
            response = self.http.request(
                "GET", f"{path}?$filter={quote(odata, safe='')}", action="find merged report"
            )
            # Checked here too: a server that ignored the filter would answer with every report.
            found = [item for item in _merged_reports(response) if _fold(item[1]) == _fold(report.name)]
            wanted = f"named '{report.name}'"
        else:
            response = self.http.request("GET", path, action="find merged report")
            found = [item for item in _merged_reports(response) if item[0] == report.report_id]
            wanted = f"with id {report.report_id}"
        if not found:
            raise ProviderRejected(f"Torus tenant {tenant} has no merged report {wanted}")
        if len(found) > 1:
            ids = ", ".join(str(report_id) for report_id, _ in found)
            raise ProviderRejected(
                f"Torus tenant {tenant} has several merged reports {wanted} (ids {ids}); ask for one by "
                "report_id"
            )
        return found[0]

    # ---- finding our run in the queue

    def _check_unresolved(self, handle: Handle) -> ReportStatus:
        try:
            entry = self._resolve(handle)
        except ClaimsUnavailable:
            entry = None  # nothing is decided yet; the next check asks again
        if entry is not None:
            return self._status(entry, handle, self._ownership(entry, handle))
        waited = self._clock() - float(handle.get("queued_at") or 0)
        if waited > self.settings.queue_entry_grace_seconds:
            raise ProviderProtocolError(
                f"Torus accepted the queue call for merged report {handle['report_id']} "
                f"'{handle['report_name']}', but no new run of it appeared in the download queue within "
                f"{self.settings.queue_entry_grace_seconds} seconds"
            )
        return ReportStatus(ReportState.PENDING, message=self._unlisted_message(handle))

    def _resolve(self, handle: Handle) -> QueueEntry | None:
        """Our run: a run of this report that the snapshot did not have, claimed by this submission."""
        known = set(handle["known"])
        candidates = sorted(
            (
                entry
                for entry in self._queue_list(since=handle.get("since"))
                if self._same_report(entry, handle["report_name"]) and str(entry.run_id) not in known
            ),
            key=lambda entry: entry.age_order,
        )
        if not candidates:
            return None
        claims = self.claims
        if claims is None:
            if len(candidates) == 1:
                return candidates[0]
            ids = ", ".join(str(entry.run_id) for entry in candidates)
            raise ConfigurationError(
                f"several new Torus runs of '{handle['report_name']}' appeared at once (ids {ids}) and no "
                "claim store is configured (REPORTRELAY_CLAIMS_TABLE) to tell which one this job queued"
            )
        # Oldest first: an older run is a candidate for fewer jobs, so taking it never starves another.
        namespace = self._claim_namespace()
        for entry in candidates:
            if claims.claim(namespace, str(entry.run_id), handle["owner"]):
                return entry
        return None

    def _same_report(self, entry: QueueEntry, report_name: str) -> bool:
        tenant_matches = entry.tenant_id is None or entry.tenant_id == self.settings.tenant_id
        return tenant_matches and _fold(entry.name) == _fold(report_name)

    def _ownership(self, entry: QueueEntry, handle: Handle) -> Handle:
        """The handle fields that pin the job to its run, and the tightest safe bound for later polls."""
        return {"run_id": entry.run_id, "since": _minute_before(entry.date_queued) or handle.get("since")}

    def _claim_namespace(self) -> str:
        host = urlsplit(self.connection.base_url).netloc.lower()
        return f"torus:{host}:tenant-{self.settings.tenant_id}:run"

    # ---- reading the queue

    def _queue_list(self, since: str | None) -> list[QueueEntry]:
        path = QUEUE_LIST_PATH
        if since:
            path += "?$filter=" + quote(f"DateQueued gt datetime'{since}'", safe="")
        response = self.http.request("GET", path, action="list download queue")
        entries = (QueueEntry.parse(item) for item in _items(response, "list download queue"))
        return [entry for entry in entries if entry is not None]

    def _status(self, entry: QueueEntry, handle: Handle, update: Handle) -> ReportStatus:
        """The run's status as a ReportStatus; ``update`` gathers the handle fields to keep."""
        state = QUEUE_STATES.get(entry.status.strip().lower())
        run = f"Torus run {entry.run_id} of merged report '{handle['report_name']}'"
        if state is None:
            raise ProviderProtocolError(f"list download queue: {run} has an unknown status {entry.status!r}")
        progress = _percent(entry.progress)
        message = entry.message
        if state is ReportState.READY:
            if not entry.file_guid:
                state = ReportState.FAILED
                message = f"{run} is Finished but has no fileGuid to download" + _quoted(entry.message)
            else:
                update = {**update, "file_guid": entry.file_guid}
                progress = 100.0
        elif state is ReportState.FAILED:
            message = f"{run} ended in Error" + _quoted(entry.message)
        elif state is ReportState.CANCELLED:
            message = f"{run} was cancelled" + _quoted(entry.message)
        return ReportStatus(state, progress=progress, message=message, handle=update or None)

    @staticmethod
    def _unlisted_message(handle: Handle) -> str:
        return f"queued merged report '{handle['report_name']}'; waiting for its run to appear in the queue"


# ---- helpers


def _odata_string(value: str) -> str:
    """An OData string literal: single quotes around it, a single quote inside doubled."""
    return "'" + value.replace("'", "''") + "'"


def _fold(name: str) -> str:
    return name.strip().lower()


def _json(response: Any, action: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProviderProtocolError(f"{action}: the answer is not JSON") from None


def _items(response: Any, action: str) -> list[Any]:
    """A JSON array, or the ``value`` array of an OData envelope."""
    body = _json(response, action)
    if isinstance(body, Mapping) and isinstance(body.get("value"), list):
        body = body["value"]
    if not isinstance(body, list):
        raise ProviderProtocolError(f"{action}: expected a JSON array, got {type(body).__name__}")
    return body


def _merged_reports(response: Any) -> list[tuple[int, str]]:
    """``(id, name)`` of every merged report listed that is not deleted."""
    found = []
    for item in _items(response, "find merged report"):
        if not isinstance(item, Mapping):
            continue
        fields = {str(key).lower(): value for key, value in item.items()}
        report_id = _integer(fields.get("id"))
        if report_id is not None and fields.get("isdeleted") is not True:
            found.append((report_id, str(fields.get("name") or "")))
    return found


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _quoted(words: str | None) -> str:
    return f": {words}" if words else ""


def _percent(value: Any) -> float | None:
    """``"45%"`` -> 45.0; numbers as they are; anything else -> None. Clamped to 0..100."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and (found := _PERCENT.fullmatch(value)):
        number = float(found.group(1).replace(",", "."))
    else:
        return None
    return min(100.0, max(0.0, number))


def _minute_of(date_queued: str | None) -> datetime | None:
    """The minute a server date falls in, read as the server wrote it (no time zone is assumed)."""
    found = _DATE_MINUTE.match(date_queued or "")
    if not found:
        return None
    try:
        return datetime.strptime(f"{found.group(1)}T{found.group(2)}", "%Y-%m-%dT%H:%M")
    except ValueError:
        return None


def _format_minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def _minute_before(date_queued: str | None) -> str | None:
    """A ``gt`` bound that still includes this date: its minute, less one (minute precision, no equality)."""
    minute = _minute_of(date_queued)
    return _format_minute(minute - timedelta(minutes=1)) if minute else None


def _newest_minute_before(entries: list[QueueEntry]) -> str | None:
    """A bound every run queued after the snapshot passes: one minute before its newest run.

    None (no filter: the server's default 7 days) when the snapshot has no dated run.
    """
    minutes = [minute for entry in entries if (minute := _minute_of(entry.date_queued))]
    return _format_minute(max(minutes) - timedelta(minutes=1)) if minutes else None
