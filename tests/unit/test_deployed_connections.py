"""reportrelay.runtime.ParameterStoreConnections: the deployed connections, read from SSM when needed and
trusted for a minute (moto's SSM, a clock the test moves)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from reportrelay.errors import BadRequest, ConfigurationError
from reportrelay.runtime import (
    CONNECTIONS_CACHE_SECONDS,
    ParameterStoreConnections,
    Settings,
    connection_parameter_name,
    connection_parameter_value,
    deployed_connections,
    forget_deployed_connections,
    load_connections,
)

PATH = "/reportrelay/Test/connections"


def _body(index: int) -> dict[str, Any]:
    return {
        "provider": "devexpress",
        "base_url": f"https://reports-{index}.acme.example",
        "auth": {"type": "bearer", "token": {"secret": f"reportrelay/connections/acme-{index}"}},
    }


class CountingSsm:
    """moto's SSM client, counting the calls made through it."""

    def __init__(self) -> None:
        self.client = boto3.client("ssm", region_name="us-east-1")
        self.calls: list[str] = []
        self.client.meta.events.register("provide-client-params.ssm.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def put(self, name: str, value: str) -> None:
        self.client.put_parameter(
            Name=connection_parameter_name(PATH, name), Value=value, Type="String", Overwrite=True
        )


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingSsm]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        counting = CountingSsm()
        for index in range(25):
            counting.put(f"acme-{index}", connection_parameter_value(_body(index)))
        counting.calls.clear()
        yield counting


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_connection_is_read_once_and_again_after_the_cache_expires(ssm: CountingSsm) -> None:
    clock = Clock()
    connections = ParameterStoreConnections(PATH, lambda: ssm.client, clock=clock)
    # when a connection is asked for three times within the minute
    first = connections.get("acme-3")
    assert "acme-3" in connections and connections.get("acme-3") == first
    # then it was read once
    assert first.base_url == "https://reports-3.acme.example" and ssm.calls == ["GetParameter"]
    # and once the minute is over, a change deployed meanwhile is read
    ssm.put("acme-3", connection_parameter_value({**_body(3), "base_url": "https://moved.acme.example"}))
    clock.now += CONNECTIONS_CACHE_SECONDS
    assert connections.get("acme-3").base_url == "https://moved.acme.example"
    assert [call for call in ssm.calls if call != "PutParameter"] == ["GetParameter", "GetParameter"]


def test_an_unknown_name_is_a_bad_request_naming_its_parameter_and_is_remembered(ssm: CountingSsm) -> None:
    connections = ParameterStoreConnections(PATH, lambda: ssm.client, clock=Clock())
    with pytest.raises(BadRequest, match=f"no parameter {PATH}/acme-99 "):
        connections.get("acme-99")
    assert "acme-99" not in connections
    assert ssm.calls == ["GetParameter"]  # the miss is cached too: a burst of bad requests reads it once
    # and a name that is not one level of the path is never looked up
    assert "acme-1/../acme-2" not in connections and ssm.calls == ["GetParameter"]


def test_listing_reads_every_page_and_then_answers_by_name_without_reading(ssm: CountingSsm) -> None:
    connections = ParameterStoreConnections(PATH, lambda: ssm.client, clock=Clock())
    # when all are listed (25: three pages of at most 10)
    assert connections.names() == sorted(f"acme-{index}" for index in range(25))
    listed = list(ssm.calls)
    assert listed == ["GetParametersByPath"] * len(listed) and len(listed) >= 3
    # then each is known without another call, and so is a name not among them
    assert connections.get("acme-24").base_url == "https://reports-24.acme.example"
    assert "acme-99" not in connections
    assert ssm.calls == listed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{not json", f"SSM parameter {PATH}/acme-bad is not valid JSON"),
        ('{"provider": "devexpress"}', f"SSM parameter {PATH}/acme-bad: connections.acme-bad.base_url"),
    ],
)
def test_a_parameter_that_is_no_connection_is_a_configuration_error_naming_it(
    ssm: CountingSsm, value: str, expected: str
) -> None:
    ssm.put("acme-bad", value)
    connections = ParameterStoreConnections(PATH, lambda: ssm.client, clock=Clock())
    with pytest.raises(ConfigurationError) as error:
        connections.get("acme-bad")
    assert str(error.value).startswith(expected)


def test_a_warm_function_keeps_one_reader_per_path_across_invocations(ssm: CountingSsm) -> None:
    forget_deployed_connections()
    # given two invocations, each building its settings and connections afresh from the environment
    first = load_connections(Settings.from_env({"REPORTRELAY_CONNECTIONS_PATH": PATH + "/"}))
    second = load_connections(Settings.from_env({"REPORTRELAY_CONNECTIONS_PATH": PATH}))
    # then they share the process's reader of that path (and its cache), whatever the trailing slash
    assert isinstance(first, ParameterStoreConnections)
    assert first is second is deployed_connections(PATH)
    # and the local runner, starting on a fresh emulated account, starts with a fresh one
    forget_deployed_connections()
    assert deployed_connections(PATH) is not first
