"""DevExpress runs from providers/specs/devexpress.json: the registry's adapter is the spec's, its report
exports keep the handle jobs in flight carry (``export_id``), and its dashboards are the spec's
``dashboard_id`` variant, a synchronous export whose answer is the file (nothing queued, nothing polled).

The adapter's own behaviour (status forms, faults, options, file names, throttling, deadlines) is tested
in test_devexpress.py and tests/workflow/test_devexpress_workflow.py, unchanged from the hand-written one.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from reportrelay.config import Connections, JobRequest, SecretResolver
from reportrelay.errors import BadRequest
from reportrelay.providers import open_provider, provider_class
from reportrelay.providers.base import ReportState
from reportrelay.providers.declarative import DeclarativeProvider, packaged_provider
from reportrelay.providers.devexpress import DevExpress
from reportrelay.providers.spec import packaged_spec
from tests.conftest import DX_PASSWORD, devexpress_connection


@pytest.fixture
def provider(devexpress_sim) -> DeclarativeProvider:
    connection = Connections.from_document(
        {"connections": {"dx": devexpress_connection(devexpress_sim.base_url)}}
    ).get("dx")
    opened = open_provider(connection, SecretResolver(environ={"TEST_DX_PASSWORD": DX_PASSWORD}))
    assert isinstance(opened, DeclarativeProvider)
    return opened


def request(**overrides: Any) -> JobRequest:
    body = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf", **overrides}
    return JobRequest.model_validate(body)


def test_the_registry_runs_devexpress_from_its_spec():
    # the module name other code imports is the very class the registry builds from the spec
    assert provider_class("devexpress") is packaged_provider("devexpress") is DevExpress


def test_a_report_export_keeps_the_handle_field_jobs_in_flight_carry(devexpress_sim, provider):
    submitted = provider.submit(request())
    (export_id,) = devexpress_sim.exports
    assert submitted.handle == {"export_id": export_id}
    assert provider.check(request(), {"export_id": export_id}).state is ReportState.RUNNING


def test_a_dashboard_is_exported_by_the_download_call_alone(devexpress_sim, provider):
    # given a dashboard job, with image options and a parameter
    job = request(report={"dashboard_id": 20, "export_options": {"format": "png"}}, format="image",
                  parameters={"Year": 2025})  # fmt: skip
    # when it is submitted, checked and fetched
    submitted = provider.submit(job)
    checked = provider.check(job, submitted.handle)
    assert devexpress_sim.dashboard_exports == []  # nothing is exported before the fetch
    with provider.open_result(job, submitted.handle) as result:
        content = b"".join(result.chunks)
    # then it was ready at once, nothing was queued or polled, and the file is the dashboard's export
    assert (submitted.state, checked.state) == (ReportState.READY, ReportState.READY)
    assert devexpress_sim.exports == {}
    assert devexpress_sim.calls("GET", "/api/documents/export/status/{id}") == []
    (export,) = devexpress_sim.dashboard_exports
    assert export["format"] == "image" and export["options"]["format"] == "png"
    assert export["parameters"] == [{"name": "Year", "value": 2025}]
    assert (result.filename, result.content_type) == ("Operations.png", "image/png")
    assert hashlib.sha256(content).hexdigest() == devexpress_sim.served_last_dashboard


def test_a_dashboard_file_without_a_name_takes_the_image_format_as_extension_png_by_default():
    # the fallback name when the server gives none: the variant's extension rules
    download = packaged_spec("devexpress").for_report({"dashboard_id": 20}).download
    assert download.filename == "dashboard-{report.dashboard_id}"
    assert download.extensions == {"image": "{report.export_options.format|png}"}


@pytest.mark.parametrize(
    ("report", "format_", "words"),
    [
        pytest.param({"document_id": 10}, "csv", "'csv' is not available for a DevExpress report",
                     id="report"),
        pytest.param({"dashboard_id": 20}, "docx", "'docx' is not available for a DevExpress dashboard",
                     id="dashboard"),
        pytest.param({"dashboard_id": 20, "export_options": {"format": "bmp"}}, "image",
                     "request.report.export_options.format", id="image-format"),
        pytest.param({"document_id": 10, "dashboard_id": 20}, "pdf", "request.report.document_id", id="both"),
        pytest.param({}, "pdf", "request.report.document_id", id="neither"),
    ],
)  # fmt: skip
def test_requests_either_kind_cannot_serve_are_refused_before_anything_is_sent(
    devexpress_sim, report, format_, words
):
    with pytest.raises(BadRequest, match=words):
        DevExpress.validate(request(report=report, format=format_))
    assert devexpress_sim.request_log == []
