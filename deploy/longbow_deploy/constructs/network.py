"""Where the EC2 workers run: a new VPC with public subnets and an S3 gateway endpoint, or an
existing VPC's subnets."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from ..settings import Network as NetworkSettings


class Network(Construct):
    """The workers' VPC and subnets.

    A new VPC has public subnets only: workers need the internet (the other side of the copy,
    PyPI at boot), and a NAT gateway would charge for every byte copied. The S3 gateway
    endpoint keeps traffic with S3 in this region off the internet, at no charge.

    Args:
        scope: The parent construct.
        id: The construct id.
        settings: The `[network]` settings.
    """

    def __init__(self, scope: Construct, id: str, *, settings: NetworkSettings) -> None:
        super().__init__(scope, id)
        if settings.vpc_id:
            # Attributes, not a lookup: synthesis stays offline and needs no AWS account.
            self.vpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=settings.vpc_id,
                availability_zones=list(settings.availability_zones),
                public_subnet_ids=list(settings.subnet_ids),
            )
            self.subnets = ec2.SubnetSelection(
                subnets=[
                    ec2.Subnet.from_subnet_attributes(
                        self, f"Subnet{i}", subnet_id=subnet_id, availability_zone=zone
                    )
                    for i, (subnet_id, zone) in enumerate(
                        zip(settings.subnet_ids, settings.availability_zones, strict=True)
                    )
                ]
            )
            return
        vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(settings.cidr),
            max_azs=settings.max_azs,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="workers", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=20
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )
        self.vpc: ec2.IVpc = vpc
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
