"""When jobs run by themselves: EventBridge Scheduler schedules from config/schedules.json.

Scheduler cannot work out "last month" at run time, so each schedule invokes the ``start_scheduled``
function with its job template; the function resolves the date window and starts the state machine.

A start that fails lands in one dead-letter queue, whichever side it failed on: Scheduler invokes the
function asynchronously, so Scheduler's own dead-letter queue only sees invokes Lambda refused (no
permission, no function, throttled past the retries), and a run the function itself failed (Step
Functions refused the start, a bad template) is Lambda's to retry and then to send to its on-failure
destination. Both send to the same queue; ``reportrelay schedules replay`` reads either kind.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.configuration import Schedule
from infra.functions import python_function
from infra.nag import acknowledge
from infra.settings import Settings
from reportrelay import names

# Scheduler retries an invoke Lambda refused for a passing reason (throttling, a service fault) 3 times,
# with backoff, for up to an hour after the run was due; then the run goes to the dead-letter queue.
# A refusal no retry can change (no permission, no function) goes there at once. An hour: a report run
# later than that is better started by a person who knows it is late (the alarm tells them).
MAX_EVENT_AGE = Duration.hours(1)
RETRY_ATTEMPTS = 3
# Lambda retries a run the function failed twice (its maximum; the job id makes a retry harmless),
# within the same hour, before sending it to the queue.
FUNCTION_RETRY_ATTEMPTS = 2
# SQS's longest: two weeks to notice, fix the cause and replay.
DEAD_LETTER_RETENTION = Duration.days(14)


class ReportSchedules(Construct):
    """A schedule group, one schedule per configured entry, and the function they invoke."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        code: lambda_.Code,
        state_machine: sfn.StateMachine,
        schedules: list[Schedule],
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "StartScheduledFunction",
            code=code,
            handler="reportrelay.handlers.start_scheduled.handler",
            description="reportrelay: resolve a schedule's date window and start the job",
            timeout=Duration.seconds(30),
            memory_size=256,
            settings=settings,
            environment={names.STATE_MACHINE_ARN_ENV: state_machine.state_machine_arn},
        )
        state_machine.grant_start_execution(self.function)
        self.group = scheduler.CfnScheduleGroup(self, "Group")
        self.role = self._build_role()
        # No schedules, no failed starts to keep: the queue (and its alarm) exists only with schedules.
        self.dead_letter_queue = self._build_dead_letter_queue() if schedules else None
        self.schedules = [self._build_schedule(schedule) for schedule in schedules]

    def _build_role(self) -> iam.Role:
        """Scheduler's role: invoke the one function, assumable only for this account's schedule group."""
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={
                    "StringEquals": {
                        "aws:SourceAccount": Stack.of(self).account,
                        "aws:SourceArn": self.group.attr_arn,
                    }
                },
            ),
            description="reportrelay: lets EventBridge Scheduler invoke the start_scheduled function",
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.function.function_arn])
        )
        return role

    def _build_dead_letter_queue(self) -> sqs.Queue:
        """The queue failed starts wait in; Scheduler's role and the function may send to it, nothing more.

        Encrypted with SQS-managed keys (SSE-SQS) rather than KMS: the messages are job templates (a
        connection name, a report, parameters; never a secret, which stays in Secrets Manager), and a KMS
        key would have to be granted to both senders and to everyone who replays, for no reader fewer.
        """
        queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DEAD_LETTER_RETENTION,
        )
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            "This queue is the dead-letter queue of the schedules and of the start function; nothing "
            "consumes it but a person replaying, so a dead-letter queue of its own would hold nothing.",
        )
        send = iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue.queue_arn])
        self.role.add_to_policy(send)
        self.function.add_to_role_policy(send)
        failures = lambda_.CfnEventInvokeConfig(
            self,
            "StartScheduledFailures",
            function_name=self.function.function_name,
            qualifier="$LATEST",
            maximum_retry_attempts=FUNCTION_RETRY_ATTEMPTS,
            maximum_event_age_in_seconds=int(MAX_EVENT_AGE.to_seconds()),
            destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
                on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(destination=queue.queue_arn)
            ),
        )
        # Lambda checks that the function's role may send to the destination when the config is made.
        if self.function.role is not None:
            failures.node.add_dependency(self.function.role)
        return queue

    def _build_schedule(self, schedule: Schedule) -> scheduler.CfnSchedule:
        return scheduler.CfnSchedule(
            self,
            f"Schedule-{schedule.name}",
            name=schedule.name,
            group_name=self.group.ref,
            description=schedule.description or f"reportrelay: {schedule.window} window",
            schedule_expression=schedule.expression,
            schedule_expression_timezone=schedule.timezone,
            state="ENABLED" if schedule.enabled else "DISABLED",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.function.function_arn,
                role_arn=self.role.role_arn,
                input=schedule.target_input(),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_event_age_in_seconds=int(MAX_EVENT_AGE.to_seconds()),
                    maximum_retry_attempts=RETRY_ATTEMPTS,
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=self.dead_letter_queue.queue_arn
                )
                if self.dead_letter_queue is not None
                else None,
            ),
        )
