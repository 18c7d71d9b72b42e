"""Giant objects fanned out across the cluster: which objects are split into ranges of their
parts (`FanoutRule`), the object items where the ranges meet (`ObjectRecords`, the
`SharedUploadLedger` of the transfer engine), and the fan-out of giant objects that S3 events
announce (`EventFanout`).

An object above `fanout_threshold` is queued as one object item (kind copy, `ranges` = N,
pending) and N range messages. Each range is a job of its own (item `<object id>#r00003`,
kind range, out of the state index) that any worker claims with the usual lease; its parts
are recorded under the range's id. The object item holds, with conditional writes:

- `creator`/`creator_until`: the range claiming the upload's creation (before it creates it),
  then `upload_id`, `part_size`, `upload_etag`, written only by that claim;
- `ranges_done`: the set of finished ranges (a range is added once, with its bytes);
- `completer`/`completer_until`: the range claiming the completion once the set is full;
- its state: in progress from the first range's claim, done when completed and proven,
  failed (with the reason) when a range cannot be copied for good.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from s3longbow.config import TransferSettings
from s3longbow.errors import LongbowError, TransientError
from s3longbow.jobs.base import RangeProgress, SharedUpload
from s3longbow.model import Job, JobResult, JobState, PartInfo
from s3longbow.stores.base import ObjectStore
from s3longbow.transfer.sizing import part_count, part_size_for, range_count

from .aws import translated
from .config import ClusterSettings
from .dynamodb import FANOUT_ATTRIBUTES, JobTable, persist, state_key
from .expressions import ConditionFailed, Expression, conditional, item_key, timestamp
from .jobitems import ItemKind, JobItem
from .messages import JobSpec, encode_jobs, fan_out, object_of, range_id
from .sqs import MessageQueue, SendFailed, batches

log = logging.getLogger(__name__)

_BATCH_WRITE = 25  # BatchWriteItem's limit
_WRITE_TRIES = 8


@dataclass(frozen=True, slots=True)
class FanoutRule:
    """Which objects are fanned out, and into how many ranges.

    Attributes:
        threshold: Objects larger than this are fanned out.
        parts_per_range: Most parts in one range.
        part_size: The configured part size (grown for objects of more than 10,000 parts).
    """

    threshold: int
    parts_per_range: int
    part_size: int

    @classmethod
    def of(cls, cluster: ClusterSettings, transfer: TransferSettings) -> FanoutRule:
        return cls(cluster.fanout_threshold, cluster.fanout_parts, transfer.part_size)

    def ranges(self, size: int | None) -> int | None:
        """How many ranges an object of `size` bytes is split into; None: one worker copies
        it whole (not above the threshold, or its parts would all fit in one range)."""
        if size is None or size <= self.threshold:
            return None
        try:
            part_size = part_size_for(size, self.part_size)
        except ValueError:
            return None  # above S3's limit: its copy fails with the reason
        if part_count(size, part_size) < 2:
            return None
        count = range_count(size, part_size, self.parts_per_range)
        return count if count > 1 else None


def range_closed(item: JobItem | None, etag: str | None) -> str | None:
    """Why a range of the object whose item is `item` has nothing left to do, or None while
    the object is open (pending or in progress for the same source ETag). Pure."""
    if item is None:
        return "the object's record is gone"
    if item.etag != etag:
        return f"another version of the source was queued since (ETag {item.etag})"
    if item.state is JobState.DONE:
        return "the object is already copied"
    if item.state in (JobState.PENDING, JobState.IN_PROGRESS):
        return None
    return f"the object is {item.state.value}: {item.reason or 'no reason recorded'}"


class ObjectRecords:
    """The items of fanned-out objects (see the module's docstring): what a range's claim
    and lease change on its object, and the transfer engine's `SharedUploadLedger`.

    Args:
        table: The job table.
    """

    def __init__(self, table: JobTable) -> None:
        self.table = table
        self.client = table.client
        self.name = table.name
        self.clock = table.clock

    # -- a range's claim and lease ----------------------------------------------------------

    def start_range(self, spec: JobSpec, lease_seconds: float) -> str | None:
        """Mark the object in progress for a range just claimed; why the range has nothing to
        do when the object is closed (see `range_closed`)."""
        assert spec.part_range is not None
        now = self.clock()
        e = Expression()
        self._in_progress(e, spec.object_id, now, lease_seconds)
        e.set_once("started_at", timestamp(now))
        condition = f"{e.n('etag')} = {e.v(spec.etag)} AND {self._open(e)}"
        if self._write(spec.object_id, e, condition, f"starting {spec.src_key!r}") is not None:
            return None
        # No item (the object was never queued, or its record was removed): the range's
        # message makes it, as the sender would have.
        e = Expression()
        self._in_progress(e, spec.object_id, now, lease_seconds)
        e.set("kind", ItemKind.COPY.value).set("started_at", timestamp(now))
        e.set("queued_at", timestamp(now)).set("origin", spec.origin).set("attempts", 0)
        e.set("src_bucket", spec.src_bucket).set("src_key", spec.src_key)
        e.set("dst_bucket", spec.dst_bucket).set("dst_key", spec.dst_key)
        e.set("size", spec.size).set("etag", spec.etag).set("version_id", spec.version_id)
        e.set("source_id", spec.source_id).set("ranges", spec.part_range.count)
        condition = f"attribute_not_exists({e.n('pk')})"
        if self._write(spec.object_id, e, condition, f"starting {spec.src_key!r}") is not None:
            return None
        return range_closed(self.table.get(spec.object_id), spec.etag)

    def extend(self, job: Job, until: float) -> None:
        """Keep the object's lease alive while one of its ranges runs (the sender queues an
        object in progress again only once its lease has run out)."""
        e = Expression()
        e.set("lease_until", timestamp(until)).set("updated_at", timestamp(self.clock()))
        condition = f"{self._same(e, job)} AND {e.n('state')} = {e.v('in_progress')}"
        self._write(self._object(job), e, condition, f"extending the lease of {job.src_key!r}")

    # -- SharedUploadLedger -----------------------------------------------------------------

    def shared_upload(self, job: Job) -> SharedUpload | None:
        item = self.table.get(self._object(job))
        if (
            item is None
            or item.state is not JobState.IN_PROGRESS
            or not item.upload_id
            or not item.part_size
            or item.upload_etag != job.etag
        ):
            return None
        return SharedUpload(item.upload_id, item.part_size, item.upload_etag)

    def object_closed(self, job: Job) -> str | None:
        return range_closed(self.table.get(self._object(job)), job.etag)

    def claim_creation(self, job: Job, seconds: float) -> bool:
        now = self.clock()
        e = Expression()
        e.set("creator", job.id).set("creator_until", timestamp(now + seconds))
        e.set("updated_at", timestamp(now))
        condition = (
            f"{self._running(e, job)} AND attribute_not_exists({e.n('upload_id')}) AND "
            f"{self._claimable(e, 'creator', job.id, now)}"
        )
        return self._write(self._object(job), e, condition, "claiming the upload") is not None

    def record_shared_upload(self, job: Job, upload: SharedUpload) -> bool:
        e = Expression()
        e.set("upload_id", upload.upload_id).set("part_size", upload.part_size)
        e.set("upload_etag", upload.upload_etag).set("updated_at", timestamp(self.clock()))
        e.remove("creator").remove("creator_until")
        condition = (
            f"{self._running(e, job)} AND attribute_not_exists({e.n('upload_id')}) AND "
            f"{e.n('creator')} = {e.v(job.id)}"
        )
        return self._write(self._object(job), e, condition, "recording the upload") is not None

    def range_finished(self, job: Job, result: JobResult) -> RangeProgress:
        assert job.part_range is not None
        index, count = job.part_range.index, job.part_range.count
        e = Expression()
        e.add("ranges_done", {index}).add("bytes_sent", result.bytes_sent)
        e.add("bytes_reused", result.bytes_reused).set("updated_at", timestamp(self.clock()))
        # Added once: a later delivery of a finished range adds neither it nor its bytes.
        condition = f"{self._running(e, job)} AND NOT contains({e.n('ranges_done')}, {e.v(index)})"
        attributes = self._write(
            self._object(job), e, condition, f"finishing range {index} of {job.src_key!r}"
        )
        item = JobItem.from_item(attributes) if attributes else self.table.get(self._object(job))
        closed = range_closed(item, job.etag)
        if item is not None and closed is None and item.state is JobState.PENDING:
            closed = "the object was queued again since (its ranges start over)"
        done = len(item.ranges_done) if item is not None else 0
        return RangeProgress(done, (item.ranges if item else None) or count, closed)

    def claim_completion(self, job: Job, seconds: float) -> bool:
        now = self.clock()
        e = Expression()
        e.set("completer", job.id).set("completer_until", timestamp(now + seconds))
        e.set("updated_at", timestamp(now))
        condition = f"{self._running(e, job)} AND {self._claimable(e, 'completer', job.id, now)}"
        return self._write(self._object(job), e, condition, "claiming the completion") is not None

    def object_parts(self, job: Job, upload_id: str) -> dict[int, PartInfo]:
        assert job.part_range is not None
        parts: dict[int, PartInfo] = {}
        for index in range(job.part_range.count):
            one = dataclasses.replace(job, id=range_id(self._object(job), index))
            parts.update(self.table.part_records(one, upload_id))
        return parts

    def finish_object(
        self, job: Job, state: JobState, reason: str | None, result: JobResult | None
    ) -> bool:
        object_id = self._object(job)
        now = self.clock()
        e = Expression()
        e.set("state", state.value).set("gsi_state", state_key(state, object_id))
        e.set("updated_at", timestamp(now)).set("finished_at", timestamp(now)).set("reason", reason)
        if result is not None:
            e.set("verified", result.verified).set("verify", result.verify)
            e.set("dst_etag", result.dst_etag)
        if state is not JobState.DONE:
            e.add("attempts", 1)
        for name in ("owner", "lease_until", *FANOUT_ATTRIBUTES[1:]):
            e.remove(name)  # the finished ranges stay, to show how far the object got
        e.add("rev", 1)
        if state is JobState.DONE:
            condition = f"{self._running(e, job)} AND {e.n('completer')} = {e.v(job.id)}"
        else:
            condition = f"{self._same(e, job)} AND {self._open(e)}"
        return self._write(object_id, e, condition, f"finishing {job.src_key!r}") is not None

    def close(self, job: Job, reason: str, dst: ObjectStore) -> None:
        """Fail the object of a range that failed for good and abort its upload (unless the
        object is done, or another range closed it first)."""
        shared = self.shared_upload(job)
        if self.finish_object(job, JobState.FAILED, reason, None) and shared is not None:
            dst.abort_upload(job.dst_key, shared.upload_id)

    # -- a new round of ranges --------------------------------------------------------------

    def forget_ranges(self, object_id: str, count: int) -> None:
        """Delete the range items of an earlier round (the object is queued again): a range
        finished then must run again in the new upload."""
        keys = [item_key(range_id(object_id, i), "job") for i in range(count)]
        for start in range(0, len(keys), _BATCH_WRITE):
            requests: list[dict[str, Any]] = [
                {"DeleteRequest": {"Key": key}} for key in keys[start : start + _BATCH_WRITE]
            ]
            for attempt in range(_WRITE_TRIES):
                with translated(f"forgetting the ranges of {object_id}"):
                    resp = self.client.batch_write_item(RequestItems={self.name: requests})
                requests = resp.get("UnprocessedItems", {}).get(self.name, [])
                if not requests:
                    break
                time.sleep(min(2.0, 0.05 * 2**attempt))
            else:
                raise TransientError(f"DynamoDB left ranges of {object_id} undeleted")

    # -- plumbing ---------------------------------------------------------------------------

    def _object(self, job: Job) -> str:
        object_id = object_of(job.id)
        if object_id is None:  # pragma: no cover - only ranges reach the ledger
            raise ValueError(f"{job.id} is not a range of an object")
        return object_id

    def _in_progress(self, e: Expression, object_id: str, now: float, lease: float) -> None:
        e.set("state", JobState.IN_PROGRESS.value)
        e.set("gsi_state", state_key(JobState.IN_PROGRESS, object_id))
        e.set("updated_at", timestamp(now)).set("lease_until", timestamp(now + lease))
        e.add("rev", 1)

    @staticmethod
    def _open(e: Expression) -> str:
        return f"{e.n('state')} IN ({e.v('pending')}, {e.v('in_progress')})"

    @staticmethod
    def _same(e: Expression, job: Job) -> str:
        return f"{e.n('etag')} = {e.v(job.etag)}"

    def _running(self, e: Expression, job: Job) -> str:
        return f"{self._same(e, job)} AND {e.n('state')} = {e.v('in_progress')}"

    @staticmethod
    def _claimable(e: Expression, claim: str, claimant: str, now: float) -> str:
        return (
            f"(attribute_not_exists({e.n(claim)}) OR {e.n(claim)} = {e.v(claimant)} OR "
            f"{e.n(claim + '_until')} < {e.v(timestamp(now))})"
        )

    def _write(
        self, item_id: str, e: Expression, condition: str, where: str
    ) -> dict[str, Any] | None:
        """A conditional write of the object item: its attributes as written, or None when
        the condition did not hold."""
        try:
            resp = persist(
                lambda: conditional(
                    where,
                    self.client.update_item,
                    TableName=self.name,
                    Key=item_key(item_id, "job"),
                    UpdateExpression=e.update(),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=e.names,
                    ExpressionAttributeValues=e.values,
                    ReturnValues="ALL_NEW",
                )
            )
        except ConditionFailed:
            return None
        return dict(resp.get("Attributes", {}))


class EventFanout:
    """Fans out the giant objects S3 events announce, as `longbow send` does its own: the
    object is queued (unless it already is) and its range messages are sent.

    Args:
        rule: Which objects are fanned out.
        table: The job table.
        queue: The job queue, where the range messages go.
    """

    def __init__(self, rule: FanoutRule, table: JobTable, queue: MessageQueue) -> None:
        self.rule = rule
        self.table = table
        self.records = ObjectRecords(table)
        self.queue = queue

    def spread(self, spec: JobSpec, send_id: str) -> bool:
        """Fan the event's object out; False when it is not fanned out (it is copied as any
        other). Raises LongbowError when its ranges could not be queued (the event comes
        back; the object is marked failed so a later event or send queues it again)."""
        count = self.rule.ranges(spec.size)
        if count is None or spec.part_range is not None:
            return False
        earlier = self.table.get(spec.id)
        queued = self.table.queue_job(
            spec, why="event", send_id=send_id, listed_at=0, stale_before=0, ranges=count
        )
        if not queued:
            log.info("%s: already queued, running or copied", spec.src_key)
            return True
        self.records.forget_ranges(spec.id, max(count, (earlier.ranges or 0) if earlier else 0))
        bodies = [encode_jobs(spec.src_bucket, spec.dst_bucket, [r]) for r in fan_out(spec, count)]
        try:
            for chunk in batches(bodies):
                self.queue.send_batch([bodies[i] for i in chunk])
        except (SendFailed, LongbowError) as exc:
            self.table.unqueue(spec, send_id=send_id, reason=f"its range messages: {exc}")
            raise
        log.info("%s: fanned out into %d ranges", spec.src_key, count)
        return True


__all__ = ["EventFanout", "FanoutRule", "ObjectRecords", "range_closed"]
