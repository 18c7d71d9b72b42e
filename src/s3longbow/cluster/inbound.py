"""Parsing of everything that may arrive on the job queue. Pure: no I/O, no SDK.

Inbound shapes, recognised in this order:

- a job message: `{"longbow": 1, "src_bucket", "dst_bucket", "objects": [...]}`;
- an S3 event notification: `{"Records": [{"eventName", "s3": {...}}, ...]}`, every record;
- the same wrapped by SNS: `{"Type": "Notification", "Message": "<JSON text>"}`;
- an EventBridge event: `{"detail-type": "Object Created", "source": "aws.s3", "detail": {...}}`;
- the S3 test event `{"Event": "s3:TestEvent"}` (nothing to do).

Anything else, and any record that cannot be used, becomes a problem with a reason: the
worker records it and moves the message to the dead-letter queue. Nothing raises.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from s3longbow.config import MAX_PARTS
from s3longbow.errors import ConfigError
from s3longbow.model import PartRange
from s3longbow.plan.filters import Filters, relative_key
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.stores.location import check_bucket_name

from .messages import FORMAT_VERSION, SQS_MAX_BYTES, JobSpec, RemovalSpec, Route

# Inbound messages with more objects or records than this are refused as oversized.
MAX_ENTRIES = 1000
MAX_KEY_BYTES = 1024
_MAX_WRAPPING = 2  # SNS around EventBridge is the deepest nesting worth unwrapping


class Shape(enum.StrEnum):
    """What kind of message arrived."""

    JOBS = "jobs"
    S3_EVENT = "s3-event"
    EVENTBRIDGE = "eventbridge"
    TEST_EVENT = "test-event"
    MALFORMED = "malformed"


class EventKind(enum.StrEnum):
    CREATED = "created"
    REMOVED = "removed"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Inbound:
    """A parsed message: the work it asks for and what was wrong with it."""

    shape: Shape
    jobs: tuple[JobSpec, ...] = ()
    removals: tuple[RemovalSpec, ...] = ()
    problems: tuple[str, ...] = ()
    ignored: int = 0

    @property
    def reason(self) -> str:
        """All problems in one line (for logs, the table and the dead-letter queue)."""
        text = "; ".join(self.problems)
        return text if len(text) <= 1000 else text[:997] + "..."


class _Bad(Exception):
    """A message (or one record of it) that cannot be used; the text says why."""


def parse_message(
    body: str,
    routes: Sequence[Route],
    ignore: IgnoreRules | None = None,
    filters: Filters | None = None,
) -> Inbound:
    """Turn a message body into jobs, removals and problems. Never raises.

    Args:
        body: The message body as received.
        routes: The configured pairs, for S3 events (job messages name their buckets).
        ignore: Ignore patterns applied to S3 events.
        filters: Filters applied to S3 events: a created object by its key, size and time,
            a removed one by its key (what they leave out is counted as ignored).
    """
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > SQS_MAX_BYTES:
        return _malformed(f"the message is {size} bytes, more than the {SQS_MAX_BYTES} accepted")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return _malformed(f"the body is not JSON ({exc})")
    try:
        selection = _Selection(ignore or IgnoreRules(()), filters or None)
        return _parse(data, routes, selection, depth=0)
    except _Bad as exc:
        return _malformed(str(exc))


def _bucket(data: dict[str, Any], name: str) -> str:
    """A bucket named by a job message: anything that could break a request is refused here
    (each side's own naming rules apply when its store opens)."""
    bucket = _text(data, name, "job message")
    try:
        check_bucket_name(bucket, "relaxed")
    except ConfigError as exc:
        raise _Bad(f"job message: {name}: {exc.message}") from None
    return bucket


def _malformed(reason: str) -> Inbound:
    return Inbound(Shape.MALFORMED, problems=(reason,))


def _parse(data: object, routes: Sequence[Route], selection: _Selection, depth: int) -> Inbound:
    if not isinstance(data, dict):
        raise _Bad(f"the body is a JSON {type(data).__name__}, expected an object")
    if "longbow" in data:
        return _parse_jobs(data)
    if "Records" in data:
        return _parse_s3_event(data, routes, selection)
    if data.get("Type") == "Notification" and "Message" in data:
        if depth >= _MAX_WRAPPING:
            raise _Bad("SNS notifications nested too deeply")
        inner = data["Message"]
        if not isinstance(inner, str):
            raise _Bad("the SNS notification's Message is not a string")
        try:
            unwrapped = json.loads(inner)
        except (ValueError, RecursionError) as exc:
            raise _Bad(f"the SNS notification's Message is not JSON ({exc})") from None
        return _parse(unwrapped, routes, selection, depth + 1)
    if data.get("Type") in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        raise _Bad(
            f"an SNS {data['Type']} message: confirm the subscription (its SubscribeURL) or "
            "enable raw delivery; it carries no object"
        )
    if "detail-type" in data and "detail" in data:
        return _parse_eventbridge(data, routes, selection)
    if "Event" in data:
        if data["Event"] == "s3:TestEvent":
            return Inbound(Shape.TEST_EVENT)
        raise _Bad(f"unknown S3 event {data['Event']!r}")
    keys = ", ".join(sorted(str(k) for k in data)[:8])
    raise _Bad(f"unknown message shape (top-level keys: {keys or 'none'})")


def _parse_jobs(data: dict[str, Any]) -> Inbound:
    version = data.get("longbow")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise _Bad(
            f"job message format {version!r} is not supported (this worker reads {FORMAT_VERSION})"
        )
    src_bucket = _bucket(data, "src_bucket")
    dst_bucket = _bucket(data, "dst_bucket")
    objects = data.get("objects")
    if not isinstance(objects, list) or not objects:
        raise _Bad("job message: objects must be a non-empty list")
    if len(objects) > MAX_ENTRIES:
        raise _Bad(f"job message: {len(objects)} objects, more than {MAX_ENTRIES} accepted")
    jobs: list[JobSpec] = []
    problems: list[str] = []
    for i, entry in enumerate(objects):
        where = f"job message: objects[{i}]"
        try:
            if not isinstance(entry, dict):
                raise _Bad(f"{where} is not an object")
            size = entry.get("size")
            if not _is_count(size):
                raise _Bad(f"{where}.size must be a whole number of bytes, got {size!r}")
            jobs.append(
                JobSpec(
                    src_bucket=src_bucket,
                    src_key=_key(entry, "key", where),
                    dst_bucket=dst_bucket,
                    dst_key=_key(entry, "dst_key", where),
                    size=size,
                    etag=_optional_text(entry, "etag", where),
                    version_id=_optional_text(entry, "version_id", where),
                    last_modified=_optional_time(entry, "mtime", where),
                    origin="sender",
                    inventory=_optional_time(entry, "inventory", where),
                    part_range=_optional_range(entry, where),
                )
            )
        except _Bad as exc:
            problems.append(str(exc))
    return Inbound(Shape.JOBS, jobs=tuple(jobs), problems=tuple(problems))


def _parse_s3_event(
    data: dict[str, Any], routes: Sequence[Route], selection: _Selection
) -> Inbound:
    records = data["Records"]
    if not isinstance(records, list) or not records:
        raise _Bad("S3 event: Records must be a non-empty list")
    if len(records) > MAX_ENTRIES:
        raise _Bad(f"S3 event: {len(records)} records, more than {MAX_ENTRIES} accepted")
    out = _Collector(routes, selection)
    for i, record in enumerate(records):
        where = f"S3 event record {i}"
        try:
            if not isinstance(record, dict):
                raise _Bad(f"{where} is not an object")
            name = record.get("eventName")
            if not isinstance(name, str) or not name:
                raise _Bad(f"{where} has no eventName")
            s3 = record.get("s3")
            if not isinstance(s3, dict):
                raise _Bad(f"{where} has no s3 member")
            bucket = s3.get("bucket")
            if not isinstance(bucket, dict):
                raise _Bad(f"{where}: s3.bucket must be an object")
            obj = s3.get("object")
            if not isinstance(obj, dict):
                raise _Bad(f"{where}: s3.object must be an object")
            out.add(
                kind=_s3_event_kind(name),
                event=name,
                bucket=_text(bucket, "name", f"{where}: s3.bucket"),
                key=_event_key(obj, f"{where}: s3.object"),
                size=_optional_count(obj, "size", f"{where}: s3.object"),
                etag=_optional_text(obj, "eTag", f"{where}: s3.object"),
                version_id=_optional_text(obj, "versionId", f"{where}: s3.object"),
                when=_event_time(record.get("eventTime")),
            )
        except _Bad as exc:
            out.problems.append(str(exc))
    return out.result(Shape.S3_EVENT)


def _parse_eventbridge(
    data: dict[str, Any], routes: Sequence[Route], selection: _Selection
) -> Inbound:
    source = data.get("source")
    if source != "aws.s3":
        raise _Bad(f"EventBridge event from {source!r}, expected aws.s3")
    detail_type = data.get("detail-type")
    detail = data.get("detail")
    if not isinstance(detail_type, str) or not isinstance(detail, dict):
        raise _Bad("EventBridge event: detail-type must be a string and detail an object")
    bucket = detail.get("bucket")
    obj = detail.get("object")
    if not isinstance(bucket, dict) or not isinstance(obj, dict):
        raise _Bad("EventBridge event: detail.bucket and detail.object must be objects")
    out = _Collector(routes, selection)
    out.add(
        kind=_eventbridge_kind(detail_type),
        event=detail_type,
        bucket=_text(bucket, "name", "EventBridge event: detail.bucket"),
        key=_event_key(obj, "EventBridge event: detail.object"),
        size=_optional_count(obj, "size", "EventBridge event: detail.object"),
        etag=_optional_text(obj, "etag", "EventBridge event: detail.object"),
        version_id=_optional_text(obj, "version-id", "EventBridge event: detail.object"),
        when=_event_time(data.get("time")),
    )
    return out.result(Shape.EVENTBRIDGE)


class _Selection:
    """What events may act on: the ignore patterns (on `bucket/key`), then the filters (on the
    key relative to the pair's source prefix)."""

    def __init__(self, ignore: IgnoreRules, filters: Filters | None) -> None:
        self.ignore = ignore
        self.filters = filters

    def leaves_out(
        self,
        route: Route,
        kind: EventKind,
        bucket: str,
        key: str,
        size: int | None,
        when: float | None,
    ) -> bool:
        if self.ignore and self.ignore.matches(bucket, key):
            return True
        if self.filters is None:
            return False
        relative = relative_key(route.src_prefix, key[len(route.src_prefix) :])
        if kind is EventKind.REMOVED:  # the source is gone: only its key can be judged
            return not self.filters.takes_key(relative)
        return self.filters.judge(relative, size, when) is not None


class _Collector:
    """Maps event records onto the configured pairs."""

    def __init__(self, routes: Sequence[Route], selection: _Selection) -> None:
        self.routes = routes
        self.selection = selection
        self.jobs: list[JobSpec] = []
        self.removals: list[RemovalSpec] = []
        self.problems: list[str] = []
        self.ignored = 0

    def add(
        self,
        *,
        kind: EventKind,
        event: str,
        bucket: str,
        key: str,
        size: int | None,
        etag: str | None,
        version_id: str | None,
        when: float | None,
    ) -> None:
        if kind is EventKind.OTHER:
            self.ignored += 1  # tagging, ACL, lifecycle transitions: nothing to copy
            return
        matching = [r for r in self.routes if r.matches(bucket, key)]
        if not matching:
            self.problems.append(f"no configured pair matches s3://{bucket}/{key} ({event})")
            return
        for route in matching:
            if self.selection.leaves_out(route, kind, bucket, key, size, when):
                self.ignored += 1
                continue
            dst_key = route.dst_key(key)
            if kind is EventKind.REMOVED:
                self.removals.append(
                    RemovalSpec(bucket, key, route.dst_bucket, dst_key, event, version_id)
                )
            else:
                self.jobs.append(
                    JobSpec(
                        src_bucket=bucket,
                        src_key=key,
                        dst_bucket=route.dst_bucket,
                        dst_key=dst_key,
                        size=size,
                        etag=etag.strip('"') if etag else None,
                        version_id=version_id,
                        last_modified=when,
                        origin="event",
                    )
                )

    def result(self, shape: Shape) -> Inbound:
        return Inbound(
            shape,
            jobs=tuple(self.jobs),
            removals=tuple(self.removals),
            problems=tuple(self.problems),
            ignored=self.ignored,
        )


def _s3_event_kind(name: str) -> EventKind:
    name = name.removeprefix("s3:")
    if name.startswith("ObjectCreated:") or name == "ObjectRestore:Completed":
        return EventKind.CREATED
    if name.startswith(("ObjectRemoved:", "LifecycleExpiration:")):
        return EventKind.REMOVED
    return EventKind.OTHER


def _eventbridge_kind(detail_type: str) -> EventKind:
    if detail_type in ("Object Created", "Object Restore Completed"):
        return EventKind.CREATED
    if detail_type == "Object Deleted":
        return EventKind.REMOVED
    return EventKind.OTHER


def _event_key(obj: dict[str, Any], where: str) -> str:
    raw = _text(obj, "key", where)
    # Event keys are form-encoded: "+" is a space, "%2B" a plus.
    try:
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        raise _Bad(f"{where}.key {raw!r} does not decode to UTF-8") from None
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise _Bad(f"{where}.key is longer than {MAX_KEY_BYTES} bytes")
    return key


def _event_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _text(data: dict[str, Any], name: str, where: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise _Bad(f"{where}.{name} must be a non-empty string, got {value!r}")
    return value


def _key(data: dict[str, Any], name: str, where: str) -> str:
    key = _text(data, name, where)
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise _Bad(f"{where}.{name} is longer than {MAX_KEY_BYTES} bytes")
    return key


def _optional_text(data: dict[str, Any], name: str, where: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Bad(f"{where}.{name} must be a string, got {value!r}")
    return value


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional_count(data: dict[str, Any], name: str, where: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not _is_count(value):
        raise _Bad(f"{where}.{name} must be a whole number of bytes, got {value!r}")
    return int(value)


def _optional_range(data: dict[str, Any], where: str) -> PartRange | None:
    """A job entry's `range`: {"index": i, "count": n}, one of n ranges of the object's parts
    (as many as it has parts at most)."""
    value = data.get("range")
    if value is None:
        return None
    shape = 'an object {"index": I, "count": N} with 0 <= I < N <= ' + str(MAX_PARTS)
    if not isinstance(value, dict) or set(value) != {"index", "count"}:
        raise _Bad(f"{where}.range must be {shape}, got {value!r}")
    index, count = value["index"], value["count"]
    if not (_is_count(index) and _is_count(count) and index < count <= MAX_PARTS):
        raise _Bad(f"{where}.range must be {shape}, got {value!r}")
    return PartRange(index, count)


def _optional_time(data: dict[str, Any], name: str, where: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Bad(f"{where}.{name} must be a number of seconds, got {value!r}")
    return float(value)


__all__ = [
    "MAX_ENTRIES",
    "MAX_KEY_BYTES",
    "EventKind",
    "Inbound",
    "Shape",
    "parse_message",
]
