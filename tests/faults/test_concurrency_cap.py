"""A connection's concurrent-job limit against a provider that throttles above it (Clinical One here;
DevExpress in tests/workflow/test_concurrency_limit.py): every job finishes, none meets a 429 storm."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.sandbox.clinical_one import API, ClinicalOneSimulator
from tests.conftest import wait_for_executions, write_connections
from tests.faults.kits import KITS

JOBS = 6
CAP = 2


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[tuple[LocalAws, ClinicalOneSimulator]]:
    kit = KITS["clinical_one"]
    with kit.make_simulator() as simulator, pytest.MonkeyPatch.context() as monkeypatch:
        body, secrets = kit.connection(simulator, "capped")
        body.update(max_concurrent_jobs=CAP, poll={"initial_seconds": 1, "max_seconds": 2})
        for name, value in secrets.items():
            monkeypatch.setenv(name, value)
        path = write_connections(tmp_path, {"c1": body})
        with LocalAws({"REPORTRELAY_CONNECTIONS_FILE": str(path), "POWERTOOLS_LOG_LEVEL": "WARNING"}) as aws:
            yield aws, simulator  # type: ignore[misc]


def test_jobs_beyond_the_cap_wait_their_turn_and_all_finish(capped) -> None:
    aws, simulator = capped
    # given a provider that answers 429 to a third running report, and a connection capped at two
    simulator.max_active_runs = CAP
    simulator.generation_seconds = 1.0
    request = {"connection": "c1", "report": KITS["clinical_one"].report, "format": "csv"}
    # when six jobs start at once
    statuses = wait_for_executions(aws, [aws.start(request) for _ in range(JOBS)])
    # then all succeeded, two ran at once (the cap, not fewer), and the provider never had to say 429: a
    # start it refused would be a seventh POST (the simulator itself never lets more than two run)
    assert statuses == ["SUCCEEDED"] * JOBS
    assert len(simulator.started_runs) == JOBS
    assert simulator.peak_active_runs == CAP
    assert len(simulator.calls("POST", f"{API}/v1.0/reports")) == JOBS
    # and every slot was given back
    items = aws.client("dynamodb").scan(TableName=aws.claims_table)["Items"]
    assert not [item for item in items if item["claim"]["S"].startswith("slot#")]
