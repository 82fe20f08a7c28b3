"""When jobs run by themselves: EventBridge Scheduler schedules from config/schedules.json.

Scheduler cannot work out "last month" at run time, so each schedule invokes the ``start_scheduled``
function with its job template; the function resolves the date window and starts the state machine.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import constants
from infra.configuration import Schedule
from infra.functions import python_function
from infra.settings import Settings

# A run not delivered within this time is dropped (and counted in Scheduler's metrics).
MAX_EVENT_AGE = Duration.hours(1)
RETRY_ATTEMPTS = 3


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
            environment={constants.ENV_STATE_MACHINE_ARN: state_machine.state_machine_arn},
        )
        state_machine.grant_start_execution(self.function)
        self.group = scheduler.CfnScheduleGroup(self, "Group")
        self.role = self._build_role()
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
            ),
        )
