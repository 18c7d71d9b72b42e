"""Message formats of cluster mode: what a job message names (`JobSpec`, `RemovalSpec`, the
configured pairs as `Route`s), the ids of jobs and of source versions, and the job messages
`longbow send` writes (`encode_jobs`, packed by `MessagePacker`). Pure: no I/O, no SDK.

What arrives on the queue is parsed by `inbound`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from s3longbow.config import MiB
from s3longbow.model import JobId, PartRange

FORMAT_VERSION = 1
# SQS's classic limit for one message, and for the sum of one SendMessageBatch.
SQS_MAX_BYTES = 256 * 1024
# Bodies the sender writes stay below this, so ten of them always fit in one batch call.
MESSAGE_BODY_LIMIT = 24 * 1024
# Separates an object's id from its range's number in a range's id ("<object>#r00003").
RANGE_MARK = "#r"
# Packed small objects per message are also capped by their bytes, so one message never holds
# more work than a worker finishes in a few minutes.
MAX_PACKED_BYTES = 64 * MiB


@dataclass(frozen=True, slots=True)
class Route:
    """A configured pair as events see it: objects under `src_prefix` of `src_bucket` are
    copied to `dst_bucket` with `src_prefix` replaced by `dst_prefix`."""

    src_bucket: str
    src_prefix: str
    dst_bucket: str
    dst_prefix: str

    def matches(self, bucket: str, key: str) -> bool:
        return bucket == self.src_bucket and key.startswith(self.src_prefix)

    def dst_key(self, key: str) -> str:
        return self.dst_prefix + key[len(self.src_prefix) :]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One object to copy, as a message names it.

    `etag` is None for a job message entry without one, and `size` too for events that did
    not carry them: the worker asks the source, and keeps them None when the source is gone
    (the job then fails). `last_modified` is the listing's time, or the event's time for events.
    `inventory` is when the inventory report that listed the object was made (seconds since
    the epoch), None when a live listing or an event named it: a source gone since a report
    is skipped as gone, not failed. `part_range` is set for one range of the parts of a
    fanned-out object: the job's id is then the range's (`range_id`), `object_id` the
    object's.
    """

    src_bucket: str
    src_key: str
    dst_bucket: str
    dst_key: str
    size: int | None
    etag: str | None = None
    version_id: str | None = None
    last_modified: float | None = None
    origin: str = "sender"
    inventory: float | None = None
    part_range: PartRange | None = None

    @property
    def object_id(self) -> JobId:
        """The job table key of the object (for a range: of the object it is part of)."""
        return job_id(self.src_bucket, self.src_key, self.dst_bucket, self.dst_key)

    @property
    def id(self) -> JobId:
        if self.part_range is None:
            return self.object_id
        return range_id(self.object_id, self.part_range.index)

    @property
    def source_id(self) -> str:
        return source_id(self.size, self.etag, self.version_id)


@dataclass(frozen=True, slots=True)
class RemovalSpec:
    """An object removed at the source, and the destination copy it concerns."""

    src_bucket: str
    src_key: str
    dst_bucket: str
    dst_key: str
    event: str
    version_id: str | None = None

    @property
    def id(self) -> str:
        return "rm-" + job_id(self.src_bucket, self.src_key, self.dst_bucket, self.dst_key)


@dataclass(frozen=True, slots=True)
class Packed:
    """A job message ready to send, with the jobs it carries."""

    body: str
    jobs: tuple[JobSpec, ...]


def job_id(src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> JobId:
    """The job table key of one copy: a hash of both buckets and keys (any characters)."""
    text = json.dumps([src_bucket, src_key, dst_bucket, dst_key], ensure_ascii=False)
    return JobId(hashlib.sha256(text.encode()).hexdigest()[:40])


def range_id(object_id: str, index: int) -> JobId:
    """The job table key of range `index` of an object's parts."""
    return JobId(f"{object_id}{RANGE_MARK}{index:05d}")


def object_of(item_id: str) -> str | None:
    """The object id of a range's id; None for any other id."""
    head, mark, index = item_id.rpartition(RANGE_MARK)
    return head if mark and index.isdigit() else None


def fan_out(spec: JobSpec, count: int) -> list[JobSpec]:
    """The range jobs of an object split into `count` ranges of its parts."""
    return [replace(spec, part_range=PartRange(i, count)) for i in range(count)]


def source_id(size: int | None, etag: str | None, version_id: str | None) -> str:
    """The identity of a source version: two listings of the same bytes give the same text."""
    return f"{'' if size is None else size}:{etag or ''}:{version_id or ''}"


def routes_for(pairs: Sequence[tuple[str, str, str, str]]) -> tuple[Route, ...]:
    """Routes from (src bucket, src prefix, dst bucket, dst prefix) tuples."""
    return tuple(Route(*pair) for pair in pairs)


# -- job messages (outbound) ----------------------------------------------------------------


def _compact(value: object) -> str:
    # ASCII only: SQS refuses some characters that S3 keys may hold (control characters).
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def _entry(spec: JobSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": spec.src_key, "dst_key": spec.dst_key, "size": spec.size}
    if spec.etag is not None:
        entry["etag"] = spec.etag
    if spec.version_id is not None:
        entry["version_id"] = spec.version_id
    if spec.last_modified is not None:
        entry["mtime"] = spec.last_modified
    if spec.inventory is not None:
        entry["inventory"] = spec.inventory
    if spec.part_range is not None:
        entry["range"] = {"index": spec.part_range.index, "count": spec.part_range.count}
    return entry


def encode_jobs(src_bucket: str, dst_bucket: str, jobs: Sequence[JobSpec]) -> str:
    """The body of one job message (all jobs share the bucket pair)."""
    return _compact(
        {
            "longbow": FORMAT_VERSION,
            "src_bucket": src_bucket,
            "dst_bucket": dst_bucket,
            "objects": [_entry(j) for j in jobs],
        }
    )


class MessagePacker:
    """Packs jobs into message bodies.

    Objects at or below `large_threshold` (the multipart threshold) share a message, up to
    `objects_per_message` of them, `MAX_PACKED_BYTES` of object data and `body_limit` bytes of
    body; a larger object travels alone, so its message's visibility, retries and
    dead-lettering concern that object only; so does each range of a fanned-out object.

    Args:
        objects_per_message: Most small objects in one message.
        large_threshold: Objects above this size get a message each.
        body_limit: Most bytes of one body.
    """

    def __init__(
        self,
        *,
        objects_per_message: int,
        large_threshold: int,
        body_limit: int = MESSAGE_BODY_LIMIT,
    ) -> None:
        self.objects_per_message = objects_per_message
        self.large_threshold = large_threshold
        self.body_limit = body_limit
        self._pair: tuple[str, str] | None = None
        self._jobs: list[JobSpec] = []
        self._body_bytes = 0
        self._object_bytes = 0

    def add(self, spec: JobSpec) -> list[Packed]:
        """Add one job; returns the messages this completed (possibly none)."""
        ready: list[Packed] = []
        pair = (spec.src_bucket, spec.dst_bucket)
        if (spec.size or 0) > self.large_threshold or spec.part_range is not None:
            ready.append(Packed(encode_jobs(*pair, [spec]), (spec,)))
            return ready
        if self._pair is not None and pair != self._pair:
            ready.extend(self.flush())
        entry_bytes = len(_compact(_entry(spec))) + 1
        if self._jobs and (
            len(self._jobs) >= self.objects_per_message
            or self._body_bytes + entry_bytes > self.body_limit
            or self._object_bytes + (spec.size or 0) > MAX_PACKED_BYTES
        ):
            ready.extend(self.flush())
        if not self._jobs:
            self._pair = pair
            self._body_bytes = len(encode_jobs(*pair, []))
            self._object_bytes = 0
        self._jobs.append(spec)
        self._body_bytes += entry_bytes
        self._object_bytes += spec.size or 0
        return ready

    def flush(self) -> list[Packed]:
        """The message being filled, if any."""
        if not self._jobs or self._pair is None:
            return []
        packed = Packed(encode_jobs(*self._pair, self._jobs), tuple(self._jobs))
        self._jobs = []
        self._pair = None
        return [packed]


__all__ = [
    "FORMAT_VERSION",
    "RANGE_MARK",
    "MAX_PACKED_BYTES",
    "MESSAGE_BODY_LIMIT",
    "SQS_MAX_BYTES",
    "JobSpec",
    "MessagePacker",
    "Packed",
    "RemovalSpec",
    "Route",
    "encode_jobs",
    "fan_out",
    "job_id",
    "object_of",
    "range_id",
    "routes_for",
    "source_id",
]
