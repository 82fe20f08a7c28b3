"""Scheduled jobs: date windows resolved when the schedule fires, and the start of the job itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from reportrelay.errors import ConfigurationError
from reportrelay.handlers import start_scheduled
from reportrelay.schedules import job_id, render, resolve_window, scheduled_job

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def window(name: str, at: str, timezone: str = "UTC") -> tuple[date, date]:
    resolved = resolve_window({"window": name, "timezone": timezone}, datetime.fromisoformat(at))
    return resolved.first, resolved.last


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("today", date(2025, 3, 12), date(2025, 3, 12)),
        ("yesterday", date(2025, 3, 11), date(2025, 3, 11)),
        ("this_week", date(2025, 3, 10), date(2025, 3, 16)),
        ("last_week", date(2025, 3, 3), date(2025, 3, 9)),
        ("this_month", date(2025, 3, 1), date(2025, 3, 31)),
        ("last_month", date(2025, 2, 1), date(2025, 2, 28)),
        ("this_quarter", date(2025, 1, 1), date(2025, 3, 31)),
        ("last_quarter", date(2024, 10, 1), date(2024, 12, 31)),
        ("this_year", date(2025, 1, 1), date(2025, 12, 31)),
        ("last_year", date(2024, 1, 1), date(2024, 12, 31)),
        ("week_to_date", date(2025, 3, 10), date(2025, 3, 12)),
        ("month_to_date", date(2025, 3, 1), date(2025, 3, 12)),
        ("quarter_to_date", date(2025, 1, 1), date(2025, 3, 12)),
        ("year_to_date", date(2025, 1, 1), date(2025, 3, 12)),
        ("last_7_days", date(2025, 3, 5), date(2025, 3, 11)),
        ("last_1_days", date(2025, 3, 11), date(2025, 3, 11)),
    ],
)
def test_each_window_covers_the_calendar_days_it_names(name: str, first: date, last: date) -> None:
    # given a run due on Wednesday 12 March 2025
    # when the window is resolved
    # then it covers exactly the named days
    assert window(name, "2025-03-12T06:00:00+00:00") == (first, last)


def test_windows_cross_year_and_leap_day_boundaries() -> None:
    # given runs due early in a year and in a leap-year March
    # then the previous month, quarter and week reach back into the previous year or February
    assert window("last_month", "2025-01-01T00:00:00+00:00") == (date(2024, 12, 1), date(2024, 12, 31))
    assert window("last_quarter", "2025-02-15T00:00:00+00:00") == (date(2024, 10, 1), date(2024, 12, 31))
    assert window("last_month", "2024-03-05T00:00:00+00:00") == (date(2024, 2, 1), date(2024, 2, 29))
    assert window("last_week", "2025-01-02T00:00:00+00:00") == (date(2024, 12, 23), date(2024, 12, 29))


def test_the_day_is_taken_in_the_windows_time_zone() -> None:
    # given a run due at 03:30 UTC on 1 March, which is still 28 February in New York
    at = "2025-03-01T03:30:00+00:00"
    # when "yesterday" and "last_month" are resolved in New York and in London
    # then New York's day is 28 February, London's is 1 March
    assert window("yesterday", at, "America/New_York") == (date(2025, 2, 27), date(2025, 2, 27))
    assert window("yesterday", at, "Europe/London") == (date(2025, 2, 28), date(2025, 2, 28))
    assert window("last_month", at, "America/New_York") == (date(2025, 1, 1), date(2025, 1, 31))
    assert window("last_month", at, "Europe/London") == (date(2025, 2, 1), date(2025, 2, 28))


def test_placeholders_fill_dates_instants_and_numbers() -> None:
    # given last month's window in London, across the change to summer time (30 March 2025)
    resolved = resolve_window(
        {"window": "last_month", "timezone": "Europe/London"}, datetime(2025, 4, 2, 6, tzinfo=UTC)
    )
    template = {
        "From": "{{ first }}",
        "To": "{{last}}",
        "Start": "{{ start }}",
        "End": "{{ end }}",
        "Year": "{{ year }}",
        "Month": "{{ month }}",
        "Quarter": "{{ quarter }}",
        "Label": "{{ first:%d.%m.%Y }} - {{ last:%d.%m.%Y }}",
        "Nested": [{"Period": "Q{{ quarter }}/{{ year }}"}],
        "Untouched": "plain text",
        "Number": 7,
    }

    # when the template is rendered
    rendered = render(template, resolved)

    # then dates are ISO dates, instants carry the zone's offset of that day, lone numbers are numbers
    assert rendered == {
        "From": "2025-03-01",
        "To": "2025-03-31",
        "Start": "2025-03-01T00:00:00+00:00",
        "End": "2025-04-01T00:00:00+01:00",
        "Year": 2025,
        "Month": 3,
        "Quarter": 1,
        "Label": "01.03.2025 - 31.03.2025",
        "Nested": [{"Period": "Q1/2025"}],
        "Untouched": "plain text",
        "Number": 7,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"window": "fortnight"}, "unknown window 'fortnight'"),
        ({"window": "next_month"}, "unknown window 'next_month'"),
        ({"window": "last_0_days"}, "must be 1 to 366"),
        ({"window": "yesterday", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"window": "yesterday", "tz": "UTC"}, "unknown field(s) in the schedule window: tz"),
        ({"timezone": "UTC"}, "must look like"),
    ],
)
def test_a_bad_window_is_refused_with_what_to_write_instead(spec: dict[str, Any], message: str) -> None:
    # given a window spec with a mistake / when it is resolved / then the error names the mistake
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_window(spec, NOW)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ tomorrow }}", "unknown placeholder"),
        ("{{ year:%Y }}", "takes no format"),
        ("From {{ first } to {{ last }}", "write a placeholder as"),
    ],
)
def test_a_bad_placeholder_is_refused(template: str, message: str) -> None:
    # given a template with a mistake / when rendered / then the error says how to write it
    resolved = resolve_window({"window": "yesterday"}, NOW)
    with pytest.raises(ConfigurationError, match=message):
        render({"parameters": {"From": template}}, resolved)


def test_the_job_id_depends_only_on_the_schedule_and_the_due_time() -> None:
    # given the same run delivered twice, and a schedule name with characters executions refuse
    at = datetime(2025, 3, 12, 6, 0, tzinfo=UTC)
    # then both deliveries get the same id, made of characters Step Functions accepts
    assert job_id("daily-sales", at) == job_id("daily-sales", at) == "daily-sales-20250312T060000Z"
    assert job_id("Sales report (EMEA)!", at) == "Sales-report-EMEA-20250312T060000Z"
    assert len(job_id("x" * 200, at)) <= 80


def scheduler_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "schedule": "monthly-sales",
        "scheduled_time": "2025-03-01T06:00:00Z",
        "window": {"window": "last_month", "timezone": "Europe/London"},
        "request": {
            "connection": "acme-dx",
            "report": {"document_id": 10},
            "format": "pdf",
            "parameters": {"From": "{{ first }}", "To": "{{ last }}", "Year": "{{ year }}"},
            "output": {"key_prefix": "sales/{{ first:%Y/%m }}/"},
        },
    }
    return {**event, **overrides}


def test_a_scheduler_event_becomes_a_concrete_job_for_the_time_it_was_due() -> None:
    # given the event Scheduler delivers (its scheduled-time placeholder already filled)
    # when it is turned into a job long after it was due (a late retry)
    job = scheduled_job(scheduler_event(), now=datetime(2025, 3, 9, tzinfo=UTC))

    # then the window is the one of the due time, not of the retry
    assert job.job_id == "monthly-sales-20250301T060000Z"
    assert job.request["parameters"] == {"From": "2025-02-01", "To": "2025-02-28", "Year": 2025}
    assert job.request["output"] == {"key_prefix": "sales/2025/02/"}
    assert job.request["connection"] == "acme-dx"


def test_a_run_started_by_hand_covers_the_window_as_of_now() -> None:
    # given a test invoke from the console, where Scheduler's placeholder was never filled
    event = scheduler_event(scheduled_time="<aws.scheduler.scheduled-time>")
    # when it is turned into a job
    job = scheduled_job(event, now=datetime(2025, 6, 15, 12, tzinfo=UTC))
    # then "last month" is May
    assert job.request["parameters"]["From"] == "2025-05-01"
    assert job.job_id == "monthly-sales-20250615T120000Z"


@pytest.fixture
def state_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    with mock_aws():
        client = boto3.client("stepfunctions", region_name="us-east-1")
        arn = client.create_state_machine(
            name="reportrelay",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/reportrelay",
        )["stateMachineArn"]
        monkeypatch.setenv(start_scheduled.STATE_MACHINE_ARN_ENV, arn)
        yield client, arn


class Context:
    function_name = "reportrelay-start-scheduled"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:reportrelay-start-scheduled"
    aws_request_id = "request-1"


def test_the_handler_starts_the_job_once_even_when_scheduler_delivers_twice(
    state_machine: tuple[Any, str],
) -> None:
    # given a deployed state machine and one scheduled run
    client, arn = state_machine

    # when Scheduler delivers the run twice (it retries on a lost answer)
    first = start_scheduled.handler(scheduler_event(), Context())
    second = start_scheduled.handler(scheduler_event(), Context())

    # then one execution runs, named by the job id, with the concrete request as its input
    assert first == second
    assert first["job_id"] == "monthly-sales-20250301T060000Z"
    executions = client.list_executions(stateMachineArn=arn)["executions"]
    assert [execution["name"] for execution in executions] == ["monthly-sales-20250301T060000Z"]
    started = client.describe_execution(executionArn=first["execution_arn"])
    assert json.loads(started["input"])["parameters"] == {
        "From": "2025-02-01",
        "To": "2025-02-28",
        "Year": 2025,
    }


def test_the_handler_refuses_to_run_without_a_state_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a function deployed without its state machine setting
    monkeypatch.delenv(start_scheduled.STATE_MACHINE_ARN_ENV, raising=False)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    # when it is invoked / then it says which setting is missing
    with pytest.raises(ConfigurationError, match="REPORTRELAY_STATE_MACHINE_ARN"):
        start_scheduled.handler(scheduler_event(), Context())
