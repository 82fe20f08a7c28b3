"""Fixtures shared by every test tier: simulators over real HTTP, emulated AWS, connection files."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _pytest.nodeid import NodeId
from hypothesis import settings

from reportrelay.auth import forget_cached_tokens
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.sandbox.devexpress import DevExpressSimulator
from tests.clock import SkippingClock

pytest_plugins = ("tests.s3server",)  # the s3_server and s3_bucket fixtures (SeaweedFS)

# Hypothesis fails an example that takes over 200 ms; with the suite's workers sharing two cores that
# measures the machine's load, not the code, so examples have no wall-clock deadline (tests may set one).
settings.register_profile("reportrelay", deadline=None)
settings.load_profile("reportrelay")

DX_PASSWORD = "dx-Secret-Passw0rd-1f9c"
#: The share of each state machine Retry interval the fault tests wait (``state_retries_scaled``).
STATE_RETRY_SCALE = 0.2
TESTS = Path(__file__).resolve().parent

#: Each folder's tier (markers registered in pyproject.toml; `make unit`, `make pr`, ... select by them).
TIERS = {
    "unit": "unit",
    "providers": "contract",
    "contract": "contract",
    "workflow": "workflow",
    "iam": "workflow",
    "awsfaults": "workflow",
    "infra": "infra",
    "faults": "faults",
    "api": "api",
    "cli": "cli",
}
#: Tiers whose tests all go to one pytest-xdist worker: each worker that synthesizes a CDK app starts a
#: jsii kernel (node, loading aws-cdk-lib: about 3 s of CPU), so the CDK tests share one.
ONE_WORKER_TIERS = {"infra"}
#: The order the tiers start in: pytest-xdist hands out work in collection order, so the long ones (a
#: fault matrix, an executed job) go first and the many short unit tests fill the workers in at the end,
#: instead of a minute-long test starting last on one worker while the others are done.
TIER_ORDER = ("faults", "workflow", "infra", "api", "cli", "contract", "unit")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test's tier, group the tests that share state, and start the long tiers first."""
    start: dict[int, int] = {}
    for item in items:
        tier = _tier(item)
        item.add_marker(tier)
        if tier in ONE_WORKER_TIERS:
            item.add_marker(pytest.mark.xdist_group(tier))
        start[id(item)] = TIER_ORDER.index(tier)
    items.sort(key=lambda item: start[id(item)])  # stable: a module's tests stay together
    _group_shared_fixtures(items)
    if getattr(config.option, "loadgroup", False):  # a pytest-xdist worker of a --dist loadgroup run
        _name_groups_in_node_ids(items)


def _name_groups_in_node_ids(items: list[pytest.Item]) -> None:
    """Append each test's xdist_group to its node id (``...@group``), which is how --dist loadgroup sends a
    group to one worker. pytest-xdist 3.8 sets ``item._nodeid`` for this, which pytest 9 no longer reads
    (the id is ``item._id``), so its groups silently did nothing; this sets the id pytest reads."""
    for item in items:
        groups = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group") if mark.args})
        suffix = f"@{'_'.join(groups)}"
        if groups and not item.nodeid.endswith(suffix):  # (a later pytest-xdist may append it itself)
            item._id = NodeId.parse(item.nodeid + suffix)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse duplicate node ids: pytest-xdist runs one test per id, so the others would silently not run."""
    counted = Counter(item.nodeid for item in session.items)
    duplicates = sorted(nodeid for nodeid, count in counted.items() if count > 1)
    if duplicates:
        raise pytest.UsageError(
            f"{len(duplicates)} node id(s) name more than one test, so a parallel run would run only one "
            f"of each; give each its own id (pytest.param(..., id=...)): {', '.join(duplicates[:10])}"
        )


def _tier(item: pytest.Item) -> str:
    """The tier of the folder under tests/ the test is in; a folder not in ``TIERS`` is an error."""
    parts = item.path.resolve().relative_to(TESTS).parts
    tier = TIERS.get(parts[0]) if len(parts) > 1 else None
    if tier is None:
        raise pytest.UsageError(
            f"{item.nodeid}: tests/{parts[0] if len(parts) > 1 else ''} has no tier; add the folder to "
            f"TIERS in tests/conftest.py"
        )
    return tier


def _group_shared_fixtures(items: list[pytest.Item]) -> None:
    """Send tests that share a fixture instance (module, class or session scope: a simulator, a synthesized
    stack, a SeaweedFS server, a fault matrix) to one xdist worker, so it is built once, not once per
    worker. Sharing is transitive: tests linked through any chain of shared fixtures form one group."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    shared = {item.nodeid: _shared_fixture_instances(item) for item in items}
    for keys in shared.values():
        for key in keys[1:]:
            first, other = sorted((root(keys[0]), root(key)))
            parent[other] = first  # each group is named after its first key: the same in every worker
    for item in items:
        keys = shared[item.nodeid]
        if keys and not any(item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(root(keys[0])))


def _shared_fixture_instances(item: pytest.Item) -> list[str]:
    """One key per instance of a fixture of ours (defined under tests/) wider than the test it serves."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    params = getattr(getattr(item, "callspec", None), "params", {})
    keys = []
    for name in info.names_closure:
        definitions = info.name2fixturedefs.get(name)
        if not definitions or definitions[-1].scope == "function":
            continue
        fixture = definitions[-1]
        if not Path(fixture.func.__code__.co_filename).resolve().is_relative_to(TESTS):
            continue  # pytest's and plugins' own (tmp_path_factory, worker_id): cheap, and shared by all
        here = item.path.resolve().relative_to(TESTS)
        where = {"session": "tests", "package": str(here.parent), "module": str(here)}.get(
            fixture.scope, f"{here}::{getattr(item.cls, '__name__', '')}"
        )
        param = f"({params[name]!r})" if name in params else ""
        # no '@' or brackets: loadgroup reads the group from the node id, after its last '@'
        keys.append(re.sub(r"[@\[\]]", "_", f"{where}::{name}{param}"))
    return keys


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    forget_cached_tokens()
    yield
    forget_cached_tokens()


@pytest.fixture
def vendor_clock() -> SkippingClock:
    """The simulators' wall clock, which a test moves on past a report's generation instead of sleeping."""
    return SkippingClock()


@pytest.fixture
def devexpress_sim(vendor_clock: SkippingClock):
    with DevExpressSimulator(
        users={"api": DX_PASSWORD}, generation_seconds=0.5, clock=vendor_clock
    ) as simulator:
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
    """Each execution's description, taken once it ended (or, for those still running, when time is up).

    Each look is one ListExecutions of what is still running, however many executions are waited for: a
    DescribeExecution of each, every half second, kept a fifth of a core busy while the fault matrix's
    hundred-odd jobs ran. The looks start a tenth of a second apart, for short jobs, and grow to half a
    second apart."""
    sfn = aws.client("stepfunctions")
    deadline = time.monotonic() + timeout_seconds
    machines = {_state_machine_of(arn) for arn in executions}
    pause = 0.1
    while True:
        running = {
            execution["executionArn"]
            for machine in machines
            for page in sfn.get_paginator("list_executions").paginate(
                stateMachineArn=machine, statusFilter="RUNNING"
            )
            for execution in page["executions"]
        }
        if running.isdisjoint(executions) or time.monotonic() >= deadline:
            return {arn: sfn.describe_execution(executionArn=arn) for arn in executions}
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)


def _state_machine_of(execution_arn: str) -> str:
    """``arn:aws:states:<region>:<account>:execution:<machine>:<name>`` -> the machine's ARN."""
    prefix, _, rest = execution_arn.partition(":execution:")
    return f"{prefix}:stateMachine:{rest.rpartition(':')[0]}"


@contextmanager
def state_retries_scaled(scale: float) -> Iterator[None]:
    """The emulated state machine waits ``scale`` of each Retry interval (moto's retrier sleeps in-line), for
    tests that check which outcome a fault ends in, not how long the state machine's backoff lasts."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    class ScaledTime:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            time.sleep(seconds * scale)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(retrier_decl, "time", ScaledTime())
        yield
