"""The Longbow stack: the constructs of one deployment, wired together (grants, scaling on the
queue, alarms), and the app that synthesises it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import App, Aws, CfnOutput, Duration, Environment, Stack, Tags
from constructs import Construct

from . import access, contract
from .build import Artifacts, function_code
from .constructs import (
    Ec2Workers,
    JobQueue,
    JobTable,
    LambdaWorker,
    Monitoring,
    Network,
    NewObjectTrigger,
    Parameters,
    Sender,
)
from .constructs.functions import runtime_layer
from .settings import DeploySettings

# Where a function's own files land in its container.
_TASK_ROOT = "/var/task"
# When no EC2 workers define it, how long the queue must be empty to call a batch finished.
_DEFAULT_IDLE_MINUTES = 15


class LongbowStack(Stack):
    """Queue, table, parameters, workers (EC2 and/or Lambda), sender and monitoring of one
    deployment.

    Args:
        scope: The app.
        id: The stack's id (its CloudFormation name unless `stack_name` is given).
        settings: The checked deployment settings.
        artifacts: The wheel and Lambda layer to upload.
        build_dir: Where generated function code is written.
        **kwargs: Passed to `Stack` (env, stack_name, description...).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: DeploySettings,
        artifacts: Artifacts,
        build_dir: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        s = settings
        Tags.of(self).add("longbow:deployment", s.name)
        if artifacts.layer is None:
            raise ValueError("the stack needs the Lambda layer (the sender runs on Lambda)")

        self.queue = JobQueue(
            self,
            "Jobs",
            queue_name=s.queue_name,
            dead_letter_queue_name=s.dead_letter_queue_name,
            settings=s.queue,
        )
        self.table = JobTable(
            self, "JobTable", table_name=s.table_name, settings=s.table, retain=s.retain_data
        )
        self.parameters = Parameters(
            self,
            "Parameters",
            pairs_name=s.pairs_parameter,
            pairs_value=contract.pairs_json(s),
            credentials_name=s.parameters.credentials,
            credentials_key_arn=s.parameters.credentials_kms_key_arn,
        )
        ignore = contract.ignore_text(s)
        layer = runtime_layer(self, "RuntimeLayer", path=artifacts.layer)

        # Functions read a config file shipped with their code; names stand in for the
        # queue URLs there (a file cannot hold tokens), and the environment gives the URLs.
        function_config = contract.cluster_config(
            s,
            queue=contract.QueueRef(
                queue_name=s.queue_name, dead_letter_queue_name=s.dead_letter_queue_name
            ),
            table=s.table_name,
            region=None,
            ignore_file=ignore is not None,
        )
        function_files: dict[str, str | Path] = {"cluster.toml": function_config}
        if ignore is not None:
            function_files[contract.IGNORE_FILE] = ignore

        def environment(margin: int, **overrides: int | None) -> dict[str, str]:
            return contract.lambda_environment(
                s,
                config_path=f"{_TASK_ROOT}/cluster.toml",
                queue_url=self.queue.queue.queue_url,
                dead_letter_queue_url=self.queue.dead_letter_queue.queue_url,
                table=self.table.table.table_name,
                region=Aws.REGION,
                time_margin_seconds=margin,
                transfer_overrides=overrides,
            )

        self.sender = Sender(
            self,
            "Sender",
            name=s.name,
            settings=s.sender,
            layer=layer,
            code=function_code(build_dir, function_files),
            environment=environment(s.sender.time_margin_seconds),
            log_retention_days=s.log_retention_days,
            retain_logs=s.retain_data,
        )
        access.grant_sender(
            self.sender.function,
            settings=s,
            queue=self.queue,
            table=self.table,
            parameters=self.parameters,
        )

        modes: list[str] = []
        self.ec2: Ec2Workers | None = None
        if s.ec2.enabled:
            modes.append(contract.MODE_EC2)
            network = Network(self, "Network", settings=s.network)
            self.ec2 = Ec2Workers(
                self,
                "Ec2Workers",
                name=s.name,
                settings=s.ec2,
                network=network,
                wheel=artifacts.wheel,
                config=contract.cluster_config(
                    s,
                    queue=contract.QueueRef(
                        queue_url=self.queue.queue.queue_url,
                        dead_letter_queue_url=self.queue.dead_letter_queue.queue_url,
                    ),
                    table=self.table.table.table_name,
                    region=Aws.REGION,
                    ignore_file=ignore is not None,
                ),
                ignore=ignore,
                backlog=self.queue.backlog(period=Duration.minutes(1)),
                log_retention_days=s.log_retention_days,
                retain_logs=s.retain_data,
            )
            for grant in (access.grant_worker, access.grant_sender):
                # The sender's rights too: `longbow send` may run on a worker (through
                # Session Manager) when a listing takes longer than a Lambda invocation.
                grant(
                    self.ec2.role,
                    settings=s,
                    queue=self.queue,
                    table=self.table,
                    parameters=self.parameters,
                )

        self.lambda_worker: LambdaWorker | None = None
        if s.lambda_worker.enabled:
            modes.append(contract.MODE_LAMBDA)
            lw = s.lambda_worker
            self.lambda_worker = LambdaWorker(
                self,
                "LambdaWorker",
                name=s.name,
                settings=lw,
                queue=self.queue.queue,
                layer=layer,
                code=function_code(build_dir, function_files),
                environment=environment(
                    lw.time_margin_seconds, workers=lw.workers, part_threads=lw.part_threads
                ),
                log_retention_days=s.log_retention_days,
                retain_logs=s.retain_data,
            )
            access.grant_worker(
                self.lambda_worker.function,
                settings=s,
                queue=self.queue,
                table=self.table,
                parameters=self.parameters,
                consume=False,  # the event source mapping grants it
            )

        if s.trigger.bucket:
            NewObjectTrigger(
                self,
                "NewObjects",
                bucket_name=s.trigger.bucket,
                prefix=s.trigger.prefix,
                removed=s.trigger.removed,
                queue=self.queue.queue,
            )

        functions = {"sender": self.sender.function}
        log_groups = [self.sender.log_group]
        if self.lambda_worker is not None:
            functions["worker"] = self.lambda_worker.function
            log_groups.insert(0, self.lambda_worker.log_group)
        if self.ec2 is not None:
            log_groups.insert(0, self.ec2.worker_logs)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            name=s.name,
            settings=s.monitoring,
            queue=self.queue,
            modes=modes,
            ec2=self.ec2,
            functions=functions,
            log_groups=log_groups,
            idle_minutes=s.ec2.idle_minutes if s.ec2.enabled else _DEFAULT_IDLE_MINUTES,
        )
        if self.ec2 is not None:
            self.ec2.scale_in_when_idle(self.monitoring.idle_alarm)
        self._outputs()

    def _outputs(self) -> None:
        outputs = {
            "QueueUrl": self.queue.queue.queue_url,
            "DeadLetterQueueUrl": self.queue.dead_letter_queue.queue_url,
            "TableName": self.table.table.table_name,
            "PairsParameter": self.parameters.pairs.parameter_name,
            "SenderFunction": self.sender.function.function_name,
            "NotificationTopic": self.monitoring.topic.topic_arn,
            "Dashboard": self.monitoring.dashboard_url,
        }
        if self.ec2 is not None:
            outputs["WorkerGroup"] = self.ec2.group.auto_scaling_group_name
            if self.ec2.fallback is not None:
                outputs["FallbackGroup"] = self.ec2.fallback.auto_scaling_group_name
        if self.lambda_worker is not None:
            outputs["LambdaWorkerFunction"] = self.lambda_worker.function.function_name
        for key, value in outputs.items():
            CfnOutput(self, key, value=value)


def create_app(
    settings: DeploySettings,
    *,
    artifacts: Artifacts,
    build_dir: Path,
    outdir: str | None = None,
    stack_id: str | None = None,
) -> tuple[App, LongbowStack]:
    """The CDK app holding the deployment's stack (not synthesised yet).

    Args:
        settings: The checked deployment settings.
        artifacts: The wheel and layer to upload.
        build_dir: Where generated function code is written.
        outdir: The cloud assembly directory (default: `CDK_OUTDIR`, which the CDK CLI sets,
            else a temporary directory).
        stack_id: The stack's name (default: `Longbow-<name>`).
    """
    app = App(outdir=outdir) if outdir else App()
    env = None
    if settings.account or settings.region:
        env = Environment(account=settings.account, region=settings.region)
    stack = LongbowStack(
        app,
        stack_id or f"Longbow-{settings.name}",
        settings=settings,
        artifacts=artifacts,
        build_dir=build_dir,
        env=env,
        description=f"Longbow cluster {settings.name}: queue, job table, workers, monitoring",
    )
    return app, stack


__all__ = ["LongbowStack", "create_app"]
