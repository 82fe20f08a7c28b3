"""A status list served in pages (``check.entry.pages``) and a job not listed yet (``check.entry.absent``),
with a spec written here for the Clinical One simulator's download list: limit and offset on every page,
the offset advanced by what came back, ``hasMore`` as text, and other runs of the report never taken; and,
on the same service, an id read at either of two paths, an entry with no status, a study that is null."""

from __future__ import annotations

import hashlib
from typing import Any

from reportrelay.config import JobRequest
from reportrelay.providers import open_provider
from reportrelay.providers.base import ReportState
from reportrelay.providers.declarative import DeclarativeProvider, declarative_class
from reportrelay.providers.spec import parse_spec
from reportrelay_cli.sandbox.clinical_one import (
    DEFAULT_STUDY_ID,
    HSL_REPORT,
    SUBJECT_DATA_EXTRACT,
    ClinicalOneSimulator,
)
from tests.clock import SkippingClock
from tests.providers.test_clinical_one import SECRETS, connection, sim

__all__ = ["sim"]  # the simulator fixture, as test_clinical_one starts it

API = "/ec-reporting-svc/rest"
STUDY = {"studyId": "{report.study_id}", "mode": "{report.mode}"}
SPEC: dict[str, Any] = {
    "spec_version": 1,
    "key": "paged_runs",
    "title": "Paged Runs",
    "auth": ["oauth_password"],
    "request": {
        "formats": {"csv": "CSV"},
        "report": {
            "report_id": {"type": "string", "required": True},
            "study_id": {"type": "string", "required": True},
            "mode": {"type": "string", "required": True},
        },
    },
    "submit": {
        "path": f"{API}/v1.0/reports",
        "query": {**STUDY, "format": "{format}", "reportid": "{report.report_id}"},
        "body": {"fieldSpecsList": [], "extFieldSpecsList": []},
        "id": {"json": "id"},
    },
    "check": {
        "path": f"{API}/v2.0/reportmetadata/downloadList",
        "query": {**STUDY, "rptId": "{report.report_id}"},
        "entry": {
            "items": "result.reportRunStatus",
            "key": "downloadId",
            "pages": {"has_more": "result.hasMore"},
            "absent": {"state": "PENDING", "message": "run {job.id} is not in the download list yet"},
        },
        "status": "status",
        "states": {
            "SUBMITTED": "PENDING",
            "IN PROGRESS": "RUNNING",
            "COMPLETED": "READY",
            "FAILED": "FAILED",
        },
        "message": "reason",
    },
    "download": {
        "source": "call",
        "call": {"path": f"{API}/v2.0/reports/download", "query": {**STUDY, "id": "{job.id}"}},
        "filename": "report-{job.id}.csv",
    },
}


def provider(sim: ClinicalOneSimulator, spec: dict[str, Any] = SPEC) -> DeclarativeProvider:
    """The spec's adapter on test_clinical_one's connection to the simulator."""
    cls = declarative_class(parse_spec(spec, "test spec"))
    opened = open_provider(connection(sim), SECRETS, adapter=cls)
    assert isinstance(opened, DeclarativeProvider)
    return opened


def job() -> JobRequest:
    report = {"report_id": SUBJECT_DATA_EXTRACT, "study_id": DEFAULT_STUDY_ID, "mode": "active"}
    return JobRequest.model_validate({"connection": "c1", "report": report, "format": "csv"})


def list_pages(sim: ClinicalOneSimulator) -> list[tuple[str, str]]:
    calls = sim.calls("GET", f"{API}/v2.0/reportmetadata/downloadList")
    return [(call.query["offset"], call.query["limit"]) for call in calls]


def test_pages_are_read_by_what_came_back_until_the_jobs_entry_is_found(sim: ClinicalOneSimulator) -> None:
    # given a server that serves at most two entries a page, and five newer runs of the same report
    sim.max_page_size, sim.generation_seconds = 2, 0
    adapter = provider(sim)
    handle = dict(adapter.submit(job()).handle or {})
    newer = [sim.add_run() for _ in range(5)]
    # when the job is checked and its file downloaded
    status = adapter.check(job(), handle)
    with adapter.open_result(job(), handle) as result:
        content = b"".join(result.chunks)
    # then the offsets were 0, 2, 4 with the page size asked for each time, and its own run was taken
    assert status.state is ReportState.READY
    assert list_pages(sim) == [("0", "50"), ("2", "50"), ("4", "50")]
    assert handle["id"] not in newer
    assert hashlib.sha256(content).hexdigest() == sim.served[handle["id"]]


def test_has_more_false_as_text_ends_the_list_and_an_unlisted_job_is_pending(
    sim: ClinicalOneSimulator, vendor_clock: SkippingClock
) -> None:
    # given a one-page list of finished runs that holds another run but not yet the job's
    sim.list_only_finished = True
    sim.generation_seconds = 0.5
    sim.add_run()
    adapter = provider(sim)
    handle = dict(adapter.submit(job()).handle or {})
    # when it is checked before and after generation
    before = adapter.check(job(), handle)
    vendor_clock.advance(sim.generation_seconds)
    after = adapter.check(job(), handle)
    # then one page was read at first ("false" is not more), the job waited saying why, and was then ready
    assert before.state is ReportState.PENDING
    assert before.message == f"run {handle['id']} is not in the download list yet"
    assert list_pages(sim)[0] == ("0", "50") and len(list_pages(sim)) == 2
    assert after.state is ReportState.READY


def test_a_page_shorter_than_asked_for_ends_a_list_without_has_more(sim: ClinicalOneSimulator) -> None:
    # given a spec that does not read hasMore, asking three entries a page, and four older runs
    spec = {**SPEC, "check": {**SPEC["check"], "entry": {**SPEC["check"]["entry"], "pages": {"size": 3}}}}
    for _ in range(4):
        sim.add_run()
    sim.list_only_finished = True
    sim.generation_seconds = 60
    adapter = provider(sim, spec)
    handle = dict(adapter.submit(job()).handle or {})
    # when the job (not listed) is checked
    status = adapter.check(job(), handle)
    # then a full page led to the next, and the short one ended the list
    assert status.state is ReportState.PENDING
    assert list_pages(sim) == [("0", "3"), ("3", "3")]


def test_an_id_in_either_envelope_and_an_entry_with_no_status_at_all(sim: ClinicalOneSimulator) -> None:
    # given a service that wraps its ExecutionLog and lists ready runs with no status field, and a spec
    # that reads the id at either path and takes an entry without status as ready
    sim.wrap_execution_log, sim.status_field, sim.list_only_finished = True, None, True
    sim.generation_seconds = 0
    check = {**SPEC["check"], "no_status": "READY"}
    spec = {**SPEC, "submit": {**SPEC["submit"], "id": {"json": ["result.id", "id"]}}, "check": check}
    adapter = provider(sim, spec)
    # when a job is queued and checked
    handle = dict(adapter.submit(job()).handle or {})
    status = adapter.check(job(), handle)
    # then the id came from the wrapped log, and being listed without a status is ready
    (run,) = sim.started_runs
    assert handle["id"] == run["id"] and status.state is ReportState.READY


def test_a_tenant_report_of_no_study_sends_none(sim: ClinicalOneSimulator) -> None:
    # given a spec whose study may be null, and a service that wants no studyId for a tenant report
    sim.tenant_study_id = "omit"  # type: ignore[assignment]
    report = {**SPEC["request"]["report"], "study_id": {"type": "string", "required": True, "nullable": True}}
    adapter = provider(sim, {**SPEC, "request": {**SPEC["request"], "report": report}})
    request = JobRequest.model_validate(
        {
            "connection": "c1",
            "report": {"report_id": HSL_REPORT, "study_id": None, "mode": "active"},
            "format": "csv",
        }
    )
    # when it is validated, queued and checked
    adapter.validate(request)
    handle = dict(adapter.submit(request).handle or {})
    status = adapter.check(request, handle)
    # then no call named a study, and the run was found
    calls = sim.calls("POST", f"{API}/v1.0/reports") + sim.calls(
        "GET", f"{API}/v2.0/reportmetadata/downloadList"
    )
    assert all("studyId" not in call.query for call in calls)
    assert status.state in (ReportState.PENDING, ReportState.RUNNING, ReportState.READY)


def test_values_kept_from_the_queue_answer_and_the_entry_name_the_download(sim: ClinicalOneSimulator) -> None:
    # given a service whose download insists on the run's kickoff time and report name, and a spec that
    # keeps the kickoff from the queue call's answer and the name from the ready entry
    sim.require_run_details, sim.generation_seconds = True, 0
    submit = {**SPEC["submit"], "keep": {"kickoff": ["rptKickoffDatetime", "result.rptKickoffDatetime"]}}
    check = {**SPEC["check"], "keep": {"report_name": "reportName"}}
    query = {**SPEC["download"]["call"]["query"], "reportName": "{job.report_name}"}
    query["rptKickoffDatetime"] = "{job.kickoff}"
    download = {**SPEC["download"], "call": {**SPEC["download"]["call"], "query": query}}
    adapter = provider(sim, {**SPEC, "submit": submit, "check": check, "download": download})
    # when a job is queued, checked and downloaded
    handle = dict(adapter.submit(job()).handle or {})
    handle |= adapter.check(job(), handle).handle or {}
    with adapter.open_result(job(), handle) as result:
        content = b"".join(result.chunks)
    # then the handle kept both, and the download named the run exactly as the service had
    (run,) = sim.started_runs
    assert handle == {"id": run["id"], "kickoff": run["kickoff"], "report_name": "Subject Data Extract"}
    assert hashlib.sha256(content).hexdigest() == sim.served[run["id"]]
