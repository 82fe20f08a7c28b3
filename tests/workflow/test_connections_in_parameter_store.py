"""A thousand deployed connections in SSM Parameter Store (moto), read there by the functions (issue 13,
item 5): a job runs through the real state machine on one of them, reading it once for all its steps
(the warm function's cache), and the job API, asked for a connection that does not exist, lists them all
to name the caller's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from reportrelay.awsclients import aws_client
from reportrelay_cli.local.aws import LOCAL_CONNECTIONS_PATH, LocalAws
from tests.api.conftest import ACCESS_POLICY, JobApi
from tests.conftest import DX_PASSWORD, devexpress_connection, wait_for_executions

COUNT = 1000
USED = "dx-0500"  # the one connection that leads to the simulator


@pytest.fixture
def thousand_in_ssm(devexpress_sim: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    connections = {
        f"dx-{index:04d}": devexpress_connection(
            f"https://reports-{index:04d}.acme.example", teams=["finance" if index % 2 else "sales"]
        )
        for index in range(COUNT)
    }
    connections[USED] = devexpress_connection(devexpress_sim.base_url, teams=["finance"])
    environment = {"REPORTRELAY_ACCESS": json.dumps(ACCESS_POLICY), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    with LocalAws(environment, connections_in_parameter_store=connections) as aws:
        yield aws


class SsmCalls:
    """Every SSM call the functions make (they share this process's client), by operation."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, params))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


@pytest.fixture
def ssm_calls() -> Iterator[SsmCalls]:
    calls = SsmCalls()
    events = aws_client("ssm").meta.events
    events.register("provide-client-params.ssm.*", calls, unique_id="test-ssm-calls")
    yield calls
    events.unregister("provide-client-params.ssm.*", unique_id="test-ssm-calls")


def test_a_job_runs_on_a_connection_read_from_parameter_store(
    thousand_in_ssm: LocalAws, ssm_calls: SsmCalls
) -> None:
    aws = thousand_in_ssm
    # given 1,000 connections deployed as parameters, and no connections file for the functions
    names = [
        parameter["Name"]
        for page in aws.client("ssm")
        .get_paginator("get_parameters_by_path")
        .paginate(Path=LOCAL_CONNECTIONS_PATH)
        for parameter in page["Parameters"]
    ]
    assert len(names) == COUNT
    assert aws.function_environment["REPORTRELAY_CONNECTIONS_PATH"] == LOCAL_CONNECTIONS_PATH
    assert aws.function_environment["REPORTRELAY_CONNECTIONS_FILE"] == ""
    ssm_calls.calls.clear()
    # when a job runs through the state machine on one of them
    execution = aws.start({"connection": USED, "report": {"document_id": 10}, "format": "pdf"})
    assert wait_for_executions(aws, [execution], timeout_seconds=60) == ["SUCCEEDED"]
    # then its report is stored
    output = json.loads(aws.client("stepfunctions").describe_execution(executionArn=execution)["output"])
    stored = aws.client("s3").head_object(Bucket=aws.bucket, Key=output["object"]["key"])
    assert stored["ContentLength"] == output["object"]["size"] > 0
    # and its connection was read by name, once for all its steps (a warm function keeps it a minute),
    # and no step listed the other 999
    assert ssm_calls.of("GetParameter") == [{"Name": f"{LOCAL_CONNECTIONS_PATH}/{USED}"}]
    assert not ssm_calls.of("GetParametersByPath")


def test_the_api_lists_the_thousand_to_name_the_callers_own(
    thousand_in_ssm: LocalAws, ssm_calls: SsmCalls
) -> None:
    job_api = JobApi(thousand_in_ssm)
    # when finance asks for a connection that is not deployed
    answer = job_api(
        "POST", "/reports", body={"connection": "dx-9999", "report": {"document_id": 10}, "format": "pdf"}
    )
    # then the answer names it and lists finance's 500 connections only (every odd one, and dx-0500)
    assert answer.status == 400, answer.body
    message = answer.json()["message"]
    assert message.startswith("request.connection: unknown connection 'dx-9999' (yours: dx-0001, dx-0003")
    listed = message.split("(yours: ", 1)[1].rstrip(")").split(", ")
    assert len(listed) == COUNT // 2 + 1 and USED in listed and "dx-0002" not in listed
    # and all 1,000 were read page by page (10 a page, SSM's most; a last empty page may follow), and none
    # again one by one
    pages = ssm_calls.of("GetParametersByPath")
    assert COUNT // 10 <= len(pages) <= COUNT // 10 + 1
    assert all(page["Path"] == LOCAL_CONNECTIONS_PATH for page in pages)
    assert [call["Name"] for call in ssm_calls.of("GetParameter")] == [f"{LOCAL_CONNECTIONS_PATH}/dx-9999"]
