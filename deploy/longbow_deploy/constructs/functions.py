"""What the Longbow Lambda functions share: the runtime layer, an own role without managed
policies, and a log group of the stack's."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

# The layer's wheels are built for this runtime and architecture (see build.py).
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64


def runtime_layer(scope: Construct, id: str, *, path: Path) -> lambda_.LayerVersion:
    """The layer holding `s3longbow` and its dependencies, shared by every function."""
    return lambda_.LayerVersion(
        scope,
        id,
        code=lambda_.Code.from_asset(str(path)),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[ARCHITECTURE],
        description="Longbow runtime (s3longbow and its dependencies)",
    )


def longbow_function(
    scope: Construct,
    id: str,
    *,
    function_name: str,
    handler: str,
    code: Path,
    layer: lambda_.ILayerVersion,
    memory_mb: int,
    timeout_seconds: int,
    environment: Mapping[str, str],
    log_group: logs.ILogGroup,
    reserved_concurrency: int | None,
    description: str,
) -> lambda_.Function:
    """A Python function running Longbow code with its own role.

    The role has no managed policy (AWSLambdaBasicExecutionRole would let it write to every
    log group): it may write to its own log group, and the stack grants the rest.
    """
    role = iam.Role(
        scope,
        f"{id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"Longbow: {description}",
    )
    log_group.grant_write(role)
    return lambda_.Function(
        scope,
        id,
        function_name=function_name,
        description=f"Longbow: {description}",
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        handler=handler,
        code=lambda_.Code.from_asset(str(code)),
        layers=[layer],
        memory_size=memory_mb,
        timeout=Duration.seconds(timeout_seconds),
        environment=dict(environment),
        role=role,
        log_group=log_group,
        reserved_concurrent_executions=reserved_concurrency,
        # A run that failed is not retried by Lambda: messages come back through the queue,
        # and a sender run is simply run again.
        retry_attempts=0,
    )
