"""A spec's ``download.transform``: the JSON-records transform (reportrelay.transforms.json_records) used by
a spec written here for the MyReports simulator, beside the hand-written MyReports adapter, which uses the
same transform. The same document comes out as the same CSV, is passed through byte for byte as JSON, and
one that says it is unfinished or failed is never stored.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from reportrelay.config import Connections, SecretResolver
from reportrelay.errors import DownloadInterrupted, ReportGenerationFailed
from reportrelay.providers import open_provider
from reportrelay.providers.declarative import DeclarativeProvider, declarative_class
from reportrelay.providers.spec import parse_spec
from tests.providers.test_myreports import SECRETS, adapter, csv_rows, download, job, sim, until_finished

__all__ = ["sim"]  # the simulator fixture, as test_myreports starts it

RESULTS = "/api/v1.0/workspaces/{report.workspace_id}/reports/{report.report_id}/results/{job.id}"
SPEC: dict[str, Any] = {
    "spec_version": 1,
    "key": "records_vendor",
    "title": "Records",
    "auth": ["bearer"],
    "request": {
        "formats": {"json": "json", "csv": "csv"},
        "report": {
            "workspace_id": {"type": "string", "required": True},
            "report_id": {"type": "string", "required": True},
            "date_filter": {"type": "object", "required": True},
        },
    },
    "submit": {
        "path": "/api/v1.0/workspaces/{report.workspace_id}/reports/{report.report_id}/requests",
        "body": {
            "reportId": "{report.report_id}",
            "dateFilter": {"presetName": "{report.date_filter.preset}"},
            "additionalConditions": [],
        },
        "id": {"json": "data.requestId"},
    },
    "check": {
        "path": RESULTS,
        "status": "data.status",
        "states": {"Complete": "READY", "Failed": "FAILED", "*": "RUNNING"},
        "message": "data.statusMessage",
    },
    "download": {
        "source": "call",
        "call": {"path": f"{RESULTS}/data", "accept": "application/json"},
        "filename": "records-{job.id}.json",
        "transform": {
            "name": "json_records",
            "formats": {"json": "json", "csv": "csv"},
            "records": "data",
            "columns": "request.displayFields.item.fieldName",
            "status": "status",
            "message": "statusMessage",
            "states": {"1": "READY", "Error": "FAILED", "*": "RUNNING"},
        },
    },
}


@pytest.fixture
def from_spec(sim) -> DeclarativeProvider:
    body = {
        "provider": "myreports",
        "base_url": sim.base_url,
        "auth": {"type": "bearer", "token": {"env": "MR_STATIC_TOKEN"}},
    }
    connection = Connections.from_document({"connections": {"mr": body}}).get("mr")
    cls = declarative_class(parse_spec(SPEC, "test spec"))
    provider = open_provider(connection, SecretResolver(SECRETS), adapter=cls)
    assert isinstance(provider, DeclarativeProvider)
    return provider


def test_a_spec_and_the_hand_written_adapter_write_the_same_csv(sim, from_spec):
    # given a finished report queued through the spec
    handle, _ = until_finished(from_spec, job("csv"))
    # when its document is fetched as CSV through the spec, and through the adapter (its handle's name)
    result, content = download(from_spec, job("csv"), handle)
    _, expected = download(adapter(sim), job("csv"), {"request_id": handle["id"]})
    # then the CSV is the same, header (the display fields) first, under a .csv name
    assert content == expected and len(csv_rows(content)) == 1 + 5
    assert (result.filename, result.content_type) == (f"records-{handle['id']}.csv", "text/csv")


def test_json_is_passed_through_byte_for_byte(sim, from_spec):
    handle, _ = until_finished(from_spec, job("json"))
    result, content = download(from_spec, job("json"), handle)
    assert hashlib.sha256(content).hexdigest() == sim.served[handle["id"]]
    assert result.filename == f"records-{handle['id']}.json"


@pytest.mark.parametrize("format", ["json", "csv"])
def test_a_document_that_says_it_is_unfinished_raises_before_the_stream_ends(sim, from_spec, format):
    handle, _ = until_finished(from_spec, job(format))
    sim.incomplete_downloads_next = 1
    with from_spec.open_result(job(format), handle) as result, pytest.raises(DownloadInterrupted) as raised:
        for _ in result.chunks:
            pass
    assert "are not complete (status 0 (Report processing)); nothing was stored" in str(raised.value)
    _, content = download(from_spec, job(format), handle)  # the next download is whole
    assert content


def test_a_document_that_says_it_failed_fails_with_its_words(sim, from_spec):
    sim.data_status = ("Error", "Query failed: database offline")
    handle, _ = until_finished(from_spec, job("csv"))
    with from_spec.open_result(job("csv"), handle) as result, pytest.raises(ReportGenerationFailed) as raised:
        for _ in result.chunks:
            pass
    assert "say status 'Error' (Query failed: database offline)" in str(raised.value)
