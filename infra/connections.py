"""The deployed connections: one SSM parameter per connection, in nested stacks, and the right to read them.

Connections used to travel in the functions' environment, which Lambda caps at 4 KB in all (about ten
connections). Now each connection is a String parameter ``/reportrelay/<stack>/connections/<name>``
holding its body as compact JSON (``reportrelay.runtime.connection_parameter_value``; secrets stay
references, so nothing needs SecureString), and the functions get only the path
(``REPORTRELAY_CONNECTIONS_PATH``) and read the parameters themselves, cached for a minute
(``reportrelay.runtime.ParameterStoreConnections``).

Why nested stacks: CloudFormation allows 500 resources per stack, and the main stack already holds some
250. The parameters go into ``NESTED_STACKS`` nested stacks (each one resource of the parent), a
connection's stack chosen by a hash of its name, so that adding or removing a connection never moves
another one to a different stack (a move would create the parameter's name in one stack before the
other deletes it, which SSM refuses). A nested stack with no connections is left out. Each parameter's
logical id comes from its connection's name, for the same reason. Within a nested stack, parameters are
created in ``WRITE_LANES`` chains (each DependsOn the one ``WRITE_LANES`` places before it), so a first
deploy of a thousand connections does not meet SSM's PutParameter throttling all at once.

Synthesis refuses what would not deploy: a name SSM cannot take, a body over the standard tier's 4 KB, a
nested stack over 500 resources (some 3,000 connections; split the deployment before that).
"""

from __future__ import annotations

import hashlib

from aws_cdk import NestedStack, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra import constants
from infra.configuration import ConfigError, DeployedConnections
from infra.nag import acknowledge
from reportrelay import names
from reportrelay.names import connection_parameter_name

#: How many nested stacks the parameters are spread over; never change it in a deployed stack (every
#: connection would move, see above).
NESTED_STACKS = 8
#: CloudFormation's limit of resources in one stack.
MAX_RESOURCES_PER_STACK = 500
#: SSM Parameter Store: a parameter's name, counted with its ARN, is at most 1011 characters; an ARN's
#: part before the name ("arn:<partition>:ssm:<region>:<account>:parameter") takes at most this many.
MAX_PARAMETER_ARN_CHARS = 1011
ARN_PREFIX_CHARS = 64
#: Parameters of one nested stack CloudFormation creates at the same time.
WRITE_LANES = 4


def connections_path(stack_name: str) -> str:
    """Where a stack's connections live in Parameter Store (no trailing slash)."""
    return f"/{constants.SERVICE}/{stack_name}/connections"


def nested_stack_of(name: str) -> int:
    """The nested stack a connection's parameter lives in: fixed by its name alone."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % NESTED_STACKS


class ConnectionParameters(Construct):
    """Every connection as its SSM parameter, and ``grant_read`` for the functions that need them."""

    def __init__(
        self, scope: Construct, construct_id: str, *, connections: DeployedConnections, connections_file: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.path = connections_path(Stack.of(self).stack_name)
        values = connections.parameter_values()
        groups: dict[int, list[str]] = {}
        for name in sorted(values):
            parameter = connection_parameter_name(self.path, name)
            if len(parameter) + ARN_PREFIX_CHARS > MAX_PARAMETER_ARN_CHARS:
                raise ConfigError(
                    f"{connections_file}: connections.{name}: its parameter name {parameter} is too long for "
                    f"SSM ({MAX_PARAMETER_ARN_CHARS} characters with its ARN): use a shorter name"
                )
            groups.setdefault(nested_stack_of(name), []).append(name)
        self.nested_stacks: list[NestedStack] = []
        for index, stack_names in sorted(groups.items()):
            if len(stack_names) > MAX_RESOURCES_PER_STACK:
                raise ConfigError(
                    f"{connections_file}: {len(values)} connections put {len(stack_names)} parameters in one "
                    f"nested stack, more than CloudFormation's {MAX_RESOURCES_PER_STACK} resources a stack: "
                    "split the connections over two deployments (stackName)"
                )
            nested = NestedStack(
                self, f"Connections{index}", description="reportrelay: deployed connections (SSM parameters)"
            )
            written: list[ssm.CfnParameter] = []
            for name in stack_names:
                parameter = ssm.CfnParameter(
                    nested,
                    f"Connection-{name}",
                    name=connection_parameter_name(self.path, name),
                    type="String",
                    tier="Standard",
                    value=values[name],
                    description=f"reportrelay connection {name} (from the connections file)",
                )
                if len(written) >= WRITE_LANES:
                    parameter.add_resource_dependency(written[-WRITE_LANES])
                written.append(parameter)
            self.nested_stacks.append(nested)

    def parameter_arns(self, scope: Construct) -> tuple[str, str]:
        """(the path's own ARN, the ARN pattern of every parameter under it)."""
        path_arn = Stack.of(scope).format_arn(
            service="ssm", resource="parameter", resource_name=self.path.lstrip("/")
        )
        return path_arn, f"{path_arn}/*"

    def grant_read(self, function: lambda_.Function, *, list_all: bool = False) -> None:
        """GetParameter on this stack's connection parameters, and GetParametersByPath on their path when
        the function lists them all (the API); String parameters, so no kms:Decrypt."""
        path_arn, every = self.parameter_arns(function)
        function.add_to_role_policy(iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[every]))
        if list_all:
            # IAM authorizes GetParametersByPath on the path named in the request; both spellings are this
            # stack's path and nothing else.
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["ssm:GetParametersByPath"], resources=[path_arn, every])
            )
        assert function.role is not None
        acknowledge(
            function.role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter"
            f"{self.path}/*]",
            "The deployed connections are one SSM parameter each under this stack's own path "
            f"({self.path}/<name>, infra.connections): the function reads the connection a job names, so "
            "the grant is that path's parameters, and no other parameter.",
        )

    def environment(self) -> dict[str, str]:
        """What a function that reads connections is told: the path only."""
        return {names.CONNECTIONS_PATH_ENV: self.path}
