"""Planning: stream both listings of a pair, merge them, write the copies into the job table.

Listings are fetched by background threads a few pages ahead, so the two sides are listed at
the same time while the merge consumes them; memory holds a few pages, never whole listings.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from s3longbow.model import ObjectInfo
from s3longbow.plan.diff import Action, Decision, diff
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.order import order_key, resorted
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import ObjectStore
from s3longbow.stores.location import Location

T = TypeVar("T")
_END = object()


@dataclass(frozen=True)
class PairRuntime:
    """A pair with its stores opened."""

    index: int
    src: Location
    dst: Location
    src_store: ObjectStore
    dst_store: ObjectStore

    @property
    def src_prefix(self) -> str:
        return self.src.prefix

    @property
    def dst_prefix(self) -> str:
        return self.dst.prefix

    @property
    def ignore_bucket(self) -> str:
        """What ignore patterns see before the key: the bucket, or the directory path."""
        return self.src.bucket if self.src.is_s3 else str(self.src.root)


@dataclass
class PlanCounts:
    """What planning found for one pair."""

    copy: int = 0
    copy_bytes: int = 0
    same: int = 0
    same_bytes: int = 0
    ignored: int = 0
    unsupported: int = 0
    samples: list[Decision] = field(default_factory=list)


def prefetch(items: Iterable[T], depth: int = 2000) -> Iterator[T]:
    """Iterate `items` on a background thread, at most `depth` items ahead of the consumer."""
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer below
            failure.append(exc)
        finally:
            while not stop.is_set():
                try:
                    buffer.put(_END, timeout=0.2)
                    break
                except queue.Full:
                    continue

    thread = threading.Thread(target=produce, name="listing", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                if failure:
                    raise failure[0]
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()


def decisions(pair: PairRuntime, ignore: IgnoreRules) -> Iterator[Decision]:
    """Every source object of the pair with what to do about it, in key order."""
    dst_markers = pair.dst_store.capabilities.directory_markers

    def unsupported(dst_key: str) -> str | None:
        if not dst_markers and dst_key.endswith("/"):
            return "directory marker: a local destination has no objects ending in '/'"
        return None

    def ignored(key: str) -> bool:
        return bool(ignore) and ignore.matches(pair.ignore_bucket, key)

    src_order = pair.src_store.capabilities.listing_order
    dst_order = pair.dst_store.capabilities.listing_order
    src_listing: Iterable[ObjectInfo] = prefetch(pair.src_store.list_objects(pair.src_prefix))
    dst_listing: Iterable[ObjectInfo] = pair.dst_store.list_objects(pair.dst_prefix)
    if dst_order != src_order:
        dst_listing = resorted(dst_listing, src_order)
    dst_listing = prefetch(dst_listing)
    return diff(
        src_listing,
        dst_listing,
        src_prefix=pair.src_prefix,
        dst_prefix=pair.dst_prefix,
        ignored=ignored,
        unsupported=unsupported,
        order=order_key(src_order),
    )


def plan_pair(
    pair: PairRuntime,
    ignore: IgnoreRules,
    on_copies: Callable[[list[Decision]], None],
    *,
    batch_size: int = 500,
    keep_samples: int = 0,
    stats: Stats | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PlanCounts:
    """Plan one pair, handing copies to `on_copies` in batches; returns the counts."""
    counts = PlanCounts()
    batch: list[Decision] = []
    for decision in decisions(pair, ignore):
        if should_stop():
            break
        if decision.action is Action.COPY:
            counts.copy += 1
            counts.copy_bytes += decision.src.size
            batch.append(decision)
            if len(counts.samples) < keep_samples:
                counts.samples.append(decision)
            if len(batch) >= batch_size:
                on_copies(batch)
                batch = []
        elif decision.action is Action.SAME:
            counts.same += 1
            counts.same_bytes += decision.src.size
            if stats:
                stats.add_same(1, decision.src.size)
        elif decision.action is Action.IGNORED:
            counts.ignored += 1
            if stats:
                stats.add_ignored()
        else:
            counts.unsupported += 1
            if stats:
                stats.add_unsupported()
    if batch:
        on_copies(batch)
    return counts
