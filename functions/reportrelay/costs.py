"""What a job costs to run on AWS: its cost drivers, counted as it runs, and an estimate in US dollars.

Each step adds what it used to the job's ``usage`` in the workflow state (``add``): the state
transitions it takes (every state entered is one, as Step Functions bills them; a retried step's failed
attempts are not seen by the step and not counted), one Lambda invocation and its GB-seconds (its
configured memory x how long the step ran), and Fetch's S3 requests (by price class) and the bytes it
stored. Conclude prices the total with ``PRICES`` and puts it in the completion event and the job store.

The estimate is list price in one Region, before free tiers and savings plans; storage is priced for
the first month the report is kept.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class Prices:
    """AWS list prices in US dollars (one Region), and where and when they were read."""

    region: str
    read_on: str
    source: str
    state_transition: float  # Step Functions Standard, per transition
    lambda_request: float  # per invocation
    lambda_gb_second: float  # Arm (the functions' architecture), per GB-second
    s3_put_request: float  # PUT, COPY, POST, LIST (multipart calls included), per request
    s3_get_request: float  # GET, HEAD and the other reads, per request
    s3_gb_month: float  # S3 Standard, first 50 TB, per GB-month


PRICES = Prices(
    region="us-east-1",
    read_on="2026-12-01",
    source="aws.amazon.com/step-functions/pricing, /lambda/pricing, /s3/pricing (US East, N. Virginia)",
    state_transition=0.025 / 1000,
    lambda_request=0.20 / 1_000_000,
    lambda_gb_second=0.0000133334,
    s3_put_request=0.005 / 1000,
    s3_get_request=0.0004 / 1000,
    s3_gb_month=0.023,
)

DRIVERS = (
    "state_transitions",
    "lambda_invocations",
    "lambda_gb_seconds",
    "s3_put_requests",
    "s3_get_requests",
    "s3_bytes_stored",
)

#: S3 operations the transfer makes that are billed as PUT-class requests; any other is a GET-class read.
S3_PUT_CLASS = frozenset(
    {
        "PutObject",
        "CopyObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "ListParts",
        "ListObjectsV2",
    }
)
S3_FREE = frozenset({"AbortMultipartUpload", "DeleteObject"})


def add(job: Mapping[str, Any], **used: float) -> dict[str, Any]:
    """The job with ``used`` added to its usage (names from ``DRIVERS``)."""
    usage = dict(job.get("usage") or {})
    for name, amount in used.items():
        if name not in DRIVERS:
            raise ValueError(f"unknown cost driver {name!r}")
        if amount:
            usage[name] = round(usage.get(name, 0) + amount, 6)
    return {**job, "usage": usage}


def s3_request_class(operation: str) -> str | None:
    """``s3_put_requests``, ``s3_get_requests``, or None for a request S3 does not charge."""
    if operation in S3_FREE:
        return None
    return "s3_put_requests" if operation in S3_PUT_CLASS else "s3_get_requests"


def estimate(usage: Mapping[str, Any], prices: Prices = PRICES) -> dict[str, Any]:
    """The drivers, their price each, and the total, as the event and the job API show them."""
    amounts = {name: usage.get(name, 0) for name in DRIVERS}
    parts = {
        "state_transitions": amounts["state_transitions"] * prices.state_transition,
        "lambda_invocations": amounts["lambda_invocations"] * prices.lambda_request,
        "lambda_gb_seconds": amounts["lambda_gb_seconds"] * prices.lambda_gb_second,
        "s3_put_requests": amounts["s3_put_requests"] * prices.s3_put_request,
        "s3_get_requests": amounts["s3_get_requests"] * prices.s3_get_request,
        "s3_bytes_stored": amounts["s3_bytes_stored"] / GIB * prices.s3_gb_month,
    }
    return {
        **amounts,
        "usd": round(sum(parts.values()), 8),
        "usd_by_driver": {name: round(value, 8) for name, value in parts.items()},
        "prices": {"region": prices.region, "read_on": prices.read_on, "source": prices.source},
    }


_S3_CALLS: contextvars.ContextVar[collections.Counter[str] | None] = contextvars.ContextVar(
    "reportrelay_s3_calls", default=None
)


@contextlib.contextmanager
def counting_s3(s3_client: Any) -> Iterator[collections.Counter[str]]:
    """Count the S3 calls made in this context (and in threads run in a copy of it, as the transfer's
    upload threads are) by operation; other jobs' calls on the same client are not counted."""
    s3_client.meta.events.register("before-call.s3", _count_call, unique_id="reportrelay-costs")
    calls: collections.Counter[str] = collections.Counter()
    token = _S3_CALLS.set(calls)
    try:
        yield calls
    finally:
        _S3_CALLS.reset(token)


def s3_usage(calls: Mapping[str, int]) -> dict[str, int]:
    """``s3_put_requests`` and ``s3_get_requests`` for the calls counted by ``counting_s3``."""
    used: dict[str, int] = {}
    for operation, count in calls.items():
        kind = s3_request_class(operation)
        if kind is not None:
            used[kind] = used.get(kind, 0) + count
    return used


def _count_call(model: Any = None, **_: Any) -> None:
    calls = _S3_CALLS.get()
    if calls is not None and model is not None:
        calls[model.name] += 1
