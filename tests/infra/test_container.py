"""The container task that takes over a Fetch that will not fit in Lambda (infra.container): built in the
vendor network, or in public subnets of its own without one, from a public image and the Fetch function's
own package, role and settings, and started only by the state machine's FetchInContainer state."""

from __future__ import annotations

import json

from infra import constants
from infra.container import BOOTSTRAP, IMAGE, SYNC_RULE
from tests.infra.conftest import Synthesized, references
from tests.infra.policies import function_id, function_role, role_grants
from tests.infra.test_network import new_vpc  # noqa: F401 (the session fixture, synthesized once)
from tests.infra.test_workflow import state_machine

FETCH = "reportrelay.handlers.fetch.handler"
HANDLERS = tuple(
    f"reportrelay.handlers.{name}.handler" for name in ("submit", "check", "fetch", "conclude", "api")
)


def task_definition(synthesized: Synthesized) -> tuple[str, dict]:
    logical_id, task = synthesized.resource("AWS::ECS::TaskDefinition")
    return logical_id, task["Properties"]


def test_the_task_runs_the_fetch_functions_package_on_fargate_arm64(new_vpc: Synthesized) -> None:  # noqa: F811
    # given a deployment with a vendor network
    _, task = task_definition(new_vpc)
    # then the task is a Fargate task on the Lambda's architecture, in the VPC's network mode
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    (container,) = task["ContainerDefinitions"]
    # and its container is a public Python image, no image built at synthesis
    assert container["Image"] == IMAGE and container["Name"] == "fetch"
    assert "pip install" in container["Command"][2] and '"$REPORTRELAY_BOOTSTRAP"' in container["Command"][2]
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    # which is told the Fetch function to take its package and settings from
    assert environment["REPORTRELAY_FETCH_FUNCTION"] == {"Ref": function_id(new_vpc, FETCH)}
    assert environment["REPORTRELAY_BOOTSTRAP"] == BOOTSTRAP
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    compile(BOOTSTRAP, "bootstrap", "exec")  # the script the container runs is valid Python


def test_the_task_role_is_the_fetch_functions_and_adds_only_reading_that_function(
    new_vpc: Synthesized,  # noqa: F811
) -> None:
    # given the task definition and the Fetch function's role
    _, task = task_definition(new_vpc)
    role = function_role(new_vpc, FETCH)
    # then the task runs with that very role, which ECS tasks may assume as well as Lambda
    assert references(task["TaskRoleArn"]) == {role}
    trust = new_vpc.template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    services = [statement["Principal"]["Service"] for statement in trust]
    principals = {
        name for service in services for name in (service if isinstance(service, list) else [service])
    }
    assert principals == {"lambda.amazonaws.com", "ecs-tasks.amazonaws.com"}
    # and what it gains is GetFunction on the Fetch function (its package and settings), nothing else
    reading = [grant for grant in role_grants(new_vpc, role) if "lambda:GetFunction" in grant.actions]
    assert [grant.actions for grant in reading] == [frozenset({"lambda:GetFunction"})]
    assert reading[0].resource_ids == {function_id(new_vpc, FETCH)}


def test_only_fetch_is_told_it_may_hand_a_transfer_over(new_vpc: Synthesized) -> None:  # noqa: F811
    for handler in HANDLERS:
        variables = new_vpc.template["Resources"][function_id(new_vpc, handler)]["Properties"]["Environment"]
        told = variables["Variables"].get("REPORTRELAY_FETCH_CONTAINER")
        assert told == ("1" if handler == FETCH else None), handler


def test_the_fetch_in_container_state_names_this_cluster_task_subnets_and_group(
    new_vpc: Synthesized,  # noqa: F811
) -> None:
    # given the state machine's substitutions
    substitutions = state_machine(new_vpc)["DefinitionSubstitutions"]
    task_id, _ = task_definition(new_vpc)
    cluster_id, _ = new_vpc.resource("AWS::ECS::Cluster")
    # then the container placeholders are this deployment's cluster, task, private subnets and group
    assert set(constants.CONTAINER_PLACEHOLDERS) <= set(substitutions)
    assert references(substitutions["FetchClusterArn"]) == {cluster_id}
    assert substitutions["FetchTaskDefinitionArn"] == {"Ref": task_id}
    private = {
        logical_id
        for logical_id, subnet in new_vpc.resources("AWS::EC2::Subnet").items()
        if not subnet["Properties"].get("MapPublicIpOnLaunch")
    }
    assert references(substitutions["FetchSubnets"]) == private
    (group,) = references(substitutions["FetchSecurityGroup"])
    assert new_vpc.template["Resources"][group]["Type"] == "AWS::EC2::SecurityGroup"


def test_the_state_machine_may_run_this_task_and_nothing_else_in_ecs(new_vpc: Synthesized) -> None:  # noqa: F811
    # given the state machine's role
    (role,) = references(state_machine(new_vpc)["RoleArn"])
    grants = role_grants(new_vpc, role)
    task_id, task = task_definition(new_vpc)
    ecs = [grant for grant in grants if any(action.startswith("ecs:") for action in grant.actions)]
    # then it may run this task definition, and watch or stop tasks of this cluster only
    run = [grant for grant in ecs if "ecs:RunTask" in grant.actions]
    assert [grant.resources for grant in run] == [({"Ref": task_id},)]
    watch = [grant for grant in ecs if "ecs:DescribeTasks" in grant.actions]
    assert watch[0].actions == frozenset({"ecs:DescribeTasks", "ecs:StopTask"})
    assert "ecs:cluster" in json.dumps(watch[0].conditions)
    # and pass exactly the task's two roles
    passing = [grant for grant in grants if "iam:PassRole" in grant.actions]
    assert references([resource for grant in passing for resource in grant.resources]) == references(
        [task["TaskRoleArn"], task["ExecutionRoleArn"]]
    )
    # and manage only the rule Step Functions uses to learn that a .sync task stopped
    rules = [grant for grant in grants if "events:PutRule" in grant.actions]
    assert SYNC_RULE in json.dumps(rules[0].resources)


def test_without_a_vendor_network_the_task_runs_in_public_subnets_of_its_own(
    synthesized: Synthesized,
) -> None:
    # given the default deployment (no vendor network)
    substitutions = state_machine(synthesized)["DefinitionSubstitutions"]
    task_id, _ = task_definition(synthesized)
    # then there is a container task all the same, and Fetch is told it may hand over
    assert substitutions["FetchTaskDefinitionArn"] == {"Ref": task_id}
    fetch = synthesized.template["Resources"][function_id(synthesized, FETCH)]["Properties"]
    assert fetch["Environment"]["Variables"]["REPORTRELAY_FETCH_CONTAINER"] == "1"
    # and it runs in a VPC of its own: public subnets only, no NAT gateway (nothing to pay while idle), the
    # task going out through the internet gateway with a public IP of its own
    subnets = synthesized.resources("AWS::EC2::Subnet")
    assert subnets and all(subnet["Properties"]["MapPublicIpOnLaunch"] for subnet in subnets.values())
    assert references(substitutions["FetchSubnets"]) == set(subnets)
    assert substitutions["FetchAssignPublicIp"] == "ENABLED"
    assert synthesized.resources("AWS::EC2::NatGateway") == {}
    assert len(synthesized.resources("AWS::EC2::InternetGateway")) == 1
    # and its security group admits nothing in; its traffic is logged, and S3 is reached without the internet
    (group,) = references(substitutions["FetchSecurityGroup"])
    assert "SecurityGroupIngress" not in synthesized.template["Resources"][group]["Properties"]
    assert len(synthesized.resources("AWS::EC2::FlowLog")) == 1
    services = [json.dumps(endpoint["Properties"]["ServiceName"]) for endpoint in
                synthesized.resources("AWS::EC2::VPCEndpoint").values()]  # fmt: skip
    assert [any(f".{name}" in service for service in services) for name in ("s3", "dynamodb")] == [True, True]
    # and no function runs in that VPC: it is the task's alone
    functions = synthesized.resources("AWS::Lambda::Function").values()
    assert not [function for function in functions if "VpcConfig" in function["Properties"]]


def test_with_a_vendor_network_the_task_goes_out_through_its_nat_without_a_public_ip(
    new_vpc: Synthesized,  # noqa: F811
) -> None:
    substitutions = state_machine(new_vpc)["DefinitionSubstitutions"]
    assert substitutions["FetchAssignPublicIp"] == "DISABLED"
    assert len(new_vpc.resources("AWS::EC2::VPC")) == 1  # the vendor network's, no second one


def test_fetch_container_false_builds_no_task_and_no_network(hardened: Synthesized) -> None:
    assert hardened.resources("AWS::ECS::TaskDefinition") == {}
    assert hardened.resources("AWS::ECS::Cluster") == {}
    assert hardened.resources("AWS::EC2::VPC") == {}
