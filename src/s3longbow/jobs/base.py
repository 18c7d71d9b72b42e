"""Ports of the job layer that the transfer engine and the worker use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from s3longbow.model import Job, JobResult, JobState, ObjectInfo, PartInfo


class UploadLedger(Protocol):
    """Where the engine records an open upload and each part it sent, so a later attempt can
    tell which parts on the destination are valid (same size and checksum as sent)."""

    def set_upload(
        self, job: Job, upload_id: str | None, part_size: int | None, upload_etag: str | None
    ) -> None: ...

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
        """Record a part the destination accepted; `checksum` is its checksum of the
        upload's algorithm (base64), where it has one."""
        ...

    def recorded_parts(self, job: Job, upload_id: str) -> dict[int, tuple[int, str]]: ...

    def update_source(self, job: Job, info: ObjectInfo) -> None: ...


@dataclass(frozen=True, slots=True)
class SharedUpload:
    """The one upload of a fanned-out object, which every range of its parts writes to.

    Attributes:
        upload_id: The destination's upload.
        part_size: The part size it was begun with (every range cuts its parts by it).
        upload_etag: The source ETag it was begun for.
    """

    upload_id: str
    part_size: int
    upload_etag: str | None


@dataclass(frozen=True, slots=True)
class RangeProgress:
    """The object's record after a range of its parts was marked finished.

    Attributes:
        done: How many of its ranges are finished.
        total: How many ranges it has.
        closed: Why the object can no longer be completed (it failed, or a newer version
            of the source took its place); None while it is open.
    """

    done: int
    total: int
    closed: str | None = None

    @property
    def complete(self) -> bool:
        """Every range is finished and the object is open: it is to be completed."""
        return self.closed is None and self.done >= self.total


class SharedUploadLedger(Protocol):
    """Where the ranges of a fanned-out object meet: its one upload, begun exactly once (a
    range claims the creation before it creates the upload), the ranges finished, and its
    completion, claimed by one range once every range is finished. Every claim is held by
    the range's job id, so a later delivery of the same range may take it up again, and
    lapses after `seconds`, so a claim of a worker that died is taken over."""

    def shared_upload(self, job: Job) -> SharedUpload | None:
        """The object's upload, when one was begun for the job's source version."""
        ...

    def object_closed(self, job: Job) -> str | None:
        """Why the object can no longer be completed; None while it is open."""
        ...

    def claim_creation(self, job: Job, seconds: float) -> bool:
        """Claim the right to begin the object's upload (none is recorded yet)."""
        ...

    def record_shared_upload(self, job: Job, upload: SharedUpload) -> bool:
        """Record the upload this range began; False when its claim was lost."""
        ...

    def range_finished(self, job: Job, result: JobResult) -> RangeProgress:
        """Mark the job's range finished (once: a later delivery adds nothing)."""
        ...

    def claim_completion(self, job: Job, seconds: float) -> bool:
        """Claim the right to complete the object (every range is finished)."""
        ...

    def object_parts(self, job: Job, upload_id: str) -> dict[int, PartInfo]:
        """The parts every range of the object recorded, by number."""
        ...

    def finish_object(
        self, job: Job, state: JobState, reason: str | None, result: JobResult | None
    ) -> bool:
        """Record the object's final state: done by the completing range (its claim held),
        failed by any range (unless the object is already done)."""
        ...


class JobQueue(UploadLedger, Protocol):
    """Where a worker takes jobs and records their outcomes.

    Implemented over SQLite (single machine) and over SQS + DynamoDB (cluster). A claimed job
    is leased: invisible to other workers while its lease lives; `heartbeat` extends it.
    `finish` makes the final state durable before it releases the job (acks the message).
    """

    heartbeat_interval: float
    # How many jobs beyond the free job threads a worker may lease at once: a local queue
    # claims in batches (one transaction for many jobs); a shared one leaves them to others.
    claim_ahead: int

    def claim(self, limit: int) -> list[Job]:
        """Lease up to `limit` jobs (none when nothing is ready)."""
        ...

    def heartbeat(self, jobs: Sequence[Job]) -> None:
        """Keep the leases of jobs in flight alive."""
        ...

    def finish(
        self, job: Job, state: JobState, reason: str | None, result: JobResult | None
    ) -> bool:
        """Record a final state (compare-and-set), then release the job; False if lost."""
        ...

    def flush(self) -> None:
        """Make every outcome `finish` accepted durable (a queue may write them in batches)."""
        ...

    def retry_later(self, job: Job, delay: float, reason: str, *, counted: bool = True) -> bool:
        """Give the job back, visible again after `delay` seconds."""
        ...

    def wait_for_work(self, timeout: float) -> bool:
        """Wait up to `timeout` for claimable work; False once no more work will come."""
        ...

    def job_ended(self) -> None:
        """A job thread finished a job (wakes a waiting dispatcher)."""
        ...


@dataclass(frozen=True, slots=True)
class ListedRange:
    """A range of a pair's key space as a planning pass recorded it: the keys (after the
    pair's prefix) greater than `after` (every key when None) and at most `until` (no limit
    when None); `position` is the last key whose decision was recorded (None: none yet),
    `counts` what was found up to it (the planner's counts by name), `done` that the whole
    range was planned."""

    id: int
    after: str | None
    until: str | None
    position: str | None = None
    done: bool = False
    counts: dict[str, int] = field(default_factory=dict)


class RangeLedger(Protocol):
    """Where one planning pass records how far the listing of each range of a pair got, so a
    pass stopped half way (a killed process) goes on where each range stopped, without
    listing a finished range again."""

    def ranges(self, pair: int) -> list[ListedRange]:
        """The pair's ranges in this pass (none before its first)."""
        ...

    def add_range(self, pair: int, after: str | None, until: str | None) -> int:
        """Record a new range; returns its id."""
        ...

    def split_range(self, range_id: int, boundary: str) -> int:
        """End a range at `boundary` and record the rest, (boundary, its old end], as a new
        range, in one step; returns the new range's id."""
        ...

    def checkpoint(
        self, range_id: int, position: str | None, counts: dict[str, int], *, done: bool
    ) -> None:
        """Record that every key of the range up to `position` was planned (and handed to
        the sink), with the counts so far; `done`: the whole range was."""
        ...

    def forget(self, pair: int) -> None:
        """Drop the pair's ranges (its listing starts over)."""
        ...
