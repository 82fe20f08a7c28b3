"""The network of the provider-facing functions when a vendor's firewall admits fixed addresses only.

With ``reportrelay:vpc=new`` the stack builds the VPC: two AZs, a public subnet in each for the NAT
gateways (each with an Elastic IP the stack allocates, so the addresses are known and outlive any NAT
gateway replacement), a private subnet in each for the functions, flow logs, and gateway endpoints that
keep S3 and DynamoDB traffic (Fetch streams whole reports into S3) off the NAT. With an existing VPC's id,
the functions join the private subnets it names; nothing is looked up, so synthesis stays offline.

Only the functions that talk to providers are placed here (``Step.talks_to_provider``): the others call
AWS services only and stay outside, where they need no NAT and no network interfaces.

Without a vendor network, the container task that takes over transfers too long for Lambda
(``infra.container``) still needs subnets, as every Fargate task does: ``ContainerNetwork`` is a VPC of
public subnets only (no NAT gateway, nothing to pay while no task runs), flow logs and the S3 and
DynamoDB gateway endpoints, where the task gets a public IP for its way out. Either network tells the
task where to run (``task_subnet_ids``, ``security_group``, ``assign_public_ip``).
"""

from __future__ import annotations

from aws_cdk import Annotations, CfnTag, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants
from infra.settings import Settings

# What Lambda does with a function's role to attach it to the VPC: AWSLambdaVPCAccessExecutionRole
# without its logs:* (each function may write only its own log group, infra.functions).
NETWORK_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
CIDR = "10.0.0.0/16"


class VendorNetwork(Construct):
    """Private subnets behind NAT with static egress IPs, and the security group of the functions in them."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        if settings.vpc == "new":
            self.vpc, self.egress_ips = self._build_vpc(settings)
            self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        else:
            self.vpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=settings.vpc,
                availability_zones=Stack.of(self).availability_zones,
            )
            self.subnets = ec2.SubnetSelection(
                subnets=[
                    _existing_subnet(self, f"Subnet{index}", subnet_id)
                    for index, subnet_id in enumerate(settings.vpc_subnet_ids, start=1)
                ]
            )
            self.egress_ips = list(settings.vpc_egress_ips)
        # Providers listen where their base_url says (443, or a vendor's own port): any outbound, no inbound.
        self.security_group = ec2.SecurityGroup(
            self,
            "ProviderFunctions",
            vpc=self.vpc,
            description="reportrelay provider functions: outbound to providers and AWS APIs, no inbound",
            allow_all_outbound=True,
        )

    assign_public_ip = False  # the private subnets go out through the NAT gateways

    def task_subnet_ids(self) -> list[str]:
        """The subnets a container task runs in: the provider functions' own."""
        if self.subnets.subnets:  # an existing VPC's, by id (selecting them would ask for their zones)
            return [subnet.subnet_id for subnet in self.subnets.subnets]
        return self.vpc.select_subnets(subnet_type=self.subnets.subnet_type).subnet_ids

    @property
    def egress_ip_list(self) -> str | None:
        """The egress IPs, separated by ``,``, for the stack output (None: an existing VPC's, not given)."""
        return Fn.join(",", self.egress_ips) if self.egress_ips else None

    def _build_vpc(self, settings: Settings) -> tuple[ec2.Vpc, list[str]]:
        count = settings.nat_gateways
        addresses = [
            ec2.CfnEIP(
                self,
                f"EgressIp{number}",
                domain="vpc",
                tags=[CfnTag(key="Name", value=f"{constants.SERVICE} egress {number}")],
            )
            for number in range(1, count + 1)
        ]
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(CIDR),
            max_azs=2,
            nat_gateways=count,
            nat_gateway_provider=ec2.NatProvider.gateway(
                eip_allocation_ids=[address.attr_allocation_id for address in addresses]
            ),
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Nat", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=26),
                ec2.SubnetConfiguration(
                    name="Functions", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                ),
            ],
            flow_logs=_flow_logs(self, settings),
            gateway_endpoints=_gateway_endpoints(private),
        )
        return vpc, [address.attr_public_ip for address in addresses]


class ContainerNetwork(Construct):
    """Public subnets for the container task where the stack has no vendor network."""

    assign_public_ip = True  # no NAT: the task's way out is its own public IP and the internet gateway

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        public = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(CIDR),
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Tasks", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)
            ],
            flow_logs=_flow_logs(self, settings),
            gateway_endpoints=_gateway_endpoints(public),
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "FetchTasks",
            vpc=self.vpc,
            description="reportrelay fetch tasks: outbound to providers and AWS APIs, no inbound",
            allow_all_outbound=True,
        )

    def task_subnet_ids(self) -> list[str]:
        return self.vpc.select_subnets(subnet_type=ec2.SubnetType.PUBLIC).subnet_ids


def _flow_logs(scope: Construct, settings: Settings) -> dict[str, ec2.FlowLogOptions]:
    """Every packet's record, in a log group kept as long as the stack's other logs."""
    group = logs.LogGroup(
        scope, "FlowLogs", retention=settings.log_retention, removal_policy=RemovalPolicy.RETAIN
    )
    return {
        "All": ec2.FlowLogOptions(
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
    }


def _gateway_endpoints(subnets: ec2.SubnetSelection) -> dict[str, ec2.GatewayVpcEndpointOptions]:
    """S3 and DynamoDB reached without the internet: whole reports go to S3, and they cost no NAT."""
    return {
        name: ec2.GatewayVpcEndpointOptions(service=service, subnets=[subnets])
        for name, service in (
            ("S3", ec2.GatewayVpcEndpointAwsService.S3),
            ("DynamoDB", ec2.GatewayVpcEndpointAwsService.DYNAMODB),
        )
    }


def _existing_subnet(scope: Construct, construct_id: str, subnet_id: str) -> ec2.ISubnet:
    """A subnet of an existing VPC, by id alone: Lambda needs nothing else, and the stack never routes."""
    subnet = ec2.Subnet.from_subnet_id(scope, construct_id, subnet_id)
    Annotations.of(subnet).acknowledge_warning(
        "@aws-cdk/aws-ec2:noSubnetRouteTableId",
        "the functions only run in the subnet; nothing in the stack reads or changes its routes",
    )
    return subnet
