"""Claims: "this item is mine", decided once, visible to every job.

Some vendors hand back no id when a report is queued (Torus): the adapter then finds its own entry in a
shared queue, and when two jobs queue the same report at once both see the same new entries. A claim
settles which job owns which entry: the first writer wins, and claiming again for the same owner is a
harmless yes, so a step that is retried reaches the same answer.

In AWS the claims live in a DynamoDB table (conditional writes; items expire through a TTL attribute).
``MemoryClaims`` is the same contract inside one process, for tests and single-process tools.

Table layout (for infrastructure code): partition key ``claim`` (string), TTL attribute ``expires_at``
(number, epoch seconds), plus ``owner`` (string) and ``claimed_at`` (number).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from reportrelay.awsclients import aws_client, aws_error_code
from reportrelay.errors import ReportRelayError
from reportrelay.names import CLAIM_KEY_ATTRIBUTE, CLAIM_TTL_ATTRIBUTE, CLAIMS_TABLE_ENV

KEY_ATTRIBUTE = CLAIM_KEY_ATTRIBUTE
TTL_ATTRIBUTE = CLAIM_TTL_ATTRIBUTE
DEFAULT_TTL_SECONDS = 8 * 24 * 3600
"""Longer than any job may run (seven days), so a claim outlives every job that could contest it."""


class ClaimsUnavailable(ReportRelayError):
    """The claim store could not be asked; nothing is known about the claim, so try again later."""

    retryable = True


class ClaimStore(Protocol):
    def claim(self, namespace: str, item_id: str, job_id: str) -> bool:
        """True when ``item_id`` is now (or already was) ``job_id``'s; False when another job has it."""
        ...


class DynamoDbClaims:
    """Claims as DynamoDB items, written only if absent or already ours (a conditional PutItem)."""

    def __init__(
        self,
        table_name: str,
        client: Callable[[], Any],
        *,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._ttl_seconds = ttl_seconds
        self._clock = clock

    def claim(self, namespace: str, item_id: str, job_id: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        now = int(self._clock())
        try:
            self._client().put_item(
                TableName=self.table_name,
                Item={
                    KEY_ATTRIBUTE: {"S": _key(namespace, item_id)},
                    "owner": {"S": job_id},
                    "claimed_at": {"N": str(now)},
                    TTL_ATTRIBUTE: {"N": str(now + self._ttl_seconds)},
                },
                ConditionExpression="attribute_not_exists(#key) OR #owner = :owner",
                ExpressionAttributeNames={"#key": KEY_ATTRIBUTE, "#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": job_id}},
            )
        except ClientError as error:
            code = aws_error_code(error)
            if code == "ConditionalCheckFailedException":
                return False
            raise ClaimsUnavailable(f"claim store {self.table_name} answered {code or 'an error'}") from None
        except BotoCoreError as error:
            raise ClaimsUnavailable(
                f"claim store {self.table_name} could not be reached ({type(error).__name__})"
            ) from None
        return True


class MemoryClaims:
    """The same contract in one process's memory: tests, and tools that run one job at a time."""

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}
        self._lock = threading.Lock()

    def claim(self, namespace: str, item_id: str, job_id: str) -> bool:
        with self._lock:
            owner = self._owners.setdefault(_key(namespace, item_id), job_id)
        return owner == job_id

    @property
    def owners(self) -> dict[str, str]:
        """Claim key -> owner, for tests to inspect."""
        with self._lock:
            return dict(self._owners)


def claims_from_env(environ: Mapping[str, str] | None = None) -> ClaimStore | None:
    """The deployment's claim store when ``REPORTRELAY_CLAIMS_TABLE`` is set, else None."""
    table = (os.environ if environ is None else environ).get(CLAIMS_TABLE_ENV)
    if not table:
        return None
    return DynamoDbClaims(table, lambda: aws_client("dynamodb"))


def _key(namespace: str, item_id: str) -> str:
    return f"{namespace}#{item_id}"
