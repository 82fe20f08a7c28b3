"""Schedules from config/schedules.json: each one an EventBridge Scheduler schedule with its job template."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra import constants
from infra.configuration import ConfigError, load_access, load_connections, load_schedules
from reportrelay.schedules import scheduled_job
from tests.infra.conftest import Synthesized, references
from tests.infra.policies import function_id

CONFIGURED = json.loads(constants.SCHEDULES_FILE.read_text(encoding="utf-8"))["schedules"]
START_SCHEDULED = "reportrelay.handlers.start_scheduled.handler"


def schedules(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        schedule["Properties"]["Name"]: schedule["Properties"]
        for schedule in synthesized.resources("AWS::Scheduler::Schedule").values()
    }


def test_each_configured_schedule_is_deployed_with_its_time_zone(synthesized: Synthesized) -> None:
    # given config/schedules.json / when the app is synthesized
    deployed = schedules(synthesized)
    group, _ = synthesized.resource("AWS::Scheduler::ScheduleGroup")

    # then each entry is a schedule in reportrelay's group, firing exactly when configured, in its zone
    assert set(deployed) == set(CONFIGURED)
    for name, configured in CONFIGURED.items():
        schedule = deployed[name]
        assert schedule["GroupName"] == {"Ref": group}
        assert schedule["ScheduleExpression"] == configured["schedule"]
        assert schedule["ScheduleExpressionTimezone"] == configured["timezone"]
        assert schedule["State"] == ("ENABLED" if configured.get("enabled", True) else "DISABLED")
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}


def test_a_schedule_invokes_the_start_function_with_its_template_and_scheduler_fills_the_time(
    synthesized: Synthesized,
) -> None:
    # given the example schedule's target
    name, configured = next(iter(CONFIGURED.items()))
    target = schedules(synthesized)[name]["Target"]

    # then it invokes the start function, with the template itself and Scheduler's scheduled-time
    assert references(target["Arn"]) == {function_id(synthesized, START_SCHEDULED)}
    payload = json.loads(target["Input"])
    assert payload == {
        "schedule": name,
        "scheduled_time": "<aws.scheduler.scheduled-time>",
        "window": {"window": configured["window"], "timezone": configured["timezone"]},
        "request": {**configured["request"], "team": configured["team"]},
    }
    # and retries a failed delivery a few times within an hour
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 3}

    # and what Scheduler would deliver on 1 March 2025 becomes February's job
    delivered = json.loads(target["Input"].replace("<aws.scheduler.scheduled-time>", "2025-03-01T06:00:00Z"))
    job = scheduled_job(delivered, now=datetime.now(UTC))
    assert job.request["parameters"] == {"Year": 2025, "From": "2025-02-01", "To": "2025-02-28"}
    # run for the schedule's team: the job belongs to it and its report is stored under it
    assert job.request["team"] == configured["team"]


def test_the_start_function_knows_which_state_machine_to_start(synthesized: Synthesized) -> None:
    machine, _ = synthesized.resource("AWS::StepFunctions::StateMachine")
    properties = synthesized.template["Resources"][function_id(synthesized, START_SCHEDULED)]["Properties"]
    assert properties["Environment"]["Variables"][constants.ENV_STATE_MACHINE_ARN] == {"Ref": machine}


def write(directory: Path, name: str, document: dict[str, Any]) -> Path:
    path = directory / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def schedule_with(**fields: Any) -> dict[str, Any]:
    body = {
        "schedule": "cron(0 6 * * ? *)",
        "timezone": "Europe/London",
        "window": "yesterday",
        "team": "finance",
        "request": {"connection": "acme-dx", "report": {"document_id": 10}, "format": "pdf"},
    }
    body.update(fields)
    return {"schedules": {"daily": body}}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (schedule_with(schedule="every day at six"), "expected cron"),
        (schedule_with(schedule="cron(0 6 * * ?)"), "expected cron"),
        (schedule_with(timezone="Europe/Atlantis"), "unknown time zone"),
        (schedule_with(window="fortnight"), "unknown window"),
        (
            schedule_with(request={"connection": "nowhere", "report": {}, "format": "pdf"}),
            "unknown connection",
        ),
        (
            schedule_with(
                request={
                    "connection": "acme-dx",
                    "report": {"document_id": 10},
                    "format": "pdf",
                    "parameters": {"From": "{{ tomorrow }}"},
                }
            ),
            "unknown placeholder",
        ),
        (schedule_with(enabled="yes"), "expected true or false"),
        (schedule_with(every="day"), "unknown field"),
        (schedule_with(team=None), r"schedules\.daily\.team: required"),
        (schedule_with(team="Finance Team"), r"schedules\.daily\.team: 'Finance Team' is not a team name"),
        (
            schedule_with(
                request={"connection": "acme-dx", "report": {"document_id": 10}, "format": "pdf", "team": "x"}
            ),
            r"schedules\.daily\.request\.team: name the schedule's team once",
        ),
    ],
)
def test_a_wrong_schedule_stops_synthesis_with_what_is_wrong(
    tmp_path: Path, document: dict[str, Any], message: str
) -> None:
    # given the repository's connections and a schedule with one mistake
    connections = load_connections(constants.CONNECTIONS_FILE)
    path = write(tmp_path, "schedules.json", document)
    # when the schedules are loaded (as synthesis does) / then the error names the schedule and the mistake
    with pytest.raises(ConfigError, match=message) as raised:
        load_schedules(path, connections)
    assert "schedules.daily" in str(raised.value)


def test_a_schedule_whose_team_may_not_use_its_connection_stops_synthesis(tmp_path: Path) -> None:
    # given the repository's connections (acme-dx is shared with finance and sales) and a schedule run
    # for marketing on acme-dx
    connections = load_connections(constants.CONNECTIONS_FILE)
    path = write(tmp_path, "schedules.json", schedule_with(team="marketing"))
    # when the schedules are loaded / then synthesis stops, naming the file, schedule, team and connection
    with pytest.raises(ConfigError) as raised:
        load_schedules(path, connections, admin_team="platform")
    message = str(raised.value)
    assert message.startswith(f"{path}: schedules.daily.team: ")
    assert "team 'marketing' may not use connection 'acme-dx'" in message
    assert "shared with finance, sales" in message


def test_a_schedule_may_run_for_a_team_of_its_connection_or_for_the_admin_team(tmp_path: Path) -> None:
    connections = load_connections(constants.CONNECTIONS_FILE)
    for team in ("sales", "platform"):
        path = write(tmp_path, f"{team}.json", schedule_with(team=team))
        (schedule,) = load_schedules(path, connections, admin_team="platform")
        assert json.loads(schedule.target_input())["request"]["team"] == team


def test_the_deployed_schedules_run_for_teams_their_connections_allow() -> None:
    # given the repository's configuration / then every schedule passes the team check synthesis makes
    access = load_access(constants.ACCESS_FILE)
    connections = load_connections(constants.CONNECTIONS_FILE)
    deployed = load_schedules(constants.SCHEDULES_FILE, connections, access.admin_team)
    assert {schedule.name: schedule.team for schedule in deployed} == {
        name: body["team"] for name, body in CONFIGURED.items()
    }


def test_a_connection_with_an_environment_secret_cannot_be_deployed(tmp_path: Path) -> None:
    # given a local-style connection whose password comes from an environment variable
    path = write(
        tmp_path,
        "connections.json",
        {
            "connections": {
                "dx": {
                    "provider": "devexpress",
                    "base_url": "https://dx.example",
                    "auth": {"type": "basic", "username": "api", "password": {"env": "DX_PASSWORD"}},
                }
            }
        },
    )
    # when it is loaded for deployment / then synthesis stops and says what to write instead
    with pytest.raises(ConfigError, match=r'connections\.dx\.auth\.password .*use \{"secret"'):
        load_connections(path)


def test_an_invalid_connection_stops_synthesis(tmp_path: Path) -> None:
    path = write(tmp_path, "connections.json", {"connections": {"dx": {"provider": "devexpress"}}})
    with pytest.raises(ConfigError, match=r"connections\.dx"):
        load_connections(path)


def test_the_connections_must_fit_in_the_functions_environment(tmp_path: Path) -> None:
    # given more connections than 4 KB of Lambda environment can hold
    connection = {
        "provider": "devexpress",
        "base_url": "https://reports.example",
        "auth": {
            "type": "basic",
            "username": "api",
            "password": {"secret": "reportrelay/x", "key": "password"},
        },
    }
    path = write(tmp_path, "connections.json", {"connections": {f"c{n}": connection for n in range(40)}})
    # then synthesis says so rather than failing the deploy
    with pytest.raises(ConfigError, match="more than the 3072"):
        load_connections(path)


def test_no_schedules_file_means_no_schedules(with_holder: Synthesized) -> None:
    assert schedules(with_holder) == {}
