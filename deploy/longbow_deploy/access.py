"""Least-privilege grants of the workers and the sender: the named queue, table, parameters and
buckets (by bucket and prefix), never `*`.

The actions follow what the runtime calls (docs/cluster.md "Permissions"), plus what it needs
beyond that list: `GetObjectVersion` and the tagging reads (it copies a listed version and
its tags), `PutObjectTagging` (tags travel with the PUT), and `GetObject` on destinations (a
HEAD of an existing copy).
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

from .constructs import JobQueue, JobTable, Parameters
from .settings import DeploySettings

WORKER_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:DescribeTable",
)
SENDER_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DescribeTable",
)
QUEUE_READ_ACTIONS = ("sqs:GetQueueAttributes", "sqs:GetQueueUrl")
SOURCE_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
)
DESTINATION_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:PutObjectTagging",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)


def bucket_arn(bucket: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{bucket}"


def objects_arn(bucket: str, prefix: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{bucket}/{prefix}*"


def s3_statements(settings: DeploySettings, *, writer: bool) -> list[iam.PolicyStatement]:
    """S3 rights on the buckets of the sides reached with the stack's roles.

    Args:
        settings: The deployment.
        writer: A worker (reads sources, writes destinations) rather than the sender (lists
            both sides).
    """
    statements = []
    role = "Worker" if writer else "Sender"  # Sids must differ when one role gets both
    for side in ("source", "destination"):
        if not settings.in_account(side):
            continue  # that side's keys come from the credentials parameter
        buckets = settings.buckets(side)
        statements.append(
            iam.PolicyStatement(
                sid=f"{role}List{side.capitalize()}Buckets",
                # Listing, and HEAD of a missing key answering 404 rather than 403.
                actions=["s3:ListBucket"],
                resources=[bucket_arn(b) for b in buckets],
            )
        )
        if not writer:
            reports = [p for p in settings.pairs if p.src_inventory]
            if side == "source" and reports:
                # The sender reads each report (manifests and data files) instead of listing.
                statements.append(
                    iam.PolicyStatement(
                        sid=f"{role}ReadInventoryReports",
                        actions=["s3:GetObject"],
                        resources=sorted(
                            {objects_arn(p.inventory_bucket, p.inventory_folder) for p in reports}
                        ),
                    )
                )
            continue
        actions = list(SOURCE_OBJECT_ACTIONS if side == "source" else DESTINATION_OBJECT_ACTIONS)
        if side == "source" and settings.transfer.restore_days is not None:
            actions.append("s3:RestoreObject")  # workers ask for archived sources' restores
        if side == "destination" and settings.queue.delete_removed:
            actions.append("s3:DeleteObject")
        statements.append(
            iam.PolicyStatement(
                sid=f"{role}{'Read' if side == 'source' else 'Write'}{side.capitalize()}Objects",
                actions=actions,
                resources=[
                    objects_arn(bucket, prefix)
                    for bucket, prefixes in buckets.items()
                    for prefix in prefixes
                ],
            )
        )
    return statements


def grant_worker(
    grantee: iam.IGrantable,
    *,
    settings: DeploySettings,
    queue: JobQueue,
    table: JobTable,
    parameters: Parameters,
    consume: bool = True,
) -> None:
    """What `longbow worker` (and `longbow status --cluster`) needs.

    Args:
        grantee: The role.
        settings: The deployment.
        queue: The queues.
        table: The job table.
        parameters: The pairs and credentials parameters.
        consume: Grant receiving from the job queue (the Lambda event source grants it
            itself).
    """
    if consume:
        queue.queue.grant_consume_messages(grantee)
    queue.queue.grant(grantee, *QUEUE_READ_ACTIONS)
    # Poison messages are copied to the dead-letter queue with their reason.
    queue.dead_letter_queue.grant_send_messages(grantee)
    queue.dead_letter_queue.grant(grantee, *QUEUE_READ_ACTIONS)
    table.table.grant(grantee, *WORKER_TABLE_ACTIONS)
    parameters.grant_read(grantee)
    for statement in s3_statements(settings, writer=True):
        grantee.grant_principal.add_to_principal_policy(statement)


def grant_sender(
    grantee: iam.IGrantable,
    *,
    settings: DeploySettings,
    queue: JobQueue,
    table: JobTable,
    parameters: Parameters,
) -> None:
    """What `longbow send` needs: list both sides, record jobs, send messages."""
    queue.queue.grant_send_messages(grantee)
    queue.queue.grant(grantee, *QUEUE_READ_ACTIONS)
    table.table.grant(grantee, *SENDER_TABLE_ACTIONS)
    parameters.grant_read(grantee)
    for statement in s3_statements(settings, writer=False):
        grantee.grant_principal.add_to_principal_policy(statement)


__all__ = ["grant_sender", "grant_worker", "s3_statements"]
