"""Cost you can see: a job's completion event and its job record carry its cost drivers and an estimate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from reportrelay import costs
from reportrelay.jobs import DynamoDbJobs
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import run_job
from tests.conftest import DX_PASSWORD, devexpress_connection, write_connections

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_a_ready_report_says_what_it_used_and_what_that_costs(tmp_path, devexpress_sim, monkeypatch):
    # given a DevExpress report of 64 KiB that takes a few checks
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    devexpress_sim.generation_seconds = 2.0
    path = write_connections(tmp_path, {"dx": devexpress_connection(devexpress_sim.base_url)})
    environment = {"REPORTRELAY_CONNECTIONS_FILE": str(path), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    with LocalAws(environment) as aws:
        # when it runs through the state machine
        outcome = run_job(aws, {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"})
        record = DynamoDbJobs(aws.jobs_table, lambda: aws.client("dynamodb")).get(outcome.detail["job_id"])
    detail = outcome.detail
    assert outcome.detail_type == "Report Ready", detail
    cost = detail["cost"]
    polls = detail["polls"]
    # then it counts every state entered: Begin, Accept, Submit, IsReportReady; three per check; Fetch,
    # IsStored; DescribeReady, Done; and one invocation of each step
    assert cost["state_transitions"] == 4 + 3 * polls + 2 + 2
    assert cost["lambda_invocations"] == 1 + polls + 1 + 1
    assert cost["lambda_gb_seconds"] > 0
    # and Fetch's S3 requests (the upload's create, part and completion are PUT-class) and the bytes stored
    assert cost["s3_put_requests"] >= 3
    assert cost["s3_bytes_stored"] == detail["object"]["size"] == devexpress_sim.report_size
    # and the estimate is those drivers at the table's prices, which it names
    assert cost == costs.estimate({name: cost[name] for name in costs.DRIVERS})
    assert 0 < cost["usd"] < 0.01
    # and the event is valid against its published schema, and the job store keeps the same figures
    schema = json.loads((SCHEMAS / "report-ready.json").read_text())
    jsonschema.validate({"source": "reportrelay", "detail-type": "Report Ready", "detail": detail}, schema)
    assert record is not None and record.cost == cost
