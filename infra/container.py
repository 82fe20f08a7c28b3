"""The container task that takes over a Fetch that will not fit in one Lambda invocation (ECS Fargate).

No Docker at synthesis: the task runs a public Python image whose command installs boto3, asks Lambda for
the Fetch function (``GetFunction``: a link to its very deployment package, and its configuration), and
runs ``python -m reportrelay.container`` from that package with that configuration. So the code, the
settings and the rights are the Fetch function's own: the task's role *is* the Fetch function's role,
trusted by ECS tasks too, and nothing is granted twice. With a vendor network it runs in its private
subnets, with the provider functions' security group (``infra.network``), so it reaches vendors from the
same static egress IPs; without one, in the public subnets of a network of its own (``ContainerNetwork``).
"""

from __future__ import annotations

from aws_cdk import Fn, RemovalPolicy, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants
from infra.nag import acknowledge
from infra.network import ContainerNetwork, VendorNetwork
from infra.settings import Settings
from reportrelay.names import FETCH_CONTAINER_ENV, IN_CONTAINER_ENV

#: The task's image: the Lambda runtime's Python, from Docker Hub's official images (on Amazon ECR Public).
IMAGE = f"public.ecr.aws/docker/library/python:{constants.PYTHON_VERSION}-slim"
BOTO3_VERSION = "1.44.5"  # the bootstrap's own; the package brings what reportrelay needs
FUNCTION_ENV = "REPORTRELAY_FETCH_FUNCTION"
BOOTSTRAP_ENV = "REPORTRELAY_BOOTSTRAP"
#: Fetch the Fetch function's package and settings, then run the container entry point with them.
BOOTSTRAP = f"""
import io, os, subprocess, sys, urllib.request, zipfile
import boto3
function = boto3.client("lambda").get_function(FunctionName=os.environ["{FUNCTION_ENV}"])
with urllib.request.urlopen(function["Code"]["Location"], timeout=120) as package:
    zipfile.ZipFile(io.BytesIO(package.read())).extractall("/opt/fetch")
settings = function["Configuration"].get("Environment", {{}}).get("Variables", {{}})
environment = {{**os.environ, **settings, "{IN_CONTAINER_ENV}": "1", "PYTHONPATH": "/opt/fetch",
               "POWERTOOLS_TRACE_DISABLED": "true"}}
sys.exit(subprocess.call([sys.executable, "-m", "reportrelay.container"], env=environment, cwd="/opt/fetch"))
"""
#: The rule Step Functions manages to learn when a ``.sync`` ECS task stops.
SYNC_RULE = "StepFunctionsGetEventsForECSTaskRule"


class FetchContainer(Construct):
    """An ECS cluster and a Fargate task definition running the Fetch step with no time limit."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        network: VendorNetwork | ContainerNetwork,
        fetch: lambda_.Function,
    ) -> None:
        super().__init__(scope, construct_id)
        self._network = network
        role = fetch.role
        assert isinstance(role, iam.Role), "the Fetch function has its own role (infra.functions)"
        role.assume_role_policy.add_statements(  # type: ignore[union-attr]
            iam.PolicyStatement(
                actions=["sts:AssumeRole"], principals=[iam.ServicePrincipal("ecs-tasks.amazonaws.com")]
            )
        )
        # Its own policy, not the role's default one: the function depends on that, and this names it.
        iam.Policy(
            self,
            "ReadFetchFunction",
            roles=[role],
            statements=[iam.PolicyStatement(actions=["lambda:GetFunction"], resources=[fetch.function_arn])],
        )
        fetch.add_environment(FETCH_CONTAINER_ENV, "1")
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=network.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        self.task = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=1024,
            memory_limit_mib=2048,  # five 8 MiB parts in flight, and the interpreter: far below this
            task_role=role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64,  # the package's wheels are the Lambda's
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        log_group = logs.LogGroup(
            self, "Logs", retention=settings.log_retention, removal_policy=RemovalPolicy.RETAIN
        )
        self.task.add_container(
            "fetch",
            image=ecs.ContainerImage.from_registry(IMAGE),
            command=[
                "sh",
                "-c",
                f"pip install --quiet --no-cache-dir boto3=={BOTO3_VERSION} "
                f'&& exec python -c "${BOOTSTRAP_ENV}"',
            ],
            environment={
                FUNCTION_ENV: fetch.function_name,
                BOOTSTRAP_ENV: BOOTSTRAP,
                "AWS_REGION": Stack.of(self).region,
                "AWS_DEFAULT_REGION": Stack.of(self).region,
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="fetch", log_group=log_group),
        )
        acknowledge(
            self.task,
            "AwsSolutions-ECS2",
            "The container's environment holds the Fetch function's name, the region and the bootstrap "
            "script, nothing secret: the settings come from Lambda at start, the secrets from Secrets "
            "Manager when used.",
        )
        acknowledge(
            self.task,
            "AwsSolutions-IAM5[Resource::*]",
            "The task's role is the Fetch function's (X-Ray needs Resource '*'); the execution role's "
            "log-stream rights are CDK's, on this task's log group only.",
        )

    @property
    def substitutions(self) -> dict[str, str]:
        """The FetchInContainer state's placeholders (statemachines/report.asl.json)."""
        return {
            "FetchClusterArn": self.cluster.cluster_arn,
            "FetchTaskDefinitionArn": self.task.task_definition_arn,
            "FetchSubnets": Fn.join(",", self._network.task_subnet_ids()),
            "FetchSecurityGroup": self._network.security_group.security_group_id,
            "FetchAssignPublicIp": "ENABLED" if self._network.assign_public_ip else "DISABLED",
        }

    def grant_run(self, state_machine: iam.IGrantable) -> None:
        """What ``ecs:runTask.sync`` needs: run this task, hand it its roles, watch and stop it."""
        stack = Stack.of(self)
        principal = state_machine.grant_principal
        principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["ecs:RunTask"], resources=[self.task.task_definition_arn])
        )
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:StopTask", "ecs:DescribeTasks"],
                resources=["*"],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            )
        )
        roles = [self.task.task_role.role_arn]
        if self.task.execution_role is not None:
            roles.append(self.task.execution_role.role_arn)
        principal.add_to_principal_policy(iam.PolicyStatement(actions=["iam:PassRole"], resources=roles))
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[stack.format_arn(service="events", resource="rule", resource_name=SYNC_RULE)],
            )
        )
