"""What a job did, as GET /reports/{id}/events tells it, for jobs run through statemachines/report.asl.json
on moto against the simulators over HTTP: a 429 storm's every retry, a lost single-use download's restart,
a transfer going on over several invocations, and a failure, each in the order it happened and in plain
words."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from reportrelay.jobs import DynamoDbJobs
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import run_job
from reportrelay_cli.sandbox.devexpress import DevExpressSimulator
from reportrelay_cli.sandbox.metric_insights import MetricInsightsSimulator
from tests.api.conftest import ACCESS_POLICY, SALES_CALLER, JobApi
from tests.conftest import DX_PASSWORD, devexpress_connection, write_connections
from tests.workflow import test_transfer_over_invocations as ranged

MI_APP_KEY = "mi-App-Key-5c8e-activity"


@pytest.fixture
def mi_sim() -> Iterator[MetricInsightsSimulator]:
    with MetricInsightsSimulator(
        applications={"reportrelay": MI_APP_KEY}, generation_seconds=0.3, report_size=256 * 1024
    ) as simulator:
        yield simulator


@pytest.fixture
def job_api(
    tmp_path: Path,
    devexpress_sim: DevExpressSimulator,
    mi_sim: MetricInsightsSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[JobApi]:
    """Finance's DevExpress and Metric Insights connections, started and watched through the job API."""
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    monkeypatch.setenv("TEST_MI_APP_KEY", MI_APP_KEY)
    mi = {
        "provider": "metric_insights",
        "base_url": mi_sim.base_url,
        "auth": {
            "type": "app_token",
            "application_id": "reportrelay",
            "application_key": {"env": "TEST_MI_APP_KEY"},
            "user": "api",
        },
        "poll": {"initial_seconds": 1, "max_seconds": 2},
        "teams": ["finance"],
    }
    connections = write_connections(
        tmp_path, {"dx": devexpress_connection(devexpress_sim.base_url, teams=["finance"]), "mi": mi}
    )
    environment = {
        "REPORTRELAY_CONNECTIONS_FILE": str(connections),
        "REPORTRELAY_ACCESS": json.dumps(ACCESS_POLICY),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    with LocalAws(environment) as aws:
        yield JobApi(aws)


def events(job_api: JobApi, job_id: str, **query: str) -> dict[str, Any]:
    answer = job_api("GET", f"/reports/{job_id}/events", query=query or None)
    assert answer.status == 200, answer.body
    return dict(answer.json())


def test_a_429_storm_shows_every_retry_in_order_then_the_job_moving_on(job_api, devexpress_sim):
    # given a vendor that answers the next four requests with 429 and no pause: more than the HTTP
    # client's three attempts, so the state machine runs Submit again
    devexpress_sim.faults.throttle_next = 4
    devexpress_sim.faults.throttle_retry_after = 0
    # when a job runs to the end
    job_id = job_api.start({"connection": "dx", "report": {"document_id": 10}, "format": "pdf"})
    assert job_api.wait(job_id, timeout=60)["state"] == "ready"
    answer = events(job_api, job_id)
    told = [(event["step"], event["kind"], event["message"]) for event in answer["events"]]
    # then every retry is there as it happened: the client's, the step's, and the client's again
    retries = [(step, message) for step, kind, message in told if kind == "retry"]
    assert retries == [
        ("Submit", "vendor answered 429, retrying in 0 s (attempt 2 of 3)"),
        ("Submit", "vendor answered 429, retrying in 0 s (attempt 3 of 3)"),
        ("Submit", "vendor answered 429, retrying Submit within 5 s (attempt 2 of 6)"),
        ("Submit", "vendor answered 429, retrying in 0 s (attempt 2 of 3)"),
    ]
    step_retry = next(e for e in answer["events"] if "within" in e["message"])
    assert (step_retry["attempt"], step_retry["attempts"], step_retry["wait_seconds"]) == (2, 6, 5.0)
    # and after them, the job moving on: queued as the vendor's export, checked, downloaded, stored
    (export_id,) = devexpress_sim.exports
    moved_on = [(step, message) for step, kind, message in told[len(retries) :] if kind == "state"]
    assert moved_on[0] == ("Submit", f"queued at the vendor as export {export_id}")
    assert moved_on[-2:] == [
        ("Check", "ready; downloading"),
        ("Fetch", f"stored 64 KiB in s3://{job_api.aws.bucket}/finance/{job_id}/Sales.pdf"),
    ]
    assert told.index(("Submit", "wait", "first check in 1 s")) == len(retries) + 1
    # and the entries are oldest first, each with its time
    times = [event["at"] for event in answer["events"]]
    assert times == sorted(times) and all(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]{12}Z", at) for at in times)
    # and no credential reached an entry
    assert DX_PASSWORD not in json.dumps(answer)
    # and asking again after the last one gives nothing new, and the same cursor
    again = events(job_api, job_id, after=answer["next"])
    assert again == {"job_id": job_id, "events": [], "next": answer["next"]}


def test_a_lost_single_use_download_says_it_regenerates_and_the_job_goes_on(job_api, mi_sim):
    # given a vendor whose one copy of the file is cut half-way (Metric Insights serves it once)
    mi_sim.faults.break_downloads_next = 1
    # when the job runs to the end
    job_id = job_api.start(
        {"connection": "mi", "report": {"element_id": 1042, "dimension_id": 0}, "format": "pdf"}
    )
    assert job_api.wait(job_id, timeout=60)["state"] == "ready"
    told = events(job_api, job_id)["events"]
    # then the restart says where the download broke and that the report is generated again
    (restart,) = [event for event in told if event["kind"] == "restart"]
    assert re.fullmatch(
        r"download broke (at \d+ KiB|before its first byte), regenerating at the vendor \(restart 1 of 2\)",
        restart["message"],
    ), restart
    assert (restart["step"], restart["attempt"], restart["attempts"]) == ("Fetch", 1, 2)
    # and the story around it is in order: queued, ready, the restart, queued again, ready, stored
    states = [event["message"].split(" as ")[0] for event in told if event["kind"] in ("state", "restart")]
    assert states == [
        "queued at the vendor",
        "ready; downloading",
        restart["message"],
        "queued at the vendor",
        "ready; downloading",
        states[-1],
    ]
    assert states[-1].startswith("stored 256 KiB in s3://")
    # and no credential or session token reached an entry
    text = json.dumps(told)
    assert MI_APP_KEY not in text and "token=" not in text
    for session in mi_sim.session_list():
        assert session.token not in text and quote(session.token, safe="") not in text


def test_a_failed_job_ends_its_story_with_the_reason_and_another_team_cannot_read_it(job_api, devexpress_sim):
    # given a vendor whose exports fail, in its own words
    devexpress_sim.fail_reports = "Data source 'Sales' is offline"
    # when a job runs to the end
    job_id = job_api.start({"connection": "dx", "report": {"document_id": 10}, "format": "pdf"})
    failed = job_api.wait(job_id, timeout=60)
    # then the last entry says it failed, in the error's own words (Conclude writes it just after the
    # outcome, so a reader that saw "failed" may have to look once more)
    deadline = time.monotonic() + 10
    while (last := events(job_api, job_id)["events"][-1])[
        "step"
    ] != "Conclude" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert failed["state"] == "failed", failed
    assert (last["step"], last["kind"]) == ("Conclude", "state")
    assert last["message"] == f"failed: {failed['error']['message']}"
    assert "Data source 'Sales' is offline" in last["message"]
    # and for another team the events are as unknown as a job that does not exist
    missing_id = "0d6f7f38-9a0e-4c4b-9a7e-000000000000"
    theirs = job_api("GET", f"/reports/{job_id}/events", identity=SALES_CALLER)
    missing = job_api("GET", f"/reports/{missing_id}/events", identity=SALES_CALLER)
    assert theirs.status == missing.status == 404
    seen = {**theirs.json(), "message": theirs.json()["message"].replace(job_id, "<id>")}
    assert seen == {**missing.json(), "message": missing.json()["message"].replace(missing_id, "<id>")}


def test_a_transfer_over_several_invocations_tells_how_far_each_got(tmp_path, monkeypatch):
    # given a 40 MiB report served in byte ranges over a slow link, and Fetch with ~2 s per invocation
    with DevExpressSimulator(
        users={"api": DX_PASSWORD}, generation_seconds=0.2, report_size=ranged.REPORT_SIZE
    ) as simulator:
        simulator.faults.download_bytes_per_second = ranged.RATE
        simulator.faults.serve_ranges = True
        with ranged.local_aws(tmp_path, simulator, monkeypatch, fetch_container=False) as aws:
            ranged.with_short_fetch(aws)
            # when the job runs through the state machine
            outcome = run_job(aws, ranged.REQUEST)
            told = DynamoDbJobs(aws.jobs_table, lambda: aws.client("dynamodb")).activity(
                outcome.detail["job_id"]
            )
    # then each invocation that went on said how much was stored, of how much, with its percent
    assert outcome.detail_type == "Report Ready", outcome.detail
    progress = [event for event in told if event["kind"] == "progress"]
    assert progress, told
    for event in progress:
        assert re.fullmatch(
            r"stored \d+\.\d MiB of 40\.0 MiB; going on in a new invocation", event["message"]
        )
        assert event["step"] == "Fetch" and 0 < event["percent"] < 100
    percents = [event["percent"] for event in progress]
    assert percents == sorted(percents)
    # and the last entry is the whole file stored
    assert told[-1]["message"].startswith("stored 40 MiB in s3://") and told[-1]["kind"] == "state"
