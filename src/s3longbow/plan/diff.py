"""Pure merge of two sorted listings into copy decisions. No I/O, no SDK.

Both listings are walked once, in lock step, in key order, so memory stays flat however many
keys there are. A source key maps to a destination key by replacing the source prefix with the
destination prefix, character for character: no path normalisation, so `a//b`, `./x`, a leading
`/` or a 1,024-byte key each map to exactly one destination key.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from s3longbow.config import PlanCompare
from s3longbow.errors import FatalError
from s3longbow.model import ObjectInfo
from s3longbow.verdicts import NOT_REPLACED


class Action(enum.StrEnum):
    COPY = "copy"  # missing at the destination, or different
    SAME = "same"  # already at the destination
    IGNORED = "ignored"  # matched an ignore pattern
    FILTERED = "filtered"  # left out by a filter (--include, --min-size, ...)
    UNSUPPORTED = "unsupported"  # the destination cannot hold it (a directory marker on disk)
    NOT_REPLACED = "not_replaced"  # present and different, left alone (--no-overwrite)


@dataclass(slots=True)
class Decision:
    """What to do with one source object, and why.

    Not frozen (treat it as a value all the same): one is made for every key of a listing,
    and a frozen dataclass takes four times as long to make.
    """

    action: Action
    src: ObjectInfo
    dst_key: str
    reason: str
    dst: ObjectInfo | None = None
    # A comparison still waiting on lookups (HEADs): `settle` makes it this decision's own.
    pending: Future[str | None] | None = None


def map_key(src_key: str, src_prefix: str, dst_prefix: str) -> str:
    """Replace the source prefix by the destination prefix, exactly."""
    if not src_key.startswith(src_prefix):
        raise ValueError(f"{src_key!r} does not start with {src_prefix!r}")
    return dst_prefix + src_key[len(src_prefix) :]


def size_differs(src: ObjectInfo, dst: ObjectInfo) -> str | None:
    """The default rule: copy when the sizes differ. Returns the reason, or None when equal."""
    if src.size != dst.size:
        return f"size differs ({src.size} at source, {dst.size} at destination)"
    return None


_MD5 = re.compile(r"^[0-9a-f]{32}(-\d+)?$")

COMPARE_MODES = ("size", "etag", "mtime", "version", "history")

# The modification time (seconds) an object's x-amz-meta-mtime states, or None.
StatedMtime = Callable[[ObjectInfo], float | None]
# Why a present object is left as it is.
ALREADY_THERE = "already at destination"
# Why a present object must be replaced (None: it need not), or that answer to come.
Reason = str | None | Future[str | None]
# Runs a comparison that needs lookups elsewhere, at once with others; its answer to come.
Defer = Callable[[Callable[[], str | None]], Future[str | None]]


def comparator(
    mode: PlanCompare,
    *,
    content_etags: bool = True,
    multipart_etags: bool = True,
    copied_version: Callable[[str], str | None] | None = None,
    stated_mtimes: tuple[StatedMtime | None, StatedMtime | None] = (None, None),
    defer: Defer | None = None,
) -> Callable[[ObjectInfo, ObjectInfo], Reason]:
    """The rule that decides whether a present destination object must be replaced.

    - "size": the sizes differ (the default: one listing field, never a false alarm).
    - "etag": the sizes differ, or both ETags describe the content in the same form (plain
      MD5s, or, where both stores compute multipart ETags as S3 does, multipart ETags with the
      same part count) and differ. ETags of other forms cannot be compared and fall back to
      the size, so a store that computes them differently does not make every object look
      changed. `content_etags` is False when either side's ETags do not describe content.
    - "mtime": the sizes differ, or the source was modified after the destination. Where
      the listings say the source is newer, each side's `stated_mtimes` lookup (a HEAD: the
      time its x-amz-meta-mtime states, as rclone and --preserve-mtime write it) stands for
      its listed time, so an object uploaded after its file was last changed is not newer.
    - "version": the sizes differ, or the source's current version is not the one the job
      database recorded as copied to the key (`copied_version`, by source key); a key with no
      record is judged by its size.
    - "history": always (the versions of the key are compared when its job runs).

    With `defer`, a comparison that needs lookups is handed to it, and the rule returns its
    answer to come (see :func:`settle`): the lookups of many objects then run at once.
    """
    if mode == "size":
        return size_differs
    if mode == "history":
        return lambda src, dst: "its version history is compared when it is copied"
    if mode == "version":

        def version_differs(src: ObjectInfo, dst: ObjectInfo) -> str | None:
            reason = size_differs(src, dst)
            if reason or src.version_id is None or copied_version is None:
                return reason
            copied = copied_version(src.key)
            if copied is not None and copied != src.version_id:
                return f"version {src.version_id} is current, {copied} was copied"
            return None

        return version_differs
    if mode == "mtime":

        def newer(src: ObjectInfo, dst: ObjectInfo) -> Reason:
            reason = size_differs(src, dst)
            if reason or src.last_modified is None or dst.last_modified is None:
                return reason
            if src.last_modified <= dst.last_modified:
                return None
            src_stated, dst_stated = stated_mtimes
            if src_stated is None and dst_stated is None:
                return "source is newer than the destination"

            def by_stated_times() -> str | None:
                src_time = _stated_or_listed(src, src_stated)
                dst_time = _stated_or_listed(dst, dst_stated)
                # Microseconds: a file's time as a float and the same time as text may differ
                # in their last bits.
                if round(src_time, 6) <= round(dst_time, 6):
                    return None
                return "source is newer than the destination"

            return by_stated_times() if defer is None else defer(by_stated_times)

        return newer
    if mode == "etag":

        def etag_differs(src: ObjectInfo, dst: ObjectInfo) -> str | None:
            reason = size_differs(src, dst)
            if reason or not content_etags or not src.etag or not dst.etag:
                return reason
            src_form, dst_form = _MD5.match(src.etag), _MD5.match(dst.etag)
            if src_form and dst_form and src_form.group(1) == dst_form.group(1):
                if src_form.group(1) and not multipart_etags:
                    return None
                if src.etag != dst.etag:
                    return f"ETag differs ({src.etag} at source, {dst.etag} at destination)"
            return None

        return etag_differs
    raise ValueError(f"unknown compare mode {mode!r}")


def _stated_or_listed(obj: ObjectInfo, stated: StatedMtime | None) -> float:
    time = stated(obj) if stated is not None else None
    return time if time is not None else obj.last_modified or 0.0


def diff(
    source: Iterable[ObjectInfo],
    destination: Iterable[ObjectInfo],
    *,
    src_prefix: str,
    dst_prefix: str,
    differs: Callable[[ObjectInfo, ObjectInfo], Reason] = size_differs,
    ignored: Callable[[str], bool] | None = None,
    filtered: Callable[[ObjectInfo, str], str | None] | None = None,
    unsupported: Callable[[str], str | None] | None = None,
    order: Callable[[str], str] | None = None,
    extra: Callable[[ObjectInfo], None] | None = None,
    overwrite: bool = True,
    delete_excluded: bool = False,
) -> Generator[Decision, None, None]:
    """Merge two key-ordered listings into one decision per source object.

    Args:
        source: Source objects whose keys start with `src_prefix`, in key order.
        destination: Destination objects whose keys start with `dst_prefix`, in key order.
        differs: Returns why a present destination object must be replaced, or None (or
            that answer to come: the decision then carries it as `pending`).
        ignored: Whether a source key is excluded by the ignore patterns.
        filtered: Why the filters leave out a source object (given with its key after the
            prefix), or None when they take it.
        unsupported: Why the destination cannot hold a key (None when it can).
        order: The sort key both listings are ordered by (None: plain key order).
        extra: Called with each destination object that no source object maps to (the
            destination listing is then read to its end).
        overwrite: A present destination object that differs is replaced; without it, it is
            left alone (NOT_REPLACED, with why it differs).
        delete_excluded: A destination object whose source the filters leave out goes to
            `extra` too (--delete-excluded), instead of being left alone.

    Yields:
        A Decision for every source object, in key order. Destination objects with no source
        are passed over (nothing is deleted); one whose source is ignored or filtered out
        counts as having a source (it is not an extra).

    Raises:
        FatalError: Either listing is not in key order (the merge would be wrong).
    """
    # This loop runs once per key of buckets with hundreds of millions of keys, so it is
    # written for the interpreter: the order checks of both listings are inlined, the sort
    # key is called only when there is one, and names used per key are local.
    copy, same = Action.COPY, Action.SAME
    by_size = differs is size_differs
    dst_iter = iter(destination)
    src_cut, dst_cut = len(src_prefix), len(dst_prefix)
    current = next(dst_iter, None)
    current_suffix: str | None = None
    if current is not None:
        current_suffix = current.key[dst_cut:]
        if order is not None:
            current_suffix = order(current_suffix)
    matched = False  # whether `current` was paired with a source object
    previous: str | None = None
    for src in source:
        suffix = src.key[src_cut:]
        wanted = suffix if order is None else order(suffix)
        if previous is not None and wanted <= previous:
            _out_of_order("source", src.key)
        previous = wanted
        dst_key = dst_prefix + suffix
        # Both sides are compared on the part after their prefix, which keeps the same order.
        while current_suffix is not None and current_suffix < wanted:
            if extra is not None and not matched:
                extra(current)  # type: ignore[arg-type]
            matched = False
            current = next(dst_iter, None)
            if current is None:
                current_suffix = None
                break
            following = current.key[dst_cut:]
            if order is not None:
                following = order(following)
            if following <= current_suffix:
                _out_of_order("destination", current.key)
            current_suffix = following
        present = current_suffix == wanted
        # A destination object whose source is left out is left alone: never an extra.
        if ignored is not None and ignored(src.key):
            matched = matched or present
            yield Decision(Action.IGNORED, src, dst_key, "matches an ignore pattern")
            continue
        if filtered is not None:
            why_out = filtered(src, suffix)
            if why_out:
                if not delete_excluded:
                    matched = matched or present
                yield Decision(Action.FILTERED, src, dst_key, why_out)
                continue
        if unsupported is not None:
            why_not = unsupported(dst_key)
            if why_not:
                yield Decision(Action.UNSUPPORTED, src, dst_key, why_not)
                continue
        if not present or current is None:
            yield Decision(copy, src, dst_key, "missing at destination")
            continue
        matched = True
        if by_size:
            reason = None if src.size == current.size else size_differs(src, current)
        else:
            judged = differs(src, current)
            if isinstance(judged, Future):
                action = copy if overwrite else Action.NOT_REPLACED
                yield Decision(action, src, dst_key, "", current, judged)
                continue
            reason = judged
        if not reason:
            yield Decision(same, src, dst_key, ALREADY_THERE, current)
        elif overwrite:
            yield Decision(copy, src, dst_key, reason, current)
        else:
            why = f"{NOT_REPLACED}: {reason}"
            yield Decision(Action.NOT_REPLACED, src, dst_key, why, current)
    if extra is not None:
        while current is not None:
            if not matched:
                extra(current)
            matched = False
            last = current_suffix
            current = next(dst_iter, None)
            if current is not None:
                current_suffix = current.key[dst_cut:]
                if order is not None:
                    current_suffix = order(current_suffix)
                if last is not None and current_suffix <= last:
                    _out_of_order("destination", current.key)


def settle(decisions: Iterable[Decision], window: int) -> Iterator[Decision]:
    """The decisions in their order, each one `pending` made final once its answer is in.

    Up to `window` decisions are read ahead of the one waited for, so that the lookups of
    that many run at once; a decision waits only for its own answer and those before it.
    """
    held: deque[Decision] = deque()
    for decision in decisions:
        held.append(decision)
        while held and (len(held) > window or held[0].pending is None or held[0].pending.done()):
            yield _settled(held.popleft())
    while held:
        yield _settled(held.popleft())


def _settled(decision: Decision) -> Decision:
    pending = decision.pending
    if pending is None:
        return decision
    decision.pending = None
    reason = pending.result()
    if not reason:
        decision.action, decision.reason = Action.SAME, ALREADY_THERE
    elif decision.action is Action.NOT_REPLACED:
        decision.reason = f"{NOT_REPLACED}: {reason}"
    else:
        decision.reason = reason
    return decision


def _out_of_order(side: str, key: str) -> None:
    raise FatalError(
        f"the {side} listing is not in the expected key order ({key!r} came late)",
        hint="this store lists keys in an order Longbow does not know; please report it",
    )
