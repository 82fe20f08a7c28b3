"""The vendor contract: what every vendor of the registry must do, run once per vendor through the state
machine against its simulator, from the same kits as the fault matrix (tests/faults/kits.py).

Per vendor: a report is queued, checked and fetched into S3 byte for byte, announced once and recorded
once; a request the vendor cannot serve (a format it does not offer, a report field it does not know) is
refused in words naming the field before any call reaches the vendor, and announced as failed. The
contract's fault half is the fault matrix (tests/faults/test_fault_matrix.py), every fault for every
vendor it applies to; a vendor added to the registry without a kit fails both, naming it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from reportrelay.jobs import DynamoDbJobs, JobState
from reportrelay.vendors import VENDORS
from tests.faults.kits import KITS, Kit
from tests.faults.matrix import READY, Case, Expect, Fault, MatrixRun, run_matrix, stored_bytes

UNOFFERED_FORMAT = "format-no-vendor-offers"
UNKNOWN_FIELD = "field_no_vendor_knows"


def _nothing(simulator: Any, kit: Kit) -> None:
    """The vendor behaves as documented."""


QUEUED_CHECKED_FETCHED = Fault("queued_checked_fetched", "the documented path", _nothing, lambda kit: READY)
UNOFFERED = Fault(
    "unoffered_format",
    "a format the vendor does not offer",
    _nothing,
    lambda kit: Expect("BadRequest", ("request.format", UNOFFERED_FORMAT, "choose one of")),
    request={"format": UNOFFERED_FORMAT},
)
UNKNOWN = Fault(
    "unknown_report_field",
    "a report field the vendor does not know",
    _nothing,
    lambda kit: Expect("BadRequest", ("request.report", UNKNOWN_FIELD)),
    report=lambda kit: {**kit.report, UNKNOWN_FIELD: "x"},
)
CONTRACT = (QUEUED_CHECKED_FETCHED, UNOFFERED, UNKNOWN)
CASES = tuple(Case(fault, KITS[vendor.key]) for vendor in VENDORS for fault in CONTRACT)


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixRun]:
    yield from run_matrix(CASES, tmp_path_factory.mktemp("contract"), timeout_seconds=300)


def _result(contract: MatrixRun, fault: Fault, vendor: str) -> Any:
    return contract.results[Case(fault, KITS[vendor]).id]


@pytest.mark.parametrize("vendor", [vendor.key for vendor in VENDORS])
def test_a_report_is_queued_checked_fetched_into_s3_and_announced_once(
    contract: MatrixRun, vendor: str
) -> None:
    # given the vendor's documented report, run through the state machine against its simulator
    result = _result(contract, QUEUED_CHECKED_FETCHED, vendor)
    # then the execution succeeded and announced Report Ready once
    events = [event for event in contract.events if result.execution_arn in event.get("resources", [])]
    assert result.execution["status"] == "SUCCEEDED", result.event
    assert [event["detail-type"] for event in events] == ["Report Ready"]
    stored = events[0]["detail"]["object"]
    # and S3 holds exactly the bytes the simulator served, named and typed, under the job's own prefix
    content = stored_bytes(contract.aws, stored)
    assert hashlib.sha256(content).hexdigest() == stored["sha256"] and len(content) == stored["size"]
    assert stored["sha256"] in result.simulator.served.values()
    assert [each["Key"] for each in result.objects] == [stored["key"]]
    assert stored["filename"] and stored["content_type"]
    # and the vendor queued one report, and the job store agrees with the event
    assert result.case.kit.queued(result.simulator) == 1
    job = DynamoDbJobs(contract.aws.jobs_table, lambda: contract.aws.client("dynamodb")).get(
        events[0]["detail"]["job_id"]
    )
    assert job is not None and job.state is JobState.READY and job.object == stored


@pytest.mark.parametrize("fault", [UNOFFERED, UNKNOWN], ids=lambda fault: fault.name)
@pytest.mark.parametrize("vendor", [vendor.key for vendor in VENDORS])
def test_a_request_the_vendor_cannot_serve_is_refused_before_any_call_and_announced(
    contract: MatrixRun, vendor: str, fault: Fault
) -> None:
    # given a request the vendor's own rules refuse
    result = _result(contract, fault, vendor)
    expect = result.case.expect
    # then the job failed as a bad request, in words naming the field, and said so in its event
    assert result.execution["status"] == "FAILED"
    assert result.event is not None and result.event["detail-type"] == "Report Failed"
    error = result.event["detail"]["error"]
    assert error["code"] == expect.code, error
    for words in expect.words:
        assert words in error["message"], error
    # and nothing reached the vendor, and nothing was stored
    assert not result.simulator.request_log
    assert result.objects == []
