"""Per-connection concurrency slots: at most N jobs talk to one provider account at once.

Vendors throttle per account; twenty jobs started by one schedule would otherwise meet a storm of 429s.
A connection with ``max_concurrent_jobs: N`` has N slots. A job takes a free slot before it submits and
gives it back when it concludes; a job that finds none waits in the state machine and tries again.

Each slot is one item in the claims table (key ``slot#<connection>#<n>``), taken with a conditional
write that succeeds when the slot is free, already ours, or held by a lease that has run out. The lease
outlives the job's deadline, so a job that died without concluding frees its slot by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reportrelay.claims import KEY_ATTRIBUTE, TTL_ATTRIBUTE, ClaimsUnavailable
from reportrelay.errors import ConfigurationError

LEASE_MARGIN_SECONDS = 3600


class ConcurrencySlots:
    def __init__(self, table_name: str | None, client: Callable[[], Any]) -> None:
        self._table_name = table_name
        self._client = client

    def acquire(
        self, connection: str, limit: int, job_id: str, *, now: float, lease_until: float
    ) -> int | None:
        """The slot now held by ``job_id`` (the same one when asked again), or None when all are busy."""
        table = self._table(connection)
        for number in range(limit):
            try:
                self._client().put_item(
                    TableName=table,
                    Item={
                        KEY_ATTRIBUTE: {"S": _key(connection, number)},
                        "owner": {"S": job_id},
                        TTL_ATTRIBUTE: {"N": str(int(lease_until + LEASE_MARGIN_SECONDS))},
                    },
                    ConditionExpression="attribute_not_exists(#key) OR #owner = :owner OR #expires < :now",
                    ExpressionAttributeNames={
                        "#key": KEY_ATTRIBUTE,
                        "#owner": "owner",
                        "#expires": TTL_ATTRIBUTE,
                    },
                    ExpressionAttributeValues={":owner": {"S": job_id}, ":now": {"N": str(int(now))}},
                )
            except (
                Exception
            ) as error:  # botocore is imported lazily; only its conditional failure is expected
                if _is_conditional_failure(error):
                    continue
                raise ClaimsUnavailable(
                    f"concurrency slots for '{connection}' could not be taken: {error}"
                ) from None
            return number
        return None

    def release(self, connection: str, number: int, job_id: str) -> None:
        """Give the slot back, if it is still ours (a lease that ran out may have passed to another job)."""
        try:
            self._client().delete_item(
                TableName=self._table(connection),
                Key={KEY_ATTRIBUTE: {"S": _key(connection, number)}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": job_id}},
            )
        except Exception as error:
            if not _is_conditional_failure(error):
                raise ClaimsUnavailable(f"concurrency slot of '{connection}' could not be released") from None

    def _table(self, connection: str) -> str:
        if not self._table_name:
            raise ConfigurationError(
                f"connection '{connection}' limits concurrent jobs, but no claims table is configured "
                "(REPORTRELAY_CLAIMS_TABLE) to keep count"
            )
        return self._table_name


def _key(connection: str, number: int) -> str:
    return f"slot#{connection}#{number}"


def _is_conditional_failure(error: Exception) -> bool:
    response = getattr(error, "response", None)
    return (
        isinstance(response, dict)
        and response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
    )
