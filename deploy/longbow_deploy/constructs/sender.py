"""The job sender: a Lambda function running `longbow send`, on a schedule and on demand."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from ..contract import SENDER_HANDLER
from ..settings import Sender as SenderSettings
from .functions import longbow_function
from .logs import log_group


class Sender(Construct):
    """The sender function and, when a schedule is set, the EventBridge rule that runs it.

    Reserved concurrency 1: two senders at once would be safe (the table's conditional writes
    queue each job once) but would list every bucket twice.

    Args:
        scope: The parent construct.
        id: The construct id.
        name: The deployment's name (prefix of the function and log group names).
        settings: The `[sender]` settings.
        layer: The runtime layer (it holds the handler, `s3longbow.handlers.sender`).
        code: Directory with the config file.
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
        settings: SenderSettings,
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
            name=f"/longbow/{name}/sender",
            retention_days=log_retention_days,
            retain=retain_logs,
        )
        self.function = longbow_function(
            self,
            "Function",
            function_name=f"{name}-sender",
            handler=SENDER_HANDLER,
            code=code,
            layer=layer,
            memory_mb=settings.memory_mb,
            timeout_seconds=settings.timeout_seconds,
            environment=environment,
            log_group=self.log_group,
            reserved_concurrency=1,
            description="job sender (longbow send)",
        )
        self.rule: events.Rule | None = None
        if settings.schedule:
            self.rule = events.Rule(
                self,
                "Schedule",
                description="Longbow: run the job sender",
                schedule=events.Schedule.expression(settings.schedule),
                targets=[
                    targets.LambdaFunction(
                        self.function,
                        event=events.RuleTargetInput.from_object({"trigger": "schedule"}),
                        retry_attempts=0,
                    )
                ],
            )
