"""Per-connection concurrency slots: at most N jobs talk to one provider account at once.

Vendors throttle per account; twenty jobs started by one schedule would otherwise meet a storm of 429s.
A connection with ``max_concurrent_jobs: N`` has N slots. A job takes a free slot before it submits and
gives it back when it concludes.

Each slot is one item in the claims table (key ``slot#<connection>#<n>``), taken with a conditional
write that succeeds when the slot is free, already ours, or held by a lease that has run out. The lease
outlives the job's deadline, so a job that died without concluding frees its slot by itself.

A job that finds no free slot joins the connection's *line* (first come, first served) and waits
without polling: its state machine waits on a task token, kept with it in the line. The job that gives a
slot back hands it at once to the head of the line: it takes the slot on the head's behalf and sends the
head's token the slot's number (``hand_over``). While anyone waits, a free slot is not taken past them.
The line is one item (``line#<connection>``: the waiting job ids in arrival order), and each waiter one
item of its own (``waiter#<connection>#<job id>``: its token and its lease).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reportrelay.awsclients import aws_error_code
from reportrelay.claims import KEY_ATTRIBUTE, TTL_ATTRIBUTE, ClaimsUnavailable
from reportrelay.errors import ConfigurationError

LEASE_MARGIN_SECONDS = 3600
LINE_ATTRIBUTE = "waiting"


@dataclass(frozen=True)
class Waiter:
    """A job in a connection's line: the token its state machine waits on, and until when it may hold."""

    job_id: str
    token: str
    lease_until: float


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

    def held(self, connection: str, limit: int, job_id: str) -> int | None:
        """The slot ``job_id`` holds now (one handed to it, perhaps), or None."""
        for number in range(limit):
            item = self._get(connection, _key(connection, number))
            if item is not None and item.get("owner", {}).get("S") == job_id:
                return number
        return None

    def take(self, connection: str, limit: int, job_id: str, *, now: float, lease_until: float) -> int | None:
        """The slot ``job_id`` holds, or a free one unless other jobs wait for one (they come first)."""
        held = self.held(connection, limit, job_id)
        if held is not None:
            return held
        if self.line(connection):
            return None
        return self.acquire(connection, limit, job_id, now=now, lease_until=lease_until)

    def line(self, connection: str) -> list[str]:
        """The job ids waiting for a slot of ``connection``, first come first."""
        item = self._get(connection, _line_key(connection))
        return [entry["S"] for entry in (item or {}).get(LINE_ATTRIBUTE, {}).get("L", [])]

    def join_line(self, connection: str, waiter: Waiter) -> int:
        """Put ``waiter`` at the end of the line, or keep its place with its new token; its place (from 1)."""
        self._write(
            connection,
            "put_item",
            Item={
                KEY_ATTRIBUTE: {"S": _waiter_key(connection, waiter.job_id)},
                "token": {"S": waiter.token},
                TTL_ATTRIBUTE: {"N": str(int(waiter.lease_until + LEASE_MARGIN_SECONDS))},
            },
        )
        with contextlib.suppress(_AlreadyTaken):  # already in line: it keeps its place
            self._write(
                connection,
                "update_item",
                Key={KEY_ATTRIBUTE: {"S": _line_key(connection)}},
                UpdateExpression="SET #line = list_append(if_not_exists(#line, :empty), :job)",
                ConditionExpression="attribute_not_exists(#line) OR NOT contains(#line, :id)",
                ExpressionAttributeNames={"#line": LINE_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":empty": {"L": []},
                    ":job": {"L": [{"S": waiter.job_id}]},
                    ":id": {"S": waiter.job_id},
                },
            )
        line = self.line(connection)
        return line.index(waiter.job_id) + 1 if waiter.job_id in line else 0

    def leave_line(self, connection: str, job_id: str) -> None:
        """Take ``job_id`` out of the line, if it is in it (it got a slot, gave up or was cancelled)."""
        for _ in range(_RACES):
            line = self.line(connection)
            if job_id not in line or self._remove_from_line(connection, line.index(job_id), job_id):
                break
        self._write(connection, "delete_item", Key={KEY_ATTRIBUTE: {"S": _waiter_key(connection, job_id)}})

    def hand_over(
        self, connection: str, limit: int, *, now: float, send: Callable[[Waiter, int], bool]
    ) -> list[tuple[str, int]]:
        """Give free slots to the jobs at the head of the line, in order, until none is free or none waits.

        ``send`` tells the waiter its slot (its task token) and says whether it was still waiting; a slot
        taken for a waiter that is gone (timed out, stopped) is given back and goes to the next. Several
        jobs may hand over at once: each head is taken out of the line by exactly one of them.
        """
        handed: list[tuple[str, int]] = []
        for _ in range(limit + _RACES + len(self.line(connection))):
            line = self.line(connection)
            if not line:
                break
            head = line[0]
            waiter = self._waiter(connection, head)
            if waiter is None:  # it left the line on its own, or is joining it right now
                self._remove_from_line(connection, 0, head)
                continue
            number = self.held(connection, limit, head)
            if number is None:  # another hand-over may have taken one for it already: reuse that one
                number = self.acquire(connection, limit, head, now=now, lease_until=waiter.lease_until)
            if number is None:
                break
            if not self._remove_from_line(connection, 0, head):
                continue  # another job handed this head its slot (the same one: taking is idempotent)
            delivered = send(waiter, number)
            self._write(connection, "delete_item", Key={KEY_ATTRIBUTE: {"S": _waiter_key(connection, head)}})
            if delivered:
                handed.append((head, number))
            else:
                self.release(connection, number, head)
        return handed

    def _waiter(self, connection: str, job_id: str) -> Waiter | None:
        item = self._get(connection, _waiter_key(connection, job_id))
        if item is None:
            return None
        lease_until = float(item[TTL_ATTRIBUTE]["N"]) - LEASE_MARGIN_SECONDS
        return Waiter(job_id, item["token"]["S"], lease_until)

    def _remove_from_line(self, connection: str, index: int, job_id: str) -> bool:
        """Remove ``job_id`` at ``index``; False when the line changed under us (someone else did)."""
        try:
            self._write(
                connection,
                "update_item",
                Key={KEY_ATTRIBUTE: {"S": _line_key(connection)}},
                UpdateExpression=f"REMOVE #line[{int(index)}]",
                ConditionExpression=f"#line[{int(index)}] = :id",
                ExpressionAttributeNames={"#line": LINE_ATTRIBUTE},
                ExpressionAttributeValues={":id": {"S": job_id}},
            )
        except _AlreadyTaken:
            return False
        return True

    def _get(self, connection: str, key: str) -> dict[str, Any] | None:
        try:
            answer = self._client().get_item(
                TableName=self._table(connection), Key={KEY_ATTRIBUTE: {"S": key}}, ConsistentRead=True
            )
        except Exception:
            raise ClaimsUnavailable(f"concurrency slots for '{connection}' could not be read") from None
        return answer.get("Item")

    def _write(self, connection: str, action: str, **arguments: Any) -> None:
        try:
            getattr(self._client(), action)(TableName=self._table(connection), **arguments)
        except Exception as error:
            if _is_conditional_failure(error):
                raise _AlreadyTaken() from None
            raise ClaimsUnavailable(
                f"the line for a slot of '{connection}' could not be changed: {type(error).__name__}"
            ) from None

    def give_back(self, connection: str, limit: int, job_id: str) -> None:
        """Leave the line and give back every slot ``job_id`` holds. Hand-overs racing for the same head
        (or for one leaving the line) can each take a slot for it; only one is told, so the job can hold
        one it never heard of until it concludes, not until its lease runs out."""
        self.leave_line(connection, job_id)
        for number in range(limit):
            self.release(connection, number, job_id)

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


_RACES = 5  # how often a change of the line is tried again when others changed it first


class _AlreadyTaken(Exception):
    """A conditional write found the item changed by another job."""


def _key(connection: str, number: int) -> str:
    return f"slot#{connection}#{number}"


def _line_key(connection: str) -> str:
    return f"line#{connection}"


def _waiter_key(connection: str, job_id: str) -> str:
    return f"waiter#{connection}#{job_id}"


def _is_conditional_failure(error: Exception) -> bool:
    return aws_error_code(error) == "ConditionalCheckFailedException"
