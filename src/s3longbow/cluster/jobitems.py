"""Job items of the DynamoDB job table as read back, and the pure rules that decide on them: who
may run a job now (`decide_claim`), whether the sender queues it (`should_queue`), and which
source identity a claim pins (`newest`). No I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from s3longbow.model import Job, JobId, JobState, PartRange

from .expressions import plain_item
from .messages import JobSpec


class ItemKind(enum.StrEnum):
    """What a job item records."""

    COPY = "copy"
    REMOVE = "remove"  # an ObjectRemoved event
    MESSAGE = "message"  # a message that could not be used
    RANGE = "range"  # one range of a fanned-out object's parts (kept out of the state index)


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
    restore_requested: float | None = None
    # A range of a fanned-out object: which one, of how many.
    range_index: int | None = None
    range_count: int | None = None
    # A fanned-out object: how many ranges it has, which are finished.
    ranges: int | None = None
    ranges_done: frozenset[int] = frozenset()

    @classmethod
    def from_item(cls, raw: dict[str, Any]) -> JobItem:
        data = plain_item(raw)
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        fields["id"] = data["pk"]
        fields["state"] = JobState(data.get("state", JobState.PENDING))
        if "ranges_done" in data:
            fields["ranges_done"] = frozenset(int(i) for i in data["ranges_done"])
        return cls(**fields)

    @property
    def part_range(self) -> PartRange | None:
        """The range of a fanned-out object's parts this item is, if it is one."""
        if self.range_index is None or self.range_count is None:
            return None
        return PartRange(self.range_index, self.range_count)

    def as_job(self, *, pair: int, owner: str) -> Job:
        """The job a claim of this item hands the worker (the claim's owner holds its lease)."""
        return Job(
            id=JobId(self.id),
            run_id=0,
            pair=pair,
            src_key=self.src_key,
            dst_key=self.dst_key,
            size=self.size or 0,
            etag=self.etag,
            last_modified=self.last_modified,
            version_id=self.version_id,
            state=JobState.IN_PROGRESS,
            attempts=self.attempts,
            reason=self.reason,
            upload_id=self.upload_id,
            part_size=self.part_size,
            upload_etag=self.upload_etag,
            lease_owner=owner,
            restore_requested=self.restore_requested,
            part_range=self.part_range,
        )


def decide_claim(item: JobItem | None, spec: JobSpec, message_id: str, now: float) -> ClaimOutcome:
    """Whether a delivery of `spec` (in message `message_id`) may run the job now.

    A new, pending, failed or archived job runs (an archived one: its restore may have
    finished). A job in progress runs only when this is a new
    delivery of the same message (its worker died) or its lease has run out. A done or
    skipped job runs again only for a different source version that is not older than the
    one already copied; a delivery without an ETag (its source was gone when the worker
    asked) is that version unless its size or version id say otherwise.
    """
    if item is None or item.state in (JobState.PENDING, JobState.FAILED, JobState.ARCHIVED):
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


def newest(item: JobItem | None, spec: JobSpec) -> JobSpec:
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


__all__ = ["ClaimOutcome", "ItemKind", "JobItem", "decide_claim", "newest", "should_queue"]
