"""No secret reaches X-Ray: the functions run with tracing on and every trace entity they emit is searched.

Tracing is configured when ``reportrelay.observability`` is imported (which modules the X-Ray SDK patches,
whether tracing is on at all), so the traced run happens in a fresh Python process started the way Lambda
starts one: ``LAMBDA_TASK_ROOT`` and a sampled ``_X_AMZN_TRACE_ID`` are set before anything is imported.
There, the X-Ray SDK's emitter is replaced by one that keeps every entity it is given, serialized exactly
as it would be sent to the daemon (``python -m tests.workflow.test_trace_secrets OUT.json``).

The run: one job per provider through the state machine (every step, every kind of AWS call, with one
secret read from Secrets Manager), then, per provider, submit succeeds and the provider's server goes
away, so check and fetch fail to connect, as a Metric Insights call with its session token in the query
string (``.../download/state/get?token=...``) fails when its host is unreachable.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The Metric Insights application key is read from Secrets Manager here, so GetSecretValue is traced too.
MI_KEY_SECRET = "reportrelay/trace-test/metric-insights-app-key"


# ---- the traced run (in the child process)


def _lambda_environment() -> dict[str, str]:
    """What Lambda sets for an invocation that X-Ray samples."""
    root = f"1-{secrets.token_hex(4)}-{secrets.token_hex(12)}"
    return {
        "LAMBDA_TASK_ROOT": str(REPO_ROOT / "functions"),
        "AWS_LAMBDA_FUNCTION_NAME": "reportrelay-trace-test",
        "_X_AMZN_TRACE_ID": f"Root={root};Parent={secrets.token_hex(8)};Sampled=1",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


def _keeping_emitter() -> Any:
    from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter

    class KeepingEmitter(UDPEmitter):
        """Keeps each entity as the JSON the daemon would receive, instead of sending it."""

        def __init__(self) -> None:
            super().__init__()
            self.sent: list[str] = []
            self._lock = threading.Lock()

        def send_entity(self, entity: Any) -> None:
            with self._lock:
                self.sent.append(entity.serialize())

    return KeepingEmitter()


def _credentials_seen(simulators: dict[str, Any], configured: set[str]) -> set[str]:
    """Every credential the simulators saw or issued, as written and as URL-encoded."""
    found = set(configured)
    for simulator in simulators.values():
        for entry in simulator.request_log:
            for name in ("Authorization", "Token"):
                value = entry.headers.get(name)
                if value:
                    found.add(value.split(" ", 1)[-1].strip())
            found.update(value for key, value in entry.query.items() if key == "token")
        sessions = getattr(simulator, "session_list", None)
        if sessions is not None:
            found.update(session.token for session in sessions())
    found |= {quote(value, safe="") for value in found} | {quote(value) for value in found}
    return {value for value in found if len(value) >= 8}


def traced_run(out: Path) -> None:
    from aws_xray_sdk.core import xray_recorder

    emitter = _keeping_emitter()
    xray_recorder.configure(emitter=emitter, sampling=False)

    # Cold start: the functions' modules are imported before any invocation, as Lambda does.
    import reportrelay.handlers.check
    import reportrelay.handlers.fetch
    import reportrelay.handlers.submit
    from reportrelay_cli.local.aws import LambdaContext, LocalAws
    from tests.conftest import wait_for_executions, write_connections
    from tests.faults.kits import KITS

    with ExitStack() as stack:
        simulators = {name: stack.enter_context(kit.make_simulator()) for name, kit in KITS.items()}
        connections, environment = {}, {}
        for name, kit in KITS.items():
            connections[name], values = kit.connection(simulators[name], name)
            environment.update(values)
        mi_key_env = connections["metric_insights"]["auth"]["application_key"]["env"]
        connections["metric_insights"]["auth"]["application_key"] = {"secret": MI_KEY_SECRET}
        os.environ.update(environment)
        path = write_connections(out.parent, connections)
        aws = stack.enter_context(LocalAws({"REPORTRELAY_CONNECTIONS_FILE": str(path)}))
        secretsmanager = aws.client("secretsmanager")
        secretsmanager.create_secret(Name=MI_KEY_SECRET, SecretString=environment[mi_key_env])
        link_key = secretsmanager.get_secret_value(
            SecretId=aws.function_environment["REPORTRELAY_LINK_KEY_SECRET"]
        )

        def request(name: str) -> dict[str, Any]:
            return KITS[name].request(name)

        # every provider, end to end
        executions = [aws.start(request(name)) for name in KITS]
        statuses = dict(zip(KITS, wait_for_executions(aws, executions, timeout_seconds=120), strict=True))

        # every provider: submitted, then its server is gone, so check and fetch cannot connect
        errors: dict[str, list[str]] = {}
        for name in KITS:
            job = {"job_id": str(uuid.uuid4()), "accepted_at": datetime.now(UTC).isoformat()}
            arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
            state = reportrelay.handlers.submit.handler(
                {"request": request(name), "job": job}, LambdaContext(name, arn, str(uuid.uuid4()))
            )
            simulators[name].stop()
            for step in (reportrelay.handlers.check, reportrelay.handlers.fetch):
                try:
                    step.handler(state, LambdaContext(name, arn, str(uuid.uuid4())))
                except Exception as error:
                    errors.setdefault(name, []).append(type(error).__name__)
        credentials = _credentials_seen(simulators, set(environment.values()) | {link_key["SecretString"]})
    result = {
        "entities": emitter.sent,
        "credentials": sorted(credentials),
        "statuses": statuses,
        "errors": errors,
    }
    out.write_text(json.dumps(result), encoding="utf-8")


# ---- the test (in pytest's process)


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("trace") / "trace.json"
    search_path = [
        str(REPO_ROOT / "functions"),
        str(REPO_ROOT / "cli"),
        str(REPO_ROOT),
        os.environ.get("PYTHONPATH", ""),
    ]
    environment = {**os.environ, **_lambda_environment(), "PYTHONPATH": os.pathsep.join(search_path)}
    completed = subprocess.run(
        [sys.executable, "-m", "tests.workflow.test_trace_secrets", str(out)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(out.read_text(encoding="utf-8"))


def _subsegments(entity: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield entity
    for child in entity.get("subsegments", []):
        yield from _subsegments(child)


def _all_subsegments(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [each for text in trace["entities"] for each in _subsegments(json.loads(text))]


def test_the_traced_run_did_what_it_should(trace: dict[str, Any]) -> None:
    # given the run: every job reached its end, every failing step failed as a provider that is unreachable
    assert set(trace["statuses"].values()) == {"SUCCEEDED"}, trace["statuses"]
    assert all("ProviderUnavailable" in names for names in trace["errors"].values()), trace["errors"]
    from tests.faults.kits import KITS

    assert set(trace["errors"]) == set(KITS)  # one entry per vendor
    # and there were credentials to leak, among them Metric Insights download-session tokens
    assert len(trace["credentials"]) > 10


def test_the_trace_records_the_functions_aws_calls_and_their_errors(trace: dict[str, Any]) -> None:
    # given every subsegment emitted
    subsegments = _all_subsegments(trace)
    handlers = {each["id"]: each for each in subsegments if each["name"] == "## handler"}
    # then the functions' own AWS calls are there, by service and operation
    calls = {
        (each["name"], each["aws"]["operation"])
        for each in subsegments
        if each.get("namespace") == "aws" and each.get("parent_id") in handlers
    }
    expected = {("secretsmanager", "GetSecretValue"), ("kms", "Encrypt"), ("kms", "Decrypt")}
    expected |= {("s3", "CompleteMultipartUpload"), ("dynamodb", "UpdateItem"), ("lambda", "Invoke")}
    assert expected <= calls, calls
    # and the failed handlers name their error's type
    types = {
        error["type"] for each in handlers.values() for error in each.get("cause", {}).get("exceptions", [])
    }
    assert "ProviderUnavailable" in types, types


def test_no_secret_in_any_trace_entity(trace: dict[str, Any]) -> None:
    # given every serialized segment and subsegment, as it would be sent to X-Ray
    text = "\n".join(trace["entities"])
    # then no credential appears anywhere, in clear or URL-encoded
    leaked = [value for value in trace["credentials"] if value in text]
    assert not leaked, f"{len(leaked)} credential(s) appear in the trace"
    assert "RRSECRET" not in text, "a configured secret appears in the trace"


if __name__ == "__main__":
    traced_run(Path(sys.argv[1]))
