"""Every outcome announced: the announce-pending function, which sends what waits in the job table's outbox.

The conclude step (and the job API's cancel) records each outcome with its event in the job table and then
puts the event on the bus (``reportrelay.outbox``). An event EventBridge refused stays in the table's
sparse ``outbox`` index; every five minutes an EventBridge rule invokes this function, which announces
what has waited two minutes or more, oldest first, and publishes how long the oldest has waited
(``OldestPendingAnnouncementSeconds``, alarmed on by ``infra.monitoring`` at 15 minutes).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import constants
from infra.api import JobTable
from infra.events import ReportEvents
from infra.functions import python_function
from infra.settings import Settings
from reportrelay import names

SWEEP_EVERY = Duration.minutes(5)


class AnnouncementSweeper(Construct):
    """The announce-pending function, its five-minute schedule, and the metric of the oldest wait."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        code: lambda_.Code,
        job_table: JobTable,
        report_events: ReportEvents,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "AnnouncePendingFunction",
            code=code,
            handler="reportrelay.handlers.announce_pending.handler",
            description="reportrelay: announce the outcomes whose event waits in the job table's outbox",
            timeout=Duration.seconds(60),  # well inside the five minutes between sweeps
            memory_size=256,
            settings=settings,
            environment={names.EVENT_BUS_ENV: report_events.bus.event_bus_name},
        )
        job_table.grant_sweep(self.function)
        report_events.grant_put_events(self.function)
        self.rule = events.Rule(
            self,
            "Schedule",
            description="reportrelay: sweep the job table's outbox (announce-pending) every five minutes",
            schedule=events.Schedule.rate(SWEEP_EVERY),
            # A missed sweep is the next one's to do: nothing to retry, nothing to keep.
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
        self.oldest_pending = cloudwatch.Metric(
            namespace=constants.METRICS_NAMESPACE,
            metric_name=constants.METRIC_OLDEST_PENDING_ANNOUNCEMENT,
            dimensions_map=constants.METRICS_DIMENSIONS,
            statistic="Maximum",
            period=SWEEP_EVERY,
        )
