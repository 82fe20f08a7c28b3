"""When AWS itself fails: one report queued, one verified object (or none), no upload left open, one outcome
event, and a job store that agrees, whatever fails on the AWS side.

Each case arms one fault (tests/aws_faults.py: botocore hooks on the functions' own calls, Lambda dying or
answering an invocation with its own error), runs one job through statemachines/report.asl.json on the
local AWS emulation against a provider simulator, and checks the five promises. Cases run one after the
other (the faults are process-wide), in one emulated deployment. docs/reliability.md lists them.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reportrelay import executions
from reportrelay.jobs import JobState, execution_arn_for
from reportrelay.runtime import Runtime
from reportrelay.transfer import same_checksum
from reportrelay_cli.local.aws import LocalAws
from tests.api.conftest import ACCESS_POLICY, JobApi
from tests.aws_faults import (
    Armed,
    aws_call_answers,
    aws_call_fails,
    dies_after_call,
    dies_after_queue_call,
    held_at,
    lambda_error_after_invoke,
)
from tests.conftest import STATE_RETRY_SCALE, describe_when_ended, state_retries_scaled, write_connections
from tests.faults.kits import KITS
from tests.iam.recording import recording

PROVIDERS = ("devexpress", "torus", "metric_insights")
SECRET_NAME = "awsfaults/devexpress"  # DevExpress's password is in Secrets Manager, as deployed
Arm = Callable[["Deployment"], AbstractContextManager[Any]]


@dataclass(frozen=True)
class AwsFault:
    name: str
    what: str  # one line for docs/reliability.md
    provider: str
    arm: Arm
    expect: str | None = None  # None: Report Ready; else the Report Failed error code
    via_api: bool = False  # started (and acted on) through the job API


@dataclass
class Deployment:
    aws: LocalAws
    simulators: dict[str, Any]
    api: JobApi


def _call(service: str, operation: str, code: str, status: int = 503, **options: Any) -> Arm:
    return lambda deployment: aws_call_fails(service, operation, code, status, **options)


def _lambda_error(function: str) -> Arm:
    return lambda deployment: lambda_error_after_invoke(deployment.aws, f"reportrelay-{function}")


def _both(*arms: Arm) -> Arm:
    @contextmanager
    def armed(deployment: Deployment) -> Iterator[list[Any]]:
        with ExitStack() as stack:
            yield [stack.enter_context(arm(deployment)) for arm in arms]

    return armed


@contextmanager
def _short_fetch(deployment: Deployment) -> Iterator[Armed]:
    """Fetch's function gets 16 s: with a 1 s read timeout and 15 s to spare, no time to download."""
    lambdas = deployment.aws.client("lambda")
    lambdas.update_function_configuration(FunctionName="reportrelay-fetch", Timeout=16)
    try:
        yield Armed(fired=1)
    finally:
        lambdas.update_function_configuration(FunctionName="reportrelay-fetch", Timeout=900)


CASES = (
    AwsFault(
        "s3_slowdown_on_upload_part",
        "S3 answers SlowDown (503) to UploadPart",
        "devexpress",
        _call("s3", "UploadPart", "SlowDown"),
    ),
    AwsFault(
        "s3_500_on_upload_part",
        "S3 answers InternalError (500) to UploadPart",
        "torus",
        _call("s3", "UploadPart", "InternalError", 500),
    ),
    AwsFault(
        "s3_slowdown_on_completion",
        "S3 answers SlowDown to CompleteMultipartUpload",
        "devexpress",
        _call("s3", "CompleteMultipartUpload", "SlowDown"),
    ),
    AwsFault(
        "s3_500_after_completion",
        "S3 completes the upload, then its answer is a 500",
        "metric_insights",
        _call("s3", "CompleteMultipartUpload", "InternalError", 500, after_it_happened=True),
    ),
    AwsFault(
        "fetch_dies_after_completion",
        "Fetch's function dies right after the upload completed",
        "metric_insights",
        lambda deployment: dies_after_call("s3", "CompleteMultipartUpload"),
    ),
    AwsFault(
        "s3_slowdown_on_the_checksum_step",
        "Fetch dies after completing, then S3 answers SlowDown to the checksum look-up of the retry",
        "devexpress",
        _both(
            lambda deployment: dies_after_call("s3", "CompleteMultipartUpload"),
            _call("s3", "GetObjectAttributes", "SlowDown"),
        ),
    ),
    AwsFault(
        "submit_dies_after_the_queue_call",
        "Submit's function dies after the vendor queued the report (Torus: found in its queue)",
        "torus",
        lambda deployment: dies_after_queue_call(),
    ),
    AwsFault(
        "submit_dies_after_the_queue_call_unfindable",
        "Submit's function dies after the vendor queued the report (DevExpress: cannot be looked up)",
        "devexpress",
        lambda deployment: dies_after_queue_call(),
        expect="SubmitUncertain",
    ),
    *(
        AwsFault(
            f"lambda_service_exception_after_{function}",
            f"Lambda.ServiceException after a successful {function} invocation",
            "devexpress",
            _lambda_error(function),
        )
        for function in ("submit", "check", "fetch", "conclude")
    ),
    AwsFault(
        "dynamodb_throttled",
        "DynamoDB throttles three job store writes",
        "devexpress",
        _call("dynamodb", "UpdateItem", "ProvisionedThroughputExceededException", 400, times=3),
    ),
    AwsFault(
        "secrets_manager_throttled",
        "Secrets Manager throttles reading the connection's password",
        "devexpress",
        _call("secrets-manager", "GetSecretValue", "ThrottlingException", 400),
    ),
    AwsFault(
        "kms_throttled",
        "KMS throttles opening the sealed session token in Check",
        "metric_insights",
        _call("kms", "Decrypt", "ThrottlingException", 400, function="check"),
    ),
    AwsFault(
        "put_events_fails",
        "EventBridge answers PutEvents with InternalFailure (500) when Conclude announces",
        "devexpress",
        _call("eventbridge", "PutEvents", "InternalFailure", 500, function="conclude"),
    ),
    AwsFault(
        "put_events_failed_entry",
        "EventBridge answers PutEvents with FailedEntryCount 1",
        "torus",
        lambda deployment: aws_call_answers(
            "eventbridge",
            "PutEvents",
            {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "injected"}],
            },
            function="conclude",
        ),
    ),
    AwsFault(
        "put_events_fails_for_a_failed_job",
        "PutEvents fails when Conclude announces a Report Failed",
        "devexpress",
        _both(
            lambda deployment: dies_after_queue_call(),
            _call("eventbridge", "PutEvents", "InternalFailure", 500, function="conclude"),
        ),
        expect="SubmitUncertain",
    ),
    AwsFault(
        "fetch_out_of_time",
        "Fetch's function has less time left than a download needs",
        "devexpress",
        _short_fetch,
    ),
    AwsFault(
        "cancel_while_fetch_runs",
        "the job is cancelled through the API while Fetch is storing the report",
        "devexpress",
        lambda deployment: held_at("s3", "UploadPart", function="fetch"),
        expect="Cancelled",
        via_api=True,
    ),
)


def _connections(simulators: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    bodies: dict[str, Any] = {}
    environment: dict[str, str] = {}
    for provider in PROVIDERS:
        body, values = KITS[provider].connection(simulators[provider], f"awsfaults-{provider}")
        environment.update(values)
        bodies[provider] = {
            **body,
            "teams": ["finance"],
            "timeouts": {"connect_seconds": 2, "read_seconds": 1},
            "poll": {"initial_seconds": 1, "max_seconds": 2},
        }
    bodies["devexpress"]["auth"] = {
        **bodies["devexpress"]["auth"],
        "password": {"secret": SECRET_NAME, "key": "password"},
    }
    return bodies, environment


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    directory: Path = tmp_path_factory.mktemp("awsfaults")
    with ExitStack() as stack:
        simulators = {
            provider: stack.enter_context(KITS[provider].make_simulator()) for provider in PROVIDERS
        }
        connections, values = _connections(simulators)
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        for name, value in values.items():
            patch.setenv(name, value)
        path = write_connections(directory, connections)
        stack.enter_context(recording())  # names the function making each AWS call, for the faults
        stack.enter_context(state_retries_scaled(STATE_RETRY_SCALE))
        aws = stack.enter_context(
            LocalAws(
                {
                    "REPORTRELAY_CONNECTIONS_FILE": str(path),
                    "REPORTRELAY_ACCESS": json.dumps(ACCESS_POLICY),
                    "POWERTOOLS_LOG_LEVEL": "ERROR",
                }
            )
        )
        (password,) = [value for name, value in values.items() if "DEVEXPRESS_PASSWORD" in name]
        aws.client("secretsmanager").create_secret(
            Name=SECRET_NAME, SecretString=json.dumps({"password": password})
        )
        yield Deployment(aws, simulators, JobApi(aws))


@dataclass(frozen=True)
class Outcome:
    job_id: str
    status: str
    queued: int  # reports the vendor queued for this job
    events: list[dict[str, Any]]
    objects: list[dict[str, Any]]  # every version under the job's key prefix
    open_uploads: list[dict[str, Any]]
    job: Any
    fired: bool


def _fired(armed: Any) -> bool:
    if isinstance(armed, list):
        return all(_fired(each) for each in armed)
    if isinstance(armed, tuple):  # held_at: (reached, release)
        return armed[0].is_set()
    return bool(armed.fired)


def run_case(deployment: Deployment, case: AwsFault) -> Outcome:
    aws, kit = deployment.aws, KITS[case.provider]
    simulator = deployment.simulators[case.provider]
    before = kit.queued(simulator)
    request = kit.request(case.provider)
    with case.arm(deployment) as armed:
        if case.via_api:
            job_id = deployment.api.start(request)
            reached, release = armed
            assert reached.wait(timeout=60), "Fetch never reached S3"
            with pytest.MonkeyPatch.context() as patch:
                # AWS stops an execution at once, while its Fetch keeps running; moto stops it only when
                # the task returns, which the held Fetch will not do until released.
                patch.setattr(executions, "settled_status", lambda sfn, execution_arn: "ABORTED")
                cancelled = deployment.api("DELETE", f"/reports/{job_id}")
            assert cancelled.status == 200, cancelled.body
            release.set()  # the Fetch goes on, after the job was recorded as cancelled
            execution = execution_arn_for(aws.state_machine_arn, job_id)
        else:
            job_id = str(uuid.uuid4())
            execution = aws.start({**request, "team": "finance"}, job_id=job_id)
        status = describe_when_ended(aws, [execution], timeout_seconds=180)[execution]["status"]
        _wait_for_fetch_to_settle(aws, job_id)
    fired = _fired(armed)
    if hasattr(aws, "sweep"):
        aws.sweep()  # what the five-minute sweep would announce by now
    s3 = aws.client("s3")
    versions = s3.list_object_versions(Bucket=aws.bucket, Prefix=f"finance/{job_id}/").get("Versions", [])
    store = Runtime.from_env().jobs
    assert store is not None
    return Outcome(
        job_id=job_id,
        status=status,
        queued=kit.queued(simulator) - before,
        events=[event for event in aws.events() if event["detail"].get("job_id") == job_id],
        objects=versions,
        open_uploads=s3.list_multipart_uploads(Bucket=aws.bucket).get("Uploads", []),
        job=store.get(job_id),
        fired=fired,
    )


def _wait_for_fetch_to_settle(aws: LocalAws, job_id: str, seconds: float = 10) -> None:
    """A Fetch cancelled under it keeps running, as in Lambda: give it time to finish what it does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not aws.client("s3").list_multipart_uploads(Bucket=aws.bucket).get("Uploads"):
            return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def outcomes(deployment: Deployment) -> dict[str, Outcome]:
    return {case.name: run_case(deployment, case) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_an_aws_fault_keeps_every_promise(
    deployment: Deployment, outcomes: dict[str, Outcome], case: AwsFault
) -> None:
    outcome = outcomes[case.name]
    # given the fault really happened
    assert outcome.fired, f"{case.name}: the fault was never triggered"
    # then at most one report was queued at the vendor
    assert outcome.queued <= 1, f"{case.name}: {outcome.queued} reports queued"
    # and no multipart upload is left open
    assert outcome.open_uploads == []
    # and exactly one outcome event was delivered, the one the case expects
    assert len(outcome.events) == 1, [event["detail-type"] for event in outcome.events]
    (event,) = outcome.events
    detail = event["detail"]
    if case.expect is None:
        assert event["detail-type"] == "Report Ready", detail["error"]
        # exactly one object, verified: its bytes are the event's SHA-256 and S3's checksum is the event's
        (version,) = outcome.objects
        stored = detail["object"]
        assert version["Key"] == stored["key"] and version["Size"] == stored["size"]
        s3 = deployment.aws.client("s3")
        content = s3.get_object(Bucket=stored["bucket"], Key=stored["key"])["Body"].read()
        assert hashlib.sha256(content).hexdigest() == stored["sha256"]
        attributes = s3.get_object_attributes(
            Bucket=stored["bucket"], Key=stored["key"], ObjectAttributes=["Checksum"]
        )
        assert same_checksum(attributes["Checksum"]["ChecksumCRC64NVME"], stored["checksum_crc64nvme"])
        # and the job store agrees
        assert outcome.job.state is JobState.READY and outcome.job.object == stored
    else:
        assert event["detail-type"] == "Report Failed", detail
        assert detail["error"]["code"] == case.expect, detail["error"]
        assert outcome.objects == [], outcome.objects
        assert outcome.job.state in (JobState.FAILED, JobState.CANCELLED) and outcome.job.object is None


def test_every_case_is_in_the_reliability_document() -> None:
    text = (Path(__file__).parents[2] / "docs" / "reliability.md").read_text(encoding="utf-8")
    missing = [case.name for case in CASES if f"`{case.name}`" not in text]
    assert missing == [], f"docs/reliability.md's AWS-faults table lacks {missing}"
