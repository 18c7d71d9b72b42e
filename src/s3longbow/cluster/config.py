"""The `[cluster]` table of a cluster config file: where the queue, the dead-letter queue and
the job table are. A leaf: it imports nothing of the project but its errors and sizes."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3longbow.config import MAX_PARTS, MIN_PART_SIZE, GiB, parse_size
from s3longbow.errors import ConfigError


class CredentialsSide(enum.StrEnum):
    """Which side of a cluster deployment reads its keys from the SSM credentials parameter."""

    SOURCE = "source"
    DESTINATION = "destination"


@dataclass(frozen=True)
class ClusterSettings:
    """The `[cluster]` table: where the queue, the dead-letter queue and the job table are.

    Attributes:
        queue_url: URL of the job queue (or give `queue_name`).
        queue_name: Name of the job queue, resolved to its URL at start.
        dead_letter_queue_url: URL of the dead-letter queue; by default the one the job
            queue's redrive policy names.
        dead_letter_queue_name: Name of the dead-letter queue (for `cluster-init`; default
            the queue name with `-dlq`).
        table: The DynamoDB job table.
        region: Region of SQS, DynamoDB and SSM (default: the credential chain's, else
            us-east-1).
        endpoint_url: One endpoint for SQS, DynamoDB and SSM (a local emulator); AWS when unset.
        profile: AWS profile for SQS, DynamoDB and SSM (default: the credential chain).
        visibility_timeout: Seconds a received message stays invisible; workers extend it
            every third of it while its jobs run.
        max_receive_count: Deliveries of a message before the queue moves it to the
            dead-letter queue (the redrive policy `cluster-init` writes).
        receive_wait_seconds: Long-poll wait of each receive (0-20).
        objects_per_message: Most small objects packed into one job message.
        credentials_parameter: SSM SecureString holding JSON keys for one side.
        credentials_side: The side that uses those keys; the other uses the default chain.
        pairs_parameter: SSM String holding the pairs as JSON, instead of `[[pairs]]`.
        delete_removed: Delete the destination copy when an ObjectRemoved event arrives.
        metrics_interval: Seconds between two metric lines of a worker.
        retry_base_seconds: First delay before a message whose job failed comes back.
        retry_max_seconds: Longest such delay (doubling per delivery up to it).
        fanout_threshold: Objects larger than this (bytes; a size such as "5GiB" in the
            file) are fanned out: queued as ranges of their parts that any worker takes.
        fanout_parts: Most parts in one range of a fanned-out object.
    """

    queue_url: str | None = None
    queue_name: str | None = None
    dead_letter_queue_url: str | None = None
    dead_letter_queue_name: str | None = None
    table: str = "longbow-jobs"
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    visibility_timeout: int = 300
    max_receive_count: int = 5
    receive_wait_seconds: int = 10
    objects_per_message: int = 100
    credentials_parameter: str | None = None
    credentials_side: CredentialsSide = CredentialsSide.DESTINATION
    pairs_parameter: str | None = None
    delete_removed: bool = False
    metrics_interval: float = 60.0
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 900.0
    fanout_threshold: int = 5 * GiB
    fanout_parts: int = 500

    @property
    def queue(self) -> str:
        """The queue as configured (URL or name), for messages."""
        return self.queue_url or self.queue_name or ""


_CLUSTER_FIELDS = {f.name: f for f in dataclasses.fields(ClusterSettings)}
# (lowest, highest) accepted for each numeric [cluster] setting.
_CLUSTER_RANGES: dict[str, tuple[float, float]] = {
    "visibility_timeout": (1, 43_200),  # SQS allows up to 12 hours
    "max_receive_count": (1, 1_000),
    "receive_wait_seconds": (0, 20),
    "objects_per_message": (1, 1_000),
    "metrics_interval": (0.1, 86_400),
    "retry_base_seconds": (0, 43_200),
    "retry_max_seconds": (0, 43_200),
    "fanout_parts": (1, MAX_PARTS),
}
# [cluster] settings that are sizes: a number of bytes or a size with a unit.
_CLUSTER_SIZES = {"fanout_threshold"}


def parse_cluster_table(table: object, path: Path) -> ClusterSettings:
    """Check a `[cluster]` table and turn it into ClusterSettings.

    Raises:
        ConfigError: A key is unknown, a value has the wrong type or range, or no queue is
            named.
    """
    where = f"config file {path}: [cluster]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(_CLUSTER_FIELDS))
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s) {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(_CLUSTER_FIELDS))}",
        )
    values: dict[str, Any] = {}
    for key, value in table.items():
        default = getattr(ClusterSettings(), key)
        if key == "credentials_side":
            sides = [s.value for s in CredentialsSide]
            if value not in sides:
                raise ConfigError(
                    f"{where} credentials_side must be one of {', '.join(sides)}, got {value!r}"
                )
            values[key] = CredentialsSide(value)
        elif key in _CLUSTER_SIZES:
            values[key] = fanout_threshold(value, f"{where} {key}")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where} {key} must be true or false, got {value!r}")
            values[key] = value
        elif key in _CLUSTER_RANGES:
            number_type = int if isinstance(default, int) else (int, float)
            if isinstance(value, bool) or not isinstance(value, number_type):
                kind = "a whole number" if number_type is int else "a number"
                raise ConfigError(f"{where} {key} must be {kind}, got {value!r}")
            low, high = _CLUSTER_RANGES[key]
            if not low <= value <= high:
                raise ConfigError(f"{where} {key} must be between {low:g} and {high:g}")
            values[key] = value
        else:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where} {key} must be a non-empty string, got {value!r}")
            values[key] = value
    settings = ClusterSettings(**values)
    if not settings.queue_url and not settings.queue_name:
        raise ConfigError(
            f"{where} names no queue",
            hint='set queue_url = "https://sqs.REGION.amazonaws.com/ACCOUNT/NAME" or '
            'queue_name = "NAME"',
        )
    if settings.queue_url and settings.queue_name:
        raise ConfigError(f"{where} sets both queue_url and queue_name; keep one")
    if settings.retry_max_seconds < settings.retry_base_seconds:
        raise ConfigError(f"{where} retry_max_seconds is smaller than retry_base_seconds")
    return settings


def fanout_threshold(value: object, where: str) -> int:
    """A fan-out threshold as a file, a variable or a flag gives it: a size of at least 5 MiB.

    Raises:
        ConfigError: It is not such a size (`where` names the key or the flag).
    """
    if not isinstance(value, str | int):
        raise ConfigError(f'{where} must be a size such as "5GiB", got {value!r}')
    size = parse_size(value, what=where)
    if size < MIN_PART_SIZE:
        raise ConfigError(
            f"{where} must be at least {MIN_PART_SIZE} bytes (5MiB), got {value!r}",
            hint='fan-out splits an object into parts of 5 MiB or more; e.g. "5GiB"',
        )
    return size


def with_fanout(
    settings: ClusterSettings, threshold: str | None, parts: int | None
) -> ClusterSettings:
    """The settings with `longbow send`'s `--fanout-threshold` and `--fanout-parts` (None:
    not given) over the file's keys.

    Raises:
        ConfigError: A value is out of range.
    """
    changes: dict[str, Any] = {}
    if threshold is not None:
        changes["fanout_threshold"] = fanout_threshold(threshold, "--fanout-threshold")
    if parts is not None:
        low, high = _CLUSTER_RANGES["fanout_parts"]
        if not low <= parts <= high:
            raise ConfigError(f"--fanout-parts must be between {low:g} and {high:g}, got {parts}")
        changes["fanout_parts"] = parts
    return dataclasses.replace(settings, **changes) if changes else settings


__all__ = [
    "ClusterSettings",
    "CredentialsSide",
    "fanout_threshold",
    "parse_cluster_table",
    "with_fanout",
]
