"""The serverless worker: the runtime's SQS handler behind an event source mapping."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .. import contract
from ..settings import LambdaWorker as LambdaWorkerSettings
from .functions import longbow_function
from .logs import log_group


class LambdaWorker(Construct):
    """`s3longbow.handlers.sqs_worker.handler` on the job queue, with partial batch responses.

    The handler reports the records that must come back (`batchItemFailures`), so the event
    source mapping is configured with ReportBatchItemFailures: a batch with one failed job
    does not redeliver the jobs that were done.

    Args:
        scope: The parent construct.
        id: The construct id.
        name: The deployment's name (prefix of the function and log group names).
        settings: The `[lambda_worker]` settings.
        queue: The job queue.
        layer: The runtime layer.
        code: Directory with the function's config file.
        environment: The LONGBOW_* variables.
        log_retention_days: Retention of the log group.
        retain_logs: Keep the log group when the stack is deleted.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        settings: LambdaWorkerSettings,
        queue: sqs.IQueue,
        layer: lambda_.ILayerVersion,
        code: Path,
        environment: Mapping[str, str],
        log_retention_days: int,
        retain_logs: bool,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = log_group(
            self,
            "Logs",
            name=f"/longbow/{name}/lambda-worker",
            retention_days=log_retention_days,
            retain=retain_logs,
        )
        self.function = longbow_function(
            self,
            "Function",
            function_name=f"{name}-worker",
            handler=contract.LAMBDA_WORKER_HANDLER,
            code=code,
            layer=layer,
            memory_mb=settings.memory_mb,
            timeout_seconds=settings.timeout_seconds,
            environment=environment,
            log_group=self.log_group,
            reserved_concurrency=settings.reserved_concurrency,
            description="cluster worker on the job queue",
        )
        window = settings.max_batching_seconds
        # The event source grants the function's role what consuming the queue needs.
        self.function.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=settings.batch_size,
                max_batching_window=Duration.seconds(window) if window else None,
                report_batch_item_failures=True,
                max_concurrency=settings.max_concurrency,
            )
        )
