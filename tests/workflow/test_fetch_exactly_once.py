"""Fetch run again on the same job stores nothing twice: the key is fixed before the first byte, an object
an earlier run stored is recognised by S3's checksum and returned without downloading, and completion only
succeeds on an empty key. The steps run in-process on emulated AWS, against the simulators over HTTP."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reportrelay import container, names, workflow
from reportrelay.errors import DownloadInterrupted
from reportrelay.runtime import Runtime
from reportrelay.timestamps import iso_timestamp
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.sandbox.devexpress import DevExpressSimulator
from reportrelay_cli.sandbox.metric_insights import MetricInsightsSimulator
from tests.clock import SkippingClock
from tests.conftest import DX_PASSWORD, devexpress_connection, write_connections
from tests.workflow.test_metric_insights_workflow import APP_KEY, mi_connection

DX_REQUEST = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf", "team": "finance"}
MI_REQUEST = {
    "connection": "mi",
    "report": {"element_id": 1042, "dimension_id": 0},
    "format": "pdf",
    "team": "finance",
}


class Killed(BaseException):
    """What a Lambda killed mid-step amounts to here: the step stops, and nothing of it runs on."""


@pytest.fixture
def dx_sim() -> Iterator[DevExpressSimulator]:
    with DevExpressSimulator(users={"api": DX_PASSWORD}, generation_seconds=0.2) as simulator:
        yield simulator


@pytest.fixture
def mi_sim() -> Iterator[MetricInsightsSimulator]:
    with MetricInsightsSimulator(
        applications={"reportrelay": APP_KEY}, generation_seconds=0.2, report_size=64 * 1024
    ) as simulator:
        yield simulator


@pytest.fixture
def aws(
    tmp_path: Path,
    dx_sim: DevExpressSimulator,
    mi_sim: MetricInsightsSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LocalAws]:
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    monkeypatch.setenv("TEST_MI_APP_KEY", APP_KEY)
    connections = write_connections(
        tmp_path, {"dx": devexpress_connection(dx_sim.base_url), "mi": mi_connection(mi_sim.base_url)}
    )
    environment = {"REPORTRELAY_CONNECTIONS_FILE": str(connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    with LocalAws(environment) as local:
        yield local


def ready(request: dict[str, Any]) -> dict[str, Any]:
    """A job's workflow state once its provider says the report is ready (submit, then check)."""
    state: dict[str, Any] = {
        "request": request,
        "job": {"job_id": str(uuid.uuid4()), "accepted_at": iso_timestamp(time.time())},
    }
    state = workflow.submit(state, Runtime.from_env())
    deadline = time.monotonic() + 30
    while state["job"]["status"] != "READY":
        assert time.monotonic() < deadline, state["job"]
        time.sleep(0.2)
        state = workflow.check(state, Runtime.from_env())
    return state


def objects(aws: LocalAws) -> list[dict[str, Any]]:
    """Every version of every object in the reports bucket."""
    return aws.client("s3").list_object_versions(Bucket=aws.bucket).get("Versions", [])


def open_uploads(aws: LocalAws) -> list[dict[str, Any]]:
    return aws.client("s3").list_multipart_uploads(Bucket=aws.bucket).get("Uploads", [])


def downloads(simulator: Any) -> int:
    return sum(
        1 for call in simulator.request_log if "/export/result/" in call.path or "/state/get" in call.path
    )


def kill_after_completion(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next Fetch completes its upload, then dies before it can return or record anything."""
    real = Runtime.s3.fget  # type: ignore[attr-defined]

    class Dying:
        def __init__(self, client: Any) -> None:
            self._client = client

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def complete_multipart_upload(self, **kwargs: Any) -> Any:
            self._client.complete_multipart_upload(**kwargs)
            monkeypatch.setattr(Runtime, "s3", property(real))
            raise Killed()

    monkeypatch.setattr(Runtime, "s3", property(lambda runtime: Dying(real(runtime))))


def test_a_second_fetch_of_a_stored_job_returns_the_object_without_downloading(
    aws: LocalAws, dx_sim: DevExpressSimulator
) -> None:
    # given a job whose report was fetched and stored
    state = ready(DX_REQUEST)
    first = workflow.fetch(state, Runtime.from_env())
    served = downloads(dx_sim)
    # when Fetch runs again on the same state (a retry after the step's answer was lost)
    again = workflow.fetch(state, Runtime.from_env())
    # then it downloads nothing, returns the same object, and S3 holds exactly one version of it
    assert downloads(dx_sim) == served
    assert again["job"]["object"] == first["job"]["object"]
    assert [(each["Key"], each["IsLatest"]) for each in objects(aws)] == [
        (first["job"]["object"]["key"], True)
    ]
    # and the job store says it is stored, with the checksum S3 computed
    record = aws_job(aws, state)
    assert record.object == first["job"]["object"]
    assert record.object_key == first["job"]["object"]["key"]


def aws_job(aws: LocalAws, state: dict[str, Any]) -> Any:
    store = Runtime.from_env().jobs
    assert store is not None
    return store.get(state["job"]["job_id"])


@pytest.mark.parametrize("request_body", [DX_REQUEST, MI_REQUEST], ids=["devexpress", "metric_insights"])
def test_a_fetch_killed_after_completing_is_recognised_by_the_next_without_downloading(
    aws: LocalAws,
    dx_sim: DevExpressSimulator,
    mi_sim: MetricInsightsSimulator,
    monkeypatch: pytest.MonkeyPatch,
    request_body: dict[str, Any],
) -> None:
    # given a ready job whose Fetch stores the object and is then killed before it returns
    state = ready(request_body)
    simulator = dx_sim if request_body is DX_REQUEST else mi_sim
    kill_after_completion(monkeypatch)
    with pytest.raises(Killed):
        workflow.fetch(state, Runtime.from_env())
    served = downloads(simulator)
    assert len(objects(aws)) == 1
    # when the state machine retries Fetch
    again = workflow.fetch(state, Runtime.from_env())
    # then the stored object is recognised: no second download (Metric Insights serves each result once),
    # no second version, no upload left open, and the object is the one the simulator served
    assert downloads(simulator) == served
    (only,) = objects(aws)
    stored = again["job"]["object"]
    assert only["Key"] == stored["key"] and only["Size"] == stored["size"]
    assert stored["sha256"] in simulator.served.values()
    assert open_uploads(aws) == []


def test_the_key_is_fixed_by_the_first_fetch_even_when_the_file_name_changes(
    aws: LocalAws, dx_sim: DevExpressSimulator
) -> None:
    # given a job whose first download breaks off half-way, after its key was chosen
    state = ready(DX_REQUEST)
    dx_sim.faults.break_downloads_next = 1
    with pytest.raises(Exception, match="download broke off"):
        workflow.fetch(state, Runtime.from_env())
    first_key = aws_job(aws, state).object_key
    assert first_key is not None and first_key.endswith("/Sales.pdf")
    # when the vendor names the file differently on the next download
    for export in dx_sim.exports.values():
        export["document_name"] = "Sales 2025-01-31T23-59"
    stored = workflow.fetch(state, Runtime.from_env())["job"]["object"]
    # then the object is stored under the key the first Fetch chose, once
    assert stored["key"] == first_key
    assert [each["Key"] for each in objects(aws)] == [first_key]


def test_two_racing_fetches_store_one_object(
    aws: LocalAws, dx_sim: DevExpressSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given two Fetches of one job that both download the report (one was given up on, but still ran):
    # the second completes its upload while the first is about to complete its own
    state = ready(DX_REQUEST)
    note_pending = workflow._note_pending
    racing: list[dict[str, Any]] = []
    raced = []

    def meanwhile(runtime: Runtime, job_id: str, pending: Any) -> None:
        note_pending(runtime, job_id, pending)
        if not raced:
            raced.append(True)
            racing.append(workflow.fetch(state, Runtime.from_env()))

    monkeypatch.setattr(workflow, "_note_pending", meanwhile)
    # when the first goes on to complete
    first = workflow.fetch(state, Runtime.from_env())
    # then its completion was refused (the key was taken), it recognised the other's object as the job's,
    # and S3 holds one version of one object, with no upload left open
    (second,) = racing
    assert first["job"]["object"] == second["job"]["object"]
    assert [each["Key"] for each in objects(aws)] == [first["job"]["object"]["key"]]
    assert open_uploads(aws) == []
    assert downloads(dx_sim) == 2


def test_a_fetch_near_its_functions_end_stops_and_stores_nothing(
    aws: LocalAws, dx_sim: DevExpressSimulator
) -> None:
    # given a ready job and a Fetch whose function has almost no time left, in a deployment without a
    # container task to hand over to
    state = ready(DX_REQUEST)
    runtime = Runtime.from_env()
    runtime.settings = dataclasses.replace(runtime.settings, fetch_container=False)
    runtime.ends_at = time.monotonic() + 30.0  # the download may start; Fetch must stop 75 s early
    # when it runs
    with pytest.raises(Exception) as raised:
        workflow.fetch(state, runtime)
    # then it stopped on its own, said why, and left nothing in S3
    assert type(raised.value).__name__ == "TransferOutOfTime"
    assert "nothing was stored" in str(raised.value)
    assert objects(aws) == [] and open_uploads(aws) == []


def handed_over(state: dict[str, Any]) -> dict[str, Any]:
    """Fetch's answer when its function has too little time left: the job, handed to the container."""
    runtime = Runtime.from_env()
    runtime.ends_at = time.monotonic() + 30.0  # the download may start; Fetch must stop 75 s early
    return workflow.fetch(state, runtime)


def container_environment(state: dict[str, Any]) -> dict[str, str]:
    """What the container task is started with: the Fetch settings, the state, and that it is one."""
    return {**os.environ, names.FETCH_STATE_ENV: json.dumps(state), names.IN_CONTAINER_ENV: "1"}


def test_a_fetch_that_will_not_fit_moves_to_a_container_which_stores_the_report(
    aws: LocalAws, dx_sim: DevExpressSimulator
) -> None:
    # given a ready job and a Fetch with almost no time left, in a deployment with a container task
    # when it runs, then it hands the transfer over, storing nothing itself
    handed = handed_over(ready(DX_REQUEST))
    assert handed["job"]["status"] == workflow.IN_CONTAINER
    assert "fetching in a container" in handed["job"]["message"]
    assert objects(aws) == [] and open_uploads(aws) == []
    # and when the container task runs the same step with no time limit
    assert container.run(container_environment(handed)) == 0
    # then the next Fetch, in Lambda, finds the report stored and returns it without downloading
    served = downloads(dx_sim)
    done = workflow.fetch(handed, Runtime.from_env())
    assert downloads(dx_sim) == served
    (only,) = objects(aws)
    assert only["Key"] == done["job"]["object"]["key"]


def test_a_container_fetch_that_fails_is_reported_by_the_next_fetch(
    aws: LocalAws, dx_sim: DevExpressSimulator
) -> None:
    # given a job handed to a container task, whose download keeps breaking off
    handed = handed_over(ready(DX_REQUEST))
    dx_sim.faults.break_downloads_next = 1000
    # when the container runs, then it fails and records why
    assert container.run(container_environment(handed)) == 1
    # and the next Fetch says so with the container's own error, and hands nothing over again
    with pytest.raises(DownloadInterrupted, match="in the container task: download broke off"):
        workflow.fetch(handed, Runtime.from_env())
    assert objects(aws) == [] and open_uploads(aws) == []


def test_the_adapters_a_step_opens_measure_the_vendors_lifetimes_on_the_steps_clock(aws: LocalAws) -> None:
    # given a submitted job, and a step whose runtime's clock is a test's
    state = workflow.submit(
        {
            "request": DX_REQUEST,
            "job": {"job_id": str(uuid.uuid4()), "accepted_at": iso_timestamp(time.time())},
        },
        Runtime.from_env(),
    )
    runtime = Runtime.from_env()
    runtime.clock = SkippingClock()
    # when the step opens the job's adapter
    _, _, provider, _ = workflow.resume(state, runtime)
    # then the adapter reads that clock (a session's age, a link's expiry), not a clock of its own
    assert provider.clock is runtime.clock
