"""DevExpress report exports run from providers/specs/devexpress.json, side by side with the hand-written
adapter against the same simulator: the same calls reach the server and the same file comes back.

The hand-written adapter stays registered: the spec covers report exports, not the synchronous dashboard
export (its answer is the file, which a spec cannot say yet), so the DevExpress tests could not all pass
with the spec in its place.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from reportrelay import providers
from reportrelay.config import Connections, JobRequest, SecretResolver
from reportrelay.errors import BadRequest, ProviderProtocolError
from reportrelay.local.runner import run_job
from reportrelay.providers import open_provider, provider_class
from reportrelay.providers.base import Provider, ReportState
from reportrelay.providers.declarative import DeclarativeProvider, packaged_provider
from reportrelay.providers.devexpress import DevExpress
from tests.conftest import DX_PASSWORD, devexpress_connection

SPEC = "spec:devexpress"


@pytest.fixture
def both(devexpress_sim, monkeypatch) -> dict[str, Provider]:
    """The hand-written adapter and the spec's, each signed in to the same simulator."""
    connection = Connections.from_document(
        {"connections": {"dx": devexpress_connection(devexpress_sim.base_url)}}
    ).get("dx")
    secrets = SecretResolver(environ={"TEST_DX_PASSWORD": DX_PASSWORD})
    hand_written = open_provider(connection, secrets)
    monkeypatch.setitem(providers.PROVIDERS, "devexpress", SPEC)
    from_spec = open_provider(connection, secrets)
    assert isinstance(hand_written, DevExpress) and isinstance(from_spec, DeclarativeProvider)
    return {"code": hand_written, "spec": from_spec}


def request(**overrides: Any) -> JobRequest:
    body = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf", **overrides}
    return JobRequest.model_validate(body)


def run_through(provider: Provider, simulator, job: JobRequest) -> tuple[dict[str, Any], Any, bytes]:
    """Submit, check until complete and download; the server's record of the export, the result, bytes."""
    submitted = provider.submit(job)
    assert provider.check(job, submitted.handle).state is ReportState.RUNNING
    time.sleep(simulator.generation_seconds + 0.1)
    assert provider.check(job, submitted.handle).state is ReportState.READY
    with provider.open_result(job, submitted.handle) as result:
        content = b"".join(result.chunks)
    export = simulator.exports[submitted.handle["export_id" if "export_id" in submitted.handle else "id"]]
    return export, result, content


@pytest.mark.parametrize("form", ["object", "string", "integer"])
def test_the_spec_and_the_adapter_export_the_same_report_in_every_status_form(devexpress_sim, both, form):
    # given a server answering status as an object, a bare string or a bare enum integer
    devexpress_sim.status_form = form
    job = request(
        format="xlsx",
        report={"document_id": 11, "export_options": {"exportMode": "singleFile"}},
        parameters={"Year": 2025, "Region": "EMEA"},
    )
    # when each provider runs the same export
    code = run_through(both["code"], devexpress_sim, job)
    spec = run_through(both["spec"], devexpress_sim, job)
    # then the server was asked for the same export (options merged with the format, parameters as pairs)
    fields = ("document_id", "format", "options", "parameters")
    assert {key: spec[0][key] for key in fields} == {key: code[0][key] for key in fields}
    assert spec[0]["parameters"] == [{"name": "Year", "value": 2025}, {"name": "Region", "value": "EMEA"}]
    # and the same file came back, under the server's name and content type
    assert (spec[1].filename, spec[1].content_type) == (code[1].filename, code[1].content_type)
    assert spec[1].filename == "Inventory.xlsx"
    served = set(devexpress_sim.served.values())
    assert hashlib.sha256(spec[2]).hexdigest() in served and len(spec[2]) == len(code[2])


def test_a_fault_carries_the_servers_message_in_both(devexpress_sim, both):
    devexpress_sim.fail_reports = "Cannot connect to the database 'Sales'"
    job = request()
    for provider in both.values():
        submitted = provider.submit(job)
        time.sleep(devexpress_sim.generation_seconds + 0.1)
        status = provider.check(job, submitted.handle)
        assert status.state is ReportState.FAILED
        assert "Cannot connect to the database 'Sales'" in (status.message or "")


def test_an_unknown_status_is_a_protocol_error_in_both(devexpress_sim, both):
    job = request()
    for provider in both.values():
        submitted = provider.submit(job)
        export_id = next(iter(submitted.handle.values()))
        devexpress_sim.exports[export_id]["status"] = "Queued"
        with pytest.raises(ProviderProtocolError, match="'Queued'"):
            provider.check(job, submitted.handle)


def test_a_report_format_the_server_lacks_is_refused_by_both_before_anything_is_sent(devexpress_sim):
    job = request(format="csv")
    for cls in (DevExpress, packaged_provider("devexpress")):
        with pytest.raises(BadRequest, match=r"request\.format: 'csv' is not available"):
            cls.validate(job)
    assert devexpress_sim.request_log == []


def test_the_spec_runs_a_report_export_through_the_state_machine(local_aws, devexpress_sim, monkeypatch):
    # given the spec registered for devexpress in this process (the local emulation runs the handlers here)
    monkeypatch.setitem(providers.PROVIDERS, "devexpress", SPEC)
    assert provider_class("devexpress") is packaged_provider("devexpress")
    # when a report export job runs
    outcome = run_job(local_aws, {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"})
    # then the stored object is the server's file, under its name
    assert outcome.detail_type == "Report Ready", outcome.detail
    (export_id,) = devexpress_sim.exports
    assert outcome.detail["object"]["filename"] == "Sales.pdf"
    assert outcome.detail["object"]["sha256"] == devexpress_sim.served[export_id]
