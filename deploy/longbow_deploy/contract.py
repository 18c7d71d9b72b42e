"""What the Longbow runtime expects of the deployed resources, in one place: the job table's
keys, index and TTL attribute, the metric names the workers publish, the Lambda handlers, and
the cluster config file and environment the workers read.

These values mirror `s3longbow.cluster.provision`, `s3longbow.cluster.metrics` and
`s3longbow.handlers` (the tests compare them), because the deploy app must not import the
runtime: it only ships it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from .settings import DeploySettings, parse_size

# The job table (s3longbow.cluster.provision).
TABLE_PARTITION_KEY = "pk"
TABLE_SORT_KEY = "sk"
STATE_INDEX = "by-state"
STATE_INDEX_PARTITION_KEY = "gsi_state"  # string
STATE_INDEX_SORT_KEY = "updated_at"  # number
STATE_INDEX_ATTRIBUTES = (
    "kind",
    "state",
    "size",
    "reason",
    "attempts",
    "src_bucket",
    "src_key",
    "dst_bucket",
    "dst_key",
)
TTL_ATTRIBUTE = "expires_at"

# Embedded metric format lines of the workers (s3longbow.cluster.metrics).
METRICS_NAMESPACE = "Longbow"
MODE_DIMENSION = "Mode"
MODE_EC2 = "worker"
MODE_LAMBDA = "lambda"
METRIC_NAMES = (
    "BytesSent",
    "BytesReused",
    "Throughput",
    "ObjectsCopied",
    "ObjectsFailed",
    "Errors",
    "MessagesReceived",
    "MessagesDeleted",
    "MessagesMovedAside",
    "DuplicateJobs",
    "JobsInFlight",
)

# The Lambda worker (s3longbow.handlers.sqs_worker) and the sender (s3longbow.handlers.sender),
# both in the runtime layer.
LAMBDA_WORKER_HANDLER = "s3longbow.handlers.sqs_worker.handler"
SENDER_HANDLER = "s3longbow.handlers.sender.handler"

# Where the EC2 user data puts things.
CONFIG_PATH = "/etc/longbow/cluster.toml"
IGNORE_FILE = "ignore.txt"


@dataclass(frozen=True)
class QueueRef:
    """How a config file names the queues: URLs (tokens resolved by CloudFormation, in the
    user data) or names (in files built at synthesis, where no token can go)."""

    queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    queue_name: str | None = None
    dead_letter_queue_name: str | None = None


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value))


def cluster_config(
    settings: DeploySettings,
    *,
    queue: QueueRef,
    table: str,
    region: str | None,
    ignore_file: bool,
    metrics_interval: int = 60,
) -> str:
    """The cluster config file (TOML) that `longbow worker` and `longbow send` read.

    Args:
        settings: The deployment.
        queue: The queues, by URL or by name.
        table: The job table's name (may be a token).
        region: Region of the queue, table and parameters (may be a token); None to leave it
            to the credential chain (Lambda sets AWS_REGION).
        ignore_file: Whether an `ignore.txt` lies beside the file.
        metrics_interval: Seconds between two metric lines.
    """
    t = settings.transfer
    lines = [
        "# Written by the Longbow deployment; changes are lost at the next deployment.",
        f"workers = {t.workers}",
        f"part_threads = {t.part_threads}",
        f"part_size = {parse_size(t.part_size, what='part_size')}",
        f"resumable_threshold = {parse_size(t.resumable_threshold, what='threshold')}",
        f"memory_limit = {parse_size(t.memory_limit, what='memory_limit')}",
    ]
    if t.storage_class:
        lines.append(f"storage_class = {_toml(t.storage_class)}")
    if t.no_overwrite:
        lines.append("no_overwrite = true")
    if t.restore_days is not None:
        lines.append(f"restore_days = {t.restore_days}")
    if t.restore_tier is not None:
        lines.append(f"restore_tier = {_toml(t.restore_tier)}")
    f = settings.filters
    for key in ("include", "exclude", "filter"):
        patterns = getattr(f, key)
        if patterns:
            lines.append(f"{key} = [{', '.join(_toml(p) for p in patterns)}]")
    if f.ignore_case:
        lines.append("ignore_case = true")
    for key in ("min_size", "max_size", "min_age", "max_age"):
        if getattr(f, key) is not None:
            lines.append(f"{key} = {_toml(getattr(f, key))}")
    if ignore_file:
        lines.append(f"ignore_file = {_toml(IGNORE_FILE)}")
    cluster: dict[str, object] = {}
    if queue.queue_url:
        cluster["queue_url"] = queue.queue_url
    else:
        cluster["queue_name"] = queue.queue_name
    if queue.dead_letter_queue_url:
        cluster["dead_letter_queue_url"] = queue.dead_letter_queue_url
    elif queue.dead_letter_queue_name:
        cluster["dead_letter_queue_name"] = queue.dead_letter_queue_name
    cluster["table"] = table
    if region:
        cluster["region"] = region
    cluster["visibility_timeout"] = settings.queue.visibility_timeout
    cluster["max_receive_count"] = settings.queue.max_receive_count
    cluster["objects_per_message"] = settings.queue.objects_per_message
    cluster["pairs_parameter"] = settings.pairs_parameter
    if settings.parameters.credentials:
        cluster["credentials_parameter"] = settings.parameters.credentials
        cluster["credentials_side"] = settings.parameters.credentials_side
    cluster["delete_removed"] = settings.queue.delete_removed
    cluster["metrics_interval"] = metrics_interval
    lines += ["", "[cluster]", *(f"{k} = {_toml(v)}" for k, v in cluster.items())]
    for name, side in (("source", settings.source), ("destination", settings.destination)):
        entries = {
            "region": side.region,
            "endpoint_url": side.endpoint_url,
            "path_style": side.path_style or None,
        }
        present = {k: v for k, v in entries.items() if v is not None}
        if present:
            lines += ["", f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in present.items())]
    return "\n".join(lines) + "\n"


def ignore_text(settings: DeploySettings) -> str | None:
    """The ignore file's content, or None when no pattern is set."""
    if not settings.transfer.ignore:
        return None
    return "\n".join(settings.transfer.ignore) + "\n"


def pairs_json(settings: DeploySettings) -> str:
    """The pairs parameter's value: `[{"src": ..., "dst": ...}, ...]`, with a pair's
    `src_inventory` where it has one."""
    return json.dumps(
        [
            {"src": p.src, "dst": p.dst}
            | ({"src_inventory": p.src_inventory} if p.src_inventory else {})
            for p in settings.pairs
        ]
    )


def lambda_environment(
    settings: DeploySettings,
    *,
    config_path: str,
    queue_url: str,
    dead_letter_queue_url: str,
    table: str,
    region: str,
    time_margin_seconds: int,
    transfer_overrides: Mapping[str, int | None] | None = None,
) -> dict[str, str]:
    """Environment variables of a Lambda function running Longbow.

    The config file (shipped with the function) holds the static settings; the variables
    name the deployed resources, which only CloudFormation knows, and override the file.
    """
    env = {
        "LONGBOW_CONFIG": config_path,
        "LONGBOW_QUEUE_URL": queue_url,
        "LONGBOW_DEAD_LETTER_QUEUE_URL": dead_letter_queue_url,
        "LONGBOW_TABLE": table,
        "LONGBOW_REGION": region,
        "LONGBOW_PAIRS_PARAMETER": settings.pairs_parameter,
        "LONGBOW_TIME_MARGIN_SECONDS": str(time_margin_seconds),
        "LONGBOW_LOG_FORMAT": "json",
    }
    if settings.parameters.credentials:
        env["LONGBOW_CREDENTIALS_PARAMETER"] = settings.parameters.credentials
        env["LONGBOW_CREDENTIALS_SIDE"] = settings.parameters.credentials_side
    for name, value in (transfer_overrides or {}).items():
        if value is not None:
            env[f"LONGBOW_{name.upper()}"] = str(value)
    return env


__all__ = [
    "CONFIG_PATH",
    "IGNORE_FILE",
    "LAMBDA_WORKER_HANDLER",
    "METRICS_NAMESPACE",
    "METRIC_NAMES",
    "MODE_DIMENSION",
    "MODE_EC2",
    "MODE_LAMBDA",
    "QueueRef",
    "SENDER_HANDLER",
    "STATE_INDEX",
    "STATE_INDEX_ATTRIBUTES",
    "STATE_INDEX_PARTITION_KEY",
    "STATE_INDEX_SORT_KEY",
    "TABLE_PARTITION_KEY",
    "TABLE_SORT_KEY",
    "TTL_ATTRIBUTE",
    "cluster_config",
    "ignore_text",
    "lambda_environment",
    "pairs_json",
]
