"""Is reportrelay healthy? Alarms on failed jobs and function errors, and a dashboard of the jobs' figures."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import constants
from infra.settings import Settings

PERIOD = Duration.minutes(5)
PROVIDER_ERRORS_PERIOD = Duration.minutes(15)
ANNOUNCEMENT_WAIT_ALARM_SECONDS = 900  # issue 11: nothing waits to be announced longer than 15 minutes


class Monitoring(Construct):
    """An alarm topic (encrypted), the alarms that notify it, and the dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        state_machine: sfn.StateMachine,
        functions: Mapping[str, lambda_.IFunction],
        provider_functions: frozenset[str],
        api: apigw.RestApi | None = None,
        people_api: apigw.RestApi | None = None,
        schedule_dead_letters: sqs.IQueue | None = None,
        oldest_pending_announcement: cloudwatch.IMetric | None = None,
    ) -> None:
        """``functions`` by display name; those in ``provider_functions`` raise provider errors by design.

        With the job API (and the people API in front of the same function), a 5xx from either raises an
        alarm too (bad input is a 4xx by design, never a 5xx). With schedules, a scheduled start waiting
        in ``schedule_dead_letters`` raises one until it is replayed (or purged). An outcome whose event
        has waited 15 minutes in the job table's outbox (``oldest_pending_announcement``) raises one too.
        """
        super().__init__(scope, construct_id)
        self.topic = self._build_topic(settings)
        self.alarms = [self._build_failed_executions_alarm(state_machine)]
        for name, function in functions.items():
            threshold = settings.provider_errors_threshold if name in provider_functions else 1
            self.alarms.append(self._build_errors_alarm(name, function, threshold))
        apis = {name: rest_api for name, rest_api in (("Job", api), ("People", people_api)) if rest_api}
        for name, rest_api in apis.items():
            self.alarms.append(self._build_api_errors_alarm(name, rest_api))
        if schedule_dead_letters is not None:
            self.alarms.append(self._build_dead_letters_alarm(schedule_dead_letters))
        if oldest_pending_announcement is not None:
            self.alarms.append(self._build_announcements_waiting_alarm(oldest_pending_announcement))
        for alarm in self.alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        self.dashboard = self._build_dashboard(state_machine, functions, apis)

    def _build_topic(self, settings: Settings) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="reportrelay: encrypts alarm notifications",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,  # goes with its topic
            pending_window=Duration.days(7),
        )
        # CloudWatch publishes to the encrypted topic, so it needs the key (SNS cannot use aws/sns for this).
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        topic = sns.Topic(
            self, "AlarmTopic", display_name="reportrelay alarms", master_key=key, enforce_ssl=True
        )
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": Stack.of(self).format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        if settings.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        return topic

    def _alarm(
        self, construct_id: str, metric: cloudwatch.IMetric, description: str, threshold: int = 1
    ) -> cloudwatch.Alarm:
        """An alarm when one period's sum reaches ``threshold``; no data (nothing ran) is not a breach."""
        return metric.create_alarm(
            self,
            construct_id,
            alarm_description=description,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _build_failed_executions_alarm(self, state_machine: sfn.StateMachine) -> cloudwatch.Alarm:
        failed = cloudwatch.MathExpression(
            expression="FILL(failed, 0) + FILL(timedOut, 0)",
            using_metrics={
                "failed": state_machine.metric_failed(period=PERIOD, statistic="Sum"),
                "timedOut": state_machine.metric_timed_out(period=PERIOD, statistic="Sum"),
            },
            label="Failed or timed-out executions",
            period=PERIOD,
        )
        return self._alarm(
            "FailedExecutions",
            failed,
            "reportrelay: a job failed or timed out (its Report Failed event says why)",
        )

    def _build_errors_alarm(self, name: str, function: lambda_.IFunction, threshold: int) -> cloudwatch.Alarm:
        period = PERIOD if threshold == 1 else PROVIDER_ERRORS_PERIOD
        return self._alarm(
            f"{name}Errors",
            function.metric_errors(period=period, statistic="Sum"),
            f"reportrelay: the {name} function failed {threshold} or more times in "
            f"{int(period.to_minutes())} minutes",
            threshold,
        )

    def _build_api_errors_alarm(self, name: str, api: apigw.RestApi) -> cloudwatch.Alarm:
        """``name`` "Job" keeps the job API alarm's id (``ApiServerErrors``) from before the people API."""
        return self._alarm(
            "ApiServerErrors" if name == "Job" else f"{name}ApiServerErrors",
            api.metric_server_error(period=PERIOD, statistic="Sum"),
            f"reportrelay: the {name.lower()} API answered 5xx (an AWS service failed, or a bug)",
        )

    def _build_dead_letters_alarm(self, queue: sqs.IQueue) -> cloudwatch.Alarm:
        """Any message visible in the queue, at the most in a five-minute period: a start that failed."""
        return self._alarm(
            "ScheduleDeadLetters",
            queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
            "reportrelay: a scheduled start failed and waits in the dead-letter queue "
            "(docs/deploy.md, When a scheduled start fails: reportrelay schedules replay)",
        )

    def _build_announcements_waiting_alarm(self, oldest_pending: cloudwatch.IMetric) -> cloudwatch.Alarm:
        """The announce-pending sweep's oldest wait, at its highest in a period, reaching 15 minutes."""
        return self._alarm(
            "AnnouncementsWaiting",
            oldest_pending,
            "reportrelay: an outcome's event has waited 15 minutes or more in the job table's outbox "
            "(EventBridge keeps refusing it; docs/deploy.md, Every outcome announced)",
            threshold=ANNOUNCEMENT_WAIT_ALARM_SECONDS,
        )

    def _build_dashboard(
        self,
        state_machine: sfn.StateMachine,
        functions: Mapping[str, lambda_.IFunction],
        apis: Mapping[str, apigw.RestApi],
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-{Aws.REGION}",
            default_interval=Duration.days(7),
        )
        hour = Duration.hours(1)
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Reports ready / failed",
                left=[
                    _job_metric(constants.METRIC_REPORTS_READY, "Sum", hour, "Ready"),
                    _job_metric(constants.METRIC_REPORTS_FAILED, "Sum", hour, "Failed"),
                ],
                stacked=True,
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Job duration (seconds)",
                left=[
                    _job_metric(constants.METRIC_JOB_DURATION, "p50", hour, "p50"),
                    _job_metric(constants.METRIC_JOB_DURATION, "p90", hour, "p90"),
                    _job_metric(constants.METRIC_JOB_DURATION, "Maximum", hour, "max"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Bytes fetched",
                left=[_job_metric(constants.METRIC_BYTES_FETCHED, "Sum", hour, "Bytes")],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Executions",
                left=[
                    state_machine.metric_started(period=hour, label="Started"),
                    state_machine.metric_succeeded(period=hour, label="Succeeded"),
                    state_machine.metric_failed(period=hour, label="Failed"),
                    state_machine.metric_timed_out(period=hour, label="Timed out"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Function errors",
                left=[
                    function.metric_errors(period=hour, label=name) for name, function in functions.items()
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Function duration p90 (ms)",
                left=[
                    function.metric_duration(period=hour, statistic="p90", label=name)
                    for name, function in functions.items()
                ],
                width=8,
            ),
        )
        for name, api in apis.items():
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{name} API requests",
                    left=[
                        api.metric_count(period=hour, statistic="Sum", label="Requests"),
                        api.metric_client_error(period=hour, statistic="Sum", label="4xx"),
                        api.metric_server_error(period=hour, statistic="Sum", label="5xx"),
                    ],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title=f"{name} API latency p90 (ms)",
                    left=[api.metric_latency(period=hour, statistic="p90", label="p90")],
                    width=12,
                ),
            )
        dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24))
        return dashboard


def _job_metric(name: str, statistic: str, period: Duration, label: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=constants.METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map=constants.METRICS_DIMENSIONS,
        statistic=statistic,
        period=period,
        label=label,
    )
