"""The deployment's settings: one TOML file, read into frozen dataclasses and checked as a whole
before anything is synthesised.

Every resource name, size and switch of the stack comes from here, so `app.py` holds no
literals. Unknown keys and values of the wrong type or range are errors (all of them are
reported at once), because a typo in a deployment file should never deploy a default.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MiB = 1024 * 1024
GiB = 1024 * MiB
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": MiB,
    "mb": 1000**2,
    "mib": MiB,
    "g": GiB,
    "gb": 1000**3,
    "gib": GiB,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PARAMETER_RE = re.compile(r"^/[A-Za-z0-9_.\-/]{1,1000}$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
# What `longbow sync` takes for --restore-days and --restore-tier (the runtime checks again).
MAX_RESTORE_DAYS = 30_000
RESTORE_TIERS = ("Standard", "Bulk", "Expedited")
# A Graviton family has a "g" after its generation digit: c7g, m6gd, c7gn, t4g, hpc7g.
# rclone's units, as `longbow sync` reads them (the runtime checks them again at start).
_FILTER_SIZE_RE = re.compile(r"^(\d+(\.\d*)?|\.\d+)([bB]|[kmgtpKMGTP]([iI]?[bB]?))?$")
_FILTER_AGE_RE = re.compile(
    r"^(\d+(\.\d*)?|\.\d+)$|^((\d+(\.\d*)?|\.\d+)(ms|s|m|h|d|w|M|y))+$|^\d{4}-\d{2}-\d{2}"
)
_GRAVITON_RE = re.compile(r"^[a-z]+\d+[a-z]*g[a-z]*(-[a-z]+)?$")


class SettingsError(ValueError):
    """The settings file cannot be used; the message lists every problem found."""


def parse_size(value: str | int, *, what: str) -> int:
    """A byte count such as 16777216, "16MiB" or "10MB".

    Raises:
        SettingsError: The value is not a size.
    """
    if isinstance(value, bool):
        raise SettingsError(f"{what}: expected a size such as 16MiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise SettingsError(f"{what}: a size cannot be negative")
        return value
    match = _SIZE_RE.match(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise SettingsError(f"{what}: {value!r} is not a size (write e.g. 16MiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


@dataclass(frozen=True)
class Pair:
    """One source location copied to one destination location.

    Attributes:
        src: `s3://bucket/prefix` on the source side.
        dst: `s3://bucket/prefix` on the destination side.
        src_inventory: `s3://bucket/.../manifest.json` of an S3 Inventory report of the
            source, which the sender reads instead of listing it.
    """

    src: str
    dst: str
    src_inventory: str | None = None

    @property
    def src_bucket(self) -> str:
        return _split_s3(self.src)[0]

    @property
    def src_prefix(self) -> str:
        return _split_s3(self.src)[1]

    @property
    def dst_bucket(self) -> str:
        return _split_s3(self.dst)[0]

    @property
    def inventory_bucket(self) -> str:
        return _split_s3(self.src_inventory or "")[0]

    @property
    def inventory_folder(self) -> str:
        """Where the report's manifests and data files are: the folder of its configuration
        (`prefix/source-bucket/config-id/`), above each day's `date/manifest.json`."""
        key = _split_s3(self.src_inventory or "")[1]
        parts = key.split("/")
        return "/".join(parts[:-2]) + "/" if len(parts) > 2 else ""

    @property
    def dst_prefix(self) -> str:
        return _split_s3(self.dst)[1]


def _split_s3(text: str) -> tuple[str, str]:
    if not text.startswith("s3://"):
        return "", ""
    bucket, _, prefix = text[5:].partition("/")
    return bucket, prefix


@dataclass(frozen=True)
class Side:
    """How the workers reach one side (the `[source]` / `[destination]` of the config file).

    Attributes:
        region: The side's region (default: the stack's region).
        endpoint_url: An S3-compatible endpoint outside AWS, or another partition's S3.
        path_style: Address buckets in the path instead of the host name.
    """

    region: str | None = None
    endpoint_url: str | None = None
    path_style: bool = False


@dataclass(frozen=True)
class Parameters:
    """SSM parameters the workers read at start.

    Attributes:
        pairs: Name of the String parameter the stack creates with the pairs (default
            `/<name>/pairs`).
        credentials: Name of a SecureString holding one side's keys as JSON. The operator
            creates it beforehand; the stack only references it, so the keys never appear in
            a template. Unset when both sides are reached with the stack's roles.
        credentials_side: `source` or `destination`: the side those keys are for. The other
            side is in this account, and its buckets are granted to the roles.
        credentials_kms_key_arn: The customer-managed KMS key of that SecureString, if it is
            not encrypted with the account's default `aws/ssm` key.
    """

    pairs: str | None = None
    credentials: str | None = None
    credentials_side: str = "destination"
    credentials_kms_key_arn: str | None = None


@dataclass(frozen=True)
class Transfer:
    """Transfer settings written to every worker's config file.

    Attributes:
        workers: Objects copied in parallel by one worker.
        part_threads: Parts in flight per object.
        part_size: Size of one part.
        resumable_threshold: Objects above this are copied in parts (and travel alone).
        memory_limit: Buffers one worker may hold.
        storage_class: Storage class of the copies (default: the destination's default).
        ignore: Shell patterns of keys never copied.
        no_overwrite: Never replace an object the destination has (If-None-Match: *).
        restore_days: Ask for the restore of archived sources (S3 Glacier Flexible
            Retrieval, Deep Archive, Intelligent-Tiering archive tiers), the restored copy
            readable this many days; unset: archived sources are recorded and wait.
        restore_tier: How fast (and dear) those restores are: Standard, Bulk or Expedited.
    """

    workers: int = 16
    part_threads: int = 4
    part_size: str = "16MiB"
    resumable_threshold: str = "16MiB"
    memory_limit: str = "512MiB"
    storage_class: str | None = None
    ignore: tuple[str, ...] = ()
    no_overwrite: bool = False
    restore_days: int | None = None
    restore_tier: str | None = None


@dataclass(frozen=True)
class Filters:
    """Which objects the sender queues and the workers take from S3 events: `longbow sync`'s
    filters in rclone's dialect (see the README's Filters), written to the workers' config.

    Attributes:
        include: Take only keys that match (any include leaves out what no rule takes).
        exclude: Leave out keys that match.
        filter: Rules tried after those: '+ pattern' takes, '- pattern' leaves out, '!'
            clears the rules before it.
        ignore_case: Patterns match keys whatever the case of their letters.
        min_size: Leave out objects smaller than this (10M; a bare number is KiB).
        max_size: Leave out objects larger than this.
        min_age: Leave out objects modified more recently than this (2h, 7d, or a date).
        max_age: Leave out objects modified longer ago than this.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    filter: tuple[str, ...] = ()
    ignore_case: bool = False
    min_size: str | None = None
    max_size: str | None = None
    min_age: str | None = None
    max_age: str | None = None


@dataclass(frozen=True)
class Queue:
    """The job queue and its dead-letter queue.

    Attributes:
        name: Queue name (default `<name>-jobs`; the DLQ adds `-dlq`).
        visibility_timeout: Seconds a received message stays invisible; workers extend it
            every third of it while its jobs run. Must cover the Lambda worker's timeout.
        max_receive_count: Deliveries before the redrive policy moves a message aside.
        retention_days: How long the job queue keeps a message (1-14).
        objects_per_message: Most small objects the sender packs into one message.
        delete_removed: Delete the destination copy on an ObjectRemoved event.
    """

    name: str | None = None
    visibility_timeout: int = 300
    max_receive_count: int = 5
    retention_days: int = 4
    objects_per_message: int = 100
    delete_removed: bool = False


@dataclass(frozen=True)
class Table:
    """The DynamoDB job table.

    Attributes:
        name: Table name (default `<name>-jobs`).
        point_in_time_recovery: Continuous backups (35 days).
        deletion_protection: Refuse to delete the table, even from CloudFormation.
    """

    name: str | None = None
    point_in_time_recovery: bool = True
    deletion_protection: bool = False


@dataclass(frozen=True)
class Network:
    """Where the EC2 workers run.

    Attributes:
        vpc_id: An existing VPC; unset to create one with public subnets and an S3 gateway
            endpoint.
        subnet_ids: Subnets of that VPC for the workers (with a route to the internet).
        availability_zones: The zone of each subnet, in the same order.
        cidr: Address range of a new VPC.
        max_azs: Zones of a new VPC.
    """

    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    availability_zones: tuple[str, ...] = ()
    cidr: str = "10.20.0.0/16"
    max_azs: int = 2


@dataclass(frozen=True)
class Ec2Workers:
    """The Auto Scaling workers.

    Attributes:
        enabled: Deploy them.
        instance_types: Types the group may launch (all x86_64 or all Graviton); several
            types make Spot capacity easier to find.
        spot: Launch Spot instances (else on-demand only).
        on_demand_fallback: Beside a Spot group, an on-demand group that makes up for Spot
            capacity the Spot group cannot get.
        fallback_after_minutes: How long the Spot group must lack instances before the
            on-demand group steps in.
        min_capacity: Instances kept when the queue is empty (0 costs nothing when idle).
        max_capacity: Most instances (per group).
        scale_out_steps: `[messages waiting, instances added]` pairs, lowest first.
        scale_out_minutes: Minutes the backlog must stay above a step before it applies.
        idle_minutes: Minutes the queue must be empty (waiting, in flight and delayed)
            before the group goes back to its minimum and the batch is reported finished.
        warmup_minutes: Minutes an instance needs to boot and start its worker.
        volume_gib: Root volume size.
    """

    enabled: bool = True
    instance_types: tuple[str, ...] = ("c6i.large", "c5.large", "c6a.large", "m6i.large")
    spot: bool = True
    on_demand_fallback: bool = True
    fallback_after_minutes: int = 10
    min_capacity: int = 0
    max_capacity: int = 10
    scale_out_steps: tuple[tuple[int, int], ...] = ((100, 1), (500, 2), (2000, 4), (10000, 8))
    scale_out_minutes: int = 3
    idle_minutes: int = 15
    warmup_minutes: int = 5
    volume_gib: int = 16

    @property
    def arm64(self) -> bool:
        """Whether the instance types are Graviton (arm64) types."""
        return all(_GRAVITON_RE.match(t.split(".")[0]) for t in self.instance_types)


@dataclass(frozen=True)
class LambdaWorker:
    """The serverless worker: the Lambda handler behind an SQS event source.

    Attributes:
        enabled: Deploy it.
        memory_mb: Function memory (CPU grows with it; 1769 MB is one full vCPU).
        timeout_seconds: Function timeout; at most the queue's visibility timeout.
        time_margin_seconds: Stop starting parts when less time than this remains.
        batch_size: Messages per invocation.
        max_batching_seconds: Longest wait to fill a batch.
        reserved_concurrency: Concurrency reserved for (and capped at) this function; unset
            to draw on the account's unreserved pool.
        max_concurrency: Most concurrent invocations the event source starts (2-1000).
        workers: Objects in parallel per invocation (default: the transfer setting).
        part_threads: Parts in flight per object (default: the transfer setting).
    """

    enabled: bool = False
    memory_mb: int = 2048
    timeout_seconds: int = 300
    time_margin_seconds: int = 60
    batch_size: int = 1
    max_batching_seconds: int = 0
    reserved_concurrency: int | None = None
    max_concurrency: int | None = 10
    workers: int | None = None
    part_threads: int | None = None


@dataclass(frozen=True)
class Sender:
    """The job sender: a Lambda function running `longbow send`.

    Attributes:
        schedule: An EventBridge schedule (`rate(1 day)`, `cron(0 2 * * ? *)`); unset for
            on-demand runs only.
        memory_mb: Function memory.
        timeout_seconds: Function timeout (60-900 seconds).
        time_margin_seconds: Stop listing when less time than this remains, so what was
            recorded is still sent.
    """

    schedule: str | None = None
    memory_mb: int = 1024
    timeout_seconds: int = 900
    time_margin_seconds: int = 90


@dataclass(frozen=True)
class Trigger:
    """S3 event notifications from a source bucket in this account to the queue.

    Attributes:
        bucket: The source bucket (one of the pairs' source buckets); unset for none.
        prefix: Only keys under this prefix.
        removed: Also send ObjectRemoved events (the copy is deleted only with
            `queue.delete_removed`).
    """

    bucket: str | None = None
    prefix: str = ""
    removed: bool = False


@dataclass(frozen=True)
class Monitoring:
    """Dashboard, alarms and notifications.

    Attributes:
        emails: Addresses subscribed to alarms and batch-finished notices (each must confirm).
        error_rate_percent: Alarm when errors exceed this share of attempts for 15 minutes.
        stall_minutes: Alarm when the queue holds messages but nothing was copied or
            finished for this long.
    """

    emails: tuple[str, ...] = ()
    error_rate_percent: float = 5.0
    stall_minutes: int = 30


@dataclass(frozen=True)
class DeploySettings:
    """One Longbow deployment.

    Attributes:
        name: Prefix of every resource name (lowercase letters, digits and dashes).
        account: Pin the stack to this account (optional).
        region: Pin the stack to this region (optional; also the region of the queue, table
            and parameters).
        log_retention_days: Retention of every log group.
        retain_data: Keep the job table and the log groups when the stack is deleted.
        pairs: What to copy.
    """

    pairs: tuple[Pair, ...]
    name: str = "longbow"
    account: str | None = None
    region: str | None = None
    log_retention_days: int = 30
    retain_data: bool = True
    source: Side = Side()
    destination: Side = Side()
    parameters: Parameters = Parameters()
    transfer: Transfer = Transfer()
    filters: Filters = Filters()
    queue: Queue = Queue()
    table: Table = Table()
    network: Network = Network()
    ec2: Ec2Workers = Ec2Workers()
    lambda_worker: LambdaWorker = LambdaWorker()
    sender: Sender = Sender()
    trigger: Trigger = Trigger()
    monitoring: Monitoring = Monitoring()

    # -- derived names ----------------------------------------------------------------------

    @property
    def queue_name(self) -> str:
        return self.queue.name or f"{self.name}-jobs"

    @property
    def dead_letter_queue_name(self) -> str:
        return f"{self.queue_name}-dlq"

    @property
    def table_name(self) -> str:
        return self.table.name or f"{self.name}-jobs"

    @property
    def pairs_parameter(self) -> str:
        return self.parameters.pairs or f"/{self.name}/pairs"

    def in_account(self, side: str) -> bool:
        """Whether `side` ("source" or "destination") is reached with the stack's roles."""
        return not self.parameters.credentials or self.parameters.credentials_side != side

    def buckets(self, side: str) -> dict[str, tuple[str, ...]]:
        """Bucket -> prefixes of one side's pairs (in the order of the pairs)."""
        out: dict[str, list[str]] = {}
        for pair in self.pairs:
            bucket, prefix = (
                (pair.src_bucket, pair.src_prefix)
                if side == "source"
                else (pair.dst_bucket, pair.dst_prefix)
            )
            prefixes = out.setdefault(bucket, [])
            if prefix not in prefixes:
                prefixes.append(prefix)
        return {bucket: tuple(prefixes) for bucket, prefixes in out.items()}

    # -- checks -----------------------------------------------------------------------------

    def check(self) -> DeploySettings:
        """Every problem of the settings at once.

        Returns:
            The settings themselves, checked.

        Raises:
            SettingsError: One or more settings cannot work; the message lists them all.
        """
        problems = list(_problems(self))
        if problems:
            raise SettingsError(
                "the deployment settings cannot be used:\n" + "\n".join(f"- {p}" for p in problems)
            )
        return self


def _problems(s: DeploySettings) -> typing.Iterator[str]:
    if not _NAME_RE.match(s.name):
        yield f"name {s.name!r}: use 2-32 lowercase letters, digits and dashes"
    if s.account is not None and not _ACCOUNT_RE.match(s.account):
        yield f"account {s.account!r} is not a 12-digit account id"
    if s.region is not None and not _REGION_RE.match(s.region):
        yield f"region {s.region!r} is not a region name"
    if s.log_retention_days not in LOG_RETENTION_DAYS:
        yield f"log_retention_days must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}"
    if not s.pairs:
        yield "no [[pairs]]: list at least one pair with src and dst"
    for i, pair in enumerate(s.pairs, 1):
        for text in (pair.src, pair.dst):
            bucket, _ = _split_s3(text)
            if not bucket or not _BUCKET_RE.match(bucket):
                yield f"pair {i}: {text!r} is not s3://bucket/prefix"
        if pair.src_inventory is not None:
            bucket, key = _split_s3(pair.src_inventory)
            if not bucket or not _BUCKET_RE.match(bucket) or not key or key.endswith("/"):
                yield (
                    f"pair {i}: src_inventory {pair.src_inventory!r} is not the s3:// address "
                    "of a report's manifest.json"
                )
    for side_name, side in (("source", s.source), ("destination", s.destination)):
        if side.endpoint_url is not None and not side.endpoint_url.startswith("https://"):
            yield f"[{side_name}] endpoint_url must be an https:// URL"
        if side.region is not None and not _REGION_RE.match(side.region):
            yield f"[{side_name}] region {side.region!r} is not a region name"

    p = s.parameters
    for key, value in (("pairs", p.pairs), ("credentials", p.credentials)):
        if value is not None and not _PARAMETER_RE.match(value):
            yield f"[parameters] {key} {value!r} must be a parameter path such as /longbow/{key}"
    if p.credentials_side not in ("source", "destination"):
        yield "[parameters] credentials_side must be source or destination"
    if p.credentials_kms_key_arn is not None and not p.credentials_kms_key_arn.startswith("arn:"):
        yield "[parameters] credentials_kms_key_arn must be a key ARN"
    if p.credentials_kms_key_arn and not p.credentials:
        yield "[parameters] credentials_kms_key_arn is set but credentials is not"

    t = s.transfer
    for key in ("workers", "part_threads"):
        if not 1 <= getattr(t, key) <= 1024:
            yield f"[transfer] {key} must be between 1 and 1024"
    try:
        part = parse_size(t.part_size, what="[transfer] part_size")
        threshold = parse_size(t.resumable_threshold, what="[transfer] resumable_threshold")
        memory = parse_size(t.memory_limit, what="[transfer] memory_limit")
    except SettingsError as exc:
        yield str(exc)
    else:
        if not 5 * MiB <= part <= 5 * GiB:
            yield "[transfer] part_size must be between 5MiB and 5GiB"
        if threshold > 5 * GiB:
            yield "[transfer] resumable_threshold must be at most 5GiB"
        if memory < part:
            yield "[transfer] memory_limit must hold at least one part"
    if t.restore_days is not None and not 1 <= t.restore_days <= MAX_RESTORE_DAYS:
        yield f"[transfer] restore_days must be between 1 and {MAX_RESTORE_DAYS}"
    if t.restore_tier is not None:
        if t.restore_tier not in RESTORE_TIERS:
            yield f"[transfer] restore_tier must be one of {', '.join(RESTORE_TIERS)}"
        if t.restore_days is None:
            yield "[transfer] restore_tier needs restore_days (how long restored copies stay)"

    q = s.queue
    if q.name is not None and not re.match(r"^[A-Za-z0-9_-]{1,76}$", q.name):
        yield "[queue] name: use at most 76 letters, digits, dashes and underscores"
    if not 1 <= q.visibility_timeout <= 43_200:
        yield "[queue] visibility_timeout must be between 1 and 43200 seconds"
    if not 1 <= q.max_receive_count <= 1000:
        yield "[queue] max_receive_count must be between 1 and 1000"
    if not 1 <= q.retention_days <= 14:
        yield "[queue] retention_days must be between 1 and 14"
    if not 1 <= q.objects_per_message <= 1000:
        yield "[queue] objects_per_message must be between 1 and 1000"
    if s.table.name is not None and not re.match(r"^[A-Za-z0-9_.-]{3,255}$", s.table.name):
        yield "[table] name: use 3-255 letters, digits, dots, dashes and underscores"

    n = s.network
    if n.vpc_id is not None:
        if not n.subnet_ids:
            yield "[network] vpc_id needs subnet_ids"
        if len(n.availability_zones) != len(n.subnet_ids):
            yield "[network] availability_zones must name the zone of each subnet, in order"
    elif n.subnet_ids:
        yield "[network] subnet_ids need vpc_id"
    if not 1 <= n.max_azs <= 6:
        yield "[network] max_azs must be between 1 and 6"

    yield from _filter_problems(s.filters)

    e, lw = s.ec2, s.lambda_worker
    if not e.enabled and not lw.enabled:
        yield "no workers: enable [ec2] or [lambda_worker] (or both)"
    if e.enabled:
        yield from _ec2_problems(e)
    if lw.enabled:
        if not 128 <= lw.memory_mb <= 10_240:
            yield "[lambda_worker] memory_mb must be between 128 and 10240"
        if not 1 <= lw.timeout_seconds <= 900:
            yield "[lambda_worker] timeout_seconds must be between 1 and 900"
        if lw.timeout_seconds > q.visibility_timeout:
            # A message must not come back while an invocation still runs its jobs.
            yield (
                "[lambda_worker] timeout_seconds is above [queue] visibility_timeout: raise "
                "the visibility timeout or lower the function timeout"
            )
        if not 0 <= lw.time_margin_seconds < lw.timeout_seconds:
            yield "[lambda_worker] time_margin_seconds must be below timeout_seconds"
        if not 1 <= lw.batch_size <= 10_000:
            yield "[lambda_worker] batch_size must be between 1 and 10000"
        if lw.batch_size > 10 and lw.max_batching_seconds < 1:
            yield "[lambda_worker] a batch_size above 10 needs max_batching_seconds"
        if not 0 <= lw.max_batching_seconds <= 300:
            yield "[lambda_worker] max_batching_seconds must be between 0 and 300"
        if lw.max_concurrency is not None and not 2 <= lw.max_concurrency <= 1000:
            yield "[lambda_worker] max_concurrency must be between 2 and 1000"
        if lw.reserved_concurrency is not None:
            if lw.reserved_concurrency < 1:
                yield "[lambda_worker] reserved_concurrency must be at least 1 (or unset)"
            elif lw.max_concurrency is not None and lw.max_concurrency > lw.reserved_concurrency:
                yield "[lambda_worker] max_concurrency is above reserved_concurrency"
        for key in ("workers", "part_threads"):
            value = getattr(lw, key)
            if value is not None and not 1 <= value <= 1024:
                yield f"[lambda_worker] {key} must be between 1 and 1024"

    sd = s.sender
    if sd.schedule is not None and not re.match(r"^(rate|cron)\(.+\)$", sd.schedule):
        yield "[sender] schedule must be rate(...) or cron(...)"
    if not 128 <= sd.memory_mb <= 10_240:
        yield "[sender] memory_mb must be between 128 and 10240"
    if not 60 <= sd.timeout_seconds <= 900:
        yield "[sender] timeout_seconds must be between 60 and 900"
    if not 0 <= sd.time_margin_seconds < sd.timeout_seconds:
        yield "[sender] time_margin_seconds must be below timeout_seconds"

    tr = s.trigger
    if tr.bucket is not None:
        if tr.bucket not in s.buckets("source"):
            yield f"[trigger] bucket {tr.bucket!r} is not the source bucket of any pair"
        if not s.in_account("source"):
            yield "[trigger] needs the source side in this account (credentials_side = destination)"

    m = s.monitoring
    for email in m.emails:
        if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
            yield f"[monitoring] {email!r} is not an e-mail address"
    if not 0 < m.error_rate_percent <= 100:
        yield "[monitoring] error_rate_percent must be above 0 and at most 100"
    if not 10 <= m.stall_minutes <= 1440 or m.stall_minutes % 5:
        yield "[monitoring] stall_minutes must be a multiple of 5 between 10 and 1440"


def _filter_problems(f: Filters) -> typing.Iterator[str]:
    for i, rule in enumerate(f.filter):
        if rule != "!" and rule[:2] not in ("+ ", "- "):
            yield (
                f"[filters] filter[{i}] {rule!r} is not a rule: write '+ pattern', "
                "'- pattern' (a space after the sign) or '!'"
            )
    for key in ("min_size", "max_size"):
        value = getattr(f, key)
        if value is not None and not _FILTER_SIZE_RE.match(value):
            yield f"[filters] {key} {value!r} is not a size such as 10M (rclone's units)"
    for key in ("min_age", "max_age"):
        value = getattr(f, key)
        if value is not None and not _FILTER_AGE_RE.match(value):
            yield f"[filters] {key} {value!r} is not a duration such as 7d, nor a date"


def _ec2_problems(e: Ec2Workers) -> typing.Iterator[str]:
    if not e.instance_types:
        yield "[ec2] instance_types must name at least one type"
    elif not e.arm64 and any(_GRAVITON_RE.match(t.split(".")[0]) for t in e.instance_types):
        yield "[ec2] instance_types mix Graviton (arm64) and x86_64 types"
    for t in e.instance_types:
        if not re.match(r"^[a-z0-9-]+\.[a-z0-9]+$", t):
            yield f"[ec2] {t!r} is not an instance type"
    if not 0 <= e.min_capacity <= e.max_capacity or e.max_capacity < 1:
        yield "[ec2] need 0 <= min_capacity <= max_capacity and max_capacity >= 1"
    if not e.scale_out_steps:
        yield "[ec2] scale_out_steps must hold at least one [messages, instances] step"
    thresholds = [step[0] for step in e.scale_out_steps]
    if thresholds != sorted(set(thresholds)) or any(t < 1 for t in thresholds):
        yield "[ec2] scale_out_steps thresholds must be positive and increasing"
    if any(step[1] < 1 for step in e.scale_out_steps):
        yield "[ec2] scale_out_steps must add at least one instance each"
    for key in ("fallback_after_minutes", "scale_out_minutes", "idle_minutes", "warmup_minutes"):
        if not 1 <= getattr(e, key) <= 1440:
            yield f"[ec2] {key} must be between 1 and 1440"
    if not 8 <= e.volume_gib <= 16_384:
        yield "[ec2] volume_gib must be between 8 and 16384"


# -- reading the file -------------------------------------------------------------------------


def load_settings(path: Path) -> DeploySettings:
    """Read and check a settings file.

    Raises:
        SettingsError: The file is missing, is not TOML, or its settings cannot work.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(
            f"settings file {path} does not exist (copy settings.example.toml to start)"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from None
    return settings_from_dict(raw, where=str(path))


def settings_from_dict(raw: dict[str, Any], *, where: str = "settings") -> DeploySettings:
    """Check a parsed settings table (as TOML gives it) and build the settings.

    Raises:
        SettingsError: A key is unknown, a value has the wrong type, or the settings cannot
            work together.
    """
    problems: list[str] = []
    settings = _build(DeploySettings, raw, where, problems)
    if problems:
        raise SettingsError(
            "the deployment settings cannot be used:\n" + "\n".join(f"- {p}" for p in problems)
        )
    assert settings is not None
    return settings.check()


def _build(cls: type[T], raw: object, where: str, problems: list[str]) -> T | None:
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a table")
        return None
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        problems.append(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    values: dict[str, Any] = {}
    for name in known & set(raw):
        ok, value = _convert(hints[name], raw[name], f"{where}: {name}", problems)
        if ok:
            values[name] = value
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in raw]
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
        return None
    return cls(**values)


def _convert(tp: Any, value: Any, where: str, problems: list[str]) -> tuple[bool, Any]:
    """Check `value` against the annotation `tp`; returns (ok, converted value)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in args if a is not type(None))
        if value == "":  # an empty string means "not set", e.g. endpoint_url = ""
            return True, None
        return _convert(inner, value, where, problems)
    if tp is bool:
        if isinstance(value, bool):
            return True, value
        problems.append(f"{where} must be true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        problems.append(f"{where} must be a whole number, got {value!r}")
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        problems.append(f"{where} must be a number, got {value!r}")
    elif tp is str:
        if isinstance(value, str):
            return True, value
        problems.append(f"{where} must be a string, got {value!r}")
    elif origin is tuple:
        if not isinstance(value, list):
            problems.append(f"{where} must be an array")
            return False, None
        fixed = not (len(args) == 2 and args[1] is Ellipsis)
        if fixed and len(value) != len(args):
            problems.append(f"{where} must be an array of {len(args)} values")
            return False, None
        out = []
        for i, item in enumerate(value):
            ok, converted = _convert(args[i] if fixed else args[0], item, f"{where}[{i}]", problems)
            if not ok:
                return False, None
            out.append(converted)
        return True, tuple(out)
    elif dataclasses.is_dataclass(tp):
        built = _build(tp, value, where, problems)
        return built is not None, built
    else:  # pragma: no cover - an annotation this loader does not know
        raise TypeError(f"unsupported settings type {tp!r}")
    return False, None


__all__ = [
    "DeploySettings",
    "Ec2Workers",
    "LambdaWorker",
    "Monitoring",
    "Network",
    "Filters",
    "Pair",
    "Parameters",
    "Queue",
    "Sender",
    "SettingsError",
    "Side",
    "Table",
    "Transfer",
    "Trigger",
    "load_settings",
    "parse_size",
    "settings_from_dict",
]
