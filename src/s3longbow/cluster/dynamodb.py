"""The DynamoDB job table: one item per job, conditional state changes, the parts of open
uploads as items of their own, and the queries `status --cluster` needs.

Layout (table on-demand, keys `pk` (S) and `sk` (S)):

- a job item: `pk` = the job id (a hash of both buckets and keys), `sk` = "job";
- a part item: same `pk`, `sk` = "part#<12 hex of the upload id>#<5-digit part number>", so
  an object's 10,000 parts are 10,000 small items (a single item may not exceed 400 KB) that
  one Query reads back in order; they expire through TTL (`expires_at`) 30 days after they
  were written, so finished uploads need no deletes;
- removal and poison-message records are job items with `kind` "remove" or "message".

The GSI `by-state` is keyed by `gsi_state` = "<state>#<shard>" (8 shards, so no single
partition takes every write of one state) and `updated_at`.

Every attribute name in every expression goes through ExpressionAttributeNames: `size`,
`state`, `name` and hundreds more are reserved words.

Every write of a job item adds 1 to `rev`; a claim is a compare-and-set on the `rev` it read,
and the other writes are conditional on the state and the claim's owner, so a stale worker or a
duplicate delivery can never move a job backwards.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from s3longbow.errors import FatalError, TransientError
from s3longbow.model import Job, JobResult, JobState, ObjectInfo

from .aws import error_code, translate, translated
from .messages import JobSpec, source_id

log = logging.getLogger(__name__)

JOB_SK = "job"
PART_PREFIX = "part#"
STATE_INDEX = "by-state"
STATE_SHARDS = 8
PART_TTL_SECONDS = 30 * 24 * 3600
BATCH_GET = 100  # BatchGetItem's limit
_CLAIM_TRIES = 4
_INDEX_ATTRIBUTES = [
    "kind",
    "state",
    "size",
    "reason",
    "attempts",
    "src_bucket",
    "src_key",
    "dst_bucket",
    "dst_key",
]
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


class ItemKind(enum.StrEnum):
    """What a job item records."""

    COPY = "copy"
    REMOVE = "remove"  # an ObjectRemoved event
    MESSAGE = "message"  # a message that could not be used


class ClaimOutcome(enum.StrEnum):
    """What a worker does with a job it received."""

    RUN = "run"
    DONE_ALREADY = "done-already"  # a duplicate delivery of a finished job
    BUSY = "busy"  # another delivery is running it now


@dataclass(frozen=True, slots=True)
class JobItem:
    """A job item as read back (fields missing from an index query keep their defaults)."""

    id: str
    kind: str = ItemKind.COPY
    state: JobState = JobState.PENDING
    src_bucket: str = ""
    src_key: str = ""
    dst_bucket: str = ""
    dst_key: str = ""
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    last_modified: float | None = None
    source_id: str = ""
    attempts: int = 0
    restarts: int = 0
    starts: int = 0
    owner: str | None = None
    worker: str | None = None
    message_id: str | None = None
    lease_until: float | None = None
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    upload_id: str | None = None
    part_size: int | None = None
    upload_etag: str | None = None
    reason: str | None = None
    bytes_sent: int = 0
    bytes_reused: int = 0
    verified: bool | None = None
    verify: str | None = None
    updated_at: float | None = None
    rev: int = 0

    @classmethod
    def from_item(cls, raw: dict[str, Any]) -> JobItem:
        data = {k: _plain(_DESERIALIZER.deserialize(v)) for k, v in raw.items()}
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        fields["id"] = data["pk"]
        fields["state"] = JobState(data.get("state", JobState.PENDING))
        return cls(**fields)


def decide_claim(item: JobItem | None, spec: JobSpec, message_id: str, now: float) -> ClaimOutcome:
    """Whether a delivery of `spec` (in message `message_id`) may run the job now.

    A new, pending or failed job runs. A job in progress runs only when this is a new
    delivery of the same message (its worker died) or its lease has run out. A done or
    skipped job runs again only for a different source version that is not older than the
    one already copied; a delivery without an ETag (its source was gone when the worker
    asked) is that version unless its size or version id say otherwise.
    """
    if item is None or item.state in (JobState.PENDING, JobState.FAILED):
        return ClaimOutcome.RUN
    if item.state is JobState.IN_PROGRESS:
        if item.message_id == message_id or (item.lease_until or 0) <= now:
            return ClaimOutcome.RUN
        return ClaimOutcome.BUSY
    if item.source_id == spec.source_id or _not_older(item, spec) or _unnamed_same(item, spec):
        return ClaimOutcome.DONE_ALREADY
    return ClaimOutcome.RUN


def should_queue(
    item: JobItem | None,
    spec: JobSpec,
    *,
    now: float,
    listed_at: float,
    stale_before: float,
    requeue: bool = False,
    retry_failed: bool = False,
) -> bool:
    """Whether the sender must queue `spec`: the rule `JobTable.queue_job` writes atomically.

    A job is already queued when it is pending with the same source version (and its message
    cannot have expired), or running under a live lease; it was just copied when it is done
    with the same version after the destination was listed. A failed job is queued again only
    for another source version or with `retry_failed`.
    """
    if item is None:
        return True
    same = item.source_id == spec.source_id
    if item.state is JobState.IN_PROGRESS:
        return (item.lease_until or 0) < now
    if item.state is JobState.PENDING:
        return requeue or not same or (item.queued_at or 0) < stale_before
    if item.state is JobState.FAILED:
        return retry_failed or not same
    return not same or (item.finished_at or 0) < listed_at


def _unnamed_same(item: JobItem, spec: JobSpec) -> bool:
    # Without an ETag a delivery cannot show that it is a newer version: a duplicate of a
    # finished job whose source was deleted since must not turn it into a failure.
    return (
        spec.etag is None
        and spec.size in (None, item.size)
        and spec.version_id in (None, item.version_id)
    )


def _not_older(item: JobItem, spec: JobSpec) -> bool:
    return (
        item.last_modified is not None
        and spec.last_modified is not None
        and item.last_modified >= spec.last_modified
    )


def shard_of(item_id: str) -> int:
    return zlib.crc32(item_id.encode()) % STATE_SHARDS


def state_key(state: JobState | str, item_id: str) -> str:
    return f"{JobState(state).value}#{shard_of(item_id)}"


def part_sort_key(upload_id: str, number: int) -> str:
    return f"{part_prefix(upload_id)}{number:05d}"


def part_prefix(upload_id: str) -> str:
    # A hash keeps the sort key short whatever the store's upload ids look like.
    return f"{PART_PREFIX}{hashlib.sha256(upload_id.encode()).hexdigest()[:12]}#"


class _Expression:
    """Builds an update expression and its names and values; every name is aliased."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._sets: list[str] = []
        self._adds: list[str] = []
        self._removes: list[str] = []

    def n(self, attribute: str) -> str:
        alias = "#" + attribute
        self.names[alias] = attribute
        return alias

    def v(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = _serialize(value)
        return placeholder

    def set(self, attribute: str, value: Any) -> _Expression:
        if value is None:
            return self.remove(attribute)
        self._sets.append(f"{self.n(attribute)} = {self.v(value)}")
        return self

    def add(self, attribute: str, amount: int) -> _Expression:
        self._adds.append(f"{self.n(attribute)} {self.v(amount)}")
        return self

    def remove(self, attribute: str) -> _Expression:
        self._removes.append(self.n(attribute))
        return self

    def update(self) -> str:
        parts = []
        if self._sets:
            parts.append("SET " + ", ".join(self._sets))
        if self._adds:
            parts.append("ADD " + ", ".join(self._adds))
        if self._removes:
            parts.append("REMOVE " + ", ".join(self._removes))
        return " ".join(parts)


class JobTable:
    """The job table of one deployment.

    Args:
        client: A boto3 DynamoDB client.
        name: The table name.
        clock: Seconds since the epoch (replaced in tests).
    """

    def __init__(self, client: Any, name: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.name = name
        self.clock = clock

    # -- the table itself -------------------------------------------------------------------

    def check(self) -> None:
        """Fail fast when the table does not exist or has another key schema."""
        with translated(f"reading job table {self.name!r}", fatal=True):
            table = self.client.describe_table(TableName=self.name)["Table"]
        keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", ())}
        if keys != {"pk": "HASH", "sk": "RANGE"}:
            raise FatalError(
                f"table {self.name!r} is not a Longbow job table (keys {keys})",
                hint="point [cluster] table at a table made by `longbow cluster-init`",
            )

    def create(self, *, wait_seconds: float = 300) -> bool:
        """Create the table (on-demand, with its state index and TTL) unless it exists.

        Returns:
            True when it was created now.
        """
        created = False
        try:
            self.client.describe_table(TableName=self.name)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise translate(exc, f"reading table {self.name!r}", fatal=True) from None
            with translated(f"creating table {self.name!r}", fatal=True):
                self.client.create_table(
                    TableName=self.name,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                        {"AttributeName": "gsi_state", "AttributeType": "S"},
                        {"AttributeName": "updated_at", "AttributeType": "N"},
                    ],
                    KeySchema=[
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    GlobalSecondaryIndexes=[
                        {
                            "IndexName": STATE_INDEX,
                            "KeySchema": [
                                {"AttributeName": "gsi_state", "KeyType": "HASH"},
                                {"AttributeName": "updated_at", "KeyType": "RANGE"},
                            ],
                            "Projection": {
                                "ProjectionType": "INCLUDE",
                                "NonKeyAttributes": _INDEX_ATTRIBUTES,
                            },
                        }
                    ],
                )
            created = True
        except BotoCoreError as exc:
            raise translate(exc, f"reading table {self.name!r}", fatal=True) from None
        deadline = time.monotonic() + wait_seconds
        while True:
            with translated(f"waiting for table {self.name!r}", fatal=True):
                status = self.client.describe_table(TableName=self.name)["Table"]["TableStatus"]
            if status == "ACTIVE":
                break
            if time.monotonic() > deadline:
                raise FatalError(f"table {self.name!r} is still {status} after {wait_seconds}s")
            time.sleep(2)
        try:
            self.client.update_time_to_live(
                TableName=self.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
            )
        except ClientError as exc:
            # Enabling TTL twice is refused; that is the idempotent case.
            if "already enabled" not in str(exc).lower():
                raise translate(exc, f"enabling TTL on {self.name!r}", fatal=True) from None
        except BotoCoreError as exc:
            raise translate(exc, f"enabling TTL on {self.name!r}", fatal=True) from None
        self.check()
        return created

    # -- reads ------------------------------------------------------------------------------

    def get(self, item_id: str) -> JobItem | None:
        """One job item, read consistently."""
        with translated(f"reading job {item_id}"):
            resp = self.client.get_item(
                TableName=self.name, Key=_key(item_id, JOB_SK), ConsistentRead=True
            )
        return JobItem.from_item(resp["Item"]) if "Item" in resp else None

    def get_many(self, ids: Iterable[str]) -> dict[str, JobItem]:
        """Job items by id (BatchGetItem, 100 a call, unprocessed keys asked again)."""
        out: dict[str, JobItem] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH_GET):
            keys = [_key(i, JOB_SK) for i in unique[start : start + BATCH_GET]]
            request: dict[str, Any] = {self.name: {"Keys": keys, "ConsistentRead": True}}
            for attempt in range(10):
                with translated(f"reading jobs from {self.name!r}"):
                    resp = self.client.batch_get_item(RequestItems=request)
                for raw in resp.get("Responses", {}).get(self.name, ()):
                    item = JobItem.from_item(raw)
                    out[item.id] = item
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(2.0, 0.05 * 2**attempt))
            else:
                raise TransientError(f"DynamoDB left keys of {self.name!r} unprocessed")
        return out

    # -- the sender -------------------------------------------------------------------------

    def queue_job(
        self,
        spec: JobSpec,
        *,
        why: str,
        send_id: str,
        listed_at: float,
        stale_before: float,
        requeue: bool = False,
        retry_failed: bool = False,
    ) -> bool:
        """Record a job as pending before its message is sent, unless it is already queued.

        Written (True) when the job is new; in progress with an expired lease; pending with
        another source version, or since before `stale_before` (its message has expired), or
        `requeue`; done or skipped with another source version or before `listed_at` (the
        destination changed since); failed with another source version or `retry_failed`.
        Otherwise False: the job is queued, running, or failed for good.
        """
        now = self.clock()
        e = _Expression()
        e.set("kind", ItemKind.COPY.value).set("state", JobState.PENDING.value)
        e.set("gsi_state", state_key(JobState.PENDING, spec.id)).set("updated_at", _t(now))
        e.set("queued_at", _t(now)).set("send_id", send_id).set("reason", why)
        e.set("origin", spec.origin).set("attempts", 0)
        _set_identity(e, spec)
        e.remove("owner").remove("lease_until").remove("message_id").add("rev", 1)
        state, src, pk = e.n("state"), e.n("source_id"), e.n("pk")
        same = e.v(spec.source_id)
        done_or_skipped = f"{state} IN ({e.v('done')}, {e.v('skipped')})"
        # Every placeholder made must be used: DynamoDB refuses unused values.
        if requeue:
            pending_ok = f"attribute_exists({pk})"
        else:
            pending_ok = f"{src} <> {same} OR {e.n('queued_at')} < {e.v(_t(stale_before))}"
        failed_ok = f"attribute_exists({pk})" if retry_failed else f"{src} <> {same}"
        condition = (
            f"attribute_not_exists({pk})"
            f" OR ({state} = {e.v('in_progress')} AND {e.n('lease_until')} < {e.v(_t(now))})"
            f" OR ({state} = {e.v('pending')} AND ({pending_ok}))"
            f" OR ({done_or_skipped} AND ({src} <> {same}"
            f" OR {e.n('finished_at')} < {e.v(_t(listed_at))}))"
            f" OR ({state} = {e.v('failed')} AND ({failed_ok}))"
        )
        return self._update(spec.id, e, condition, f"queueing job {spec.src_key!r}")

    def unqueue(self, spec: JobSpec, *, send_id: str, reason: str) -> bool:
        """A job recorded as pending whose message could not be sent: mark it failed."""
        now = self.clock()
        e = _Expression()
        e.set("state", JobState.FAILED.value).set("gsi_state", state_key(JobState.FAILED, spec.id))
        e.set("updated_at", _t(now)).set("finished_at", _t(now)).set("reason", reason)
        e.add("rev", 1)
        condition = f"{e.n('state')} = {e.v('pending')} AND {e.n('send_id')} = {e.v(send_id)}"
        return self._update(spec.id, e, condition, f"unqueueing job {spec.src_key!r}")

    # -- the worker -------------------------------------------------------------------------

    def claim(
        self,
        spec: JobSpec,
        item: JobItem | None,
        *,
        message_id: str,
        owner: str,
        worker: str,
        lease_seconds: float,
    ) -> tuple[ClaimOutcome, JobItem | None]:
        """Take a job for this delivery when `decide_claim` allows it (compare-and-set on the
        item as read; a lost race reads the item again and decides again).

        Returns:
            The outcome, and the job item as it is now (as written when RUN).
        """
        for _ in range(_CLAIM_TRIES):
            now = self.clock()
            outcome = decide_claim(item, spec, message_id, now)
            if outcome is not ClaimOutcome.RUN:
                return outcome, item
            e = _Expression()
            identity = _newest(item, spec)
            e.set("kind", ItemKind.COPY.value).set("state", JobState.IN_PROGRESS.value)
            e.set("gsi_state", state_key(JobState.IN_PROGRESS, spec.id))
            e.set("updated_at", _t(now)).set("started_at", _t(now))
            e.set("owner", owner).set("worker", worker).set("message_id", message_id)
            e.set("lease_until", _t(now + lease_seconds))
            _set_identity(e, identity)
            if item is None:
                e.set("queued_at", _t(now)).set("origin", spec.origin).set("attempts", 0)
            elif item.state in (JobState.DONE, JobState.SKIPPED):
                e.set("attempts", 0)  # a new source version starts afresh
            e.add("starts", 1).add("rev", 1)
            if item is None:
                condition = f"attribute_not_exists({e.n('pk')})"
            elif item.rev:
                condition = f"{e.n('rev')} = {e.v(item.rev)}"
            else:
                condition = f"attribute_not_exists({e.n('rev')})"
            try:
                resp = _conditional(
                    f"claiming job {spec.src_key!r}",
                    self.client.update_item,
                    TableName=self.name,
                    Key=_key(spec.id, JOB_SK),
                    UpdateExpression=e.update(),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=e.names,
                    ExpressionAttributeValues=e.values,
                    ReturnValues="ALL_NEW",
                )
            except _ConditionFailed:
                item = self.get(spec.id)
                continue
            return ClaimOutcome.RUN, JobItem.from_item(resp["Attributes"])
        return ClaimOutcome.BUSY, item

    def extend_lease(self, job: Job, until: float) -> bool:
        e = _Expression()
        e.set("lease_until", _t(until)).set("updated_at", _t(self.clock())).add("rev", 1)
        return self._update(
            str(job.id), e, _owned(e, job), f"extending the lease of {job.src_key!r}"
        )

    def finish(
        self, job: Job, state: JobState, reason: str | None, result: JobResult | None
    ) -> bool:
        """Record a final state (compare-and-set on the claim's owner)."""
        now = self.clock()
        e = _Expression()
        e.set("state", state.value).set("gsi_state", state_key(state, str(job.id)))
        e.set("updated_at", _t(now)).set("finished_at", _t(now)).set("reason", reason)
        if result is not None:
            e.add("bytes_sent", result.bytes_sent).set("bytes_reused", result.bytes_reused)
            e.set("verified", result.verified).set("verify", _verify_text(result))
            e.set("dst_etag", result.dst_etag)
        if state is not JobState.DONE:
            e.add("attempts", 1)
        else:
            e.remove("upload_id")
        e.remove("owner").remove("lease_until").add("rev", 1)
        return self._update(str(job.id), e, _owned(e, job), f"finishing job {job.src_key!r}")

    def release(self, job: Job, reason: str, *, counted: bool, failed: bool) -> bool:
        """Give a job back: pending again, or failed when its last delivery failed."""
        now = self.clock()
        state = JobState.FAILED if failed else JobState.PENDING
        e = _Expression()
        e.set("state", state.value).set("gsi_state", state_key(state, str(job.id)))
        e.set("updated_at", _t(now)).set("reason", reason)
        if failed:
            e.set("finished_at", _t(now))
        if counted:
            e.add("attempts", 1)
        e.remove("owner").remove("lease_until").add("rev", 1)
        return self._update(str(job.id), e, _owned(e, job), f"releasing job {job.src_key!r}")

    def set_upload(
        self, job: Job, upload_id: str | None, part_size: int | None, upload_etag: str | None
    ) -> bool:
        e = _Expression()
        e.set("upload_id", upload_id).set("part_size", part_size).set("upload_etag", upload_etag)
        e.set("updated_at", _t(self.clock())).add("rev", 1)
        return self._update(
            str(job.id), e, _owned(e, job), f"recording the upload of {job.dst_key!r}"
        )

    def update_source(self, job: Job, info: ObjectInfo) -> bool:
        e = _Expression()
        e.set("size", info.size).set("etag", info.etag).set("version_id", info.version_id)
        e.set("last_modified", _t(info.last_modified) if info.last_modified else None)
        e.set("source_id", source_id(info.size, info.etag, info.version_id))
        e.remove("upload_id").remove("part_size").remove("upload_etag")
        e.set("updated_at", _t(self.clock())).add("restarts", 1).add("rev", 1)
        return self._update(
            str(job.id), e, _owned(e, job), f"re-pinning the source {job.src_key!r}"
        )

    def record_part(self, job: Job, upload_id: str, number: int, size: int, etag: str) -> None:
        """One item per part the destination accepted (no condition: a part is a fact)."""
        now = self.clock()
        item = {
            "pk": str(job.id),
            "sk": part_sort_key(upload_id, number),
            "upload_id": upload_id,
            "number": number,
            "size": size,
            "etag": etag,
            "recorded_at": _t(now),
            "expires_at": int(now + PART_TTL_SECONDS),
        }
        with translated(f"recording part {number} of {job.dst_key!r}"):
            self.client.put_item(
                TableName=self.name, Item={k: _serialize(v) for k, v in item.items()}
            )

    def recorded_parts(self, job: Job, upload_id: str) -> dict[int, tuple[int, str]]:
        """Parts recorded for this upload: number -> (size, etag)."""
        out: dict[int, tuple[int, str]] = {}
        for raw in self._query(
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
            ExpressionAttributeNames={"#pk": "pk", "#sk": "sk"},
            ExpressionAttributeValues={
                ":pk": _serialize(str(job.id)),
                ":prefix": _serialize(part_prefix(upload_id)),
            },
            ConsistentRead=True,
        ):
            data = {k: _plain(_DESERIALIZER.deserialize(v)) for k, v in raw.items()}
            if data.get("upload_id") == upload_id:
                out[int(data["number"])] = (int(data["size"]), str(data["etag"]))
        return out

    def record(
        self, item_id: str, kind: ItemKind, state: JobState, reason: str, **fields: Any
    ) -> None:
        """Write a removal or poison-message record (replacing an earlier one)."""
        now = self.clock()
        item: dict[str, Any] = {
            "pk": item_id,
            "sk": JOB_SK,
            "kind": kind.value,
            "state": state.value,
            "gsi_state": state_key(state, item_id),
            "updated_at": _t(now),
            "finished_at": _t(now),
            "reason": reason,
            "rev": 1,
            **{k: v for k, v in fields.items() if v is not None},
        }
        with translated(f"recording {kind.value} {item_id}"):
            self.client.put_item(
                TableName=self.name, Item={k: _serialize(v) for k, v in item.items()}
            )

    # -- status -----------------------------------------------------------------------------

    def totals(self) -> dict[str, tuple[int, int]]:
        """Items and bytes by state, from the state index: state -> (count, bytes)."""
        out: dict[str, tuple[int, int]] = {}

        def count(state: JobState) -> tuple[str, tuple[int, int]]:
            n = total = 0
            for shard in range(STATE_SHARDS):
                for raw in self._query(
                    IndexName=STATE_INDEX,
                    KeyConditionExpression="#g = :g",
                    ProjectionExpression="#size",
                    ExpressionAttributeNames={"#g": "gsi_state", "#size": "size"},
                    ExpressionAttributeValues={":g": _serialize(f"{state.value}#{shard}")},
                ):
                    n += 1
                    if "size" in raw:
                        total += int(_DESERIALIZER.deserialize(raw["size"]))
            return state.value, (n, total)

        with ThreadPoolExecutor(len(JobState)) as pool:
            out.update(pool.map(count, list(JobState)))
        return out

    def recent_done(self, seconds: float) -> tuple[int, int]:
        """Jobs finished in the last `seconds` and their bytes: the cluster's throughput.

        Reads only the tail of each `done` shard of the state index (sorted by update time).
        """
        since = time.time() - seconds
        n = total = 0
        for shard in range(STATE_SHARDS):
            for raw in self._query(
                IndexName=STATE_INDEX,
                KeyConditionExpression="#g = :g AND #u >= :since",
                ProjectionExpression="#size",
                ExpressionAttributeNames={"#g": "gsi_state", "#u": "updated_at", "#size": "size"},
                ExpressionAttributeValues={
                    ":g": _serialize(f"{JobState.DONE.value}#{shard}"),
                    ":since": _serialize(_t(since)),
                },
            ):
                n += 1
                if "size" in raw:
                    total += int(_DESERIALIZER.deserialize(raw["size"]))
        return n, total

    def failures(self, limit: int = 50) -> list[JobItem]:
        """The most recent failed items (jobs, removals and poison messages)."""
        found: list[JobItem] = []
        for shard in range(STATE_SHARDS):
            for raw in self._query(
                IndexName=STATE_INDEX,
                KeyConditionExpression="#g = :g",
                ExpressionAttributeNames={"#g": "gsi_state"},
                ExpressionAttributeValues={":g": _serialize(f"failed#{shard}")},
                ScanIndexForward=False,
                Limit=limit,
                max_items=limit,
            ):
                found.append(JobItem.from_item(raw))
        found.sort(key=lambda i: i.updated_at or 0, reverse=True)
        return found[:limit]

    # -- plumbing ---------------------------------------------------------------------------

    def _update(self, item_id: str, e: _Expression, condition: str, where: str) -> bool:
        try:
            _conditional(
                where,
                self.client.update_item,
                TableName=self.name,
                Key=_key(item_id, JOB_SK),
                UpdateExpression=e.update(),
                ConditionExpression=condition,
                ExpressionAttributeNames=e.names,
                ExpressionAttributeValues=e.values,
            )
        except _ConditionFailed:
            return False
        return True

    def _query(self, *, max_items: int | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        seen = 0
        start: dict[str, Any] | None = None
        while True:
            if start:
                kwargs["ExclusiveStartKey"] = start
            with translated(f"querying {self.name!r}"):
                page = self.client.query(TableName=self.name, **kwargs)
            for item in page.get("Items", ()):
                yield item
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            start = page.get("LastEvaluatedKey")
            if not start:
                return


class _ConditionFailed(Exception):
    """A condition did not hold: an expected answer, not an error."""


def _conditional(where: str, call: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return call(**kwargs)
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            raise _ConditionFailed from None
        raise translate(exc, where) from None
    except BotoCoreError as exc:
        raise translate(exc, where) from None


def _owned(e: _Expression, job: Job) -> str:
    return (
        f"{e.n('state')} = {e.v(JobState.IN_PROGRESS.value)} "
        f"AND {e.n('owner')} = {e.v(job.lease_owner or '')}"
    )


def _set_identity(e: _Expression, spec: JobSpec) -> None:
    e.set("src_bucket", spec.src_bucket).set("src_key", spec.src_key)
    e.set("dst_bucket", spec.dst_bucket).set("dst_key", spec.dst_key)
    e.set("size", spec.size).set("etag", spec.etag).set("version_id", spec.version_id)
    e.set("last_modified", _t(spec.last_modified) if spec.last_modified else None)
    e.set("source_id", spec.source_id)


def _newest(item: JobItem | None, spec: JobSpec) -> JobSpec:
    """The message's source identity, unless the table pinned a newer one (the source changed
    during an earlier attempt, which re-pinned the job)."""
    if (
        item is not None
        and item.state in (JobState.PENDING, JobState.FAILED, JobState.IN_PROGRESS)
        and item.size is not None
        and item.source_id != spec.source_id
        and item.last_modified is not None
        and spec.last_modified is not None
        and item.last_modified > spec.last_modified
    ):
        return replace(
            spec,
            size=item.size,
            etag=item.etag,
            version_id=item.version_id,
            last_modified=item.last_modified,
        )
    return spec


def _verify_text(result: JobResult) -> str:
    text = result.verify
    if result.notes:
        text += "; " + "; ".join(result.notes)
    return text


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _t(seconds: float) -> Decimal:
    """A time stamp with millisecond precision (DynamoDB numbers are decimals)."""
    return Decimal(f"{seconds:.3f}")


def _serialize(value: Any) -> Any:
    if isinstance(value, float):
        value = Decimal(repr(value))
    return _SERIALIZER.serialize(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


__all__ = [
    "JOB_SK",
    "STATE_INDEX",
    "STATE_SHARDS",
    "ClaimOutcome",
    "ItemKind",
    "JobItem",
    "JobTable",
    "decide_claim",
    "part_sort_key",
    "state_key",
]
