"""Fixtures shared by every test tier: simulators over real HTTP, emulated AWS, connection files."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reportrelay.auth import forget_cached_tokens
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.sandbox.devexpress import DevExpressSimulator

pytest_plugins = ("tests.s3server",)  # the s3_server and s3_bucket fixtures (SeaweedFS)

DX_PASSWORD = "dx-Secret-Passw0rd-1f9c"


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    forget_cached_tokens()
    yield
    forget_cached_tokens()


@pytest.fixture
def devexpress_sim():
    with DevExpressSimulator(users={"api": DX_PASSWORD}, generation_seconds=0.5) as simulator:
        yield simulator


def write_connections(directory: Path, connections: dict) -> Path:
    path = directory / "connections.json"
    path.write_text(json.dumps({"connections": connections}), encoding="utf-8")
    return path


def devexpress_connection(base_url: str, **overrides) -> dict:
    body = {
        "provider": "devexpress",
        "base_url": base_url,
        "auth": {"type": "oauth_password", "username": "api", "password": {"env": "TEST_DX_PASSWORD"}},
        "poll": {"initial_seconds": 1, "max_seconds": 2},
    }
    body.update(overrides)
    return body


@pytest.fixture
def dx_connections(tmp_path, devexpress_sim, monkeypatch) -> Path:
    monkeypatch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
    return write_connections(tmp_path, {"dx": devexpress_connection(devexpress_sim.base_url)})


@pytest.fixture
def local_aws(dx_connections):
    with LocalAws(
        {"REPORTRELAY_CONNECTIONS_FILE": str(dx_connections), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    ) as aws:
        yield aws


@contextmanager
def devexpress_on_local_aws(
    directory: Path, connection: str, log_level: str = "WARNING"
) -> Iterator[LocalAws]:
    """reportrelay on emulated AWS fetching from its own DevExpress simulator, for module-scoped fixtures."""
    with (
        pytest.MonkeyPatch.context() as patch,
        DevExpressSimulator(users={"api": DX_PASSWORD}, generation_seconds=0.2) as simulator,
    ):
        patch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
        connections = write_connections(directory, {connection: devexpress_connection(simulator.base_url)})
        environment = {"REPORTRELAY_CONNECTIONS_FILE": str(connections), "POWERTOOLS_LOG_LEVEL": log_level}
        with LocalAws(environment) as aws:
            yield aws


def wait_for_executions(aws: LocalAws, executions: list[str], timeout_seconds: float = 240) -> list[str]:
    """Each execution's status, once none is RUNNING any more (or the time is up)."""
    described = describe_when_ended(aws, executions, timeout_seconds)
    return [described[arn]["status"] for arn in executions]


def describe_when_ended(
    aws: LocalAws, executions: list[str], timeout_seconds: float = 240
) -> dict[str, dict[str, Any]]:
    """Each execution's description, taken once it ended (or, for those still running, when time is up)."""
    sfn = aws.client("stepfunctions")
    deadline = time.monotonic() + timeout_seconds
    ended: dict[str, dict[str, Any]] = {}
    while True:
        for arn in executions:
            if arn not in ended:
                description = sfn.describe_execution(executionArn=arn)
                if description["status"] != "RUNNING" or time.monotonic() >= deadline:
                    ended[arn] = description
        if len(ended) == len(executions):
            return ended
        time.sleep(0.5)
