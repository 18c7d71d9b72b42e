"""Planning: stream both listings of a pair, merge them, and hand what is found to a sink in
batches: the job database (sync), counters (dry run) or the cluster's queue (send).

Listings are fetched by background threads a few pages ahead (by sub-prefix, several at once),
so the two sides are listed at the same time while the merge consumes them; memory holds a
few pages per thread, never whole listings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from s3longbow.config import PlanCompare
from s3longbow.model import ObjectInfo, needs_restore
from s3longbow.pairs import PairRuntime
from s3longbow.plan.diff import Action, Decision, comparator, diff
from s3longbow.plan.filters import Filters, relative_key
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.inventory_listing import inventory_listing
from s3longbow.plan.listing import list_concurrently, read_ahead
from s3longbow.plan.order import order_key, resorted
from s3longbow.progress.stats import Stats


@dataclass
class PlanCounts:
    """What planning found for one pair."""

    copy: int = 0
    copy_bytes: int = 0
    copy_archived: int = 0  # copies whose listing shows an archived source, not restored
    same: int = 0
    same_bytes: int = 0
    ignored: int = 0
    filtered: int = 0  # left out by the filters (--include, --min-size, ...)
    unsupported: int = 0
    extra: int = 0  # destination objects with no source object
    extra_bytes: int = 0
    destination: int = 0  # destination objects seen under the pair's prefix
    samples: list[Decision] = field(default_factory=list)
    extra_samples: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class PlanTotals:
    """What planning found, summed over a run's pairs: the part every report shares (sync,
    dry run, send), in its fields and in its JSON."""

    objects_to_copy: int = 0
    bytes_to_copy: int = 0
    objects_to_restore: int = 0  # of those to copy, archived ones (by the listing)
    objects_same: int = 0
    bytes_same: int = 0
    objects_ignored: int = 0
    objects_filtered: int = 0
    objects_unsupported: int = 0

    def add_counts(self, counts: PlanCounts) -> None:
        """Add one pair's counts."""
        self.objects_to_copy += counts.copy
        self.bytes_to_copy += counts.copy_bytes
        self.objects_to_restore += counts.copy_archived
        self.objects_same += counts.same
        self.bytes_same += counts.same_bytes
        self.objects_ignored += counts.ignored
        self.objects_filtered += counts.filtered
        self.objects_unsupported += counts.unsupported

    def totals_json(self) -> dict[str, object]:
        """The totals as every report's JSON writes them."""
        return {
            "to_copy": {"objects": self.objects_to_copy, "bytes": self.bytes_to_copy},
            "to_restore": self.objects_to_restore,
            "already_present": {"objects": self.objects_same, "bytes": self.bytes_same},
            "ignored": self.objects_ignored,
            "filtered": self.objects_filtered,
            "unsupported": self.objects_unsupported,
        }


class PlanSink(Protocol):
    """Where planning hands what it finds, batch by batch, for each pair.

    Subclass it to inherit the defaults: what a sink leaves out is dropped (`same`,
    `extras`) or unknown (`copied_version`).

    Attributes:
        wants_extras: Look for destination objects no source object maps to (for --delete):
            they are counted and handed to `extras`. Without it they are not looked for.
        wants_same: Hand the objects already present to `same` (for --update-properties).
    """

    wants_extras: bool = False
    wants_same: bool = False

    def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
        """Objects to copy (absent from the destination, or different there)."""
        ...

    def same(self, pair: PairRuntime, batch: list[Decision]) -> None:
        """Objects already present at the destination (only when `wants_same`)."""
        return None

    def extras(self, pair: PairRuntime, batch: list[ObjectInfo]) -> None:
        """Destination objects no source object maps to (only when `wants_extras`)."""
        return None

    def copied_version(self, pair: PairRuntime, key: str) -> str | None:
        """The version id of source key `key` last copied (--compare version), if known."""
        return None


class CountingSink(PlanSink):
    """A dry run's sink: copies are counted as work in `stats`; nothing is written anywhere.

    Args:
        stats: The run's counters.
        extras: Look for (and count) destination objects the source lacks (--delete).
    """

    def __init__(self, stats: Stats, *, extras: bool = False) -> None:
        self.stats = stats
        self.wants_extras = extras

    def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
        self.stats.add_work(len(batch), sum(d.src.size for d in batch))


def decisions(
    pair: PairRuntime,
    ignore: IgnoreRules,
    *,
    filters: Filters | None = None,
    threads: int = 8,
    extra: Callable[[ObjectInfo], None] | None = None,
    compare: PlanCompare = "size",
    copied_version: Callable[[str], str | None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[Decision]:
    """Every source object of the pair with what to do about it, in key order.

    Both sides are listed at once, each on up to `threads` threads (by sub-prefix); a pair
    with an inventory report reads the report instead of listing its source, sorted in the
    destination's order. Objects the ignore patterns or the filters leave out are handed over
    as such; destination objects only the key filters judge (size and age are the source's),
    so an extra the key filters leave out is not reported."""
    src_caps, dst_caps = pair.src_store.capabilities, pair.dst_store.capabilities
    dst_markers = dst_caps.directory_markers

    def unsupported(dst_key: str) -> str | None:
        if not dst_markers and dst_key.endswith("/"):
            return "directory marker: a local destination has no objects ending in '/'"
        return None

    def ignored(key: str) -> bool:
        return bool(ignore) and ignore.matches(pair.ignore_bucket, key)

    filtered: Callable[[ObjectInfo, str], str | None] | None = None
    if filters:
        judge, prefix = filters.excludes, pair.src_prefix

        def left_out(obj: ObjectInfo, suffix: str) -> str | None:
            return judge(relative_key(prefix, suffix), obj)

        filtered = left_out

    src_order = pair.src_store.capabilities.listing_order
    dst_order = pair.dst_store.capabilities.listing_order
    dst_listing: Iterable[ObjectInfo] = list_concurrently(
        pair.dst_store, pair.dst_prefix, threads=threads
    )
    src_listing: Iterable[ObjectInfo]
    if pair.inventory is not None:
        # A report is sorted on disk anyway: into the destination's order, which then
        # needs no sorting of its own.
        src_order = dst_order
        src_listing = read_ahead(inventory_listing(pair, dst_order, should_stop=should_stop))
    else:
        src_listing = list_concurrently(pair.src_store, pair.src_prefix, threads=threads)
    if dst_order != src_order:
        dst_listing = read_ahead(resorted(dst_listing, src_order))
    return diff(
        src_listing,
        dst_listing,
        src_prefix=pair.src_prefix,
        dst_prefix=pair.dst_prefix,
        ignored=ignored,
        filtered=filtered,
        unsupported=unsupported,
        order=order_key(src_order),
        extra=None if extra is None else unless_left_out(pair, ignored, filters, extra),
        differs=comparator(
            compare,
            content_etags=src_caps.content_etag and dst_caps.content_etag,
            multipart_etags=src_caps.multipart_etag_md5 and dst_caps.multipart_etag_md5,
            copied_version=copied_version,
        ),
    )


def unless_left_out(
    pair: PairRuntime,
    ignored: Callable[[str], bool],
    filters: Filters | None,
    extra: Callable[[ObjectInfo], None],
) -> Callable[[ObjectInfo], None]:
    """`extra`, called only for destination objects whose key the ignore patterns and the key
    filters leave in: one they leave out is not an orphan, never reported (so never deleted).
    Keys are judged as the source key they would come from."""
    cut = len(pair.dst_prefix)
    src_prefix = pair.src_prefix
    by_key = filters if filters is not None and filters.by_key else None

    def report(obj: ObjectInfo) -> None:
        suffix = obj.key[cut:]
        if ignored(src_prefix + suffix):
            return
        if by_key is not None and not by_key.takes_key(relative_key(src_prefix, suffix)):
            return
        extra(obj)

    return report


def plan_pair(
    pair: PairRuntime,
    ignore: IgnoreRules,
    sink: PlanSink,
    *,
    batch_size: int = 500,
    keep_samples: int = 0,
    stats: Stats | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    listing_threads: int = 8,
    compare: PlanCompare = "size",
    filters: Filters | None = None,
) -> PlanCounts:
    """Plan one pair, handing what it finds to `sink` in batches; returns the counts.

    Destination objects that no source object maps to are looked for, counted and handed
    over only when the sink `wants_extras`; objects already present are handed over only when
    it `wants_same`. `keep_samples` copies and extras are kept in the counts (for a dry run).
    """
    counts = PlanCounts()
    batch: list[Decision] = []
    same: list[Decision] = []
    extras: list[ObjectInfo] = []

    def extra(obj: ObjectInfo) -> None:
        counts.extra += 1
        counts.extra_bytes += obj.size
        if len(counts.extra_samples) < keep_samples:
            counts.extra_samples.append(obj.key)
        extras.append(obj)
        if len(extras) >= batch_size:
            sink.extras(pair, list(extras))
            extras.clear()

    listing = decisions(
        pair,
        ignore,
        filters=filters,
        threads=listing_threads,
        extra=extra if sink.wants_extras else None,
        compare=compare,
        copied_version=functools.partial(sink.copied_version, pair),
        should_stop=should_stop,
    )
    for decision in listing:
        if decision.dst is not None:
            counts.destination += 1
        if should_stop():
            break
        if decision.action is Action.COPY:
            counts.copy += 1
            counts.copy_bytes += decision.src.size
            if needs_restore(decision.src.storage_class, decision.src.restore):
                counts.copy_archived += 1
            batch.append(decision)
            if len(counts.samples) < keep_samples:
                counts.samples.append(decision)
            if len(batch) >= batch_size:
                sink.copies(pair, batch)
                batch = []
        elif decision.action is Action.SAME:
            counts.same += 1
            counts.same_bytes += decision.src.size
            if sink.wants_same:
                same.append(decision)
                if len(same) >= batch_size:
                    sink.same(pair, same)
                    same = []
            if stats:
                stats.add_same(1, decision.src.size)
        elif decision.action is Action.IGNORED:
            counts.ignored += 1
            if stats:
                stats.add_ignored()
        elif decision.action is Action.FILTERED:
            counts.filtered += 1
        else:
            counts.unsupported += 1
            if stats:
                stats.add_unsupported()
    if batch:
        sink.copies(pair, batch)
    if same:
        sink.same(pair, same)
    if extras:
        sink.extras(pair, extras)
    counts.destination += counts.extra
    return counts
