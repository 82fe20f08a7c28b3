"""One way to build a reportrelay Lambda function: its own role, its own log group, traced, ARM, and by
setting in the vendor network (infra.network)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants
from infra.nag import acknowledge
from infra.network import NETWORK_INTERFACE_ACTIONS, VendorNetwork
from infra.settings import Settings

# The runtime and architecture named in constants, as CDK objects; the bundler builds wheels for these.
RUNTIME: lambda_.Runtime = getattr(lambda_.Runtime, "PYTHON_" + constants.PYTHON_VERSION.replace(".", "_"))
ARCHITECTURE = lambda_.Architecture.ARM_64
assert (
    RUNTIME.name == constants.LAMBDA_RUNTIME_NAME and ARCHITECTURE.name == constants.LAMBDA_ARCHITECTURE_NAME
)

POWERTOOLS_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": constants.SERVICE,
    "POWERTOOLS_METRICS_NAMESPACE": constants.METRICS_NAMESPACE,
    "POWERTOOLS_LOG_LEVEL": "INFO",
}


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    code: lambda_.Code,
    handler: str,
    description: str,
    timeout: Duration,
    memory_size: int,
    settings: Settings,
    environment: Mapping[str, str] | None = None,
    network: VendorNetwork | None = None,
) -> lambda_.Function:
    """A function whose role may write its own log group and traces, and nothing else until granted.

    No managed policy: AWSLambdaBasicExecutionRole would let it write to every log group in the account.
    In a ``network`` it runs in the private subnets with the network's security group, and its role may
    manage the network interfaces Lambda attaches (CDK adds no AWSLambdaVPCAccessExecutionRole to a role
    it is given, and that policy's logs:* would undo the point above).
    """
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"reportrelay {construct_id} function",
    )
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=settings.log_retention,
        removal_policy=RemovalPolicy.RETAIN,
    )
    log_group.grant_write(role)
    placement: dict[str, object] = {}
    if network is not None:
        # In the role's default policy, which the function depends on: Lambda checks these at creation.
        role.add_to_policy(iam.PolicyStatement(actions=list(NETWORK_INTERFACE_ACTIONS), resources=["*"]))
        placement = {
            "vpc": network.vpc,
            "vpc_subnets": network.subnets,
            "security_groups": [network.security_group],
        }
    function = lambda_.Function(
        scope,
        construct_id,
        code=code,
        handler=handler,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        description=description,
        timeout=timeout,
        memory_size=memory_size,
        role=role,
        log_group=log_group,
        tracing=lambda_.Tracing.ACTIVE,
        environment={**POWERTOOLS_ENVIRONMENT, **(environment or {})},
        **placement,
    )
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions, so "
        "active tracing needs Resource '*'."
        + (
            " In the VPC, Lambda manages the function's network interfaces with its role: "
            "ec2:DescribeNetworkInterfaces and DescribeSubnets support no resource-level permissions, and "
            "Lambda's documentation warns that scoping the others to some interfaces can cut the function "
            "off from the VPC (the actions of AWSLambdaVPCAccessExecutionRole, without its logs:*)."
            if network is not None
            else ""
        ),
    )
    acknowledge(
        function,
        "AwsSolutions-L1",
        f"Every function runs python{constants.PYTHON_VERSION}, the version the bundler installs wheels "
        "for and the local runner emulates; raise constants.PYTHON_VERSION to move them all together.",
    )
    return function
