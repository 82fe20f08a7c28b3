"""The outbox (reportrelay.outbox) on moto's DynamoDB and EventBridge: an outcome is recorded with its event
in one write, announced from there, kept when PutEvents fails (an error, or FailedEntryCount > 0), and
swept later, exactly once, by its stable event id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from reportrelay import outbox
from reportrelay.jobs import DynamoDbJobs, JobState, create_table_request
from reportrelay.timestamps import iso_timestamp

TABLE = "jobs-under-test"
BUS = "reportrelay-under-test"
NOW = 1_740_000_000.0


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class PutEventsFaults:
    """A botocore hook on the events client: the next ``errors`` calls fail with a 500, the next ``failed``
    answer FailedEntryCount 1 (as EventBridge does when it took the call but not the entry)."""

    errors: int = 0
    failed: int = 0
    calls: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)
    _asked: list[dict[str, Any]] = field(default_factory=list)

    def provide_params(self, params: dict[str, Any], **_: Any) -> None:
        self._asked = params["Entries"]

    def before_call(self, **_: Any) -> Any:
        self.calls += 1
        if self.errors:
            self.errors -= 1
            raise ClientError(
                {"Error": {"Code": "InternalException", "Message": "EventBridge failed"}}, "PutEvents"
            )
        if self.failed:
            self.failed -= 1
            answer = {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}],
            }
            return _Http(200), answer
        self.entries += self._asked
        return None


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    store: DynamoDbJobs
    events: Any
    faults: PutEventsFaults
    clock: Clock
    delivered: list[dict[str, Any]]  # what EventBridge took (the hook lets it through to moto)

    def finish(self, job_id: str, state: JobState = JobState.READY) -> outbox.Announcement:
        detail = {"job_id": job_id, "status": state.value.upper(), "event_id": outbox.event_id(job_id, state)}
        pending = outbox.announcement(job_id, "Report Ready", detail, now=self.clock(), resources=("arn:x",))
        assert self.store.finish(job_id, {"state": state}, announcement=pending)
        return pending

    def announce(self, pending: outbox.Announcement) -> bool:
        return outbox.announce(self.store, self.events, BUS, pending)

    def sweep(self, **kwargs: Any) -> outbox.SweepResult:
        return outbox.sweep(self.store, self.events, BUS, now=self.clock(), **kwargs)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(**create_table_request(TABLE))
        events = boto3.client("events", region_name="us-east-1")
        events.create_event_bus(Name=BUS)
        faults = PutEventsFaults()
        events.meta.events.register("provide-client-params.events.PutEvents", faults.provide_params)
        events.meta.events.register("before-call.events.PutEvents", faults.before_call)
        clock = Clock()
        yield World(DynamoDbJobs(TABLE, lambda: dynamodb, clock=clock), events, faults, clock, faults.entries)


def test_an_outcome_is_recorded_with_its_event_and_cleared_once_announced(world: World) -> None:
    # given a job finished with its announcement in the same write
    pending = world.finish("job-1")
    # then the job is ready and its event waits in the outbox, findable through the index
    assert world.store.get("job-1").state is JobState.READY
    assert world.store.pending_announcement("job-1") == pending
    assert [each.event_id for each in world.store.pending_announcements()] == ["job-1/READY"]
    # when it is announced
    assert world.announce(pending)
    # then EventBridge got it once, with its event id in the detail and the execution in its resources
    (entry,) = world.delivered
    assert json.loads(entry["Detail"])["event_id"] == "job-1/READY"
    assert entry["Source"] == "reportrelay" and entry["EventBusName"] == BUS
    assert entry["Resources"] == ["arn:x"]
    # and nothing waits any more
    assert world.store.pending_announcement("job-1") is None
    assert world.store.pending_announcements() == []


@pytest.mark.parametrize(
    ("fault", "code"), [("errors", "InternalException"), ("failed", "ThrottlingException")]
)
def test_a_failed_put_keeps_the_announcement_and_the_sweep_delivers_it_exactly_once(
    world: World, fault: str, code: str
) -> None:
    # given PutEvents failing once: by an error, or by FailedEntryCount 1
    setattr(world.faults, fault, 1)
    pending = world.finish("job-1")
    # when the outcome is announced
    announced = world.announce(pending)
    # then it was not, nothing reached the bus, and the announcement waits with the attempt noted
    assert announced is False
    assert world.delivered == []
    waiting = world.store.pending_announcement("job-1")
    assert waiting is not None and waiting.event_id == "job-1/READY" and waiting.attempts == 1
    item = world.store.client().get_item(TableName=TABLE, Key={"id": {"S": "job-1"}})["Item"]
    assert item["announce_error"] == {"S": code}
    # when a sweep runs before it has waited two minutes
    world.clock.now += 60
    first = world.sweep()
    # then it leaves it alone (its conclude may still be on it), but reports its age
    assert (first.announced, first.waiting, first.oldest_pending_seconds) == (0, 1, 60.0)
    # when the sweep runs after that
    world.clock.now += 120
    second = world.sweep()
    # then it delivers the event, once, and the outbox is empty
    assert (second.announced, second.failed, second.waiting) == (1, 0, 0)
    assert second.oldest_pending_seconds == 180.0
    assert [json.loads(entry["Detail"])["event_id"] for entry in world.delivered] == ["job-1/READY"]
    assert world.store.pending_announcement("job-1") is None
    # and another sweep sends nothing
    third = world.sweep()
    assert (third.announced, third.oldest_pending_seconds) == (0, 0.0)
    assert len(world.delivered) == 1


def test_a_sweep_that_fails_again_keeps_it_and_counts_the_attempts(world: World) -> None:
    world.faults.errors = 3
    pending = world.finish("job-1")
    assert not world.announce(pending)
    world.clock.now += 300
    swept = world.sweep()
    assert (swept.announced, swept.failed, swept.waiting) == (0, 1, 1)
    assert world.store.pending_announcement("job-1").attempts == 2
    assert world.faults.calls == 2


def test_the_sweep_goes_oldest_first_and_stops_at_the_young(world: World) -> None:
    # given three outcomes whose puts failed, recorded a minute apart
    world.faults.errors = 3
    for job_id in ("old", "middle", "young"):
        assert not world.announce(world.finish(job_id))
        world.clock.now += 60
    # when the sweep runs with the youngest a minute old
    swept = world.sweep()
    # then the two that waited two minutes or more are delivered, oldest first, and the young one waits
    assert [json.loads(entry["Detail"])["job_id"] for entry in world.delivered] == ["old", "middle"]
    assert (swept.announced, swept.waiting, swept.oldest_pending_seconds) == (2, 1, 180.0)
    assert [each.job_id for each in world.store.pending_announcements()] == ["young"]


def test_an_older_announce_never_clears_a_newer_outcome(world: World) -> None:
    # given a job whose outbox holds a newer outcome's event than the one about to be announced
    older = world.finish("job-1")
    newer = outbox.Announcement(
        "job-1", "job-1/CANCELLED", "Report Failed", {"event_id": "job-1/CANCELLED"}, iso_timestamp(NOW + 1)
    )
    fields = {name: value for name, value in newer.fields().items() if value is not None}
    world.store.client().update_item(  # as only a later outcome's write could have put it there
        TableName=TABLE,
        Key={"id": {"S": "job-1"}},
        UpdateExpression="SET " + ", ".join(f"#a{n} = :v{n}" for n in range(len(fields))),
        ExpressionAttributeNames={f"#a{n}": name for n, name in enumerate(fields)},
        ExpressionAttributeValues={
            f":v{n}": {"N": str(value)} if isinstance(value, int) else {"S": value}
            for n, value in enumerate(fields.values())
        },
    )
    # when the older one is announced
    assert world.announce(older)
    # then the newer one still waits, untouched
    waiting = world.store.pending_announcement("job-1")
    assert waiting is not None and (waiting.event_id, waiting.detail) == (newer.event_id, newer.detail)
    assert not world.store.clear_announcement("job-1", older.event_id)


def test_a_finished_job_takes_no_second_outcome_and_keeps_the_first_announcement(world: World) -> None:
    first = world.finish("job-1")
    second = outbox.announcement(
        "job-1", "Report Failed", {"event_id": "job-1/FAILED"}, now=NOW + 5, resources=()
    )
    assert not world.store.finish("job-1", {"state": JobState.FAILED}, announcement=second)
    assert world.store.pending_announcement("job-1") == first


def test_without_a_store_it_still_announces_and_never_raises(world: World) -> None:
    pending = world.finish("job-1")
    assert outbox.announce(None, world.events, BUS, pending)
    world.faults.errors = 1
    assert outbox.announce(None, world.events, BUS, pending) is False
