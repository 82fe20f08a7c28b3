"""The waiting line for a connection's concurrency slots (reportrelay.slots), on moto's DynamoDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from moto import mock_aws

from reportrelay.claims import KEY_ATTRIBUTE, TTL_ATTRIBUTE
from reportrelay.slots import LEASE_MARGIN_SECONDS, ConcurrencySlots, Waiter
from reportrelay_cli.local.aws import atomic_dynamodb_writes

TABLE = "claims"
NOW = 1_800_000_000.0
DEADLINE = NOW + 3600


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    """moto's DynamoDB with the claims table, its conditional writes made atomic as DynamoDB's are
    (moto's alone are not, so hand-overs on parallel threads could both pass one condition)."""
    with mock_aws(), atomic_dynamodb_writes():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


@pytest.fixture
def slots(dynamodb: Any) -> ConcurrencySlots:
    return ConcurrencySlots(TABLE, lambda: dynamodb)


class PausedBeforeLeavingTheLine:
    """A DynamoDB client that runs ``meanwhile`` once, just before the first change that takes a job out
    of the line: a hand-over has then taken a slot for the head and not yet claimed the head."""

    def __init__(self, client: Any, meanwhile: Callable[[], None]) -> None:
        self._client = client
        self._meanwhile: Callable[[], None] | None = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **arguments: Any) -> Any:
        if self._meanwhile and str(arguments.get("UpdateExpression", "")).startswith("REMOVE"):
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        return self._client.update_item(**arguments)


def owned(dynamodb: Any, limit: int, job_id: str) -> list[int]:
    """The slots the table says ``job_id`` holds, read straight from the items."""
    return [
        number
        for number in range(limit)
        if dynamodb.get_item(TableName=TABLE, Key={KEY_ATTRIBUTE: {"S": f"slot#dx#{number}"}})
        .get("Item", {})
        .get("owner", {})
        .get("S")
        == job_id
    ]


class Tokens:
    """The task tokens' side: which waiter was told which slot; tokens of jobs no longer waiting."""

    def __init__(self, gone: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.told: list[tuple[str, int]] = []
        self.gone = set(gone)

    def send(self, waiter: Waiter, slot: int) -> bool:
        if waiter.token in self.gone:
            return False
        self.told.append((waiter.job_id, slot))
        return True


def waiter(job_id: str, lease_until: float = DEADLINE) -> Waiter:
    return Waiter(job_id, f"token-of-{job_id}", lease_until)


def fill(slots: ConcurrencySlots, limit: int, *holders: str) -> None:
    for holder in holders:
        assert slots.take("dx", limit, holder, now=NOW, lease_until=DEADLINE) is not None


def test_jobs_that_find_no_free_slot_are_handed_slots_in_arrival_order(slots: ConcurrencySlots) -> None:
    # given both slots held, and three jobs that joined the line one after another
    fill(slots, 2, "a", "b")
    for place, job in enumerate(("c", "d", "e"), start=1):
        assert slots.take("dx", 2, job, now=NOW, lease_until=DEADLINE) is None
        assert slots.join_line("dx", waiter(job)) == place
    tokens = Tokens()
    # when a holder gives its slot back and hands it over
    slots.release("dx", 0, "a")
    handed = slots.hand_over("dx", 2, now=NOW, send=tokens.send)
    # then the first in line got that slot (told through its token), and the others still wait, in order
    assert handed == [("c", 0)] and tokens.told == [("c", 0)]
    assert slots.held("dx", 2, "c") == 0
    assert slots.line("dx") == ["d", "e"]
    # and when both holders give back, the next two get slots in their order
    slots.release("dx", 1, "b")
    slots.release("dx", 0, "c")
    assert slots.hand_over("dx", 2, now=NOW, send=tokens.send) == [("d", 0), ("e", 1)]
    assert slots.line("dx") == []


def test_a_free_slot_is_not_taken_past_jobs_that_wait_for_one(slots: ConcurrencySlots) -> None:
    # given a full connection with a job in line, and a slot that just became free (not handed over yet)
    fill(slots, 1, "a")
    slots.join_line("dx", waiter("b"))
    slots.release("dx", 0, "a")
    # when a newcomer asks for a slot, then it gets none: the waiting job comes first
    assert slots.take("dx", 1, "newcomer", now=NOW, lease_until=DEADLINE) is None
    # and the slot goes to the one in line
    assert slots.hand_over("dx", 1, now=NOW, send=Tokens().send) == [("b", 0)]
    # and once handed, the job that waited finds it holds it
    assert slots.take("dx", 1, "b", now=NOW, lease_until=DEADLINE) == 0


def test_joining_twice_keeps_the_place_with_the_newer_token(slots: ConcurrencySlots) -> None:
    # given two jobs in line
    fill(slots, 1, "a")
    slots.join_line("dx", waiter("b"))
    slots.join_line("dx", waiter("c"))
    # when the first joins again (it woke up and waits again, with a new token)
    place = slots.join_line("dx", Waiter("b", "newer-token", DEADLINE))
    # then it keeps its place, and is told through its newer token
    assert place == 1 and slots.line("dx") == ["b", "c"]
    told: list[str] = []
    slots.release("dx", 0, "a")
    slots.hand_over("dx", 1, now=NOW, send=lambda w, n: told.append(w.token) or True)
    assert told == ["newer-token"]


def test_a_waiter_that_is_gone_is_skipped_and_its_slot_goes_to_the_next(slots: ConcurrencySlots) -> None:
    # given a line whose head no longer waits (its execution timed out or was stopped)
    fill(slots, 1, "a")
    slots.join_line("dx", waiter("gone"))
    slots.join_line("dx", waiter("next"))
    tokens = Tokens(gone={"token-of-gone"})
    # when the slot is handed over
    slots.release("dx", 0, "a")
    handed = slots.hand_over("dx", 1, now=NOW, send=tokens.send)
    # then the next one got it, and the one gone neither holds it nor stays in line
    assert handed == [("next", 0)]
    assert slots.held("dx", 1, "gone") is None
    assert slots.line("dx") == []


def test_a_job_that_leaves_the_line_is_never_handed_a_slot(slots: ConcurrencySlots) -> None:
    # given two jobs in line, and the first cancelled (it leaves the line)
    fill(slots, 1, "a")
    slots.join_line("dx", waiter("cancelled"))
    slots.join_line("dx", waiter("b"))
    slots.leave_line("dx", "cancelled")
    # when the slot is handed over, then it goes to the other
    slots.release("dx", 0, "a")
    assert slots.hand_over("dx", 1, now=NOW, send=Tokens().send) == [("b", 0)]


def test_a_holder_whose_lease_ran_out_loses_its_slot_to_the_head_of_the_line(slots: ConcurrencySlots) -> None:
    # given a holder that died without giving its slot back, with its deadline at NOW: its lease ends
    # LEASE_MARGIN_SECONDS later
    assert slots.take("dx", 1, "dead", now=NOW - 100, lease_until=NOW) == 0
    slots.join_line("dx", waiter("b", lease_until=NOW + 2 * LEASE_MARGIN_SECONDS))
    lease_ends = NOW + LEASE_MARGIN_SECONDS
    # when a hand-over runs before the lease ends, then nothing is free
    assert slots.hand_over("dx", 1, now=lease_ends - 1, send=Tokens().send) == []
    # and when one runs after it ended, the head of the line gets the slot
    assert slots.hand_over("dx", 1, now=lease_ends + 1, send=Tokens().send) == [("b", 0)]


def test_hand_overs_at_once_give_each_waiter_one_slot_and_never_exceed_the_limit(
    slots: ConcurrencySlots,
) -> None:
    # given three slots freed at once and six jobs in line
    fill(slots, 3, "a", "b", "c")
    line = [f"w{number}" for number in range(6)]
    for job in line:
        slots.join_line("dx", waiter(job))
    for number, holder in enumerate(("a", "b", "c")):
        slots.release("dx", number, holder)
    tokens = Tokens()
    # when the three holders hand over at the same time
    with ThreadPoolExecutor(3) as pool:
        results: list[Any] = list(
            pool.map(lambda _: slots.hand_over("dx", 3, now=NOW, send=tokens.send), range(3))
        )
    # then the first three in line got one slot each, all different, and the rest still wait in order
    handed = sorted(pair for result in results for pair in result)
    assert [job for job, _ in handed] == line[:3]
    assert sorted(slot for _, slot in handed) == [0, 1, 2]
    assert sorted(tokens.told) == handed
    assert slots.line("dx") == line[3:]


def test_two_hand_overs_racing_for_one_head_leave_it_holding_one_slot(dynamodb: Any) -> None:
    # given slot 0 held by x, slot 1 just given back by y, and w waiting
    slots = ConcurrencySlots(TABLE, lambda: dynamodb)
    fill(slots, 2, "x", "y")
    slots.join_line("dx", waiter("w"))
    slots.release("dx", 1, "y")
    tokens = Tokens()

    def x_gives_back_and_hands_over() -> None:
        slots.release("dx", 0, "x")
        slots.hand_over("dx", 2, now=NOW, send=tokens.send)

    # when y's hand-over has taken slot 1 for w, and x gives slot 0 back and hands over before y claims w
    paused = ConcurrencySlots(
        TABLE, lambda: PausedBeforeLeavingTheLine(dynamodb, x_gives_back_and_hands_over)
    )
    paused.hand_over("dx", 2, now=NOW, send=tokens.send)
    # then w was told one slot, and holds that one only: slot 0 is free for the next job
    assert tokens.told == [("w", 1)]
    assert owned(dynamodb, 2, "w") == [1]
    assert slots.take("dx", 2, "next", now=NOW, lease_until=DEADLINE) == 0


def test_a_job_that_leaves_the_line_while_a_hand_over_takes_it_a_slot_holds_none(dynamodb: Any) -> None:
    # given a full connection and w waiting
    slots = ConcurrencySlots(TABLE, lambda: dynamodb)
    fill(slots, 1, "x")
    slots.join_line("dx", waiter("w"))
    slots.release("dx", 0, "x")
    tokens = Tokens()
    # when a hand-over takes the slot for w, and w gives up (its deadline, a cancel) before being claimed
    paused = ConcurrencySlots(
        TABLE, lambda: PausedBeforeLeavingTheLine(dynamodb, lambda: slots.give_back("dx", 1, "w"))
    )
    paused.hand_over("dx", 1, now=NOW, send=tokens.send)
    # then nobody was told, w holds nothing and is out of line, and the slot is free at once (not when a
    # lease runs out)
    assert tokens.told == []
    assert owned(dynamodb, 1, "w") == [] and slots.line("dx") == []
    assert slots.take("dx", 1, "next", now=NOW, lease_until=DEADLINE) == 0


def test_giving_back_frees_every_slot_the_job_holds(dynamodb: Any, slots: ConcurrencySlots) -> None:
    # given a job holding two slots (one taken for it by a hand-over it never heard of) and others waiting
    fill(slots, 3, "w", "other")
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            KEY_ATTRIBUTE: {"S": "slot#dx#2"},
            "owner": {"S": "w"},
            TTL_ATTRIBUTE: {"N": str(int(DEADLINE))},
        },
    )
    # when it concludes and gives back
    slots.give_back("dx", 3, "w")
    # then both are free, and the other job's slot is untouched
    assert owned(dynamodb, 3, "w") == []
    assert owned(dynamodb, 3, "other") == [1]
