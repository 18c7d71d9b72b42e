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

Beside this module: `provision` creates and checks the table, `expressions` builds its requests,
and `jobitems` decodes its items and holds the pure rules that decide on them (`JobItem`,
`ClaimOutcome`, `ItemKind`, `decide_claim` and `should_queue` are part of this module's
interface too).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from s3longbow.errors import TransientError
from s3longbow.model import Job, JobResult, JobState, ObjectInfo, PartInfo

from .aws import translated
from .expressions import (
    ConditionFailed,
    Expression,
    conditional,
    item_key,
    plain_item,
    serialize,
    timestamp,
)
from .jobitems import ClaimOutcome, ItemKind, JobItem, decide_claim, newest, should_queue
from .messages import JobSpec, object_of, source_id
from .provision import STATE_INDEX, check_table, create_table
from .status import STATE_SHARDS, StatusReads

log = logging.getLogger(__name__)

JOB_SK = "job"
PART_PREFIX = "part#"
PART_TTL_SECONDS = 30 * 24 * 3600
BATCH_GET = 100  # BatchGetItem's limit
# What a fanned-out object's item holds of one round of its ranges (forgotten when queued).
FANOUT_ATTRIBUTES = (
    "ranges_done",
    "upload_id",
    "part_size",
    "upload_etag",
    "creator",
    "creator_until",
    "completer",
    "completer_until",
)
_CLAIM_TRIES = 4
_PERSIST_TRIES = 5
T = TypeVar("T")


def shard_of(item_id: str) -> int:
    return zlib.crc32(item_id.encode()) % STATE_SHARDS


def state_key(state: JobState | str, item_id: str) -> str:
    return f"{JobState(state).value}#{shard_of(item_id)}"


def part_sort_key(upload_id: str, number: int) -> str:
    return f"{part_prefix(upload_id)}{number:05d}"


def part_prefix(upload_id: str) -> str:
    # A hash keeps the sort key short whatever the store's upload ids look like.
    return f"{PART_PREFIX}{hashlib.sha256(upload_id.encode()).hexdigest()[:12]}#"


class JobTable(StatusReads):
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
        check_table(self.client, self.name)

    def create(self, *, wait_seconds: float = 300) -> bool:
        """Create the table unless it exists (see `provision.create_table`).

        Returns:
            True when it was created now.
        """
        return create_table(self.client, self.name, wait_seconds=wait_seconds)

    # -- reads ------------------------------------------------------------------------------

    def get(self, item_id: str) -> JobItem | None:
        """One job item, read consistently."""
        with translated(f"reading job {item_id}"):
            resp = self.client.get_item(
                TableName=self.name, Key=item_key(item_id, JOB_SK), ConsistentRead=True
            )
        return JobItem.from_item(resp["Item"]) if "Item" in resp else None

    def get_many(self, ids: Iterable[str]) -> dict[str, JobItem]:
        """Job items by id (BatchGetItem, 100 a call, unprocessed keys asked again)."""
        out: dict[str, JobItem] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH_GET):
            keys = [item_key(i, JOB_SK) for i in unique[start : start + BATCH_GET]]
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
        ranges: int | None = None,
    ) -> bool:
        """Record a job as pending before its message is sent, unless it is already queued.

        `ranges`: the object is fanned out into that many ranges of its parts (its earlier
        upload, finished ranges and claims are forgotten; see `cluster.fanout`).

        Written (True) when the job is new; in progress with an expired lease; pending with
        another source version, or since before `stale_before` (its message has expired), or
        `requeue`; done, skipped or archived with another source version or before `listed_at`
        (the destination changed since); failed with another source version or
        `retry_failed`.
        Otherwise False: the job is queued, running, or failed for good.
        """
        now = self.clock()
        e = Expression()
        e.set("kind", ItemKind.COPY.value).set("state", JobState.PENDING.value)
        e.set("gsi_state", state_key(JobState.PENDING, spec.id)).set("updated_at", timestamp(now))
        e.set("queued_at", timestamp(now)).set("send_id", send_id).set("reason", why)
        e.set("origin", spec.origin).set("attempts", 0)
        _set_identity(e, spec)
        e.remove("owner").remove("lease_until").remove("message_id").add("rev", 1)
        e.set("ranges", ranges)
        if ranges is not None:
            for name in FANOUT_ATTRIBUTES:
                e.remove(name)
        state, src, pk = e.n("state"), e.n("source_id"), e.n("pk")
        same = e.v(spec.source_id)
        # An archived job is finished like these: queued again by a later send (after the
        # destination was listed), when its restore may have finished.
        done_or_skipped = f"{state} IN ({e.v('done')}, {e.v('skipped')}, {e.v('archived')})"
        # Every placeholder made must be used: DynamoDB refuses unused values.
        if requeue:
            pending_ok = f"attribute_exists({pk})"
        else:
            pending_ok = f"{src} <> {same} OR {e.n('queued_at')} < {e.v(timestamp(stale_before))}"
        failed_ok = f"attribute_exists({pk})" if retry_failed else f"{src} <> {same}"
        condition = (
            f"attribute_not_exists({pk})"
            f" OR ({state} = {e.v('in_progress')} AND {e.n('lease_until')} < {e.v(timestamp(now))})"
            f" OR ({state} = {e.v('pending')} AND ({pending_ok}))"
            f" OR ({done_or_skipped} AND ({src} <> {same}"
            f" OR {e.n('finished_at')} < {e.v(timestamp(listed_at))}))"
            f" OR ({state} = {e.v('failed')} AND ({failed_ok}))"
        )
        return self._update(spec.id, e, condition, f"queueing job {spec.src_key!r}")

    def unqueue(self, spec: JobSpec, *, send_id: str, reason: str) -> bool:
        """A job recorded as pending whose message could not be sent: mark it failed."""
        now = self.clock()
        e = Expression()
        e.set("state", JobState.FAILED.value)
        e.set("gsi_state", state_key(JobState.FAILED, spec.object_id))
        e.set("updated_at", timestamp(now)).set("finished_at", timestamp(now)).set("reason", reason)
        e.add("rev", 1)
        condition = f"{e.n('state')} = {e.v('pending')} AND {e.n('send_id')} = {e.v(send_id)}"
        # A range's message names the object's job (the object item was queued).
        return self._update(spec.object_id, e, condition, f"unqueueing job {spec.src_key!r}")

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
            e = Expression()
            identity = newest(item, spec)
            kind = ItemKind.COPY if spec.part_range is None else ItemKind.RANGE
            e.set("kind", kind.value)
            _set_state(e, JobState.IN_PROGRESS, spec.id)
            if spec.part_range is not None:
                e.set("range_index", spec.part_range.index)
                e.set("range_count", spec.part_range.count)
            e.set("updated_at", timestamp(now)).set("started_at", timestamp(now))
            e.set("owner", owner).set("worker", worker).set("message_id", message_id)
            e.set("lease_until", timestamp(now + lease_seconds))
            _set_identity(e, identity)
            if item is None:
                e.set("queued_at", timestamp(now)).set("origin", spec.origin).set("attempts", 0)
            elif item.state in (JobState.DONE, JobState.SKIPPED, JobState.ARCHIVED):
                e.set("attempts", 0)  # a new source version (or a restore) starts afresh
            e.add("starts", 1).add("rev", 1)
            if item is None:
                condition = f"attribute_not_exists({e.n('pk')})"
            elif item.rev:
                condition = f"{e.n('rev')} = {e.v(item.rev)}"
            else:
                condition = f"attribute_not_exists({e.n('rev')})"
            try:
                resp = conditional(
                    f"claiming job {spec.src_key!r}",
                    self.client.update_item,
                    TableName=self.name,
                    Key=item_key(spec.id, JOB_SK),
                    UpdateExpression=e.update(),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=e.names,
                    ExpressionAttributeValues=e.values,
                    ReturnValues="ALL_NEW",
                )
            except ConditionFailed:
                item = self.get(spec.id)
                continue
            return ClaimOutcome.RUN, JobItem.from_item(resp["Attributes"])
        return ClaimOutcome.BUSY, item

    def extend_lease(self, job: Job, until: float) -> bool:
        e = Expression()
        e.set("lease_until", timestamp(until)).set("updated_at", timestamp(self.clock()))
        e.add("rev", 1)
        return self._update(job.id, e, _owned(e, job), f"extending the lease of {job.src_key!r}")

    def finish(
        self, job: Job, state: JobState, reason: str | None, result: JobResult | None
    ) -> bool:
        """Record a final state (compare-and-set on the claim's owner)."""
        now = self.clock()
        e = Expression()
        _set_state(e, state, job.id)
        e.set("updated_at", timestamp(now)).set("finished_at", timestamp(now)).set("reason", reason)
        if result is not None:
            e.add("bytes_sent", result.bytes_sent).set("bytes_reused", result.bytes_reused)
            e.set("verified", result.verified).set("verify", _verify_text(result))
            e.set("dst_etag", result.dst_etag)
        if state is JobState.DONE:
            e.remove("upload_id").remove("restore_requested")  # no restore waited for now
        else:
            if job.restore_requested is not None:
                e.set("restore_requested", timestamp(job.restore_requested))
            if state is not JobState.ARCHIVED:  # waiting for a restore is no failed attempt
                e.add("attempts", 1)
        e.remove("owner").remove("lease_until").add("rev", 1)
        return self._update(job.id, e, _owned(e, job), f"finishing job {job.src_key!r}")

    def release(self, job: Job, reason: str, *, counted: bool, failed: bool) -> bool:
        """Give a job back: pending again, or failed when its last delivery failed."""
        now = self.clock()
        state = JobState.FAILED if failed else JobState.PENDING
        e = Expression()
        _set_state(e, state, job.id)
        e.set("updated_at", timestamp(now)).set("reason", reason)
        if failed:
            e.set("finished_at", timestamp(now))
        if counted:
            e.add("attempts", 1)
        e.remove("owner").remove("lease_until").add("rev", 1)
        return self._update(job.id, e, _owned(e, job), f"releasing job {job.src_key!r}")

    def set_upload(
        self, job: Job, upload_id: str | None, part_size: int | None, upload_etag: str | None
    ) -> bool:
        e = Expression()
        e.set("upload_id", upload_id).set("part_size", part_size).set("upload_etag", upload_etag)
        e.set("updated_at", timestamp(self.clock())).add("rev", 1)
        return self._update(job.id, e, _owned(e, job), f"recording the upload of {job.dst_key!r}")

    def update_source(self, job: Job, info: ObjectInfo) -> bool:
        e = Expression()
        e.set("size", info.size).set("etag", info.etag).set("version_id", info.version_id)
        e.set("last_modified", timestamp(info.last_modified) if info.last_modified else None)
        e.set("source_id", source_id(info.size, info.etag, info.version_id))
        e.remove("upload_id").remove("part_size").remove("upload_etag")
        e.set("updated_at", timestamp(self.clock())).add("restarts", 1).add("rev", 1)
        return self._update(job.id, e, _owned(e, job), f"re-pinning the source {job.src_key!r}")

    def record_part(
        self,
        job: Job,
        upload_id: str,
        number: int,
        size: int,
        etag: str,
        *,
        checksum: str | None = None,
    ) -> None:
        """One item per part the destination accepted (no condition: a part is a fact), with
        its checksum where the upload has an algorithm (a fanned-out object is completed
        from these records)."""
        now = self.clock()
        item = {
            "pk": job.id,
            "sk": part_sort_key(upload_id, number),
            "upload_id": upload_id,
            "number": number,
            "size": size,
            "etag": etag,
            "recorded_at": timestamp(now),
            "expires_at": int(now + PART_TTL_SECONDS),
            **({"checksum": checksum} if checksum else {}),
        }
        with translated(f"recording part {number} of {job.dst_key!r}"):
            self.client.put_item(
                TableName=self.name, Item={k: serialize(v) for k, v in item.items()}
            )

    def recorded_parts(self, job: Job, upload_id: str) -> dict[int, tuple[int, str]]:
        """Parts recorded for this upload: number -> (size, etag)."""
        return {n: (p.size, p.etag) for n, p in self.part_records(job, upload_id).items()}

    def part_records(self, job: Job, upload_id: str) -> dict[int, PartInfo]:
        """Parts recorded for this upload, by number (with their checksums, if any)."""
        out: dict[int, PartInfo] = {}
        for raw in self._query(
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
            ExpressionAttributeNames={"#pk": "pk", "#sk": "sk"},
            ExpressionAttributeValues={
                ":pk": serialize(job.id),
                ":prefix": serialize(part_prefix(upload_id)),
            },
            ConsistentRead=True,
        ):
            data = plain_item(raw)
            if data.get("upload_id") == upload_id:
                number = int(data["number"])
                checksum = data.get("checksum")
                out[number] = PartInfo(
                    number,
                    int(data["size"]),
                    str(data["etag"]),
                    str(checksum) if checksum else None,
                )
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
            "updated_at": timestamp(now),
            "finished_at": timestamp(now),
            "reason": reason,
            "rev": 1,
            **{k: v for k, v in fields.items() if v is not None},
        }
        with translated(f"recording {kind.value} {item_id}"):
            self.client.put_item(
                TableName=self.name, Item={k: serialize(v) for k, v in item.items()}
            )

    # -- plumbing ---------------------------------------------------------------------------

    def _update(self, item_id: str, e: Expression, condition: str, where: str) -> bool:
        try:
            conditional(
                where,
                self.client.update_item,
                TableName=self.name,
                Key=item_key(item_id, JOB_SK),
                UpdateExpression=e.update(),
                ConditionExpression=condition,
                ExpressionAttributeNames=e.names,
                ExpressionAttributeValues=e.values,
            )
        except ConditionFailed:
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


def _set_state(e: Expression, state: JobState, item_id: str) -> None:
    """Set an item's state, and its key in the state index unless it is a range of a
    fanned-out object (whose object item is the job `status` counts)."""
    e.set("state", state.value)
    if object_of(item_id) is None:
        e.set("gsi_state", state_key(state, item_id))


def _owned(e: Expression, job: Job) -> str:
    return (
        f"{e.n('state')} = {e.v(JobState.IN_PROGRESS.value)} "
        f"AND {e.n('owner')} = {e.v(job.lease_owner or '')}"
    )


def _set_identity(e: Expression, spec: JobSpec) -> None:
    e.set("src_bucket", spec.src_bucket).set("src_key", spec.src_key)
    e.set("dst_bucket", spec.dst_bucket).set("dst_key", spec.dst_key)
    e.set("size", spec.size).set("etag", spec.etag).set("version_id", spec.version_id)
    e.set("last_modified", timestamp(spec.last_modified) if spec.last_modified else None)
    e.set("source_id", spec.source_id)


def _verify_text(result: JobResult) -> str:
    text = result.verify
    if result.notes:
        text += "; " + "; ".join(result.notes)
    return text


def persist(action: Callable[[], T]) -> T:
    """Retry a job-table write through short outages; the outcome must not be lost."""
    for attempt in range(_PERSIST_TRIES):
        try:
            return action()
        except TransientError:
            if attempt + 1 >= _PERSIST_TRIES:
                raise
            time.sleep(random.uniform(0, min(5.0, 0.2 * 2**attempt)))
    raise AssertionError("unreachable")  # pragma: no cover


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
    "persist",
    "should_queue",
    "state_key",
]
