"""The reportrelay stack: it only composes the capabilities, each of which is one construct."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra import constants
from infra.announcements import AnnouncementSweeper
from infra.api import JobApi
from infra.bundling import function_code
from infra.configuration import (
    DeployedConnections,
    Schedule,
    announce_weak_transport,
    check_api_documents,
    load_access,
    load_connections,
    load_schedules,
)
from infra.connections import ConnectionParameters
from infra.events import ReportEvents
from infra.monitoring import Monitoring
from infra.network import ContainerNetwork, VendorNetwork
from infra.people import PeopleAccess
from infra.schedules import ReportSchedules
from infra.settings import Settings
from infra.storage import ReportStorage
from infra.workflow import CONCLUDE, PROVIDER_FUNCTIONS, Workflow


class ReportRelayStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            description="reportrelay: fetch long-running vendor reports into S3 through Step Functions",
            **kwargs,
        )
        Tags.of(self).add("service", constants.SERVICE)
        # W3005: CDK makes each function (and the state machine) DependsOn its role as well as the role's
        # policy; the role dependency repeats the GetAtt. Harmless, and not ours to change.
        self.template_options.metadata = {"cfn-lint": {"config": {"ignore_checks": ["W3005"]}}}
        connections = load_connections(settings.connections_file, settings.connection_secrets_prefix)
        announce_weak_transport(self, connections)
        access = load_access(
            settings.access_file, sign_in=settings.people_sign_in, groups_claim=settings.oidc_groups_claim
        )
        check_api_documents(access)
        schedules = load_schedules(settings.schedules_file, connections, access.admin_team)
        code = function_code(install_dependencies=settings.bundle, vendor_specs=connections.vendor_specs)

        self.storage = ReportStorage(self, "Storage", settings=settings)
        self.events = ReportEvents(self, "Events", settings=settings)
        # The provider-facing functions only, so vendors behind a firewall see fixed addresses.
        self.network = VendorNetwork(self, "Network", settings=settings) if settings.vpc != "none" else None
        # Where the container task runs that takes over transfers too long for Lambda: the vendor network,
        # or else public subnets of its own.
        container_network: VendorNetwork | ContainerNetwork | None = None
        if settings.fetch_container:
            container_network = self.network or ContainerNetwork(self, "ContainerNetwork", settings=settings)
        # One SSM parameter per connection, in nested stacks; the functions are told only their path.
        self.connections = ConnectionParameters(
            self, "Connections", connections=connections, connections_file=str(settings.connections_file)
        )
        self.workflow = Workflow(
            self,
            "Workflow",
            settings=settings,
            code=code,
            connections=connections,
            parameters=self.connections,
            storage=self.storage,
            events=self.events,
            network=self.network,
            container_network=container_network,
        )
        self.schedules = ReportSchedules(
            self,
            "Schedules",
            settings=settings,
            code=code,
            state_machine=self.workflow.state_machine,
            schedules=schedules,
        )
        self.api = JobApi(
            self,
            "JobApi",
            settings=settings,
            code=code,
            parameters=self.connections,
            access=access,
            storage=self.storage,
            events=self.events,
            workflow=self.workflow,
            schedules=self.schedules,
        )
        self.announcements = AnnouncementSweeper(
            self,
            "Announcements",
            settings=settings,
            code=code,
            job_table=self.api.job_table,
            report_events=self.events,
        )
        self.people = PeopleAccess(
            self,
            "People",
            settings=settings,
            access=access,
            teams=_teams(connections, schedules, access.admin_team),
            function=self.api.function,
            conclude=self.workflow.functions[CONCLUDE.name],
            after=self.api.api.node.try_find_child("Account"),
        )
        functions = {
            **self.workflow.functions,
            "StartScheduled": self.schedules.function,
            "Api": self.api.function,
            "AnnouncePending": self.announcements.function,
        }
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            settings=settings,
            state_machine=self.workflow.state_machine,
            functions=functions,
            provider_functions=frozenset(step.name for step in PROVIDER_FUNCTIONS),
            api=self.api.api,
            people_api=self.people.api,
            schedule_dead_letters=self.schedules.dead_letter_queue,
            oldest_pending_announcement=self.announcements.oldest_pending,
        )

        CfnOutput(self, "ReportsBucketName", value=self.storage.bucket.bucket_name)
        CfnOutput(self, "StateMachineArn", value=self.workflow.state_machine.state_machine_arn)
        CfnOutput(self, "EventBusName", value=self.events.bus.event_bus_name)
        CfnOutput(self, "ApiUrl", value=self.api.url, description="the job API (docs/api.md)")
        CfnOutput(
            self, "PeopleUrl", value=self.people.url, description="the job API for people and share links"
        )
        if self.people.user_pool is not None:
            CfnOutput(
                self,
                "UserPoolId",
                value=self.people.user_pool.user_pool_id,
                description="people sign in here: add them, and add them to their teams' groups",
            )
        CfnOutput(self, "JobsTableName", value=self.api.job_table.table.table_name)
        CfnOutput(
            self,
            "StartScheduledFunctionName",
            value=self.schedules.function.function_name,
            description="the function a schedule invokes (reportrelay schedules replay invokes it again)",
        )
        if self.schedules.dead_letter_queue is not None:
            CfnOutput(
                self,
                "ScheduleDeadLetterQueueUrl",
                value=self.schedules.dead_letter_queue.queue_url,
                description="failed scheduled starts wait here: reportrelay schedules replay",
            )
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
        if self.network is not None and self.network.egress_ip_list is not None:
            CfnOutput(
                self,
                "EgressIps",
                value=self.network.egress_ip_list,
                description="the provider functions reach vendors from these IPs: add them to the allow-list",
            )


def _teams(connections: DeployedConnections, schedules: list[Schedule], admin_team: str | None) -> set[str]:
    """Every team the configuration names: on connections, on schedules, and the admin team."""
    named = connections.teams | {schedule.team for schedule in schedules}
    return named | ({admin_team} if admin_team else set())
