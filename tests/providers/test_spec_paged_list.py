"""A status list served in pages (``check.entry.pages``) and a job not listed yet (``check.entry.absent``),
with a spec written here for the Clinical One simulator's download list: limit and offset on every page,
the offset advanced by what came back, ``hasMore`` as text, and other runs of the report never taken."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reportrelay.config import Connections, JobRequest, SecretResolver
from reportrelay.providers import open_provider
from reportrelay.providers.base import ReportState
from reportrelay.providers.declarative import DeclarativeProvider, declarative_class
from reportrelay.providers.spec import parse_spec
from reportrelay_cli.sandbox.clinical_one import DEFAULT_STUDY_ID, SUBJECT_DATA_EXTRACT, ClinicalOneSimulator

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


@pytest.fixture
def sim() -> Iterator[ClinicalOneSimulator]:
    with ClinicalOneSimulator(
        users={"api": "pw"}, clients={"reportrelay": "secret"}, generation_seconds=0, report_size=1024
    ) as simulator:
        yield simulator


def provider(sim: ClinicalOneSimulator, spec: dict[str, Any] = SPEC) -> DeclarativeProvider:
    body = {
        "provider": "clinical_one",
        "base_url": sim.base_url,
        "auth": {
            "type": "oauth_password",
            "token_url": f"{sim.base_url}/oauth2/v1/token",
            "client_id": "reportrelay",
            "client_secret": {"env": "C1_SECRET"},
            "client_auth": "basic",
            "username": "api",
            "password": {"env": "C1_PASSWORD"},
        },
    }
    connection = Connections.from_document({"connections": {"c1": body}}).get("c1")
    cls = declarative_class(parse_spec(spec, "test spec"))
    secrets = SecretResolver({"C1_SECRET": "secret", "C1_PASSWORD": "pw"})
    opened = open_provider(connection, secrets, adapter=cls)
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
    sim.max_page_size = 2
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
    sim: ClinicalOneSimulator,
) -> None:
    # given a one-page list of finished runs that holds another run but not yet the job's
    sim.list_only_finished = True
    sim.generation_seconds = 0.5
    sim.add_run()
    adapter = provider(sim)
    handle = dict(adapter.submit(job()).handle or {})
    # when it is checked before and after generation
    before = adapter.check(job(), handle)
    time.sleep(0.6)
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
