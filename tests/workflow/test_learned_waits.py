"""Polling that learns: a report's next runs wait about as long as it took before, then check densely.

Run through the real state machine on emulated AWS, against the DevExpress simulator over HTTP: the first
run knows nothing and backs off; the second and third wait, at first, for what the report took; a run
that suddenly takes much longer is still found. A vendor that reports its own start and finish (Torus) is
learned by its own generation time, which a late check does not stretch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reportrelay.jobs import duration_key
from reportrelay.runtime import Runtime
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import run_job
from reportrelay_cli.sandbox.devexpress import DevExpressSimulator
from reportrelay_cli.sandbox.torus import TorusSimulator
from tests.conftest import DX_PASSWORD, devexpress_connection, write_connections
from tests.workflow.test_torus_workflow import torus_aws, torus_sim

__all__ = ["torus_aws", "torus_sim"]  # Torus' simulator and emulated AWS, used by name

REQUEST = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf", "team": "finance"}
TORUS_REQUEST = {"connection": "torus", "report": {"name": "MI_Report"}, "format": "xlsx"}


@pytest.fixture
def dx_sim() -> Iterator[DevExpressSimulator]:
    with DevExpressSimulator(users={"api": DX_PASSWORD}, generation_seconds=3.0) as simulator:
        yield simulator


@pytest.fixture
def aws(tmp_path: Path, dx_sim: DevExpressSimulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    poll = {"initial_seconds": 1, "max_seconds": 2, "factor": 1.5}
    connections = write_connections(tmp_path, {"dx": devexpress_connection(dx_sim.base_url, poll=poll)})
    environment = {"REPORTRELAY_CONNECTIONS_FILE": str(connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    with LocalAws(environment) as local:
        yield local


def first_wait(aws: LocalAws, execution_arn: str) -> int:
    """How long the execution waited before its first status check (Submit's answer)."""
    events = aws.client("stepfunctions").get_execution_history(executionArn=execution_arn)["events"]
    (submitted, *_) = [
        json.loads(event["stateExitedEventDetails"]["output"])
        for event in events
        if event.get("stateExitedEventDetails", {}).get("name") == "Submit"
    ]
    wait: int = submitted["job"]["wait_seconds"]
    return wait


def durations(request: dict[str, Any]) -> list[float]:
    store = Runtime.from_env().jobs
    assert store is not None
    return store.durations(duration_key(request["connection"], request["report"], request["format"]))


def test_a_run_keeps_when_it_was_last_seen_unfinished_below_when_it_was_seen_ready(
    aws: LocalAws, dx_sim: DevExpressSimulator
) -> None:
    # given a report that takes 3 s, checked on the backoff from 1 s
    outcome = run_job(aws, REQUEST)
    assert outcome.detail_type == "Report Ready", outcome.detail
    # when its run is remembered, then the history holds both bounds of how long it took
    store = Runtime.from_env().jobs
    assert store is not None
    ((earliest, duration),) = store.duration_bounds(
        duration_key(REQUEST["connection"], REQUEST["report"], REQUEST["format"])
    )
    assert 1 <= earliest < 3 <= duration <= 6


def test_the_second_and_third_runs_wait_for_what_the_report_took_and_check_less(
    aws: LocalAws, dx_sim: DevExpressSimulator
) -> None:
    # Given a report that takes 3 s, never run on this connection: the first run backs off from 1 s
    first = run_job(aws, REQUEST)
    assert first.detail_type == "Report Ready", first.detail
    assert first_wait(aws, first.execution_arn) == 1
    (learned,) = durations(REQUEST)
    assert 3 <= learned <= 6

    # When the same report runs twice more
    second, third = run_job(aws, REQUEST), run_job(aws, REQUEST)

    # Then each waits at first for about what it took, and finds it ready with fewer checks
    for run in (second, third):
        assert run.detail_type == "Report Ready", run.detail
        assert 0.9 * learned - 1 <= first_wait(aws, run.execution_arn) <= learned + 1
        assert run.detail["polls"] < first.detail["polls"]
    assert len(durations(REQUEST)) == 3
    # and another format of the same report has a history of its own (none yet)
    assert durations({**REQUEST, "format": "xlsx"}) == []


def test_a_report_that_suddenly_takes_three_times_as_long_is_still_found(
    aws: LocalAws, dx_sim: DevExpressSimulator
) -> None:
    # Given two runs that took about 3 s
    for _ in range(2):
        assert run_job(aws, REQUEST).detail_type == "Report Ready"
    # When the vendor now takes 9 s
    dx_sim.generation_seconds = 9.0
    slow = run_job(aws, REQUEST)
    # Then past the learned window the waits grow again, and the report is found
    assert slow.detail_type == "Report Ready", slow.detail
    assert slow.seconds < 9 + 10


def test_a_torus_job_learns_the_vendors_own_generation_time_not_how_late_we_looked(
    torus_aws: LocalAws, torus_sim: TorusSimulator
) -> None:
    # Given a Torus report the vendor generates in 1.5 s, on a connection checked 1 s and then 1.5 s later
    torus_sim.generation_seconds = 1.5
    # When it runs through the state machine
    outcome = run_job(torus_aws, TORUS_REQUEST)
    assert outcome.detail_type == "Report Ready", outcome.detail
    # Then the duration remembered is the vendor's own: dateFinished - dateStarted of our run
    (run,) = torus_sim.runs.values()
    started, finished = (datetime.fromisoformat(run[name]) for name in ("dateStarted", "dateFinished"))
    vendor_seconds = (finished - started).total_seconds()
    (learned,) = durations(TORUS_REQUEST)
    assert learned == pytest.approx(vendor_seconds, abs=0.001)
    # and not queued -> ready as the job recorded it, which our second check (2 s after queueing: the
    # backoff's 1 s, then 1 s more) stretched
    ready_at, queued_at = (datetime.fromisoformat(outcome.detail[name]) for name in ("ready_at", "queued_at"))
    assert learned < 1.5 < 2.0 <= (ready_at - queued_at).total_seconds()
