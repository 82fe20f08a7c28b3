"""A report larger than one Fetch invocation can carry: served in byte ranges, it is fetched over several
invocations from checkpoints (the state machine loops Fetch); not served in ranges, it moves to the container
task. Run on emulated AWS through the real state machine, against the DevExpress simulator over HTTP, with
the Fetch function's timeout cut so that each invocation has a few seconds to work with (WORK_SECONDS)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reportrelay import workflow
from reportrelay.runtime import Runtime
from reportrelay.transfer import DEFAULT_PART_SIZE
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import run_job
from reportrelay_cli.sandbox.devexpress import DevExpressSimulator
from tests.aws_faults import killed_after_call
from tests.conftest import DX_PASSWORD, devexpress_connection, write_connections
from tests.iam.recording import recording
from tests.workflow.test_fetch_exactly_once import open_uploads, ready

MiB = 1024 * 1024
REPORT_SIZE = 40 * MiB
RATE = 8 * MiB  # the vendor's link: 5 s for the whole file, a part a second
READ_TIMEOUT = 2
# Fetch stops one read timeout plus FETCH_STOP_MARGIN_SECONDS before its function's end: WORK_SECONDS of work
# in each invocation, so a loaded machine still stores a part or two (three that store nothing end the job).
WORK_SECONDS = 2
REQUEST = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf", "team": "finance"}
FETCH = "reportrelay-fetch"


@pytest.fixture
def dx_sim() -> Iterator[DevExpressSimulator]:
    with DevExpressSimulator(
        users={"api": DX_PASSWORD}, generation_seconds=0.2, report_size=REPORT_SIZE
    ) as simulator:
        simulator.faults.download_bytes_per_second = RATE
        yield simulator


def local_aws(tmp_path: Path, dx_sim: DevExpressSimulator, monkeypatch: pytest.MonkeyPatch, **options: Any):
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    connection = devexpress_connection(dx_sim.base_url, timeouts={"read_seconds": READ_TIMEOUT})
    connections = write_connections(tmp_path, {"dx": connection})
    environment = {"REPORTRELAY_CONNECTIONS_FILE": str(connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    return LocalAws(environment, **options)


def with_short_fetch(aws: LocalAws, work_seconds: int = WORK_SECONDS) -> LocalAws:
    """The Fetch function's timeout cut to leave ``work_seconds`` of transfer in each invocation."""
    timeout = int(READ_TIMEOUT + workflow.FETCH_STOP_MARGIN_SECONDS + work_seconds)
    aws.client("lambda").update_function_configuration(FunctionName=FETCH, Timeout=timeout)
    return aws


def stored(aws: LocalAws, detail: dict[str, Any]) -> bytes:
    obj = detail["object"]
    return aws.client("s3").get_object(Bucket=obj["bucket"], Key=obj["key"])["Body"].read()


def history(aws: LocalAws, execution_arn: str) -> list[dict[str, Any]]:
    return aws.client("stepfunctions").get_execution_history(executionArn=execution_arn)["events"]


def entered(events: list[dict[str, Any]], state: str) -> list[dict[str, Any]]:
    return [
        json.loads(event["stateEnteredEventDetails"]["input"])
        for event in events
        if event.get("stateEnteredEventDetails", {}).get("name") == state
    ]


def last_fetch_output(events: list[dict[str, Any]]) -> dict[str, Any]:
    exits = [
        json.loads(event["stateExitedEventDetails"]["output"])
        for event in events
        if event.get("stateExitedEventDetails", {}).get("name") == "Fetch"
    ]
    return exits[-1]


def range_requests(dx_sim: DevExpressSimulator) -> list[dict[str, str]]:
    return [call.headers for call in dx_sim.request_log if "Range" in call.headers]


def test_a_report_served_in_ranges_is_fetched_over_several_invocations(
    tmp_path: Path, dx_sim: DevExpressSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 40 MiB report served in byte ranges over a 16 MiB/s link, and Fetch with ~1 s per invocation
    dx_sim.faults.serve_ranges = True
    with local_aws(tmp_path, dx_sim, monkeypatch, fetch_container=False) as aws:
        with_short_fetch(aws)

        # When the job runs through the state machine
        outcome = run_job(aws, REQUEST)

        # Then it is ready, and the object is exactly the file the vendor served
        assert outcome.detail_type == "Report Ready", outcome.detail
        content = stored(aws, outcome.detail)
        assert len(content) == REPORT_SIZE
        assert hashlib.sha256(content).hexdigest() == outcome.detail["object"]["sha256"]
        assert outcome.detail["object"]["sha256"] in dx_sim.served.values()
        # and it took at least three Fetch invocations, each after the first asking for the rest by Range
        events = history(aws, outcome.execution_arn)
        assert len(entered(events, "Fetch")) >= 3
        ranges = range_requests(dx_sim)
        assert len(ranges) == len(entered(events, "Fetch")) - 1
        assert all(headers["If-Range"].startswith('"') for headers in ranges)
        # and each resume read again at most the one part that was being filled
        tally = last_fetch_output(events)["job"]["transfer"]
        assert tally["invocations"] == len(entered(events, "Fetch"))
        assert tally["reread"] <= (tally["invocations"] - 1) * DEFAULT_PART_SIZE
        assert open_uploads(aws) == []


def test_a_file_that_changed_between_invocations_is_fetched_again_from_the_start(
    tmp_path: Path, dx_sim: DevExpressSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a ranged transfer over several invocations, and a vendor that serves another version of the
    # file (another ETag, the same size) from the moment the first Fetch invocation has ended
    dx_sim.faults.serve_ranges = True
    with local_aws(tmp_path, dx_sim, monkeypatch, fetch_container=False) as aws:
        # (a second more of work each: the refused resume restarts the file, and under load two seconds
        # could end three invocations in a row before one more part was stored)
        with_short_fetch(aws, work_seconds=WORK_SECONDS + 1)
        first_uploads: list[str] = []

        def change_the_file(function: str) -> None:
            if function == FETCH and not first_uploads:
                first_uploads.extend(upload["UploadId"] for upload in open_uploads(aws))
                dx_sim.faults.change_downloads_next = 1000

        aws.after_invoke.append(change_the_file)

        # When the job runs through the state machine
        outcome = run_job(aws, REQUEST)

        # Then the first resume's If-Range no longer matched: the vendor served the new file whole, the
        # parts of the old one were dropped with their upload, and the object is the new file, not a
        # splice of the two (its last byte is the old file's, flipped)
        assert outcome.detail_type == "Report Ready", outcome.detail
        assert len(first_uploads) == 1
        ranges = range_requests(dx_sim)
        assert len(ranges) >= 2  # the refused resume, and at least one resume of the new file
        assert ranges[0]["If-Range"] != ranges[-1]["If-Range"]
        content = stored(aws, outcome.detail)
        original = content[:-1] + bytes([content[-1] ^ 0xFF])
        assert hashlib.sha256(original).hexdigest() in dx_sim.served.values()
        assert hashlib.sha256(content).hexdigest() == outcome.detail["object"]["sha256"]
        assert open_uploads(aws) == []


def test_a_report_not_served_in_ranges_moves_to_the_container_task(
    tmp_path: Path, dx_sim: DevExpressSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a vendor that does not serve ranges, and a deployment with a container task
    with local_aws(tmp_path, dx_sim, monkeypatch, fetch_container=True) as aws:
        with_short_fetch(aws)

        # When the job runs
        outcome = run_job(aws, REQUEST)

        # Then Fetch handed the transfer to the container (ecs:runTask.sync), which stored the file whole
        assert outcome.detail_type == "Report Ready", outcome.detail
        events = history(aws, outcome.execution_arn)
        assert len(entered(events, "FetchInContainer")) == 1
        assert range_requests(dx_sim) == []
        content = stored(aws, outcome.detail)
        assert hashlib.sha256(content).hexdigest() in dx_sim.served.values()
        assert open_uploads(aws) == []


def test_a_fetch_killed_mid_transfer_resumes_from_its_checkpoint(
    tmp_path: Path, dx_sim: DevExpressSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a transfer that checkpoints as parts are stored, whose Fetch is killed once its third part is
    # stored: from then on that invocation makes no call at all (no abort, no last checkpoint)
    dx_sim.faults.serve_ranges = True
    monkeypatch.setattr("reportrelay.transfer.CHECKPOINT_EVERY_SECONDS", 0.0)
    with local_aws(tmp_path, dx_sim, monkeypatch, fetch_container=False) as aws, recording():
        with killed_after_call(aws, "s3", "UploadPart", times=3, function="fetch") as kill:
            # When the job runs through the state machine
            outcome = run_job(aws, REQUEST)

        # Then the kill happened, and the job is ready with exactly the served file
        assert kill.fired == 1
        assert outcome.detail_type == "Report Ready", outcome.detail
        content = stored(aws, outcome.detail)
        assert hashlib.sha256(content).hexdigest() in dx_sim.served.values()
        # and the retried Fetch asked for the rest from a checkpoint, not for the whole file again
        events = history(aws, outcome.execution_arn)
        assert any(event["type"] == "TaskFailed" for event in events)
        (resumed,) = range_requests(dx_sim)
        offset = int(resumed["Range"].removeprefix("bytes=").rstrip("-"))
        assert offset >= DEFAULT_PART_SIZE
        assert open_uploads(aws) == []


def test_a_failed_or_cancelled_job_leaves_no_open_upload(
    tmp_path: Path, dx_sim: DevExpressSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two jobs whose transfers paused with their uploads open for the next Fetch
    dx_sim.faults.serve_ranges = True
    with local_aws(tmp_path, dx_sim, monkeypatch, fetch_container=False) as aws:
        failing, cancelled = (fetch_with_budget(ready(REQUEST), 1.0) for _ in range(2))
        assert len(open_uploads(aws)) == 2

        # When one fails (its retries ran out) and the other is cancelled
        failure = {
            **failing,
            "error": {"Error": "DownloadInterrupted", "Cause": json.dumps({"errorMessage": "x"})},
        }
        workflow.conclude(failure, Runtime.from_env())
        assert workflow.cancel_at_provider({"job_id": cancelled["job"]["job_id"]}, Runtime.from_env())

        # Then neither upload is left open
        assert open_uploads(aws) == []


def fetch_with_budget(state: dict[str, Any], seconds: float) -> dict[str, Any]:
    """One Fetch invocation whose function ends ``seconds`` after Fetch's own stop margin."""
    runtime = Runtime.from_env()
    runtime.ends_at = time.monotonic() + READ_TIMEOUT + workflow.FETCH_STOP_MARGIN_SECONDS + seconds
    return workflow.fetch(state, runtime)
