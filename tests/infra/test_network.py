"""Vendors behind a firewall: the provider functions in private subnets, leaving from static egress IPs."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack

from infra.network import NETWORK_INTERFACE_ACTIONS, VendorNetwork
from infra.settings import Settings, SettingsError
from tests.infra.conftest import Synthesized, cfn_lint, references, synthesize
from tests.infra.policies import function_id, function_role, role_actions, role_grants
from tests.infra.test_compliance import acknowledgements, violations

IN_NETWORK = tuple(  # Step.talks_to_provider (the holder too, when a connection needs one)
    f"reportrelay.handlers.{name}.handler" for name in ("submit", "check", "fetch", "cancel")
)
OUTSIDE = tuple(f"reportrelay.handlers.{name}.handler" for name in ("conclude", "start_scheduled", "api"))
EXISTING_VPC = "vpc-0123456789abcdef0"
EXISTING_SUBNETS = ("subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb")
EXISTING_IPS = ("52.1.2.3", "52.1.2.4")


@pytest.fixture(scope="session")
def new_vpc(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """``vpc=new``: the stack builds the VPC, two NAT gateways by default."""
    return synthesize(tmp_path_factory.mktemp("cdk.out.vpc"), stackName="ReportRelayVpc", vpc="new")


@pytest.fixture(scope="session")
def existing_vpc(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """An existing VPC by id, with its private subnets and its NAT's IPs (as ``-c`` gives them: text)."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out.vpcexisting"),
        stackName="ReportRelayVpcExisting",
        vpc=EXISTING_VPC,
        vpcSubnetIds=",".join(EXISTING_SUBNETS),
        vpcEgressIps=",".join(EXISTING_IPS),
    )


def vpc_config(synthesized: Synthesized, handler: str) -> dict[str, Any] | None:
    function = synthesized.template["Resources"][function_id(synthesized, handler)]
    config: dict[str, Any] | None = function["Properties"].get("VpcConfig")
    return config


def subnets_routed_to(synthesized: Synthesized, target: str) -> set[str]:
    """Subnets whose default route goes to a ``NatGatewayId`` or a ``GatewayId`` (internet gateway)."""
    tables = {
        references(route["Properties"]["RouteTableId"]).pop()
        for route in synthesized.resources("AWS::EC2::Route").values()
        if route["Properties"]["DestinationCidrBlock"] == "0.0.0.0/0" and target in route["Properties"]
    }
    return {
        references(association["Properties"]["SubnetId"]).pop()
        for association in synthesized.resources("AWS::EC2::SubnetRouteTableAssociation").values()
        if references(association["Properties"]["RouteTableId"]) <= tables
    }


def test_by_default_the_functions_run_in_no_network(synthesized: Synthesized, hardened: Synthesized) -> None:
    # given the default settings (vpc=none)
    # then no function has a VPC configuration and there are no egress IPs; the only network is the
    # container task's own (tests/infra/test_container.py), and without that task there is none at all
    assert [
        logical_id
        for logical_id, function in synthesized.resources("AWS::Lambda::Function").items()
        if "VpcConfig" in function["Properties"]
    ] == []
    assert synthesized.resources("AWS::EC2::NatGateway") == {}
    assert synthesized.resources("AWS::EC2::EIP") == {}
    assert [
        resource["Type"]
        for resource in hardened.template["Resources"].values()
        if resource["Type"].startswith("AWS::EC2::")
    ] == []
    assert "EgressIps" not in synthesized.template["Outputs"]


def test_provider_functions_run_in_the_private_subnets_with_their_security_group(
    new_vpc: Synthesized,
) -> None:
    # given a new VPC
    private = subnets_routed_to(new_vpc, "NatGatewayId")
    security_group, _ = new_vpc.resource("AWS::EC2::SecurityGroup")
    # then each provider function is in both private subnets (two AZs), behind the security group
    assert len(private) == 2
    for handler in IN_NETWORK:
        config = vpc_config(new_vpc, handler)
        assert config is not None, handler
        assert {references(subnet).pop() for subnet in config["SubnetIds"]} == private
        assert config["SecurityGroupIds"] == [{"Fn::GetAtt": [security_group, "GroupId"]}]


def test_functions_that_talk_to_no_vendor_stay_outside(new_vpc: Synthesized) -> None:
    # given a new VPC / then conclude, the scheduler's function and the API function are not in it
    for handler in OUTSIDE:
        assert vpc_config(new_vpc, handler) is None, handler


def test_the_security_group_admits_nothing_and_lets_everything_out(new_vpc: Synthesized) -> None:
    _, group = new_vpc.resource("AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in group["Properties"]
    assert new_vpc.resources("AWS::EC2::SecurityGroupIngress") == {}
    assert [rule["IpProtocol"] for rule in group["Properties"]["SecurityGroupEgress"]] == ["-1"]


def test_each_nat_gateway_leaves_from_its_own_elastic_ip(new_vpc: Synthesized) -> None:
    # given a new VPC with the default two NAT gateways
    gateways = new_vpc.resources("AWS::EC2::NatGateway")
    addresses = new_vpc.resources("AWS::EC2::EIP")
    public = subnets_routed_to(new_vpc, "GatewayId")
    # then each gateway sits in a public subnet and uses one of the stack's Elastic IPs, none shared
    assert len(gateways) == 2
    allocations = [gateway["Properties"]["AllocationId"] for gateway in gateways.values()]
    assert sorted(allocations, key=str) == sorted(
        ({"Fn::GetAtt": [address, "AllocationId"]} for address in addresses), key=str
    )
    assert {references(gateway["Properties"]["SubnetId"]).pop() for gateway in gateways.values()} == public
    assert all(address["Properties"]["Domain"] == "vpc" for address in addresses.values())


def test_the_egress_ips_are_an_output(new_vpc: Synthesized) -> None:
    # given a new VPC / then one output lists every Elastic IP's address, separated by ","
    output = new_vpc.template["Outputs"]["EgressIps"]
    separator, addresses = output["Value"]["Fn::Join"]
    assert separator == ","
    assert sorted(map(str, addresses)) == sorted(
        str({"Fn::GetAtt": [address, "PublicIp"]}) for address in new_vpc.resources("AWS::EC2::EIP")
    )
    assert "allow-list" in output["Description"]


def test_the_vpc_logs_its_flows(new_vpc: Synthesized) -> None:
    # given a new VPC / then all its traffic is logged to a log group kept as long as the functions' logs
    vpc, _ = new_vpc.resource("AWS::EC2::VPC")
    _, flow_log = new_vpc.resource("AWS::EC2::FlowLog")
    properties = flow_log["Properties"]
    assert (properties["ResourceType"], properties["ResourceId"]) == ("VPC", {"Ref": vpc})
    assert (properties["TrafficType"], properties["LogDestinationType"]) == ("ALL", "cloud-watch-logs")
    (log_group,) = references(properties["LogGroupName"])
    assert new_vpc.template["Resources"][log_group]["Properties"]["RetentionInDays"] == 30


def test_s3_and_dynamodb_traffic_skips_the_nat(new_vpc: Synthesized) -> None:
    # given a new VPC / then gateway endpoints for S3 and DynamoDB serve the private subnets' route tables
    private = subnets_routed_to(new_vpc, "NatGatewayId")
    private_tables = {
        references(association["Properties"]["RouteTableId"]).pop()
        for association in new_vpc.resources("AWS::EC2::SubnetRouteTableAssociation").values()
        if references(association["Properties"]["SubnetId"]) <= private
    }
    endpoints = new_vpc.resources("AWS::EC2::VPCEndpoint").values()
    services = {
        str(endpoint["Properties"]["ServiceName"]).split(".")[-1].strip("']}") for endpoint in endpoints
    }
    assert services == {"s3", "dynamodb"}
    for endpoint in endpoints:
        assert endpoint["Properties"]["VpcEndpointType"] == "Gateway"
        assert references(endpoint["Properties"]["RouteTableIds"]) == private_tables


def test_only_the_functions_in_the_network_may_manage_network_interfaces(new_vpc: Synthesized) -> None:
    # given a new VPC
    for handler in IN_NETWORK:
        # then a provider function's own role carries the ENI actions, inline (no managed policy)
        role = function_role(new_vpc, handler)
        assert set(NETWORK_INTERFACE_ACTIONS) <= role_actions(new_vpc, role), handler
        assert "ManagedPolicyArns" not in new_vpc.template["Resources"][role]["Properties"]
        (eni,) = [
            grant for grant in role_grants(new_vpc, role) if "ec2:CreateNetworkInterface" in grant.actions
        ]
        # (on Resource '*', merged with X-Ray's, and, for cancel, which hands a stopped job's slot to the
        # next job in line, states:SendTaskSuccess, which has no resource-level permissions; nothing else)
        assert eni.resources == ("*",)
        assert eni.actions - set(NETWORK_INTERFACE_ACTIONS) <= {
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            *(["states:SendTaskSuccess"] if handler.endswith(".cancel.handler") else []),
        }
    for handler in OUTSIDE:
        assert not any(
            action.startswith("ec2:") for action in role_actions(new_vpc, function_role(new_vpc, handler))
        )


def test_the_wildcard_of_the_network_interface_actions_is_explained(new_vpc: Synthesized) -> None:
    reasons = acknowledgements(new_vpc)["AwsSolutions-IAM5[Resource::*]"]
    assert "network interfaces" in reasons["Workflow/FetchFunctionRole"]
    assert "network interfaces" not in reasons["Workflow/ConcludeFunctionRole"]


def test_an_existing_vpc_is_used_as_given(existing_vpc: Synthesized) -> None:
    # given an existing VPC's id, subnets and egress IPs
    _, group = existing_vpc.resource("AWS::EC2::SecurityGroup")
    # then the provider functions join exactly those subnets, the security group is in that VPC
    for handler in IN_NETWORK:
        config = vpc_config(existing_vpc, handler)
        assert config is not None and tuple(config["SubnetIds"]) == EXISTING_SUBNETS, handler
    for handler in OUTSIDE:
        assert vpc_config(existing_vpc, handler) is None, handler
    assert group["Properties"]["VpcId"] == EXISTING_VPC
    # and the stack creates no network of its own, yet outputs the given IPs
    assert {
        resource["Type"]
        for resource in existing_vpc.template["Resources"].values()
        if resource["Type"].startswith("AWS::EC2::")
    } == {"AWS::EC2::SecurityGroup"}
    assert existing_vpc.template["Outputs"]["EgressIps"]["Value"] == ",".join(EXISTING_IPS)


def test_an_existing_vpc_without_its_ips_has_no_egress_output() -> None:
    # given an existing VPC whose egress IPs are not given
    stack = Stack(App(), "Network")
    settings = Settings(vpc=EXISTING_VPC, vpc_subnet_ids=EXISTING_SUBNETS)
    # when its network is built / then there is nothing to output (the stack writes no EgressIps)
    assert VendorNetwork(stack, "Network", settings=settings).egress_ip_list is None


@pytest.mark.parametrize("variant", ["new_vpc", "existing_vpc"])
def test_both_kinds_of_network_pass_cdk_nag_and_cfn_lint(
    request: pytest.FixtureRequest, variant: str
) -> None:
    synthesized: Synthesized = request.getfixturevalue(variant)
    assert violations(synthesized) == []
    assert cfn_lint(synthesized.template_file) == []


def test_the_network_settings_from_the_command_line() -> None:
    # given `-c reportrelay:vpc=new -c reportrelay:vpcNatGateways=1`
    new = Settings.from_mapping({"vpc": "new", "vpcNatGateways": "1"})
    # then one NAT gateway (the cheaper choice); without the setting, one per AZ
    assert (new.vpc, new.nat_gateways) == ("new", 1)
    assert Settings.from_mapping({"vpc": "new"}).nat_gateways == 2
    # and an existing VPC's lists arrive as ","-separated text or as JSON lists (cdk.json)
    existing = Settings.from_mapping(
        {
            "vpc": EXISTING_VPC,
            "vpcSubnetIds": " , ".join(EXISTING_SUBNETS),
            "vpcEgressIps": list(EXISTING_IPS),
        }
    )
    assert (existing.vpc_subnet_ids, existing.vpc_egress_ips) == (EXISTING_SUBNETS, EXISTING_IPS)
    assert Settings().vpc == "none"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"vpc": "vpc-123"}, r"reportrelay:vpc='vpc-123': expected none, new or a VPC id"),
        ({"vpc": "default"}, r"reportrelay:vpc='default'"),
        ({"vpc": EXISTING_VPC}, r"reportrelay:vpc=vpc-0123456789abcdef0 needs reportrelay:vpcSubnetIds"),
        ({"vpc": "new", "vpcNatGateways": "3"}, r"reportrelay:vpcNatGateways='3': expected 1 to 2"),
        ({"vpc": "new", "vpcNatGateways": "0"}, r"reportrelay:vpcNatGateways='0': expected 1 to 2"),
        ({"vpcNatGateways": "1"}, r"reportrelay:vpcNatGateways only applies with reportrelay:vpc=new"),
        (
            {"vpc": "new", "vpcSubnetIds": EXISTING_SUBNETS[0]},
            r"vpcSubnetIds only applies with reportrelay:vpc=<an existing VPC's id> \(it is new\)",
        ),
        ({"vpc": "new", "vpcEgressIps": "52.1.2.3"}, r"reportrelay:vpcEgressIps only applies with"),
        (
            {"vpc": EXISTING_VPC, "vpcSubnetIds": "subnet-1,subnet-2"},
            r"reportrelay:vpcSubnetIds='subnet-1,subnet-2': 'subnet-1' is not a subnet id",
        ),
        (
            {"vpc": EXISTING_VPC, "vpcSubnetIds": EXISTING_SUBNETS[0], "vpcEgressIps": "52.1.2"},
            r"reportrelay:vpcEgressIps='52.1.2': '52.1.2' is not an IPv4 address",
        ),
        (
            {"vpc": EXISTING_VPC, "vpcSubnetIds": EXISTING_SUBNETS[0], "vpcEgressIps": "10.0.1.5"},
            r"reportrelay:vpcEgressIps='10.0.1.5': 10.0.1.5 is a private address",
        ),
        (
            {"vpc": EXISTING_VPC, "vpcSubnetIds": EXISTING_SUBNETS[0], "vpcNatGateways": "1"},
            r"reportrelay:vpcNatGateways only applies with reportrelay:vpc=new",
        ),
    ],
)
def test_a_wrong_network_setting_names_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_mapping(values)
