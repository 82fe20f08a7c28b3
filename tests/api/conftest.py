"""The job API on emulated AWS: its handler called in-process with API Gateway events, the ASL on moto."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reportrelay_cli.local.apigateway import DEFAULT_IDENTITY, ApiAnswer, rest_event
from reportrelay_cli.local.aws import LocalAws
from tests.conftest import DX_PASSWORD, devexpress_connection, write_connections

FINISHED = ("ready", "failed", "cancelled")


MAX_LOOK_INTERVAL = 0.5


class JobApi:
    """Speaks to the API as an IAM-signed client would, through LocalAws.api."""

    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws

    def __call__(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        identity: str | None = DEFAULT_IDENTITY,
    ) -> ApiAnswer:
        event = rest_event(method, path, body=body, headers=headers, query=query, identity=identity)
        return ApiAnswer.from_result(self.aws.api(event))

    def start(self, request: dict[str, Any], **kwargs: Any) -> str:
        answer = self("POST", "/reports", body=request, **kwargs)
        assert answer.status == 202, answer.body
        return str(answer.json()["job_id"])

    def wait(self, job_id: str, until: tuple[str, ...] = FINISHED, timeout: float = 30) -> dict[str, Any]:
        """The job once its state is one of ``until``."""
        return self.wait_for(job_id, lambda job: job["state"] in until, timeout, interval=0.1)

    def wait_for(
        self, job_id: str, condition: Any, timeout: float = 30, interval: float = 0.05
    ) -> dict[str, Any]:
        """The job once ``condition(job)`` holds; after ``timeout`` the test fails, showing the job.

        Each look is a whole API request (validation, DynamoDB): the looks start ``interval`` apart and
        grow to ``MAX_LOOK_INTERVAL`` apart, so a long wait does not take the CPU from the job it waits on."""
        deadline = time.monotonic() + timeout
        while True:
            job = self("GET", f"/reports/{job_id}").json()
            if condition(job) or time.monotonic() > deadline:
                assert condition(job), job
                return dict(job)
            time.sleep(interval)
            interval = min(interval * 1.5, MAX_LOOK_INTERVAL)


def report_request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"}
    request.update(overrides)
    return request


ACCOUNT_ARN = "arn:aws:iam::123456789012"
# Who is in which team: IAM principals by the access policy's role mapping (see reportrelay.access).
FINANCE_CALLER = DEFAULT_IDENTITY
SALES_CALLER = f"{ACCOUNT_ARN}:user/sales-robot"
ADMIN_CALLER = f"{ACCOUNT_ARN}:user/platform-operator"
NO_TEAM_CALLER = f"{ACCOUNT_ARN}:user/stranger"
ACCESS_POLICY = {
    "admin_team": "platform",
    "roles": {
        FINANCE_CALLER: ["finance"],
        f"{ACCOUNT_ARN}:role/another-service": ["finance"],
        f"{ACCOUNT_ARN}:role/report-starter": ["finance"],
        SALES_CALLER: ["sales"],
        ADMIN_CALLER: ["platform"],
    },
}


@pytest.fixture
def api_aws(tmp_path, devexpress_sim, monkeypatch) -> Iterator[LocalAws]:
    """Finance's two connections to one DevExpress simulator ("dx", "dx-eu"), sales' one ("dx-sales")."""
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    connections = write_connections(
        tmp_path,
        {
            "dx": devexpress_connection(devexpress_sim.base_url, teams=["finance"], share_links=True),
            "dx-eu": devexpress_connection(devexpress_sim.base_url, teams=["finance"]),
            "dx-sales": devexpress_connection(devexpress_sim.base_url, teams=["sales"]),
        },
    )
    with LocalAws(
        {
            "REPORTRELAY_CONNECTIONS_FILE": str(connections),
            "REPORTRELAY_ACCESS": json.dumps(ACCESS_POLICY),
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    ) as aws:
        yield aws  # jobs a test left running stop with the emulation (LocalAws ends its executions)


@pytest.fixture
def job_api(api_aws: LocalAws) -> JobApi:
    return JobApi(api_aws)
