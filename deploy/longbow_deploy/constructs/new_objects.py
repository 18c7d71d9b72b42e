"""S3 event notifications from a source bucket in this account to the job queue, so new
objects are copied within seconds instead of at the next sender run."""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3_notifications
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# CDK's singleton that writes notification configurations of buckets it does not own.
_HANDLER_ID = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


class NewObjectTrigger(Construct):
    """Created (and restored) objects of `bucket` under `prefix` become messages on the queue;
    with `removed`, deletions too (the worker deletes the copy only if `delete_removed`).

    The bucket is not owned by the stack: CDK's notification handler adds these
    configurations beside any the bucket already has, and removes only its own on deletion.

    Args:
        scope: The parent construct.
        id: The construct id.
        bucket_name: The source bucket (in this account).
        prefix: Only keys under this prefix.
        removed: Also send ObjectRemoved events.
        queue: The job queue.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket_name: str,
        prefix: str,
        removed: bool,
        queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id)
        self.bucket = s3.Bucket.from_bucket_name(self, "Bucket", bucket_name)
        destination = s3_notifications.SqsDestination(queue)
        filters = [s3.NotificationKeyFilter(prefix=prefix)] if prefix else []
        events = [s3.EventType.OBJECT_CREATED, s3.EventType.OBJECT_RESTORE_COMPLETED]
        if removed:
            events.append(s3.EventType.OBJECT_REMOVED)
        for event in events:
            self.bucket.add_event_notification(event, destination, *filters)
        self._scope_handler(bucket_name)

    def _scope_handler(self, bucket_name: str) -> None:
        """Narrow the handler's s3:PutBucketNotification from every bucket to this one."""
        handler = Stack.of(self).node.try_find_child(_HANDLER_ID)
        role = handler.node.try_find_child("Role") if handler is not None else None
        policy = role.node.try_find_child("DefaultPolicy") if role is not None else None
        if policy is None:
            return
        cfn = policy.node.default_child
        assert isinstance(cfn, iam.CfnPolicy)
        cfn.add_property_override(
            "PolicyDocument.Statement.0.Resource", f"arn:{Aws.PARTITION}:s3:::{bucket_name}"
        )
