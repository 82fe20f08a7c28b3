"""A job's activity: the words of each entry, the HTTP client's retry hook, the recorder, and the bounded
item the job store keeps them in (on moto's DynamoDB)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from jsonschema import Draft4Validator
from moto import mock_aws

from reportrelay.activity import (
    MAX_MESSAGE_CHARS,
    Entry,
    Recorder,
    cause_words,
    check_words,
    plain,
    queued_words,
    restart_words,
    retry_words,
    seconds_words,
    size_words,
    stored_words,
)
from reportrelay.auth import StaticHeaders
from reportrelay.errors import DownloadInterrupted, ProviderThrottled, ProviderUnavailable
from reportrelay.httpclient import ProviderHttp, RetryBudget, RetryNotice
from reportrelay.jobs import (
    ACTIVITY_CHATTER_SLOTS,
    ACTIVITY_MILESTONE_SLOTS,
    DynamoDbJobs,
    create_table_request,
)
from reportrelay.workflow import STEP_RETRIES, records_retries
from tests.unit.test_httpclient import ScriptedServer

ASL = Path(__file__).resolve().parents[2] / "statemachines" / "report.asl.json"
MiB = 1024 * 1024


@pytest.fixture
def store() -> Iterator[DynamoDbJobs]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**create_table_request("jobs"))
        yield DynamoDbJobs("jobs", lambda: client, clock=lambda: 1_796_137_445.123)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


# ---- the words


def test_each_kind_of_entry_reads_as_a_user_would_say_it():
    # given the figures of a retry, a check, a lost download and a stored file
    # then each entry says what happened in plain words
    assert (
        retry_words("vendor answered 429", 8, 2, 5) == "vendor answered 429, retrying in 8 s (attempt 2 of 5)"
    )
    assert check_words("RUNNING", 40, 30) == "report is generating (40 %), next check in 30 s"
    assert check_words("PENDING", None, 5) == "report is queued at the vendor, next check in 5 s"
    broke = DownloadInterrupted("the connection broke")
    assert (
        restart_words(broke, 412 * MiB, 1, 2)
        == "download broke at 412 MiB, regenerating at the vendor (restart 1 of 2)"
    )
    refused = ProviderUnavailable("fetch: GET /file answered HTTP 503: busy")
    assert (
        restart_words(refused, 0, 2, 2)
        == "vendor answered 503 before the download began, regenerating at the vendor (restart 2 of 2)"
    )
    assert stored_words(int(1.2 * 1024 * MiB), "bucket", "key") == "stored 1.2 GiB in s3://bucket/key"
    # and waits and sizes are rounded as a person rounds them
    assert [seconds_words(s) for s in (0.5, 8, 30.4, 240, 9000)] == ["0.5 s", "8 s", "30 s", "4 min", "2.5 h"]
    assert [size_words(n) for n in (900, 64 * 1024, 412 * MiB)] == ["900 B", "64 KiB", "412 MiB"]


def test_queued_names_the_vendors_id_but_never_a_sealed_or_odd_field():
    # given handles of a few vendors, one with a sealed session token
    # then the vendor's own report id is named, and nothing else
    assert queued_words({"export_id": "1234"}, frozenset()) == "queued at the vendor as export 1234"
    assert queued_words({"request_id": 77}, frozenset()) == "queued at the vendor as request 77"
    assert queued_words({"token_id": "secret"}, frozenset({"token_id"})) == "queued at the vendor"
    assert queued_words({"session_id": "a b?token=x"}, frozenset()) == "queued at the vendor"
    assert queued_words(None, frozenset()) == "queued at the vendor"


def test_a_step_failure_is_named_by_its_cause_and_a_foreign_error_by_its_type_only():
    # given a throttled queue call, a broken download, a refused connection and an unexpected error
    throttled = ProviderThrottled("queue export: POST /api/export answered HTTP 429: slow down", 8)
    # then each cause is a few words, and an error of unknown content shows nothing of its message
    assert cause_words(throttled) == "vendor answered 429"
    assert cause_words(DownloadInterrupted("the connection broke after 10 bytes")) == "download broke"
    assert cause_words(ProviderUnavailable("could not connect to h port 443")) == "could not reach the vendor"
    assert cause_words(KeyError("password=hunter2")) == "KeyError"


def test_messages_carry_no_query_string_and_stay_short():
    # given a message naming a URL with a session token, and one far too long
    leaky = "failed: GET https://vendor.example/api/file?token=s3cr3t&x=1 answered HTTP 500"
    # then the query string is gone, and the long one is cut with an ellipsis
    assert plain(leaky) == "failed: GET https://vendor.example/api/file?<query omitted> answered HTTP 500"
    assert "s3cr3t" not in plain(leaky)
    long = plain("word " * 500)
    assert len(long) == MAX_MESSAGE_CHARS and long.endswith("…")
    assert len(plain("€" * 400).encode()) <= 600


def test_an_entry_leaves_out_the_figures_its_kind_has_no_use_for():
    # given a state entry and a retry entry
    state = Entry("Fetch", "state", "ready; downloading").document("2026-12-01T15:04:05.123Z")
    retry = Entry("Submit", "retry", "x", attempt=2, attempts=5, wait_seconds=8).document("t")
    # then only the figures that apply are there, with numbers as numbers
    assert state == {
        "at": "2026-12-01T15:04:05.123Z",
        "step": "Fetch",
        "kind": "state",
        "message": "ready; downloading",
    }
    assert retry == {
        "at": "t",
        "step": "Submit",
        "kind": "retry",
        "message": "x",
        "attempt": 2,
        "attempts": 5,
        "wait_seconds": 8.0,
    }


# ---- the HTTP client's hook


def test_every_retry_of_the_http_client_reaches_its_hook_before_the_wait(server):
    # given a vendor that answers 429 (asking for no pause) and then 503 before it accepts a request
    server.script = [(429, {"Retry-After": "0"}, "slow down"), (503, {}, "maintenance")]
    http = ProviderHttp(
        server.base_url,
        StaticHeaders({}),
        budget=RetryBudget(attempts=3, max_total_wait_seconds=5, base_backoff_seconds=0.01),
    )
    heard: list[RetryNotice] = []
    http.on_retry = heard.append
    # when a request is sent
    assert http.request("POST", "/thing", action="queue").json() == {"ok": True}
    # then the hook heard of both retries: cause, the attempt about to be made, the budget and the wait
    assert [(n.cause, n.status, n.attempt, n.attempts, n.wait_seconds) for n in heard] == [
        ("vendor answered 429", 429, 2, 3, 0.0),
        ("vendor answered 503", 503, 3, 3, 0.02),
    ]
    assert all(n.action == "queue" for n in heard)


def test_a_hook_that_fails_never_fails_the_request(server):
    # given a hook that raises
    server.script = [(503, {}, "maintenance")]
    http = ProviderHttp(server.base_url, StaticHeaders({}), budget=RetryBudget(base_backoff_seconds=0.01))

    def broken(notice: RetryNotice) -> None:
        raise RuntimeError("the watcher is gone")

    http.on_retry = broken
    # when a retried request is sent, then it still succeeds
    assert http.request("GET", "/thing", action="check").json() == {"ok": True}


def test_the_recorder_words_each_http_retry_as_a_retry_entry(store):
    # given a recorder of the Submit step, hooked to the HTTP client
    recorder = Recorder(store, "job-1", "Submit", clock=lambda: 1_796_137_445.123)
    # when the client tells it of a retry
    recorder.http_retry(RetryNotice("queue export", "vendor answered 429", 2, 5, 8.0, 429))
    # then the job's activity holds the entry, in the user's words, with its figures
    assert store.activity("job-1") == [
        {
            "at": "2026-12-01T15:04:05.123Z",
            "step": "Submit",
            "kind": "retry",
            "message": "vendor answered 429, retrying in 8 s (attempt 2 of 5)",
            "attempt": 2,
            "attempts": 5,
            "wait_seconds": 8.0,
            "n": 1,
        }
    ]


def test_a_store_that_fails_loses_the_entry_not_the_step():
    # given a store that cannot be written
    class Broken:
        def add_activity(self, *args: Any, **kwargs: Any) -> int:
            raise OSError("no table")

    recorder = Recorder(Broken(), "job-1", "Check")  # type: ignore[arg-type]
    # when an entry is recorded, then nothing is raised
    recorder.wait("next check in 5 s", 5)
    # and without a job store or a job id there is nothing to do at all
    Recorder(None, "job-1", "Check").state("ready; downloading")
    assert Recorder(store=Broken(), job_id=None, step="Check").store is None  # type: ignore[arg-type]


# ---- the bounded item


def test_a_retry_storm_wrapping_the_ring_twice_keeps_the_milestones_and_latest_retries_in_400_kb(store):
    # given a job queued, then more retries with long messages than twice the ring holds, then stored
    storm = 2 * ACTIVITY_CHATTER_SLOTS + 50
    recorder = Recorder(store, "job-1", "Submit")
    recorder.state("queued at the vendor as export 1234")
    for attempt in range(storm):
        recorder.retry("vendor answered 429 " + "x" * 280, attempt + 2, storm + 2, 0.5)
    recorder.state("stored 1.2 GiB in s3://bucket/key")
    # when the activity is read
    kept = store.activity("job-1")
    # then both milestones and the latest retries are there, oldest first
    assert [entry["n"] for entry in kept] == sorted(entry["n"] for entry in kept)
    milestones = [entry["message"] for entry in kept if entry["kind"] == "state"]
    assert milestones == ["queued at the vendor as export 1234", "stored 1.2 GiB in s3://bucket/key"]
    retries = [entry for entry in kept if entry["kind"] == "retry"]
    assert len(retries) == ACTIVITY_CHATTER_SLOTS
    last = storm + 1
    assert retries[-1]["attempt"] == last and retries[0]["attempt"] == last - ACTIVITY_CHATTER_SLOTS + 1
    # and the item stays far below DynamoDB's 400 KB
    raw = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName="jobs", Key={"id": {"S": "activity#job-1"}}
    )["Item"]
    size = sum(len(name) + len(json.dumps(value)) for name, value in raw.items())
    assert size < 400 * 1000 / 2, size


def test_the_milestone_ring_keeps_the_latest_milestones(store):
    # given more milestones than the ring holds
    recorder = Recorder(store, "job-1", "Check")
    for number in range(ACTIVITY_MILESTONE_SLOTS + 5):
        recorder.state(f"milestone {number}")
    # then the latest ones are kept, in order
    kept = [entry["message"] for entry in store.activity("job-1")]
    assert kept == [f"milestone {number}" for number in range(5, ACTIVITY_MILESTONE_SLOTS + 5)]


def test_failures_of_a_step_are_counted_per_visit(store):
    # given a step that fails twice on one input, then once on the next
    counts = [store.count_step_failure("job-1", "Check", visit) for visit in ("a", "a", "b")]
    # then the count starts afresh with the new input; another step counts apart
    assert counts == [1, 2, 1]
    assert store.count_step_failure("job-1", "Fetch", "a") == 1


def test_the_retries_the_activity_announces_are_the_state_machines():
    # given the state machine's definition
    states = json.loads(ASL.read_text(encoding="utf-8"))["States"]
    # then, for each step, the rule the activity words retries by is one of the step's Retry rules
    for step, rule in STEP_RETRIES.items():
        declared = [
            (
                frozenset(r["ErrorEquals"]),
                r["IntervalSeconds"],
                r["MaxAttempts"],
                r["BackoffRate"],
                r["MaxDelaySeconds"],
            )
            for r in states[step]["Retry"]
        ]
        assert tuple(rule) in declared, step


def test_a_step_the_state_machine_retries_says_each_retry_until_it_gives_up(store):
    # given Submit failing on a throttled queue call, every time the state machine runs it
    def throttled(state: dict, runtime: Any) -> dict:
        raise ProviderThrottled("queue export: POST /api/export answered HTTP 429: slow down", None)

    step = records_retries("Submit")(throttled)
    runtime = SimpleNamespace(jobs=store, clock=lambda: 1_796_137_445.123)
    state = {"job": {"job_id": "job-1", "polls": 0}}
    # when it runs as often as its Retry allows, and once more
    for _ in range(STEP_RETRIES["Submit"].max_attempts + 1):
        with pytest.raises(ProviderThrottled):
            step(state, runtime)
    # then each retry the state machine makes is announced with its attempt and its longest wait
    told = [(e["attempt"], e["attempts"], e["wait_seconds"]) for e in store.activity("job-1")]
    assert told == [(2, 6, 5.0), (3, 6, 10.0), (4, 6, 20.0), (5, 6, 40.0), (6, 6, 80.0)]
    assert store.activity("job-1")[0]["message"] == (
        "vendor answered 429, retrying Submit within 5 s (attempt 2 of 6)"
    )
    # and an error the state machine does not retry says nothing (Conclude tells why the job failed)
    with pytest.raises(ValueError):
        records_retries("Submit")(lambda state, runtime: int("x"))(state, runtime)
    assert len(store.activity("job-1")) == 5


def test_the_answers_schema_is_a_valid_draft_4_schema():
    # given the JSON Schema of GET /reports/{id}/events
    schema = json.loads((ASL.parents[1] / "schemas" / "job-events.json").read_text(encoding="utf-8"))
    # then it is valid, and holds an answer with each kind of event
    Draft4Validator.check_schema(schema)
    answer = {
        "job_id": "job-1",
        "events": [
            Entry("Submit", "retry", "m", attempt=2, attempts=5, wait_seconds=8).document(
                "2026-12-01T15:04:05.123Z"
            ),
            Entry("Fetch", "progress", "m", percent=40).document("2026-12-01T15:04:06.000Z"),
        ],
        "next": "ZXZlbnRzOjI",
    }
    assert not list(Draft4Validator(schema).iter_errors(answer))
