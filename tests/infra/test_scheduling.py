"""Schedules from config/schedules.json: each one an EventBridge Scheduler schedule with its job template."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra import constants
from infra.configuration import ConfigError, load_access, load_connections, load_schedules
from reportrelay import names
from reportrelay.schedules import scheduled_job
from tests.infra.conftest import Synthesized, references
from tests.infra.policies import function_id, function_role, grants

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
    assert properties["Environment"]["Variables"][names.STATE_MACHINE_ARN_ENV] == {"Ref": machine}


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
                    "auth": {"type": "oauth_password", "username": "api", "password": {"env": "DX_PASSWORD"}},
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


def test_more_connections_than_an_environment_holds_are_deployed_as_parameters(tmp_path: Path) -> None:
    # given more connections than 4 KB of Lambda environment could hold
    connection = {
        "provider": "devexpress",
        "base_url": "https://reports.example",
        "auth": {
            "type": "oauth_password",
            "username": "api",
            "password": {"secret": "reportrelay/x", "key": "password"},
        },
    }
    path = write(tmp_path, "connections.json", {"connections": {f"c{n}": connection for n in range(40)}})
    # when they are loaded for deployment / then each is one SSM parameter's value (infra.connections)
    values = load_connections(path).parameter_values()
    assert sorted(values) == sorted(f"c{n}" for n in range(40))
    assert all(json.loads(value) == connection for value in values.values())


def test_no_schedules_file_means_no_schedules(with_holder: Synthesized) -> None:
    assert schedules(with_holder) == {}


def dead_letter_queue(synthesized: Synthesized) -> str:
    queue, _ = synthesized.resource("AWS::SQS::Queue")
    return queue


def start_function_invoke_configs(synthesized: Synthesized) -> list[dict[str, Any]]:
    start = function_id(synthesized, START_SCHEDULED)
    return [
        config
        for config in synthesized.resources("AWS::Lambda::EventInvokeConfig").values()
        if references(config["Properties"]["FunctionName"]) == {start}
    ]


def test_every_schedule_sends_what_it_cannot_deliver_to_the_dead_letter_queue(
    synthesized: Synthesized,
) -> None:
    # given the deployed schedules and the one queue
    queue = dead_letter_queue(synthesized)
    # then each schedule retries a refused invoke, then sends the run to that queue
    for name, schedule in schedules(synthesized).items():
        target = schedule["Target"]
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}, name
        assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 3}


def test_a_run_the_start_function_fails_goes_to_the_same_queue(synthesized: Synthesized) -> None:
    # given the start function (Scheduler invokes it asynchronously, so its failures are Lambda's)
    queue = dead_letter_queue(synthesized)
    (config,) = start_function_invoke_configs(synthesized)
    properties = config["Properties"]
    # then Lambda retries a failed run twice within the hour, then sends it to the queue
    assert properties["Qualifier"] == "$LATEST"
    assert properties["MaximumRetryAttempts"] == 2
    assert properties["MaximumEventAgeInSeconds"] == 3600
    assert properties["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [queue, "Arn"]}}}
    # and only once the function's role may send there (Lambda checks when the config is made)
    role = function_role(synthesized, START_SCHEDULED)
    policies = [
        policy_id
        for policy_id, policy in synthesized.resources("AWS::IAM::Policy").items()
        if {"Ref": role} in policy["Properties"]["Roles"]
    ]
    assert set(policies) <= set(config["DependsOn"])


def test_the_dead_letter_queue_is_encrypted_and_refuses_plain_http(synthesized: Synthesized) -> None:
    queue = dead_letter_queue(synthesized)
    properties = synthesized.template["Resources"][queue]["Properties"]
    assert properties["SqsManagedSseEnabled"] is True
    assert properties["MessageRetentionPeriod"] == 14 * 24 * 3600
    (policy,) = [
        p["Properties"]
        for p in synthesized.resources("AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [{"Ref": queue}]
    ]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Principal"] == {"AWS": "*"}


def test_only_the_scheduler_and_the_start_function_may_send_to_the_queue_and_only_send(
    synthesized: Synthesized,
) -> None:
    queue = dead_letter_queue(synthesized)
    _, schedule = next(iter(synthesized.resources("AWS::Scheduler::Schedule").items()))
    (scheduler_role,) = references(schedule["Properties"]["Target"]["RoleArn"])
    on_queue = {
        (grant.role, action)
        for grant in grants(synthesized)
        if queue in grant.resource_ids
        for action in grant.actions
    }
    assert on_queue == {
        (scheduler_role, "sqs:SendMessage"),
        (function_role(synthesized, START_SCHEDULED), "sqs:SendMessage"),
    }


def test_a_message_in_the_dead_letter_queue_raises_the_alarm(synthesized: Synthesized) -> None:
    queue = dead_letter_queue(synthesized)
    (alarm,) = [
        alarm["Properties"]
        for alarm in synthesized.resources("AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("Namespace") == "AWS/SQS"
    ]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    (dimension,) = alarm["Dimensions"]
    assert dimension["Name"] == "QueueName"
    assert references(dimension["Value"]) == {queue}
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Maximum", 300, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    topic, _ = synthesized.resource("AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic}]


def test_the_stack_says_where_failed_starts_wait_and_which_function_replays_them(
    synthesized: Synthesized,
) -> None:
    outputs = synthesized.template["Outputs"]
    assert outputs["ScheduleDeadLetterQueueUrl"]["Value"] == {"Ref": dead_letter_queue(synthesized)}
    assert outputs["StartScheduledFunctionName"]["Value"] == {
        "Ref": function_id(synthesized, START_SCHEDULED)
    }


def test_no_schedules_means_no_dead_letter_queue(with_holder: Synthesized) -> None:
    assert with_holder.resources("AWS::SQS::Queue") == {}
    assert start_function_invoke_configs(with_holder) == []
    assert "ScheduleDeadLetterQueueUrl" not in with_holder.template["Outputs"]
    assert not [
        alarm
        for alarm in with_holder.resources("AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("Namespace") == "AWS/SQS"
    ]
