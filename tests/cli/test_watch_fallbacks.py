"""``jobs watch`` and ``jobs events`` against an API that lacks the events route or fails for a moment.

A small stand-in for the job API on loopback (people mode: a bearer token, no signature) answers each
GET of the job with the next state of a script, so what the command does with each answer is exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.cli.conftest import reportrelay, schema_problems
from tests.http import serve

JOB_ID = "5d1f9c1e-0b7e-4f3c-9a51-2b7c9e1d4a77"
NO_ROUTE = (404, {"code": "NotFound", "message": "no such route; see docs/openapi.json"})
UNAVAILABLE = (
    503,
    {"code": "ServiceUnavailable", "message": "the job store did not answer; retrying is safe"},
)


def view(state: str, **fields: Any) -> dict[str, Any]:
    job = {
        "job_id": JOB_ID, "state": state, "source": "api", "team": "finance", "owner": "person:carol",
        "connection": "dx", "provider": "devexpress", "report": {"document_id": 10}, "format": "pdf",
        "provider_status": None, "progress": None, "message": None, "polls": 0,
        "created_at": "2026-12-01T15:00:00.000Z", "updated_at": "2026-12-01T15:00:01.000Z",
        "queued_at": None, "ready_at": None, "stored_at": None, "finished_at": None,
        "deadline_at": "2026-12-02T15:00:00.000Z", "request": None, "object": None, "error": None,
        "links": {"status": f"http://127.0.0.1/v1/reports/{JOB_ID}", "download": None},
    }  # fmt: skip
    return {**job, **fields}


READY = view(
    "ready",
    provider_status="Complete",
    progress=100.0,
    polls=3,
    queued_at="2026-12-01T15:00:01.000Z",
    ready_at="2026-12-01T15:00:04.000Z",
    stored_at="2026-12-01T15:00:05.000Z",
    finished_at="2026-12-01T15:00:05.000Z",
    object={
        "bucket": "b-1",
        "key": f"finance/{JOB_ID}/Sales.pdf",
        "size": 10,
        "sha256": "0" * 64,
        "content_type": "application/pdf",
        "filename": "Sales.pdf",
    },
)


class ScriptedApi:
    """Answers GET /reports/{id} with each of ``job_answers`` in turn (the last one from then on)."""

    def __init__(self, job_answers: list[tuple[int, dict[str, Any]]]) -> None:
        self.job_answers = job_answers
        self.asked: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ["PATH_INFO"]
        self.asked.append(path)
        assert environ.get("HTTP_AUTHORIZATION") == "Bearer a-token"
        if path == f"/v1/reports/{JOB_ID}":
            status, body = self.job_answers.pop(0) if len(self.job_answers) > 1 else self.job_answers[0]
        else:
            status, body = NO_ROUTE
        data = json.dumps(body).encode()
        start_response(
            f"{status} X", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]


@pytest.fixture
def scripted() -> Iterator[Callable[[list[tuple[int, dict[str, Any]]]], tuple[ScriptedApi, str]]]:
    """Serves a ScriptedApi on loopback; its URL (stage included), until the test ends."""
    with ExitStack() as servers:

        def start(answers: list[tuple[int, dict[str, Any]]]) -> tuple[ScriptedApi, str]:
            app = ScriptedApi(answers)
            return app, servers.enter_context(serve(app)) + "/v1"

        yield start


def test_watch_follows_the_job_alone_where_the_api_has_no_events_route(scripted, capsys):
    # given an API from before GET /reports/{id}/events: the job goes queued, running at 50 %, ready
    running = view(
        "running", provider_status="Running", progress=50.0, polls=1, queued_at="2026-12-01T15:00:01Z"
    )
    api, url = scripted([(200, view("queued")), (200, running), (200, READY)])
    # when it is watched with --jsonl
    watched = reportrelay(capsys, "jobs", "watch", JOB_ID, "--api", url, "--token", "a-token", "--jsonl",
                          "--interval", "0.05")  # fmt: skip
    # then every change of the job is a line, no event, and it ends ready with exit 0
    assert watched.code == 0, watched.err
    lines = watched.lines()
    assert [line["job"]["state"] for line in lines] == ["queued", "running", "ready"]
    assert [problem for line in lines for problem in schema_problems(line, "cli-watch-line.json")] == []
    # and the events route was asked once, then left alone
    assert api.asked.count(f"/v1/reports/{JOB_ID}/events") == 1
    # and in words, too: the state, the provider's progress, and the last line
    words = reportrelay(capsys, "jobs", "watch", JOB_ID, "--api", url, "--token", "a-token")
    assert words.code == 0 and words.out.splitlines()[-1].startswith("READY Sales.pdf (10 bytes)")


def test_watch_asks_again_after_the_api_fails_for_a_moment(scripted, capsys):
    # given an API that answers 503 twice, then the ready job
    _, url = scripted([UNAVAILABLE, UNAVAILABLE, (200, READY)])
    # when the job is watched
    watched = reportrelay(capsys, "jobs", "watch", JOB_ID, "--api", url, "--token", "a-token", "--json",
                          "--interval", "0.05")  # fmt: skip
    # then it says so twice and carries on to the end
    assert watched.code == 0, watched.err
    assert watched.json()["state"] == "ready"
    assert (
        watched.err.count("the job store did not answer; retrying is safe (HTTP 503 ServiceUnavailable)") == 2
    )


def test_watch_gives_up_on_an_api_that_keeps_failing(scripted, capsys):
    _, url = scripted([UNAVAILABLE])
    watched = reportrelay(
        capsys, "jobs", "watch", JOB_ID, "--api", url, "--token", "a-token", "--interval", "0.05"
    )
    assert watched.code == 1
    assert watched.err.strip().splitlines()[-1] == (
        "reportrelay: error: the job store did not answer; retrying is safe (HTTP 503 ServiceUnavailable)"
    )


def test_events_on_an_api_without_the_route_is_not_found(scripted, capsys):
    _, url = scripted([(200, READY)])
    ran = reportrelay(capsys, "jobs", "events", JOB_ID, "--api", url, "--token", "a-token")
    assert ran.code == 3 and "has no events route" in ran.err
