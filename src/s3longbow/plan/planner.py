"""Planning: stream both listings of a pair, merge them, and hand what is found to a sink in
batches: the job database (sync), counters (dry run) or the cluster's queue (send).

Where both stores list in byte order and can start after any key, the pair is planned range
by range on several threads (`ranged`), each range checkpointed in the sink's ledger so a
stopped pass resumes. Elsewhere (a filer that lists folder by folder, a directory) the two
listings are fetched by background threads a few pages ahead, by sub-prefix, several at once,
and merged whole. Either way memory holds a few pages per thread, never whole listings.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from s3longbow.config import PlanCompare
from s3longbow.errors import ObjectError
from s3longbow.model import ObjectInfo, needs_restore
from s3longbow.mtimes import stated_mtime
from s3longbow.pairs import PairRuntime
from s3longbow.plan.diff import Decision, Reason, StatedMtime, comparator, diff, settle
from s3longbow.plan.estimate import Estimator
from s3longbow.plan.filters import Filters, relative_key
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.inventory_listing import inventory_listing
from s3longbow.plan.listing import list_concurrently, read_ahead
from s3longbow.plan.order import BYTES, order_key, resorted
from s3longbow.plan.ranged import plan_ranges
from s3longbow.plan.tally import PlanCounts, PlanSink, Tally
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import ObjectStore, lists_ranges


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
    objects_not_replaced: int = 0  # present and different, left alone (--no-overwrite)

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
        self.objects_not_replaced += counts.not_replaced

    def totals_json(self) -> dict[str, object]:
        """The totals as every report's JSON writes them."""
        return {
            "to_copy": {"objects": self.objects_to_copy, "bytes": self.bytes_to_copy},
            "to_restore": self.objects_to_restore,
            "already_present": {"objects": self.objects_same, "bytes": self.bytes_same},
            "ignored": self.objects_ignored,
            "filtered": self.objects_filtered,
            "unsupported": self.objects_unsupported,
            "not_replaced": self.objects_not_replaced,
        }


class CountingSink(PlanSink):
    """A dry run's sink: copies are counted as work in `stats` (and, with an `estimator`,
    the requests each will take); nothing is written anywhere.

    Args:
        stats: The run's counters.
        extras: Look for (and count) destination objects the source lacks (--delete).
        estimator: Counts each copy's requests for the pre-flight estimate.
    """

    def __init__(
        self, stats: Stats, *, extras: bool = False, estimator: Estimator | None = None
    ) -> None:
        self.stats = stats
        self.wants_extras = extras
        self.estimator = estimator

    def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
        self.stats.add_work(len(batch), sum(d.src.size for d in batch))
        if self.estimator is not None:
            for d in batch:
                # An archived source is not read before a restore: no copy this run.
                if not needs_restore(d.src.storage_class, d.src.restore):
                    self.estimator.add(pair.index, d.src.key, d.src.size, d.src.etag)


def ranged(pair: PairRuntime) -> bool:
    """Whether the pair is planned range by range: both stores list in byte order and can
    start a listing after any key (and the source is listed, not read from a report)."""
    if pair.inventory is not None:
        return False
    stores = (pair.src_store, pair.dst_store)
    return all(lists_ranges(s) and s.capabilities.listing_order == BYTES for s in stores)


# Lookups of stated times (HEADs) run at once during planning, and how many decisions are read
# ahead of the one waited for.
_LOOKUP_THREADS = 32
_LOOKUP_WINDOW = 256


class _Rules:
    """The pair's planning rules, shared by every merge of its listings (whole or by range)."""

    def __init__(
        self,
        pair: PairRuntime,
        ignore: IgnoreRules,
        compare: PlanCompare,
        copied_version: Callable[[str], str | None] | None,
        filters: Filters | None = None,
        overwrite: bool = True,
        delete_excluded: bool = False,
    ) -> None:
        src_caps, dst_caps = pair.src_store.capabilities, pair.dst_store.capabilities
        self.pair = pair
        self.overwrite = overwrite
        self.delete_excluded = delete_excluded
        self.ignore = ignore
        self.filters = filters if filters else None
        self.dst_markers = dst_caps.directory_markers
        self.order = order_key(src_caps.listing_order)
        stated = (_stated_mtime(pair.src_store), _stated_mtime(pair.dst_store))
        # Lookups (HEADs) decide some comparisons: each merge runs them at once on threads.
        self.looks_up = compare == "mtime" and stated != (None, None)
        self.comparator = functools.partial(
            comparator,
            compare,
            content_etags=src_caps.content_etag and dst_caps.content_etag,
            multipart_etags=src_caps.multipart_etag_md5 and dst_caps.multipart_etag_md5,
            copied_version=copied_version,
            stated_mtimes=stated,
        )
        self.differs: Callable[[ObjectInfo, ObjectInfo], Reason] = self.comparator()

    def unsupported(self, dst_key: str) -> str | None:
        if not self.dst_markers and dst_key.endswith("/"):
            return "directory marker: a local destination has no objects ending in '/'"
        return None

    def ignored(self, key: str) -> bool:
        return bool(self.ignore) and self.ignore.matches(self.pair.ignore_bucket, key)

    def left_out(self, obj: ObjectInfo, suffix: str) -> str | None:
        """Why the filters leave a source object out (None: they take it)."""
        assert self.filters is not None
        return self.filters.excludes(relative_key(self.pair.src_prefix, suffix), obj)

    def merge(
        self,
        source: Iterable[ObjectInfo],
        destination: Iterable[ObjectInfo],
        extra: Callable[[ObjectInfo], None] | None,
        *,
        order: Callable[[str], str] | None = None,
    ) -> Generator[Decision, None, None]:
        """Objects the ignore patterns or the filters leave out are handed over as such;
        destination objects only the key filters judge (size and age are the source's), so
        an extra the key filters leave out is not reported (unless `delete_excluded`, where
        every destination object the filters leave out, or whose source they leave out, is
        an extra; the ignore patterns still protect theirs)."""
        if self.looks_up:
            return self._merge_looking_up(source, destination, extra, order=order)
        return self._diff(source, destination, extra, order, self.differs)

    def _merge_looking_up(
        self,
        source: Iterable[ObjectInfo],
        destination: Iterable[ObjectInfo],
        extra: Callable[[ObjectInfo], None] | None,
        *,
        order: Callable[[str], str] | None,
    ) -> Generator[Decision, None, None]:
        # One HEAD after another would take a round trip per object (minutes per thousand
        # objects between continents, and every rerun of a download whose files keep their
        # times looks up each one); threads start only when a lookup is wanted.
        pool = ThreadPoolExecutor(_LOOKUP_THREADS, thread_name_prefix="mtime-lookup")
        try:
            differs = self.comparator(defer=pool.submit)
            decisions = self._diff(source, destination, extra, order, differs)
            yield from settle(decisions, _LOOKUP_WINDOW)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _diff(
        self,
        source: Iterable[ObjectInfo],
        destination: Iterable[ObjectInfo],
        extra: Callable[[ObjectInfo], None] | None,
        order: Callable[[str], str] | None,
        differs: Callable[[ObjectInfo, ObjectInfo], Reason],
    ) -> Generator[Decision, None, None]:
        pair = self.pair
        return diff(
            source,
            destination,
            src_prefix=pair.src_prefix,
            dst_prefix=pair.dst_prefix,
            ignored=self.ignored,
            filtered=self.left_out if self.filters is not None else None,
            unsupported=self.unsupported,
            order=order or self.order,
            extra=None
            if extra is None
            else unless_left_out(
                pair, self.ignored, None if self.delete_excluded else self.filters, extra
            ),
            differs=differs,
            overwrite=self.overwrite,
            delete_excluded=self.delete_excluded,
        )


def _stated_mtime(store: ObjectStore) -> StatedMtime | None:
    """The time an object's x-amz-meta-mtime states, from a HEAD (None where it states
    none, or the HEAD fails); None for a store whose objects keep no metadata (a file's
    listed time is its own)."""
    if not store.capabilities.keeps_properties:
        return None

    def lookup(obj: ObjectInfo) -> float | None:
        try:
            ns = stated_mtime(store.details(obj.key, obj.etag).properties.metadata)
        except ObjectError:
            return None
        return None if ns is None else ns / 1e9

    return lookup


def decisions(
    pair: PairRuntime,
    ignore: IgnoreRules,
    *,
    threads: int = 8,
    extra: Callable[[ObjectInfo], None] | None = None,
    compare: PlanCompare = "size",
    copied_version: Callable[[str], str | None] | None = None,
    filters: Filters | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    overwrite: bool = True,
    delete_excluded: bool = False,
) -> Iterator[Decision]:
    """Every source object of the pair with what to do about it, in key order, from one
    merge of the whole listings.

    Both sides are listed at once, each on up to `threads` threads (by sub-prefix); a pair
    with an inventory report reads the report instead of listing its source, sorted in the
    destination's order."""
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
    rules = _Rules(pair, ignore, compare, copied_version, filters, overwrite, delete_excluded)
    return rules.merge(src_listing, dst_listing, extra, order=order_key(src_order))


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
    overwrite: bool = True,
    delete_excluded: bool = False,
) -> PlanCounts:
    """Plan one pair, handing what it finds to `sink` in batches; returns the counts.

    Destination objects that no source object maps to are looked for, counted and handed
    over only when the sink `wants_extras`; objects already present are handed over only when
    it `wants_same`. `keep_samples` copies and extras are kept in the counts (for a dry run).
    Without `overwrite`, present objects that differ are counted as not replaced. With
    `delete_excluded`, extras include destination objects the filters leave out.
    Where the sink has a `range_ledger`, the listing is checkpointed there and a pass stopped
    half way goes on where it stopped.
    """
    copied_version = functools.partial(sink.copied_version, pair)
    rules = _Rules(pair, ignore, compare, copied_version, filters, overwrite, delete_excluded)
    if ranged(pair):
        return plan_ranges(
            pair,
            sink,
            rules.merge,
            threads=listing_threads,
            batch_size=batch_size,
            keep_samples=keep_samples,
            stats=stats,
            should_stop=should_stop,
        )
    # One merge of the whole listings, recorded in the ledger (if any) as one range: done
    # or not, since a listing by folder cannot start after a key.
    ledger = sink.range_ledger()
    whole: int | None = None
    if ledger is not None:
        rows = ledger.ranges(pair.index)
        if len(rows) == 1 and rows[0].done and rows[0].after is None and rows[0].until is None:
            counts = PlanCounts.from_numbers(rows[0].counts)
            counts.replay(stats)
            return counts
        if rows:
            ledger.forget(pair.index)
        whole = ledger.add_range(pair.index, None, None)
    tally = Tally(
        pair,
        sink,
        threading.Lock(),
        batch_size=batch_size,
        keep_samples=keep_samples,
        stats=stats,
    )
    listing = decisions(
        pair,
        ignore,
        threads=listing_threads,
        extra=tally.extra if sink.wants_extras else None,
        compare=compare,
        copied_version=copied_version,
        filters=filters,
        should_stop=should_stop,
        overwrite=overwrite,
        delete_excluded=delete_excluded,
    )
    finished = True
    for decision in listing:
        tally.add(decision)
        if should_stop():
            finished = False
            break
    tally.flush()
    if ledger is not None and whole is not None and finished:
        ledger.checkpoint(whole, None, tally.counts.numbers(), done=True)
    return tally.counts


__all__ = [
    "CountingSink",
    "PlanCounts",
    "PlanSink",
    "PlanTotals",
    "decisions",
    "plan_pair",
    "ranged",
    "unless_left_out",
]
