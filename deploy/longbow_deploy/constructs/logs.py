"""Log groups with an explicit retention and removal policy."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct


def log_group(
    scope: Construct, id: str, *, name: str, retention_days: int, retain: bool
) -> logs.LogGroup:
    """A log group named `name` keeping events `retention_days` days.

    The stack creates every group its writers use, so none is left behind with infinite
    retention by an agent or a function creating it on first write.
    """
    group = logs.LogGroup(
        scope,
        id,
        log_group_name=name,
        removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
    )
    # The settings check the value against the periods CloudWatch Logs accepts; setting the
    # number directly avoids mapping every period to its enum member.
    cfn = group.node.default_child
    assert isinstance(cfn, logs.CfnLogGroup)
    cfn.retention_in_days = retention_days
    return group
