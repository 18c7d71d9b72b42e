"""The SQS job queue and its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ..settings import Queue as QueueSettings

# SQS keeps a message at most 14 days: the dead-letter queue keeps them that long, so an
# operator has time to read the reasons before redriving or dropping them.
DEAD_LETTER_RETENTION = Duration.days(14)


class JobQueue(Construct):
    """The job queue (encrypted, TLS only) with a redrive policy to its dead-letter queue.

    The visibility timeout is the workers': they extend it every third of it while a job
    runs, so it only bounds how long a message held by a killed worker waits before another
    worker takes it over.

    Args:
        scope: The parent construct.
        id: The construct id.
        queue_name: Name of the job queue.
        dead_letter_queue_name: Name of the dead-letter queue.
        settings: The `[queue]` settings.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        queue_name: str,
        dead_letter_queue_name: str,
        settings: QueueSettings,
    ) -> None:
        super().__init__(scope, id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=dead_letter_queue_name,
            retention_period=DEAD_LETTER_RETENTION,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=queue_name,
            visibility_timeout=Duration.seconds(settings.visibility_timeout),
            retention_period=Duration.days(settings.retention_days),
            # SSE-SQS rather than KMS: S3 event notifications can be delivered to it without
            # a key policy, and it costs nothing.
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=settings.max_receive_count
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )

    def backlog(self, *, period: Duration) -> dict[str, cloudwatch.IMetric]:
        """The queue's depth metrics by math id: waiting, running (in flight) and delayed."""
        q = self.queue
        return {
            "waiting": q.metric_approximate_number_of_messages_visible(
                period=period, statistic="Maximum"
            ),
            "running": q.metric_approximate_number_of_messages_not_visible(
                period=period, statistic="Maximum"
            ),
            "delayed": q.metric_approximate_number_of_messages_delayed(
                period=period, statistic="Maximum"
            ),
        }

    def dead_letters(self, *, period: Duration) -> cloudwatch.Metric:
        """Messages waiting in the dead-letter queue."""
        return self.dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=period, statistic="Maximum"
        )
