"""Value types shared by every layer: objects, jobs, parts and the job state machine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NewType

# Object data as it travels: a whole object's bytes, or a view of a reused part buffer.
Bytes = bytes | bytearray | memoryview

# A job's id, as the queue that holds the job names it: text that only that queue interprets
# (the SQLite queue writes its row number, the cluster queue a hash of both buckets and keys).
# The worker and the engine only carry it back to the queue.
JobId = NewType("JobId", str)

# Storage classes whose objects cannot be read until restored (S3 Glacier Flexible Retrieval
# and Glacier Deep Archive). GLACIER_IR is read like any other class. The archive tiers of
# INTELLIGENT_TIERING are no class of their own: a listing cannot tell them, a read can.
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


class RestoreStatus(enum.StrEnum):
    """What a listing says of an archived object's restored copy (RestoreStatus); nothing at
    all where no restore was asked for, or where the store does not say."""

    IN_PROGRESS = "in_progress"  # asked for, not readable yet
    RESTORED = "restored"  # a restored copy is readable until its expiry date


def needs_restore(storage_class: str | None, restore: RestoreStatus | None) -> bool:
    """Whether a listing shows an object that cannot be read before a restore finishes."""
    return storage_class in ARCHIVE_CLASSES and restore is not RestoreStatus.RESTORED


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as a listing or a HEAD reports it.

    Attributes:
        key: The full key in its store.
        size: Size in bytes.
        etag: The store's ETag without quotes (None where a store has none).
        last_modified: Seconds since the epoch, if known.
        version_id: The version id on a versioned bucket, else None.
        storage_class: The storage class the listing names (None: STANDARD, or not said).
        restore: The state of a restored copy, where the listing tells it.
    """

    key: str
    size: int
    etag: str | None = None
    last_modified: float | None = None
    version_id: str | None = None
    storage_class: str | None = None
    restore: RestoreStatus | None = None


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One version of a key in a versioned bucket."""

    key: str
    version_id: str
    size: int = 0
    etag: str | None = None
    last_modified: float | None = None


@dataclass(frozen=True, slots=True)
class Checksum:
    """An S3 additional checksum of an object (or of one part).

    Attributes:
        algorithm: CRC32, CRC32C, CRC64NVME, SHA1 or SHA256.
        value: The base64 digest, without a part-count suffix.
        parts: For a composite checksum of a multipart object (base64-N), the part count N:
            the digest is then the checksum of the parts' checksums. None: the checksum of all
            the bytes (a single PUT, or a multipart object with a full-object checksum).
    """

    algorithm: str
    value: str
    parts: int | None = None

    def __str__(self) -> str:
        suffix = f"-{self.parts}" if self.parts is not None else ""
        return f"{self.algorithm}:{self.value}{suffix}"


@dataclass(frozen=True, slots=True)
class ObjectLock:
    """An object's Object Lock settings, as its HEAD or GET names them.

    Attributes:
        mode: The retention mode, GOVERNANCE or COMPLIANCE (None: no retention).
        retain_until: When the retention ends, as S3 writes it (ISO 8601).
        legal_hold: A legal hold is on.
    """

    mode: str | None = None
    retain_until: str | None = None
    legal_hold: bool = False

    def __bool__(self) -> bool:
        return bool(self.mode and self.retain_until) or self.legal_hold


@dataclass(frozen=True, slots=True)
class ObjectProperties:
    """What travels with an object besides its bytes: HTTP headers, user metadata, tags.

    Attributes:
        content_type, content_encoding, content_disposition, content_language,
        cache_control, expires, website_redirect: The standard headers, as the source sent
            them (`expires` as an HTTP date).
        metadata: User metadata (`x-amz-meta-*`) as (name, value) pairs, in the source's order.
        tag_count: How many tags the object has (None: unknown).
        checksum: The S3 additional checksum the source reported, if any (not copied as a
            property: it is recomputed, and checked, on the way).
        encrypted: The source is encrypted with KMS or a customer key, so its ETag is not the
            MD5 of its bytes even when it looks like one (not copied).
        last_modified: When the object was last written, as its reply says (Last-Modified,
            seconds since the epoch; not copied: a file written with --preserve-mtime takes
            it where no mtime metadata says otherwise).
        storage_class: The class the reply names (None: STANDARD, or not said); copied
            only where the run keeps each source's class.
        lock: Its Object Lock retention and legal hold, where it has any; written where the
            destination bucket has Object Lock.
    """

    content_type: str | None = None
    content_encoding: str | None = None
    content_disposition: str | None = None
    content_language: str | None = None
    cache_control: str | None = None
    expires: str | None = None
    website_redirect: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    tag_count: int | None = None
    checksum: Checksum | None = None
    encrypted: bool = False
    last_modified: float | None = None
    storage_class: str | None = None
    lock: ObjectLock | None = None


@dataclass(frozen=True, slots=True)
class ObjectDetails:
    """A HEAD of a source object: its properties and, for a multipart object, its layout."""

    properties: ObjectProperties
    part_size: int | None = None  # size of part 1
    parts_count: int | None = None
    version_id: str | None = None  # on a versioned bucket: the version the HEAD described
    storage_class: str | None = None  # None: STANDARD (S3 names no other class then)
    # The HEAD shows an archived object whose restored copy is not readable (yet): an archive
    # class or an Intelligent-Tiering archive tier (x-amz-archive-status), with no finished
    # restore (x-amz-restore).
    archived: bool = False


@dataclass(frozen=True, slots=True)
class PartInfo:
    """A part that exists in an open multipart upload."""

    number: int
    size: int
    etag: str
    checksum: str | None = None  # base64, of the upload's checksum algorithm, where it has one


@dataclass(frozen=True, slots=True)
class PartRange:
    """One of `count` ranges of an object's parts, copied as a job of its own so that a giant
    object is spread over many workers (cluster fan-out). Which parts it holds depends on
    the object's part count, known once its upload is begun (`transfer.sizing.range_parts`).
    """

    index: int  # 0-based
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"range {self.index} of {self.count} does not exist")


class JobState(enum.StrEnum):
    """Where a job stands. Only the moves in ALLOWED_TRANSITIONS are legal."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    # The source is archived: not copied until a restore makes it readable (the reason says
    # whether a restore was asked for). Not a failure; every planning pass looks again.
    ARCHIVED = "archived"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.SKIPPED, JobState.ARCHIVED})

# A finished job is only reopened by planning (the destination no longer matches the source),
# never by a worker, so a duplicate delivery cannot move a done job backwards.
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.IN_PROGRESS, JobState.SKIPPED}),
    JobState.IN_PROGRESS: frozenset(
        {JobState.DONE, JobState.FAILED, JobState.PENDING, JobState.SKIPPED, JobState.ARCHIVED}
    ),
    JobState.DONE: frozenset({JobState.PENDING}),
    JobState.FAILED: frozenset({JobState.PENDING, JobState.SKIPPED}),
    JobState.SKIPPED: frozenset({JobState.PENDING}),
    JobState.ARCHIVED: frozenset({JobState.PENDING, JobState.SKIPPED}),
}


def can_transition(current: JobState, new: JobState) -> bool:
    """Whether a job may move from `current` to `new`."""
    return new in ALLOWED_TRANSITIONS[current]


@dataclass(slots=True)
class Job:
    """One object to copy from a source key to a destination key.

    The source identity (size, etag, version_id, last_modified) is what planning saw; the
    transfer pins every read to it. `upload_id`, `part_size` and `upload_etag` describe an open
    multipart upload on the destination, so a later attempt can resume it.
    `storage_class` and `restore` are what the listing said of an archived source;
    `restore_requested` is when a run asked for its restore, or first found one under way
    (seconds since the epoch; None: never).
    """

    id: JobId
    run_id: int
    pair: int
    src_key: str
    dst_key: str
    size: int
    etag: str | None
    last_modified: float | None = None
    version_id: str | None = None
    state: JobState = JobState.PENDING
    attempts: int = 0
    reason: str | None = None
    upload_id: str | None = None
    part_size: int | None = None
    upload_etag: str | None = None
    lease_owner: str | None = None
    verify: str | None = None
    restarts: int = 0
    storage_class: str | None = None
    restore: RestoreStatus | None = None
    restore_requested: float | None = None
    # Set for one range of a fanned-out object's parts: the job copies those parts into the
    # object's shared upload (the object's own record holds the upload and the ranges done).
    part_range: PartRange | None = None


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a transfer attempt achieved, written to the job table as the job's final state.

    Attributes:
        bytes_sent: Bytes uploaded to the destination by this attempt.
        bytes_reused: Bytes found already uploaded (resumed parts).
        verified: Whether the copy was proven equal to the source's own fingerprint.
        verify: The method when verified ("source-md5", "source-etag", "local-read"), else
            the reason it could not be.
        notes: Events worth recording, e.g. a restart after the source changed.
    """

    bytes_sent: int
    bytes_reused: int = 0
    verified: bool = False
    verify: str = ""
    dst_etag: str | None = None
    notes: tuple[str, ...] = field(default=())


def outcome_fields(job: Job, state: JobState, result: JobResult | None) -> dict[str, object]:
    """The fields of a job's outcome in a JSON log line (with the caller's "where")."""
    fields: dict[str, object] = {"event": "job", "state": state.value, "size": job.size}
    if result is not None:
        fields.update(
            bytes_sent=result.bytes_sent,
            bytes_reused=result.bytes_reused,
            verified=result.verified,
            verify=result.verify,
        )
    return fields


__all__ = [
    "ALLOWED_TRANSITIONS",
    "ARCHIVE_CLASSES",
    "Bytes",
    "Checksum",
    "FINAL_STATES",
    "Job",
    "JobId",
    "JobResult",
    "JobState",
    "ObjectDetails",
    "ObjectLock",
    "ObjectInfo",
    "ObjectProperties",
    "ObjectVersion",
    "PartInfo",
    "PartRange",
    "RestoreStatus",
    "can_transition",
    "outcome_fields",
    "needs_restore",
]


@dataclass(frozen=True, slots=True)
class RunSample:
    """A sync's counters at one moment, as recorded for its report: cumulative since the
    process began (rates are the differences between two samples), and the concurrency now.

    Attributes:
        at: When, in seconds since the epoch.
        bytes_sent: Bytes the destination accepted so far.
        bytes_done: Bytes of finished work (sent, reused from earlier attempts, or skipped).
        objects_done: Jobs ended (copied, failed, skipped or archived).
        objects_copied: Jobs copied.
        bytes_copied: The copied jobs' bytes.
        objects_failed: Jobs failed.
        in_flight: Objects being copied now.
        concurrency: How many objects may be in flight now (the controller's limit).
    """

    at: float
    bytes_sent: int = 0
    bytes_done: int = 0
    objects_done: int = 0
    objects_copied: int = 0
    bytes_copied: int = 0
    objects_failed: int = 0
    in_flight: int = 0
    concurrency: int = 0
