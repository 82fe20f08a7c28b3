"""The DevExpress adapter against the simulator over HTTP, and the workflow steps that drive it."""

from __future__ import annotations

import time

import pytest

from reportrelay import workflow
from reportrelay.config import Connections, JobRequest, SecretResolver
from reportrelay.errors import DeadlineExceeded, ProviderProtocolError, ReportGenerationFailed
from reportrelay.providers import open_provider
from reportrelay.providers.base import ReportState
from reportrelay.runtime import Runtime, Settings
from reportrelay.timestamps import iso_timestamp, parse_timestamp
from tests.conftest import DX_PASSWORD, devexpress_connection


def connections_for(simulator) -> Connections:
    return Connections.from_document({"connections": {"dx": devexpress_connection(simulator.base_url)}})


@pytest.fixture
def provider(devexpress_sim):
    secrets = SecretResolver(environ={"TEST_DX_PASSWORD": DX_PASSWORD})
    return open_provider(connections_for(devexpress_sim).get("dx"), secrets)


def request(**overrides) -> JobRequest:
    return JobRequest.model_validate(
        {"connection": "dx", "report": {"document_id": 10}, "format": "pdf", **overrides}
    )


def wait_until_complete(simulator) -> None:
    """Move the simulator's clock past the export's generation."""
    simulator.clock.advance(simulator.generation_seconds)


@pytest.mark.parametrize("form", ["object", "string", "integer"])
def test_every_documented_status_form_is_understood(devexpress_sim, provider, form):
    # given a server answering status as an object, a bare string or a bare enum integer
    devexpress_sim.status_form = form
    submitted = provider.submit(request())
    # when the status is checked before and after generation
    running = provider.check(request(), submitted.handle)
    wait_until_complete(devexpress_sim)
    ready = provider.check(request(), submitted.handle)
    # then both states are read correctly
    assert (running.state, ready.state) == (ReportState.RUNNING, ReportState.READY)


def test_a_fault_carries_the_servers_message(devexpress_sim, provider):
    devexpress_sim.fail_reports = "Cannot connect to the database 'Sales'"
    submitted = provider.submit(request())
    wait_until_complete(devexpress_sim)
    status = provider.check(request(), submitted.handle)
    assert status.state is ReportState.FAILED
    assert "Cannot connect to the database 'Sales'" in status.message


def test_parameters_and_format_options_reach_the_export_call(devexpress_sim, provider):
    job = request(
        parameters={"Year": 2025}, report={"document_id": 11, "export_options": {"exportMode": "singleFile"}}
    )
    submitted = provider.submit(job)
    export = devexpress_sim.exports[submitted.handle["export_id"]]
    assert export["document_id"] == 11
    assert export["format"] == "pdf"
    assert export["options"]["exportMode"] == "singleFile"
    assert {"name": "Year", "value": 2025} in export["parameters"] or export["parameters"] == {"Year": 2025}


def test_the_result_keeps_the_servers_filename_and_content_type(devexpress_sim, provider):
    submitted = provider.submit(request(format="xlsx", report={"document_id": 11}))
    wait_until_complete(devexpress_sim)
    with provider.open_result(request(format="xlsx"), submitted.handle) as result:
        content = b"".join(result.chunks)
    assert result.filename == "Inventory.xlsx"
    assert result.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert result.content_length == len(content)


def test_an_unknown_status_value_is_a_protocol_error(devexpress_sim, provider, monkeypatch):
    submitted = provider.submit(request())
    monkeypatch.setattr(devexpress_sim, "status_form", "object")
    devexpress_sim.exports[submitted.handle["export_id"]]["status"] = "Queued"
    with pytest.raises(ProviderProtocolError, match="unknown task status 'Queued'"):
        provider.check(request(), submitted.handle)


@pytest.fixture
def runtime(devexpress_sim):
    return Runtime(
        settings=Settings(bucket=None, connections_file=None, connections_document=None),
        connections=connections_for(devexpress_sim),
        secrets=SecretResolver(environ={"TEST_DX_PASSWORD": DX_PASSWORD}),
    )


def submitted_state(runtime) -> dict:
    state = {
        "request": request().model_dump(),
        "job": {"job_id": "job-1", "accepted_at": "2026-01-01T00:00:00Z"},
    }
    state["job"]["accepted_at"] = iso_timestamp(runtime.clock())
    return workflow.submit(state, runtime)


def test_a_throttled_check_waits_as_long_as_the_provider_asks(devexpress_sim, runtime):
    # given a queued export and a server asking for a 45-second pause
    state = submitted_state(runtime)
    devexpress_sim.faults.throttle_next = 1
    devexpress_sim.faults.throttle_retry_after = 45
    # when the check step runs
    checked = workflow.check(state, runtime)
    # then the job keeps its state and the state machine is told to wait 45 s
    assert checked["job"]["status"] == "PENDING"
    assert checked["job"]["wait_seconds"] == 45
    assert checked["job"]["polls"] == 1


def test_a_job_past_its_deadline_fails_and_says_the_export_cannot_be_cancelled(devexpress_sim, runtime):
    # given a job whose deadline has passed while the export still runs
    devexpress_sim.generation_seconds = 60
    state = submitted_state(runtime)
    runtime.clock = lambda: time.time() + 25 * 3600
    # when the check step runs, then it gives up with DeadlineExceeded
    with pytest.raises(DeadlineExceeded, match="no cancel"):
        workflow.check(state, runtime)


def test_a_provider_fault_found_by_the_check_step_raises_with_the_message(devexpress_sim, runtime):
    devexpress_sim.fail_reports = "Out of memory while rendering"
    state = submitted_state(runtime)
    wait_until_complete(devexpress_sim)
    with pytest.raises(ReportGenerationFailed, match="Out of memory while rendering"):
        workflow.check(state, runtime)


def test_the_wait_never_runs_past_the_deadline(devexpress_sim, runtime):
    devexpress_sim.generation_seconds = 60
    state = submitted_state(runtime)
    deadline = parse_timestamp(state["job"]["deadline_at"])
    runtime.clock = lambda: deadline - 3
    checked = workflow.check(state, runtime)
    assert checked["job"]["wait_seconds"] <= 3
