"""GET /reports/{job_id}/events: following a job live with the after cursor, what a cancel adds, bad
cursors, and who may read them. The API handler is called in-process (LocalAws.api); the jobs run through
statemachines/report.asl.json against the DevExpress simulator over HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path

from jsonschema import Draft4Validator

from reportrelay import api
from reportrelay.access import Principal
from reportrelay.jobs import DynamoDbJobs, Job, JobState
from reportrelay.runtime import Runtime
from tests.api.conftest import ADMIN_CALLER, SALES_CALLER, report_request

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "job-events.json").read_text(encoding="utf-8")
)


def events(job_api, job_id: str, after: str | None = None, **kwargs) -> dict:
    answer = job_api("GET", f"/reports/{job_id}/events", query={"after": after} if after else None, **kwargs)
    assert answer.status == 200, answer.body
    body = answer.json()
    assert not list(Draft4Validator(SCHEMA).iter_errors(body)), body
    return dict(body)


def test_following_a_running_job_with_the_cursor_sees_each_entry_once_and_in_order(job_api, devexpress_sim):
    # given a report that takes a few checks to generate
    devexpress_sim.generation_seconds = 3
    job_id = job_api.start(report_request())
    # when a watcher follows its events, passing each answer's next as after, until the job has finished
    followed, cursor, finished = [], None, False
    deadline = time.monotonic() + 60
    while not finished and time.monotonic() < deadline:
        finished = job_api("GET", f"/reports/{job_id}").json()["state"] in ("ready", "failed", "cancelled")
        page = events(job_api, job_id, cursor)
        followed += page["events"]
        cursor = page["next"] or cursor
        time.sleep(0.3)
    # then it saw exactly the whole story, each entry once, oldest first
    assert finished
    whole = events(job_api, job_id)
    assert followed == whole["events"] and cursor == whole["next"]
    kinds = [event["kind"] for event in followed]
    assert kinds[0] == "state" and kinds.count("wait") >= 2, kinds
    assert followed[-1]["message"].startswith("stored ")
    # and the vendor starting on it is a milestone of its own, said once
    messages = [event["message"] for event in followed]
    assert messages.count("the vendor is generating the report") == 1, messages
    generating = messages.index("the vendor is generating the report")
    assert messages[generating + 1].startswith("report is generating, next check in "), messages
    # and each wait says when the next check comes, in its figures and its words
    for wait in (event for event in followed if event["kind"] == "wait"):
        assert wait["wait_seconds"] > 0, wait
        assert "next check in" in wait["message"] or "first check in" in wait["message"], wait


def test_a_cancelled_job_ends_its_story_saying_so(job_api, devexpress_sim):
    # given a job the provider is working on
    devexpress_sim.generation_seconds = 60
    job_id = job_api.start(report_request())
    job_api.wait_for(job_id, lambda job: job["queued_at"] is not None)
    # when it is cancelled
    assert job_api("DELETE", f"/reports/{job_id}").status == 200
    # then its last event says so, and what became of the report at the provider
    last = events(job_api, job_id)["events"][-1]
    assert (last["step"], last["kind"]) == ("Cancel", "state")
    assert last["message"] == (
        "cancelled through the job API; "
        "the provider offers no way to cancel, so it may still generate the report"
    )


def test_a_job_whose_execution_ended_unrecorded_ends_its_story_when_it_is_found_so(
    job_api, api_aws, devexpress_sim
):
    # given a running job whose execution was stopped in the console, and a record that has gone quiet
    devexpress_sim.generation_seconds = 60
    job_id = job_api.start(report_request())
    job_api.wait_for(job_id, lambda job: job["queued_at"] is not None)
    sfn = api_aws.client("stepfunctions")
    (execution,) = sfn.list_executions(stateMachineArn=api_aws.state_machine_arn)["executions"]
    sfn.stop_execution(executionArn=execution["executionArn"])
    while sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "RUNNING":
        time.sleep(0.05)
    later = Runtime.from_env()
    later.clock = lambda: time.time() + api.RECONCILE_AFTER_SECONDS + 60
    # when the job is watched and found failed
    finance = api.Caller(Principal("finance-operator", "iam", frozenset({"finance"})), api_aws.api_url)
    assert api.describe_job(job_id, finance, later).state is JobState.FAILED
    # then its last event says why
    last = events(job_api, job_id)["events"][-1]
    assert (last["step"], last["kind"]) == ("Reconcile", "state")
    assert last["message"] == "failed: the workflow was stopped outside the job API"


def test_a_job_with_no_events_yet_answers_an_empty_list_and_no_cursor(job_api, api_aws):
    # given a job the store knows, before any step has run
    store = DynamoDbJobs(api_aws.jobs_table, lambda: api_aws.client("dynamodb"))
    now = "2026-12-01T15:04:05.123Z"
    store.create(
        Job(job_id="quiet-job", state=JobState.QUEUED, created_at=now, updated_at=now, team="finance")
    )
    # when its events are asked for, then there are none, and no cursor
    assert events(job_api, "quiet-job") == {"job_id": "quiet-job", "events": [], "next": None}


def test_a_cursor_that_is_not_one_and_an_unknown_parameter_are_refused_naming_them(job_api, devexpress_sim):
    # given a finished job
    job_id = job_api.start(report_request())
    job_api.wait(job_id)
    # when it is asked with a made-up cursor, or a misspelt parameter
    made_up = job_api("GET", f"/reports/{job_id}/events", query={"after": "12"})
    misspelt = job_api("GET", f"/reports/{job_id}/events", query={"afer": "x"})
    # then both are 400s naming the field
    assert made_up.status == 400 and made_up.json()["message"].startswith("query.after:"), made_up.body
    assert (
        misspelt.status == 400
        and "query.afer: unknown parameter (known: after)" in misspelt.json()["message"]
    )


def test_another_teams_job_is_a_404_like_a_missing_one_and_the_admins_see_it(job_api, devexpress_sim):
    # given finance's finished job
    job_id = job_api.start(report_request())
    job_api.wait(job_id)
    missing_id = "0d6f7f38-9a0e-4c4b-9a7e-000000000000"
    # when sales asks for its events, and for a job that does not exist
    theirs = job_api("GET", f"/reports/{job_id}/events", identity=SALES_CALLER)
    missing = job_api("GET", f"/reports/{missing_id}/events", identity=SALES_CALLER)
    # then both answers are the same 404, but for the ids
    assert theirs.status == missing.status == 404
    seen = {**theirs.json(), "message": theirs.json()["message"].replace(job_id, "<id>")}
    assert seen == {**missing.json(), "message": missing.json()["message"].replace(missing_id, "<id>")}
    # and the admin team reads the same events as finance does
    assert events(job_api, job_id, identity=ADMIN_CALLER) == events(job_api, job_id)
