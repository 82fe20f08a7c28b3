"""One way to build a reportrelay Lambda function: its own role, its own log group, traced, ARM."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants
from infra.nag import acknowledge
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
) -> lambda_.Function:
    """A function whose role may write its own log group and traces, and nothing else until granted.

    No managed policy: AWSLambdaBasicExecutionRole would let it write to every log group in the account.
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
    )
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions, so "
        "active tracing needs Resource '*'.",
    )
    acknowledge(
        function,
        "AwsSolutions-L1",
        f"Every function runs python{constants.PYTHON_VERSION}, the version the bundler installs wheels "
        "for and the local runner emulates; raise constants.PYTHON_VERSION to move them all together.",
    )
    return function
