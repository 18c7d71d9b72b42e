"""Planning a pair range by range, on several threads, resuming where a stopped pass left.

Where both stores list in byte order and can start a listing after any key, the pair's key
space is cut into ranges (see `ranges`). Each range is planned on its own, start to end: the
source and the destination are listed over the same bounds (the keys after the pair's
prefixes), the two listings are merged by `diff` exactly as a whole pair's are, and the
range's decisions go to the sink in batches. Ranges share no keys, so the union of their
decisions is the pair's: no merge across ranges is needed, and memory holds a few pages per
running range, however large the range.

With a ledger, each range's position is checkpointed once every decision up to it is in the
sink: a killed process's next run lists each unfinished range from its checkpoint on, and no
finished range again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable, Generator, Iterable, Iterator

from s3longbow.jobs.base import RangeLedger
from s3longbow.model import ObjectInfo
from s3longbow.pairs import PairRuntime
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import ObjectStore, RangedListing

from .diff import Decision
from .listing import read_ahead
from .ranges import DESTINATION, SOURCE, KeyRange, RangeBoard
from .tally import PlanCounts, PlanSink, Tally

log = logging.getLogger(__name__)

# Decisions between two checkpoints of a range (a checkpoint is one small transaction).
CHECKPOINT_EVERY = 1000
# Keys each range's listings read ahead of its merge: about one page per side.
_DEPTH = 1000

# Merges a range's two listings into decisions (the pair's rules); `extra` is told of
# destination objects no source object maps to (None: they are not looked for).
MakeDiff = Callable[
    [Iterable[ObjectInfo], Iterable[ObjectInfo], Callable[[ObjectInfo], None] | None],
    Generator[Decision, None, None],
]


def _listing(store: ObjectStore, prefix: str, after: str | None) -> Iterator[ObjectInfo]:
    if after is None:
        return store.list_objects(prefix)
    assert isinstance(store, RangedListing)
    return store.list_after(prefix, prefix + after)


def _bounded(
    items: Iterator[ObjectInfo], taken: KeyRange, side: int, cut: int
) -> Iterator[ObjectInfo]:
    """The objects of `items` that belong to the range, as the merge takes them: each one is
    admitted by the range, so a cut never falls below a key already handed out."""
    try:
        for obj in items:
            if not taken.admit(side, obj.key[cut:]):
                return
            yield obj
        if side == SOURCE:
            taken.source_ended()
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # stops the read-ahead's thread


class _Ranges:
    """The ranges of one pair in one pass: loaded from the ledger, cut, and checkpointed."""

    def __init__(self, pair: PairRuntime, ledger: RangeLedger | None) -> None:
        self.pair = pair
        self.ledger = ledger
        self.finished = PlanCounts()  # ranges a stopped pass finished
        self.counts: dict[int, PlanCounts] = {}  # where each range's counts go on from
        self.todo: list[KeyRange] = []
        self._ids = itertools.count(1)
        rows = ledger.ranges(pair.index) if ledger is not None else []
        if not rows:
            whole = ledger.add_range(pair.index, None, None) if ledger else next(self._ids)
            self.todo.append(KeyRange(whole, None, None))
            return
        for row in rows:
            counts = PlanCounts.from_numbers(row.counts)
            if row.done:
                self.finished.add(counts)
                continue
            self.counts[row.id] = counts
            start = row.position if row.position is not None else row.after
            self.todo.append(KeyRange(row.id, start, row.until))
        log.info(
            "%s: resuming the listing: %d range(s) finished, %d to go on",
            pair.src,
            len(rows) - len(self.todo),
            len(self.todo),
        )

    def cut(self, taken: KeyRange, boundary: str) -> KeyRange:
        new_id = (
            self.ledger.split_range(taken.id, boundary)
            if self.ledger is not None
            else next(self._ids)
        )
        return KeyRange(new_id, boundary, taken.until)

    def checkpoint(
        self, taken: KeyRange, position: str | None, counts: PlanCounts, *, done: bool
    ) -> None:
        if self.ledger is not None:
            self.ledger.checkpoint(taken.id, position, counts.numbers(), done=done)


def plan_ranges(
    pair: PairRuntime,
    sink: PlanSink,
    make_diff: MakeDiff,
    *,
    threads: int,
    batch_size: int,
    keep_samples: int,
    stats: Stats | None,
    should_stop: Callable[[], bool],
) -> PlanCounts:
    """Plan a pair whose stores both list ranges (see the module's docstring).

    Args:
        pair: The pair.
        sink: Where decisions go; its `range_ledger` (if any) checkpoints the ranges.
        make_diff: Merges a range's two listings into decisions.
        threads: Ranges listed at once.
        batch_size: Decisions per batch handed to the sink.
        keep_samples: Copies and extras kept as samples (for a dry run).
        stats: The run's counters.
        should_stop: Checked between decisions; the ranges are checkpointed where they got.

    Returns:
        The pair's counts, with those of ranges a stopped pass had finished.
    """
    ranges = _Ranges(pair, sink.range_ledger())
    ranges.finished.replay(stats)
    for counts in ranges.counts.values():
        counts.replay(stats)
    src_store, dst_store = pair.src_store, pair.dst_store
    src_cut, dst_cut = len(pair.src_prefix), len(pair.dst_prefix)

    def probe(after: str, count: int) -> list[str]:
        assert isinstance(src_store, RangedListing)
        keys = src_store.keys_after(pair.src_prefix, pair.src_prefix + after, count)
        return [key[src_cut:] for key in keys]

    board = RangeBoard(ranges.todo, probe=probe, cut=ranges.cut)
    lock = threading.Lock()  # the sink sees one call at a time
    failed = threading.Event()
    errors: list[BaseException] = []
    results: list[PlanCounts] = []

    def stopping() -> bool:
        return failed.is_set() or should_stop()

    def plan_one(taken: KeyRange) -> PlanCounts:
        counts = ranges.counts.pop(taken.id, None) or PlanCounts()
        tally = Tally(
            pair,
            sink,
            lock,
            counts=counts,
            batch_size=batch_size,
            keep_samples=keep_samples,
            stats=stats,
        )
        src = _bounded(
            read_ahead(_listing(src_store, pair.src_prefix, taken.after), _DEPTH),
            taken,
            SOURCE,
            src_cut,
        )
        dst = _bounded(
            read_ahead(_listing(dst_store, pair.dst_prefix, taken.after), _DEPTH),
            taken,
            DESTINATION,
            dst_cut,
        )
        extra = tally.extra if sink.wants_extras else None
        last = taken.after  # the last key whose decision is in the tally
        since = 0
        finished = True
        with contextlib.closing(make_diff(src, dst, extra)) as decisions:
            for decision in decisions:
                tally.add(decision)
                last = decision.src.key[src_cut:]
                since += 1
                if stopping():
                    finished = False
                    break
                if since >= CHECKPOINT_EVERY:
                    # Everything up to this key is in the sink before the checkpoint says so.
                    tally.flush()
                    ranges.checkpoint(taken, last, counts, done=False)
                    since = 0
        tally.flush()
        ranges.checkpoint(taken, last, counts, done=finished)
        return counts

    def work() -> None:
        try:
            while (taken := board.take(stopping)) is not None:
                try:
                    results.append(plan_one(taken))
                finally:
                    board.finished(taken)
        except BaseException as exc:  # noqa: BLE001 - raised by the caller
            errors.append(exc)
            failed.set()
            board.close()

    workers = [
        threading.Thread(target=work, name=f"listing-range-{n}", daemon=True)
        for n in range(max(1, threads))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    total = PlanCounts()
    total.add(ranges.finished)
    for counts in results:
        total.add(counts, keep_samples=keep_samples)
    if board.cuts:
        log.info("%s: listed in %d range(s) cut while listing", pair.src, board.cuts + 1)
    return total


__all__ = ["CHECKPOINT_EVERY", "MakeDiff", "plan_ranges"]
