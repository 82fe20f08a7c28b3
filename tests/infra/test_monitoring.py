"""Alarms on failed jobs and function errors, sent to an encrypted topic; a dashboard of the jobs' figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from infra import constants
from reportrelay import outbox, workflow
from reportrelay.observability import metrics
from tests.infra.conftest import Synthesized, references, rest_api
from tests.infra.policies import function_id

HANDLERS = {
    "Submit": "reportrelay.handlers.submit.handler",
    "Check": "reportrelay.handlers.check.handler",
    "Fetch": "reportrelay.handlers.fetch.handler",
    "Conclude": "reportrelay.handlers.conclude.handler",
    "Cancel": "reportrelay.handlers.cancel.handler",
    "StartScheduled": "reportrelay.handlers.start_scheduled.handler",
    "Api": "reportrelay.handlers.api.handler",
    "AnnouncePending": "reportrelay.handlers.announce_pending.handler",
}


def alarms(synthesized: Synthesized) -> list[dict[str, Any]]:
    return [alarm["Properties"] for alarm in synthesized.resources("AWS::CloudWatch::Alarm").values()]


def dashboard_body(synthesized: Synthesized) -> dict[str, Any]:
    """The dashboard JSON with CloudFormation references rendered as ``<LogicalId>``."""
    _, dashboard = synthesized.resource("AWS::CloudWatch::Dashboard")
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else f"<{references(part).pop()}>" for part in parts)
    return json.loads(text)


def test_a_failed_or_timed_out_execution_raises_the_alarm(synthesized: Synthesized) -> None:
    # given the state machine and the alarms
    machine, _ = synthesized.resource("AWS::StepFunctions::StateMachine")
    (alarm,) = [
        a
        for a in alarms(synthesized)
        if any("ExecutionsFailed" in json.dumps(m) for m in a.get("Metrics", []))
    ]
    # then one failed or timed-out execution of this state machine in five minutes is enough
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    assert metrics["failed"]["MetricStat"]["Metric"]["MetricName"] == "ExecutionsFailed"
    assert metrics["timedOut"]["MetricStat"]["Metric"]["MetricName"] == "ExecutionsTimedOut"
    for name in ("failed", "timedOut"):
        (dimension,) = metrics[name]["MetricStat"]["Metric"]["Dimensions"]
        assert references(dimension["Value"]) == {machine}
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


def test_every_function_has_an_errors_alarm(synthesized: Synthesized) -> None:
    # given each function / then an alarm watches its Errors metric
    watched = {
        references(alarm["Dimensions"][0]["Value"]).pop(): alarm
        for alarm in alarms(synthesized)
        if alarm.get("MetricName") == "Errors"
    }
    for name, handler in HANDLERS.items():
        alarm = watched[function_id(synthesized, handler)]
        assert alarm["Namespace"] == "AWS/Lambda"
        # provider steps raise the provider's errors on purpose (the state machine retries them): their
        # alarm waits for several; any error of the others is a fault
        expected = 5 if name in {"Submit", "Check", "Fetch", "Cancel"} else 1
        assert alarm["Threshold"] == expected, name


def test_a_5xx_from_either_api_raises_the_alarm(synthesized: Synthesized) -> None:
    # given the job API and the people API (bad input is a 4xx by design: a 5xx is a fault)
    names = {rest_api(synthesized, which)[1]["Properties"]["Name"] for which in ("jobs", "people")}
    watched = [a for a in alarms(synthesized) if a.get("MetricName") == "5XXError"]
    # then one 5xx in five minutes is enough, on either
    assert len(watched) == 2
    for alarm in watched:
        assert alarm["Namespace"] == "AWS/ApiGateway"
        assert alarm["Threshold"] == 1 and alarm["Statistic"] == "Sum"
    assert {alarm["Dimensions"][0]["Value"] for alarm in watched} == names
    # and the dashboard shows each API's requests, errors and latency
    titles = {widget.get("properties", {}).get("title") for widget in dashboard_body(synthesized)["widgets"]}
    assert {
        "Job API requests",
        "Job API latency p90 (ms)",
        "People API requests",
        "People API latency p90 (ms)",
    } <= titles


def test_every_alarm_notifies_the_encrypted_alarm_topic(synthesized: Synthesized) -> None:
    topic_id, topic = synthesized.resource("AWS::SNS::Topic")
    for alarm in alarms(synthesized):
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    (key,) = references(topic["Properties"]["KmsMasterKeyId"])
    assert synthesized.template["Resources"][key]["Properties"]["EnableKeyRotation"] is True


def test_the_alarm_topic_takes_only_tls_and_cloudwatch_can_publish(synthesized: Synthesized) -> None:
    (policy,) = synthesized.resources("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )
    (publish,) = [s for s in statements if s["Effect"] == "Allow"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Action"] == "sns:Publish"


def test_an_alarm_email_subscribes_to_the_topic(synthesized: Synthesized, hardened: Synthesized) -> None:
    assert synthesized.resources("AWS::SNS::Subscription") == {}
    (subscription,) = hardened.resources("AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"


def test_the_dashboard_shows_the_jobs_custom_metrics(synthesized: Synthesized) -> None:
    # given the dashboard / when its metrics are listed
    metrics = [
        metric
        for widget in dashboard_body(synthesized)["widgets"]
        for metric in widget.get("properties", {}).get("metrics", [])
    ]
    custom = {metric[1] for metric in metrics if metric[0] == constants.METRICS_NAMESPACE}
    # then reports ready/failed, job duration and bytes fetched are on it, from the conclude function's EMF
    assert custom == {"ReportsReady", "ReportsFailed", "JobDuration", "BytesFetched"}
    for metric in metrics:
        if metric[0] == constants.METRICS_NAMESPACE:
            assert metric[2:4] == ["service", constants.SERVICE]


def test_an_announcement_waiting_15_minutes_raises_the_alarm(synthesized: Synthesized) -> None:
    # given the alarm on the announce-pending sweep's metric (reportrelay.outbox.sweep)
    (alarm,) = [
        a for a in alarms(synthesized) if a.get("MetricName") == constants.METRIC_OLDEST_PENDING_ANNOUNCEMENT
    ]
    # then an outcome whose event has waited 15 minutes in the outbox raises it, as the sweep reports it
    assert alarm["Namespace"] == constants.METRICS_NAMESPACE
    assert alarm["Dimensions"] == [{"Name": "service", "Value": constants.SERVICE}]
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Threshold"] == 900
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Period"] == 300


def test_the_sweep_emits_the_metric_the_alarm_watches() -> None:
    # given a job store whose outbox holds one announcement that has waited 20 minutes
    now = datetime(2025, 3, 1, 6, 20, tzinfo=UTC).timestamp()
    waiting = outbox.Announcement("job-1", "job-1/READY", "Report Ready", {}, "2025-03-01T06:00:00.000Z")
    store = SimpleNamespace(
        pending_announcements=lambda limit: [waiting], note_announce_failed=lambda *_: True
    )
    refusing = SimpleNamespace(put_events=lambda **_: {"FailedEntryCount": 1, "Entries": [{}]})
    metrics.clear_metrics()
    try:
        outbox.sweep(store, refusing, None, now=now)  # type: ignore[arg-type]
        emf = metrics.serialize_metric_set()
    finally:
        metrics.clear_metrics()
    # then the age lands under the alarm's name, namespace and dimension
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == constants.METRICS_NAMESPACE
    assert directive["Dimensions"] == [list(constants.METRICS_DIMENSIONS)]
    assert emf[constants.METRIC_OLDEST_PENDING_ANNOUNCEMENT] == [1200.0]


def test_the_conclude_step_emits_the_metrics_the_dashboard_shows() -> None:
    # given a job that stored a report, concluded by the real conclude step
    state = {
        "request": {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"},
        "job": {
            "job_id": "job-1",
            "accepted_at": "2025-03-01T06:00:00.000Z",
            "object": {"bucket": "b", "key": "k", "size": 1234, "sha256": "0" * 64},
        },
    }
    bus = SimpleNamespace(put_events=lambda **_: {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]})
    runtime = SimpleNamespace(
        clock=lambda: datetime(2025, 3, 1, 6, 5, tzinfo=UTC).timestamp(),
        settings=SimpleNamespace(link_base_url=None, event_bus=None),
        jobs=None,
        client=lambda service: bus,
        memory_mb=256,  # what Conclude's own usage is counted with
        step_started=None,
    )
    metrics.clear_metrics()  # the metric set is shared: start from nothing other tests left behind
    try:
        workflow.conclude(state, runtime)  # type: ignore[arg-type]
        # when Powertools renders the metrics as EMF
        emf = metrics.serialize_metric_set()
    finally:
        metrics.clear_metrics()

    # then they land in the dashboard's namespace, with its dimension, under its names
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == constants.METRICS_NAMESPACE
    assert directive["Dimensions"] == [list(constants.METRICS_DIMENSIONS)]
    assert emf["service"] == constants.SERVICE
    assert {metric["Name"] for metric in directive["Metrics"]} == {
        constants.METRIC_REPORTS_READY,
        constants.METRIC_BYTES_FETCHED,
        constants.METRIC_JOB_DURATION,
    }
    assert emf[constants.METRIC_JOB_DURATION] == [300.0]
