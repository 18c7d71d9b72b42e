"""boto3 clients for the cluster's control plane (SQS, DynamoDB, SSM), SSM parameter reads,
and the translation of their errors onto Longbow's error tree.

Values read from SSM may be secrets: no message built here ever includes a parameter's value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from s3longbow.cluster.config import ClusterSettings
from s3longbow.errors import ConfigError, FatalError, LongbowError, TransientError

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"

_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "MissingAuthenticationToken",
        "AuthFailure",
    }
)
_MISSING_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "ParameterNotFound",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "TransactionInProgressException",
        "KMS.ThrottlingException",
    }
)


class ControlPlane:
    """One boto3 session's SQS, DynamoDB and SSM clients (thread-safe once created).

    Args:
        cluster: Region, endpoint and profile of the control plane.
        max_connections: HTTP connections per client; at least the threads using it.
    """

    def __init__(self, cluster: ClusterSettings, *, max_connections: int = 32) -> None:
        try:
            session = boto3.session.Session(profile_name=cluster.profile)
        except ProfileNotFound:
            raise ConfigError(
                f"[cluster] profile {cluster.profile!r} is not configured",
                hint="list profiles with `aws configure list-profiles`, or remove the setting",
            ) from None
        self.region = cluster.region or session.region_name or DEFAULT_REGION
        self.endpoint_url = cluster.endpoint_url
        config = Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            # Long polls wait up to 20 s before SQS answers.
            read_timeout=45,
            max_pool_connections=max_connections,
        )
        # Clients are created here, in one thread: sessions are not thread-safe, clients are.
        self.sqs: Any = session.client(
            "sqs", region_name=self.region, endpoint_url=cluster.endpoint_url, config=config
        )
        self.dynamodb: Any = session.client(
            "dynamodb", region_name=self.region, endpoint_url=cluster.endpoint_url, config=config
        )
        self.ssm: Any = session.client(
            "ssm", region_name=self.region, endpoint_url=cluster.endpoint_url, config=config
        )

    def close(self) -> None:
        for client in (self.sqs, self.dynamodb, self.ssm):
            client.close()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: BaseException, where: str, *, fatal: bool = False) -> LongbowError:
    """Map a botocore error from SQS, DynamoDB or SSM onto the error tree.

    Args:
        exc: The error raised by a client.
        where: What was being done, e.g. "receiving from queue X".
        fatal: The caller cannot go on without this call (start-up checks): transient
            failures become FatalError too.
    """
    if isinstance(exc, LongbowError):
        return exc
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return FatalError(
            f"{where}: no AWS credentials found",
            hint="give the worker a role, set [cluster] profile, or configure the default "
            "credential chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
        )
    if isinstance(exc, BotoCoreError):
        text = f"{where}: {type(exc).__name__}: {exc}"
        if fatal:
            return FatalError(text, hint="check [cluster] endpoint_url and region")
        return TransientError(text)
    if not isinstance(exc, ClientError):
        return FatalError(f"{where}: {exc!r}")
    code = error_code(exc)
    message = exc.response.get("Error", {}).get("Message") or code
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = f"{where}: {code} ({message})"
    if code in _AUTH_CODES or status == 403:
        return FatalError(text, hint="check the credentials and the IAM permissions of this role")
    if code in _MISSING_CODES:
        return FatalError(
            text,
            hint="create the queue and table with `longbow cluster-init --config FILE`, or "
            "check the names, region and endpoint in [cluster]",
        )
    if code in _TRANSIENT_CODES or status >= 500 or status == 429:
        return (FatalError if fatal else TransientError)(text)
    return FatalError(text)


@contextmanager
def translated(where: str, *, fatal: bool = False) -> Iterator[None]:
    """Translate botocore errors raised in the block (see `translate`)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, where, fatal=fatal) from None


class Parameters:
    """Reads SSM parameters; a value never appears in an error or a log line."""

    def __init__(self, ssm: Any) -> None:
        self._ssm = ssm

    def json(self, name: str, *, decrypt: bool) -> Any:
        """The parsed JSON value of a parameter.

        Raises:
            FatalError: The parameter is missing or cannot be read.
            ConfigError: Its value is not JSON.
        """
        try:
            value = self._ssm.get_parameter(Name=name, WithDecryption=decrypt)["Parameter"]["Value"]
        except ClientError as exc:
            if error_code(exc) == "ParameterNotFound":
                raise FatalError(
                    f"SSM parameter {name!r} does not exist",
                    hint="create it (see docs/cluster.md) or fix the name in [cluster]",
                ) from None
            raise translate(exc, f"reading SSM parameter {name!r}", fatal=True) from None
        except BotoCoreError as exc:
            raise translate(exc, f"reading SSM parameter {name!r}", fatal=True) from None
        try:
            return json.loads(value)
        except ValueError:
            # The value may be a secret: say where it is wrong, never what it holds.
            raise ConfigError(
                f"SSM parameter {name!r} does not hold valid JSON",
                hint="store a JSON document as described in docs/cluster.md",
            ) from None


__all__ = ["ControlPlane", "Parameters", "error_code", "translate", "translated"]
