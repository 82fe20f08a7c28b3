"""Every fault x every provider through the state machine: the right file, or Report Failed saying why.

For each case: the outcome (Report Ready with bytes whose SHA-256 is what the simulator served, or
Report Failed with the expected code and the words that say what happened), nothing stored under the
job's prefix except the one final object, no open multipart upload, at most one report queued at the
provider (more only where a single-use result forces a restart), and an execution that ended within its
deadline. The secret-hygiene tests then search everything the whole matrix left behind for its secrets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from reportrelay.timestamps import parse_timestamp
from reportrelay.transfer import same_checksum
from reportrelay.workflow import MAX_RESTARTS
from reportrelay_cli.sandbox.server import sha256_hex
from tests.faults.kits import SECRET_MARK
from tests.faults.matrix import CASES, MatrixRun, run_matrix, stored_bytes


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixRun]:
    yield from run_matrix(CASES, tmp_path_factory.mktemp("fault-matrix"))


def _entered(matrix: MatrixRun, arn: str, state: str) -> list[dict[str, Any]]:
    history = matrix.aws.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)
    return [
        event
        for event in history["events"]
        if event["type"].endswith("StateEntered") and event["stateEnteredEventDetails"]["name"] == state
    ]


def _state_entries(matrix: MatrixRun, arn: str, state: str) -> int:
    return len(_entered(matrix, arn, state))


def _checks_past_the_deadline(matrix: MatrixRun, arn: str) -> int:
    """How many status checks began once the job's deadline had passed (on the functions' clock)."""
    checks = _entered(matrix, arn, "Check")
    if not checks:
        return 0
    job = json.loads(checks[0]["stateEnteredEventDetails"]["input"])["job"]
    deadline = parse_timestamp(job["deadline_at"])
    assert deadline is not None, job
    return sum(1 for check in checks if matrix.clock_at(check["timestamp"]) >= deadline)


@pytest.mark.parametrize("case_id", [case.id for case in CASES])
def test_fault_ends_in_the_right_file_or_a_failure_that_says_why(matrix: MatrixRun, case_id: str) -> None:
    result = matrix.results[case_id]
    case, expect, simulator = result.case, result.case.expect, result.simulator
    # then the execution ended, and announced its outcome
    assert result.execution["status"] != "RUNNING", f"{case_id} still running after {matrix.seconds:.0f}s"
    assert result.event is not None, f"{case_id}: no completion event"
    detail = result.event["detail"]
    if expect.ready:
        assert result.event["detail-type"] == "Report Ready", detail["error"]
        assert result.execution["status"] == "SUCCEEDED"
        stored = detail["object"]
        content = stored_bytes(matrix.aws, stored)
        # the stored bytes, the event and S3's own checksum of the object agree, and are what the
        # simulator served
        assert sha256_hex(content) == stored["sha256"] and len(content) == stored["size"]
        assert stored["sha256"] in simulator.served.values()
        attributes = matrix.aws.client("s3").get_object_attributes(
            Bucket=stored["bucket"], Key=stored["key"], ObjectAttributes=["Checksum", "ObjectSize"]
        )
        assert same_checksum(attributes["Checksum"]["ChecksumCRC64NVME"], stored["checksum_crc64nvme"])
        assert [each["Key"] for each in result.objects] == [stored["key"]]
    else:
        assert result.event["detail-type"] == "Report Failed", detail
        assert result.execution["status"] == "FAILED"
        assert detail["object"] is None
        error = detail["error"]
        assert error["code"] == expect.code, error
        for words in expect.words:
            assert words in error["message"], error
        assert result.objects == []
    # no report queued twice (unless a single-use result was lost and the report generated afresh)
    queued = case.kit.queued(simulator)
    submits = _state_entries(matrix, result.execution_arn, "Submit")
    if expect.code == "BadRequest":
        assert queued == 0 and not simulator.request_log  # refused before any call to the provider
    elif case.kit.restarts_on_lost_result:
        assert queued <= submits <= 1 + MAX_RESTARTS
    else:
        assert submits == 1 and queued <= 1
    # and a job given a deadline ran until it (on the functions' clock, which skips that wait once every
    # other case has ended), and noticed it at its first status check past it: one capped wait, however
    # loaded the machine (the others' 24 h cannot be reached in this run)
    if case.deadline is not None:
        assert result.seconds >= case.deadline - 1, result.seconds  # to the second: dates in milliseconds
        assert _checks_past_the_deadline(matrix, result.execution_arn) <= 1


def test_no_multipart_upload_is_left_open(matrix: MatrixRun) -> None:
    s3 = matrix.aws.client("s3")
    assert s3.list_multipart_uploads(Bucket=matrix.aws.bucket).get("Uploads", []) == []


# ---- secret hygiene: the whole matrix ran with recognisable secrets; none may show up anywhere


def _credentials_sent(matrix: MatrixRun) -> set[str]:
    """Every credential the simulators saw: configured secrets, and the tokens issued for them."""
    found = set(matrix.environment.values())
    for result in matrix.results.values():
        for entry in result.simulator.request_log:
            for name in ("Authorization", "Token"):
                value = entry.headers.get(name)
                if value:
                    found.add(value.split(" ", 1)[-1].strip())
            found.update(value for key, value in entry.query.items() if key == "token")
        sessions = getattr(result.simulator, "session_list", None)
        if sessions is not None:  # Metric Insights download session tokens travel sealed, never in clear
            found.update(session.token for session in sessions())
    found |= {quote(value, safe="") for value in found} | {quote(value) for value in found}
    return {value for value in found if len(value) >= 8}


def _assert_clean(text: str, matrix: MatrixRun, where: str) -> None:
    assert SECRET_MARK not in text, f"a secret value appears in {where}"
    leaked = [value for value in _credentials_sent(matrix) if value in text]
    assert not leaked, f"{len(leaked)} credential(s) appear in {where}"


def test_no_secret_in_execution_history(matrix: MatrixRun) -> None:
    sfn = matrix.aws.client("stepfunctions")
    texts = []
    for result in matrix.results.values():
        history = sfn.get_execution_history(executionArn=result.execution_arn, maxResults=1000)
        texts.append(json.dumps(history, default=str))
        texts.append(json.dumps(sfn.describe_execution(executionArn=result.execution_arn), default=str))
    _assert_clean("\n".join(texts), matrix, "the execution history")


def test_no_secret_in_events(matrix: MatrixRun) -> None:
    assert len(matrix.events) >= len(matrix.results)
    _assert_clean(json.dumps(matrix.events, default=str), matrix, "the events")


def test_no_secret_in_stored_objects_metadata_or_tags(matrix: MatrixRun) -> None:
    s3 = matrix.aws.client("s3")
    texts = []
    for item in s3.list_objects_v2(Bucket=matrix.aws.bucket).get("Contents", []):
        texts.append(json.dumps(s3.head_object(Bucket=matrix.aws.bucket, Key=item["Key"]), default=str))
        texts.append(json.dumps(s3.get_object_tagging(Bucket=matrix.aws.bucket, Key=item["Key"])))
        attributes = s3.get_object_attributes(
            Bucket=matrix.aws.bucket, Key=item["Key"], ObjectAttributes=["Checksum", "ObjectSize"]
        )
        texts.append(json.dumps(attributes, default=str))
    assert texts, "the matrix stored no object at all"
    _assert_clean("\n".join(texts), matrix, "the stored objects' metadata or tags")


def test_no_secret_in_the_job_store(matrix: MatrixRun) -> None:
    dynamodb = matrix.aws.client("dynamodb")
    items = dynamodb.scan(TableName=matrix.aws.jobs_table)["Items"]
    items += dynamodb.scan(TableName=matrix.aws.claims_table)["Items"]
    _assert_clean(json.dumps(items, default=str), matrix, "the job store")


def test_no_secret_in_the_logs(matrix: MatrixRun) -> None:
    assert matrix.log_records, "no log record was captured"
    _assert_clean("\n".join(matrix.log_records), matrix, "the logs")


def test_failure_messages_quote_no_url_query(matrix: MatrixRun) -> None:
    for result in matrix.results.values():
        if result.event and result.event["detail"]["error"]:
            message: Any = result.event["detail"]["error"]["message"]
            assert not re.search(r"\?\S*token=", message), message
