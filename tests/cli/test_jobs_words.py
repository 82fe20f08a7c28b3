"""What ``reportrelay jobs`` says of a job, from the API's answers alone: plain words, times, exit codes."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from reportrelay_cli.jobs import ApiRefused, WatchDisplay, final_line, rerun_request, state_words, status_line

NOW = datetime(2026, 12, 1, 15, 5, 0, tzinfo=UTC)


def job(**fields) -> dict:
    base = {
        "job_id": "j-1",
        "state": "running",
        "created_at": "2026-12-01T15:00:00.000Z",
        "queued_at": "2026-12-01T15:01:00.000Z",
        "ready_at": None,
        "finished_at": None,
        "provider_status": "Running",
        "progress": None,
        "message": None,
        "polls": 4,
        "connection": "dx",
        "report": {"document_id": 10},
        "format": "pdf",
        "team": "finance",
        "object": None,
        "error": None,
    }
    return {**base, **fields}


def test_a_running_job_in_plain_words_with_elapsed_next_check_eta_and_deadline():
    # given a job 25 % through after 4 minutes at the provider, whose last event was a 40 s wait 10 s ago
    events = [
        {"at": "2026-12-01T15:04:50.000Z", "step": "Check", "kind": "wait", "message": "next check in 40 s",
         "wait_seconds": 40.0},
    ]  # fmt: skip
    running = job(progress=25.0, deadline_at="2026-12-01T17:00:00Z")
    # when its status line is made
    line = status_line(running, events, NOW)
    # then it says, in words: state, the provider's progress, elapsed, checks, next check, ETA and deadline
    # (last, as a narrow terminal crops the end of the line)
    assert line == (
        "being generated at the provider · provider: Running 25% · elapsed 5 min 00 s · 4 check(s) · "
        "next check in 30 s · ETA about 12 min 00 s · deadline 2026-12-01 17:00:00 UTC"
    )


def test_a_finished_job_shows_its_elapsed_time_to_the_end_and_no_next_check():
    done = job(state="ready", ready_at="2026-12-01T15:02:00Z", finished_at="2026-12-01T15:02:30.000Z")
    line = status_line(done, [{"at": "2026-12-01T15:02:00Z", "kind": "wait", "wait_seconds": 60}], NOW)
    assert line.startswith("ready: the file is stored") and "elapsed 2 min 30 s" in line
    assert "next check" not in line and "ETA" not in line


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"state": "queued", "queued_at": None}, "accepted, about to be queued at the provider"),
        ({"state": "queued"}, "queued at the provider"),
        ({"state": "running"}, "being generated at the provider"),
        ({"state": "running", "ready_at": "2026-12-01T15:04:00Z"}, "ready at the provider, storing the file"),
        ({"state": "cancelled"}, "cancelled"),
    ],
)
def test_states_are_said_in_words_not_workflow_state_names(fields, words):
    assert state_words(job(**fields)) == words


def test_the_last_line_says_failed_and_why():
    failed = job(state="failed", error={"code": "ProviderRejected", "message": "Year out of range"})
    assert final_line(failed) == "FAILED ProviderRejected: Year out of range"


def test_a_rerun_keeps_the_request_the_api_shows_but_never_its_client_token():
    # given a job whose view shows its whole request, client token included
    shown = job(request={"connection": "dx", "report": {"document_id": 10}, "format": "pdf",
                         "parameters": {"Year": 2025}, "client_token": "once"})  # fmt: skip
    # then the rerun asks for the same report with the same parameters, as a new job of the same team
    assert rerun_request(shown) == {
        "connection": "dx", "report": {"document_id": 10}, "format": "pdf", "parameters": {"Year": 2025},
        "team": "finance",
    }  # fmt: skip
    # and from a view without it, what the view shows
    assert rerun_request(job()) == {
        "connection": "dx", "report": {"document_id": 10}, "format": "pdf", "team": "finance"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 2), (409, 2), (415, 2), (401, 3), (403, 3), (404, 3), (410, 3), (429, 1), (503, 1)],
)
def test_the_apis_answers_map_to_exit_codes(status, code):
    assert ApiRefused(status, "Code", "message").exit_code == code


class _Terminal(io.StringIO):
    """What rich takes for a terminal: the live line is drawn and redrawn, not printed once."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_each_event_is_printed_above_the_live_line():
    # given a watch display on a terminal
    screen = _Terminal()
    display = WatchDisplay(screen)
    retry = {"at": "2026-12-01T15:04:05.123Z", "step": "Submit", "kind": "retry",
             "message": "vendor answered 429, retrying in 8 s (attempt 2 of 5)", "attempt": 2, "attempts": 5,
             "wait_seconds": 8.0}  # fmt: skip
    # when the job moves on with a retry, then again
    display.update(job(state="queued", queued_at=None), [retry], [retry])
    display.update(job(progress=50.0), [], [retry])
    display.stop()
    # then the retry's line was printed once, in its own words, and the live line showed the job's state
    text = screen.getvalue()
    assert text.count("15:04:05 Submit         vendor answered 429, retrying in 8 s (attempt 2 of 5)") == 1
    assert "accepted, about to be queued at the provider" in text
    assert "being generated at the provider · provider: Running 50%" in text


def test_a_finished_jobs_cost_is_shown_with_what_it_used_and_where_the_prices_come_from():
    # given a finished job whose API view carries its cost
    from reportrelay import costs
    from reportrelay_cli.jobs import job_lines

    usage = {"state_transitions": 21, "lambda_invocations": 7, "lambda_gb_seconds": 1.5, "s3_put_requests": 3}
    ready = job(state="ready", cost=costs.estimate({**usage, "s3_get_requests": 2, "s3_bytes_stored": 65536}))
    # when `jobs get` words it
    lines = job_lines(ready)
    # then its last line says the estimate and the drivers behind it, and which prices were used
    assert lines[-1] == (
        f"  cost about ${ready['cost']['usd']:.6f} (21 state transitions, 7 Lambda invocations (1.50 GB-s), "
        "5 S3 requests, 65,536 bytes stored; list prices in us-east-1, read 2026-12-01)"
    )
