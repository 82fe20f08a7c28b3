"""Amazon Ads jobs, run from the provider spec, executed through statemachines/report.asl.json on moto
against the simulator over HTTP (the API on one port, the presigned file links on another).

What every vendor must do is the vendor contract (tests/contract) and the fault matrix (tests/faults),
run for Amazon Ads too (a report that fails in Amazon's words among them); here is what is its own."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import run_job
from reportrelay_cli.sandbox.amazon_ads import AmazonAdsSimulator
from tests.conftest import write_connections
from tests.providers.test_amazon_ads import (
    API_HEADERS,
    CLIENT_ID,
    CLIENT_SECRET,
    PROFILE,
    REFRESH_TOKEN,
    SECRETS,
    ads_connection,
)


@pytest.fixture
def ads_sim() -> Iterator[AmazonAdsSimulator]:
    with AmazonAdsSimulator(
        clients={CLIENT_ID: CLIENT_SECRET},
        refresh_tokens=[REFRESH_TOKEN],
        profiles=[PROFILE],
        generation_seconds=1.0,
        rows=200,
    ) as simulator:
        yield simulator


@pytest.fixture
def ads_aws(
    tmp_path: Path, ads_sim: AmazonAdsSimulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalAws]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    connections = write_connections(tmp_path, {"ads": ads_connection(ads_sim)})
    environment = {"REPORTRELAY_CONNECTIONS_FILE": str(connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    with LocalAws(environment) as aws:
        yield aws


def job_request() -> dict:
    return {
        "connection": "ads",
        "report": {
            "reportTypeId": "spCampaigns",
            "adProduct": "SPONSORED_PRODUCTS",
            "groupBy": ["campaign"],
            "columns": ["campaignId", "impressions", "clicks", "cost", "date"],
            "timeUnit": "DAILY",
        },
        "format": "gzip_json",
        "parameters": {"startDate": "2026-11-01", "endDate": "2026-11-30"},
        "output": {"key_prefix": "ads/"},
    }


def test_a_report_is_queued_polled_and_its_gzip_json_stored_byte_for_byte(ads_aws, ads_sim, tmp_path) -> None:
    # given a daily campaign report that takes a second to generate
    # when the job runs through the state machine
    outcome = run_job(ads_aws, job_request(), out_dir=tmp_path / "out")
    # then it is announced ready, with Amazon's report as the stored object
    assert outcome.detail_type == "Report Ready", outcome.detail
    assert outcome.execution_status == "SUCCEEDED"
    detail = outcome.detail
    assert detail["provider"] == "amazon_ads" and detail["polls"] >= 1
    (report_id,) = ads_sim.reports
    stored = detail["object"]
    assert stored["filename"] == f"spCampaigns-{report_id}.json.gz"
    assert stored["key"] == f"ads/{detail['job_id']}/spCampaigns-{report_id}.json.gz"
    assert stored["content_type"] == "application/gzip"
    # and the bytes in S3 and in the output folder are exactly what the file host served
    s3 = ads_aws.client("s3")
    content = s3.get_object(Bucket=stored["bucket"], Key=stored["key"])["Body"].read()
    assert hashlib.sha256(content).hexdigest() == stored["sha256"] == ads_sim.served[report_id]
    assert outcome.local_file is not None and outcome.local_file.read_bytes() == content
    assert len(json.loads(gzip.decompress(content))) == 200
    # and the file host was sent none of the API's credentials
    assert ads_sim.storage.credentials_seen == 0
    assert all(not set(call.headers) & set(API_HEADERS) for call in ads_sim.storage.request_log)
    # and the presigned link, a credential, never appears in the execution's history
    history = ads_aws.client("stepfunctions").get_execution_history(executionArn=outcome.execution_arn)
    assert "X-Amz-Signature" not in json.dumps(history, default=str)


def test_a_link_that_expired_between_check_and_fetch_is_renewed_and_the_job_succeeds(
    ads_aws, ads_sim
) -> None:
    # given links that live 30 seconds (less than the margin a download needs), so the one Check got is too
    # short-lived by the time Fetch runs
    ads_sim.url_lifetime_seconds = 30
    # when the job runs
    outcome = run_job(ads_aws, job_request())
    # then Fetch asked the status for a fresh link and stored the file, the file host asked once
    assert outcome.detail_type == "Report Ready", outcome.detail
    (report_id,) = ads_sim.reports
    assert outcome.detail["object"]["sha256"] == ads_sim.served[report_id]
    assert len(ads_sim.storage.request_log) == 1
    assert len(ads_sim.calls("GET", "/reporting/reports/{id}")) == outcome.detail["polls"] + 1
