"""Where a local S3-compatible server listens, and boto3 clients for it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.client import BaseClient
from botocore.config import Config

if TYPE_CHECKING:  # boto3-stubs: the clients' methods, for type checkers only
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

__all__ = ["DEFAULT_ACCESS_KEY", "DEFAULT_REGION", "DEFAULT_SECRET_KEY", "LOCALHOST", "Endpoint"]

LOCALHOST = "127.0.0.1"
DEFAULT_ACCESS_KEY = "longbow"
DEFAULT_SECRET_KEY = "longbow-secret"
DEFAULT_REGION = "us-east-1"

_SESSION_LOCK = threading.Lock()
_SESSION: boto3.session.Session | None = None


def _shared_session() -> boto3.session.Session:
    """Return the process-wide boto3 session used for local endpoints (caller holds the lock)."""
    global _SESSION
    if _SESSION is None:
        # Isolated from the developer's AWS setup: an AWS_PROFILE naming a missing profile, or
        # settings in ~/.aws/config, must not break or alter traffic to a local test server.
        core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
        core.set_config_variable("config_file", os.devnull)
        core.set_config_variable("credentials_file", os.devnull)
        _SESSION = boto3.session.Session(botocore_session=core)
    return _SESSION


@dataclass(frozen=True)
class Endpoint:
    """Where a local S3-compatible server listens and how to authenticate to it.

    Attributes:
        kind: The server implementation: ``"seaweedfs"``, ``"moto"``, ``"rclone"`` or
            ``"rgw"``.
        url: Base URL, e.g. ``"http://127.0.0.1:8333"``.
        access_key: Access key id accepted by the server.
        secret_key: Secret access key accepted by the server.
        region: Region name to sign requests for.
        ca_bundle: PEM file of the authority that signed an https endpoint's certificate
            (``None``: the system's trusted authorities, or plain http).
    """

    kind: str
    url: str
    access_key: str
    secret_key: str
    region: str = DEFAULT_REGION
    ca_bundle: Path | None = None

    @property
    def host(self) -> str:
        """The host part of :attr:`url`."""
        return urlsplit(self.url).hostname or LOCALHOST

    @property
    def port(self) -> int:
        """The TCP port of :attr:`url`."""
        port = urlsplit(self.url).port
        if port is None:
            raise ValueError(f"endpoint URL has no port: {self.url}")
        return port

    @overload
    def client(self, service: Literal["s3"] = ..., **config_kwargs: Any) -> S3Client: ...

    @overload
    def client(self, service: Literal["sqs"], **config_kwargs: Any) -> SQSClient: ...

    @overload
    def client(self, service: Literal["dynamodb"], **config_kwargs: Any) -> DynamoDBClient: ...

    @overload
    def client(self, service: Literal["ssm"], **config_kwargs: Any) -> SSMClient: ...

    @overload
    def client(self, service: str, **config_kwargs: Any) -> BaseClient: ...

    def client(self, service: str = "s3", **config_kwargs: Any) -> Any:
        """Create a boto3 client for this endpoint.

        S3 clients use path-style addressing and signature v4. Flexible checksums are only
        computed and validated when an operation requires them, since the default CRC32
        handling breaks ranged GETs on some S3-compatible servers. Environment proxies are
        ignored so loopback traffic never leaves the machine.

        Args:
            service: The AWS service name, e.g. ``"s3"``, or ``"sqs"``/``"dynamodb"``/``"ssm"``
                against a moto endpoint.
            **config_kwargs: Extra :class:`botocore.config.Config` options; they override the
                defaults above (an ``s3`` dict is merged with the default one).

        Returns:
            A new botocore client (thread-safe; create one per thread pool, not per call).
        """
        options: dict[str, Any] = {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "proxies": {},
        }
        if service == "s3":
            options["signature_version"] = "s3v4"
            options["s3"] = {"addressing_style": "path"}
        extra_s3 = config_kwargs.pop("s3", None)
        options.update(config_kwargs)
        if extra_s3:
            options["s3"] = {**options.get("s3", {}), **extra_s3}
        # boto3 sessions are not thread-safe; clients created from them are.
        with _SESSION_LOCK:
            # Any service by name: the typed overloads above say what each one returns.
            create = cast(Callable[..., BaseClient], _shared_session().client)
            return create(
                service,
                endpoint_url=self.url,
                region_name=self.region,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                config=Config(**options),
                # An https endpoint signed by a throwaway authority: trust that one only.
                **({"verify": str(self.ca_bundle)} if self.ca_bundle else {}),
            )
