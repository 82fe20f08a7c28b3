"""The job store (reportrelay.jobs) on moto's DynamoDB: idempotent creation, final states, listings."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import boto3
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from reportrelay.errors import BadRequest
from reportrelay.jobs import (
    ClientToken,
    DynamoDbJobs,
    Job,
    JobState,
    JobStoreUnavailable,
    TokenReused,
    create_table_request,
    outcome_fields,
    progress_fields,
    request_fingerprint,
)
from reportrelay.timestamps import iso_timestamp

TABLE = "jobs-under-test"
REQUEST = {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"}
STORED = {
    "bucket": "reports",
    "key": "j/Sales.pdf",
    "size": 3,
    "sha256": "a" * 64,
    "content_type": "application/pdf",
    "filename": "Sales.pdf",
}


class Clock:
    """A clock that moves one second per reading, so every job gets its own creation time."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> float:
        return 1_740_000_000.0 + next(self._ticks)


@contextlib.contextmanager
def moto_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDbJobs]:
    """A job store on a fresh table in moto's DynamoDB, with its own ticking clock."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**create_table_request(TABLE))
        yield DynamoDbJobs(TABLE, lambda: client, clock=Clock())


@pytest.fixture
def store(monkeypatch) -> Iterator[DynamoDbJobs]:
    with moto_store(monkeypatch) as store:
        yield store


def new_job(store: DynamoDbJobs, job_id: str, connection: str = "dx", **fields) -> Job:
    now = iso_timestamp(store.clock())
    return Job(
        job_id=job_id,
        state=JobState.QUEUED,
        created_at=now,
        updated_at=now,
        source="api",
        connection=connection,
        provider="devexpress",
        request={**REQUEST, "connection": connection},
        **fields,
    )


def test_a_created_job_reads_back_as_it_was_stored(store):
    # given a new job
    job, created = store.create(
        new_job(store, "job-1", execution_arn="arn:aws:states:x:1:execution:sm:job-1")
    )
    # then it reads back field for field, and only jobs read as jobs
    assert created is True
    assert store.get("job-1") == job
    assert store.get("no-such-job") is None


def test_a_client_token_names_one_job_per_caller_and_request(store):
    # given a job created with a client token
    fingerprint = request_fingerprint({**REQUEST, "client_token": "t"})
    token = ClientToken("arn:aws:iam::1:user/a", "t", fingerprint)
    _, created = store.create(new_job(store, "job-1"), token)
    # when the same caller creates "another" job with the same token and request
    again, created_again = store.create(new_job(store, "job-2"), token)
    # then it gets the first job back, and no second job exists
    assert (created, created_again) == (True, False)
    assert again.job_id == "job-1"
    assert store.get("job-2") is None
    # and the same token for a different request is refused, naming the job it already has
    other_request = ClientToken(token.scope, "t", request_fingerprint({**REQUEST, "format": "xlsx"}))
    with pytest.raises(TokenReused, match="job-1"):
        store.create(new_job(store, "job-3"), other_request)
    # and another caller's identical token is another token
    theirs, created_theirs = store.create(new_job(store, "job-4"), ClientToken("arn:other", "t", fingerprint))
    assert created_theirs is True and theirs.job_id == "job-4"


def test_the_fingerprint_ignores_the_token_and_key_order():
    assert request_fingerprint({"a": 1, "b": {"c": 2, "d": 3}, "client_token": "x"}) == request_fingerprint(
        {"b": {"d": 3, "c": 2}, "a": 1}
    )
    assert request_fingerprint({"a": 1}) != request_fingerprint({"a": 2})


def test_progress_is_recorded_and_fields_that_went_away_are_removed(store):
    # given a job the workflow is working on
    store.create(new_job(store, "job-1"))
    assert store.record(
        "job-1", {"state": JobState.RUNNING, "progress": 42.5, "message": "rendering", "polls": 3}
    )
    # when the next check has no message
    assert store.record("job-1", {"state": JobState.RUNNING, "progress": 80.0, "message": None, "polls": 4})
    # then the record has the new figures and no stale message
    job = store.get("job-1")
    assert (job.state, job.progress, job.message, job.polls) == (JobState.RUNNING, 80.0, None, 4)


def test_finished_states_are_final(store):
    # given a job cancelled through the API
    store.create(new_job(store, "job-1"))
    assert store.finish(
        "job-1", {"state": JobState.CANCELLED, "error": {"code": "Cancelled", "message": "x"}}
    )
    # when the workflow's last step, still in flight, reports progress and then an outcome
    recorded = store.record("job-1", {"state": JobState.RUNNING, "polls": 9})
    finished = store.finish("job-1", {"state": JobState.READY, "object": STORED})
    # then neither changes it
    assert (recorded, finished) == (False, False)
    job = store.get("job-1")
    assert job.state is JobState.CANCELLED and job.object is None and job.finished_at is not None


def test_a_job_first_heard_of_from_the_workflow_is_created_queued(store):
    # given a job the API never saw (started by the CLI or a schedule)
    assert store.record("job-9", {"connection": "dx", "polls": 0}, created_at="2025-03-01T06:00:00.000Z")
    # then it exists, queued, started by "workflow", with the execution's start as its creation time
    job = store.get("job-9")
    assert (job.state, job.source, job.created_at) == (
        JobState.QUEUED,
        "workflow",
        "2025-03-01T06:00:00.000Z",
    )
    assert [listed.job_id for listed in store.list(state=JobState.QUEUED).jobs] == ["job-9"]


def test_listings_are_newest_first_filtered_and_paged_with_cursors(store):
    # given five jobs on two connections, one of them failed
    for number, connection in enumerate(["dx", "eu", "dx", "dx", "eu"]):
        store.create(new_job(store, f"job-{number}", connection=connection))
    store.finish("job-2", {"state": JobState.FAILED, "error": {"code": "X", "message": "y"}})
    # when everything is read two at a time
    pages, cursor = [], None
    while True:
        page = store.list(limit=2, cursor=cursor)
        pages.append([job.job_id for job in page.jobs])
        cursor = page.cursor
        if cursor is None:
            break
    # then the pages hold every job once, newest first, and the last one says so
    assert pages == [["job-4", "job-3"], ["job-2", "job-1"], ["job-0"]]
    # and filters narrow the listing
    assert [job.job_id for job in store.list(connection="eu").jobs] == ["job-4", "job-1"]
    assert [job.job_id for job in store.list(state=JobState.FAILED).jobs] == ["job-2"]
    assert [job.job_id for job in store.list(connection="dx", state=JobState.QUEUED).jobs] == [
        "job-3",
        "job-0",
    ]
    dx = store.list(connection="dx", limit=1)
    assert [job.job_id for job in store.list(connection="dx", cursor=dx.cursor).jobs] == ["job-2", "job-0"]


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "eyJpIjoicmVjZW50In0", "W10"])
def test_a_cursor_the_store_did_not_issue_is_a_bad_request(store, cursor):
    with pytest.raises(BadRequest, match="cursor"):
        store.list(cursor=cursor or "e30")


def test_a_cursor_from_another_listing_is_a_bad_request(store):
    # given a cursor from one connection's listing
    for number in range(3):
        store.create(new_job(store, f"job-{number}"))
    cursor = store.list(connection="dx", limit=1).cursor
    # then it does not page another listing
    with pytest.raises(BadRequest, match="cursor"):
        store.list(connection="eu", cursor=cursor)
    with pytest.raises(BadRequest, match="cursor"):
        store.list(cursor=cursor)


def test_a_missing_table_is_reported_as_unavailable_not_as_a_crash(store):
    broken = DynamoDbJobs("no-such-table", store.client)
    with pytest.raises(JobStoreUnavailable, match="no-such-table"):
        broken.get("job-1")


def test_an_oversized_field_is_left_out_rather_than_failing_the_write(store):
    # given progress from a request whose parameters are huge
    assert store.record("job-1", {"request": {**REQUEST, "parameters": {"blob": "x" * 50_000}}, "polls": 1})
    # then the job is recorded, without the request
    job = store.get("job-1")
    assert job.polls == 1 and job.request is None


def test_workflow_state_maps_to_job_fields():
    # given workflow states at different points
    state = {
        "request": {**REQUEST, "client_token": "t"},
        "job": {
            "job_id": "j",
            "accepted_at": "2025-03-01T06:00:00Z",
            "status": "PENDING",
            "polls": 0,
            "handle": {},
        },
    }
    job_id, fields, accepted_at = progress_fields(state)
    # then a provider's PENDING (or a wait for a slot) is queued, RUNNING and READY are running
    assert (job_id, accepted_at, fields["state"]) == ("j", "2025-03-01T06:00:00Z", JobState.QUEUED)
    assert fields["request"] == REQUEST and fields["connection"] == "dx" and fields["handle"] is None
    for status, expected in [
        ("WAITING_FOR_SLOT", JobState.QUEUED),
        ("RUNNING", JobState.RUNNING),
        ("READY", JobState.RUNNING),
    ]:
        assert progress_fields({**state, "job": {**state["job"], "status": status}})[1]["state"] is expected
    # and a state without a usable request still yields the job's figures
    assert progress_fields({"request": "junk", "job": {"job_id": "j"}})[1]["state"] is JobState.QUEUED


def test_completion_events_map_to_final_job_fields():
    ready = outcome_fields(
        {"status": "READY", "connection": "dx", "object": STORED, "error": None, "polls": 2}
    )
    failed = outcome_fields({"status": "FAILED", "connection": None, "error": {"code": "X", "message": "y"}})
    assert (ready["state"], ready["object"], ready["polls"]) == (JobState.READY, STORED, 2)
    assert (failed["state"], failed["error"]["code"], "connection" in failed) == (JobState.FAILED, "X", False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    jobs=st.lists(st.tuples(st.sampled_from(["dx", "eu"]), st.booleans()), max_size=30),
    limit=st.integers(min_value=1, max_value=8),
    connection=st.sampled_from([None, "dx", "eu"]),
    state=st.sampled_from([None, JobState.QUEUED, JobState.FAILED]),
)
def test_following_cursors_lists_every_matching_job_once_newest_first(
    monkeypatch, jobs, limit, connection, state
):
    # given any jobs on two connections, some failed, in a fresh table
    with moto_store(monkeypatch) as store:
        for number, (on, failed) in enumerate(jobs):
            store.create(new_job(store, f"job-{number}", connection=on))
            if failed:
                store.finish(
                    f"job-{number}", {"state": JobState.FAILED, "error": {"code": "X", "message": "y"}}
                )
        # when a listing is read page by page, following each cursor
        pages, cursor = [], None
        for _ in range(len(jobs) + 2):
            page = store.list(connection=connection, state=state, limit=limit, cursor=cursor)
            pages.append([job.job_id for job in page.jobs])
            cursor = page.cursor
            if cursor is None:
                break
    # then it ends, and the pages hold exactly the matching jobs, newest first, each once
    assert cursor is None
    expected = [
        f"job-{number}"
        for number, (on, failed) in reversed(list(enumerate(jobs)))
        if connection in (None, on) and state in (None, JobState.FAILED if failed else JobState.QUEUED)
    ]
    assert [job_id for page in pages for job_id in page] == expected
    # and every page but the last is full
    assert all(len(page) == limit for page in pages[:-1])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    jobs=st.lists(
        st.tuples(st.sampled_from(["finance", "sales", "hr"]), st.sampled_from(["dx", "eu"]), st.booleans()),
        max_size=30,
    ),
    teams=st.sampled_from([["finance"], ["finance", "sales"], ["sales", "hr", "finance"], ["nobody"]]),
    limit=st.integers(min_value=1, max_value=8),
    connection=st.sampled_from([None, "dx"]),
    state=st.sampled_from([None, JobState.FAILED]),
)
@example(  # pages that each take some of both teams' jobs and leave more of both
    jobs=[("finance", "dx", False), ("sales", "dx", False), ("hr", "dx", False)] * 4,
    teams=["finance", "sales"],
    limit=3,
    connection=None,
    state=None,
)
def test_a_listing_of_several_teams_merges_their_jobs_newest_first_each_once(
    monkeypatch, jobs, teams, limit, connection, state
):
    # given jobs of three teams on two connections, some failed
    with moto_store(monkeypatch) as store:
        for number, (team, on, failed) in enumerate(jobs):
            store.create(new_job(store, f"job-{number}", connection=on, team=team))
            if failed:
                store.finish(
                    f"job-{number}", {"state": JobState.FAILED, "error": {"code": "X", "message": "y"}}
                )
        # when a caller in some of the teams reads the listing page by page
        pages, cursor = [], None
        for _ in range(len(jobs) + 2):
            page = store.list(teams=teams, connection=connection, state=state, limit=limit, cursor=cursor)
            pages.append([job.job_id for job in page.jobs])
            cursor = page.cursor
            if cursor is None:
                break
    # then the pages hold exactly its teams' matching jobs, newest first, each once, and the listing ends
    assert cursor is None
    expected = [
        f"job-{number}"
        for number, (team, on, failed) in reversed(list(enumerate(jobs)))
        if team in teams
        and connection in (None, on)
        and state in (None, JobState.FAILED if failed else JobState.QUEUED)
    ]
    assert [job_id for page in pages for job_id in page] == expected
    assert all(len(page) == limit for page in pages[:-1])


def test_a_team_cursor_cannot_be_taken_to_another_team_or_filter(store):
    # given a page of finance's and sales' jobs with more to come
    for number in range(3):
        store.create(new_job(store, f"f-{number}", team="finance"))
        store.create(new_job(store, f"s-{number}", team="sales"))
    cursor = store.list(teams=["finance", "sales"], limit=2).cursor
    assert cursor
    # when the cursor is used by a caller of finance only, or with another filter
    # then each is refused: a cursor never lists a team the caller is not in
    for teams, connection in ((["finance"], None), (["finance", "sales"], "dx")):
        with pytest.raises(BadRequest, match="cursor"):
            store.list(teams=teams, connection=connection, limit=2, cursor=cursor)
