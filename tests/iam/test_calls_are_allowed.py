"""moto does not enforce IAM; this test does: every AWS call the functions make is checked against the role
the CDK app gives the calling function.

One deployment, synthesized with the same connections the local run uses (every credential in Secrets
Manager, as deployed), runs with every call recorded (tests.iam.recording). The functions read the
connections from SSM Parameter Store under the path the synthesized stack gives them, as deployed
(infra.connections), so their GetParameter calls are checked too; the job API also lists them all
(GetParametersByPath) for a request naming a connection that does not exist. It runs one job per
provider through the state machine (Metric Insights brings the holder and sealed handles; myreports
rotates its refresh token), the job API's routes (start, watch, list, download, share links, cancel),
a scheduled start, an announcement EventBridge refused that the announce-pending sweep sends, a Fetch
run again on a stored job (it recognises the object instead of downloading it), and a report served
in byte ranges fetched over several Fetch invocations (ListParts), whose checkpointed upload Cancel
and Conclude then abort. Each call is then checked, as its IAM action and resource, against the
calling function's synthesized policy (tests.iam.checker).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from contextlib import ExitStack
from types import SimpleNamespace
from typing import Any

import pytest

from infra.connections import connections_path
from reportrelay.awsclients import aws_client
from reportrelay.handlers import cancel, conclude, fetch, start_scheduled  # wrapped while recording
from reportrelay_cli.local.apigateway import ApiAnswer, rest_event
from reportrelay_cli.local.aws import LambdaContext, LocalAws
from reportrelay_cli.sandbox.devexpress import DevExpressSimulator
from tests.api.conftest import ACCESS_POLICY, JobApi
from tests.conftest import wait_for_executions
from tests.faults.kits import KITS, secret
from tests.iam import checker
from tests.iam.checker import Denied, LocalLookups, Policies
from tests.iam.recording import HANDLERS, Call, CallRecorder, recording
from tests.infra.conftest import Synthesized, synthesize_with_connections
from tests.infra.policies import function_role

SECRET_PREFIX = "iam/"
STACK_NAME = "ReportRelayIamCheck"
SLOW = "devexpress-slow"  # a report that takes a minute: the job the API cancels
CAPPED = "devexpress"  # one concurrent job: a second one waits in line for the slot

#: Calls the deployed role denies today: (function, action pattern, resource pattern), with what fixes them.
#: They keep the test green until fixed; an entry no call matches any more fails the test, to be removed.
KNOWN_DENIED: tuple[tuple[str, str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Run:
    synthesized: Synthesized
    resources: dict[str, checker.LocalResource]
    lookups: LocalLookups
    calls: list[Call]

    def denied(self, synthesized: Synthesized | None = None) -> list[Denied]:
        policies = Policies.of(synthesized or self.synthesized, self.resources)
        return policies.denied(self.calls, self.lookups)


def _in_secrets_manager(body: Any, secrets: dict[str, str], environment: dict[str, str]) -> Any:
    """The connection with every ``{"env": NAME}`` credential read from a secret instead, as deployed."""
    if isinstance(body, dict):
        if set(body) == {"env"}:
            name = SECRET_PREFIX + body["env"].removeprefix("FAULTS_").lower()
            secrets[name] = environment[body["env"]]
            return {"secret": name}
        return {key: _in_secrets_manager(value, secrets, environment) for key, value in body.items()}
    return body


class _Host:
    """A stand-in simulator for the deployed copy of a connection: the same settings, a vendor's host."""

    def __init__(self, name: str) -> None:
        self.base_url = f"https://{name.replace('_', '-')}.example"
        self.storage = SimpleNamespace(base_url=f"http://{name.replace('_', '-')}-files.example")


def _connections(simulators: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(local connections, the same as deployed, the secrets both read)."""
    local, deployed, secrets = {}, {}, {}
    for name, kit in {**KITS, SLOW: KITS["devexpress"]}.items():
        kind = kit.provider  # the slow connection signs in with devexpress's secret
        body, environment = kit.connection(simulators[name], kind)
        local[name] = _in_secrets_manager(body, secrets, environment)
        deployed[name] = _in_secrets_manager(kit.connection(_Host(name), kind)[0], {}, environment)
    for name in ("devexpress", SLOW):  # the connections the API tests use
        for connections in (local, deployed):
            connections[name].update(teams=["finance"], share_links=True)
    for connections in (local, deployed):
        connections[CAPPED].update(max_concurrent_jobs=1)
    return local, deployed, secrets


def _request(connection: str) -> dict[str, Any]:
    kit = KITS.get(connection) or KITS["devexpress"]
    request = {"connection": connection, "report": kit.report, "format": kit.format}
    return {**request, "parameters": kit.parameters} if kit.parameters else request


def _api(aws: LocalAws, method: str, path: str, **kwargs: Any) -> ApiAnswer:
    return ApiAnswer.from_result(aws.api(rest_event(method, path, **kwargs)))


def _drive_the_api(aws: LocalAws, recorder: CallRecorder) -> None:
    """Every route that reaches AWS: start, watch, follow the events, list, download, share and follow and
    revoke, cancel."""
    job_api = JobApi(aws)
    recorder.test = "the job API: start, watch, follow the events, list, download, share links"
    job = job_api.wait(job_api.start(_request("devexpress")))
    assert job["state"] == "ready", job
    job_id = job["job_id"]
    assert job_api("GET", f"/reports/{job_id}/events").json()["events"], "the job recorded no activity"
    recorder.test = "the job API: a request naming no deployed connection (lists them all)"
    unknown = job_api("POST", "/reports", body={**_request("devexpress"), "connection": "no-such-connection"})
    message = unknown.json()["message"]
    assert unknown.status == 400 and "unknown connection 'no-such-connection'" in message, unknown.body
    recorder.test = "the job API: start, watch, follow the events, list, download, share links"
    assert job_api("GET", "/reports", query={"connection": "devexpress"}).status == 200
    assert job_api("GET", f"/reports/{job_id}/download").status == 302
    link = job_api("POST", f"/reports/{job_id}/links", body={})
    assert link.status == 201, link.body
    token = link.json()["url"].rsplit("/links/", 1)[1]
    assert _api(aws, "GET", f"/links/{token}", identity=None).status == 302
    assert job_api("DELETE", f"/reports/{job_id}/links/{link.json()['link_id']}").status == 200
    recorder.test = "the job API: cancel a running job"
    running = job_api.start(_request(SLOW))
    job_api.wait_for(running, lambda job: job["queued_at"] is not None)
    cancelled = job_api("DELETE", f"/reports/{running}")
    assert cancelled.status == 200 and cancelled.json()["state"] == "cancelled", cancelled.body


def _start_a_schedule(aws: LocalAws, recorder: CallRecorder) -> None:
    recorder.test = "a schedule fires (start_scheduled)"
    event = {"schedule": "iam-daily", "scheduled_time": "2025-03-01T06:00:00Z"}
    event["request"] = _request("devexpress")
    arn = "arn:aws:lambda:us-east-1:123456789012:function:reportrelay-start-scheduled"
    started = start_scheduled.handler(event, LambdaContext("reportrelay-start-scheduled", arn, "1"))
    assert wait_for_executions(aws, [started["execution_arn"]], timeout_seconds=60) == ["SUCCEEDED"]


def _sweep_the_outbox(aws: LocalAws, recorder: CallRecorder) -> None:
    """A job whose Report Ready EventBridge refused (FailedEntryCount 1), announced by the sweep."""
    recorder.test = "an announcement refused by EventBridge, swept from the outbox (announce_pending)"
    refused = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "no"}]}

    def refuse(**_: Any) -> Any:  # botocore's before-call: an answer here is the call's answer
        return SimpleNamespace(status_code=200, headers={}), refused

    events = aws_client("events")
    events.meta.events.register("before-call.events.PutEvents", refuse, unique_id="iam-refuse")
    try:
        execution = aws.start(_request("devexpress"))
        assert wait_for_executions(aws, [execution], timeout_seconds=60) == ["SUCCEEDED"]
    finally:
        events.meta.events.unregister("before-call.events.PutEvents", unique_id="iam-refuse")
    assert aws.sweep()["announced"] >= 1


def _wait_in_line(aws: LocalAws, recorder: CallRecorder) -> None:
    """Two jobs on a connection with one slot: the second waits in line and is handed the slot."""
    recorder.test = "a job waits in line for a slot and is handed it (wait_for_slot, conclude)"
    executions = [aws.start(_request(CAPPED)) for _ in range(2)]
    assert wait_for_executions(aws, executions, timeout_seconds=60) == ["SUCCEEDED"] * 2
    waited = [
        event
        for execution in executions
        for event in aws.client("stepfunctions").get_execution_history(executionArn=execution)["events"]
        if event.get("stateEnteredEventDetails", {}).get("name") == "WaitForSlot"
    ]
    assert waited, "no job waited in line"


def _fetch_again(aws: LocalAws, recorder: CallRecorder, execution: str) -> None:
    """Run a finished job's Fetch once more on the input it had, as a retry after a lost answer would."""
    recorder.test = "a Fetch run again on a stored job"
    history = aws.client("stepfunctions").get_execution_history(executionArn=execution)["events"]
    (entered,) = [
        json.loads(event["stateEnteredEventDetails"]["input"])
        for event in history
        if event.get("stateEnteredEventDetails", {}).get("name") == "Fetch"
    ]
    arn = "arn:aws:lambda:us-east-1:123456789012:function:reportrelay-fetch"
    again = fetch.handler(entered, LambdaContext("reportrelay-fetch", arn, "2"))
    assert again["job"]["object"]["key"].endswith(".pdf")


def _transfer_over_invocations(aws: LocalAws, recorder: CallRecorder, simulator: Any) -> None:
    """A report served in byte ranges and too big for one Fetch: checkpoints, ListParts, then aborts."""
    recorder.test = "a transfer over several Fetch invocations (ListParts on resume)"
    simulator.faults.serve_ranges = True
    simulator.faults.download_bytes_per_second = 8 * 1024 * 1024
    simulator.report_size = 24 * 1024 * 1024
    lambdas = aws.client("lambda")
    # Fetch stops a read timeout (60 s by default) and 15 s before its end: about 2 s of work each time.
    lambdas.update_function_configuration(FunctionName="reportrelay-fetch", Timeout=77)
    try:
        execution = aws.start(_request("devexpress"))
        assert wait_for_executions(aws, [execution], timeout_seconds=120) == ["SUCCEEDED"]
        history = aws.client("stepfunctions").get_execution_history(executionArn=execution)["events"]
        fetches = [e for e in history if e.get("stateEnteredEventDetails", {}).get("name") == "Fetch"]
        assert len(fetches) >= 2, "the transfer did not span invocations"

        recorder.test = "a checkpointed job cancelled, then concluded as failed: both abort its upload"
        job_id = execution.rsplit(":", 1)[1]
        cancel_arn = "arn:aws:lambda:us-east-1:123456789012:function:reportrelay-cancel"
        cancel.handler({"job_id": job_id}, LambdaContext("reportrelay-cancel", cancel_arn, "3"))
        failed = {
            "request": {**_request("devexpress"), "team": "finance"},
            "job": {"job_id": job_id, "status": "TRANSFERRING"},
            "error": {"Error": "DownloadInterrupted", "Cause": json.dumps({"errorMessage": "broke off"})},
            "execution_arn": execution,
        }
        conclude_arn = "arn:aws:lambda:us-east-1:123456789012:function:reportrelay-conclude"
        conclude.handler(failed, LambdaContext("reportrelay-conclude", conclude_arn, "4"))
    finally:
        lambdas.update_function_configuration(FunctionName="reportrelay-fetch", Timeout=900)
        simulator.faults.serve_ranges = False
        simulator.faults.download_bytes_per_second = None
        simulator.report_size = 64 * 1024


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    directory = tmp_path_factory.mktemp("iam")
    with ExitStack() as stack:
        simulators = {name: stack.enter_context(kit.make_simulator()) for name, kit in KITS.items()}
        simulators["myreports"].rotate_refresh_tokens = True  # PutSecretValue, as a rotating login host does
        simulators[SLOW] = stack.enter_context(
            DevExpressSimulator(users={"api": secret("devexpress", "password")}, generation_seconds=60)
        )
        local, deployed, secrets = _connections(simulators)
        synthesized = synthesize_with_connections(directory / "cdk.out", STACK_NAME, deployed)
        recorder = stack.enter_context(recording())
        aws = stack.enter_context(
            LocalAws(
                {"REPORTRELAY_ACCESS": json.dumps(ACCESS_POLICY), "POWERTOOLS_LOG_LEVEL": "ERROR"},
                connections_in_parameter_store=local,
                connections_path=connections_path(STACK_NAME),
            )
        )
        secretsmanager = aws.client("secretsmanager")
        for name, value in secrets.items():
            secretsmanager.create_secret(Name=name, SecretString=value)

        recorder.test = "one job per provider through the state machine"
        executions = [aws.start(_request(name)) for name in KITS]
        assert wait_for_executions(aws, executions, timeout_seconds=120) == ["SUCCEEDED"] * len(KITS)
        _drive_the_api(aws, recorder)
        _start_a_schedule(aws, recorder)
        _sweep_the_outbox(aws, recorder)
        _wait_in_line(aws, recorder)
        _fetch_again(aws, recorder, executions[list(KITS).index("devexpress")])
        _transfer_over_invocations(aws, recorder, simulators["devexpress"])

        arns = {each["Name"]: each["ARN"] for each in secretsmanager.list_secrets()["SecretList"]}
        lookups = LocalLookups(secret_arn=lambda secret_id: arns.get(secret_id, secret_id))
        resources = checker.local_resources(synthesized, aws.function_environment)
        yield Run(synthesized, resources, lookups, recorder.calls)


def _matches_known(denied: Denied, known: tuple[str, str, str]) -> bool:
    function, action, resource = known
    return (
        denied.call.function == function
        and checker.matches([action], denied.request.action, ignore_case=True)
        and checker.matches([resource], denied.request.resource)
    )


def test_every_function_was_exercised(run: Run) -> None:
    called = {call.handler for call in run.calls}
    assert called == set(HANDLERS), f"never called AWS: {sorted(set(HANDLERS) - called)}"


def test_the_resumed_transfer_and_its_aborts_were_exercised(run: Run) -> None:
    made = {(call.handler.split(".")[-2], call.operation) for call in run.calls}
    aborts = {("cancel", "AbortMultipartUpload"), ("conclude", "AbortMultipartUpload")}
    wanted = {("fetch", "ListParts"), *aborts}
    assert wanted <= made, f"not exercised: {sorted(wanted - made)}"


def test_every_call_is_allowed_by_the_calling_functions_role(run: Run) -> None:
    denied = run.denied()
    known = [each for each in denied if any(_matches_known(each, entry) for entry in KNOWN_DENIED)]
    unexpected = sorted({str(each) for each in denied if each not in known})
    assert not unexpected, "denied in AWS (moto let them through):\n  " + "\n  ".join(unexpected)
    stale = [known for known in KNOWN_DENIED if not any(_matches_known(each, known) for each in denied)]
    assert not stale, f"no longer denied, remove from KNOWN_DENIED: {stale}"


def _without(synthesized: Synthesized, handler: str, action: str) -> Synthesized:
    """The template with ``action`` taken out of every statement of the function's role."""
    template = copy.deepcopy(synthesized.template)
    role = function_role(synthesized, handler)
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy" or {"Ref": role} not in resource["Properties"]["Roles"]:
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            statement["Action"] = [each for each in actions if each != action] or ["none:Nothing"]
    return dataclasses.replace(synthesized, template=template)


@pytest.mark.parametrize(
    ("handler", "action", "operations"),
    [
        (
            "reportrelay.handlers.fetch.handler",
            "s3:PutObject",
            {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"},
        ),
        ("reportrelay.handlers.check.handler", "kms:Decrypt", {"Decrypt"}),
        ("reportrelay.handlers.api.handler", "dynamodb:Query", {"Query"}),
        ("reportrelay.handlers.announce_pending.handler", "events:PutEvents", {"PutEvents"}),
    ],
)
def test_a_permission_taken_away_is_reported_as_denied(
    run: Run, handler: str, action: str, operations: set[str]
) -> None:
    # given the deployed policy with one permission of one function taken away
    taken_away = _without(run.synthesized, handler, action)
    # when the recorded calls are checked against it
    before = {str(each) for each in run.denied()}
    newly = [each for each in run.denied(taken_away) if str(each) not in before]
    # then exactly that function's calls needing that permission are denied now
    assert newly, f"taking {action} from {handler} denied nothing"
    assert {(each.call.handler, each.request.action) for each in newly} == {(handler, action)}
    assert {each.call.operation for each in newly} == operations


def test_an_operation_the_table_does_not_know_fails_the_check(run: Run) -> None:
    call = Call("reportrelay.handlers.fetch.handler", "s3", "ListObjectsV2", {"Bucket": "b"}, "a new call")
    with pytest.raises(checker.UnknownOperation, match="ListObjectsV2"):
        Policies.of(run.synthesized, run.resources).denied([call], run.lookups)
