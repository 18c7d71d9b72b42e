"""The DynamoDB job table, with exactly the keys, index and TTL the runtime uses."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from .. import contract
from ..settings import Table as TableSettings


class JobTable(Construct):
    """On-demand table keyed by `pk`/`sk`, with the `by-state` index `longbow status --cluster`
    queries and TTL on `expires_at` (part items of finished uploads expire by themselves).

    Args:
        scope: The parent construct.
        id: The construct id.
        table_name: The table's name.
        settings: The `[table]` settings.
        retain: Keep the table when the stack is deleted.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        table_name: str,
        settings: TableSettings,
        retain: bool,
    ) -> None:
        super().__init__(scope, id)
        string = dynamodb.AttributeType.STRING
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name=contract.TABLE_PARTITION_KEY, type=string),
            sort_key=dynamodb.Attribute(name=contract.TABLE_SORT_KEY, type=string),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=contract.TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=settings.point_in_time_recovery
            ),
            deletion_protection=settings.deletion_protection,
            # Encrypted at rest with an AWS owned key: no KMS charges per request.
            encryption=dynamodb.TableEncryption.DEFAULT,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
        self.table.add_global_secondary_index(
            index_name=contract.STATE_INDEX,
            partition_key=dynamodb.Attribute(name=contract.STATE_INDEX_PARTITION_KEY, type=string),
            sort_key=dynamodb.Attribute(
                name=contract.STATE_INDEX_SORT_KEY, type=dynamodb.AttributeType.NUMBER
            ),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(contract.STATE_INDEX_ATTRIBUTES),
        )
